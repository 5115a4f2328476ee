"""The sweep's answer: one markdown table and three plots from a folder of runs.

    python -m prefix_titan.report RUNS_DIR [--out RUNS_DIR/report]

Each run folder (a job.dump_folder) holds `run_config.json` and `prefix_metrics.jsonl`, written
during training, and evaluation results: `eval_curve.json` (eval --all-checkpoints) and the
`eval_results.json` files below it (RUN/hf/step-N, RUN/evals/step-N), merged by task; the newest
evaluated step is reported. The table has one row per
arm, CE and label smoothing first, the best value per column in bold. The report also checks the
compute-matched invariants: every setting outside [objective] (and the dump folder) must be equal
across runs, and it names the runs and settings that break them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

from .eval import DEFAULT_TASKS
from .probes import PROBE_TASKS
from .run_folder import EVAL_CURVE, EVAL_RESULTS, METRICS_LOG, RUN_CONFIG, flatten

DOWNSTREAM = DEFAULT_TASKS
# Settings that may differ between arms: the objective itself and where the run writes.
ARM_KEYS = ("objective.", "job.dump_folder", "job.description", "job.config_file")


def _step_of(path: str) -> int:
    m = re.search(r"step-(\d+)", path)
    return int(m.group(1)) if m else -1


def load_run(folder: str) -> dict:
    with open(os.path.join(folder, RUN_CONFIG)) as f:
        config = json.load(f)
    rows = []
    if os.path.exists(os.path.join(folder, METRICS_LOG)):
        with open(os.path.join(folder, METRICS_LOG)) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    val = {}
    for r in rows:
        if "validation_plain_ce" in r:
            val[r["step"]] = r["validation_plain_ce"]  # a resumed run may repeat a step: last wins
    # Every evaluation of the run, by step: eval --all-checkpoints' curve and each
    # eval_results.json below the run folder (RUN/hf/step-N, RUN/evals/step-N), merged by task.
    by_step: dict[int, dict] = {}
    for d, _, files in sorted(os.walk(folder)):
        if EVAL_RESULTS in files:
            path = os.path.join(d, EVAL_RESULTS)
            by_step.setdefault(_step_of(path), {}).update(json.load(open(path))["results"])
    curve = os.path.join(folder, EVAL_CURVE)
    if os.path.exists(curve):
        for step, results in json.load(open(curve)).items():
            by_step.setdefault(int(step), {}).update(results)
    eval_step = max(by_step) if by_step else None
    evals = by_step.get(eval_step, {})
    p = config["objective"]
    name = (
        p["name"]
        if p["name"] != "prefix"
        else (
            f"prefix{'_norm' if p['normalize'] else ''}_tau{p['tau']}"
            f"{'_vocab' if p['support'] == 'vocab' else ''}"
        )
    )
    if p.get("position_gamma") is not None:
        name += f"_gamma{p['position_gamma']}"
    return {
        "folder": folder,
        "name": name,
        "config": config,
        "objective": p,
        "val": dict(sorted(val.items())),
        "evals": evals,
        "eval_step": eval_step,
    }


def find_runs(runs_dir: str) -> list[dict]:
    runs = [load_run(d) for d, _, files in os.walk(runs_dir) if RUN_CONFIG in files]
    if not runs:
        raise ValueError(f"no runs (folders with {RUN_CONFIG}) under {runs_dir!r}")
    order = {"ce": 0, "label_smoothing": 1}
    return sorted(
        runs,
        key=lambda r: (
            order.get(r["objective"]["name"], 2),
            r["objective"]["normalize"],
            r["objective"]["support"],
            r["objective"]["tau"],
            r["name"],
        ),
    )


def invariant_violations(runs: list[dict]) -> list[str]:
    """Settings outside [objective] that differ between runs, naming the runs that differ."""
    flat = [flatten(r["config"]) for r in runs]
    keys = sorted({k for f in flat for k in f if not k.startswith(ARM_KEYS)})
    problems = []
    for key in keys:
        values = [json.dumps(f.get(key), sort_keys=True, default=str) for f in flat]
        if len(set(values)) > 1:
            common = max(set(values), key=values.count)
            odd = [f"{r['name']} ({json.loads(v)!r})" for r, v in zip(runs, values) if v != common]
            problems.append(f"`{key}` differs from {json.loads(common)!r} in: {', '.join(odd)}")
    return problems


def _metric(evals: dict, task: str) -> float | None:
    m = evals.get(task, {})
    return m.get("acc_norm,none", m.get("acc,none"))


def _probe_mean(evals: dict, key: str) -> float | None:
    values = [evals[t][key] for t in PROBE_TASKS if t in evals and key in evals[t]]
    return sum(values) / len(values) if values else None


def columns(run: dict) -> dict:
    final_ce = run["val"][max(run["val"])] if run["val"] else None
    cols = {"val CE": final_ce}
    for task in DOWNSTREAM:
        cols[task] = _metric(run["evals"], task)
    cols["char probes acc"] = _probe_mean(run["evals"], "acc,none")
    cols["char probes bits/byte"] = _probe_mean(run["evals"], "bits_per_byte,none")
    return cols


LOWER_IS_BETTER = {"val CE", "char probes bits/byte"}


def markdown(runs: list[dict]) -> str:
    table = [columns(r) for r in runs]
    names = list(table[0])
    best = {}
    for c in names:
        values = [t[c] for t in table if t[c] is not None]
        if values:
            best[c] = min(values) if c in LOWER_IS_BETTER else max(values)
    lines = ["| arm | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for r, t in zip(runs, table):
        cells = []
        for c in names:
            v = t[c]
            cell = "-" if v is None else f"{v:.4f}"
            cells.append(f"**{cell}**" if v is not None and v == best.get(c) else cell)
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plots(runs: list[dict], out: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    baselines = [r for r in runs if r["objective"]["name"] != "prefix"]
    sweeps = {
        norm: sorted(
            (
                r
                for r in runs
                if r["objective"]["name"] == "prefix" and r["objective"]["normalize"] == norm
            ),
            key=lambda r: r["objective"]["tau"],
        )
        for norm in (False, True)
    }

    def against_tau(ax, metric, title):
        for norm, rs in sweeps.items():
            pts = [(r["objective"]["tau"], metric(r)) for r in rs if metric(r) is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", label="normalized" if norm else "unnormalized")
        for r, style in zip(baselines, ("--", ":")):
            if metric(r) is not None:
                ax.axhline(metric(r), linestyle=style, color="gray", label=r["name"])
        ax.set_xscale("log")
        ax.set_xlabel("τ")
        ax.set_title(title)
        ax.legend(fontsize=7)

    files = []
    fig, axes = plt.subplots(1, len(DOWNSTREAM), figsize=(4 * len(DOWNSTREAM), 3.2))
    for ax, task in zip(axes, DOWNSTREAM):
        against_tau(ax, lambda r, t=task: _metric(r["evals"], t), task)
    files.append(_save(fig, out, "accuracy_vs_tau.png"))

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in runs:
        if r["val"]:
            ax.plot(list(r["val"]), list(r["val"].values()), label=r["name"])
    ax.set_xlabel("step")
    ax.set_ylabel("validation plain CE")
    ax.legend(fontsize=6, ncol=2)
    files.append(_save(fig, out, "validation_ce.png"))

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    against_tau(
        axes[0], lambda r: _probe_mean(r["evals"], "acc,none"), "character probes: accuracy"
    )
    against_tau(
        axes[1],
        lambda r: _probe_mean(r["evals"], "bits_per_byte,none"),
        "character probes: bits/byte",
    )
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
    out = out or os.path.join(runs_dir, "report")
    os.makedirs(out, exist_ok=True)
    problems = invariant_violations(runs)
    lines = [
        f"# Sweep report: {len(runs)} runs under `{runs_dir}`",
        "",
        markdown(runs),
        "",
        "val CE: final validation plain cross-entropy. Downstream: acc_norm where the task has it, "
        "else acc (0-shot). Char probes: mean over the six probes. Best per column in bold.",
        "",
    ]
    lines += ["## Compute-matched invariants", ""]
    lines += (
        [f"- {p}" for p in problems]
        if problems
        else [
            "All runs share every setting outside [objective] (flavor, data, tokens, seed, schedule)."
        ]
    )
    missing = [r["name"] for r in runs if not r["evals"]]
    if missing:
        lines += ["", f"No evaluation results yet for: {', '.join(missing)}."]
    lines += ["", *[f"![{os.path.basename(f)}]({os.path.basename(f)})" for f in plots(runs, out)]]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(text)
    return text


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m prefix_titan.report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs_dir")
    p.add_argument("--out", default=None, help="default: RUNS_DIR/report")
    a = p.parse_args(argv)
    try:
        print(report(a.runs_dir, a.out))
    except ValueError as e:
        p.error(str(e))


if __name__ == "__main__":
    sys.exit(main())
