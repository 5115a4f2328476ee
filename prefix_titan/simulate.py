"""Synthetic sweeps: try the report on one, or measure its error rates over many.

    python -m prefix_titan.simulate --out /tmp/sim_sweep [--effect prefix_tau0.5:char=0.05]
    python -m prefix_titan.report /tmp/sim_sweep
    python -m prefix_titan.simulate --calibrate 200             # at the real item counts
    python -m prefix_titan.simulate --out /tmp/own --plan my_plan.toml \
        --gold-mass my_lab.targets:suffix_targets=0.8 --effect my_lab.targets:suffix_targets:char=0.05

--out writes one simulated sweep (the 14 built-in arms and those of the project's
sweep_arms.toml, --root; an arm of one's own needs its target's --gold-mass) as run folders
(run_config.json, metrics log, hf/step-N/eval_results.json with per-item outcomes), as training
and `eval` write them, into a new or empty folder (--overwrite replaces an earlier simulated
sweep there, whole), with the analysis plan registered before its runs as `sweep launch` does
(--plan, default the package's): the plan its report applies.
--calibrate N runs the report's decision code (analysis.analyse) on N simulated sweeps under the
global null (no arm differs), prints each family's familywise rate of false claims and the A/A
checks' rate, then on N sweeps with the planted --effect (default: +5 points on the character
probes of prefix_tau0.5, or of the first arm of the plan's contrast where that is not one) and
prints how often it is claimed, and claimed the wrong way. A plan whose baseline or contrast
names no arm is refused, as `sweep launch` refuses it. The
model of the simulation: prefix_titan/sweep/simulate.py.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import replace

from .runs.cli import Parser, path_arg
from .sweep import simulate as sim
from .sweep.analysis import (
    CE_EQUIVALENT,
    compared_arms,
    load_plan,
    plan_arm_problems,
    weighs_as,
)
from .sweep.configs import arms, pick_arms

DEFAULT_EFFECT = ("prefix_tau0.5", "char", 0.05)


def _effect(text: str) -> tuple[str, str, float]:
    try:
        head, value = text.rsplit("=", 1)
        arm, what = head.rsplit(":", 1)  # an arm of one's own is named by an import path (a:b)
        return arm, what, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--effect {text!r}: give ARM:WHAT=VALUE, e.g. prefix_tau0.5:char=0.05 (WHAT: a task, "
            f"{', '.join(sim.GROUPS)}, {sim.PRIOR} or 'val CE')"
        ) from None


def _arm_number(text: str, flag: str, unit: str, allowed, said: str, e_g: str) -> tuple[str, float]:
    """ARM=NUMBER of `flag`, the number `allowed` (said as `said`), else refused naming it."""
    arm, _, value = text.rpartition("=")
    try:
        x = float(value)
    except ValueError:
        x = math.nan
    if not arm or not allowed(x):
        raise argparse.ArgumentTypeError(
            f"{flag} {text!r}: give ARM={unit}, {unit} {said}, e.g. my_lab.targets:suffix_targets"
            f"={e_g}"
        )
    return arm, x


def _gold_mass(text: str) -> tuple[str, float]:
    return _arm_number(text, "--gold-mass", "MASS", lambda m: 0.0 < m <= 1.0, "in (0, 1]", "0.8")


def _implied_ce(text: str) -> tuple[str, float]:
    return _arm_number(text, "--implied-ce", "NATS", lambda n: 0.0 <= n < math.inf, ">= 0", "0.2")


def calibrate(
    sweep: sim.Sweep, effect: tuple, plan, sweeps: int, seed: int, workers: int = 1
) -> str:
    lines = []
    start = time.time()
    null = sim.claims(sweep, plan, sweeps, seed, workers)
    lines.append(
        f"Global null, {sweeps} sweeps of {len(sweep.arms)} arms x {len(sweep.seeds)} seeds, "
        f"the plan's variance = {plan.variance!r}:"
    )
    for family, hits in sim.familywise(null, plan).items():
        lines.append(f"  {family}: sweeps with a false claim {sim.rate(hits, sweeps)}")
    specs = {s.arm_name(): vars(s) for s in sweep.arms}
    masses = sim.known_masses(sweep.arms, dict(sweep.gold_mass))
    if "ce" in specs and any(  # (as the analysis marks them: the gold mass, ce's weighting)
        m >= CE_EQUIVALENT and weighs_as(specs[a], specs["ce"])
        for a, m in masses.items()
        if a != "ce" and a in specs
    ):
        aa = sum(any(c.aa_check for c in cs) for cs in null)
        lines.append(f"  A/A checks (CE-equivalent arms against ce): {sim.rate(aa, sweeps)}")
    else:  # (a rate of 0 would read as checks that held)
        lines.append("  A/A checks: none in these sweeps (no CE-equivalent arm, or no ce arm)")
    anywhere = sum(any(not c.aa_check for c in cs) for cs in null)
    lines.append(f"  any family (the A/A checks excepted): {sim.rate(anywhere, sweeps)}")
    planted = sim.claims(replace(sweep, effects=(effect,)), plan, sweeps, seed + 1, workers)
    arm, what, value = effect
    moved = sim.moved_metrics(what)
    mine = [[c for c in cs if c.arm == arm and not c.aa_check] for cs in planted]
    wrong = sum(any(c.metric in moved and c.direction == "worse" for c in cs) for cs in mine)
    other = sum(any(c.metric not in moved for c in cs) for cs in mine)
    said = False
    for family in plan.families:
        if family.primary in moved:  # the families whose primary the effect moves
            said = True
            hit = sum(
                any(
                    c.arm == arm and c.metric == family.primary and c.direction == "better"
                    for c in cs
                )
                for cs in planted
            )
            lines.append(
                f"Planted {value:+g} on {what} of {arm}, {sweeps} sweeps: claimed better on "
                f"{family.primary} {sim.rate(hit, sweeps)}; claimed worse on what it moves "
                f"{sim.rate(wrong, sweeps)}; a claim on a metric it leaves alone "
                f"{sim.rate(other, sweeps)}"
            )
            prior = sum(
                any(
                    c.arm == arm
                    and c.metric == family.primary
                    and c.direction == "better"
                    and c.prior_only
                    for c in cs
                )
                for cs in planted
            )
            if what in ("char", sim.PRIOR) and hit:
                lines.append(
                    "  of those claims, marked a change of prior (not there once calibrated; "
                    f"{'most' if what == sim.PRIOR else 'few'} should be): {sim.rate(prior, hit)}"
                )
    if not said:  # (an effect on tasks no family's primary reads: the prefix-shaped probes)
        hit = sum(any(c.metric in moved and c.direction == "better" for c in cs) for cs in mine)
        lines.append(
            f"Planted {value:+g} on {what} of {arm}, {sweeps} sweeps: no family's primary moves "
            "with it (an exploratory metric is claimed only for an arm claimed on its family's "
            f"primary): claimed better on what it moves {sim.rate(hit, sweeps)}; claimed worse "
            f"on what it moves {sim.rate(wrong, sweeps)}; a claim on a metric it leaves alone "
            f"{sim.rate(other, sweeps)}"
        )
    others = sum(any(c.arm != arm and not c.aa_check for c in cs) for cs in planted)
    lines.append(
        f"  with it planted, a claim about another arm than {arm} (each false): "
        f"{sim.rate(others, sweeps)}"
    )
    lines.append(f"({time.time() - start:.0f} s)")
    return "\n".join(lines)


SIMULATED = "simulated_sweep.json"
"""The record at the root of a folder `--out` wrote: the settings it was simulated with"""


def write_sweep(
    runs: list[dict], out: str, overwrite: bool, settings: dict, plan: str | None = None
) -> None:
    """The runs written as a new folder `out`, built beside it and renamed into place (a crash
    leaves no half-written sweep), the analysis plan `plan` (None: the package's) registered in
    it first and named in each run's start (its sha256, as a launch's runs record it); a folder
    that is there is refused, unless it is empty, or is an earlier simulated sweep (it holds
    SIMULATED) and `overwrite` is given."""
    import shutil
    import tempfile

    from .runs.folder import write_json
    from .sweep.analysis import load_plan, plan_digest, register_plan

    out = os.path.abspath(out)
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        if not overwrite:
            raise ValueError(
                f"--out {out!r} exists and is not empty: a second sweep written into it would "
                "mix its runs with what is there (pass --overwrite to replace an earlier "
                "simulated sweep, or give a new folder)"
            )
        if not os.path.isfile(os.path.join(out, SIMULATED)):
            raise ValueError(
                f"--out {out!r} is not a simulated sweep (it has no {SIMULATED}): --overwrite "
                "replaces only an earlier simulated sweep; give a new folder"
            )
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    draft = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.", dir=parent)
    try:
        register_plan(draft, plan, by="python -m prefix_titan.simulate --out")
        # each run records the plan it was started under, as a launch's runs do
        sim.write(runs, draft, named=out, plan_sha256=plan_digest(load_plan(plan)))
        write_json(os.path.join(draft, SIMULATED), settings)
        if os.path.exists(out):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.old.", dir=parent)
            os.rename(out, os.path.join(old, "sweep"))
            os.rename(draft, out)
            shutil.rmtree(old)
        else:
            os.rename(draft, out)
    except BaseException:
        shutil.rmtree(draft, ignore_errors=True)
        raise


def main(argv: list[str] | None = None) -> None:
    p = Parser(
        prog="python -m prefix_titan.simulate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--out",
        type=path_arg,
        default=None,
        help="write one simulated sweep's run folders here (a new or empty folder)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier simulated sweep at --out (never a folder of other runs)",
    )
    p.add_argument("--calibrate", type=int, default=None, metavar="N", help="sweeps per rate")
    p.add_argument(
        "--effect",
        type=_effect,
        action="extend",
        nargs="+",
        default=None,
        metavar="ARM:WHAT=V",
        help="a planted effect: V raw accuracy points as a fraction on each task of WHAT (0.05 = "
        "+5 points; the report's char composite is chance-corrected, each probe's points over 1 - "
        "its chance: about 1.5 V), or nats for 'val CE'; WHAT = prior moves the character "
        "probes' accuracy by a change of prior alone (calibrated by the blank twins, no gain); "
        "several after one --effect, or the flag repeated",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument(
        "--arms",
        nargs="+",
        default=None,
        help="simulate these arms only (the plan's baseline among them; default: every arm, the "
        "built-in ones then sweep_arms.toml's), as `sweep launch --arms` and `power --arms` "
        "take them",
    )
    p.add_argument("--items", type=int, default=None, help="items per task (default: real counts)")
    p.add_argument(
        "--construction-cost",
        action="store_true",
        help="add to each arm's validation CE what its target costs by construction",
    )
    p.add_argument("--seed", type=int, default=0, help="the simulation's random seed")
    p.add_argument(
        "--plan", type=path_arg, default=None, help="the analysis plan (default: the package's)"
    )
    p.add_argument(
        "--root",
        type=path_arg,
        default=".",
        help="the project folder whose sweep_arms.toml adds arms to the built-in ones (default: "
        "here), as `sweep launch` and `power` read it",
    )
    p.add_argument(
        "--gold-mass",
        type=_gold_mass,
        action="extend",
        nargs="+",
        default=[],
        metavar="ARM=MASS",
        help="the mean gold mass of the target of an arm of one's own (the report's 'target "
        "gold mass' of one of its runs; `python -m prefix_titan.targets` shows a token's): the "
        "simulator needs it for each such arm it simulates (several after one --gold-mass, or "
        "the flag repeated). Its implied CE is then -log of that mean, below the runs' own "
        "(the mean over tokens of -log of each one's mass) wherever the tokens' masses differ: "
        "--implied-ce gives the runs' own",
    )
    p.add_argument(
        "--implied-ce",
        type=_implied_ce,
        action="extend",
        nargs="+",
        default=[],
        metavar="ARM=NATS",
        help="an arm's implied plain CE (the report's 'implied plain CE' of its runs: the mean "
        "over the validation tokens of -log of each one's gold mass), written as the simulated "
        "runs' implied CE and, with --construction-cost, added to their validation CE (default: "
        "-log of the arm's --gold-mass or known mass)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=min(8, os.cpu_count() or 1),
        help="processes for --calibrate (default: the CPUs, at most 8); the rates do not depend "
        "on it",
    )
    a = p.parse_args(argv)
    if a.out is None and a.calibrate is None:
        p.error("give --out DIR or --calibrate N")
    if a.calibrate is not None and a.calibrate < 1:
        p.error(f"--calibrate must be >= 1; got {a.calibrate}")
    if a.calibrate and a.construction_cost:
        p.error(
            "--construction-cost makes the validation CE family differ by design: not with "
            "--calibrate, which measures false claims under a global null"
        )
    if a.workers < 1:
        p.error(f"--workers must be >= 1; got {a.workers}")
    repeated = sorted({s for s in a.seeds if a.seeds.count(s) > 1})
    if repeated:
        p.error(f"--seeds must be distinct: {', '.join(map(str, repeated))} repeated")
    if any(s < 0 for s in a.seeds):
        p.error(f"--seeds must be >= 0; got {' '.join(map(str, a.seeds))}")
    if a.calibrate and len(a.seeds) < 2:
        p.error(
            "--calibrate needs --seeds with 2 or more seeds: with one, the training noise is not "
            f"measured and the report claims nothing (--seeds lists the seeds' values, e.g. "
            f"--seeds 1 2 3, as `sweep launch` takes them; got {' '.join(map(str, a.seeds))})"
        )
    if a.items is not None and a.items < 2:
        p.error(f"--items must be >= 2; got {a.items}")
    try:
        plan = load_plan(a.plan)
        specs = arms(a.root)  # the built-in arms and the project's own (its sweep_arms.toml)
        problems = plan_arm_problems(plan, {n: vars(s) for n, s in specs.items()})
        if problems:  # as `sweep launch` refuses it
            p.error(f"the analysis plan {a.plan or plan.source}: {'; '.join(problems)}")
        for flag, given in (("--gold-mass", a.gold_mass), ("--implied-ce", a.implied_ce)):
            stray = [n for n, _ in given if n not in specs]
            if stray:
                p.error(f"{flag} {', '.join(stray)}: no such arm; the arms: {', '.join(specs)}")
        if a.arms:  # (the plan checked against every arm, as a launch of some checks it)
            specs = pick_arms(specs, a.arms, a.root)
            if plan.baseline not in specs:
                p.error(
                    f"--arms leaves out the plan's baseline, {plan.baseline}: every comparison "
                    "is with it; name it among --arms"
                )
        masses = sim.known_masses(specs.values(), dict(a.gold_mass))
        unknown = [n for n in specs if n not in masses]
        if unknown:
            p.error(
                f"the simulator knows no target gold mass for {', '.join(unknown)}: give "
                "--gold-mass ARM=MASS for each (the report's 'target gold mass' of one of its "
                "runs), or leave it out of the simulated sweep with --arms (the arms to "
                "simulate); taking 1.0 would make such an arm plain CE"
            )
        for flag, given in (("--gold-mass", a.gold_mass), ("--implied-ce", a.implied_ce)):
            if unsimulated := [n for n, _ in given if n not in specs]:
                print(
                    f"note: {flag} {', '.join(unsimulated)}: not among the simulated --arms "
                    f"({', '.join(specs)}), not used",
                    file=sys.stderr,
                )
        base = sim.Sweep(
            arms=tuple(specs.values()),
            gold_mass=tuple(a.gold_mass),
            implied_ce=tuple((n, x) for n, x in a.implied_ce if n in specs),
        )
        if a.out:
            sweep = replace(
                base,
                seeds=tuple(a.seeds),
                effects=tuple(a.effect or ()),
                items=a.items,
                construction_cost=a.construction_cost,
            )
            args = sys.argv[1:] if argv is None else argv
            record = {"command": " ".join(["python -m prefix_titan.simulate", *args])}
            write_sweep(sim.simulate(sweep, a.seed), a.out, a.overwrite, record, a.plan)
            print(f"a simulated sweep written to {a.out}: python -m prefix_titan.report {a.out}")
        if a.calibrate:
            sweep = replace(base, seeds=tuple(a.seeds), items=a.items)
            compared = compared_arms(plan, {n: vars(s) for n, s in specs.items()})
            default = (
                DEFAULT_EFFECT if DEFAULT_EFFECT[0] in compared else (compared[0], "char", 0.05)
            )
            for effect in a.effect or [default]:
                print(calibrate(sweep, effect, plan, a.calibrate, a.seed, a.workers))
    except ValueError as e:
        p.refuse(str(e))


if __name__ == "__main__":
    sys.exit(main())
