"""The sweep's answer, with its uncertainty: `report(runs_dir)` writes markdown tables, a verdict
and plots from a folder of runs (runs.py reads them). The command is `python -m prefix_titan.report`
(prefix_titan/report.py, whose docstring says what the report holds and checks)."""

from __future__ import annotations

import os
from statistics import median

import numpy as np

from ..evaluation.harness import DEFAULT_TASKS, EMBEDDING_PROBE, SECONDARY_TASKS, primary_metric
from ..evaluation.probes import PREFIX_SHAPED, PROBE_TASKS
from .runs import find_runs, group_arms, invariant_violations
from .stats import (
    BOOTSTRAP_RESAMPLES,
    Interval,
    paired_bootstrap,
    paired_over_seeds,
    t_interval,
)

DOWNSTREAM = DEFAULT_TASKS
BASELINES = ("label_smoothing", "ce")


def _metric(evals: dict, task: str) -> float | None:
    m = evals.get(task, {})
    return m.get(f"{primary_metric(task, m)},none")


def _probe_mean(evals: dict, key: str, tasks) -> float | None:
    values = [evals[t][key] for t in tasks if t in evals and key in evals[t]]
    return sum(values) / len(values) if values else None


# The probes whose answer is not a vocabulary prefix of the word carry the character verdict;
# the prefix-shaped ones, which prefix targets favour without any knowledge of the word, apart.
CHAR_PROBES = [t for t in PROBE_TASKS if t not in PREFIX_SHAPED]
CHAR_MEANS = {
    "char acc": (CHAR_PROBES, "acc,none"),
    "char acc, blank": ([f"{t}_blank" for t in CHAR_PROBES], "acc,none"),
    "char bits/byte": (CHAR_PROBES, "bits_per_byte,none"),
    "prefix-shaped acc": (list(PREFIX_SHAPED), "acc,none"),
    "prefix-shaped acc, blank": ([f"{t}_blank" for t in PREFIX_SHAPED], "acc,none"),
}
# The embedding probe's letter macro-F1 (evaluation/embedding_probe.py), where it was run.
EMBEDDING = {"emb letters, in": "input_letters,none", "emb letters, out": "output_letters,none"}
# (column, lower is better, family): the per-arm table's metrics.
SUMMARY = [
    ("val CE", True, "validation CE"),
    *[(t, False, "downstream tasks") for t in DOWNSTREAM],
    *[(f"{t} bits/byte", True, "downstream tasks") for t in DOWNSTREAM],
    *[(t, False, "secondary tasks") for t in SECONDARY_TASKS],
    ("char acc", False, "character probes"),
    ("char acc, blank", False, "character probes"),
    ("char bits/byte", True, "character probes"),
    ("prefix-shaped acc", False, "prefix-shaped probes"),
    ("prefix-shaped acc, blank", False, "prefix-shaped probes"),
    *[(name, False, "embedding probe") for name in EMBEDDING],
]
# The paired comparisons: validation CE, each downstream task and each probe.
COMPARED = [
    ("val CE", True, "validation CE"),
    *[(t, False, "downstream tasks") for t in DOWNSTREAM],
    *[(f"{t} bits/byte", True, "downstream tasks") for t in DOWNSTREAM],
    *[(t, False, "secondary tasks") for t in SECONDARY_TASKS],
    *[(t, False, "character probes") for t in CHAR_PROBES],
    *[(t, False, "prefix-shaped probes") for t in PREFIX_SHAPED],
    *[(name, False, "embedding probe") for name in EMBEDDING],
]
FAMILIES = (
    "validation CE",
    "downstream tasks",
    "secondary tasks",
    "character probes",
    "prefix-shaped probes",
    "embedding probe",
)
LOWER_IS_BETTER = {m for m, low, _ in SUMMARY + COMPARED if low}
# Compared item by item as well: the accuracies (per-item outcomes are correct or not).
ITEM_METRICS = [
    m
    for m, _, family in COMPARED
    if family not in ("validation CE", "embedding probe") and not m.endswith("bits/byte")
]


def values(run: dict) -> dict:
    """{metric: value or None} of one run."""
    out = {"val CE": run["val"][max(run["val"])] if run["val"] else None}
    for task in [*DOWNSTREAM, *SECONDARY_TASKS, *PROBE_TASKS]:
        out[task] = _metric(run["evals"], task)
    for task in DOWNSTREAM:
        out[f"{task} bits/byte"] = run["bits_per_byte"].get(task)
    for name, (tasks, key) in CHAR_MEANS.items():
        out[name] = _probe_mean(run["evals"], key, tasks)
    probe = run["evals"].get(EMBEDDING_PROBE, {})
    for name, key in EMBEDDING.items():
        out[name] = probe.get(key)
    return out


def per_seed(arm: dict[int, dict], metric: str) -> dict[int, float]:
    return {s: v for s, r in arm.items() if (v := r["values"][metric]) is not None}


def item_matrix(arm: dict[int, dict], task: str, seeds: list[int], doc_ids: list[int]):
    return np.array([[arm[s]["items"][task][i] for i in doc_ids] for s in seeds])


def item_difference(arm: dict, base: dict, task: str) -> Interval | None:
    """The paired bootstrap over the items both arms have at every seed (None: no items)."""
    seeds = sorted(set(arm) & set(base))
    tables = [r["items"].get(task) for s in seeds for r in (arm[s], base[s])]
    if not seeds or any(not t for t in tables):
        return None
    doc_ids = sorted(set.intersection(*(set(t) for t in tables)))
    if not doc_ids:
        return None
    return paired_bootstrap(
        item_matrix(arm, task, seeds, doc_ids), item_matrix(base, task, seeds, doc_ids)
    )


def _num(v: float, signed: bool = False) -> str:
    return f"{v:+.4f}" if signed else f"{v:.4f}"


def cell(iv: Interval | None, signed: bool = False, lower_is_better: bool = False) -> str:
    if iv is None:
        return "-"
    if iv.low is None:
        return f"{_num(iv.mean, signed)} (n=1)"
    mark = ""
    if signed and iv.excludes_zero:
        mark = " ▲" if (iv.mean < 0) == lower_is_better else " ▼"
    return f"{_num(iv.mean, signed)} [{_num(iv.low, signed)}, {_num(iv.high, signed)}]{mark}"


def summary_table(arms: dict) -> str:
    names = [m for m, _, _ in SUMMARY]
    lines = ["| arm | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for name, arm in arms.items():
        cells = []
        for m in names:
            v = per_seed(arm, m)
            cells.append(cell(t_interval(v.values()) if v else None))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def differences(arms: dict, base: str) -> dict:
    """{arm: {metric: (over seeds, over items)}} for every arm but `base`."""
    out = {}
    for name, arm in arms.items():
        if name == base:
            continue
        out[name] = {}
        for m, _, _ in COMPARED:
            seeds = paired_over_seeds(per_seed(arm, m), per_seed(arms[base], m))
            items = item_difference(arm, arms[base], m) if m in ITEM_METRICS else None
            out[name][m] = (seeds, items)
    return out


def difference_table(diffs: dict, which: int) -> str:
    metrics = [m for m, _, _ in COMPARED if which == 0 or m in ITEM_METRICS]
    lines = ["| arm | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
    for name, row in diffs.items():
        cells = [cell(row[m][which], True, m in LOWER_IS_BETTER) for m in metrics]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def direction(seeds: Interval | None, items: Interval | None, lower: bool) -> str | None:
    """'better', 'worse' or None (inconclusive). With several seeds a difference counts when its
    interval over seeds excludes zero and, where items exist, so does the one over items, in the
    same direction; with one seed, the items' interval alone decides."""
    tests = [iv for iv in (seeds, items) if iv is not None and iv.low is not None]
    if not tests or not all(iv.excludes_zero for iv in tests):
        return None
    signs = {(iv.mean < 0) == lower for iv in tests}
    return None if len(signs) > 1 else ("better" if signs.pop() else "worse")


def verdict(diffs: dict, base: str, n_seeds: int) -> list[str]:
    lines = []
    for family in FAMILIES:
        found = {"better": [], "worse": []}
        inconclusive = 0
        for name, row in diffs.items():
            for m, lower, fam in COMPARED:
                if fam != family:
                    continue
                seeds, items = row[m]
                if seeds is None and items is None:
                    continue
                d = direction(seeds, items, lower)
                if d is None:
                    inconclusive += 1
                    continue
                where = "" if family == "validation CE" else f" on {m}"
                iv = items if items is not None and (seeds is None or seeds.low is None) else seeds
                found[d].append(f"{name}{where} ({cell(iv, True, lower).rstrip(' ▲▼')})")
        parts = [
            f"better than {base}: {'; '.join(found['better']) or 'none'}",
            f"worse: {'; '.join(found['worse']) or 'none'}",
            f"inconclusive: {inconclusive} comparison{'s' if inconclusive != 1 else ''}",
        ]
        lines.append(f"- **{family}**: " + ". ".join(parts) + ".")
    if n_seeds == 1:
        lines.append(
            "- One seed: training noise is not measured, so the downstream and probe verdicts "
            "rest on the items alone and validation CE has no interval; run more seeds "
            "(`python -m prefix_titan.sweep launch --seeds ...`)."
        )
    return lines


def power_note(diffs: dict, arms: dict) -> list[str]:
    """The median half-width of the intervals against the baseline, per metric."""
    n_seeds = len(next(iter(arms.values())))
    lines = []
    for m, _, _ in COMPARED:
        seed_w = [
            w for row in diffs.values() if row[m][0] and (w := row[m][0].half_width) is not None
        ]
        item_w = [row[m][1].half_width for row in diffs.values() if row[m][1] is not None]
        n_items = max((row[m][1].n for row in diffs.values() if row[m][1] is not None), default=0)
        parts = []
        if seed_w:
            parts.append(f"±{median(seed_w):.4f} over {n_seeds} seeds")
        if item_w:
            parts.append(f"±{median(item_w):.4f} over {n_items:,} items × {n_seeds} seeds")
        if parts:
            lines.append(f"- {m}: " + "; ".join(parts))
    return lines


def plots(arms: dict, out: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def objective(arm):
        return next(iter(arm.values()))["objective"]

    baselines = {n: a for n, a in arms.items() if objective(a)["name"] in BASELINES}
    sweeps = {
        norm: sorted(
            (
                a
                for a in arms.values()
                if objective(a)["name"] == "prefix"
                and objective(a)["normalize"] == norm
                and objective(a).get("position_gamma") is None
                and objective(a)["support"] == "prefix"
            ),
            key=lambda a: objective(a)["tau"],
        )
        for norm in (False, True)
    }

    def against_tau(ax, metric, title):
        for norm, arms_ in sweeps.items():
            pts = [
                (objective(a)["tau"], t_interval(v.values()))
                for a in arms_
                if (v := per_seed(a, metric))
            ]
            if pts:
                taus = [t for t, _ in pts]
                means = [iv.mean for _, iv in pts]
                err = [iv.half_width or 0.0 for _, iv in pts]
                ax.errorbar(
                    taus,
                    means,
                    yerr=err,
                    marker="o",
                    capsize=3,
                    label="normalized" if norm else "unnormalized",
                )
        for (name, arm), color in zip(baselines.items(), ("gray", "tan")):
            v = per_seed(arm, metric)
            if v:
                iv = t_interval(v.values())
                ax.axhline(iv.mean, color=color, linestyle="--", label=name)
                if iv.low is not None:
                    ax.axhspan(iv.low, iv.high, color=color, alpha=0.25)
        ax.set_xscale("log")
        ax.set_xlabel("τ")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)

    files = []
    fig, axes = plt.subplots(1, len(DOWNSTREAM), figsize=(4 * len(DOWNSTREAM), 3.2))
    for ax, task in zip(axes, DOWNSTREAM):
        against_tau(ax, task, task)
    files.append(_save(fig, out, "accuracy_vs_tau.png"))

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, arm in arms.items():
        steps = sorted(set.intersection(*(set(r["val"]) for r in arm.values())))
        if steps:
            mean = [float(np.mean([r["val"][s] for r in arm.values()])) for s in steps]
            ax.plot(steps, mean, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("validation plain CE (mean over seeds)")
    ax.legend(fontsize=6, ncol=2)
    files.append(_save(fig, out, "validation_ce.png"))

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    against_tau(axes[0], "char acc", "character probes (not prefix-shaped): accuracy")
    against_tau(axes[1], "char bits/byte", "character probes (not prefix-shaped): bits/byte")
    files.append(_save(fig, out, "char_probes_vs_tau.png"))
    return files


def _save(fig, out: str, name: str) -> str:
    path = os.path.join(out, name)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def report(runs_dir: str, out: str | None = None) -> str:
    runs = find_runs(runs_dir)
    for run in runs:
        run["values"] = values(run)  # every metric of the run, once
    arms = group_arms(runs)
    seeds = sorted(next(iter(arms.values())))
    out = out or os.path.join(runs_dir, "report")
    os.makedirs(out, exist_ok=True)
    lines = [
        f"# Sweep report: {len(arms)} arms × {len(seeds)} seed{'s' if len(seeds) > 1 else ''} "
        f"({', '.join(map(str, seeds))}) under `{runs_dir}`",
        "",
        "## Per arm",
        "",
        summary_table(arms),
        "",
        "Mean over seeds [95% t-interval] (n=1: one seed, no interval). val CE: final validation "
        "plain cross-entropy. Downstream: acc_norm where the task has it, else acc (0-shot). "
        "char: mean over the character probes whose answer is not a vocabulary prefix of the "
        f"word ({', '.join(CHAR_PROBES)}); prefix-shaped: {', '.join(PREFIX_SHAPED)}, which "
        "prefix targets favour without knowing the word; blank: the same probes with the word "
        "replaced by a placeholder (what is answered without reading it).",
        "",
    ]
    present = [b for b in BASELINES if b in arms]
    for base in present:
        diffs = differences(arms, base)
        if not diffs:
            continue
        lines += [
            f"## Against {base}",
            "",
            f"Paired difference arm − {base} with its 95% interval. ▲ better, ▼ worse: the "
            "interval excludes zero (for val CE and bits/byte lower is better). Nothing is marked "
            "for being the largest.",
            "",
            f"Over seeds (paired by seed, t-interval over the {len(seeds)} per-seed differences):",
            "",
            difference_table(diffs, 0),
            "",
            f"Over items (paired bootstrap of per-item correctness pooled over seeds, "
            f"{BOOTSTRAP_RESAMPLES:,} resamples, fixed seed):",
            "",
            difference_table(diffs, 1),
            "",
            "### Verdict",
            "",
            *verdict(diffs, base, len(seeds)),
            "",
            "### Power",
            "",
            "The smallest difference each metric can tell from zero here (median half-width of "
            f"the intervals against {base}); a difference below it reads as 'no difference "
            "found', not 'no difference':",
            "",
            *power_note(diffs, arms),
            "",
        ]
    if not present:
        lines += ["No label_smoothing or ce arm: no paired comparisons.", ""]
    problems = invariant_violations(runs)
    lines += ["## Compute-matched invariants", ""]
    lines += (
        [f"- {p}" for p in problems]
        if problems
        else [
            "All runs share every setting outside [objective] (flavor, data, tokens, schedule), "
            "the seed excepted, and every arm has the same seeds."
        ]
    )
    missing = [f"{r['name']} seed {r['seed']}" for r in runs if not r["evals"]]
    if missing:
        lines += ["", f"No evaluation results yet for: {', '.join(missing)}."]
    lines += ["", *[f"![{os.path.basename(f)}]({os.path.basename(f)})" for f in plots(arms, out)]]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(text)
    return text
