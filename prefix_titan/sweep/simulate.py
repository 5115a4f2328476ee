"""Synthetic sweeps, for calibrating the report's decisions: runs made from a model of how
evaluations vary, as run records (what runs.load_run returns) or as run folders (what training
and evaluation write), so that analysis.analyse and report.report run on them unchanged.

The model, per task (logits; `Noise` holds the spreads):

    correct[run, step, item] ~ Bernoulli(g + (1 - g) * sigmoid(level + ability + easiness[item]
                                          + seed_item[seed, item] + model_item[run, item]))
    ability = seed[seed] + run[run] + run_task[run, task] + growth * step_index + shift[arm, task]

g is the guessing rate (1 / choices). Easiness is shared by every run; seed and seed_item by the
runs of one seed (what initialisation and data order share across arms: the pairing); run,
run_task and model_item are the run's own (training noise, and the items a model happens to
get). Each evaluated step keeps most of the run's answers (answer_keep) and draws the rest
again. shift is a planted effect: `effects` gives
it in accuracy points, solved for the logit shift that raises the arm's expected accuracy by
that much. Blank twins of the probes get no shift (they cannot read the word). The gold answer's
log-likelihood follows the same logit, so bits per byte moves with accuracy.

Validation rows: plain CE = ce_level + seed + run + row noise, plus, with construction_cost,
the plain CE the arm's target costs by construction (-log of its gold mass, GOLD_MASS); an
effect on "val CE" adds to it. The targets' gold masses are illustrative values of the right
order (prefix targets at small tau keep >= 0.99 on the gold), not measurements.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import numpy as np

from ..evaluation.harness import (
    DEFAULT_TASKS,
    EMBEDDING_PROBE,
    LIMIT_SAMPLING,
    LIMIT_SEED,
    SECONDARY_TASKS,
    write_items,
)
from ..evaluation.probes import BLANK_TASKS, CHOICES, ITEMS_PER_TASK, PREFIX_SHAPED, PROBE_TASKS
from ..objectives.spec import WEIGHTING, ObjectiveSpec
from ..runs.folder import (
    EVAL_RESULTS,
    METRICS_LOG,
    RUN_CONFIG,
    STARTS,
    write_atomically,
    write_json,
)
from .analysis import SIMULATED
from .configs import arm_specs, file_name
from .runs import group_arms, run_order


@dataclass(frozen=True)
class Task:
    items: int
    choices: int
    level: float
    """the mean logit of an item for a model at step 0 (sets the accuracy above guessing)"""


TASKS = {
    "hellaswag": Task(10042, 4, -3.2),
    "piqa": Task(1838, 2, -1.8),
    "winogrande_debiased": Task(1267, 2, -4.5),
    "arc_easy": Task(2376, 4, -1.8),
    "arc_challenge": Task(1172, 4, -4.5),
    "sciq": Task(1000, 4, -0.2),
    **{t: Task(ITEMS_PER_TASK, CHOICES[t], -3.0) for t in PROBE_TASKS},
    **{t: Task(ITEMS_PER_TASK, CHOICES[t[: -len("_blank")]], -4.5) for t in BLANK_TASKS},
}
"""The evaluated tasks with their real item counts and choices"""

GROUPS = {
    "char": [t for t in PROBE_TASKS if t not in PREFIX_SHAPED],
    "prefix-shaped": list(PREFIX_SHAPED),
    "downstream": list(DEFAULT_TASKS),
}
"""Names an effect may give for several tasks at once"""
PRIOR = "prior"
"""The effect that changes only the model's prior over the character probes' choices: their
accuracy moves, and each item calibrated by its blank twin does not (what an objective that
flattens the output distribution does, with no more knowledge of the letters)"""


@dataclass(frozen=True)
class Noise:
    easiness: float = 1.5
    """sd of the items' easiness (logits), shared by every run"""
    seed: float = 0.05
    """sd of a seed's ability shift, shared by every arm of that seed"""
    seed_item: float = 0.3
    """sd of a seed's per-item component (what its data order taught), shared by its arms"""
    run: float = 0.03
    """sd of a run's own ability (training noise), on every task"""
    run_task: float = 0.03
    """sd of a run's own ability on one task"""
    model_item: float = 0.5
    """sd of a run's own per-item component"""
    growth: float = 0.1
    """ability gained per evaluated checkpoint"""
    answer_keep: float = 0.8
    """the chance an item keeps its draw from the run's previous checkpoint: a model's answers at
    neighbouring checkpoints are alike (Pythia-160M and -410M vary 0.5-0.9 points between late
    checkpoints on PIQA and WinoGrande; here PIQA varies 0.5 points between checkpoints, 0.9
    with fresh draws at each)"""
    val_seed: float = 0.01
    """sd of a seed's validation-CE shift (nats), shared by its arms"""
    val_run: float = 0.01
    """sd of a run's own validation-CE shift (nats)"""
    val_row: float = 0.003
    """sd of a validation row's own noise (nats)"""


GOLD_MASS = {
    "ce": 1.0,
    "label_smoothing": 0.9,
    **{
        f"prefix_tau{t}": m
        for t, m in zip((0.05, 0.1, 0.2, 0.5, 1.0, 2.0), (0.9999, 0.999, 0.996, 0.97, 0.9, 0.8))
    },
    **{
        f"prefix_norm_tau{t}": m
        for t, m in zip((0.05, 0.1, 0.2, 0.5, 1.0, 2.0), (0.95, 0.9, 0.79, 0.6, 0.45, 0.38))
    },
}
"""Illustrative mean gold mass of each arm's target (not measured: Llama-3's vocabulary, over its
tokens with text, gives prefix_tau1.0 0.80, prefix_tau2.0 0.61, prefix_norm_tau0.05 0.987,
prefix_norm_tau1.0 0.35, prefix_norm_tau2.0 0.29; a sweep's own, the report's "target gold mass",
goes in with --gold-mass)"""


def known_masses(specs, given: dict[str, float]) -> dict[str, float]:
    """{arm: gold mass} of the arms of `specs` whose mass is known: `given`, GOLD_MASS, that of
    the same target without position weighting (objective.position_gamma weights the tokens and
    leaves each target alone: prefix_tau0.5_gamma0.99 keeps prefix_tau0.5's), or label
    smoothing's at any epsilon (1 - epsilon, as GOLD_MASS's: the epsilon / V it puts back on the
    gold is negligible at a real vocabulary)."""
    import dataclasses

    out = {}
    for spec in specs:
        name = spec.arm_name()
        unweighted = {f.name: f.default for f in ObjectiveSpec.fields_of(WEIGHTING)}
        plain = dataclasses.replace(spec, **unweighted).arm_name()
        mass = given.get(name, GOLD_MASS.get(name, given.get(plain, GOLD_MASS.get(plain))))
        if mass is None and spec.name == "label_smoothing" and spec.epsilon is not None:
            mass = 1.0 - spec.epsilon
        if mass is not None:
            out[name] = mass
    return out


@dataclass(frozen=True)
class Sweep:
    """What to simulate."""

    arms: tuple[ObjectiveSpec, ...] = tuple(arm_specs())
    seeds: tuple[int, ...] = (1, 2, 3)
    steps: tuple[int, ...] = (1200, 2400, 3600)
    """the evaluated checkpoints (validation rows every 300 steps up to the last)"""
    effects: tuple[tuple[str, str, float], ...] = ()
    """(arm, task or group or "val CE" or PRIOR, effect): accuracy points as a fraction (0.05 =
    +5 points), or nats for "val CE"; groups: GROUPS; PRIOR: the character probes' accuracy
    moved by a change of prior alone"""
    tasks: tuple[str, ...] = (*DEFAULT_TASKS, *SECONDARY_TASKS, *PROBE_TASKS, *BLANK_TASKS)
    items: int | None = None
    """items per task (None: each task's real count); the error rates do not depend on it"""
    noise: Noise = Noise()
    construction_cost: bool = False
    """add to each arm's validation CE what its target costs by construction"""
    embedding_probe: bool = True
    ce_level: float = 3.6
    gold_mass: tuple[tuple[str, float], ...] = ()
    """(arm, mean gold mass of its target) for arms GOLD_MASS does not know"""
    implied_ce: tuple[tuple[str, float], ...] = ()
    """(arm, its target's implied plain CE in nats: the mean over the validation tokens of -log
    of each token's gold mass, the report's "implied CE") where given; an arm not given one has
    -log of its mean gold mass, which is below that mean wherever the tokens' masses differ
    (Jensen's inequality: 0.1456 for a mean mass of 0.8645 whose tokens imply 0.1513)"""


def _effects(sweep: Sweep) -> dict[tuple[str, str], float]:
    names = {s.arm_name() for s in sweep.arms}
    out: dict[tuple[str, str], float] = {}
    for arm, what, value in sweep.effects:
        if arm not in names:
            raise ValueError(
                f"effect on {arm!r}: no such arm; the arms: {', '.join(sorted(names))}"
            )
        tasks = GROUPS.get(what, GROUPS["char"] if what == PRIOR else [what])
        for t in tasks:
            if t != "val CE" and t not in sweep.tasks:
                raise ValueError(
                    f"effect on {what!r}: not a simulated task or group; allowed: "
                    f"{', '.join(sweep.tasks)}, {', '.join(GROUPS)}, {PRIOR}, val CE"
                )
            key = (arm, f"{PRIOR} {t}" if what == PRIOR else t)
            out[key] = out.get(key, 0.0) + value
    return out


_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(24)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


def _expected_accuracy(task: Task, logits: np.ndarray, sd: float) -> float:
    g = 1 / task.choices
    p = logits[:, None] + sd * _NODES[None, :]
    # 1 / (1 + exp(-p)), in place (logit_shift's bisection calls this 61 times per effect)
    np.negative(p, out=p)
    np.exp(p, out=p)
    p += 1
    np.divide(1, p, out=p)
    return float(g + (1 - g) * (p @ _WEIGHTS).mean())


def _softplus(m: np.ndarray) -> np.ndarray:
    """log(1 + e^m), np.logaddexp(0, m) to its last bits (the same formula; which bits depend on
    the numpy release's exp and log1p), in numpy's vector exp and log1p (logaddexp's were
    scalar)."""
    return np.log1p(np.exp(-np.abs(m))) + np.maximum(m, 0)


def logit_shift(task: Task, easiness: np.ndarray, sd: float, points: float) -> float:
    """The ability shift that raises the expected accuracy on these items by `points`."""
    base = _expected_accuracy(task, task.level + easiness, sd)
    chance = 1 / task.choices
    if not chance < base + points < 1:
        raise ValueError(
            f"an effect of {points:+g} from accuracy {base:.3f} leaves "
            f"({chance:.3g}, 1): a model guessing among its {task.choices} choices scores "
            f"{chance:.3g}, so no model scores below that on average"
        )
    lo, hi = -20.0, 20.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if _expected_accuracy(task, task.level + easiness + mid, sd) < base + points:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def implied_ces(sweep: Sweep, masses: dict[str, float]) -> dict[str, float]:
    """{arm: its target's implied plain CE}: the one Sweep.implied_ce gives, else -log of its
    gold mass in `masses`. One given is refused where it names no arm of the sweep, or is below
    -log of the arm's mean gold mass (the mean of -log over tokens is never below it)."""
    names = {s.arm_name() for s in sweep.arms}
    given = dict(sweep.implied_ce)
    out = {arm: -math.log(mass) for arm, mass in masses.items()}
    for arm, nats in given.items():
        if arm not in names:
            raise ValueError(
                f"implied CE of {arm!r}: no such arm; the arms: {', '.join(sorted(names))}"
            )
        floor = out.get(arm)
        if floor is not None and nats < floor - 1e-9:
            raise ValueError(
                f"implied CE of {arm!r}: {nats:g} nats is below -log of its mean gold mass "
                f"({masses[arm]:g}: {floor:.4f}), which the mean over the tokens of -log of "
                "each one's gold mass never is: give both from the same runs' report"
            )
        out[arm] = nats
    return out


def simulate(sweep: Sweep = Sweep(), seed: int = 0) -> list[dict]:
    """One synthetic sweep as run records (runs.load_run's form, folders named "sim/...";
    each step's `items` holds arrays: correct, gold_loglik, gold_bytes per item)."""
    rng = np.random.default_rng(seed)
    noise = sweep.noise
    effects = _effects(sweep)
    masses = known_masses(sweep.arms, dict(sweep.gold_mass))
    unknown = [s.arm_name() for s in sweep.arms if s.arm_name() not in masses]
    if unknown:
        raise ValueError(
            f"the simulator knows no target gold mass for {', '.join(unknown)} (GOLD_MASS): give "
            "Sweep(gold_mass=((arm, mass), ...)); taking 1.0 would make such an arm plain CE, "
            "compared with ce as an A/A check"
        )
    implied = implied_ces(sweep, masses)
    # Every task's items in one vector; `starts` splits it back.
    tasks = list(sweep.tasks)
    sizes = np.array([sweep.items or TASKS[t].items for t in tasks])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    which = np.repeat(np.arange(len(tasks)), sizes)
    n = int(sizes.sum())
    level = np.array([TASKS[t].level for t in tasks])[which]
    guess = np.array([1 / TASKS[t].choices for t in tasks])[which]
    easiness = rng.normal(0, noise.easiness, n)
    gold_bytes = rng.integers(8, 120, n)
    bytes_per_task = np.add.reduceat(gold_bytes, starts)
    item_sd = math.hypot(noise.seed_item, noise.model_item)
    shift, prior = {}, {}
    for (arm, t), v in effects.items():
        if t != "val CE":
            shifts, t = (prior, t[len(PRIOR) + 1 :]) if t.startswith(f"{PRIOR} ") else (shift, t)
            i = tasks.index(t)
            part = slice(starts[i], starts[i] + sizes[i])
            try:
                shifts.setdefault(arm, np.zeros(len(tasks)))[i] += logit_shift(
                    TASKS[t], easiness[part], item_sd, v
                )
            except ValueError as e:
                raise ValueError(f"--effect {arm}: {t}: {e}") from None
    twinned = [t for t in PROBE_TASKS if t in tasks and f"{t}_blank" in tasks]
    char = GROUPS["char"]
    val_steps = list(range(300, sweep.steps[-1] + 1, 300))
    parts = {t: slice(starts[i], starts[i] + sizes[i]) for i, t in enumerate(tasks)}
    unguessed, minus_bytes = 1 - guess, -gold_bytes
    runs = []
    for s in sweep.seeds:
        seed_part = rng.normal(0, noise.seed) + rng.normal(0, noise.seed_item, n)
        seed_val = rng.normal(0, noise.val_seed)
        seed_emb = rng.normal(0, 0.005)
        for spec in sweep.arms:
            arm = spec.arm_name()
            own = rng.normal(0, noise.run) + rng.normal(0, noise.run_task, len(tasks))
            if arm in shift:
                own = own + shift[arm]
            logit0 = level + easiness + seed_part + own[which] + rng.normal(0, noise.model_item, n)
            moved = prior[arm][which] if arm in prior else 0.0
            steps = {}
            u = rng.random(n)
            for k, step in enumerate(sweep.steps):
                logit = logit0 + noise.growth * k
                if k:  # most answers carry over from the previous checkpoint
                    u = np.where(rng.random(n) < noise.answer_keep, u, rng.random(n))
                # each item calibrated by its blank twin: what the prior moved, it does not
                # (drawn only where a probe has its twin; alike where the prior is not moved)
                calibrated = None
                minus = -logit
                if twinned or arm not in prior:
                    calibrated = u < guess + unguessed / (1 + np.exp(minus))
                if arm in prior:
                    correct = u < guess + unguessed / (1 + np.exp(-(logit + moved)))
                else:
                    correct = calibrated
                # the gold answer's log-likelihood: bytes x (a floor + how unsure the model is)
                loglik = minus_bytes * (0.5 + 0.3 * _softplus(minus))
                acc = np.add.reduceat(correct, starts) / sizes
                bpb = -np.add.reduceat(loglik, starts) / bytes_per_task / math.log(2)
                results = {t: {"acc,none": float(acc[i])} for i, t in enumerate(tasks)}
                if sweep.embedding_probe:
                    gain = sum(effects.get((arm, t), 0.0) for t in char) / len(char)
                    results[EMBEDDING_PROBE] = {
                        "input_letters,none": 0.35 + gain + seed_emb + rng.normal(0, 0.005),
                        "input_letters_shuffled_labels,none": 0.1 + rng.normal(0, 0.005),
                        "output_letters,none": 0.3 + gain + seed_emb + rng.normal(0, 0.005),
                    }
                steps[step] = {
                    "results": results,
                    "items": {
                        t: {
                            "correct": correct[part],
                            "gold_loglik": loglik[part],
                            "gold_bytes": gold_bytes[part],
                            **({"calibrated": calibrated[part]} if t in twinned else {}),
                        }
                        for t, part in parts.items()
                    },
                    "calibrated": {t: float(calibrated[parts[t]].mean()) for t in twinned},
                    "limits": {t: sweep.items for t in results},
                    "versions": {t: 1 for t in results},
                    "files": {},
                    "bits_per_byte": {t: float(bpb[i]) for i, t in enumerate(tasks)},
                }
            mass = masses[arm]
            cost = implied[arm] if sweep.construction_cost else 0.0
            base = seed_val + rng.normal(0, noise.val_run) + cost + effects.get((arm, "val CE"), 0)
            validation = {}
            for i, step in enumerate(val_steps):
                ce = (
                    sweep.ce_level
                    + 0.5 * (1 - (i + 1) / len(val_steps))
                    + base
                    + rng.normal(0, noise.val_row)
                )
                validation[step] = {
                    "validation_plain_ce": ce,
                    "validation_top1": 0.3 - 0.05 * (ce - sweep.ce_level) + rng.normal(0, 0.002),
                    "validation_ece": 0.02 + abs(rng.normal(0, 0.002)),
                    "validation_brier": 0.8 + 0.02 * (ce - sweep.ce_level) + rng.normal(0, 0.002),
                    "validation_prefix_mass": 0.05 + rng.normal(0, 0.002),
                    "validation_target_gold_mass": mass,
                    "validation_implied_ce": implied[arm],
                }
            runs.append(_record(spec, s, steps, validation))
    return sorted(runs, key=lambda r: (run_order(r), r["seed"]))  # as runs.find_runs orders them


def _record(spec: ObjectiveSpec, seed: int, steps: dict, validation: dict) -> dict:
    folder = os.path.join("sim", file_name(spec.arm_name()), f"seed{seed}")
    config = {
        "objective": spec.objective(),
        "debug": {"seed": seed},
        "job": {"dump_folder": folder, "description": SIMULATED},
    }
    return {
        "folder": folder,
        "name": spec.arm_name(),
        "seed": seed,
        "config": config,
        "objective": vars(spec),
        "val": {s: r["validation_plain_ce"] for s, r in validation.items()},
        "validation": validation,
        "steps": steps,
        "last_step": max([*steps, *validation], default=None),
    }


group = group_arms  # {arm: {seed: run}} in the sweep's order, every arm at the same seeds


def write(
    runs: list[dict], root: str, named: str | None = None, plan_sha256: str | None = None
) -> list[str]:
    """The runs as run folders under root, <arm>/seed<S> with <arm> written as `sweep launch`
    writes it (configs.file_name: an import path's `:` as `-`), each with run_config.json, the
    metrics log with the validation rows, and hf/step-N/eval_results.json with its per-item outcomes), as
    training and `eval` write them; their configs name them under `named` (default: root), where
    a folder built elsewhere is to be moved; `plan_sha256`: the plan each run was started under,
    recorded in its one start as a sweep launch's runs record it (None: none, as by hand).
    Returns the folders."""
    folders = []
    for r in runs:
        arm = file_name(r["name"])
        folder = os.path.join(root, arm, f"seed{r['seed']}")
        os.makedirs(folder, exist_ok=True)
        final = os.path.join(named or root, arm, f"seed{r['seed']}")
        config = {**r["config"], "job": {**r["config"]["job"], "dump_folder": final}}
        if plan_sha256 is not None:
            config[STARTS] = [{"at": "simulated", "plan_sha256": plan_sha256}]
        write_json(os.path.join(folder, RUN_CONFIG), config)
        rows = [json.dumps({"step": step, **row}) + "\n" for step, row in r["validation"].items()]
        write_atomically(os.path.join(folder, METRICS_LOG), "".join(rows))
        for step, e in r["steps"].items():
            out = os.path.join(folder, "hf", f"step-{step}")
            os.makedirs(out, exist_ok=True)
            limit = next(iter(e["limits"].values()), None)
            sample = {  # (as `eval --limit N` records its seeded sample: not "the first N")
                "limit": limit,
                "limit_seed": None if limit is None else LIMIT_SEED,
                "limit_sampling": None if limit is None else LIMIT_SAMPLING,
            }
            write_json(
                os.path.join(out, EVAL_RESULTS),
                {"results": e["results"], **sample, "versions": e["versions"]},
            )
            write_items(out, _step_rows(e["items"]))
        folders.append(folder)
    return folders


def _step_rows(items: dict) -> dict[str, list[dict]]:
    """One step's item rows by task, as eval writes them. A probe simulated with its blank twin
    gets every choice's log-likelihood on both (the gold at doc_id % choices), made so that the
    calibration (harness.calibrated_accuracy) finds the simulated calibrated outcome, the blank's
    top choice is its simulated outcome and the gold's keeps its simulated value; the other
    choices' are made up to that end (the probe's own top choice is the calibrated outcome's)."""
    rows = {
        t: [
            {"doc_id": i, "correct": float(c), "gold_loglik": float(ll), "gold_bytes": int(b)}
            for i, (c, ll, b) in enumerate(zip(v["correct"], v["gold_loglik"], v["gold_bytes"]))
        ]
        for t, v in items.items()
    }
    for t, v in items.items():
        if "calibrated" not in v:
            continue
        k = TASKS[t].choices
        for r, b, right in zip(rows[t], rows[f"{t}_blank"], v["calibrated"]):
            gold = r["doc_id"] % k
            blank = [b["gold_loglik"] - 1.0 - 0.5 * c for c in range(k)]
            blank[gold] = b["gold_loglik"]
            if not b["correct"]:  # the blank's own outcome: another choice on top
                blank[(gold + 1) % k] = b["gold_loglik"] + 1.0
            lift = r["gold_loglik"] - b["gold_loglik"]  # the gold's: the task's less the blank's
            gain = [lift - 1.0] * k
            gain[gold] = lift
            if not right:
                gain[(gold + 1) % k] = lift + 1.0
            r.update(gold=gold, logliks=[x + y for x, y in zip(blank, gain)])
            b.update(gold=gold, logliks=blank)
    return rows


def moved_metrics(what: str) -> set[str]:
    """The report's metrics that an effect on `what` (a task, a GROUPS name or "val CE") moves:
    the tasks themselves, their bits per byte and the composites built from them."""
    if what == "val CE":  # (the simulated validation rows move top-1 and Brier with the CE)
        return {"val CE", "val CE excess", "val top1", "val Brier"}
    if what == PRIOR:  # the accuracies, not what calibration leaves of them
        return set(GROUPS["char"]) | {"char composite", "char acc", "char acc - blank"}
    tasks = set(GROUPS.get(what, [what]))
    out = tasks | {f"{t} bits/byte" for t in tasks}
    if tasks & set(GROUPS["char"]):
        out |= {"char composite", "char acc", "emb letters, in", "emb letters, out"}
    if tasks & set(GROUPS["prefix-shaped"]):
        out.add("prefix-shaped acc")
    if tasks & set(GROUPS["downstream"]):
        out |= {"downstream bits/byte", "downstream acc"}
    return out


def _claims_of(sweep: Sweep, plan, seed: int, i: int) -> list:
    from .analysis import analyse

    return analyse(group(simulate(sweep, seed=(seed, i))), plan, answer=False).claims


def claims(sweep: Sweep, plan, sweeps: int, seed: int = 0, workers: int = 1) -> list[list]:
    """The report's claims (analysis.analyse, the A/A checks' included) on `sweeps` simulated
    sweeps: one list of Comparison per sweep. Sweep i draws from (seed, i) alone, so `workers`
    processes (started afresh, not forked) give the same lists as one."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers}")
    if workers == 1 or sweeps < 2 * workers:
        return [_claims_of(sweep, plan, seed, i) for i in range(sweeps)]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        chunk = max(1, sweeps // (4 * workers))
        return list(
            pool.map(partial(_claims_of, sweep, plan, seed), range(sweeps), chunksize=chunk)
        )


def rate(hits: int, n: int) -> str:
    """hits / n as a percentage with its exact (Clopper-Pearson) 95% interval."""
    from scipy.stats import beta

    low = beta.ppf(0.025, hits, n - hits + 1) if hits else 0.0
    high = beta.ppf(0.975, hits + 1, n - hits) if hits < n else 1.0
    return f"{100 * hits / n:.1f}% [{100 * low:.1f}, {100 * high:.1f}] ({hits}/{n})"


def familywise(found: list[list], plan) -> dict[str, int]:
    """Per family of the plan, the number of sweeps with at least one claim about the objective
    (the A/A checks excepted): under a global null, every such claim is false."""
    return {
        f.name: sum(any(c.family == f.name and not c.aa_check for c in cs) for cs in found)
        for f in plan.families
    }
