"""How closely runs follow one another, step by step, from their training losses.

    python scripts/compare_runs.py REFERENCE RUN [RUN ...]

Each argument is a run's `job.dump_folder`; its training loss at each logged step is read at full
precision from the run's metrics log (prefix_metrics.jsonl: a resumed run's steps before and after
the resume are in the same log; a step logged twice, by a run resumed behind its last log line,
counts as its later row). For each RUN against REFERENCE it prints the steps both logged and the
reference's steps the run did not log (a run that stopped early), the last step through which the
two losses are bit-for-bit equal, the first step where they differ (with both losses), and their
largest difference: whether two runs of the same settings repeat each other (determinism),
whether a resumed run follows the uninterrupted one, and how far two row kernels of the same
objective are apart. A folder that cannot be read is said on its line and the others are still
compared; the exit status is 1 where any was, or where a run misses steps of the reference. A
run that trained another objective than the reference (their records' arm names) is compared
all the same, and its line says so: its loss is another quantity.
`scripts/gpu_checks.sh` runs it on its `determinism` part.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from prefix_titan.objectives.spec import ObjectiveSpec
from prefix_titan.runs.cli import Parser
from prefix_titan.runs.folder import METRICS_LOG, RUN_CONFIG, read_json, read_log


def losses(folder: str) -> dict[int, float]:
    """{step: training loss} of a run folder's metrics log (validation rows left out)."""
    path = os.path.join(folder, METRICS_LOG)
    if not os.path.isfile(path):
        raise ValueError(f"{folder} holds no {METRICS_LOG}: not the dump folder of a trained run")
    out = {}
    for number, row in enumerate(read_log(path), 1):
        if "loss" not in row:
            continue
        step, loss = row.get("step"), row["loss"]
        if type(step) is not int or type(loss) not in (int, float):
            raise ValueError(
                f"{path} row {number}: step {step!r}, loss {loss!r}: a training row needs a whole "
                "step number and a numeric loss"
            )
        out[step] = float(loss)
    if not out:
        raise ValueError(f"{path} holds no training loss")
    return out


def objective(folder: str) -> str | None:
    """The arm name of the objective a run trained (None: no record, or none this reads)."""
    path = os.path.join(folder, RUN_CONFIG)
    if not os.path.isfile(path):
        return None
    try:
        record = read_json(path, "the run's record", expect=dict)
        return ObjectiveSpec.from_record(record.get("objective") or {}).arm_name()
    except (TypeError, ValueError):
        return None


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))  # NaN at the same step repeats too


def _spans(steps: list[int]) -> str:
    """1-3, 7, 9-10"""
    spans, start = [], None
    for i, s in enumerate(steps):
        start = s if start is None else start
        if i + 1 == len(steps) or steps[i + 1] != s + 1:
            spans.append(str(s) if s == start else f"{start}-{s}")
            start = None
    return ", ".join(spans)


def compare(reference: dict[int, float], run: dict[int, float]) -> dict:
    """The steps both logged and the reference's the run did not; through which step the losses
    are equal (None: not even the first); the first that differs, with the two losses; the
    largest finite difference and its step (None: none is finite)."""
    steps = sorted(set(reference) & set(run))
    if not steps:
        raise ValueError("no step logged by both runs")
    first = next(
        ((s, reference[s], run[s]) for s in steps if not _same(reference[s], run[s])), None
    )
    finite = [
        (abs(run[s] - reference[s]), s) for s in steps if math.isfinite(run[s] - reference[s])
    ]
    return {
        "steps": (steps[0], steps[-1], len(steps)),
        "missing": sorted(set(reference) - set(run)),
        "equal_through": (
            steps[-1] if first is None else max((s for s in steps if s < first[0]), default=None)
        ),
        "first_difference": first,
        "largest": max(finite) if finite else None,
    }


def describe(name: str, c: dict) -> str:
    lo, hi, n = c["steps"]
    said = f"{name}: {n} step{'' if n == 1 else 's'} in common ({lo}-{hi})"
    if c["missing"]:
        said += f", the reference's steps {_spans(c['missing'])} not logged"
    if c["first_difference"] is None:
        return said + "; bit-for-bit equal at every one"
    step, want, got = c["first_difference"]
    through = "at no step" if c["equal_through"] is None else f"through step {c['equal_through']}"
    said += f"; equal {through}; first differs at step {step} ({got!r} against {want!r})"
    if c["largest"] is not None:
        largest, at = c["largest"]
        said += f"; largest difference {largest:.3g} (step {at})"
    return said


def main(argv: list[str] | None = None) -> int:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reference", help="a run's job.dump_folder: the one the others are held to")
    p.add_argument("runs", nargs="+", metavar="run", help="other runs' job.dump_folder")
    a = p.parse_args(argv)
    try:
        reference = losses(a.reference)
    except ValueError as e:
        p.error(f"the reference: {e}")
    status = 0
    for folder in a.runs:
        try:
            c = compare(reference, losses(folder))
        except ValueError as e:
            print(f"{folder}: not compared: {e}")
            status = 1
            continue
        theirs, ours = objective(folder), objective(a.reference)
        other = (
            f" (another objective: {theirs} against the reference's {ours}; its loss is "
            "another quantity)"
            if None not in (theirs, ours) and theirs != ours
            else ""
        )
        print(describe(folder, c) + other)
        status = status or int(bool(c["missing"]))
    return status


if __name__ == "__main__":
    sys.exit(main())
