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

import functools
import math
from dataclasses import dataclass, field

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
    y: np.ndarray | None = field(default=None, compare=False, repr=False)
    """the table fitted, [A, S]"""


def residuals(y: np.ndarray) -> np.ndarray:
    """The two-way model's residuals of a table y[arms, seeds]: each value less its arm's and its
    seed's mean, plus the grand mean (of each table in a stack y[..., arms, seeds])."""
    return (
        y - y.mean(-1, keepdims=True) - y.mean(-2, keepdims=True) + y.mean((-2, -1), keepdims=True)
    )


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
    return Fit(y.mean(1), sigma2, df, s, y)


@dataclass(frozen=True)
class Test:
    """A contrast's estimate, its interval and its two-sided p-value (None: not testable, with
    one seed or no residual variance)."""

    estimate: float
    low: float | None
    high: float | None
    p: float | None
    se: float | None
    df: float
    """its t's degrees of freedom (a whole number but under baseline_apart)"""


@functools.cache
def _t_functions():
    """scipy's t distribution cdf and its inverse (stdtr, stdtrit), imported once: a test of
    each arm of each metric of each simulated sweep calls them."""
    from scipy.special import stdtr, stdtrit

    return stdtr, stdtrit


@functools.lru_cache(maxsize=1024)
def _t_quantile(df: float, q: float) -> float:
    """The t distribution's q quantile at df degrees of freedom (every arm of a table compared
    with the baseline has the same)."""
    return float(_t_functions()[1](df, q))


def contrast(f: Fit, weights: np.ndarray, level: float = LEVEL) -> Test:
    stdtr = _t_functions()[0]

    w = np.asarray(weights, dtype=np.float64)
    estimate = float(w @ f.means)
    if f.df <= 0 or not f.sigma2 > 0:  # one seed, or identical differences: no interval
        return Test(estimate, None, None, None, None, f.df)
    se = math.sqrt(f.sigma2 * float(w @ w) / f.seeds)
    half = _t_quantile(f.df, 0.5 + level / 2) * se
    p = float(2 * stdtr(f.df, -abs(estimate) / se))
    return Test(estimate, estimate - half, estimate + half, p, se, f.df)


def versus(f: Fit, arm: int, baseline: int, level: float = LEVEL) -> Test:
    """arm - baseline."""
    if arm == baseline:
        raise ValueError(f"an arm is not compared with itself (arm {arm} is the baseline)")
    w = np.zeros(len(f.means))
    w[arm], w[baseline] = 1.0, -1.0
    return contrast(f, w, level)


CLAIM_MIN_SEEDS = 2
"""The fewest seeds, every arm run at each, at which the report tests a comparison (and claims
anything): one seed measures no training noise"""

APART_PRIOR_DF = 1.0
"""baseline_apart: the degrees of freedom of the pooled variance's pull on the baseline's own"""
APART_MIN_SEEDS = 3
"""baseline_apart: the fewest seeds at which the baseline's own variance is pooled with the
others'; below it (2 seeds: one degree of freedom of its own) the shrunk estimate underestimates a
noisier baseline's variance (7-8% false claims per family at 4x its sd, simulated), so each arm is
compared with the baseline by its per-seed differences alone (`per_seed`: S - 1 degrees of
freedom, valid whatever the variances)"""
APART_DF_SHARE = 0.2
"""baseline_apart: the share of the Satterthwaite degrees of freedom above the baseline's own
S - 1 that the test keeps (the rest is given up for the level). Satterthwaite's degrees of
freedom overstate what a baseline variance of S - 1 degrees of freedom supports in the t's far
tail: with half of them kept (the former rule) one comparison claimed 1.35x (2.7x) its level at
alpha/12 with the baseline's sd 1.4x (2x) the others', 3 seeds, 14 arms, and more at smaller
shares of alpha (1.5x, 4.8x at alpha/96), hidden under the global null (the comparisons share
the baseline's estimate) but not where most arms truly differ and the family's graph passes
alpha on (9.3% and 13.3% of sweeps with a false claim at 2x and 4x the sd, 11 of 12 arms truly
better, docs/evaluation.md). A fifth kept (the
largest share, in steps of 0.05, that holds): at most 0.97x its level from alpha to alpha/200
with the baseline's sd up to 2x the others' at 3 and 5 seeds, computed from the estimate's
exact distribution (200,000 draws); not beyond (at 2.8x 1.1-2.0x, at 4x 1.2-5.5x, most at the
smallest shares). The price: 63% power for a 5 sd difference at alpha/12 where half kept had
82.5% (98.9% and 99.7% at 5 seeds)"""

OWN_VARIANCE_LEVEL = 0.99
"""baseline_apart: a compared arm whose residual variance is above the other arms' at this level
of equal variances (`noisier`: an exact F test) is compared with the baseline by its per-seed
differences (`per_seed`), which assume nothing of the variances. The apart rule takes the
compared arm's variance from the pool: with an arm 3x as noisy as the rest its false-claim rate
grows with the seeds (the pooled variance is known better, the arm's excess never enters), 2.7%
of null sweeps at 3 seeds, 6.4% at 5, 9.5% at 8, simulated; the screen finds such an arm more
often the more seeds there are. At 0.99 an arm as noisy as the rest is switched in 1% of tables
(with 12 compared arms, some arm in about 11%)"""


@dataclass(frozen=True)
class Apart:
    """The variance of arm - baseline with the baseline's residual variance its own."""

    sigma2: float
    """the other arms' pooled residual variance (two-way fit over them alone)"""
    df: int
    """its degrees of freedom, (A - 2)(S - 1)"""
    baseline2: float
    """the baseline's residuals about the other arms' seed effects, squared, over S - 1:
    its expectation is sigma_b^2 + sigma^2 / (A - 1)"""
    var: float
    """the estimate of sigma^2 + sigma_b^2 (the variance of one seed's arm - baseline)"""
    test_df: float
    seeds: int
    noisier: frozenset[int] = frozenset()
    """the arms (not the baseline) compared by their per-seed differences instead (`noisier`)"""


def apart(y: np.ndarray, baseline: int) -> Apart:
    """The baseline's residual variance estimated apart from the other arms' (a noisier baseline
    inflates every comparison with it, which a pooled variance hides). Of the table y[arms, seeds]
    (A >= 3 arms, S >= 2 seeds): sigma^2 from the two-way fit of the other arms; the baseline's
    own s_b^2 from its values less its mean and the other arms' seed effects; s_b^2 shrunk
    towards its expectation under equal variances by APART_PRIOR_DF degrees of freedom; var =
    u1 + u2 with u1 = sigma^2 [(A - 2)/(A - 1) + d0/(d0 + S - 1) A/(A - 1)] and u2 =
    (S - 1)/(d0 + S - 1) s_b^2 (unbiased for sigma^2 + sigma_b^2 at d0 = 0); the degrees of freedom
    Satterthwaite's, nu = var^2 / (u1^2/df + u2^2/(S - 1)), kept at (S - 1) + k (nu - (S - 1)),
    k = APART_DF_SHARE. Simulated with 14 arms (tests/test_verdict.py): the familywise rate stays
    at most alpha with the baseline's sd 1-4x the others' under the null (where the pooled test
    reaches 9-30%), and with its sd 1-2x where most arms truly differ (each comparison's p holds
    its level down to alpha/200 there, which the family's graph needs; not beyond 2x)."""
    y = np.asarray(y, dtype=np.float64)
    a, s = y.shape
    if a < 3 or s < 2:
        raise ValueError(f"a baseline's own variance needs >= 3 arms and >= 2 seeds; got {y.shape}")
    others = np.delete(y, baseline, axis=0)
    df = (a - 2) * (s - 1)
    sigma2 = float((residuals(others) ** 2).sum() / df)
    seed_effect = others.mean(0) - others.mean()
    b = y[baseline]
    baseline2 = float(((b - b.mean() - seed_effect) ** 2).sum() / (s - 1))
    tiny = (1e-10 * float(np.abs(y).max())) ** 2  # rounding error only: no variance (as fit's)
    sigma2, baseline2 = (v if v >= tiny else 0.0 for v in (sigma2, baseline2))
    d0 = APART_PRIOR_DF
    u1 = sigma2 * ((a - 2) / (a - 1) + d0 / (d0 + s - 1) * a / (a - 1))
    u2 = (s - 1) / (d0 + s - 1) * baseline2
    var = u1 + u2
    nu = var**2 / (u1**2 / df + u2**2 / (s - 1)) if var > 0 else float(s - 1)
    test_df = (s - 1) + APART_DF_SHARE * (nu - (s - 1))
    return Apart(sigma2, df, baseline2, var, test_df, s, noisier(y, baseline))


def variance_ratios(y: np.ndarray) -> np.ndarray:
    """Each arm's residual variance over the other arms' in the two-way fit of y[arms, seeds]: an
    F statistic with (S - 1, (A - 2)(S - 1)) degrees of freedom when the arms' variances are
    equal (an arm's residuals are sqrt(1 - 1/A) times its own direction of the arm space, S - 1
    squares of it; the rest of the residual sum of squares lies in the other A - 2 directions,
    independent of them). inf where the others' is 0 and the arm's is not; needs A >= 3. Sums of
    squares at rounding error (arms that differ by constants) count as 0."""
    y = np.asarray(y, dtype=np.float64)
    a, s = y.shape
    tiny = (1e-10 * float(np.abs(y).max(initial=0.0))) ** 2 * s
    squares = (residuals(y) ** 2).sum(1)
    squares = np.where(squares > tiny, squares, 0.0)
    own = squares * a / (a - 1)
    rest = squares.sum() - own
    rest = np.where(rest > tiny, rest, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(rest > 0, own * (a - 2) / np.where(rest > 0, rest, 1.0), np.inf)
    return np.where((rest <= 0) & (own <= 0), 0.0, ratios)


def variance_bound(arms: int, seeds: int, level: float) -> float:
    """The `level` quantile of variance_ratios' F under equal variances."""
    from scipy.special import fdtri

    return float(fdtri(seeds - 1, (arms - 2) * (seeds - 1), level))


def compared_ratios(y: np.ndarray, baseline: int) -> tuple[dict[int, float], int]:
    """({arm: variance_ratios' statistic}, the arms it is over) for the arms of y[arms, seeds]
    but the baseline, over the other compared arms: the baseline left out (with 4 or more arms),
    whose own variance the apart rule estimates and which, noisier, would hide a noisy arm
    among the rest (a compared arm at 3x the sd was found at 5 seeds in 48% of tables with the
    baseline at 4x, in 77% without it)."""
    y = np.asarray(y, dtype=np.float64)
    kept = [i for i in range(y.shape[0]) if i != baseline] if y.shape[0] >= 4 else None
    ratios = variance_ratios(y if kept is None else y[kept])
    arms = range(y.shape[0]) if kept is None else kept
    return {i: float(r) for i, r in zip(arms, ratios) if i != baseline}, len(ratios)


def noisier(y: np.ndarray, baseline: int, level: float | None = None) -> frozenset[int]:
    """The arms of y[arms, seeds] (not the baseline) whose residual variance is above the other
    compared arms' at `level` of equal variances (compared_ratios above variance_bound;
    OWN_VARIANCE_LEVEL where None); none below 3 arms or 2 seeds."""
    y = np.asarray(y, dtype=np.float64)
    a, s = y.shape
    if a < 3 or s < 2:
        return frozenset()
    ratios, arms = compared_ratios(y, baseline)
    bound = variance_bound(arms, s, OWN_VARIANCE_LEVEL if level is None else level)
    return frozenset(i for i, r in ratios.items() if r > bound)


def seedwise(variance: str, arms: int, seeds: int) -> bool:
    """Whether the plan's `variance` compares each arm with the baseline by its per-seed
    differences alone (`per_seed`, S - 1 degrees of freedom): baseline_apart with 3 or more arms
    below APART_MIN_SEEDS seeds (2 arms are the two-way fit's paired test at any seed count)."""
    return variance == "baseline_apart" and arms >= 3 and seeds < APART_MIN_SEEDS


def apart_rule(arms: int, seeds: int) -> str:
    """How versus_apart compares an arm with the baseline in an arms x seeds table: "fit" (the
    two-way fit's paired test: fewer than 3 arms or 2 seeds), "per_seed" (`seedwise`) or "apart"
    (the baseline's variance apart, `apart`)."""
    if arms < 3 or seeds < 2:
        return "fit"
    return "per_seed" if seedwise("baseline_apart", arms, seeds) else "apart"


def apart_used(y: np.ndarray, baseline: int) -> Apart | None:
    """apart(y, baseline) where versus_apart compares the arms of table y by it (the same for
    every arm: computed once for a table), else None."""
    y = np.asarray(y, dtype=np.float64)
    return apart(y, baseline) if apart_rule(*y.shape) == "apart" else None


def versus_apart(
    y: np.ndarray, arm: int, baseline: int, level: float = LEVEL, v: Apart | None = None
) -> Test:
    """arm - baseline with the baseline's variance apart (see `apart`); a table of two arms has
    no other arms to pool: the paired test of the two (the two-way fit), which assumes nothing
    of their variances; below APART_MIN_SEEDS seeds, and for an arm noisier than the others
    (`Apart.noisier`, OWN_VARIANCE_LEVEL), the paired test of the two arms' per-seed differences
    (`per_seed`), for the same reason. `v`: apart(y, baseline), where the caller compares
    several arms of one table with the baseline (`apart_used`)."""
    stdtr = _t_functions()[0]

    if arm == baseline:
        raise ValueError(f"an arm is not compared with itself (arm {arm} is the baseline)")
    y = np.asarray(y, dtype=np.float64)
    rule = apart_rule(*y.shape)
    if rule == "fit":
        return versus(fit(y), arm, baseline, level)
    if rule == "apart" and v is None:
        v = apart(y, baseline)
    if rule == "per_seed" or arm in v.noisier:
        weights = np.zeros(y.shape[0])
        weights[arm], weights[baseline] = 1.0, -1.0
        return per_seed(y, weights, level)
    means = y.mean(1)
    estimate = float(means[arm] - means[baseline])
    if not v.var > (1e-10 * float(np.abs(y).max())) ** 2:  # rounding error only
        return Test(estimate, None, None, None, None, v.test_df)
    se = math.sqrt(v.var / v.seeds)
    half = _t_quantile(v.test_df, 0.5 + level / 2) * se
    p = float(2 * stdtr(v.test_df, -abs(estimate) / se))
    return Test(estimate, estimate - half, estimate + half, p, se, v.test_df)


def trend(f: Fit, arms: list[int], x: list[float], level: float = LEVEL) -> Test:
    """The least-squares slope of the arms' means on x (e.g. log tau): a linear contrast."""
    return contrast(f, trend_weights(arms, x, len(f.means)), level)


def per_seed(y: np.ndarray, weights: np.ndarray, level: float = LEVEL) -> Test:
    """A contrast tested on its value at each seed: L[s] = sum_a c[a] y[a, s] (sum c = 0, so the
    seed's shared effect cancels), a one-sample t test of the S values (S - 1 degrees of freedom).
    Each L[s] has variance sum_a c[a]^2 sigma_a^2 whatever the arms' own variances, so this test
    assumes nothing of them (the pooled one assumes them equal), at the cost of its degrees of
    freedom."""
    stdtr = _t_functions()[0]

    y = np.asarray(y, dtype=np.float64)
    values = np.asarray(weights, dtype=np.float64) @ y
    estimate = float(values.mean())
    s = len(values)
    var = float(values.var(ddof=1)) if s > 1 else float("nan")
    scale = (1e-10 * float(np.abs(y).max())) ** 2 * float(np.asarray(weights) @ weights)
    if s < 2 or not var > scale:  # rounding error only (in the weights' own units)
        return Test(estimate, None, None, None, None, s - 1)
    se = math.sqrt(var / s)
    half = _t_quantile(s - 1, 0.5 + level / 2) * se
    p = float(2 * stdtr(s - 1, -abs(estimate) / se))
    return Test(estimate, estimate - half, estimate + half, p, se, s - 1)


def trend_weights(arms: list[int], x: list[float], n: int) -> np.ndarray:
    """The weights of the least-squares slope of arms' means on x, over n arms."""
    xs = np.asarray(x, dtype=np.float64)
    w = np.zeros(n)
    w[arms] = (xs - xs.mean()) / ((xs - xs.mean()) ** 2).sum()
    return w


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


INTERACTION_DRAWS = 20_000
"""Tables drawn under the additive model behind `interaction`'s p-value (a fixed seed: the same
answer every time)"""


def interaction(y: np.ndarray) -> tuple[float, float] | None:
    """Johnson and Graybill's test of a seed x arm interaction of rank one (each arm responding to
    a seed's effect by its own factor, y[a, s] = m_a + b_a z_s + e) on a table y[arms, seeds]:
    (the share of the residual sum of squares on the residual matrix's largest singular value,
    its p-value). Under the two-way model with normal errors the share's law depends on the
    table's shape only, so the p-value is its rank among INTERACTION_DRAWS shares of tables
    drawn under that model. None with fewer than 3 arms or 3 seeds (the residuals have one
    direction: the share is 1) or no residual variation."""
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 2 or min(y.shape) < 3:
        return None
    r = residuals(y)
    if not float((r**2).sum()) > (1e-10 * float(np.abs(y).max())) ** 2 * r.size:
        return None  # rounding error only: no residual variation (as the tests' rule)
    share = _largest_root_share(r)
    if share is None:
        return None
    null = _null_shares(*y.shape)
    return share, float((1 + np.count_nonzero(null >= share)) / (1 + len(null)))


def _largest_root_share(r: np.ndarray):
    roots = np.linalg.svd(r, compute_uv=False) ** 2
    total = roots.sum(-1)
    if np.ndim(total) == 0:
        return float(roots[0] / total) if total > 0 else None
    return roots[..., 0] / total


@functools.lru_cache(maxsize=16)
def _null_shares(arms: int, seeds: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return _largest_root_share(residuals(rng.standard_normal((INTERACTION_DRAWS, arms, seeds))))


APART_DRAWS = 20_000
"""Draws of baseline_apart's variance estimate behind its power (a fixed seed: the same answer
every time)"""


def _apart_power(seeds: int, arms: int, level: float, ratio: float = 1.0):
    """power(delta), delta in units of the other arms' run-level sd, of the baseline_apart test
    (`apart`) at `level` when the baseline's variance is `ratio` times theirs (1: equal):
    averaged over draws of its estimate's parts, which are independent and exactly distributed
    under the model (sigma^2 chi^2 over its (A - 2)(S - 1) degrees of freedom, s_b^2 as
    (ratio + 1/(A - 1)) sigma^2 chi^2 over S - 1), the difference's own normal error (variance
    (1 + ratio) / S) integrated exactly."""
    return _mean_power(*_apart_cut(seeds, arms, level, ratio))


def _mean_power(cut: np.ndarray, sd: float):
    from scipy.special import ndtr

    def power(delta: float) -> float:
        return float(np.mean(ndtr((delta - cut) / sd) + ndtr((-delta - cut) / sd)))

    return power


@functools.lru_cache(maxsize=128)
def _apart_draws(seeds: int, arms: int, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """_apart_power's draws: the test's degrees of freedom and its variance estimate (the same
    for the same arguments: a fixed seed)."""
    rng = np.random.default_rng(0)
    a, s, d0 = arms, seeds, APART_PRIOR_DF
    df = (a - 2) * (s - 1)
    sigma2 = rng.chisquare(df, APART_DRAWS) / df
    baseline2 = (ratio + 1 / (a - 1)) * rng.chisquare(s - 1, APART_DRAWS) / (s - 1)
    u1 = sigma2 * ((a - 2) / (a - 1) + d0 / (d0 + s - 1) * a / (a - 1))
    u2 = (s - 1) / (d0 + s - 1) * baseline2
    var = u1 + u2
    nu = var**2 / (u1**2 / df + u2**2 / (s - 1))
    test_df = (s - 1) + APART_DF_SHARE * (nu - (s - 1))
    test_df.setflags(write=False)
    var.setflags(write=False)
    return test_df, var


@functools.lru_cache(maxsize=64)
def _apart_cut(seeds: int, arms: int, level: float, ratio: float) -> tuple[np.ndarray, float]:
    """_apart_power's cut for each draw (|estimate| above it: a claim) and the estimate's own
    sd: kept for the next call (the power command asks for the same ones for each metric and
    each seed count it tries); a t quantile at each draw's degrees of freedom is most of the
    power's time."""
    from scipy.special import stdtrit

    test_df, var = _apart_draws(seeds, arms, ratio)
    cut = stdtrit(test_df, 1 - level / 2) * np.sqrt(var / seeds)
    cut.setflags(write=False)
    return cut, math.sqrt((1 + ratio) / seeds)


APART_BOUND_GRID = 65
"""Degrees of freedom at which _apart_power_above takes the t quantile"""


def _apart_power_above(seeds: int, arms: int, level: float, ratio: float = 1.0):
    """An upper bound of _apart_power's power function, without a t quantile for each draw (most
    of _apart_power's time): each draw's quantile taken at one of APART_BOUND_GRID degrees of
    freedom spread over the draws' range, at or above its own (the quantile falls as the degrees
    of freedom rise, and the power as the cut rises). Within 0.01 of the power (14 arms, 3
    seeds; closer at more seeds)."""
    from scipy.special import stdtrit

    test_df, var = _apart_draws(seeds, arms, ratio)
    low, high = float(test_df.min()), float(test_df.max())
    grid = np.linspace(low, high, APART_BOUND_GRID)
    # the grid point above each draw's (one step further where rounding could fall short)
    step = (high - low) / (APART_BOUND_GRID - 1) if high > low else 1.0
    above = np.minimum((test_df - low) // step + 1, APART_BOUND_GRID - 1).astype(np.intp)
    quantile = stdtrit(grid, 1 - level / 2)[above]
    return _mean_power(quantile * np.sqrt(var / seeds), math.sqrt((1 + ratio) / seeds))


def detectable(
    sd: float,
    seeds: int,
    arms: int,
    comparisons: int,
    alpha: float = 0.05,
    power: float = POWER,
    variance: str = "pooled",
    baseline_ratio: float = 1.0,
) -> float:
    """The smallest arm - baseline difference the two-way test detects with `power`, at the
    Bonferroni level alpha / comparisons (Holm's first step, its strictest), for a run-level
    residual sd, `seeds` seeds and `arms` arms: the noncentral t's power solved for the effect;
    for the plan's variance = baseline_apart, that test's power with the baseline's variance
    `baseline_ratio` times the others' (_apart_power; below APART_MIN_SEEDS seeds the paired
    test's, S - 1 degrees of freedom)."""
    found = _power_gap(sd, seeds, arms, alpha / comparisons, power, variance, baseline_ratio)
    return float("inf") if found is None else _root(*found)


def _power_gap(sd, seeds, arms, level, power, variance, baseline_ratio):
    """(gap, start) for _root, where gap(delta) is the power of `detectable`'s test at the
    difference delta less the power wanted; None where the test has no degrees of freedom."""
    df = (arms - 1) * (seeds - 1)
    if df <= 0:
        return None
    se = sd * math.sqrt(2 / seeds)
    if seedwise(variance, arms, seeds):
        return _t_gap(se, seeds - 1, level, power), se
    if variance == "baseline_apart" and arms >= 3:
        apart_power = _apart_power(seeds, arms, level, baseline_ratio)

        return (lambda delta: apart_power(delta / sd) - power), se
    return _t_gap(se, df, level, power), se


def _root(gap, start: float) -> float:
    """The effect at which `gap` (power reached less power wanted, rising with the effect) is 0:
    bracketed by doubling from `start`."""
    from scipy.optimize import brentq

    high = start
    while gap(high) < 0:
        high *= 2
    return brentq(gap, 0.0, high)


def t_detectable(se: float, df: float, level: float, power: float = POWER) -> float:
    """The smallest difference a two-sided t test of standard error `se` with `df` degrees of
    freedom rejects at `level` with `power` (both tails, the noncentral t solved for the effect)."""
    return _root(_t_gap(se, df, level, power), se)


def _t_gap(se: float, df: float, level: float, power: float):
    from scipy.stats import nct, t

    crit = float(t.ppf(1 - level / 2, df))

    def gap(delta: float) -> float:
        nc = delta / se
        lower = float(nct.cdf(-crit, df, nc))  # the wrong-sign rejections (nan far out: 0)
        return float(nct.sf(crit, df, nc)) + (lower if math.isfinite(lower) else 0.0) - power

    return gap


def seeds_needed(
    effect: float,
    sd: float,
    arms: int,
    comparisons: int,
    alpha: float = 0.05,
    power: float = POWER,
    most: int = 100,
    variance: str = "pooled",
) -> int | None:
    """The fewest seeds at which `effect` (either sign: the tests are two-sided) is detectable
    (None: more than `most`)."""
    effect, level = abs(effect), alpha / comparisons
    # The power rises with the difference, and _root finds where it reaches `power` to within
    # 2e-12 + 1e-15 times the difference (brentq's tolerance): where the power a little above
    # the effect falls short, the detectable difference lies beyond the effect without solving
    # for it (an effect that needs many seeds would be solved for at each seed count). The
    # answer is the same as solving at each, unless the effect lies within 1e-9 of a detectable
    # difference.
    above = effect + 1e-9 * (1 + effect)
    for s in range(2, most + 1):
        if (
            variance == "baseline_apart"
            and arms >= 3
            and not seedwise(variance, arms, s)
            and _apart_power_above(s, arms, level)(above / sd) < power - 1e-9
        ):
            continue  # (below even an upper bound of the power: no t quantile per draw needed)
        found = _power_gap(sd, s, arms, level, power, variance, 1.0)
        if found is None or found[0](above) < 0:
            continue
        if _root(*found) <= effect:
            return s
    return None
