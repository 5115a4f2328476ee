"""The report's inference: a two-way (arm x seed) model of per-run metrics, contrasts of arms with
a baseline from it, Holm's adjustment, a trend test along an axis (log tau), and the detectable effect at a
power. numpy and scipy; nothing of the package.

Model: y[a, s] = mu + arm[a] + seed[s] + e[a, s], e ~ N(0, sigma^2), over A arms that all have the
same S seeds. The seed term takes out what a seed shares across arms (its initialisation and data
order: the pairing of a paired design); sigma^2 is estimated from every arm's residuals together
(pooled: (A - 1)(S - 1) degrees of freedom, where one pair of arms alone has S - 1). A contrast
sum_a c[a] * mean_a (sum c = 0) has standard error sigma * sqrt(sum c^2 / S) and a t distribution
with the residual degrees of freedom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
POWER = 0.8


@dataclass(frozen=True)
class Fit:
    """The two-way model fitted to a table y[arms, seeds]."""

    means: np.ndarray
    """[A] each arm's mean over the seeds"""
    sigma2: float
    """the pooled residual variance (nan with one seed)"""
    df: int
    """its degrees of freedom, (A - 1)(S - 1)"""
    seeds: int


def residuals(y: np.ndarray) -> np.ndarray:
    """The two-way model's residuals of a table y[arms, seeds]: each value less its arm's and its
    seed's mean, plus the grand mean."""
    return y - y.mean(1, keepdims=True) - y.mean(0, keepdims=True) + y.mean()


def fit(y: np.ndarray) -> Fit:
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 2 or y.shape[0] < 2 or y.shape[1] < 1:
        raise ValueError(f"the two-way model needs [arms >= 2, seeds >= 1] values; got {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError("the two-way model got a value that is not finite")
    a, s = y.shape
    df = (a - 1) * (s - 1)
    resid = residuals(y)
    sigma2 = float((resid**2).sum() / df) if df > 0 else float("nan")
    if sigma2 < (1e-10 * float(np.abs(y).max())) ** 2:  # rounding error only: no variance at all
        sigma2 = 0.0
    return Fit(y.mean(1), sigma2, df, s)


@dataclass(frozen=True)
class Test:
    """A contrast's estimate, its interval and its two-sided p-value (None: not testable, with
    one seed or no residual variance)."""

    estimate: float
    low: float | None
    high: float | None
    p: float | None
    se: float | None
    df: int


def contrast(f: Fit, weights: np.ndarray, level: float = LEVEL) -> Test:
    from scipy.special import stdtr, stdtrit  # the t distribution's cdf and its inverse

    w = np.asarray(weights, dtype=np.float64)
    estimate = float(w @ f.means)
    if f.df <= 0 or not f.sigma2 > 0:  # one seed, or identical differences: no interval
        return Test(estimate, None, None, None, None, f.df)
    se = math.sqrt(f.sigma2 * float(w @ w) / f.seeds)
    half = float(stdtrit(f.df, 0.5 + level / 2)) * se
    p = float(2 * stdtr(f.df, -abs(estimate) / se))
    return Test(estimate, estimate - half, estimate + half, p, se, f.df)


def versus(f: Fit, arm: int, baseline: int, level: float = LEVEL) -> Test:
    """arm - baseline."""
    if arm == baseline:
        raise ValueError(f"an arm is not compared with itself (arm {arm} is the baseline)")
    w = np.zeros(len(f.means))
    w[arm], w[baseline] = 1.0, -1.0
    return contrast(f, w, level)


def trend(f: Fit, arms: list[int], x: list[float], level: float = LEVEL) -> Test:
    """The least-squares slope of the arms' means on x (e.g. log tau): a linear contrast."""
    xs = np.asarray(x, dtype=np.float64)
    c = (xs - xs.mean()) / ((xs - xs.mean()) ** 2).sum()
    w = np.zeros(len(f.means))
    w[arms] = c
    return contrast(f, w, level)


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (None stays None and is not counted)."""
    tested = [(p, i) for i, p in enumerate(pvalues) if p is not None]
    m = len(tested)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(tested)):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def graph_adjusted(
    pvalues: list[float | None], weights: list[float], transitions: list[list[float]]
) -> list[float | None]:
    """Adjusted p-values of the sequentially rejective graphical procedure of Bretz et al. (2009,
    2011): hypothesis i starts with a share weights[i] of alpha; when one is rejected its share
    passes on, transitions[i][j] of it to hypothesis j (each row sums to at most 1), and the
    graph is updated so that shares keep flowing past rejected hypotheses. It controls the
    familywise error rate strongly at alpha for any weights and transitions; a hypothesis is
    rejected at alpha exactly when its adjusted p is at most alpha. Equal weights with every
    share passed equally to all the others is Holm's procedure. None (not testable) stays None
    and is never rejected."""
    n = len(pvalues)
    w = np.array(weights, dtype=np.float64)
    g = np.array(transitions, dtype=np.float64).reshape(-1, n) if n else np.zeros((0, 0))
    if w.shape != (n,) or g.shape != (n, n):
        raise ValueError("graph_adjusted: weights and transitions must match the p-values")
    if w.sum() > 1 + 1e-12 or (g.sum(1) > 1 + 1e-12).any():
        raise ValueError("graph_adjusted: the weights and each row of transitions sum to <= 1")
    p = np.array([math.inf if x is None else x for x in pvalues], dtype=np.float64)
    left = np.array([x is not None for x in pvalues])
    out: list[float | None] = [None] * n
    running = 0.0
    while left.any():
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(left & (w > 0), p / np.where(w > 0, w, 1.0), math.inf)
        j = int(np.argmin(ratio))  # the first of the smallest
        if ratio[j] == math.inf:  # no share of alpha reaches the rest: never rejected
            for i in np.flatnonzero(left):
                out[int(i)] = 1.0
            break
        running = max(running, min(1.0, float(ratio[j])))
        if running == 1.0:  # the adjusted p-values never fall: every one left is 1 too
            for i in np.flatnonzero(left):
                out[int(i)] = 1.0
            break
        out[j] = running
        left[j] = False
        w = np.where(left, w + w[j] * g[j], 0.0)
        # g[i][k] <- (g[i][k] + g[i][j] g[j][k]) / (1 - g[i][j] g[j][i]) among the rest, i != k
        denom = 1.0 - g[:, j] * g[j, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            new = np.where(
                (denom > 1e-12)[:, None], (g + np.outer(g[:, j], g[j, :])) / denom[:, None], 0.0
            )
        keep = np.outer(left, left)
        np.fill_diagonal(keep, False)
        g = np.where(keep, new, 0.0)
    return out


def detectable(
    sd: float, seeds: int, arms: int, comparisons: int, alpha: float = 0.05, power: float = POWER
) -> float:
    """The smallest arm - baseline difference the two-way test detects with `power`, at the
    Bonferroni level alpha / comparisons (Holm's first step, its strictest), for a run-level
    residual sd, `seeds` seeds and `arms` arms: the noncentral t's power solved for the effect."""
    from scipy.optimize import brentq
    from scipy.stats import nct, t

    df = (arms - 1) * (seeds - 1)
    if df <= 0:
        return float("inf")
    se = sd * math.sqrt(2 / seeds)
    crit = float(t.ppf(1 - alpha / comparisons / 2, df))

    def gap(delta: float) -> float:
        nc = delta / se
        lower = float(nct.cdf(-crit, df, nc))  # the wrong-sign rejections (nan far out: 0)
        return float(nct.sf(crit, df, nc)) + (lower if math.isfinite(lower) else 0.0) - power

    high = se
    while gap(high) < 0:
        high *= 2
    return brentq(gap, 0.0, high)


def seeds_needed(
    effect: float,
    sd: float,
    arms: int,
    comparisons: int,
    alpha: float = 0.05,
    power: float = POWER,
    most: int = 100,
) -> int | None:
    """The fewest seeds at which `effect` is detectable (None: more than `most`)."""
    for s in range(2, most + 1):
        if detectable(sd, s, arms, comparisons, alpha, power) <= effect:
            return s
    return None
