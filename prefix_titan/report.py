"""The sweep's answer, with its uncertainty: markdown tables, a verdict and three plots from a
folder of runs.

    python -m prefix_titan.report RUNS_DIR [--out RUNS_DIR/report]

Each run folder (a job.dump_folder, for example <sweep>/<arm>/seed<S>) holds `run_config.json`
and `prefix_metrics.jsonl`, written during training, and evaluation results: `eval_curve.json`
(eval --all-checkpoints) and the `eval_results.json` files below it (RUN/hf/step-N,
RUN/evals/step-N) with their per-item outcomes (eval_items/), merged by task; the newest evaluated
step is reported. Runs are grouped into arms by objective and paired by seed (`debug.seed`).

The report gives, per arm and metric, the mean over seeds with a 95% t-interval; every arm against
label smoothing and against CE, the paired difference with its 95% interval over seeds (paired by
seed) and over items (a paired bootstrap of per-item correctness pooled over seeds); a verdict in
words; the smallest difference each metric can resolve (power note); and plots with error bars.
It checks the compute-matched invariants: every setting outside [objective] (and the dump folder)
must be equal across runs, the seed excepted, and every arm must have the same seeds.
"""

from __future__ import annotations

import argparse
import sys

from .sweep.report import report


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
