"""Power before the run: the difference the sweep's report can detect, and the seeds an effect needs.

    python -m prefix_titan.power --scale pilot --seeds 3
    python -m prefix_titan.power --scale pilot --seeds 3 --from outputs/sweep_pilot
    python -m prefix_titan.power --scale pilot --seeds 3 --effect "char composite=0.03"
    python -m prefix_titan.power --seeds 5 --arms label_smoothing prefix_tau0.5 prefix_tau1.0
    python -m prefix_titan.power --seeds 3 --probe-items 500   # eval --probe-items 500

For each primary endpoint of the analysis plan and each of the mission's tasks: a run's sd
(assumed from published item counts, or measured in a finished sweep with --from), the difference from the
baseline detected with 80% power by the report's test at the planned seeds (the sweep's arms:
every one, or --arms; at the first share of alpha the plan's procedure gives it, two-sided),
and the seeds needed for an effect (--effect, in the metric's units: accuracy as a fraction,
bits per byte, nats).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import NamedTuple

from .evaluation.harness import DEFAULT_TASKS
from .evaluation.probes import ITEMS_PER_TASK
from .evaluation.probes import MIN_ITEMS as PROBE_MIN_ITEMS
from .runs.cli import Parser, path_arg
from .sweep.analysis import (
    analyse,
    compared_arms,
    first_share,
    fit_of,
    load_plan,
    plan_arm_problems,
    registered_plan,
    unfinished,
    validate_again,
)
from .sweep.configs import SCALES, arms
from .sweep.inference import APART_MIN_SEEDS, seedwise
from .sweep.metrics import (
    EFFECTS,
    METRICS,
    beyond_widest,
    detectable_text,
    evaluated_steps,
    metric,
)
from .sweep.power import FEW_DF, SD_LIMIT, defaults, plan_rows
from .sweep.report import plural

UNTESTED = "not tested by the plan"
"""The 'tested at' of a metric in none of the plan's families (the report never tests it)"""

MAX_SEEDS = 100
"""The most seeds per arm `--seeds N` plans for: a larger single number is a seed (as `sweep
launch --seeds` takes them), not a count"""


def _effect(text: str) -> tuple[str, float]:
    name, _, value = text.rpartition("=")
    try:
        effect = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--effect {text!r}: give METRIC=VALUE, e.g. 'char composite=0.03'"
        ) from None
    if not math.isfinite(effect) or effect == 0:
        raise argparse.ArgumentTypeError(
            f"--effect {text!r}: the effect must be a finite number other than 0, in the "
            "metric's units (either sign: the test is two-sided)"
        )
    return name.strip(), effect


class Measured(NamedTuple):
    """What a finished sweep says of the power rows (measured_sds)."""

    sds: dict[str, float]
    """{metric: the pooled residual sd}, where the sweep measured one"""
    where: str | None
    """the sweep, in words (arms x seeds under its folder)"""
    flavors: list[str]
    """the model flavors its runs trained"""
    limits: list
    """the --limit samples its evaluations read (none: whole tasks)"""
    arms: list[str]
    zero: list[str]
    """the metrics it measured no variance of (the published default kept)"""
    dfs: dict[str, int]
    """{metric: the residual degrees of freedom its sd rests on}, for those of `sds`"""
    probe_items: list[int]
    """the items per character probe its evaluations built (eval --limit and --probe-items
    build fewer than the default ITEMS_PER_TASK)"""
    unheld: tuple[str, ...] = ()
    """the metrics it holds no values of in two arms or more (the published default kept)"""
    left_out: tuple[str, ...] = ()
    """why each seed not measured was left out, one line a seed"""


def _incomplete(runs: list[dict], seeds: list[int]) -> list[str]:
    """A line for each seed of `runs` not in `seeds` (those every arm has): the arms without a
    run of it."""
    names = list(dict.fromkeys(r["name"] for r in runs))
    lines = []
    for seed in sorted({r["seed"] for r in runs} - set(seeds)):
        have = [n for n in names if any(r["name"] == n and r["seed"] == seed for r in runs)]
        lacking = [n for n in names if n not in have]
        why = (
            f"{', '.join(lacking)} {'has' if len(lacking) == 1 else 'have'} no run of it"
            if len(lacking) <= len(have)
            else f"only {', '.join(have)} {'has' if len(have) == 1 else 'have'} a run of it"
        )
        lines.append(f"seed {seed} left out: {why} ({plural(len(have), 'run')} not read)")
    return lines


def _cut_short(runs: list[dict], seeds: list[int]) -> tuple[list[int], list[str]]:
    """(the seeds kept, a line for each left out) where the runs' last evaluated steps differ:
    the seeds of one last step, the one most seeds reach (then the most runs evaluated there,
    then the later step), are kept, and a seed with a run evaluated last at another step
    (unfinished, or evaluated before it finished), or with no run evaluated where others are, is
    left out whole, as the report's refusal of such runs advises."""
    last = {id(r): steps[-1] for r in runs if (steps := evaluated_steps(r))}
    by_seed = {s: [r for r in runs if r["seed"] == s] for s in seeds}
    never = [s for s in seeds if not any(id(r) in last for r in by_seed[s])]
    if not last or (len(set(last.values())) < 2 and not never):
        return seeds, []

    def reaching(step: int) -> list[int]:
        return [
            s
            for s in seeds
            if s not in never and all(last.get(id(r), step) == step for r in by_seed[s])
        ]

    def evaluated_at(step: int) -> int:
        return sum(last.get(id(r)) == step for s in reaching(step) for r in by_seed[s])

    final = max(
        set(last.values()), key=lambda step: (len(reaching(step)), evaluated_at(step), step)
    )
    kept = reaching(final)
    where = (
        f"where the seeds measured end at step {final}"
        if kept
        else "and no seed has every run evaluated last at one step"
    )
    lines = []
    for seed in [s for s in seeds if s not in kept]:
        runs_of = plural(len(by_seed[seed]), "run")
        if seed in never:
            lines.append(
                f"seed {seed} left out: no run of it evaluated, {where} ({runs_of} not read; "
                "evaluate them to keep them)"
            )
            continue
        odd = [r for r in by_seed[seed] if last.get(id(r), final) != final]
        lines.append(
            f"seed {seed} left out: "
            + ", ".join(
                f"{r['name']} last evaluated at step {last[id(r)]}"
                + (" (unfinished)" if unfinished(r) else "")
                for r in odd
            )
            + f", {where} ({runs_of} not read; finish and evaluate them to keep them)"
        )
    return kept, lines


TINY_SD = 10
"""A measured sd below 1/TINY_SD of the published default is noted: runs answering alike"""


def measured_sds(runs_dir: str, plan, names: list[str], checkpoints: int | None = None) -> Measured:
    """The pooled residual sd of each metric in a finished sweep (the report's own fit, each run
    averaged over its last `checkpoints` evaluated checkpoints: None, the plan's), over the
    seeds every arm has, evaluated to the same last step (a seed with a run missing, or cut
    short, is left out, said in `left_out`). Refuses a sweep that leaves fewer than 2 such seeds:
    one seed measures no run-to-run variance."""
    from .sweep.runs import complete_seeds, find_runs, group_arms

    runs = find_runs(runs_dir)
    seeds = complete_seeds(runs)
    left_out = _incomplete(runs, seeds)
    seeds, short = _cut_short([r for r in runs if r["seed"] in seeds], seeds)
    left_out += short
    if len(seeds) < 2:
        found = sorted({r["seed"] for r in runs})
        raise ValueError(
            f"--from {runs_dir}: "
            + (f"only seed {seeds[0]} can be measured" if seeds else "no seed can be measured")
            + f" (the runs' seeds: {', '.join(map(str, found)) or 'none'}"
            + "".join(f"; {line}" for line in left_out)
            + "): a run's sd is measured over the seeds at which every arm has a run, evaluated "
            "to the same last step, and one seed measures no run-to-run variance (the arm x "
            "seed fit has no residual degree of freedom). Run and evaluate a second seed of "
            "every arm, or plan without --from (the published default sds)."
        )
    a = analyse(
        group_arms([r for r in runs if r["seed"] in seeds], plan.baseline),
        plan,
        checkpoints,
        read=tuple(names),
    )
    out, zero, dfs, unheld = {}, [], {}, []
    for name in names:  # the plan's primaries and the default tasks (others keep their defaults)
        f = fit_of(a, name)
        if f is not None and f.df > 0 and f.sigma2 > 0:
            out[name], dfs[name] = math.sqrt(f.sigma2), f.df
        elif f is not None and f.df > 0:
            zero.append(name)
        else:
            unheld.append(name)
    flavors = sorted({f for r in runs if (f := (r["config"].get("model") or {}).get("flavor"))})
    where = f"{plural(len(a.arms), 'arm')} x {plural(len(a.seeds), 'seed')} under {runs_dir}"
    limits = sorted(
        {
            n
            for r in runs
            for step in (r.get("steps") or {}).values()
            for n in (step.get("limits") or {}).values()
            if n
        },
        key=str,
    )
    probe_items = sorted(
        {
            n
            for r in runs
            for step in (r.get("steps") or {}).values()
            for n in (step.get("probe_items") or {}).values()
            if isinstance(n, int)
        }
    )
    return Measured(
        out, where, flavors, limits, a.arms, zero, dfs, probe_items, tuple(unheld), tuple(left_out)
    )


def scale_flavor(scale: str) -> str:
    """The model.flavor the configs of `scale` train."""
    import tomllib

    from .objectives import ObjectiveSpec
    from .sweep.configs import render

    return tomllib.loads(render(ObjectiveSpec("ce"), scale))["model"]["flavor"]


def main(argv: list[str] | None = None) -> None:
    p = Parser(
        prog="python -m prefix_titan.power",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--scale", default="pilot", choices=list(SCALES), help="default: pilot")
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[3],
        metavar="N",
        help="seeds per arm planned (>= 2), or the seeds themselves as `sweep launch --seeds` "
        "takes them (their number is planned for)",
    )
    p.add_argument(
        "--from", dest="runs_dir", type=path_arg, default=None, help="a finished sweep's folder"
    )
    p.add_argument(
        "--checkpoints",
        type=int,
        default=None,
        metavar="K",
        help="with --from: average each run over its last K evaluated checkpoints, as `report "
        "--checkpoints K` does (default: the plan's)",
    )
    p.add_argument(
        "--plan",
        type=path_arg,
        default=None,
        help="the analysis plan (default: the one the --from sweep registered, else the package's)",
    )
    p.add_argument(
        "--effect",
        type=_effect,
        action="extend",
        nargs="+",
        default=[],
        metavar="METRIC=VALUE",
        help="an effect to find the seeds for, in the metric's units (several after one "
        "--effect, or the flag repeated)",
    )
    p.add_argument(
        "--probe-items",
        type=int,
        default=ITEMS_PER_TASK,
        metavar="N",
        help=f"items per character probe the sweep's evaluations build (eval --probe-items; "
        f"default {ITEMS_PER_TASK:,}): the probes' published sd",
    )
    p.add_argument(
        "--root",
        type=path_arg,
        default=".",
        help="the project folder whose sweep_arms.toml adds arms (default: here)",
    )
    p.add_argument(
        "--arms",
        nargs="+",
        default=None,
        metavar="ARM",
        help="the arms the sweep will hold, the plan's baseline among them (default: every one: "
        "the built-in arms, then sweep_arms.toml's), as `sweep launch --arms` takes them",
    )
    a = p.parse_args(argv)
    if a.probe_items < PROBE_MIN_ITEMS:
        p.error(
            f"--probe-items must be >= {PROBE_MIN_ITEMS} (eval builds no fewer); got {a.probe_items}"
        )
    if a.checkpoints is not None and (a.checkpoints < 1 or a.runs_dir is None):
        p.error(
            f"--checkpoints must be >= 1; got {a.checkpoints}"
            if a.checkpoints < 1
            else "--checkpoints reads a sweep's evaluations: give it with --from SWEEP_DIR"
        )
    if not os.path.isdir(a.root):
        p.error(f"--root {a.root}: no such folder (the project folder that holds sweep_arms.toml)")
    if len(a.seeds) > 1:  # the seeds themselves, as the launch takes them
        if len(set(a.seeds)) < len(a.seeds):
            p.error(f"--seeds {' '.join(map(str, a.seeds))} names a seed twice")
        print(f"--seeds names {len(a.seeds)} seeds: planning for {len(a.seeds)} seeds per arm")
        a.seeds = len(a.seeds)
    elif a.seeds[0] > MAX_SEEDS:
        p.error(
            f"--seeds {a.seeds[0]}: a number of seeds per arm, 2 to {MAX_SEEDS} (the seeds "
            f"themselves are counted where several are given: --seeds {a.seeds[0]} "
            f"{a.seeds[0] + 1} {a.seeds[0] + 2} plans for 3)"
        )
    else:
        a.seeds = a.seeds[0]
    if a.seeds < 2:
        p.error(f"--seeds must be >= 2 (one seed measures no training noise); got {a.seeds}")
    try:
        plan = load_plan(a.plan or (registered_plan(a.runs_dir) if a.runs_dir else None))
        # one row per metric: a plan's primary may be one of the tasks (arc_easy), listed once
        names = list(
            dict.fromkeys([f.primary for f in plan.families] + ["downstream acc", *DEFAULT_TASKS])
        )
        effects = {**EFFECTS, **dict(a.effect)}
        unknown = [n for n in dict(a.effect) if n not in names]
        if unknown:
            p.error(f"--effect names {', '.join(unknown)}; the metrics here: {', '.join(names)}")
        for name, effect in a.effect:
            m = metric(name) if name in METRICS else None
            if m is not None and m.widest is not None and abs(effect) > m.widest:
                p.error(
                    f"--effect '{name}={effect:g}': {name} is a {m.unit}, so two arms differ by "
                    f"{m.widest:g} at most (a difference of 2 points is {name}=0.02)"
                    if m.unit.startswith("fraction")
                    else f"--effect '{name}={effect:g}': {name} ({m.unit}) differs by "
                    f"{m.widest:g} at most"
                )
        sweep_measured = (
            measured_sds(a.runs_dir, plan, names, a.checkpoints)
            if a.runs_dir
            else Measured({}, None, [], [], [], [], {}, [])
        )
        measured, where, flavors, limits, measured_arms, zero, dfs, probe_items = sweep_measured[:8]
    except ValueError as e:
        p.refuse(str(e))
    try:
        sweep = arms(a.root)  # the built-in arms and the project's own (its sweep_arms.toml)
    except ValueError as e:
        p.refuse(str(e))
    problems = plan_arm_problems(plan, {n: vars(s) for n, s in sweep.items()})
    if problems:  # as `sweep launch` refuses it
        p.error(f"the analysis plan {a.plan or plan.source}: {'; '.join(problems)}")
    if a.arms:
        from .sweep.configs import pick_arms

        try:
            sweep = pick_arms(sweep, a.arms, a.root)
        except ValueError as e:
            p.error(str(e))
        if plan.baseline not in sweep:
            p.error(
                f"--arms leaves out the plan's baseline, {plan.baseline}: every comparison is "
                "with it, and its runs are in the sweep's fit; name it among --arms"
            )
    named = compared_arms(plan, {n: vars(s) for n, s in sweep.items()})
    outside = [arm for arm in sweep if arm not in named and arm not in (plan.baseline, "ce")]
    compared = len(named)
    if compared == 0:
        p.error(
            f"the plan's contrast ({', '.join(plan.contrast) or 'none'}) names no arm of the "
            f"{a.scale} sweep: nothing is compared, so there is no power to compute"
        )
    shares = {n: first_share(plan, n, compared) for n in names}
    k = {n: s[0] for n, s in shares.items()}
    rows = plan_rows(
        names,
        a.seeds,
        len(sweep),
        k,
        plan.alpha,
        measured,
        effects,
        probe_items=a.probe_items,
        variance=plan.variance,
        measured_df=dfs,
    )
    print(
        f"Power before the run: scale {a.scale}, {len(sweep)} arms ({compared} compared with "
        f"{plan.baseline}), {a.seeds} seeds; two-way arm x seed model"
        + (", the baseline's variance apart" if plan.variance == "baseline_apart" else "")
        + ", two-sided, power 80%, "
        f"each metric at the first share of familywise alpha {plan.alpha} the report's "
        f"procedure gives it (column 'tested at')."
    )
    print(
        f"Run sd: {'measured in ' + where + ', else ' if where else ''}assumed: one model's "
        "binomial standard error on the items (item counts and accuracies published; that the "
        "seed-to-seed sd equals it is an assumption, not a measurement: a run's sd can be "
        "smaller or larger). The detectable difference scales with the sd (half at half the sd, "
        "twice at twice): measure it with --from on a few runs before a sweep relies on it."
        + (
            f" At {a.scale} the tasks' accuracies are those published at pilot scale (none at "
            "this scale on these tokens): a higher accuracy changes a binomial SE little (at "
            "most 1.1x between 30% and 70%)."
            if a.scale != "pilot" and not where
            else ""
        )
    )
    if a.scale == "smoke" and a.probe_items == ITEMS_PER_TASK:
        print(
            f"Note: these rows assume evaluations of {ITEMS_PER_TASK:,} probe items and whole "
            "tasks; a smoke sweep is evaluated with `eval --tasks char_probes embedding_probe "
            "--limit 50` (docs/cpu.md), about 50 items a probe: --probe-items 50 plans that."
        )
    if outside:
        print(
            f"Note: not compared with {plan.baseline}, their kind not in the plan's contrast "
            f"({', '.join(plan.contrast)}): {', '.join(outside)}; a plan whose contrast names "
            "them (--plan FILE, as the launch takes it) compares them, and counts them here."
        )
    if seedwise(plan.variance, len(sweep), a.seeds):
        print(
            f"Note: below {APART_MIN_SEEDS} seeds the plan's rule compares each arm with "
            f"{plan.baseline} by its per-seed differences alone ({a.seeds - 1} degree of freedom: "
            "a pooled variance would not hold alpha with a noisier baseline), so it detects only "
            f"very large differences; {APART_MIN_SEEDS} seeds or more pool the other arms' "
            "variance."
        )
    planned = scale_flavor(a.scale)
    if flavors and flavors != [planned]:
        print(
            f"Note: the runs under {a.runs_dir} trained model.flavor {', '.join(flavors)}, the "
            f"{a.scale} scale trains {planned}: their training noise is not this scale's, so the "
            f"measured rows hold for the {a.scale} sweep only as far as that noise carries over "
            f"(measure on a few {a.scale} runs to be sure)."
        )
    for line in sweep_measured.left_out:
        print(f"Note: {line}.")
    validated = [n for n in sweep_measured.unheld if metric(n).source == "validation"]
    for held, (why, how) in (
        (
            [n for n in sweep_measured.unheld if n not in validated],
            ("not evaluated", "evaluate the runs on them"),
        ),
        (
            validated,
            (
                "their metrics logs hold no validation row after step 1: the logs cut short, "
                "older copies put back or the logs missing (the report names each run and why), "
                "or trained with validation.enable = false",
                f"{validate_again(False)} (runs trained with validation off: train them again "
                "with it on)",
            ),
        ),
    ):
        if held:
            print(
                f"Note: the runs under {a.runs_dir} hold no values of {', '.join(held)} in two "
                f"arms or more ({why}): those rows keep the published default (or none); {how} "
                "to measure it."
            )
    published = defaults(a.probe_items)
    tiny = [
        f"{n} {sd:.2g} against {published[n].sd:.2g}"
        for n, sd in measured.items()
        if n in published and sd < published[n].sd / TINY_SD
    ]
    if tiny:
        print(
            f"Note: the runs under {a.runs_dir} measured a run sd below 1/{TINY_SD} of the "
            f"published default for {', '.join(tiny)} (the default: one model's binomial error on "
            "the items): runs that answer their items alike (short runs, few items) measure "
            "almost no noise, and a plan from that sd counts on none; plan from runs of the scale "
            "planned for, or without --from."
        )
    if zero:
        print(
            f"Note: the runs under {a.runs_dir} measured no variance of {', '.join(zero)} (each "
            "arm's difference the same on every seed): those rows keep the published default "
            "(or none); more seeds, or evaluations on more items, measure it."
        )
    untested = [n for n in names if shares[n][1] == "not in the plan"]
    if untested:
        print(
            f"Note: the plan {a.plan or plan.source} tests no comparison on "
            f"{', '.join(untested)} (in none of its families): the report makes no claim on "
            f"them, so their rows ('{UNTESTED}') give no alpha and no detectable difference; a "
            "plan that names them in a family tests them."
        )
    few = [r for r in rows if r.estimate is not None and r.metric not in untested]
    if few:
        from scipy.special import chdtri  # (the chi-square quantiles of a measured sd's range)

        df = min(r.df for r in few)
        low, high = (math.sqrt(chdtri(df, q) / df) for q in (0.95, 0.05))
        print(
            f"Note: the sd measured under {a.runs_dir} rests on fewer than {FEW_DF} degrees of "
            f"freedom for {', '.join(f'{r.metric} ({r.df})' for r in few)}: at {df} an "
            f"estimate lies between {low:.2f}x and {high:.2f}x the true sd (90%), and the "
            "detectable difference and the seeds with it. Those rows plan conservatively, at "
            f"the sd's upper one-sided {SD_LIMIT:.0%} confidence limit (chi-square; column "
            "'run sd': the estimate, then that limit); more seeds or arms measured narrow it."
        )
    if limits:
        print(
            f"Note: the runs under {a.runs_dir} were evaluated on a --limit sample of each "
            f"task's items ({'; '.join(map(str, limits))}): the measured sd of an evaluated "
            "metric is that sample's, larger than the whole tasks' the sweep will evaluate "
            "(by about the square root of the items' ratio where item sampling dominates); "
            "evaluate without --limit to measure it."
        )
    if fewer := [n for n in probe_items if n < a.probe_items]:
        print(
            f"Note: the character probes under {a.runs_dir} were built with "
            f"{' or '.join(f'{n:,}' for n in fewer)} items each, not the {a.probe_items:,} "
            "planned (--probe-items; eval --limit builds fewer too): the measured sd of the "
            "probes' metrics is that of fewer items, larger than the sweep's (by up to the square "
            "root of the items' ratio where item sampling dominates); evaluate with the planned "
            "probes to measure it."
        )
    if measured_arms and len(measured_arms) != len(sweep) and not a.arms:
        print(
            f"Note: the power is for the {a.scale} sweep of {len(sweep)} arms; the sweep under "
            f"{a.runs_dir} has {len(measured_arms)} (--arms {' '.join(measured_arms)} plans "
            "those)."
        )
    print()
    print(
        f"| metric | tested at | run sd | detectable at {a.seeds} seeds | effect | seeds for it "
        "| sd from |"
    )
    print("|---|---|---:|---:|---:|---:|---|")
    for r in rows:
        at = f"{shares[r.metric][1]}, alpha/{shares[r.metric][0]}"
        if r.metric in untested:  # the report tests it in no family: no alpha, nothing detected
            sd = "-" if r.sd is None else f"{r.sd:.4f}"
            print(f"| {r.metric} | {UNTESTED} | {sd} | - | - | - | {r.source} |")
            continue
        if r.sd is None:
            print(f"| {r.metric} | {at} | - | - | - | - | {r.source} |")
            continue
        need = "-" if r.effect is None else (str(r.seeds_for) if r.seeds_for else "> 100")
        effect = "-" if r.effect is None else f"{r.effect:g}"
        sd = f"{r.sd:.4f}" if r.estimate is None else f"{r.estimate:.4f}, upper {r.sd:.4f}"
        print(
            f"| {r.metric} | {at} | {sd} | {detectable_text(r.metric, r.detectable)} "
            f"| {effect} | {need} "
            f"| {r.source} |"
        )
    print(
        "\nThe primaries are tested first; an exploratory metric (a task) is tested only for an "
        "arm claimed on its family's primary, first at its share of that arm's alpha (more as "
        "the arm's other exploratory metrics are claimed): its detectable difference and seeds are "
        "those of an arm already claimed on the primary, so its power over the sweep is 80% times "
        "the chance of that claim (none for an effect on the task alone). Differences below "
        "`detectable` read as 'not found', not 'absent'."
        + (
            " 'none (> W)': the test needs a difference wider than the metric's values can have "
            "(W), so none is detected at these seeds."
            if any(
                r.sd is not None
                and r.metric not in untested
                and beyond_widest(r.metric, r.detectable)
                for r in rows
            )
            else ""
        )
    )


if __name__ == "__main__":
    sys.exit(main())
