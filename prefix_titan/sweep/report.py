"""The sweep's answer, with its uncertainty: `report(runs_dir)` applies the analysis plan
(analysis.py) to a folder of runs (runs.py reads them) and writes report.md (opening with the
one-line answer), report.json (the plan, every estimate and comparison, the claims) and plots.
The command is `python -m prefix_titan.report` (prefix_titan/report.py)."""

from __future__ import annotations

import io
import math
import os
import re
import shlex
from dataclasses import asdict

from ..evaluation.harness import DEFAULT_TASKS, EMBEDDING_PROBE
from ..runs.folder import RUN_CONFIG, read_json, write_atomically, write_json
from .analysis import (
    BY_CONSTRUCTION,
    CE_EQUIVALENT,
    SUMMARY,
    Analysis,
    analyse,
    apart_here,
    axis_unit,
    by_construction,
    detectable_here,
    diverged,
    first_share,
    launch_deviation,
    load_plan,
    plan_arm_problems,
    plan_differences,
    plan_digest,
    plan_text,
    registered_plan,
    registered_plan_doubt,
    started_under,
    unfinished,
    unread_axis,
)
from .configs import file_name
from .inference import APART_MIN_SEEDS, CLAIM_MIN_SEEDS, seedwise
from .launches import LAUNCHES, without_folder
from .metrics import (
    OWN_TABLE,
    POSITION_METRICS,
    beyond_widest,
    evaluated_steps,
    is_control,
    metric,
    validation_steps,
)
from .runs import (
    complete_seeds,
    find_runs,
    group_arms,
    invariant_violations,
    load_run,
    select_runs,
)
from .stats import t_interval

# The per-arm table: the plan's primary metrics, then these (where the plan has them).


def plural(n: int, word: str, many: str | None = None) -> str:
    """`n word`, the word in the plural (`many`, else word + "s") unless n is 1."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def _num(v: float | None, signed: bool = False) -> str:
    """`v` to 4 decimals; `signed`: with its sign, a value that rounds to zero too (+0.0000,
    -0.0000: an estimate reads as its signed bounds do; a zero is +); else a rounded zero has
    none."""
    if v is None:
        return "-"
    if signed:
        return f"{v + 0.0:+.4f}"  # (+ 0.0: -0.0 is 0.0)
    shown = f"{v:.4f}"
    return shown.lstrip("-") if float(shown) == 0 else shown


def _interval(values) -> dict | None:
    values = list(values)
    if not values:
        return None
    iv = t_interval(values)
    return {"mean": iv.mean, "low": iv.low, "high": iv.high, "n": iv.n}


def _cell(iv: dict | None, seeds: int | None = None) -> str:
    """A per-arm mean with its interval; a mean over fewer than the sweep's `seeds` says over how
    many (one run of the arm unevaluated, say: its mean is not the others' kind of mean)."""
    if iv is None:
        return "-"
    if iv["n"] == 1:
        return f"{_num(iv['mean'])} (n=1)"
    fewer = f" (n={iv['n']})" if seeds is not None and iv["n"] < seeds else ""
    if iv["low"] is None:  # equal on every seed: no interval (as a comparison shows none)
        return f"{_num(iv['mean'])} [-, -]{fewer}"
    return f"{_num(iv['mean'])} [{_num(iv['low'])}, {_num(iv['high'])}]{fewer}"


def per_arm(a: Analysis, names: list[str]) -> dict[str, dict[str, dict | None]]:
    """{metric: {arm: interval of its mean over seeds}} of the plan's averages."""
    return {
        name: {arm: _interval(a.tables[name].get(arm, {}).values()) for arm in a.arms}
        for name in names
        if name in a.tables
    }


def _summary_names(a: Analysis) -> list[str]:
    """The per-arm table's metrics: the plan's primaries, an exploratory metric each run measures
    on its own table (OWN_TABLE: not compared across tables, shown here), then SUMMARY's."""
    names = [f.primary for f in a.plan.families]
    names += [n for f in a.plan.families for n in f.exploratory if n in OWN_TABLE]
    names = list(dict.fromkeys(names))
    return names + [n for n in SUMMARY if n in a.tables and n not in names]


def measured_names(a: Analysis, names: list[str]) -> tuple[list[str], list[str]]:
    """(the metrics of `names` some arm has a value of, those no arm has): a column of dashes
    is left out of the per-arm table and named below it."""
    intervals = per_arm(a, names)
    kept = [n for n in names if any(intervals.get(n, {}).get(arm) for arm in a.arms)]
    return kept, [n for n in names if n not in kept]


def summary_table(a: Analysis, names: list[str]) -> str:
    if not names:
        return "No metric was measured for any arm (see the notes)."
    intervals = per_arm(a, names)
    lines = ["| arm | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for arm in a.arms:
        cells = (_cell(intervals[n][arm], len(a.seeds)) for n in names)
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ci(c) -> str:
    return f"{_num(c.estimate, True)} [{_num(c.low, True)}, {_num(c.high, True)}]"


def _mark(c) -> str:
    return {"better": " ▲", "worse": " ▼"}.get(c.direction, "") if c.claimed else ""


def primary_table(a: Analysis, family) -> str:
    """Each arm of the contrast against the baseline on the family's primary: the difference
    with its interval, p, adjusted p, the claim, and the same difference at the final step alone."""
    rows = a.primary_comparisons(family.name)
    if not rows:
        return "Nothing compared (see the notes)."
    final = {c.arm: c for c in a.comparisons if c.family == family.name and c.final and c.primary}
    implied = family.primary in BY_CONSTRUCTION and a.final.get("implied CE")
    level = "nominal 95%" if apart_here(a, family.primary) is not None else "95%"
    head = (
        f"| arm | {family.primary} − {a.plan.baseline} [{level} CI, unadjusted] | p | adj. p "
        "| claim | final step alone |"
    )
    marked = False
    lines = [head + (" targets imply |" if implied else ""), "|---|---:|---:|---:|---|---:|"]
    lines[1] += "---:|" if implied else ""
    for c in rows:
        p = "-" if c.p is None else f"{c.p:.3g}"
        adj = "-" if c.p_adjusted is None else f"{c.p_adjusted:.3g}"
        claim = {"better": "▲ better", "worse": "▼ worse"}.get(c.direction, "") if c.claimed else ""
        if c.p is None and len(a.seeds) > 1:
            claim = "not tested (the same difference on every seed)"
        elif unclaimed_apart(c):
            claim, marked = "† not a claim", True
        f = final.get(c.arm)
        last = (
            "-"
            if f is None
            else _ci(f) + ("" if f.p_adjusted is None else f", Holm p {f.p_adjusted:.3g}")
        )
        line = f"| {c.arm} | {_ci(c)} | {p} | {adj} | {claim} | {last} |"
        if implied:
            line += f" {_num(_mean_of(a, 'implied CE', c.arm) - _mean_of(a, 'implied CE', c.baseline), True)} |"
        lines.append(line)
    shown = {c.arm for c in rows} | {a.plan.baseline}
    for arm in a.arms:  # an arm of the contrast left out for a value that is not finite
        if a.kinds[arm] not in a.plan.contrast or arm in shown:
            continue
        if why := diverged(a, family.primary, arm):
            lines.append(
                f"| {arm} | not compared: {why} | - | - | | - |" + (" - |" if implied else "")
            )
    if marked:
        lines += ["", UNCLAIMED_APART.format(alpha=a.plan.alpha)]
    return "\n".join(lines)


UNCLAIMED_APART = (
    "† The row's unadjusted interval excludes 0, but it is not a claim: its adjusted p is above "
    "alpha ({alpha}). Among many arms compared, some such intervals are expected with no effect at "
    "all, and since every arm is compared with the same baseline runs, a baseline that drew low "
    "(or high) moves them all one way together."
)
"""The footnote of a primary table's rows marked † (unclaimed_apart)"""


def unclaimed_apart(c) -> bool:
    """Whether a comparison's unadjusted interval excludes 0 though it is not claimed (its
    adjusted p above alpha): its row is marked, so that the interval is not read as a finding."""
    return not c.claimed and c.low is not None and c.high is not None and (c.low > 0 or c.high < 0)


def _mean_of(a: Analysis, name: str, arm: str) -> float:
    values = list(a.final[name].get(arm, {}).values())
    return sum(values) / len(values) if values else float("nan")


def exploratory_table(a: Analysis, family) -> str:
    """The exploratory metrics' differences from the baseline, one column per metric (▲/▼: claimed
    after the arm's primary claim)."""
    rows = [c for c in a.comparisons if c.family == family.name and not c.primary]
    names = [n for n in family.exploratory if any(c.metric == n for c in rows)]
    if not names:
        return ""
    cell = {(c.arm, c.metric): c for c in rows}
    arms = list(dict.fromkeys(c.arm for c in rows))
    lines = ["| arm | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for arm in arms:
        cells = [
            f"{_num(cell[arm, n].estimate, True)}{_mark(cell[arm, n])}" if (arm, n) in cell else "-"
            for n in names
        ]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


WEIGHTING_KEYS = ("position_gamma", "position_start")
"""The objective settings that weigh positions: an arm without them is its weighted arms' twin"""


def unweighted_twin(arm: str, objectives: dict[str, dict]) -> str | None:
    """The arm whose objective is `arm`'s without position weighting (WEIGHTING_KEYS unset), or
    None where the sweep has none (or `arm` weighs no position)."""
    if objectives[arm].get("position_gamma") is None:
        return None

    def rest(o: dict) -> dict:
        return {k: v for k, v in o.items() if k not in WEIGHTING_KEYS}

    return next(
        (
            other
            for other, o in objectives.items()
            if o.get("position_gamma") is None and rest(o) == rest(objectives[arm])
        ),
        None,
    )


def _difference_cell(values: list[float]) -> str:
    """A mean of per-seed differences with its 95% t-interval, signed."""
    iv = _interval(values)
    if iv is None:
        return "-"
    if iv["n"] == 1:
        return f"{_num(iv['mean'], True)} (n=1)"
    if iv["low"] is None:
        return f"{_num(iv['mean'], True)} [-, -]"
    return f"{_num(iv['mean'], True)} [{_num(iv['low'], True)}, {_num(iv['high'], True)}]"


def position_lines(a: Analysis, objectives: dict[str, dict]) -> list[str]:
    """Validation plain CE by the target's position in its window, per arm, where an arm weights
    positions (analysis reads POSITION_METRICS then), and each weighted arm's paired difference
    from its unweighted twin (unweighted_twin) seed by seed: whether a late-weighted arm's CE
    gained late at its early targets' cost (the seeds' spread swamps the per-arm means; the
    pairs cancel it). Descriptive, never tested. [] where none is measured."""
    names = [n for n in POSITION_METRICS if n in a.tables]
    shown, _ = measured_names(a, names)
    if not shown:
        return []
    lines = [
        "Validation plain CE by the target's position k in its window (1: the first target; "
        "the mean of each run's validated rows as above, every target weighing 1), shown since "
        "an arm weights positions (objective.position_gamma); descriptive, not tested "
        "(a plan may name these metrics as exploratory ones):",
        "",
        summary_table(a, shown),
        "",
    ]
    rows = []
    for arm in a.arms:
        if (twin := unweighted_twin(arm, objectives)) is None:
            continue
        cells = []
        for name in shown:
            mine, theirs = a.tables[name].get(arm, {}), a.tables[name].get(twin, {})
            pairs = [mine[s] - theirs[s] for s in mine if s in theirs]
            cells.append(_difference_cell([d for d in pairs if math.isfinite(d)]))
        rows.append(f"| {arm} − {twin} | " + " | ".join(cells) + " |")
    if rows:
        lines += [
            "Each weighted arm less the same objective unweighted, seed by seed (mean of the "
            "per-seed differences [95% t-interval over seeds]; negative: lower CE there):",
            "",
            "| arm − unweighted | " + " | ".join(shown) + " |",
            "|---|" + "---:|" * len(shown),
            *rows,
            "",
        ]
    return lines


def claim_lines(a: Analysis) -> list[str]:
    claims = [c for c in a.claims if not c.aa_check]
    if not claims:
        return ["No claims."]
    return [
        f"- **{c.family}**: {c.arm} is {c.direction} than {c.baseline} on {c.metric} "
        f"({_num(c.estimate, True)} [{_num(c.low, True)}, {_num(c.high, True)}], adj. p = "
        f"{c.p_adjusted:.3g}){'' if c.primary else ' (exploratory, after its primary claim)'}"
        + (
            " — not shown once each probe item is calibrated by its blank twin: it may be a "
            "change of prior (notes)"
            if c.prior_only
            else ""
        )
        + (
            f" — the targets alone imply {_num(built, True)} (by construction)"
            if (built := by_construction(a, c.metric, c.arm)) is not None and c.primary
            else ""
        )
        for c in claims
    ]


def targets_table(a: Analysis) -> str:
    lines = [
        "| arm | target's gold mass | implied plain CE | measured val CE, final step | |",
        "|---|---:|---:|---:|---|",
    ]
    for arm in a.arms:
        cells = []
        for name in ("target gold mass", "implied CE", "val CE"):
            values = list(a.final.get(name, {}).get(arm, {}).values())
            fewer = f" (n={len(values)})" if 0 < len(values) < len(a.seeds) else ""
            cells.append(_num(sum(values) / len(values)) + fewer if values else "-")
        lines.append(
            f"| {arm} | "
            + " | ".join(cells)
            + f" | {'CE-equivalent' if arm in a.equivalent else ''} |"
        )
    return "\n".join(lines)


def aa_lines(a: Analysis) -> list[str]:
    checks = [c for c in a.comparisons if c.aa_check]
    if not checks:
        return ["No CE-equivalent arm (or no ce arm): no A/A check."]
    lines = [
        "Holm over every check below together (one family at alpha).",
        "",
        "| family | metric | arm − ce [95% CI] | Holm p | |",
        "|---|---|---:|---:|---|",
    ]
    for c in checks:
        adj = "-" if c.p_adjusted is None else f"{c.p_adjusted:.3g}"
        flag = "**differs**" if c.claimed else "not rejected"
        ci = f"{_num(c.estimate, True)} [{_num(c.low, True)}, {_num(c.high, True)}]"
        lines.append(f"| {c.family} | {c.metric} | {c.arm}: {ci} | {adj} | {flag} |")
    return lines


def units_line(a: Analysis) -> str:
    """The units of the plan's metrics, and of every difference and slope of them."""
    from .metrics import metric

    said = "; ".join(
        f"{name}: {metric(name).unit}"
        + (
            " of plain CE, every position weighing 1 whatever the objective"
            if name == "val CE"
            else ""
        )
        for name in dict.fromkeys(f.primary for f in a.plan.families)
    )
    axis = "τ" if a.plan.axis == "tau" else a.plan.axis
    per = f"unit of {axis_unit(axis, a.plan.axis_scale)}"
    slopes = f" Trend slopes: per {per}." if a.trends else ""  # (no trend fitted: no slopes)
    # a per-seed test's interval is exact; the pooled and baseline_apart ones assume or estimate
    # the variances, and cover less than 95% with a noisier baseline
    exact = bool(a.fits) and all(
        seedwise(a.plan.variance, len(f.means), f.seeds) for f in a.fits.values()
    )
    return (
        f"Units (of each value and each difference): {said}; the other accuracies are fractions "
        "(0.01 = one point), bits/byte bits per byte, emb letters macro-F1, masses and ECE "
        f"probabilities.{slopes} Intervals are {'' if exact else 'nominal '}95% and unadjusted; "
        "a claim reads the adjusted p."
    )


def on_axis(a: Analysis) -> bool:
    """Whether some arm lies on the plan's axis: a sweep whose arms do not (a family of one's
    own that reads no such setting) has no trend section and no slopes' unit (its notes say
    why)."""
    return any(value is not None for value in a.along.values())


def trend_lines(a: Analysis) -> list[str]:
    axis = a.plan.axis
    if not a.trends:
        return [
            f"No trend along {axis}: no kind of the contrast ({', '.join(a.plan.contrast)}) has "
            f"arms at three values of {axis} or more."
        ]
    per = axis_unit(axis, a.plan.axis_scale)
    lines = [
        f"| family | metric | kind | slope per {per} [95% CI] | p | Holm p |",
        "|---|---|---|---:|---:|---:|",
    ]

    def shown(p):
        return "-" if p is None else f"{p:.3g}"

    for t in a.trends:
        band = "" if t["low"] is None else f" [{_num(t['low'], True)}, {_num(t['high'], True)}]"
        lines.append(
            f"| {t['family']} | {t['metric']} | {t['kind']} | {_num(t['estimate'], True)}{band} "
            f"| {shown(t['p'])} | {shown(t['p_adjusted'])} |"
        )
    seeds = len(a.seeds)
    if a.plan.axis_scale == "log_one_minus":
        lines += [
            "",
            f"ln(1 - {axis}) falls as {axis} rises toward 1: a positive slope means the difference "
            f"falls as {axis} rises (the figure puts larger {axis} to the right).",
        ]
    if seeds < 2:
        return [*lines, "", "Trends are reported, not claimed; with one seed none is tested."]
    lines += [
        "",
        "Trends are reported, not claimed: a straight line through the arms' differences, which "
        "one arm can drive (see the figure). Its test takes the slope at each of the "
        f"{seeds} seeds and tests those {seeds} values ({plural(seeds - 1, 'degree')} of freedom): valid "
        "whatever the arms' variances and however they respond to the seed. report.json also "
        "holds the pooled test of the same slope (`pooled`: more power where the arms' "
        "variances are equal and the seed pulls them alike, too small a p where not; not a "
        "second chance).",
    ]
    if seeds == 2:
        lines.append(
            "With 2 seeds the test has 1 degree of freedom: its interval is wide and it finds "
            "only large slopes."
        )
    return lines


def _powered(a: Analysis) -> list[tuple[str, int | None, str | None]]:
    """(metric, k, role) for each metric the Power section speaks of, in its order: the
    families' primaries and the default tasks the analysis fit; k and role first_share's where
    an arm of the contrast was compared with the baseline on it, else None. [] where nothing
    is compared."""
    contrast = sum(
        1 for arm in a.arms if a.kinds[arm] in a.plan.contrast and arm != a.plan.baseline
    )
    if not contrast or a.plan.baseline not in a.arms:
        return []
    measured = {c.metric for c in a.comparisons if not c.final}
    against = {c.metric for c in a.comparisons if not c.final and not c.aa_check}

    def split(name: str) -> int:
        """The arms the family's alpha is split over: those compared on its primary (an arm
        not compared there, its value not finite say, releases its share); a metric in no
        family, as the first family's primary."""
        family = next(
            (f for f in a.plan.families if name == f.primary or name in f.exploratory),
            a.plan.families[0],
        )
        return len({c.arm for c in a.primary_comparisons(family.name)}) or contrast

    out = []
    for name in dict.fromkeys([f.primary for f in a.plan.families] + DEFAULT_TASKS):
        if name in a.fits:
            share = first_share(a.plan, name, split(name), measured) if name in against else None
            out.append((name, *(share or (None, None))))
    return out


def power_lines(a: Analysis) -> list[str]:
    """One line per primary (and default task) with the difference detected with 80% power."""
    lines = []
    for name, k, role in _powered(a):
        if k is None:  # no arm compared with the baseline on it
            lines.append(f"- {name}: not compared, so no power to state (see the notes)")
        else:
            d = detectable_here(a, name, k)
            v = apart_here(a, name)
            if d is None and v is not None and v.var > 0 and not v.sigma2 > 0:
                # tested on the baseline's own variance, but no power can be estimated
                lines.append(
                    f"- {name}: none to state ({role}, at alpha/{k}; the other "
                    f"{len(a.fits[name].means) - 1} arms' pooled run-level sd is 0 on "
                    f"{plural(v.df, 'degree')} of freedom, as they differ from one another by "
                    "the same amount on every seed, and the baseline's own residual sd "
                    f"{math.sqrt(v.baseline2):.4f}: the plan's test is run, but the difference it "
                    "detects with 80% power cannot be estimated from this sweep)"
                )
            elif d is not None:
                fit, v = a.fits[name], apart_here(a, name)
                paired = seedwise(a.plan.variance, len(fit.means), fit.seeds)
                error = (
                    f"run-level sd {math.sqrt(fit.sigma2):.4f} pooled over "
                    f"{plural(len(fit.means), 'arm')}; tested by each arm's per-seed differences "
                    f"from the baseline, {plural(fit.seeds - 1, 'degree')} of freedom (below "
                    f"{APART_MIN_SEEDS} seeds the baseline's variance is not pooled)"
                    if v is None and paired
                    else f"run-level sd {math.sqrt(fit.sigma2):.4f} pooled over "
                    f"{plural(len(fit.means), 'arm')}, {plural(fit.df, 'degree')} of freedom"
                    if v is None
                    else f"one seed's arm − baseline sd {math.sqrt(v.var):.4f}, as the plan "
                    f"tests, from this sweep's own estimates: the other {len(fit.means) - 1} "
                    f"arms' pooled run-level sd {math.sqrt(v.sigma2):.4f} on "
                    f"{plural(v.df, 'degree')} of freedom and the baseline's own residual sd "
                    f"{math.sqrt(v.baseline2):.4f} on {plural(v.seeds - 1, 'degree')} of "
                    f"freedom; the test's {v.test_df:.1f} degrees of freedom"
                )
                # (a t test at this sweep's estimate as the true error says less: 63% power)
                error += (
                    "; with 80% power over how the test's own estimate of that error varies, "
                    "more than a t test at these estimates says"
                )
                widest = beyond_widest(name, d)
                shown = (
                    f"±{d:.4f}"
                    if widest is None
                    else f"none (±{d:.4f} needed; its values differ by {widest:g} at most)"
                )
                lines.append(f"- {name}: {shown} ({role}, at alpha/{k}; {error})")
            elif a.fits[name].df > 0:  # (compared on seeds that agree: said, not left out)
                lines.append(
                    f"- {name}: none to state ({role}, at alpha/{k}; the runs measured no "
                    "variance of it: every arm's value is the same on every seed, so the "
                    "difference it detects cannot be estimated from this sweep)"
                )
    return lines


def power_json(a: Analysis) -> dict:
    """report.json's power: the Power section's lines, and for each metric a line gives a
    difference of, {detectable (the difference detected with 80% power, as estimated from the
    sweep; None where none can be), possible (False where that difference is beyond the widest
    the metric's values allow: no difference of the metric can be detected), alpha_divisor (the
    plan's test at alpha over it), role}."""
    metrics = {}
    for name, k, role in _powered(a):
        if k is None:
            continue
        d = detectable_here(a, name, k)
        metrics[name] = {
            "detectable": d,
            "possible": None if d is None else beyond_widest(name, d) is None,
            "alpha_divisor": k,
            "role": role,
        }
    return {"lines": power_lines(a), "metrics": metrics}


def no_power_line(a: Analysis) -> str:
    """Why the Power section has nothing to show."""
    baseline = a.plan.baseline
    if baseline not in a.arms:
        return f"Nothing to show: the sweep has no {baseline} arm, so nothing is compared."
    if not any(a.kinds[arm] in a.plan.contrast for arm in a.arms):
        kinds = ", ".join(a.plan.contrast)
        return f"Nothing to show: no arm of {kinds} is in the sweep, so nothing is compared."
    if len(a.seeds) < CLAIM_MIN_SEEDS:
        return (
            f"Nothing to show: with {plural(len(a.seeds), 'seed')} the training noise is not "
            f"measured (run {CLAIM_MIN_SEEDS} or more seeds)."
        )
    return (
        "Nothing to show: no primary metric has a measured variance (no evaluated or "
        "validated metric in every run, or no spread between seeds)."
    )


def validation_steps_used(runs: list[dict], last: int) -> list[int] | None:
    """The validation steps the runs' validation metrics average, where the runs that have any
    agree on them ([] where none has any; None where they differ, which a note says)."""
    used = {tuple(validation_steps(r, last)) for r in runs} - {()}  # (a run without: a note)
    return list(next(iter(used))) if len(used) == 1 else [] if not used else None


def _validation_steps(runs: list[dict], last: int) -> str:
    """The validation steps the runs' averages use: one list when they agree."""
    steps = validation_steps_used(runs, last)
    if steps is None:
        return "steps that differ between runs (see the notes)"
    if not steps:
        return "none"
    fewer = f" (the runs have {len(steps)} after step 1)" if len(steps) < last else ""
    return "steps " + ", ".join(map(str, steps)) + fewer


def report_folder(runs_dir: str, out: str | None = None, exploratory: bool = False) -> str:
    """Where the report of `runs_dir` is written: `out`, else RUNS_DIR/report, or for an
    exploratory re-analysis RUNS_DIR/report_exploratory (it never overwrites the plan's)."""
    return out or os.path.join(runs_dir, "report_exploratory" if exploratory else "report")


def unfinished_runs(runs: list[dict]) -> list[dict]:
    """The runs whose last recorded step is below their configured training.steps."""
    out = []
    for r in runs:
        if (short := unfinished(r)) is not None:
            out.append(
                {"arm": r["name"], "seed": r["seed"], "last_step": short[0], "steps": short[1]}
            )
    return out


SMOKE_DESCRIPTION = "prefix_titan smoke sweep arm (see [objective])"
"""job.description of the smoke sweep's configs (sweep/bases/smoke.toml)"""


def sampled_tasks(runs: list[dict], steps: list[int]) -> dict[str, str]:
    """{task: its --limit sample} of the tasks the averaged steps evaluated on a sample of their
    items (the analysis has checked that every run and step used the same one; the embedding
    probe reads every word-like token whatever the limit)."""
    out = {}
    for r in runs:
        for s in steps:
            if s in r["steps"]:
                limits = r["steps"][s]["limits"].items()
                out.update({t: v for t, v in limits if v is not None and t != EMBEDDING_PROBE})
    return dict(sorted(out.items()))


def evaluation_caveats(
    runs: list[dict], steps: list[int], last: int, sampled: dict[str, str], leaks: list[str]
) -> list[str]:
    """What the runs and their averaged evaluations are short of: smoke-sweep runs, fewer
    checkpoints than the plan averages, probes their shortcut check found answered without the
    word (`leaks`, from probe_leaks), and tasks read on a --limit sample (`sampled`, from
    sampled_tasks: their intervals and claims are about those items only)."""
    out = []
    described = {r["config"].get("job", {}).get("description") for r in runs}
    if described == {SMOKE_DESCRIPTION}:
        config = runs[0]["config"]  # (the runs share these: the report's invariants)
        model, training = config.get("model") or {}, config.get("training") or {}
        what = ", ".join(
            f"{k} {v}"
            for k, v in (
                ("flavor", model.get("flavor")),
                ("steps", training.get("steps")),
                ("on", training.get("dataset")),
            )
            if v is not None
        )
        out.append(
            f"These runs carry the smoke sweep's description ({what}): they check that train, "
            "export, evaluate and report hold together; their numbers and claims say nothing "
            "about the objectives."
        )
    if steps and len(steps) < last:
        out.append(
            f"Each run has {plural(len(steps), 'evaluated checkpoint')}, where the analysis "
            f"averages the last {last}: its metrics are {'that one' if len(steps) == 1 else 'those'} "
            "alone."
        )
    if leaks:
        out.append(
            "The character probes' shortcut check, made as each evaluation built them (for its "
            "tokenizer and word source), found them answered without reading the word: "
            + "; ".join(leaks)
            + ". Those probes' accuracies measure the shortcut too; each evaluated model's "
            "char_probes/shortcuts.md holds the table (docs/probes.md tells what each reads)."
        )
    if sampled:
        listed = "; ".join(f"{t} {v}" for t, v in sampled.items())
        out.append(
            f"Evaluated on a --limit sample of items, not the whole task: {listed}. Their "
            "intervals and claims are about those items only, and the power section's item "
            "counts do not hold for them."
        )
    return out


def probe_leaks(runs: list[dict], steps: list[int]) -> list[str]:
    """A line per character probe whose shortcut check (harness.probe_checks, recorded with its
    results) found a shortcut in an averaged step of any run: the shortcuts with their highest
    accuracy, the probe's chance and how many of the runs' evaluations found them."""
    found: dict[str, dict[str, float]] = {}
    where: dict[str, int] = {}
    chance: dict[str, float] = {}
    evaluated = 0
    for r in runs:
        for s in steps:
            checks = (r["steps"].get(s) or {}).get("checks") or {}
            evaluated += bool(checks)
            for task, c in checks.items():
                if c.get("off"):
                    where[task] = where.get(task, 0) + 1
                    chance[task] = c.get("chance")
                    seen = found.setdefault(task, {})
                    for name, v in c["off"].items():
                        seen[name] = max(v, seen.get(name, v))
    return [
        f"{task} (chance {chance[task]:.3f}) by "
        + ", ".join(f"'{k}' at up to {v:.3f}" for k, v in sorted(found[task].items()))
        + f" in {where[task]} of {plural(evaluated, 'evaluation')}"
        for task in sorted(found)
    ]


def unmatched_line(problems: list[str]) -> str:
    """The warning under the answer where the runs differ in more than their objectives
    (runs.invariant_violations): the comparisons above then read those differences too."""
    return (
        f"**Warning.** The runs are not matched: {plural(len(problems), 'difference')} besides "
        'the objectives and the seeds ("Compute-matched invariants", below), which the '
        "comparisons read as the objectives' effects. Train the odd runs again as the others "
        "were, in a folder of their own, before reading the answer."
    )


def unfinished_line(unfinished: list[dict]) -> str:
    listed = ", ".join(
        f"{u['arm']} seed {u['seed']} (step {'-' if u['last_step'] is None else u['last_step']} "
        f"of {u['steps']})"
        for u in unfinished
    )
    return (
        f"**Unfinished: {plural(len(unfinished), 'run')}** below the configured training.steps "
        f"(still running, or stopped): their numbers in this report, 'final step' ones included, "
        f"are not those of finished runs: {listed}."
    )


def eval_tasks(runs: list[dict]) -> str:
    """The --tasks that evaluate a run as the sweep's evaluated runs were: `pilot` where they
    have its every task, else their tasks (the probes and their twins as `char_probes`); with
    the --limit (and --limit-seed, --probe-items) they were evaluated with, where they share
    one. None evaluated: `pilot`, or for a smoke sweep `char_probes embedding_probe --limit 50`
    (docs/cpu.md)."""
    from ..evaluation.harness import DATA_MARK, LIMIT_SEED, expand
    from ..evaluation.probes import BLANK_TASKS, ITEMS_PER_TASK, PROBE_TASKS

    had = {t for r in runs for step in r["steps"].values() for t in step.get("results") or {}}
    if not had:
        described = {r["config"].get("job", {}).get("description") for r in runs}
        return (
            "char_probes embedding_probe --limit 50"
            if described == {SMOKE_DESCRIPTION}
            else "pilot"
        )
    probes = {*PROBE_TASKS, *BLANK_TASKS}
    tasks = (
        "pilot"
        if set(expand(["pilot"])) <= had
        else " ".join(sorted(had - probes) + ["char_probes"] if probes <= had else sorted(had))
    )
    steps = [step for r in runs for step in r["steps"].values()]
    samples = set().union(*(step.get("sample", set()) for step in steps))
    if len(samples) == 1 and (limit := next(iter(samples)))[0] is not None:
        tasks += f" --limit {limit[0]}"
        if limit[1] not in (None, LIMIT_SEED):
            tasks += f" --limit-seed {limit[1]}"
    elif len(samples) == 1:  # (read whole: the probes perhaps built with other items)
        items = {n for step in steps for n in (step.get("probe_items") or {}).values()}
        if len(items) == 1 and (n := next(iter(items))) not in (None, ITEMS_PER_TASK):
            tasks += f" --probe-items {n}"
    if any(DATA_MARK in str(v) for step in steps for v in (step.get("versions") or {}).values()):
        tasks += " --data-dir DIR"  # (read from local files: DIR is not recorded, their sha256 is)
    return tasks


def unevaluated_line(runs: list[dict], missing: list[dict]) -> str:
    """Where runs have no evaluation results: their arm is not compared on what the evaluations
    measure (the answer counts it as not measured), and the command that evaluates each."""
    tasks = eval_tasks(runs)
    commands = "; ".join(
        f"`python -m prefix_titan.eval --all-checkpoints {shlex.quote(r['folder'])} --tasks {tasks}`"
        for r in missing
    )
    listed = ", ".join(f"{r['name']} seed {r['seed']}" for r in missing)
    return (
        f"**Not evaluated.** No evaluation results yet for: {listed}. "
        f"{'Its arm is' if len(missing) == 1 else 'Their arms are'} not compared on any "
        "evaluated metric (the character probes, the downstream tasks) until "
        f"{'it is' if len(missing) == 1 else 'they are'} evaluated at the other runs' "
        f"checkpoints: {commands}"
        + (
            " (DIR: the folder of the task files the other runs were evaluated on, whose sha256 "
            "their eval_results.json gives in each task's version)"
            if "--data-dir DIR" in tasks
            else ""
        )
        + "; then run the report again."
    )


SCHEMA = 1
"""report.json's `schema`: the version of its layout (docs/evaluation.md, "report.json"), raised
where a key is renamed or removed or changes its meaning"""

DESCRIPTIVE = frozenset({"target gold mass", "implied CE", "val support mass"})
"""The metrics that describe an arm's target (its gold mass, the CE a model matching it would
have) or how a run matches its own target table (OWN_TABLE): no better or worse between arms"""


def better(name: str) -> str | None:
    """Which way the metric `name` is better, "higher" or "lower"; None for a metric that
    describes the target (DESCRIPTIVE) and a control (metrics.is_control: a probe with its word
    blanked, read beside its probe)."""
    if name in DESCRIPTIVE or is_control(name):
        return None
    return "lower" if metric(name).lower_is_better else "higher"


def metrics_json(names) -> dict[str, dict]:
    """report.json's `metrics`: for each metric of `names` its unit, which way it is better
    (`better`: "higher", "lower" or None), its `kind` ("outcome", "descriptive" or "control"),
    its source ("eval" or "validation") and description."""
    out = {}
    for name in sorted(set(names)):
        m = metric(name)
        kind = (
            "descriptive" if name in DESCRIPTIVE else "control" if is_control(name) else "outcome"
        )
        out[name] = {
            "unit": m.unit,
            "better": better(name),
            "kind": kind,
            "source": m.source,
            "description": m.description,
        }
    return out


def report_json(
    a: Analysis,
    runs_dir: str,
    invariants: list[str],
    unfinished: list[dict] | None = None,
    sampled: dict[str, str] | None = None,
    leaks: list[str] | None = None,
    warnings: list[str] | None = None,
    validation: list[int] | None = None,
) -> dict:
    names = sorted(a.tables)
    described = [
        *names,
        *a.final,
        *(c.metric for c in a.comparisons),
        *(t["metric"] for t in a.trends),
    ]
    return {
        "schema": SCHEMA,
        "runs_dir": runs_dir,
        "answer": a.answer,
        "warnings": warnings or [],
        "metrics": metrics_json(described),
        "plan": asdict(a.plan),
        "arms": a.arms,
        "seeds": a.seeds,
        "steps": a.steps,
        "validation_steps": validation,
        "sampled_tasks": sampled or {},
        "probe_leaks": leaks or [],
        "per_arm": per_arm(a, names),
        "per_arm_final": {
            name: {arm: _interval(a.final[name].get(arm, {}).values()) for arm in a.arms}
            for name in names
        },
        "comparisons": [asdict(c) for c in a.comparisons],
        "claims": [
            {
                "arm": c.arm,
                "baseline": c.baseline,
                "metric": c.metric,
                "family": c.family,
                "direction": c.direction,
                "primary": c.primary,
                "aa_check": c.aa_check,
                "prior_only": c.prior_only,
                "estimate": c.estimate,
                "low": c.low,
                "high": c.high,
                "p": c.p,
                "p_adjusted": c.p_adjusted,
            }
            for c in a.claims
        ],
        "trends": a.trends,
        "power": power_json(a),
        "per_run": {  # {metric: {arm: {seed: the run's value, as per_arm averages it}}}
            name: {
                arm: {str(s): v for s, v in a.tables[name].get(arm, {}).items()} for arm in a.arms
            }
            for name in names
        },
        "notes": a.notes,
        "invariant_violations": invariants,
        "unfinished_runs": unfinished or [],
    }


def _project_arms() -> dict[str, dict]:
    """{arm: objective record} of the built-in arms and those of the sweep_arms.toml here (the
    built-in ones alone where that file cannot be read: a launch says why)."""
    from .configs import arm_specs, arms

    try:
        return {name: vars(spec) for name, spec in arms(".").items()}
    except ValueError:
        return {spec.arm_name(): vars(spec) for spec in arm_specs()}


def plan_deviations(plan_, checkpoints: int | None, registered: str | None = None) -> list[str]:
    """How an analysis departs from the pre-registered plan (the one the sweep registered at
    launch, else the package's analysis_plan.toml): another plan, or another number of
    checkpoints averaged, or a registered plan edited after its registration."""
    names = ("the registered plan" if registered else "the package's plan", "this plan")
    differ = plan_differences(load_plan(registered), plan_, names)
    out = []
    if registered and (changed := registered_plan_doubt(registered)):
        out.append(f"{registered} {changed}")
    if differ:
        which = "the one the sweep registered" if registered else "the package's"
        out.append(f"a plan other than {which} (it differs in {', '.join(differ)})")
    if checkpoints is not None and checkpoints != plan_.checkpoints:
        out.append(
            f"each run averaged over its last {checkpoints} checkpoints, where the plan says "
            f"{plan_.checkpoints}"
        )
    return out


def subset_lines(runs: list[dict], left_out: list[dict]) -> tuple[list[str], list[str]]:
    """(notes, deviations) of a report on a subset of the runs found (--seeds, --arms). The
    plan's rule for missing runs is to pair the seeds every arm has: leaving out a seed at which
    a reported arm has no run keeps the pre-registered analysis; leaving out any arm, or a seed
    at which every reported arm has a run, changes it (the arms set the family and the pooled
    variance), so that report is exploratory."""
    if not left_out:
        return [], []
    names = list(dict.fromkeys(r["name"] for r in runs))
    every = complete_seeds(runs + [r for r in left_out if r["name"] in names])
    out_seeds = sorted({r["seed"] for r in left_out} - {r["seed"] for r in runs})
    out_arms = list(dict.fromkeys(r["name"] for r in left_out if r["name"] not in names))
    deviations = []
    if out_arms:
        deviations.append(f"arms left out ({', '.join(out_arms)})")
    dropped_complete = [s for s in out_seeds if s in every]
    if dropped_complete:
        deviations.append(
            f"seeds at which every reported arm has a run left out "
            f"({', '.join(map(str, dropped_complete))})"
        )
    missing = [s for s in out_seeds if s not in every]
    notes = [
        f"Left out of this report ({plural(len(left_out), 'run')}): "
        + ", ".join(f"{r['name']} seed {r['seed']}" for r in left_out)
        + "."
    ]
    if missing:
        notes.append(
            f"Seed {', '.join(map(str, missing))} left out because a reported arm has no run "
            "there: the plan pairs the seeds every arm has, so this is its analysis of the "
            "complete pairs (unbiased if the missing runs are missing for reasons other than "
            "their results)."
        )
    return notes, deviations


def _runs_named(absent: list[dict]) -> str:
    """`arm (seeds S, T)` per arm of launched runs without a folder, in launch order."""
    seeds: dict[str, list] = {}
    for r in absent:
        seeds.setdefault(r["arm"], []).append(r["seed"])
    return "; ".join(
        f"{arm} (seed{'s' if len(v) > 1 else ''} {', '.join(map(str, sorted(v)))})"
        for arm, v in seeds.items()
    )


def launched_problem(
    runs_dir: str,
    absent: list[dict],
    runs: list[dict],
    seeds: list[int] | None = None,
    arms: list[str] | None = None,
    baseline: str | None = None,
) -> str | None:
    """Why the report of `runs` is refused for runs launched into `runs_dir` that have no folder
    (`absent`: launches.without_folder) among those asked (`seeds`, `arms`; None: every one):
    an arm launched without any run here, or a seed launched without a run of any arm. Left
    unsaid, the report would compare other arms or seeds than the sweep set out to (a run
    missing at a seed other arms have is group_arms' refusal). The ways out keep the plan's
    `baseline` among the arms. None where no such run is asked."""
    asked = None if arms is None else {file_name(x) for x in arms}
    wanted = [
        r
        for r in absent
        if (seeds is None or r["seed"] in seeds) and (asked is None or file_name(r["arm"]) in asked)
    ]
    names = {file_name(r["name"]) for r in runs}
    gone_arms = [r for r in wanted if file_name(r["arm"]) not in names]
    there = sorted({r["seed"] for r in runs})
    gone_seeds = [r for r in wanted if r["seed"] not in there and r not in gone_arms]
    complete = complete_seeds(runs)  # (the seeds every arm has: the plan's pairs)
    if not gone_arms and not gone_seeds:
        return None
    ways = []
    if gone_arms:
        kept = list(dict.fromkeys(r["name"] for r in runs))
        if baseline is not None and file_name(baseline) in {file_name(r["arm"]) for r in gone_arms}:
            ways.append(
                f"leaving out the arms without runs is no way out: they include the plan's "
                f"baseline, {baseline}, which every comparison is with"
            )
        elif len(kept) > 1:
            ways.append(
                f"or leave out the arms without runs (--arms {' '.join(kept)}: an exploratory "
                "report, as any choice of arms after the runs)"
            )
    if gone_seeds and len(complete) > 1:
        began = any(r["began"] for r in gone_seeds)
        ways.append(
            f"or report the seeds every arm has (--seeds {' '.join(map(str, complete))}): "
            + (
                "exploratory, as a run of those left out began (its folder removed)"
                if began
                else "the plan pairs the complete seeds, and the report names the runs left out"
            )
        )
    gone = gone_arms + gone_seeds
    return (
        f"{plural(len(gone), 'run')} launched into {runs_dir} (its launch records, {LAUNCHES}/) "
        f"{'has' if len(gone) == 1 else 'have'} no run folder there: "
        + (f"arms with no run: {_runs_named(gone_arms)}" if gone_arms else "")
        + ("; " if gone_arms and gone_seeds else "")
        + (f"seeds with no run of any arm: {_runs_named(gone_seeds)}" if gone_seeds else "")
        + (
            ". They never began (a launch cut short or still running, a run that failed before it "
            "started) or their folders were removed"
            if not any(r["began"] for r in gone)
            else f". {_began_said(gone)}"
        )
        + "; a report without them would compare other "
        "arms or seeds than the sweep launched, unsaid. Finish them (`python -m "
        "prefix_titan.sweep launch` with the same arms and seeds starts the runs not there)"
        + "".join(f", {w}" if w.startswith("or ") else f"; {w}" for w in ways)
        + "."
    )


def _began_said(gone: list[dict]) -> str:
    """Which of the launched runs without a folder a launch started (their folders removed since,
    or never written: a run that failed at its start), and that the others never began."""
    began = [r for r in gone if r["began"]]
    rest = [r for r in gone if not r["began"]]
    return (
        f"A launch started {_runs_named(began)} (its folder removed since, or never written by a "
        "run that failed at its start)"
        + (
            f"; the others never began or their folders were removed ({_runs_named(rest)})"
            if rest
            else ""
        )
    )


def launched_note(absent: list[dict]) -> str:
    """The note naming the runs launched into the sweep folder that have no run folder."""
    began = any(r["began"] for r in absent)
    return (
        f"Launched into this sweep (its launch records, {LAUNCHES}/) and without a run folder "
        f"({plural(len(absent), 'run')}), so not in this report: {_runs_named(absent)}."
        + (f" {_began_said(absent)}." if began else " They never began, or were removed.")
    )


def began_left_out(absent: list[dict], seeds: list[int] | None) -> list[int]:
    """The seeds `--seeds` leaves out at which a launch started a run whose folder is gone: a
    run that began counts as there (its result may be why it is gone), so leaving its seed out
    is a choice (exploratory), as for a run whose folder is there."""
    if seeds is None:
        return []
    return sorted({r["seed"] for r in absent if r["began"] and r["seed"] not in seeds})


def plan_source(given: str | None, registered: str | None) -> str:
    """Where the report's plan comes from, in one line."""
    if given:
        return f"The plan given with --plan ({given})."
    if registered and (changed := registered_plan_doubt(registered)):
        return f"The plan in the sweep folder ({registered}), which {changed}."
    if registered:
        return (
            f"The plan the sweep registered when it was launched, before its runs ({registered})."
        )
    return (
        "The package's plan (prefix_titan/sweep/analysis_plan.toml): the sweep registered none "
        "(`python -m prefix_titan.sweep launch` registers one before the runs)."
    )


def report(
    runs_dir: str,
    out: str | None = None,
    plan: str | None = None,
    checkpoints: int | None = None,
    seeds: list[int] | None = None,
    arms: list[str] | None = None,
    figures: bool = True,
    written: list[str] | None = None,
) -> str:
    """Write report.md, report.json and the plots (not with figures=False) for the runs under
    `runs_dir` (those of `seeds` and `arms` only, where given) and return report.md's text; the
    folder written is appended to `written` (report_folder: an exploratory re-analysis without
    `out` goes to its own folder)."""
    registered = registered_plan(runs_dir)
    plan_ = load_plan(plan or registered)
    # the runs without their per-item files first (a few MB each): a sweep refused for its
    # runs' seeds or arms is refused before they are read, and runs left out are never read
    try:
        found = find_runs(runs_dir, items=False)
    except ValueError as e:  # no run at all: the launches' runs named where they are recorded
        if str(e).startswith("no runs (") and (absent := without_folder(runs_dir)):
            raise ValueError(f"{e}. {launched_note(absent)}") from None
        raise
    if plan and found:  # names no arm of the project nor of the sweep: refused, as by a launch
        known = {**_project_arms(), **{r["name"]: r["objective"] for r in found}}
        problems = plan_arm_problems(plan_, known, axis=False, where="the project nor the sweep")
        if problems:  # (a partial sweep's missing kinds: noted by the analysis, as registered)
            raise ValueError(
                f"--plan {plan}: {'; '.join(problems)} (the project's arms: the built-in ones "
                f"and those of ./sweep_arms.toml)"
            )
    runs, left_out = select_runs(found, seeds, arms)
    asked = {
        "arms": None if arms is None else sorted(arms),
        "seeds": None if seeds is None else sorted(seeds),
    }
    if not runs:
        raise ValueError(f"--seeds and --arms leave no run of {runs_dir!r} to report")
    subset_notes, subset_deviations = subset_lines(runs, left_out)
    absent = without_folder(runs_dir)
    if problem := launched_problem(runs_dir, absent, runs, seeds, arms, plan_.baseline):
        raise ValueError(problem)
    if absent:
        subset_notes.append(launched_note(absent))
    if began := began_left_out(absent, seeds):
        subset_deviations.append(
            f"seeds left out at which a launched run began and its folder is gone "
            f"({', '.join(map(str, began))})"
        )
    if arms is not None:  # a launched arm left out by --arms though no run of it is here
        found_arms = {file_name(r["name"]) for r in found} | {file_name(x) for x in arms}
        if gone := list(
            dict.fromkeys(r["arm"] for r in absent if file_name(r["arm"]) not in found_arms)
        ):
            subset_deviations.append(f"launched arms left out ({', '.join(gone)})")
    if os.path.isfile(os.path.join(runs_dir, RUN_CONFIG)):
        run = os.path.abspath(runs_dir)
        where = (  # a sweep's run folder is SWEEP/ARM/seedS (sweep/configs.py run_folder)
            f" (here `{os.path.dirname(os.path.dirname(run))}`)"
            if re.fullmatch(r"seed-?\d+", os.path.basename(run))
            else " (a sweep launch writes SWEEP/ARM/seedS: here the run is in no sweep)"
        )
        subset_notes.append(
            f"`{runs_dir}` is one run's folder (it holds {RUN_CONFIG}): a report compares the "
            f"arms of a sweep, so give the folder that holds the arm folders{where}"
        )
    group_arms(runs, plan_.baseline)  # (its refusals, before the items are read)
    runs = [load_run(r["folder"]) for r in runs]
    arms = group_arms(runs, plan_.baseline)
    a = analyse(arms, plan_, checkpoints)
    objectives = {arm: next(iter(s.values()))["objective"] for arm, s in arms.items()}
    deviations = plan_deviations(plan_, checkpoints, registered) + subset_deviations
    started = started_under(r["config"] for r in found)  # (the records read already)
    if launched := launch_deviation(started, runs_dir, registered, plan_):
        deviations.append(launched)
    if deviations:
        a.answer = (
            f"(An exploratory re-analysis, not the pre-registered test: {'; '.join(deviations)}; "
            f"its familywise alpha holds for one analysis chosen before the results, not for "
            f"one chosen after them.) {a.answer}"
        )
    chosen = out is not None
    out = report_folder(runs_dir, out, exploratory=bool(deviations))
    selection = {  # what this analysis is, however its folders are spelled and its runs grow
        "plan_sha256": plan_digest(plan_),
        "checkpoints": plan_.checkpoints if checkpoints is None else checkpoints,
        **asked,
    }
    if deviations and not chosen:
        _refuse_another_analysis(out, selection)
    if written is not None:
        written.append(out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out} is a file: the report is a folder (report.md, report.json)")
    if os.path.islink(out):
        raise ValueError(
            f"{out} is a symbolic link (to {os.readlink(out)}): the report is not written through "
            "it; remove the link, or name the real folder with --out"
        )
    os.makedirs(out, exist_ok=True)
    last = plan_.checkpoints if checkpoints is None else checkpoints
    seeds = a.seeds
    steps = ", ".join(map(str, a.steps)) if a.steps else "none evaluated"
    unfinished = unfinished_runs(runs)
    sampled = sampled_tasks(runs, a.steps)
    leaks = probe_leaks(runs, a.steps)
    shown, unmeasured = measured_names(a, _summary_names(a))
    problems = invariant_violations(runs)
    unevaluated = [r for r in runs if not r["steps"]]
    warnings = [  # (under the answer, and beside it in report.json)
        *([unmatched_line(problems)] if problems else []),
        *([unfinished_line(unfinished)] if unfinished else []),
        *([unevaluated_line(runs, unevaluated)] if unevaluated else []),
    ]
    lines = [
        f"# Sweep report: {plural(len(a.arms), 'arm')} × {plural(len(seeds), 'seed')} "
        f"({', '.join(map(str, seeds))}) under `{runs_dir}`",
        "",
        f"**Answer.** {a.answer}",
        "",
        *(line for warning in warnings for line in (warning, "")),
        units_line(a),
        "",
        "## Analysis plan",
        "",
        plan_source(plan, registered),
        "",
        *plan_text(plan_, unread=unread_axis(plan_, objectives) is not None),
        "",
        "Evaluated checkpoints averaged ("
        + (
            f"the last {last} of every run"
            if len(a.steps) >= last or not a.steps
            else f"every run's {len(a.steps)}, fewer than the last {last}"
        )
        + f"): {steps}; validation "
        f"metrics: the mean of each run's last {last} validation rows, step 1's (after one "
        f"update) left out: {_validation_steps(runs, last)}.",
        "",
        *(f"**Note.** {c}\n" for c in subset_notes),
        *(f"**Note.** {c}\n" for c in evaluation_caveats(runs, a.steps, last, sampled, leaks)),
        "## Per arm",
        "",
        summary_table(a, shown),
        "",
        "Mean over seeds [95% t-interval over seeds] ('(n=K)' marks a mean of K seeds, fewer "
        "than the sweep's: a run of that arm lacks the metric; '(n=1)': no interval). char acc: "
        "the probes that are not prefix-shaped; prefix-shaped acc: first letter and prefix; "
        "blank: the same probes with the word replaced by a placeholder; char acc - blank: what "
        "reading the word adds (an interval around 0: the arm answers those probes without the "
        "word). report.json holds every metric, also at the final step alone."
        + (f" Measured for no arm, left out: {'; '.join(unmeasured)}." if unmeasured else ""),
        "",
        *position_lines(a, objectives),
    ]
    if plan_.baseline in a.arms:
        lines += [f"## Against {plan_.baseline}", ""]
        for f in plan_.families:
            lines += [f"### {f.name}", "", primary_table(a, f), ""]
            explored = exploratory_table(a, f)
            if explored:
                lines += [f"Exploratory (difference from {plan_.baseline}):", "", explored, ""]
        paired = plan_.variance == "baseline_apart" and all(
            apart_here(a, f.primary) is None for f in plan_.families
        )
        lines += [
            "Difference arm − baseline from the two-way arm × seed model (seed-paired, "
            + (
                "residual variance pooled over arms), 95% interval"
                if plan_.variance == "pooled"
                else f"each arm's per-seed differences from the baseline alone: the plan's "
                f'variance = "baseline_apart" below {APART_MIN_SEEDS} seeds or arms), 95% interval'
                if paired
                else "the baseline's residual variance apart from the other arms' pooled one: "
                'the plan\'s variance = "baseline_apart"), nominal 95% interval (its simulated '
                "coverage: docs/evaluation.md)"
            )
            + ", two-sided p. Claimed (▲/▼) where the "
            "adjusted p ≤ alpha, adjusted per family by one graphical procedure over its primary "
            "and exploratory comparisons (alpha split over the arms on the primary; a claimed "
            "arm passes half of its share to its exploratory metrics, half to the other arms: "
            "an exploratory claim only for an arm claimed on the primary, the family's "
            "familywise rate at most alpha); 'final step alone' is the same comparison without "
            "checkpoint averaging (Holm over the arms; a sensitivity check, never claimed); "
            "'targets imply' (beside val CE alone) is the part of its difference the two "
            "targets cost by construction. report.json has every interval and p.",
            "",
            "### Claims",
            "",
            (
                "Exploratory (an analysis other than the pre-registered one, see the answer): "
                "the claims below are leads to test in a new sweep, not findings. "
                if deviations
                else ""
            )
            + f"Each family is tested at familywise alpha {plan_.alpha}; over the report's "
            f"{len(plan_.families)} families a false claim somewhere is up to "
            f"{len(plan_.families)} × alpha likely (the answer reads the first family only).",
            "",
            *claim_lines(a),
            "",
            *(
                [f"### Trend along {'τ' if a.plan.axis == 'tau' else a.plan.axis}", ""]
                + [*trend_lines(a), ""]
                if on_axis(a)
                else []
            ),
        ]
    power = power_lines(a)
    lines += [
        "## What the targets imply",
        "",
        "The target's mass on the gold token and the plain CE a model matching the target exactly "
        f"would have (the mean over the validation tokens of −log of each one's gold mass), "
        f"beside the measured "
        f"validation CE (all three at the final step, mean over seeds; the per-arm table's val CE "
        f"averages the last validations): the part of a CE difference that is there by construction. Arms whose "
        f"target keeps ≥ {CE_EQUIVALENT} on the gold, weighted as ce is, are in effect CE, and "
        "compared with ce as "
        "A/A checks: their targets differ from one-hot by at most 1% of the mass, so a difference "
        "there is a warning (a pipeline difference between the arms, or an effect of that little "
        "mass), to be explained before any claim of the objective is read.",
        "",
        targets_table(a),
        "",
        *aa_lines(a),
        "",
        "## Power",
        "",
    ]
    if power:
        lines += [
            "The difference each comparison with the baseline detects with 80% power here "
            "(two-way model, the error measured in this sweep by the plan's variance rule, "
            "at the first share of "
            "alpha its comparison gets: a primary alpha over the arms compared; an exploratory "
            "metric only for an arm claimed on its primary, at its share of that arm's); smaller "
            "differences read as 'not found', not 'absent'. Each line says which variance it "
            "used, estimated from this sweep's own runs, and on how many degrees of freedom: "
            "what this sweep could detect, as its test is run, and a noisy figure where those "
            "are few (the baseline's own variance has one fewer than the seeds). It takes these "
            "estimates for the true error, so it states more power than the test has in most "
            "sweeps: at the true error, the power at the stated difference has a median of "
            "66-77% at 3 seeds in simulated sweeps, 52-64% where the baseline's sd is twice the "
            "others' (docs/evaluation.md). To plan a next "
            f"sweep use `python -m prefix_titan.power --from {runs_dir}`, not these lines: it "
            "gives, from the sd these runs measure, the detectable difference and the seeds a "
            "given effect needs in the sweep it plans (`--scale`, `--seeds`, `--arms`; by "
            "default the pilot's arms at 3 seeds), and may differ from the numbers here.",
            "",
            *power,
            "",
        ]
    else:
        lines += [no_power_line(a), ""]
    lines += ["## Compute-matched invariants", ""]
    lines += (
        [f"- {p}" for p in problems]
        if problems
        else [
            "All runs share every setting outside [objective] (flavor, data, tokens, schedule), "
            "the seed excepted, and every arm has the same seeds."
        ]
    )
    if a.notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in a.notes]]
    skipped: list[str] = []
    unfinish(out)  # (before any figure changes: no old report.md beside new figures)
    if figures:
        files = plots(a, arms, out, skipped)
        lines += ["", *[f"![{os.path.basename(f)}]({os.path.basename(f)})" for f in files]]
    else:
        for name in _figures_in(out):  # an earlier report's figures would show other numbers
            _remove_stale(out, name)
        lines += ["", "No figures drawn (--no-figures)."]
    if skipped:
        lines += ["", *[f"Not plotted: {s}." for s in skipped]]
    text = "\n".join(lines) + "\n"
    data = report_json(
        a,
        runs_dir,
        problems,
        unfinished,
        sampled,
        leaks,
        warnings,
        validation_steps_used(runs, last),
    )
    data["left_out"] = [
        {"arm": r["name"], "seed": r["seed"], "folder": r["folder"]} for r in left_out
    ]
    data["launched_without_folder"] = absent
    data["deviations"] = deviations
    data["selection"] = selection
    data["exploratory"] = bool(deviations)  # (its claims are leads, not findings)
    data["registered_plan"] = registered
    # each atomic, report.md last: the folder holds a finished report once it is there
    write_json(os.path.join(out, "report.json"), data)
    write_atomically(os.path.join(out, FINISHED), text)
    return text


FINISHED = "report.md"
"""The file a report writes last, once its figures and report.json are written: a report folder
without it holds no finished report (an interrupted one, or one being written)"""


def unfinish(out: str) -> None:
    """Remove an earlier report's report.md and report.json from `out` before this one writes
    anything there, so that no interruption leaves them beside this report's figures; a link in
    their place is refused first, as their writes would refuse it."""
    paths = [os.path.join(out, name) for name in (FINISHED, "report.json")]
    for path in paths:
        if os.path.islink(path):
            raise ValueError(
                f"{path} is a symbolic link (to {os.readlink(path)}): the report is not written "
                "through links; remove the link (or move the file it points to into its place)"
            )
    for path in paths:  # report.md first: the mark of a finished report goes before its data
        if os.path.isfile(path):
            os.remove(path)


STYLES = ("-", "--", "-.", ":")


def _figures_in(out: str) -> list[str]:
    """The figures a report drew in `out` (the differences along any axis, the CE curves)."""
    if not os.path.isdir(out):
        return []
    return sorted(
        n
        for n in os.listdir(out)
        if n in ("validation_ce.png", EVAL_CURVES)
        or (n.startswith("differences_vs_") and n.endswith(".png"))
    )


EVAL_CURVES = "eval_curves.png"
"""The learning curves of the families' evaluated primaries (eval --all-checkpoints)"""


def _eval_curves(a: Analysis, arms: dict) -> list[tuple[str, list]]:
    """[(metric, [(arm, [(step, mean over its seeds)])])] of each family's primary read from
    evaluations, at the steps every run of the arm was evaluated at and has it (two at least)."""
    out = []
    for name in dict.fromkeys(f.primary for f in a.plan.families):
        m = metric(name)
        if m.source != "eval":
            continue
        lines = []
        for arm_name, arm in arms.items():
            runs = [arm[s] for s in a.seeds if s in arm]  # (the seeds analysed)
            if not runs:
                continue
            points = []
            for s in sorted(set.intersection(*(set(evaluated_steps(r)) for r in runs))):
                values = [m.read(r["steps"][s]) for r in runs]
                if all(v is not None and math.isfinite(v) for v in values):
                    points.append((s, sum(values) / len(values)))
            if len(points) >= 2:
                lines.append((arm_name, points))
        if lines:
            out.append((name, lines))
    return out


def differences_figure(axis: str) -> str:
    """The file of the differences from the baseline along the plan's axis."""
    return f"differences_vs_{axis.removeprefix('options.')}.png"


def arm_styles(a: Analysis) -> dict[str, dict]:
    """A line style per arm that tells every arm apart: the colour by its value along the
    plan's axis (one per value of the sweep), the line by its kind (solid, dashed, ...); arms off
    the axis get black, grey and then the other lines."""
    values = sorted({v for v in a.along.values() if v is not None})
    colors = [f"C{i % 10}" for i in range(len(values))]
    kinds = list(dict.fromkeys(a.kinds[arm] for arm in a.arms if a.along.get(arm) is not None))
    styles, plain = {}, 0
    for arm in a.arms:
        value = a.along.get(arm)
        if value is not None:
            k = kinds.index(a.kinds[arm])
            styles[arm] = {
                "color": colors[values.index(value)],
                "linestyle": STYLES[k % len(STYLES)],
                "marker": "osD^v"[k % 5],
            }
        else:
            styles[arm] = {
                "color": ("black", "dimgray")[plain % 2],
                "linestyle": STYLES[(plain // 2) % len(STYLES)],
                "marker": None,
            }
            plain += 1
    return styles


def _contrast_points(a: Analysis, family) -> list[tuple[str, list]]:
    """(kind, its comparisons on the family's primary, along the axis) for each kind of the
    contrast with at least one arm on the axis."""
    out = []
    for kind in a.plan.contrast:
        cs = sorted(
            (
                c
                for c in a.comparisons
                if c.family == family.name
                and c.metric == family.primary
                and not c.aa_check
                and not c.final
                and a.kinds[c.arm] == kind
                and a.along.get(c.arm) is not None
            ),
            key=lambda c: a.along[c.arm],
        )
        if cs:
            out.append((kind, cs))
    return out


def _legend(ax, **kwargs) -> None:
    """A legend only where something drawn has a label."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def side_by_side(values: list[float], kinds: int, log: bool):
    """(value, i) -> where the i-th of `kinds` kinds draws its point at `value`: the kinds side
    by side, each within a small share of the axis' range (its span on the drawn scale), so that
    a point stays nearer its own value than any other's however close the values lie (0.99,
    0.999 and 1 along position_gamma; at most a factor 1.04 a kind apart on a log scale)."""
    if len(values) > 1:
        span = math.log(values[-1] / values[0]) if log else values[-1] - values[0]
    else:
        span = 1.0

    def nudged(value: float, i: int) -> float:
        step = i - (kinds - 1) / 2
        if log:
            return value * min(1.04, math.exp(0.015 * span)) ** step
        return value + 0.015 * span * step

    return nudged


def plots(a: Analysis, arms: dict, out: str, skipped: list[str] | None = None) -> list[str]:
    """The paired differences from the baseline along the plan's axis (default tau) for each
    family's primary metric, with the analysis' own intervals (the verdict's numbers), the
    validation CE curves and the evaluated primaries' learning curves (EVAL_CURVES), one style
    per arm. A panel or figure with nothing to draw is left out (its stale file removed),
    and why is appended to `skipped`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    skipped = [] if skipped is None else skipped
    files = []
    panels = [(f, _contrast_points(a, f)) for f in a.plan.families]
    # drawn on a log scale of the value (log), of 1 - value (log_one_minus, the axis reversed so
    # that the values grow to the right) or on a linear one
    log, one_minus = a.plan.axis_scale != "linear", a.plan.axis_scale == "log_one_minus"

    def drawn(value: float) -> float:
        return 1.0 - value if one_minus else value

    values = sorted({v for v in a.along.values() if v is not None})
    figure = differences_figure(a.plan.axis)
    nudged = side_by_side(sorted(drawn(v) for v in values), len(a.plan.contrast), log)

    empty = [f.name for f, points in panels if not points]
    panels = [(f, points) for f, points in panels if points]
    if panels:
        fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.4), squeeze=False)
        for ax, (f, points) in zip(axes[0], panels):
            for i, kind in enumerate(a.plan.contrast):
                cs = dict(points).get(kind)
                if not cs:
                    continue
                x = [nudged(drawn(a.along[c.arm]), i) for c in cs]
                y = [c.estimate for c in cs]
                lo = [c.estimate - c.low if c.low is not None else 0 for c in cs]
                hi = [c.high - c.estimate if c.high is not None else 0 for c in cs]
                ax.errorbar(
                    x,
                    y,
                    yerr=[lo, hi],
                    marker="osD^v"[i % 5],
                    capsize=3,
                    label=kind,
                    linestyle=STYLES[i % len(STYLES)],
                    color=f"C{i % 10}",
                )
                claimed = [c for c in cs if c.claimed]
                if claimed:
                    ax.scatter(
                        [nudged(drawn(a.along[c.arm]), i) for c in claimed],
                        [c.estimate for c in claimed],
                        s=120,
                        facecolors="none",
                        edgecolors="black",
                        zorder=3,
                        label="claimed" if i == 0 else None,
                    )
            ax.axhline(0, color="gray", linewidth=0.8)
            if log:
                ax.set_xscale("log")
                ax.minorticks_off()
            if one_minus:
                ax.invert_xaxis()
            ax.set_xticks([drawn(v) for v in values], [f"{v:g}" for v in values], fontsize=7)
            shown = "τ" if a.plan.axis == "tau" else a.plan.axis
            ax.set_xlabel(f"{shown} (drawn on ln(1 − {shown}))" if one_minus else shown)
            lower = metric(f.primary).lower_is_better
            ax.set_title(
                f"{f.primary} − {a.plan.baseline} ({'lower' if lower else 'higher'} is better)",
                fontsize=8,
            )
            _legend(ax, fontsize=7)
        files.append(_save(fig, out, figure))
    else:
        _remove_stale(out, figure)
    for name in _figures_in(out):  # an earlier report's, along another axis
        if name.startswith("differences_vs_") and name != figure:
            _remove_stale(out, name)
    if empty:
        skipped.append(
            f"the difference from {a.plan.baseline} along {a.plan.axis} for "
            f"{', '.join(empty)} (no arm of {', '.join(a.plan.contrast)} on that axis was "
            f"compared with {a.plan.baseline} on the family's primary metric)"
        )

    styles = arm_styles(a)
    curves = []
    for name, arm in arms.items():
        steps = sorted(set.intersection(*(set(r["val"]) for r in arm.values())))
        if steps:
            mean = [sum(r["val"][s] for r in arm.values()) / len(arm) for s in steps]
            curves.append((name, steps, mean))
    if curves:
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        for name, steps, mean in curves:
            style = {**styles[name], "marker": None}
            ax.plot(steps, mean, label=name, linewidth=1.2, **style)
        ax.set_xlabel("step")
        ax.set_ylabel("validation plain CE (mean over seeds)")
        _legend(ax, fontsize=6, ncol=2)
        files.append(_save(fig, out, "validation_ce.png"))
    else:
        _remove_stale(out, "validation_ce.png")
        skipped.append(
            "the validation CE curves (no arm has validation rows at steps common to its runs)"
        )
    if learning := _eval_curves(a, arms):
        fig, axes = plt.subplots(1, len(learning), figsize=(5 * len(learning), 4.2), squeeze=False)
        for ax, (name, lines) in zip(axes[0], learning):
            for arm_name, points in lines:
                steps, means = zip(*points)
                ax.plot(steps, means, label=arm_name, linewidth=1.2, **styles[arm_name])
            lower = metric(name).lower_is_better
            ax.set_xlabel("evaluated step")
            ax.set_title(
                f"{name}, mean over seeds ({'lower' if lower else 'higher'} is better)", fontsize=8
            )
        _legend(axes[0][0], fontsize=6, ncol=2)
        files.append(_save(fig, out, EVAL_CURVES))
    else:
        _remove_stale(out, EVAL_CURVES)
        if any(metric(f.primary).source == "eval" for f in a.plan.families):
            skipped.append(
                "the evaluation curves (no family's evaluated primary at two or more steps "
                "common to an arm's runs: `eval --all-checkpoints` evaluates every checkpoint)"
            )
    return files


def _remove_stale(out: str, name: str) -> None:
    """Remove a plot an earlier report wrote that this one does not draw."""
    path = os.path.join(out, name)
    if os.path.exists(path):
        os.remove(path)


def _save(fig, out: str, name: str) -> str:
    path = os.path.join(out, name)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=120)
    write_atomically(path, png.getvalue())  # whole or not at all, never through a link
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _refuse_another_analysis(out: str, selection: dict) -> None:
    """Refuse to write an exploratory re-analysis over the default folder's report of another
    one: a second re-analysis replaced the first without a word. Another is one of another
    plan's settings, --checkpoints, --arms or --seeds (report.json's `selection`); the same
    command is written again (its runs may have grown, its folders be spelled otherwise)."""
    path = os.path.join(out, "report.json")
    if not os.path.isfile(path):
        return
    earlier = load_report_json(path).get("selection")
    if earlier == selection:
        return
    if not isinstance(earlier, dict):
        differ = "written before a report recorded what it analysed"
    else:
        differ = "; ".join(
            "another plan's settings"
            if k == "plan_sha256"
            else f"--{k} {earlier.get(k)!r} there, {v!r} here"
            for k, v in selection.items()
            if earlier.get(k) != v
        )
    raise ValueError(
        f"{out} holds another exploratory re-analysis ({differ}), which this one would "
        f"replace: write this one elsewhere with --out DIR (a folder of its own, {out}_2 say), "
        f"or remove {out} to replace it"
    )


def load_report_json(path: str) -> dict:
    return read_json(path, "the report's report.json", expect=dict)
