"""Power before the run: the difference each primary endpoint and each of the mission's tasks
detects with 80% power in the report's own test (the two-way arm x seed model, Holm over the
contrast's arms: inference.detectable at its strictest step), for a planned number of seeds, and
the seeds a given difference needs.

The run-level sd comes from published facts or from a finished sweep (--from: the pooled
residual sd of the report's fit; on fewer than FEW_DF degrees of freedom the rows plan at its
upper one-sided SD_LIMIT confidence limit, sd_upper). The defaults assume that near chance the seed-to-seed spread
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
from .report import plural


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


FEW_DF = 10
"""A measured sd on fewer residual degrees of freedom is planned from at its upper confidence
limit (sd_upper), not at the estimate: below 10 the estimate is under 0.63x the true sd in one
sweep of 20 (0.23x at 2 degrees of freedom, 3 arms x 2 seeds), and the detectable difference and
the seeds an effect needs scale with it; at 10 or more the estimate is within 0.63-1.35x (90%),
and its upper limit would add a quarter or less"""
SD_LIMIT = 0.8
"""The one-sided confidence of that upper limit: the true sd is below it in 80% of sweeps"""


def sd_upper(sd: float, df: int, level: float = SD_LIMIT) -> float:
    """The upper one-sided `level` confidence limit of a normal sd estimated as `sd` on `df`
    degrees of freedom: df * sd^2 / sigma^2 is chi-square(df), so sigma < sd * sqrt(df /
    chi2_(1 - level)(df)) with confidence `level`."""
    from scipy.special import chdtri  # the chi-square survival function's inverse

    return sd * math.sqrt(df / chdtri(df, level))


@dataclass(frozen=True)
class Row:
    metric: str
    sd: float | None
    """the sd the row plans at (a measured one on few degrees of freedom: its upper limit)"""
    source: str
    detectable: float | None
    seeds_for: int | None
    effect: float | None
    estimate: float | None = None
    """a measured sd on fewer than FEW_DF degrees of freedom: the estimate (`sd` is its upper
    SD_LIMIT confidence limit); else None"""
    df: int | None = None
    """the degrees of freedom of a measured sd"""


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
    measured_df: dict[str, int] | None = None,
) -> list[Row]:
    """One row per metric: its sd (measured, else the published default), the 80%-power
    detectable difference at `seeds`, and the seeds needed for the effect asked for; each tested
    at alpha / comparisons[metric] (analysis.first_share), by the plan's `variance` rule. A
    measured sd on fewer than FEW_DF degrees of freedom (`measured_df`) is planned at its upper
    SD_LIMIT confidence limit, the estimate kept beside it."""
    known = defaults(probe_items)
    rows = []
    for name in metrics:
        estimate = df = None
        if measured and name in measured:
            sd, df = measured[name], (measured_df or {}).get(name)
            source = "measured (pooled over the sweep's arms"
            if df is not None and df < FEW_DF:
                estimate, sd = sd, sd_upper(sd, df)
                source += (
                    f"), {plural(df, 'degree')} of freedom: planned at its upper "
                    f"{SD_LIMIT:.0%} limit"
                )
            else:
                source += f", {plural(df, 'degree')} of freedom)" if df is not None else ")"
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
        rows.append(Row(name, sd, source, d, need, effect, estimate, df))
    return rows
