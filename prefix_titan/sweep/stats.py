"""The report's statistics: a t-interval over seeds, paired differences over seeds, and a paired
bootstrap over evaluation items. numpy and scipy (the t quantile); nothing of the package."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval (low/high None: not available) over n units."""

    mean: float
    low: float | None
    high: float | None
    n: int

    @property
    def excludes_zero(self) -> bool:
        return self.low is not None and (self.low > 0 or self.high < 0)

    @property
    def half_width(self) -> float | None:
        return None if self.low is None else (self.high - self.low) / 2


def t_interval(values, level: float = LEVEL) -> Interval:
    """Mean and two-sided t-interval of independent values (one value: no interval)."""
    from scipy.stats import t

    x = np.asarray(list(values), dtype=np.float64)
    if x.size == 0:
        raise ValueError("t_interval needs at least one value")
    mean = float(x.mean())
    if x.size < 2:
        return Interval(mean, None, None, 1)
    half = float(t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return Interval(mean, mean - half, mean + half, int(x.size))


def paired_over_seeds(a: dict, b: dict, level: float = LEVEL) -> Interval | None:
    """a − b over the seeds both have (paired by seed), with its t-interval; None if none."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    return t_interval([a[s] - b[s] for s in seeds], level)


def paired_bootstrap(
    a,
    b,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = LEVEL,
) -> Interval:
    """a − b for per-item outcomes of shape [seeds, items] (the same items, seeds paired), pooled
    over seeds: each item's difference is averaged over the seeds, and the items are resampled
    with replacement (percentile interval; fixed seed, so a report is reproducible)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] == 0:
        raise ValueError(
            f"paired_bootstrap needs two equal [seeds, items] arrays; got {a.shape}, {b.shape}"
        )
    d = (a - b).mean(axis=0)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // d.size)
    for start in range(0, resamples, chunk):
        stop = min(start + chunk, resamples)
        means[start:stop] = d[rng.integers(0, d.size, size=(stop - start, d.size))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(d.mean()), float(low), float(high), int(d.size))
