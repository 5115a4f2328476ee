"""The per-arm intervals of the report: a t-interval of the mean over seeds. numpy and scipy (the t
quantile); nothing of the package. The comparisons between arms: inference.py."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95


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
    """Mean and two-sided t-interval of independent values (one value, or values equal but for
    rounding: no interval, as a comparison with no residual variance has none)."""
    from scipy.stats import t

    x = np.asarray(list(values), dtype=np.float64)
    if x.size == 0:
        raise ValueError("t_interval needs at least one value")
    mean = float(x.mean())
    if x.size < 2:
        return Interval(mean, None, None, 1)
    sd = float(x.std(ddof=1))
    if not sd > 1e-10 * float(np.abs(x).max()):
        return Interval(mean, None, None, int(x.size))
    half = float(t.ppf(0.5 + level / 2, x.size - 1) * sd / math.sqrt(x.size))
    return Interval(mean, mean - half, mean + half, int(x.size))
