"""Power before the run: the difference each primary endpoint and each of the mission's tasks
detects with 80% power in the report's own test (the two-way arm x seed model, Holm over the
contrast's arms: inference.detectable at its strictest step), for a planned number of seeds, and
the seeds a given difference needs.

The run-level sd comes from published facts or from a finished sweep (--from: the pooled
residual sd of the report's fit). The defaults assume that near chance the seed-to-seed spread
of an accuracy at pilot scale is mostly item flipping, so that a run's sd is about one model's
binomial standard error on the task's items at pilot-scale accuracy (item counts and accuracies:
lm-eval's splits, Pythia-160M at ~6B tokens; Madaan et al. 2024 and PolyPythias argue the item
flipping). That is an assumption, not a measured seed-to-seed sd: Pythia-160M's sd over its last
checkpoints is 0.5x (PIQA) to 1.4x (ARC-Easy) the binomial SE, and a run's residual in the
two-way model is its own deviation on fixed items, not item sampling; `power` says so. The
character composite follows from the probes' item counts the same way (each probe near chance,
chance-corrected: the SE of their mean). No default is published for bits per byte or validation CE: those
need --from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..evaluation.harness import DEFAULT_TASKS
from ..evaluation.probes import ITEMS_PER_TASK, fewest_items
from . import inference
from .metrics import CHANCE, CHAR_PROBES


@dataclass(frozen=True)
class Default:
    sd: float
    """a run's sd (the metric's units)"""
    source: str


def _binomial(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n)


TASK_ACCURACY = {
    "hellaswag": (10042, 0.30),
    "piqa": (1838, 0.60),
    "winogrande_debiased": (1267, 0.50),
    "arc_easy": (2376, 0.42),
}
"""(items, accuracy at pilot scale) of the mission's tasks"""
PROBE_ABOVE_CHANCE = 0.05
"""The probes' assumed accuracy above chance at pilot scale (their spread is nearly that at chance)"""


def defaults(probe_items: int = ITEMS_PER_TASK) -> dict[str, Default]:
    out = {}
    for task, (n, p) in TASK_ACCURACY.items():
        out[task] = Default(_binomial(p, n), f"binomial SE, {n:,} items at {p:.0%}")
    # each probe at the fewest items a probe build accepts (char_count's word list may hold
    # only a fifth of them, char_last_letter's two fifths), so the default never claims more
    # precision than the probes give
    items = {t: fewest_items(t, probe_items) for t in CHAR_PROBES}
    parts = [
        _binomial(CHANCE[t] + PROBE_ABOVE_CHANCE, items[t]) / (1 - CHANCE[t]) for t in CHAR_PROBES
    ]
    fewer = [f"{t} {k:,}" for t, k in items.items() if k < probe_items]
    also = f" ({', '.join(fewer)})" if fewer else ""
    out["char composite"] = Default(
        math.sqrt(sum(x * x for x in parts)) / len(parts),
        f"binomial SE of {len(parts)} probes x {probe_items:,} items{also}, chance-corrected: "
        "the SE of their mean",
    )
    sds = [out[t].sd for t in DEFAULT_TASKS]
    out["downstream acc"] = Default(
        math.sqrt(sum(x * x for x in sds)) / len(sds), "the SE of the four tasks' mean"
    )
    return out


@dataclass(frozen=True)
class Row:
    metric: str
    sd: float | None
    source: str
    detectable: float | None
    seeds_for: int | None
    effect: float | None


def plan_rows(
    metrics: list[str],
    seeds: int,
    arms: int,
    comparisons: dict[str, int],
    alpha: float,
    measured: dict[str, float] | None = None,
    effects: dict[str, float] | None = None,
    probe_items: int = ITEMS_PER_TASK,
    variance: str = "pooled",
) -> list[Row]:
    """One row per metric: its sd (measured, else the published default), the 80%-power
    detectable difference at `seeds`, and the seeds needed for the effect asked for; each tested
    at alpha / comparisons[metric] (analysis.first_share), by the plan's `variance` rule."""
    known = defaults(probe_items)
    rows = []
    for name in metrics:
        if measured and name in measured:
            sd, source = measured[name], "measured (pooled over the sweep's arms)"
        elif name in known:
            sd, source = known[name].sd, known[name].source
        else:
            rows.append(
                Row(name, None, "no published default: measure it (--from)", None, None, None)
            )
            continue
        effect = (effects or {}).get(name)
        d = inference.detectable(sd, seeds, arms, comparisons[name], alpha, variance=variance)
        need = (
            inference.seeds_needed(effect, sd, arms, comparisons[name], alpha, variance=variance)
            if effect
            else None
        )
        rows.append(Row(name, sd, source, d, need, effect))
    return rows
