"""What the report can measure on a run: every metric by name, how to read it from a run
(runs.load_run's record, or the simulator's), and which way is better.

Evaluation metrics are read at evaluated steps and averaged over the steps asked for (the last
k evaluated checkpoints, or the final one); validation metrics (from the metrics log) over the
last k validation rows after step 1 (one update in: barely trained). A metric missing at any of those
steps is missing (None) for the run.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass

from ..evaluation.harness import (
    CUTE_TASKS,
    DEFAULT_TASKS,
    EMBEDDING_PROBE,
    SECONDARY_TASKS,
    primary_metric,
)
from ..evaluation.probes import CHOICES, PREFIX_SHAPED, PROBE_TASKS
from ..objectives.mechanism import POSITIONS

EFFECTS = {
    "char composite": 0.05,
    "downstream bits/byte": 0.01,
    "downstream acc": 0.01,
    "val CE": 0.01,
    **{t: 0.01 for t in DEFAULT_TASKS},
}
"""The effect of interest on each metric: what `python -m prefix_titan.power` plans seeds for
unless --effect says otherwise, and what the report's "no difference found" needs its power
for (analysis.underpowered)"""

CHAR_PROBES = [t for t in PROBE_TASKS if t not in PREFIX_SHAPED]
CHANCE = {t: 1 / k for t, k in CHOICES.items()}
"""Each probe's chance accuracy (one over its number of choices)"""


@dataclass(frozen=True)
class Metric:
    name: str
    lower_is_better: bool
    source: str
    """"eval" (read at evaluated steps) or "validation" (the metrics log's validation rows)"""
    read: Callable[[dict], float | None]
    """One step's value from that step's record ({"results", "bits_per_byte", ...}) or from a
    validation row"""
    description: str
    unit: str = ""
    """What its values count (the report says it): nats, bits per byte, a fraction, ..."""
    widest: float | None = None
    """The widest difference two runs' values can have (None: unbounded, or no fixed bound: the
    char composite's embedding part has none): a detectable difference beyond it is none"""


UNITS = (
    ("val CE", "nats per token"),
    ("implied CE", "nats per token"),
    ("bits/byte", "bits per byte"),
    ("val prefix mass", "probability"),
    ("val support mass", "probability"),
    ("target gold mass", "probability"),
    ("val ECE", "probability"),
    ("val Brier", "Brier score"),
    ("char composite", "fraction of the way from chance to perfect"),
    ("emb letters", "macro-F1"),
)
"""A metric's unit by a part of its name (the first that its name contains; else a fraction: 0.01
is one point of accuracy)"""


WIDEST = {
    "probability": 1.0,
    "Brier score": 2.0,
    "macro-F1": 1.0,
    "fraction (0.01 = one point)": 1.0,
}
"""The widest difference of each bounded unit's values (a fraction or probability: from 0 to 1;
a Brier score: from 0 to 2); a difference of two fractions ("char acc - blank") spans 2"""


def unit_of(name: str) -> str:
    for start, unit in UNITS:
        if start in name:
            return unit
    return "fraction (0.01 = one point)"


def _task(task: str):
    def read(step: dict):
        m = step["results"].get(task)
        return None if m is None else m.get(f"{primary_metric(task, m)},none")

    return read


def _bpb(task: str):
    def read(step: dict):
        return step.get("bits_per_byte", {}).get(task)

    return read


def _calibrated(task: str):
    def read(step: dict):
        return step.get("calibrated", {}).get(task)

    return read


def _mean(reads: list[Callable]):
    def read(step: dict):
        values = [r(step) for r in reads]
        return None if any(v is None for v in values) else sum(values) / len(values)

    return read


def _embedding(key: str):
    def read(step: dict):
        return (step["results"].get(EMBEDDING_PROBE) or {}).get(key)

    return read


def _composite(step: dict, read: bool = False) -> float | None:
    """The chance-corrected accuracy (acc - chance) / (1 - chance) of the character probes that
    are not prefix-shaped, averaged, with the embedding probe's input-row letters F1 above its
    control, (F1 - control) / (1 - control), as one more part where it was run: the control is
    its own predictions dealt to the tokens at random (within each inflection ending from version
    3 of the probe, and derivational ending and length class from version 4, which scores
    letters past each token's lead; the shuffled-label control in version 1, which recorded
    none). `read`: each probe's accuracy calibrated item by item by its blank twin (harness.calibrated_accuracy):
    what reading the word decides, whatever the model prefers among the choices without it."""
    parts = []
    for task in CHAR_PROBES:
        acc = (_calibrated if read else _task)(task)(step)
        if acc is None:
            return None
        parts.append((acc - CHANCE[task]) / (1 - CHANCE[task]))
    probe = step["results"].get(EMBEDDING_PROBE) or {}
    f1 = probe.get("input_letters,none")
    control = probe.get(
        "input_letters_predictions_permuted,none", probe.get("input_letters_shuffled_labels,none")
    )
    if f1 is not None and control is not None and control < 1:
        parts.append((f1 - control) / (1 - control))
    return sum(parts) / len(parts)


def _difference(a: Callable, b: Callable):
    def read(step: dict):
        x, y = a(step), b(step)
        return None if x is None or y is None else x - y

    return read


def _validation(key: str):
    def read(row: dict):
        return row.get(key)

    return read


def position_metric(bucket: str) -> str:
    """The metric of validation plain CE at a bucket of positions (mechanism.POSITIONS)."""
    return f"val CE at k {bucket}"


POSITION_METRICS = tuple(position_metric(b) for b in POSITIONS)
"""Validation plain CE by the target's position in its window: shown per arm in a sweep with an
arm that weights positions (objective.position_gamma)"""


def _catalogue() -> dict[str, Metric]:
    out: dict[str, Metric] = {}

    def add(name, lower, source, read, description):
        unit = unit_of(name)
        widest = WIDEST.get(unit)
        if widest is not None and " - " in name:  # a difference of two such values
            widest *= 2
        out[name] = Metric(name, lower, source, read, description, unit, widest)

    add("val CE", True, "validation", _validation("validation_plain_ce"), "validation plain CE")
    add(
        "val CE excess",
        True,
        "validation",
        _difference(_validation("validation_plain_ce"), _validation("validation_implied_ce")),
        "validation plain CE minus what the target implies (the A/A check's CE)",
    )
    for key, name, lower, what in (
        ("validation_prefix_mass", "val prefix mass", False, "probability on the gold's prefixes"),
        (
            "validation_support_mass",
            "val support mass",
            False,
            "probability on the run's own target's other sparse entries (its family's own "
            "support; compared only between runs trained towards the same table: OWN_TABLE)",
        ),
        ("validation_top1", "val top1", False, "validation top-1 accuracy"),
        ("validation_ece", "val ECE", True, "validation expected calibration error"),
        ("validation_brier", "val Brier", True, "validation Brier score"),
        ("validation_target_gold_mass", "target gold mass", False, "the target's gold mass"),
        ("validation_implied_ce", "implied CE", True, "plain CE a perfect target-matcher has"),
    ):
        add(name, lower, "validation", _validation(key), what)
    for bucket in POSITIONS:
        add(
            position_metric(bucket),
            True,
            "validation",
            _validation(f"validation_ce_pos_{bucket}"),
            f"validation plain CE of the targets at positions {bucket} of their window (1: the "
            "first target)",
        )
    for task in [*DEFAULT_TASKS, *SECONDARY_TASKS]:
        add(task, False, "eval", _task(task), f"{task} accuracy (acc_norm where it has it)")
        add(f"{task} bits/byte", True, "eval", _bpb(task), f"{task}: bits per byte of the gold")
    add(
        "downstream acc",
        False,
        "eval",
        _mean([_task(t) for t in DEFAULT_TASKS]),
        "mean accuracy of the mission's four tasks",
    )
    add(
        "downstream bits/byte",
        True,
        "eval",
        _mean([_bpb(t) for t in DEFAULT_TASKS]),
        "mean bits per byte of the mission's four tasks' gold answers",
    )
    for task in PROBE_TASKS:
        add(task, False, "eval", _task(task), f"{task} accuracy")
        add(f"{task}_blank", False, "eval", _task(f"{task}_blank"), f"{task} with the word blanked")
        add(
            f"{task}, calibrated",
            False,
            "eval",
            _calibrated(task),
            f"{task}, each item calibrated by its blank twin",
        )
    add(
        "char acc",
        False,
        "eval",
        _mean([_task(t) for t in CHAR_PROBES]),
        "mean accuracy of the probes that are not prefix-shaped",
    )
    add(
        "char acc, blank",
        False,
        "eval",
        _mean([_task(f"{t}_blank") for t in CHAR_PROBES]),
        "the same on their blank twins",
    )
    add(
        "char acc - blank",
        False,
        "eval",
        _difference(
            _mean([_task(t) for t in CHAR_PROBES]),
            _mean([_task(f"{t}_blank") for t in CHAR_PROBES]),
        ),
        "char acc minus char acc, blank (about 0: the probes are answered without the word; the "
        "blanks are at chance by construction, so this is no check of the prior: char acc, "
        "calibrated is)",
    )
    add(
        "char acc, calibrated",
        False,
        "eval",
        _mean([_calibrated(t) for t in CHAR_PROBES]),
        "char acc with each item calibrated by its blank twin (each choice's log-likelihood less "
        "its log-likelihood with the word blanked): what reading the word decides, whatever the "
        "model prefers among the choices without it",
    )
    add(
        "prefix-shaped acc",
        False,
        "eval",
        _mean([_task(t) for t in PREFIX_SHAPED]),
        "mean accuracy of the prefix-shaped probes",
    )
    add(
        "char composite",
        False,
        "eval",
        _composite,
        "chance-corrected character probes (and embedding probe), averaged",
    )
    add(
        "char composite, read",
        False,
        "eval",
        lambda step: _composite(step, read=True),
        "char composite of the calibrated probes (each item calibrated by its blank twin): what "
        "reading the word decides, whatever the prior over the choices",
    )
    for task in CUTE_TASKS:  # (no mean: a plan names the ones it evaluates)
        add(task, False, "eval", _task(task), f"{task} exact match (CUTE, greedy answer)")
    add(
        "emb letters, in",
        False,
        "eval",
        _embedding("input_letters,none"),
        "embedding probe: letters macro-F1 from the input embeddings (past each token's lead)",
    )
    add(
        "emb letters, out",
        False,
        "eval",
        _embedding("output_letters,none"),
        "embedding probe: letters macro-F1 from the output rows (past each token's lead)",
    )
    return out


METRICS = _catalogue()

OWN_TABLE = frozenset({"val support mass"})
"""The metrics a run measures of its model on its own target table (the entries that table
holds): 0 by construction for a run whose table has no other entries (ce's, label smoothing's),
so arm - baseline on them is a difference of tables where the two were trained towards different
ones. The report compares them only between arms trained towards the same table (the runs'
recorded target_table), and shows them per arm otherwise. (`target gold mass` and `implied CE`
are of the target alone: the same on every seed, no variance to test; `val CE excess` is each
run's CE less its own target's implied CE, compared across tables by design: the A/A check.)"""


def is_control(name: str) -> bool:
    """Whether the metric `name` is a probe's blank twin (its word blanked): what the model
    prefers without reading the word, read beside its probe, never claimed on."""
    return name.endswith(("_blank", ", blank"))


def known_metrics(name: str) -> str:
    """What a refusal of the unknown metric `name` says of the known ones: the nearest (a did
    you mean), then every one quoted, as some names hold a comma (`char acc, blank`)."""
    near = difflib.get_close_matches(name, list(METRICS), n=1)
    also = f" (did you mean {near[0]!r}?)" if near else ""
    return f"{also}; the metrics: {', '.join(map(repr, METRICS))}"


def metric(name: str) -> Metric:
    if name not in METRICS:
        raise ValueError(f"no metric named {name!r}{known_metrics(name)}")
    return METRICS[name]


def beyond_widest(name: str, d: float) -> float | None:
    """The widest difference W the metric's values can have, where a detectable difference `d`
    is beyond it (at 2 seeds the per-seed test can need such differences); else None."""
    widest = METRICS[name].widest if name in METRICS else None
    return widest if widest is not None and d > widest else None


def detectable_text(name: str, d: float, digits: str = ".4f") -> str:
    """A detectable difference as printed: "none (> W)" where `beyond_widest`, else its value."""
    widest = beyond_widest(name, d)
    return f"{d:{digits}}" if widest is None else f"none (> {widest:g})"


def evaluated_steps(run: dict) -> list[int]:
    """The steps of a run with evaluation results."""
    return sorted(s for s, e in run["steps"].items() if s >= 0 and e["results"])


def validation_steps(run: dict, last: int) -> list[int]:
    """The steps of a run's last `last` validation rows after step 1: torchtitan validates the
    model at step 1 too, after one update, which measures next to no training (a short run's last rows would
    otherwise average it in)."""
    return [s for s in run["validation"] if s > 1][-last:]


def run_value(run: dict, m: Metric, last: int) -> tuple[float | None, tuple]:
    """(the run's value of `m` averaged over its `last` evaluated steps or validation rows, the
    steps it was read at): a step without `m` (another task set evaluated there) is left out,
    so the caller checks that every run used the same steps."""
    if m.source == "validation":
        rows, steps = run["validation"], validation_steps(run, last)
    else:
        rows, steps = run["steps"], evaluated_steps(run)[-last:]
    at, values = [], []
    for s in steps:
        v = m.read(rows[s])
        if v is not None:
            at.append(s)
            values.append(v)
    if not values:
        return None, ()
    value = sum(values) / len(values)
    return (value if math.isfinite(value) else float("nan")), tuple(at)
