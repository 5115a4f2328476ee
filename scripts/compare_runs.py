"""How closely runs follow one another, step by step, from their training losses.

    python scripts/compare_runs.py REFERENCE RUN [RUN ...]

Each argument is a run's `job.dump_folder`; its training loss at each logged step is read at full
precision from the run's metrics log (prefix_metrics.jsonl: a resumed run's steps before and after
the resume are in the same log; a step logged twice, by a run resumed behind its last log line,
counts as its later row). For each RUN against REFERENCE it prints the steps both logged, the last
step through which the two losses are bit-for-bit equal, the first step where they differ and by
how much, and their largest difference: whether two runs of the same settings repeat each other
(determinism), whether a resumed run follows the uninterrupted one, and how far two row kernels of
the same objective are apart. `scripts/gpu_checks.sh` runs it on its `determinism` part.
"""

from __future__ import annotations

import argparse
import os
import sys

from prefix_titan.runs.cli import Parser
from prefix_titan.runs.folder import METRICS_LOG, read_log


def losses(folder: str) -> dict[int, float]:
    """{step: training loss} of a run folder's metrics log (validation rows left out)."""
    path = os.path.join(folder, METRICS_LOG)
    if not os.path.isfile(path):
        raise ValueError(f"{folder} holds no {METRICS_LOG}: not the dump folder of a trained run")
    out = {row["step"]: float(row["loss"]) for row in read_log(path) if "loss" in row}
    if not out:
        raise ValueError(f"{path} holds no training loss")
    return out


def compare(reference: dict[int, float], run: dict[int, float]) -> dict:
    """The steps both logged; through which one the losses are equal (None: not even the first);
    the first that differs with its difference (None: none does); the largest difference."""
    steps = sorted(set(reference) & set(run))
    if not steps:
        raise ValueError("no step logged by both runs")
    diffs = [(abs(run[s] - reference[s]), s) for s in steps]
    first = next(((s, d) for d, s in diffs if d != 0.0), None)
    equal_through = (
        steps[-1] if first is None else max((s for s in steps if s < first[0]), default=None)
    )
    return {
        "steps": (steps[0], steps[-1], len(steps)),
        "equal_through": equal_through,
        "first_difference": first,
        "largest": max(diffs),
    }


def describe(name: str, c: dict) -> str:
    lo, hi, n = c["steps"]
    said = f"{name}: {n} steps in common ({lo}-{hi}); "
    if c["first_difference"] is None:
        return said + "bit-for-bit equal at every one"
    step, diff = c["first_difference"]
    through = "at no step" if c["equal_through"] is None else f"through step {c['equal_through']}"
    largest, at = c["largest"]
    return (
        said + f"equal {through}; first differs at step {step} by {diff:.3g}; "
        f"largest difference {largest:.3g} (step {at})"
    )


def main(argv: list[str] | None = None) -> int:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reference", help="a run's job.dump_folder: the one the others are held to")
    p.add_argument("runs", nargs="+", metavar="run", help="other runs' job.dump_folder")
    a = p.parse_args(argv)
    try:
        reference = losses(a.reference)
        for folder in a.runs:
            try:
                print(describe(folder, compare(reference, losses(folder))))
            except ValueError as e:
                raise ValueError(f"{folder} against {a.reference}: {e}") from None
    except ValueError as e:
        p.error(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
