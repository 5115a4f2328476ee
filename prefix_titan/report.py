"""The sweep's answer: the pre-registered analysis plan applied to a folder of runs.

    python -m prefix_titan.report RUNS_DIR [--out RUNS_DIR/report] [--plan FILE] [--checkpoints K]
                                  [--seeds S ...] [--arms ARM ...]
    python -m prefix_titan.report --metrics        # the metrics a plan may name

Each run folder (a job.dump_folder, for example <sweep>/<arm>/seed<S>) holds `run_config.json`
and `prefix_metrics.jsonl`, written during training, and the `eval_results.json` files of its
evaluated checkpoints (RUN/hf/step-N, RUN/evals/step-N) with their per-item outcomes. Runs are
grouped into arms by objective and paired by seed (`debug.seed`); each run's metrics are the
mean over its last K evaluated checkpoints (the plan's `checkpoints`, default 3).

report.md opens with the one-line answer to the plan's question, then prints the plan (the one
the sweep registered when it was launched, else the package's; --plan: another, an exploratory
re-analysis); for each family, every arm of the contrast against the baseline (two-way arm x
seed model, the residual variance pooled or the baseline's apart as the plan's variance rule
says, one graphical multiple-testing procedure per family), the claims, the trend along the
plan's axis (default tau), what the targets imply for plain CE with the A/A checks of the
CE-equivalent arms, the power reached, the compute-matched invariants and plots (not with
--no-figures). report.json holds the same numbers and the list of claims. Runs evaluated at
different steps, with different --limit or task versions are refused, naming them.

A run missing (never started, its folder lost; a run that began counts, finished or not):
--seeds names the seeds every arm has, and the report is still the plan's analysis (of the
complete pairs). Leaving out an arm, or a seed every arm has, makes it an exploratory
re-analysis, and the answer says so. An exploratory re-analysis (these, or --plan) is written to
RUNS_DIR/report_exploratory unless --out says where: the plan's report stays as it was, and
another re-analysis (another plan's settings, --checkpoints, --arms or --seeds) than the one
report_exploratory holds is refused there (--out DIR for it).
"""

from __future__ import annotations

import argparse
import os
import sys

from .runs.cli import Parser, path_arg
from .sweep.metrics import METRICS, is_control
from .sweep.report import better, report


def main(argv: list[str] | None = None) -> None:
    p = Parser(
        prog="python -m prefix_titan.report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs_dir", nargs="?", type=path_arg)
    p.add_argument(
        "--out",
        type=path_arg,
        default=None,
        help="default: RUNS_DIR/report; an exploratory re-analysis: RUNS_DIR/report_exploratory",
    )
    p.add_argument(
        "--plan",
        type=path_arg,
        default=None,
        help="an analysis plan (default: the one the sweep registered, else the package's)",
    )
    p.add_argument(
        "--checkpoints",
        type=int,
        default=None,
        help="average each run over its last K evaluated checkpoints (default: the plan's)",
    )
    p.add_argument(
        "--seeds", type=int, nargs="+", default=None, help="report these seeds only (default: all)"
    )
    p.add_argument("--arms", nargs="+", default=None, help="report these arms only (default: all)")
    p.add_argument(
        "--no-figures",
        dest="figures",
        action="store_false",
        help="write report.md and report.json only (no plots, no matplotlib needed)",
    )
    p.add_argument("--metrics", action="store_true", help="list the metrics and exit")
    a = p.parse_args(argv)
    if a.metrics:
        for m in METRICS.values():
            way = better(m.name)  # None: a control, or a metric that describes the target
            said = (
                "a control: read it beside its probe"
                if is_control(m.name)
                else "describes the target or how a run matches it: neither way is better"
                if way is None
                else f"{way} is better"
            )
            print(f"{m.name}: {m.description} ({said})")
        return
    if a.runs_dir is None:
        if a.arms and os.path.isdir(a.arms[-1]):
            # `--arms A B RUNS_DIR`: the list took the folder too
            p.error(
                f"give RUNS_DIR before --arms (or end the list with --): {a.arms[-1]!r} was read "
                f"as an arm: `report {a.arms[-1]} --arms {' '.join(a.arms[:-1])}`"
            )
        p.error("give RUNS_DIR (or --metrics)")
    if a.checkpoints is not None and a.checkpoints < 1:
        p.error(f"--checkpoints must be >= 1; got {a.checkpoints}")
    written: list[str] = []
    try:
        print(report(a.runs_dir, a.out, a.plan, a.checkpoints, a.seeds, a.arms, a.figures, written))
    except ValueError as e:
        p.refuse(str(e))
    out = os.path.join(written[0], "report.md")
    print(f"written to {out} (and report.json{', plots' * a.figures})", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
