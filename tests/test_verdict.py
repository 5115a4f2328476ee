"""The verdict: the two-way model's arithmetic, the plan, the integrity checks, and the error rates
of the report's own decision code (analysis.analyse) on simulated sweeps: the familywise rate of
false claims under a global null, the power on a planted effect, the A/A checks. The simulation
tests use fewer items than the real tasks where the rate they check does not depend on it;
`python -m prefix_titan.simulate --calibrate 200` runs the same checks at the real item counts."""

import json
import math
import os
import shutil
import unittest.mock

import numpy as np
import pytest

from prefix_titan.evaluation.harness import DEFAULT_TASKS, EMBEDDING_PROBE, SECONDARY_TASKS
from prefix_titan.evaluation.probes import PROBE_TASKS
from prefix_titan.sweep import inference
from prefix_titan.sweep import report as report_module
from prefix_titan.sweep import simulate as sim
from prefix_titan.sweep.analysis import EXPLORATORY_SHARE, analyse, first_share, load_plan
from prefix_titan.sweep.metrics import CHANCE, METRICS, metric, run_value
from prefix_titan.sweep.runs import _step_of, find_runs, group_arms


def report(*args, **kwargs):
    """The report without its figures unless a test asks for them (drawing them is most of a
    report's time; the tests of the figures draw them)."""
    return report_module.report(*args, **{"figures": False, **kwargs})


PLAN = load_plan()
ALPHA = PLAN.alpha
TASKS = (*DEFAULT_TASKS, *SECONDARY_TASKS, *PROBE_TASKS)
"""The tasks the plan's families read (the blank twins are not in the plan)"""
SMALL = sim.Sweep(items=100, tasks=TASKS)
WORKERS = min(4, os.cpu_count() or 1)
"""Processes for the many-sweep simulations (each sweep's draws are its own: any count gives
the same claims)"""


# -- the model's arithmetic ------------------------------------------------------------------------


def test_the_two_way_fit_is_least_squares_with_arm_and_seed_effects(seed):
    """sigma^2 and a contrast's standard error equal those of an ordinary least-squares fit of
    y ~ arm + seed (dummy-coded), and the t test's p-value matches scipy's."""
    from scipy.stats import t as student_t

    rng = np.random.default_rng(seed)
    arms, seeds = 5, 4
    y = rng.normal(size=(arms, seeds)) + rng.normal(size=(1, seeds)) + np.arange(arms)[:, None]
    x = np.zeros((arms * seeds, 1 + (arms - 1) + (seeds - 1)))
    x[:, 0] = 1
    for a in range(arms):
        for s in range(seeds):
            row = a * seeds + s
            if a:
                x[row, a] = 1
            if s:
                x[row, arms - 1 + s] = 1
    beta, residual, *_ = np.linalg.lstsq(x, y.reshape(-1), rcond=None)
    df = arms * seeds - x.shape[1]
    sigma2 = float(residual[0]) / df
    cov = sigma2 * np.linalg.inv(x.T @ x)
    f = inference.fit(y)
    assert f.df == df and f.sigma2 == pytest.approx(sigma2)
    test = inference.versus(f, 3, 0)  # arm 3 - arm 0: the coefficient of arm 3
    assert test.estimate == pytest.approx(beta[3]) and test.se == pytest.approx(
        math.sqrt(cov[3, 3])
    )
    assert test.p == pytest.approx(2 * student_t.sf(abs(beta[3]) / math.sqrt(cov[3, 3]), df))
    half = student_t.ppf(0.975, df) * math.sqrt(cov[3, 3])
    assert (test.low, test.high) == pytest.approx((beta[3] - half, beta[3] + half))


def test_the_per_seed_contrast_is_a_one_sample_t_test_of_its_seed_values(seed):
    from scipy.stats import ttest_1samp

    rng = np.random.default_rng(seed)
    y = rng.normal(size=(5, 4)) + rng.normal(size=(1, 4)) * 3  # a large shared seed effect
    w = inference.trend_weights([1, 2, 4], [0.0, 1.0, 3.0], 5)
    assert abs(w.sum()) < 1e-12 and w[[0, 3]].tolist() == [0.0, 0.0]
    t = inference.per_seed(y, w)
    want = ttest_1samp(w @ y, 0.0)
    assert t.df == 3 and math.isclose(t.p, want.pvalue, rel_tol=1e-9)
    assert math.isclose(t.estimate, float(np.polyfit([0, 1, 3], y[[1, 2, 4]].mean(1), 1)[0]))
    assert t.low < t.estimate < t.high
    y[[1, 2, 4]] = y[1] + np.array([[0.0], [0.5], [1.5]])  # the same slope at every seed
    assert inference.per_seed(y, w).p is None


def test_holm_by_hand():
    adjusted = inference.holm([0.01, 0.04, None, 0.03, 0.2])
    # sorted: 0.01 x4 = 0.04; 0.03 x3 = 0.09; 0.04 x2 = 0.08 -> 0.09 (monotone); 0.2 x1
    assert adjusted == pytest.approx([0.04, 0.09, None, 0.09, 0.2])
    assert inference.holm([]) == []


def test_the_graphical_procedure_is_holm_on_a_complete_graph_and_gates_by_hand(seed):
    rng = np.random.default_rng(seed)
    for m in range(1, 8):
        p = list(rng.uniform(0, 0.2, m))
        g = [[0.0 if i == j else 1 / (m - 1) for j in range(m)] for i in range(m)]
        assert inference.graph_adjusted(p, [1 / m] * m, g) == pytest.approx(inference.holm(p))
    # P1, P2 with half of alpha each; a rejected primary passes half to its own exploratory E1
    # (E2's) and half to the other primary; E1 -> P2, E2 -> P1.
    g = [[0, 0.5, 0.5, 0], [0.5, 0, 0, 0.5], [0, 1, 0, 0], [1, 0, 0, 0]]
    adj = inference.graph_adjusted([0.01, 0.2, 0.001, 0.001], [0.5, 0.5, 0, 0], g)
    # P1 at 0.01 / 0.5 = 0.02; then E1 holds 0.25 of alpha (0.001 / 0.25 = 0.004 -> 0.02) and P2
    # 0.75 (then all of it after E1: 0.2); E2's arm never claimed: its share never arrives.
    assert adj == pytest.approx([0.02, 0.2, 0.02, 0.2])
    assert inference.graph_adjusted([None, 0.01], [0.5, 0.5], [[0, 1], [1, 0]]) == [None, 0.02]
    with pytest.raises(ValueError, match="sum to <= 1"):
        inference.graph_adjusted([0.1, 0.1], [0.6, 0.6], [[0, 1], [1, 0]])


def test_an_arm_claimed_on_everything_passes_its_whole_share_to_the_other_primaries():
    """Once every other arm is claimed on its primary and all its exploratory metrics, the last
    arm's primary is tested at all of alpha: the last exploratory metric of each arm passes its
    share on to the other primaries (an epsilon edge) instead of keeping it. Without the edge it
    was tested at 0.16 alpha (12 arms, 8 exploratory metrics each)."""
    from prefix_titan.sweep.analysis import Comparison, _graph

    rows = [Comparison("f", "p", str(a), "b", True, 0.0, None, None, None) for a in range(12)]
    rows += [
        Comparison("f", f"e{k}", str(a), "b", False, 0.0, None, None, None)
        for a in range(12)
        for k in range(8)
    ]
    p = [1e-15 if c.arm != "11" else (0.001 if c.primary else 0.9) for c in rows]
    adjusted = inference.graph_adjusted(p, *_graph(rows))
    assert adjusted[11] == pytest.approx(0.001, rel=1e-4)
    assert all(x <= 0.05 for c, x in zip(rows, adjusted) if c.arm != "11")
    weights, g = _graph(rows)
    assert sum(weights) == pytest.approx(1.0) and all(sum(r) <= 1 + 1e-12 for r in g)


def _one_family_plan(tmp_path, primary, exploratory, baseline="label_smoothing", variance="pooled"):
    path = tmp_path / f"plan_{variance}.toml"
    path.write_text(
        f'question = "Q"\nalpha = 0.05\nbaseline = "{baseline}"\ncheckpoints = 1\n'
        f'variance = "{variance}"\n'
        'contrast = ["prefix", "prefix_norm"]\n[[family]]\nname = "f"\n'
        f"primary = {json.dumps(primary)}\nexploratory = {json.dumps(exploratory)}\n"
    )
    return load_plan(str(path))


def test_a_claim_on_a_lower_is_better_primary_reads_better_not_above(tmp_path, seed):
    """A validation CE 0.3 nats lower is "better than" the baseline in the answer (it read
    "above"); the simulator's calibration counts the top-1 and Brier it moves with the CE as
    moved, not as claims on metrics the effect leaves alone."""
    arm = "prefix_tau0.5"
    sweep = sim.Sweep(tasks=TASKS, effects=((arm, "val CE", -0.3),), items=200)
    a = analyse(sim.group(sim.simulate(sweep, seed=seed)), _one_family_plan(tmp_path, "val CE", []))
    assert a.answer.startswith(f"Yes, on val CE: {arm} (-0."), a.answer
    assert "better than label_smoothing, at familywise alpha" in a.answer
    assert " above " not in a.answer
    assert {"val top1", "val Brier"} <= sim.moved_metrics("val CE")


def test_a_misspelt_metric_in_a_plan_is_told_the_nearest_and_every_name_quoted(tmp_path):
    """The metrics a plan may name are listed each quoted (`char acc, blank` holds a comma), after
    the nearest one; metric() says the same of a name it does not know."""
    with pytest.raises(ValueError) as e:
        _one_family_plan(tmp_path, "val CE", ["char acc blank"])
    said = str(e.value)
    assert "names the metric 'char acc blank', which does not exist (did you mean " in said
    assert "(did you mean 'char acc, blank'?); the metrics: 'val CE', 'val CE excess', " in said
    assert all(repr(name) in said for name in METRICS)
    with pytest.raises(ValueError) as e:
        metric("val ce")
    assert str(e.value).startswith("no metric named 'val ce' (did you mean 'val CE'?); the ")


@pytest.mark.parametrize(
    "primary, exploratory, less",
    [("char_spell_blank", [], "char_spell, calibrated"), ("val CE", ["char acc, blank"], "")],
)
def test_a_control_is_no_metric_a_plan_can_claim_on(tmp_path, primary, exploratory, less):
    """A probe's blank twin measures what the model prefers without reading the word: a plan
    naming it was taken, and its difference claimed as "better" (higher read as better)."""
    with pytest.raises(ValueError) as e:
        _one_family_plan(tmp_path, primary, exploratory)
    control = primary if not exploratory else exploratory[0]
    assert f"names {control!r}, a control (the probe with its word blanked" in str(e.value)
    assert f"or {(less or 'char acc, calibrated')!r} (the probe less" in str(e.value)
    # a sweep's registered copy, from before the rule: read as registered, not refused
    path = tmp_path / "plan_pooled.toml"
    path.write_text("# The analysis plan registered by `sweep launch` from x\n" + path.read_text())
    assert control in [
        m for f in load_plan(str(path)).families for m in (f.primary, *f.exploratory)
    ]


def _records(y: dict, specs) -> dict:
    """{arm: {seed: run}} holding one evaluated step with y[metric][arm, seed] as its accuracy."""
    out = {}
    for a, spec in enumerate(specs):
        name = spec.arm_name()
        out[name] = {
            s: {
                "folder": f"t/{name}/{s}",
                "name": name,
                "seed": s,
                "config": {},
                "objective": vars(spec),
                "val": {},
                "validation": {},
                "last_step": 100,
                "steps": {
                    100: {
                        "results": {m: {"acc,none": float(v[a, s])} for m, v in y.items()},
                        "items": {},
                        "limits": {},
                        "versions": {},
                        "files": {},
                    }
                },
            }
            for s in range(y[next(iter(y))].shape[1])
        }
    return out


def test_a_one_seed_sweep_states_no_power_and_no_false_reason(seed, tmp_path):
    """With one seed no variance is measured: the power section has nothing to state, and no
    line says the runs "measured no variance" (true only of seeds that agree)."""
    from prefix_titan.sweep.configs import arm_specs
    from prefix_titan.sweep.report import power_lines

    rng = np.random.default_rng(seed)
    specs = arm_specs()
    one = analyse(_records({"hellaswag": rng.random((len(specs), 1))}, specs), PLAN)
    assert power_lines(one) == []
    y = np.tile(rng.random((len(specs), 1)), (1, 3))  # three seeds that agree exactly
    plan = _one_family_plan(tmp_path, "hellaswag", [])
    agree = power_lines(analyse(_records({"hellaswag": y}, specs), plan))
    assert any("the runs measured no variance of it" in line for line in agree), agree


def test_an_exploratory_metric_no_run_has_is_named_in_the_notes(seed, tmp_path):
    """A plan's exploratory metric that the runs lack is not compared, and a note says so (it
    used to vanish from the family without a word); the power lines give the measured one the
    share the procedure gives it (split over the measured exploratory metrics, not the plan's)."""
    from prefix_titan.sweep.configs import arm_specs
    from prefix_titan.sweep.report import power_lines

    rng = np.random.default_rng(seed)
    specs = arm_specs()
    y = {m: 0.3 + 0.01 * rng.normal(size=(len(specs), 3)) for m in ("hellaswag", "piqa")}
    plan = _one_family_plan(tmp_path, "hellaswag", ["piqa", "arc_easy"])
    result = analyse(_records(y, specs), plan)
    assert {c.metric for c in result.comparisons} == {"hellaswag", "piqa"}
    notes = [n for n in result.notes if "arc_easy" in n]
    said = "f: exploratory arc_easy not compared: no run of the sweep holds it (an evaluated"
    assert notes and notes[0].startswith(said), result.notes
    assert not any("piqa not available" in n for n in result.notes)
    plan_ = result.plan
    compared = sum(k in plan_.contrast and a != plan_.baseline for a, k in result.kinds.items())
    line = next(x for x in power_lines(result) if x.startswith("- piqa:"))
    assert f"at alpha/{round(compared / EXPLORATORY_SHARE)};" in line, line
    # a metric of the plan no comparison has still counts itself (never alpha/0)
    k = round(compared / EXPLORATORY_SHARE)
    assert first_share(plan_, "arc_easy", compared, {"hellaswag"}) == (k, "exploratory")


def test_a_detectable_difference_beyond_a_metrics_range_is_printed_as_none(seed, tmp_path):
    """At 2 seeds the per-seed test (1 degree of freedom) needs differences an accuracy cannot
    have (piqa: 49 at alpha/264): the power table, the report's power lines and the answer say
    none is detectable there, and give the number where it is within the metric's range."""
    from prefix_titan.sweep.configs import arm_specs
    from prefix_titan.sweep.metrics import beyond_widest, detectable_text
    from prefix_titan.sweep.report import power_lines

    assert beyond_widest("piqa", 1.01) == 1 and beyond_widest("piqa", 1.0) is None
    assert beyond_widest("char acc - blank", 1.5) is None and beyond_widest("val CE", 9) is None
    assert (
        detectable_text("val Brier", 2.5) == "none (> 2)"
        and detectable_text("piqa", 0.5) == "0.5000"
    )
    rng = np.random.default_rng(seed)
    specs = arm_specs()
    answered = 0
    for seeds, none in ((2, True), (3, False)):
        y = {m: 0.3 + 0.01 * rng.normal(size=(len(specs), seeds)) for m in ("hellaswag", "piqa")}
        plan = _one_family_plan(tmp_path, "hellaswag", ["piqa"], variance="baseline_apart")
        result = analyse(_records(y, specs), plan)
        lines = {x.split(":")[0]: x for x in power_lines(result)}
        for name in ("- hellaswag", "- piqa"):
            assert (
                "none (±" in lines[name] and "its values differ by 1 at most" in lines[name]
            ) is none, lines[name]
            assert (f"{name}: ±0." in lines[name]) is not none, lines[name]
        if result.answer.startswith(("No difference found", "Cannot tell")):  # (a null sweep)
            assert (
                "detects with 80% power, as estimated from its runs, only none (> 1)"
                in result.answer
            ) is none, result.answer
            answered += 1
    assert answered, "no null answer to check: try another PREFIX_TITAN_TEST_SEED"


def test_power_seeds_is_a_count_or_the_seeds_themselves(capsys, in_project):
    """`power --seeds` plans for a number of seeds; the seeds as `sweep launch --seeds` takes them
    are counted, and one seed-like number is refused, not planned for as 1234 seeds."""
    from prefix_titan.power import main as power

    for argv, says in (
        (["--seeds", "1234"], "--seeds 1234: a number of seeds per arm, 2 to 100"),
        (["--seeds", "7", "8", "7"], "--seeds 7 8 7 names a seed twice"),
        (["--seeds", "1"], "--seeds must be >= 2"),
    ):
        with pytest.raises(SystemExit) as e:
            power(argv)
        assert e.value.code == 2 and says in capsys.readouterr().err


@pytest.mark.slow  # (the power command takes 5-10 s here)
@pytest.mark.parametrize("seeds, none", [(2, True), (3, False)])
def test_the_power_table_prints_none_beyond_a_metrics_range(seeds, none, capsys, in_project):
    from prefix_titan.power import main as power

    power(["--seeds", str(seeds)])
    out = capsys.readouterr().out
    if seeds == 3:  # the seeds themselves, as the launch takes them: the same plan
        power(["--seeds", "1234", "1235", "1236"])
        listed = capsys.readouterr().out
        assert listed.startswith("--seeds names 3 seeds: planning for 3 seeds per arm\n")
        assert listed.split("\n", 1)[1] == out
    rows = {
        r.split("|")[1].strip(): r.split("|")[4].strip()
        for r in out.splitlines()
        if r.startswith("| ")
    }
    assert (rows["piqa"] == "none (> 1)") is none and (rows["hellaswag"] == "none (> 1)") is none
    assert rows["char composite"][0].isdigit()  # (no fixed range: its embedding part has none)
    assert ("'none (> W)': the test needs a difference wider than" in out) is none


def test_a_null_answer_names_only_the_kinds_it_compared(seed, tmp_path):
    """ "No difference found" names the contrast's kinds that the sweep has (not a kind it lacks),
    and, where the arms vary along another axis so that the baseline's own kind is compared, the
    arms by name (not "no arm of label_smoothing differs from label_smoothing"); it says no arm
    was shown to differ, not that none differs."""
    from prefix_titan.objectives.spec import ObjectiveSpec
    from prefix_titan.sweep.configs import arm_specs

    rng = np.random.default_rng(seed)
    specs = [s for s in arm_specs() if s.arm_name() == "label_smoothing"] + [
        s for s in arm_specs() if s.arm_name().startswith("prefix_norm")
    ]
    y = {"hellaswag": 0.3 + 0.01 * rng.normal(size=(len(specs), 3))}
    plan = _one_family_plan(tmp_path, "hellaswag", [])
    answer = analyse(_records(y, specs), plan).answer
    assert "no arm of prefix_norm was shown to differ from label_smoothing" in answer, answer

    gamma = [
        ObjectiveSpec(name="label_smoothing"),
        ObjectiveSpec(name="label_smoothing", position_gamma=0.999),
        ObjectiveSpec(name="prefix", tau=0.5, position_gamma=0.999),
    ]
    y = {"hellaswag": 0.3 + 0.01 * rng.normal(size=(3, 3))}
    path = tmp_path / "axis.toml"
    path.write_text(
        'question = "Q"\nalpha = 0.05\nbaseline = "label_smoothing"\ncheckpoints = 1\n'
        'axis = "position_gamma"\ncontrast = ["prefix_tau0.5", "label_smoothing"]\n'
        '[[family]]\nname = "f"\nprimary = "hellaswag"\nexploratory = []\n'
    )
    answer = analyse(_records(y, gamma), load_plan(str(path))).answer
    names = ", ".join(s.arm_name() for s in gamma[1:])
    assert f"no arm compared ({names}) was shown to differ" in answer, answer


@pytest.mark.parametrize("short", ["ce", "label_smoothing", "prefix_tau0.05"])
def test_the_decision_refuses_arms_at_other_seeds_whichever_arm_misses_one(seed, short):
    """Arms whose seed lists differ cannot be paired, whether the arm missing a seed is listed
    first (its seeds would have been taken for every arm's), the baseline (nothing compared) or
    a compared arm (not compared, silently): a ValueError names the arm and its seeds."""
    from prefix_titan.sweep.configs import arm_specs

    specs = arm_specs()[:4]
    rng = np.random.default_rng(seed)
    runs = _records({"hellaswag": 0.5 + 0.01 * rng.normal(size=(len(specs), 3))}, specs)
    del runs[short][2]
    with pytest.raises(ValueError, match="not run with the same seeds") as e:
        analyse(runs, PLAN)
    assert f"{short}: seeds 0, 1\n" in str(e.value) and "(--seeds 0 1)" in str(e.value)


@pytest.mark.slow
def test_when_most_arms_truly_differ_the_family_still_makes_a_false_claim_at_most_alpha(
    seed, tmp_path
):
    """A partial null, where the old gate (an exploratory claim for a claimed arm where Holm over
    all exploratory comparisons allowed it) made a false claim in 8.0% of sweeps: 11 of the 12
    compared arms truly better by 6 sd on the primary and on one exploratory metric, the rest
    null; the two-way model holds exactly. Any false claim in the family (the null arm on
    anything, an effect arm on a metric it leaves alone): the procedure spends all of alpha here,
    so the rate is near it; the test fails where 1,000 sweeps show it above alpha (the exact 99%
    lower bound over it: the old gate's 8.0% would)."""
    from prefix_titan.sweep.configs import arm_specs

    explored = ["piqa", "arc_easy", "winogrande_debiased", "arc_challenge", "sciq", "char_spell"]
    plan = _one_family_plan(tmp_path, "hellaswag", explored)
    specs = arm_specs()
    names = [s.arm_name() for s in specs]
    compared = [a for a in names if a not in ("ce", "label_smoothing")]
    effect = set(compared[:-1])
    moved = {"hellaswag", "piqa"}
    rng = np.random.default_rng(seed)
    sweeps, false = 1000, 0
    for _ in range(sweeps):
        y = {
            m: 0.5 + 0.01 * (rng.normal(size=(len(specs), 3)) + rng.normal(size=(1, 3)))
            for m in ["hellaswag", *explored]
        }
        for m in moved:
            for a in effect:
                y[m][names.index(a)] += 0.06
        claims = [
            c for c in analyse(_records(y, specs), plan, answer=False).claims if not c.aa_check
        ]
        false += any(c.arm not in effect or c.metric not in moved for c in claims)
    print(
        f"partial null, 11 of 12 arms better: sweeps with a false claim {sim.rate(false, sweeps)}"
    )
    from scipy.stats import beta

    assert beta.ppf(0.01, false, sweeps - false + 1) <= ALPHA


def _family_claims(y: dict, primary: str, explored: list[str], variance: str = "pooled") -> set:
    """{(arm, metric)} the family's decision claims for tables y[metric][arm, seed] whose arm 0 is
    the baseline: the two-way test of each arm against it (by the plan's `variance` rule), then
    the family's graph (analysis._graph and inference.graph_adjusted, as _decide_family runs
    them)."""
    from prefix_titan.sweep.analysis import Comparison, _graph

    rows = []
    apart = variance == "baseline_apart"
    for m in (primary, *explored):
        f = inference.fit(y[m])
        three = y[m].shape[0] >= 3 and y[m].shape[1] >= 2  # (apart: 3 arms, 2 seeds at least)
        v = inference.apart(y[m], 0) if apart and three else None
        for a in range(1, len(y[m])):
            t = inference.versus_apart(y[m], a, 0, v=v) if apart else inference.versus(f, a, 0)
            rows.append(Comparison("f", m, str(a), "0", m == primary, 0.0, None, None, t.p))
    adjusted = inference.graph_adjusted([c.p for c in rows], *_graph(rows))
    return {(int(c.arm), c.metric) for c, p in zip(rows, adjusted) if p is not None and p <= ALPHA}


@pytest.mark.slow
@pytest.mark.parametrize(
    "moved_arms, moved_explored",
    [(0, 0), (6, 0), (12, 0), (12, 4)],
    ids=[
        "global null",
        "half the arms on the primary",
        "every arm on the primary",
        "and half the exploratory",
    ],
)
def test_the_family_graph_holds_alpha_under_partial_nulls(seed, moved_arms, moved_explored):
    """The family's familywise rate of false claims, with 12 arms against the baseline on one
    primary and 8 exploratory metrics, where the first `moved_arms` arms are truly better by 6 sd
    on the primary and on the first `moved_explored` exploratory metrics: whatever is true, a
    claim where nothing is planted stays at most alpha. 2,000 sweeps: a rule at 7% fails this
    9 times in 10; a valid one at exactly 5% once in 100."""
    rng = np.random.default_rng(seed)
    arms, seeds, sweeps = 13, 3, 2000
    explored = [f"e{i}" for i in range(8)]
    planted = {(a, m) for a in range(1, moved_arms + 1) for m in ["p", *explored[:moved_explored]]}
    false = 0
    for _ in range(sweeps):
        y = {
            m: rng.normal(size=(arms, seeds)) + rng.normal(size=(1, seeds))
            for m in ["p", *explored]
        }
        for a, m in planted:
            y[m][a] += 6.0
        false += bool(_family_claims(y, "p", explored) - planted)
    rate = false / sweeps
    print(f"{moved_arms} arms moved, {moved_explored} exploratory: false claims in {rate:.1%}")
    assert rate <= ALPHA + 2.33 * math.sqrt(ALPHA * (1 - ALPHA) / sweeps), rate


@pytest.mark.slow
def test_a_noisier_ce_fails_no_a_a_check_under_the_plans_rule(seed):
    """Null sweeps where ce's validation CE is twice as noisy from run to run as the other arms':
    the A/A checks (the CE-equivalent arms against ce) follow the plan's rule with ce as the
    baseline, so they fail in at most about alpha of the sweeps (measured: 1.8% [0.7, 3.6] of
    400; 6.0% [3.9, 8.8] with half of Satterthwaite's degrees of freedom kept, the former rule),
    not the pooled rule's 12.3%; asserted at 400 sweeps as the other rates are, at most alpha
    plus 2.33 standard errors (7.5%), the pooled rule at least 8%."""
    import dataclasses

    rng = np.random.default_rng(seed)
    extra = math.sqrt(3) * sim.Noise().val_run  # ce's run sd: twice the others'
    sweeps, failed = 400, {"baseline_apart": 0, "pooled": 0}
    for k in range(sweeps):
        runs = sim.simulate(sim.Sweep(items=200, tasks=TASKS, embedding_probe=False), seed=seed + k)
        for run in runs:
            if run["name"] == "ce":
                shift = rng.normal(0, extra)
                for row in run["validation"].values():
                    row["validation_plain_ce"] += shift
        for variance in failed:
            plan = dataclasses.replace(PLAN, variance=variance)
            a = analyse(sim.group(runs), plan, answer=False)
            failed[variance] += any(c.aa_check and c.claimed for c in a.comparisons)
    rates = {v: n / sweeps for v, n in failed.items()}
    bound = ALPHA + 2.33 * math.sqrt(ALPHA * (1 - ALPHA) / sweeps)
    print(f"a noisier ce: A/A checks failed in {rates}")
    assert rates["baseline_apart"] <= bound and rates["pooled"] >= 0.08, rates


def _noisier_baseline_tables(rng, metrics, arms, seeds, ratio) -> dict:
    """Null tables y[metric][arm, seed]: unit noise, the baseline's (arm 0) `ratio` times as
    large, and a seed effect shared by every arm."""
    y = {}
    for m in metrics:
        noise = rng.normal(size=(arms, seeds))
        noise[0] *= ratio
        y[m] = noise + 2 * rng.normal(size=(1, seeds))
    return y


@pytest.mark.slow
@pytest.mark.parametrize("ratio", [1.0, 2.0, 4.0])
def test_the_baseline_apart_rule_holds_alpha_with_a_noisier_baseline(seed, ratio):
    """The family's familywise rate of false claims under the null (12 arms against the
    baseline, one primary and 4 exploratory metrics, a seed effect shared by every arm) with the
    baseline's sd `ratio` times the others': the plan's variance = baseline_apart stays at most
    alpha; the pooled rule, on the same tables, is far above it once the baseline is twice as
    noisy (15% in 20,000 simulated sweeps). 1,500 sweeps: a rule at 7% fails this 9 times in 10."""
    rng = np.random.default_rng(seed)
    arms, seeds, sweeps = 13, 3, 1500
    explored = [f"e{i}" for i in range(4)]
    false = {"pooled": 0, "baseline_apart": 0}
    for _ in range(sweeps):
        y = _noisier_baseline_tables(rng, ["p", *explored], arms, seeds, ratio)
        for rule in false:
            false[rule] += bool(_family_claims(y, "p", explored, rule))
    rates = {k: v / sweeps for k, v in false.items()}
    print(f"baseline sd ratio {ratio}: false claims {rates}")
    assert rates["baseline_apart"] <= ALPHA + 2.33 * math.sqrt(ALPHA * (1 - ALPHA) / sweeps)
    if ratio >= 2:
        assert rates["pooled"] >= 0.08, rates


def _partial_null_false_claims(args) -> int:
    """Of `sweeps` 3-seed sweeps of the 14 arms through `analyse` under the plan's own rule
    (variance = baseline_apart): one primary (hellaswag) and 8 exploratory metrics, unit noise
    with the baseline's `ratio` times as large and a seed effect shared by the arms, 11 of the
    12 compared arms truly better on the primary by 40 of the others' sds times the ratio (all
    of them claimed), nothing else moved: in how many a false claim (the twelfth arm on
    anything, an effect arm on an exploratory metric)."""
    from prefix_titan.sweep.configs import arm_specs

    plan, explored, ratio, sweeps, seed = args
    specs = arm_specs()
    names = [s.arm_name() for s in specs]
    compared = [a for a in names if a not in ("ce", "label_smoothing")]
    effect = set(compared[:-1])
    b = names.index("label_smoothing")
    rng = np.random.default_rng(seed)
    false = 0
    for _ in range(sweeps):
        y = {}
        for m in ["hellaswag", *explored]:
            noise = rng.normal(size=(len(specs), 3))
            noise[b] *= ratio
            y[m] = 0.5 + 0.01 * (noise + rng.normal(size=(1, 3)))
        for a in effect:
            y["hellaswag"][names.index(a)] += 0.4 * ratio
        claims = [
            c for c in analyse(_records(y, specs), plan, answer=False).claims if not c.aa_check
        ]
        false += any(c.arm not in effect or c.metric != "hellaswag" for c in claims)
    return false


@pytest.mark.slow  # 600 analyses of 14 arms and 9 metrics each: 10-20 s on 2 cores
@pytest.mark.parametrize("ratio", [1.0, 2.0])
def test_the_plans_rule_holds_alpha_under_a_partial_null_with_a_noisier_baseline(
    seed, tmp_path, ratio
):
    """Where most arms truly differ on the primary, the family's graph passes alpha to their
    exploratory metrics, each at a small share of it (alpha/192 to alpha/100) and to the last
    primary at up to about half of it: each comparison's p must hold its level there, not only
    at alpha/12. With half of Satterthwaite's degrees of freedom kept above S - 1 (the former
    inference.APART_DF_SHARE) a comparison claimed 2.7x its level at alpha/12 and 4.8x at
    alpha/96 with the baseline's sd 2x the others', and the family falsely claimed in 9.3% of
    1,500 such sweeps (2.1% at 1x); with a fifth kept, at most alpha. 600 sweeps through
    `analyse`, the plan's own rule: the former rule fails this 9 times in 10 at 2x."""
    from concurrent.futures import ProcessPoolExecutor

    explored = [
        "piqa", "arc_easy", "winogrande_debiased", "arc_challenge", "sciq",
        "char_spell", "char_count", "char_contains",
    ]  # fmt: skip
    plan = _one_family_plan(tmp_path, "hellaswag", explored, variance="baseline_apart")
    sweeps, parts = 600, max(1, min(WORKERS, 2))
    jobs = [(plan, explored, ratio, sweeps // parts, seed + k) for k in range(parts)]
    with ProcessPoolExecutor(parts) as pool:
        false = sum(pool.map(_partial_null_false_claims, jobs))
    n = sweeps // parts * parts
    print(f"partial null, baseline sd {ratio}x: false claims in {sim.rate(false, n)}")
    assert false / n <= ALPHA + 2.33 * math.sqrt(ALPHA * (1 - ALPHA) / n), false / n


@pytest.mark.slow
def test_at_two_seeds_baseline_apart_compares_per_seed_differences_and_holds_alpha(seed):
    """At 2 seeds the baseline's own variance has one degree of freedom: shrunk towards the
    others', it underestimates a noisier baseline's (the shrunk rule with half of Satterthwaite's
    degrees of freedom kept, run on the same tables by lowering APART_MIN_SEEDS, claims falsely
    in about 7.6% of sweeps at 4x the baseline's sd);
    the rule compares each arm by its per-seed differences from the baseline instead, and the
    family's rate stays at most alpha. 1,500 sweeps: a rule at 7.6% passes the first check 1 time
    in 100."""
    rng = np.random.default_rng(seed)
    arms, seeds, sweeps = 13, 2, 1500
    explored = [f"e{i}" for i in range(4)]
    false = {"per seed": 0, "shrunk": 0}
    for _ in range(sweeps):
        y = _noisier_baseline_tables(rng, ["p", *explored], arms, seeds, 4.0)
        false["per seed"] += bool(_family_claims(y, "p", explored, "baseline_apart"))
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(inference, "APART_MIN_SEEDS", 2)
            mp.setattr(inference, "APART_DF_SHARE", 0.5)  # (a fifth kept: 0.9% here, untested
            # where other arms differ)
            false["shrunk"] += bool(_family_claims(y, "p", explored, "baseline_apart"))
    rates = {k: v / sweeps for k, v in false.items()}
    print(f"2 seeds, baseline sd 4x: false claims {rates}")
    assert rates["per seed"] <= ALPHA + 2.33 * math.sqrt(ALPHA * (1 - ALPHA) / sweeps), rates
    assert rates["shrunk"] > ALPHA, rates


def test_baseline_apart_compares_an_arm_noisier_than_the_others_by_its_per_seed_differences(
    seed, tmp_path
):
    """The apart rule takes a compared arm's variance from the pool: an arm whose residual
    variance is above the others' at OWN_VARIANCE_LEVEL is compared by its per-seed differences
    instead (interval, p and S - 1 degrees of freedom), the other arms as before, and the note
    says so; an arm as noisy as the rest is switched in 1 - OWN_VARIANCE_LEVEL of tables."""
    from prefix_titan.sweep.configs import arm_specs

    rng = np.random.default_rng(seed)
    specs = arm_specs()
    names = [s.arm_name() for s in specs]
    noisy, b = names.index("prefix_tau2.0"), names.index("label_smoothing")
    y = 0.5 + 0.01 * (rng.normal(size=(len(specs), 5)) + rng.normal(size=(1, 5)))
    y[noisy] = 0.5 + 0.2 * rng.normal(size=5)
    v = inference.apart(y, b)
    assert v.noisier == {noisy}
    w = np.zeros(len(specs))
    w[noisy], w[b] = 1.0, -1.0
    assert inference.versus_apart(y, noisy, b, v=v) == inference.per_seed(y, w)
    other = names.index("prefix_tau0.5")
    with pytest.MonkeyPatch.context() as mp:  # the switch off: the same test for every other arm
        mp.setattr(inference, "OWN_VARIANCE_LEVEL", 1.0)
        assert inference.apart(y, b).noisier == frozenset()
        assert inference.versus_apart(y, other, b) == inference.versus_apart(y, other, b, v=v)
        assert inference.versus_apart(y, noisy, b).df > 4
    plan = _one_family_plan(tmp_path, "hellaswag", ["piqa"], variance="baseline_apart")
    a = analyse(_records({"hellaswag": y, "piqa": y[::-1].copy()}, specs), plan)
    mine = {c.arm: c for c in a.comparisons if c.metric == "hellaswag" and not c.final}
    assert mine["prefix_tau2.0"].seedwise and mine["prefix_tau2.0"].df == 4
    assert not any(c.seedwise for arm, c in mine.items() if arm != "prefix_tau2.0")
    said = [n for n in a.notes if n.startswith("hellaswag: the residual variance of prefix_tau2.0")]
    assert said and "compares it with label_smoothing by its per-seed differences (4 " in said[0]
    # the baseline is left out of the screen: far noisier, it would hide the noisy arm
    loud = y.copy()
    loud[b] = 0.5 + 2.0 * rng.normal(size=5)
    assert noisy in inference.apart(loud, b).noisier
    bound = inference.variance_bound(len(specs), 5, 0.99)
    assert inference.variance_ratios(loud)[noisy] < bound  # (the baseline in: hidden)
    # arms that differ by constants: residuals at rounding error switch nothing
    flat = 0.1 * np.arange(len(specs))[:, None] + np.array([[0.3, 0.1, 0.7, 0.2, 0.9]])
    assert inference.noisier(flat, b) == frozenset()
    switched = 0
    for _ in range(400):  # equal variances: the 99% bound switches a given arm in 1% of tables
        y = rng.normal(size=(14, 3)) + 3 * rng.normal(size=(1, 3))
        switched += noisy in inference.apart(y, b).noisier
    assert switched <= 12, switched  # 4 expected (binomial sd 2)


def _noisy_arm_false_claims(args) -> tuple[int, int]:
    """Of `sweeps` null sweeps of the 14 arms through `analyse` (the plan's baseline_apart, one
    primary and 4 exploratory metrics, unit noise, a seed effect shared by the arms, the arms at
    `noisy` with `ratio` times the sd): in how many a claim, with the noisier-arm switch on and
    off (OWN_VARIANCE_LEVEL 1: no arm switched), on the same sweeps."""
    from prefix_titan.sweep.configs import arm_specs

    plan, explored, noisy, ratio, seeds, sweeps, seed = args
    specs = arm_specs()
    names = [s.arm_name() for s in specs]
    rng = np.random.default_rng(seed)
    false = [0, 0]
    for _ in range(sweeps):
        y = {}
        for m in ["hellaswag", *explored]:
            noise = rng.normal(size=(len(specs), seeds))
            for arm in noisy:
                noise[names.index(arm)] *= ratio
            y[m] = 0.5 + 0.01 * (noise + 3 * rng.normal(size=(1, seeds)))
        records = _records(y, specs)
        false[0] += bool([c for c in analyse(records, plan, answer=False).claims if not c.aa_check])
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(inference, "OWN_VARIANCE_LEVEL", 1.0)
            claims = analyse(records, plan, answer=False).claims
            false[1] += bool([c for c in claims if not c.aa_check])
    return tuple(false)


@pytest.mark.slow  # 2 x 800 analyses of 14 arms and 5 metrics at 8 seeds: 20-40 s on 2 cores
def test_a_noisier_compared_arm_holds_alpha_under_the_null_at_more_seeds(seed, tmp_path):
    """Under the global null two compared arms at 3x the others' sd: the apart rule alone claims
    more often the more seeds there are (about 12% of sweeps at 8 seeds: the pooled variance is
    known better and the arms' excess never enters); with such arms compared by their per-seed
    differences, at most alpha. 800 sweeps, the plan's own rule, both on the same sweeps."""
    from concurrent.futures import ProcessPoolExecutor

    explored = ["piqa", "arc_easy", "char_spell", "char_count"]
    plan = _one_family_plan(tmp_path, "hellaswag", explored, variance="baseline_apart")
    noisy = ["prefix_tau2.0", "prefix_norm_tau2.0"]
    sweeps, parts = 800, max(1, min(WORKERS, 2))
    jobs = [(plan, explored, noisy, 3.0, 8, sweeps // parts, seed + k) for k in range(parts)]
    with ProcessPoolExecutor(parts) as pool:
        now, before = map(sum, zip(*pool.map(_noisy_arm_false_claims, jobs)))
    n = sweeps // parts * parts
    print(f"two arms at 3x the sd, 8 seeds: {sim.rate(now, n)} ({sim.rate(before, n)} unswitched)")
    assert now / n <= ALPHA + 2.33 * math.sqrt(ALPHA * (1 - ALPHA) / n), (now, before)
    assert before / n > ALPHA, (now, before)


def test_one_predicate_says_where_baseline_apart_is_the_per_seed_test(seed):
    """inference.seedwise decides for the comparison, the detectable difference, the power note
    and the report: baseline_apart with 3 or more arms below APART_MIN_SEEDS seeds; a pooled plan
    or two arms is the two-way fit at any seed count."""
    rng = np.random.default_rng(seed)
    cases = {
        ("baseline_apart", 3, 2): True,
        ("baseline_apart", 13, 2): True,
        ("baseline_apart", 3, inference.APART_MIN_SEEDS): False,
        ("baseline_apart", 2, 2): False,
        ("pooled", 13, 2): False,
    }
    for (variance, arms, seeds), expected in cases.items():
        assert inference.seedwise(variance, arms, seeds) is expected
        y = rng.normal(size=(arms, seeds))
        w = np.zeros(arms)
        w[1], w[0] = 1.0, -1.0
        if variance == "baseline_apart" and arms >= 3:
            t, paired = inference.versus_apart(y, 1, 0), inference.per_seed(y, w)
            assert (t == paired) is expected
            assert (t.se == pytest.approx(paired.se, rel=1e-6)) is expected


def test_at_two_seeds_the_detectable_effect_is_the_per_seed_tests(seed):
    """Below APART_MIN_SEEDS the comparison is the paired t test of the per-seed differences
    (1 degree of freedom at 2 seeds), and inference.detectable (what `power` prints for the plan's
    rule) is that test's: an effect of that size is claimed at the Bonferroni level in 80% of
    simulated tables."""
    rng = np.random.default_rng(seed)
    arms, seeds, sd, comparisons = 14, 2, 1.0, 12
    y = rng.normal(size=(arms, seeds)) + rng.normal(size=(1, seeds))
    t = inference.versus_apart(y, 3, 0)
    d = y[3] - y[0]
    assert t.df == 1 and t.se == pytest.approx(abs(d[0] - d[1]) / 2)
    assert t.estimate == pytest.approx(d.mean())
    delta = inference.detectable(sd, seeds, arms, comparisons, ALPHA, variance="baseline_apart")
    assert delta > 10 * inference.detectable(sd, seeds, arms, comparisons, ALPHA)
    level = ALPHA / comparisons
    y = rng.normal(0, sd, size=(4000, arms, seeds))
    y[:, 1] += delta
    hits = sum(inference.versus_apart(table, 1, 0).p <= level for table in y)
    assert abs(hits / 4000 - 0.8) < 0.03, (delta, hits / 4000)


@pytest.mark.slow
def test_the_power_command_says_its_sd_is_assumed_and_what_2_seeds_test(capsys, in_project):
    """The default run sd is printed as an assumption (not a measured seed-to-seed sd), and at 2
    seeds the note says the comparison is the per-seed one, whose detectable difference is
    printed (far larger than the pooled test's at 3 seeds; the 3-seed note-free output is the
    README's, checked in test_docs)."""
    from prefix_titan.power import main

    main(["--seeds", "2"])
    out = capsys.readouterr().out
    assert "assumed: one model's binomial standard error" in out
    assert "per-seed differences alone" in out, out
    row = next(x for x in out.splitlines() if x.startswith("| char comp"))
    sd, detectable = float(row.split("|")[3]), float(row.split("|")[4])
    assert detectable == pytest.approx(
        inference.detectable(sd, 2, 14, 12, ALPHA, variance="baseline_apart"), rel=1e-2
    )
    assert detectable > 10 * inference.detectable(sd, 3, 14, 12, ALPHA)


def test_the_baseline_apart_error_by_hand(seed):
    """inference.versus_apart against its formula written out: the others' two-way residual
    variance, the baseline's residuals about the others' seed effects, the shrinkage by one
    degree of freedom, a fifth of Satterthwaite's degrees of freedom above S - 1 kept; two arms: the
    paired test (the two-way fit of two arms)."""
    from scipy.stats import t as student_t

    rng = np.random.default_rng(seed)
    a, s = 6, 4
    y = rng.normal(size=(a, s)) + rng.normal(size=(1, s)) + np.arange(a)[:, None] * 0.3
    b, arm = 2, 4
    o = np.delete(y, b, axis=0)
    r = o - o.mean(1, keepdims=True) - o.mean(0, keepdims=True) + o.mean()
    df = (a - 2) * (s - 1)
    sigma2 = (r**2).sum() / df
    g = o.mean(0) - o.mean()
    sb2 = ((y[b] - y[b].mean() - g) ** 2).sum() / (s - 1)
    u1 = sigma2 * ((a - 2) / (a - 1) + 1 / s * a / (a - 1))
    u2 = (s - 1) / s * sb2
    nu = (u1 + u2) ** 2 / (u1**2 / df + u2**2 / (s - 1))
    nu = (s - 1) + 0.2 * (nu - (s - 1))
    est = y[arm].mean() - y[b].mean()
    se = math.sqrt((u1 + u2) / s)
    t = inference.versus_apart(y, arm, b)
    assert t.estimate == pytest.approx(est) and t.se == pytest.approx(se)
    assert t.p == pytest.approx(2 * student_t.sf(abs(est) / se, nu))
    assert t.high - t.estimate == pytest.approx(student_t.ppf(0.975, nu) * se)
    two = y[[arm, b]]
    paired, fitted = inference.versus_apart(two, 0, 1), inference.versus(inference.fit(two), 0, 1)
    assert (paired.p, paired.se) == pytest.approx((fitted.p, fitted.se))
    # unbiased at no shrinkage: the mean of u1 + u2 over tables is sigma^2 + sigma_b^2 (1 + 4)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(inference, "APART_PRIOR_DF", 0.0)
        draws = [
            inference.apart(
                np.vstack([2 * rng.normal(size=(1, 3)), rng.normal(size=(9, 3))])
                + rng.normal(size=(1, 3)),
                0,
            ).var
            for _ in range(4000)
        ]
    assert np.mean(draws) == pytest.approx(5.0, rel=0.06)


def test_an_unclaimed_interval_that_excludes_0_is_marked(seed):
    """With nothing planted, some of the 36 unadjusted primary intervals exclude 0 (a low or high
    draw of the shared baseline moves them together): each such row, not claimed, is marked †
    with the footnote; a claimed row and a row whose interval covers 0 are not."""
    marked = 0
    for k in range(5):
        sweep = sim.Sweep(tasks=TASKS, items=2000, embedding_probe=False)
        a = analyse(sim.group(sim.simulate(sweep, seed=seed + k)), PLAN)
        for family in PLAN.families:
            text = report_module.primary_table(a, family)
            rows = {r.split(" | ")[0][2:]: r for r in text.splitlines() if r.startswith("| ")}
            for c in a.primary_comparisons(family.name):
                apart = not c.claimed and (c.low > 0 or c.high < 0)
                assert ("| † not a claim |" in rows[c.arm]) is apart, rows[c.arm]
                marked += apart
            footnote = "† The row's unadjusted interval excludes 0, but it is not a claim"
            assert (footnote in text) is ("| † not a claim |" in text)
    assert marked, "no interval excluded 0 in 5 null sweeps: try another seed"


def test_a_zero_variance_difference_is_not_significant():
    """Identical differences in every seed: no residual variance, so no interval and no p (the
    old rule read a zero-width interval as significant)."""
    y = np.array([[1.0, 2.0, 3.0], [1.5, 2.5, 3.5], [1.0, 2.0, 3.0]])
    t = inference.versus(inference.fit(y), 1, 0)
    assert t.estimate == pytest.approx(0.5) and t.p is None and t.low is None
    with pytest.raises(ValueError, match="not finite"):
        inference.fit(np.array([[1.0, np.nan], [1.0, 2.0]]))


def test_baseline_apart_reads_a_variance_at_rounding_error_as_none():
    """Arms that differ by constants (one run's values copied into every arm but the baseline)
    leave the others' variance at rounding error (2e-31, not 0): it counts as none, as the pooled
    fit's does, so the power section says the sweep cannot estimate power instead of a
    detectable difference from a variance ratio of 1e30."""
    base = np.array([0.3137, 0.2911, 0.3402])
    y = np.stack([np.array([0.31, 0.35, 0.29])] + [base + 0.0137 * k for k in range(13)])
    assert (inference.residuals(np.delete(y, 0, axis=0)) ** 2).sum() > 0  # rounding
    a = inference.apart(y, 0)
    assert a.sigma2 == 0.0 and a.baseline2 > 0
    same = inference.apart(np.stack([y[0]] + [base] * 13), 0)
    assert same.sigma2 == 0.0  # (exactly, without rounding)


def test_the_detectable_effect_has_the_power_it_claims(seed):
    """At inference.detectable's effect, the two-way test at the Bonferroni level rejects 80% of
    the time in a direct simulation of the model (this is what the power command prints)."""
    from scipy.special import stdtr

    rng = np.random.default_rng(seed)
    arms, seeds, sd, comparisons = 14, 3, 1.0, 12
    delta = inference.detectable(sd, seeds, arms, comparisons, ALPHA)
    n = 20000
    y = rng.normal(0, sd, size=(n, arms, seeds))
    y[:, 1] += delta
    resid = y - y.mean(2, keepdims=True) - y.mean(1, keepdims=True) + y.mean((1, 2), keepdims=True)
    df = (arms - 1) * (seeds - 1)
    se = np.sqrt((resid**2).sum((1, 2)) / df * 2 / seeds)
    t = (y[:, 1].mean(1) - y[:, 0].mean(1)) / se
    power = (2 * stdtr(df, -np.abs(t)) <= ALPHA / comparisons).mean()
    assert abs(power - 0.8) < 0.015, (delta, power)
    assert inference.seeds_needed(delta, sd, arms, comparisons, ALPHA) == seeds
    assert inference.detectable(sd, 5, arms, comparisons, ALPHA) < delta


@pytest.mark.slow
def test_the_sweeps_stated_detectable_effect_has_about_the_power_it_states(seed, tmp_path):
    """What the answer and the power lines state a sweep detects with 80% power (baseline_apart,
    14 arms x 3 seeds, equal variances, through analyse): at the median of the stated effects the
    plan's own test rejects in 66-77% of sweeps over ten test seeds (0.727 at the default one;
    inference._apart_power: its exact power under the model), not 80%: the statement reads the
    baseline's variance as the test estimates it, with S - 1 = 2 degrees of freedom of its own,
    whose median draw is low (docs/evaluation.md). Taking the sweep's estimate as the test's fixed
    error stated effects detected 63% of the time. With the baseline's sd twice the others':
    detected in 52-64% over test seeds, where equal variances assumed gave 44-47%."""
    from prefix_titan.sweep.analysis import detectable_here
    from prefix_titan.sweep.configs import arm_specs

    plan = _one_family_plan(tmp_path, "hellaswag", [], variance="baseline_apart")
    specs = arm_specs()
    rng = np.random.default_rng(seed)
    stated = []
    for _ in range(100):
        y = 0.5 + 0.01 * (rng.normal(size=(len(specs), 3)) + rng.normal(size=(1, 3)))
        stated.append(
            detectable_here(
                analyse(_records({"hellaswag": y}, specs), plan, answer=False), "hellaswag", 12
            )
        )
    power = inference._apart_power(3, len(specs), ALPHA / 12)(float(np.median(stated)) / 0.01)
    # 0.61-0.73 stated before the test's own power; 0.658-0.771 over test seeds 1-10 once the
    # test kept a fifth of Satterthwaite's degrees of freedom instead of half (a heavier-tailed t)
    assert 0.6 <= power <= 0.88, (np.median(stated), power)
    base = [s.arm_name() for s in specs].index("label_smoothing")
    stated = []
    for _ in range(100):
        y = rng.normal(size=(len(specs), 3))
        y[base] *= 2
        y = 0.5 + 0.01 * (y + rng.normal(size=(1, 3)))
        stated.append(
            detectable_here(
                analyse(_records({"hellaswag": y}, specs), plan, answer=False), "hellaswag", 12
            )
        )
    power = inference._apart_power(3, len(specs), ALPHA / 12, 4.0)(np.median(stated) / 0.01)
    assert 0.5 <= power <= 0.85, (np.median(stated), power)


# -- the blank twins ------------------------------------------------------------------------------

CHAR_BLANKS = tuple(
    f"{t}_blank" for t in ("char_spell", "char_last_letter", "char_count", "char_contains")
)


@pytest.mark.slow
def test_a_claim_calibration_takes_away_is_marked_a_change_of_prior(seed):
    """The report's own decision on 14-arm, 3-seed sweeps at the real item counts, one arm 3
    points better on the character probes: where the gain is the model's prior over the choices
    (each item calibrated by its blank twin does not move), the claim is marked prior_only;
    where it is knowledge (the calibrated items move with it), it stands."""
    arm, n = "prefix_tau0.5", 60
    marked = {}
    for kind, what in (("knowledge", "char"), ("prior", sim.PRIOR)):
        effects = ((arm, what, 0.03),)
        claims = []
        for k in range(n):
            sweep = sim.Sweep(effects=effects, embedding_probe=False)
            a = analyse(sim.group(sim.simulate(sweep, seed=seed + k)), PLAN, answer=False)
            claims += [c for c in a.claims if c.metric == "char composite" and c.arm == arm]
        # (claimed in 42 of 60 knowledge sweeps: the plan's rule detects +3 points in 70-80%
        # (78.5% of 200 at the real item counts), 53 of 60 with half of Satterthwaite's degrees
        # of freedom kept; char_count has 3 choices: its chance-corrected part is noisier)
        assert len(claims) >= 0.6 * n, (kind, len(claims))
        marked[kind] = sum(c.prior_only for c in claims) / len(claims)
    assert marked["knowledge"] <= 0.1 and marked["prior"] >= 0.9, marked


def test_a_claim_the_models_make_alike_without_the_word_says_so_in_the_answer(seed):
    """Every run answers each probe as it answers its blank twin (a model that does not read the
    word: calibrated, every item a tie, which the balanced gold positions put at chance): a
    claim on the character composite is marked, with a note and in the answer; without the twins
    evaluated, the claim stands unchecked, said in a note."""
    arm = "prefix_tau0.5"
    sweep = sim.Sweep(
        items=400,
        tasks=(*TASKS, *CHAR_BLANKS),
        effects=((arm, "char", 0.15),),
        embedding_probe=False,
    )
    runs = sim.simulate(sweep, seed=seed)
    for run in runs:
        for step in run["steps"].values():
            for twin in CHAR_BLANKS:
                step["results"][twin] = dict(step["results"][twin[: -len("_blank")]])
            step["calibrated"] = {
                t[: -len("_blank")]: CHANCE[t[: -len("_blank")]] for t in CHAR_BLANKS
            }
    a = analyse(sim.group(runs), PLAN)
    (claim,) = [c for c in a.claims if c.metric == "char composite"]
    assert claim.arm == arm and claim.prior_only
    probes = [c for c in a.claims if c.metric + "_blank" in CHAR_BLANKS]  # exploratory ones
    assert probes and all(c.prior_only for c in probes)
    twin = f"calibrated by its blank twin ({probes[0].metric}, calibrated: 0.0000 (no variance))"
    assert twin in "\n".join(a.notes)
    assert f"{claim.arm}'s claimed difference from label_smoothing" in "\n".join(a.notes)
    (note,) = [n for n in a.notes if n.startswith("char acc - blank is 0 on every seed for ")]
    assert all(arm in note for arm in a.arms) and "show no reading of the word" in note
    assert a.answer.startswith(
        "Claimed on char composite, but not shown to be character knowledge: prefix_tau0.5 ("
    )
    assert "not once each probe item is calibrated by its blank twin (the same item" in a.answer
    unread = "In every run the character probes scored as their blank twins (the word blanked; "
    assert f". {unread}chance by construction): char acc - blank is 0, so they show" in a.answer
    for run in runs:
        for step in run["steps"].values():
            for twin in CHAR_BLANKS:
                del step["results"][twin]
            del step["calibrated"]
    a = analyse(sim.group(runs), PLAN)
    (claim,) = [c for c in a.claims if c.metric == "char composite"]
    assert not claim.prior_only and a.answer.startswith("Yes, on char composite")
    assert "In every run the character" not in a.answer and "Reading the word" not in a.answer
    # every arm's probes not shown to read the word (intervals over seeds around 0): said too;
    # one arm that reads it (its interval above 0) leaves the answer as it is
    from prefix_titan.sweep.analysis import _words_unread

    a.tables["char acc - blank"] = {arm: {1: -0.01, 2: 0.0, 3: 0.012} for arm in a.arms}
    assert _words_unread(a).startswith(" Reading the word is not shown to add to any arm's")
    a.tables["char acc - blank"][arm] = {1: 0.05, 2: 0.06, 3: 0.055}
    assert _words_unread(a) == ""
    # a prefix-shaped primary is not what char acc - blank reads: nothing said of it
    a.tables["char acc - blank"][arm] = {1: 0.0, 2: 0.0, 3: 0.0}
    import dataclasses

    family = dataclasses.replace(a.plan.families[0], primary="char_prefix")
    a.plan = dataclasses.replace(a.plan, families=(family, *a.plan.families[1:]))
    assert _words_unread(a) == ""
    assert "blank twins" not in a.answer
    assert any("is not checked against the probes' blank twins" in n for n in a.notes)


def test_a_gain_of_prior_is_named_apart_from_the_yes(seed):
    """One arm's probes moved by a change of prior alone, another's by knowledge: both are
    claimed (the plan's test, which the error rates count), but the answer's "Yes" lists only
    the arm whose gain survives calibration by the blank twins, and names the other apart with
    its calibrated difference (the prior arm alone claimed: not "Yes", as
    test_a_claim_the_models_make_alike_without_the_word_says_so_in_the_answer asks)."""
    prior, knows = "prefix_tau0.5", "prefix_tau1.0"
    tasks = (*TASKS, *CHAR_BLANKS)
    seen = False
    for k in range(4):  # (a sweep where the plan claims both: nearly every one at +5 points)
        effects = ((prior, sim.PRIOR, 0.05), (knows, "char", 0.05))
        sweep = sim.Sweep(tasks=tasks, items=2000, effects=effects, embedding_probe=False)
        a = analyse(sim.group(sim.simulate(sweep, seed=seed + k)), PLAN)
        claims = {c.arm: c for c in a.claims if c.metric == "char composite"}
        if set(claims) != {prior, knows} or not claims[prior].prior_only:
            continue
        assert not claims[knows].prior_only
        seen = True
        yes = a.answer.split(" Shown in this sweep", 1)[0]
        assert yes.startswith(f"Yes, on char composite: {knows} (") and prior not in yes, yes
        assert "(1 of the 12 arms compared;" in yes
        apart = a.answer.split(" Claimed too, but not a gain of knowledge: ", 1)[1]
        assert apart.startswith(f"{prior} (+") and "; calibrated " in apart.split(")")[0], apart
        assert "cannot be told from a change of prior" in apart
        break
    assert seen, "no sweep with both arms claimed and one marked: try another seed"


def test_the_answer_says_what_a_claimed_arm_costs_on_the_other_families(seed):
    """The question asks at what cost: the answer names each claimed arm's comparison on the
    other families' primaries, claimed or not found (with what the sweep detects), and the part
    of a validation CE difference its target implies by construction."""
    arm = "prefix_tau0.5"
    sweep = sim.Sweep(tasks=TASKS, effects=((arm, "char", 0.05), (arm, "val CE", 0.08)), items=2000)
    runs = sim.simulate(sweep, seed=seed)
    a = analyse(sim.group(runs), PLAN)
    assert a.answer.startswith(f"Yes, on char composite: {arm} (")
    assert (
        "(1 of the 12 arms compared; intervals nominal 95%, unadjusted). Shown in this sweep"
        in (a.answer)
    )
    for run in runs:  # records that say what the runs were: the answer says where it holds
        run["config"]["model"] = {"flavor": "pilot"}
        run["config"]["training"] = {"steps": 6096, "seq_len": 2048, "global_batch_size": 256}
    said = analyse(sim.group(runs), PLAN).answer
    assert "Shown at this sweep's scale (flavor pilot, 6,096 steps of 524,288 tokens) and on " in (
        said
    )
    cost = a.answer.split(" At what cost: ", 1)[1]
    assert cost.startswith(f"{arm}: downstream bits/byte")
    (ce,) = [c for c in a.claims if c.metric == "val CE" and c.arm == arm]
    assert ce.direction == "worse" and f"val CE worse ({ce.estimate:+.4f} [" in cost
    assert "(the targets alone imply -0.07" in cost  # label smoothing's own cost, by construction
    # (bits/byte detected only above the 0.01 of interest at 3 seeds: not "no difference found")
    assert "downstream bits/byte: cannot tell, underpowered (" in cost and "; detectable 0." in cost
    assert "above the 0.01 of interest)" in cost and "no difference found" not in cost
    assert cost.endswith(
        f"over the plan's {len(PLAN.families)} families, the chance of a false claim somewhere "
        f"is up to {len(PLAN.families) * PLAN.alpha:.3g}."
    )


def test_a_null_answer_the_sweep_lacks_the_power_for_says_it_cannot_tell(seed):
    """At 2 seeds the plan's per-seed test (1 degree of freedom) detects only differences far
    above the 0.05 on the char composite that `power` plans for: with nothing planted the answer
    says the sweep cannot tell (underpowered), with what it detects, not "No difference found";
    at 5 seeds (detectable below 0.05) it says no difference was found (a claimed arm's cost:
    test_the_answer_says_what_a_claimed_arm_costs_on_the_other_families)."""
    from prefix_titan.sweep.analysis import detectable_here, underpowered
    from prefix_titan.sweep.metrics import EFFECTS

    for seeds, said in (
        ((1, 2), "Cannot tell (underpowered): no arm of"),
        ((1, 2, 3, 4, 5), "No "),
    ):
        sweep = sim.Sweep(seeds=seeds, tasks=TASKS, items=2000, embedding_probe=False)
        a = analyse(sim.group(sim.simulate(sweep, seed=seed)), PLAN)
        d = detectable_here(a, "char composite", 12)
        assert (d > EFFECTS["char composite"]) is (len(seeds) == 2), d
        assert a.answer.startswith(said) and not [c for c in a.claims if not c.aa_check], a.answer
        if len(seeds) == 2:
            assert "No difference found" not in a.answer
            assert f"only {d:.2g}, above the 0.05 taken as the effect of interest" in a.answer
    assert underpowered("val CE", 0.011) == 0.01 and underpowered("val CE", 0.01) is None
    assert underpowered("val Brier", 2.5) == 2 and underpowered("val Brier", 0.5) is None


def _no_power_table():
    """Three arms x 3 seeds of hellaswag: ce and prefix_tau0.5 differ by the same amount on every
    seed (their pooled residual variance 0), the baseline label_smoothing varies."""
    from prefix_titan.sweep.configs import arm_specs

    specs = [s for s in arm_specs() if s.arm_name() in ("ce", "label_smoothing", "prefix_tau0.5")]
    names = [s.arm_name() for s in specs]
    y = 0.5 + np.tile([0.0, 0.013, -0.02], (3, 1))
    y[names.index("prefix_tau0.5")] += 0.002
    y[names.index("label_smoothing")] += [0.01, -0.004, -0.006]
    return specs, y


def test_a_null_answer_whose_power_cannot_be_estimated_never_says_no_difference_found(tmp_path):
    """Under baseline_apart at 3 seeds, the arms other than the baseline may differ from one
    another by the same amount on every seed (answered alike: their pooled residual variance
    0) while the baseline varies: each comparison is tested on the baseline's own variance, but
    no detectable difference can be estimated (detectable_here is None). The answer, and a
    claimed arm's cost, then says it cannot tell, not "No difference found" (the pooled rule on
    the same table states its power and says it cannot tell either)."""
    from prefix_titan.sweep.analysis import detectable_here

    specs, y = _no_power_table()
    apart = _one_family_plan(tmp_path, "hellaswag", [], variance="baseline_apart")
    a = analyse(_records({"hellaswag": y}, specs), apart)
    c = a.primary_comparisons("f")[0]
    assert c.p is not None and not c.claimed and c.high - c.low > 0.01
    assert detectable_here(a, "hellaswag", 1) is None
    assert "No difference found" not in a.answer and a.answer.startswith("Cannot tell: "), a.answer
    pooled = analyse(_records({"hellaswag": y}, specs), _one_family_plan(tmp_path, "hellaswag", []))
    assert pooled.answer.startswith("Cannot tell (underpowered)"), pooled.answer
    # a claimed arm's cost on another family's primary whose power cannot be estimated
    path = tmp_path / "two.toml"
    path.write_text(
        'question = "Q"\nalpha = 0.05\nbaseline = "label_smoothing"\ncheckpoints = 1\n'
        'variance = "baseline_apart"\ncontrast = ["prefix"]\n'
        '[[family]]\nname = "first"\nprimary = "piqa"\n'
        '[[family]]\nname = "second"\nprimary = "hellaswag"\n'
    )
    first = 0.6 + np.array([[0.001, -0.002, 0.0005], [0.0, 0.0015, -0.001], [0.2, 0.2005, 0.199]])
    a = analyse(_records({"piqa": first, "hellaswag": y}, specs), load_plan(str(path)))
    assert a.answer.startswith("Yes, on piqa: prefix_tau0.5"), a.answer
    assert "hellaswag: cannot tell (" in a.answer and "no difference found" not in a.answer


def test_the_power_section_names_a_primary_whose_power_cannot_be_estimated(tmp_path):
    """The same table as above (baseline_apart, 3 seeds, the arms other than the baseline
    answering alike): the power section gives the primary a line saying why no detectable
    difference is stated, not none at all (which read as "no primary metric has a measured
    variance")."""
    specs, y = _no_power_table()
    apart = _one_family_plan(tmp_path, "hellaswag", [], variance="baseline_apart")
    lines = report_module.power_lines(analyse(_records({"hellaswag": y}, specs), apart))
    assert len(lines) == 1 and lines[0].startswith("- hellaswag: none to state (primary"), lines
    assert "cannot be estimated" in lines[0] and "pooled run-level sd is 0" in lines[0]


def test_a_failed_a_a_check_is_the_first_note_and_ends_the_answer(seed):
    """An arm that trains as ce (its target's gold mass >= 0.99) yet differs from it: something
    other than the objective differs between arms, and every claim waits for its cause."""
    sweep = sim.Sweep(tasks=TASKS, effects=(("prefix_tau0.1", "char", 0.06),), items=2000)
    a = analyse(sim.group(sim.simulate(sweep, seed=seed)), PLAN)
    assert any(c.aa_check and c.claimed and c.arm == "prefix_tau0.1" for c in a.comparisons)
    assert a.notes[0].startswith("A/A check failed: prefix_tau0.1 trains as ce (its target's")
    assert a.answer.endswith(
        "But the A/A check failed (prefix_tau0.1 differs from ce though it trains as it; see the "
        "first note): read no claim until its cause is found."
    )


def test_runs_of_one_seed_on_other_placements_are_not_paired():
    """The initial weights torchtitan draws for a seed depend on the ranks: runs of one seed
    placed otherwise are refused, naming them; other seeds may be placed otherwise."""
    runs = sim.simulate(sim.Sweep(items=20, seeds=(1, 2), tasks=TASKS), seed=0)
    one = {"ranks": 1, "dp_replicate": 1, "dp_shard": 1, "cp": 1, "tp": 1, "pp": 1}
    for r in runs:
        r["config"]["placement"] = {**one, "ranks": 2, "dp_shard": 2} if r["seed"] == 2 else one
    analyse(sim.group(runs), PLAN)  # seed 2 all on 2 ranks: paired
    odd = next(r for r in runs if r["seed"] == 2 and r["name"] == "ce")
    odd["config"]["placement"] = one
    with pytest.raises(ValueError, match="runs of one seed were trained on different") as e:
        analyse(sim.group(runs), PLAN)
    assert "seed 2: " in str(e.value) and "ce on 1 rank(s); " in str(e.value)
    assert "on 2 rank(s) (dp_shard 2)" in str(e.value)


def test_a_composite_without_the_embedding_probe_is_said_so():
    """The char composites take the embedding probe as their last part where the runs were
    evaluated on it: a sweep evaluated on the character probes alone (a smoke sweep's old
    command) is reported with a note saying so, its composite being another quantity; one that
    has it is not."""
    probes_alone = "char composite and char composite, read: of the 4 character probes alone"
    for with_probe in (False, True):
        sweep = sim.Sweep(items=20, seeds=(1, 2), tasks=TASKS, embedding_probe=with_probe)
        notes = "\n".join(analyse(sim.group(sim.simulate(sweep, seed=0)), PLAN).notes)
        assert (probes_alone in notes) is not with_probe, notes
        assert ("`eval --tasks embedding_probe` adds it" in notes) is not with_probe
    # evaluated on it at some steps only, in every run (no run with it throughout): the share said
    runs = sim.simulate(sim.Sweep(items=20, seeds=(1, 2), tasks=TASKS), seed=0)
    for run in runs:
        del run["steps"][min(run["steps"])]["results"][EMBEDDING_PROBE]
    notes = "\n".join(analyse(sim.group(runs), PLAN).notes)
    n = len(runs)
    assert f"of the 4 character probes alone at {n} of the {3 * n} evaluations analysed" in notes


# -- the plan --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_plan_is_printed_and_can_be_replaced(tmp_path):
    runs = sim.simulate(sim.Sweep(items=40, seeds=(1, 2), tasks=TASKS), seed=0)
    sim.write(runs, str(tmp_path / "sweep"))
    text = report(str(tmp_path / "sweep"))
    assert f"Question: {PLAN.question}" in text
    assert "| character knowledge | char composite |" in text
    # at 2 seeds the plan's rule is the per-seed test, whose interval is exact: said so
    assert "each arm's per-seed differences from the baseline alone" in text
    assert "nominal 95%" not in text and "[95% CI, unadjusted]" in text
    plan = tmp_path / "plan.toml"
    plan.write_text(
        'question = "Q?"\nalpha = 0.01\nbaseline = "ce"\ncheckpoints = 1\ncontrast = ["prefix"]\n'
        '[[family]]\nname = "tasks"\nprimary = "hellaswag"\n'
    )
    text = report(str(tmp_path / "sweep"), plan=str(plan))
    assert "Question: Q?" in text and "## Against ce" in text and "### tasks" in text
    power = text[text.index("## Power") :]
    assert power.count("\n- hellaswag: ±") == 1, power  # a primary that is a task: once
    # a plan chosen after the runs: an exploratory re-analysis, in a folder of its own
    data = json.loads((tmp_path / "sweep" / "report_exploratory" / "report.json").read_text())
    assert data["plan"]["alpha"] == 0.01 and data["steps"] == [3600]
    assert (
        json.loads((tmp_path / "sweep" / "report" / "report.json").read_text())["plan"]["alpha"]
        == PLAN.alpha
    )
    assert {c["arm"] for c in data["comparisons"] if not c["aa_check"]} == {
        f"prefix_tau{t}" for t in (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
    }
    plan.write_text(plan.read_text().replace('"hellaswag"', '"hellaswag acc"'))
    with pytest.raises(ValueError, match="names the metric 'hellaswag acc', which does not exist"):
        load_plan(str(plan))
    with pytest.raises(ValueError, match="lacks the setting 'family'"):
        (tmp_path / "p2.toml").write_text(
            'question = "Q"\nalpha = 0.05\nbaseline = "ce"\ncheckpoints = 1\ncontrast = ["p"]\n'
        )
        load_plan(str(tmp_path / "p2.toml"))
    (tmp_path / "p4.toml").write_text(  # which family lacks its primary, by number and name
        (tmp_path / "p2.toml").read_text() + '[[family]]\nname = "a"\nprimary = "val CE"\n'
        '[[family]]\nname = "b"\n'
    )
    with pytest.raises(ValueError, match=r"\[\[family\]\] 2 \(b\) lacks the setting 'primary'"):
        load_plan(str(tmp_path / "p4.toml"))
    (tmp_path / "p3.toml").write_text(
        plan.read_text().replace('contrast = ["prefix"]', 'contrast = "prefix"')
    )
    with pytest.raises(
        ValueError, match=r"contrast must be a non-empty list of arm kinds .* got 'prefix'"
    ):
        load_plan(str(tmp_path / "p3.toml"))
    # a plan naming what is no arm of the project nor of the sweep is refused, as by a launch
    plan.write_text(
        plan.read_text().replace('baseline = "ce"', 'baseline = "label_smooth"').replace(" acc", "")
    )
    with pytest.raises(
        ValueError,
        match=r"--plan .*: the plan's baseline 'label_smooth' is no arm of the project nor the sweep",
    ):
        report(str(tmp_path / "sweep"), plan=str(plan))
    # a partial sweep (no prefix_norm arm here) under a plan whose contrast names a project kind
    # it lacks: reported, the kind noted, as under the plan it registered
    partial = tmp_path / "partial"
    sim.write([r for r in runs if not r["name"].startswith("prefix_norm")], str(partial))
    plan.write_text(
        plan.read_text()
        .replace('"label_smooth"', '"ce"')
        .replace('contrast = ["prefix"]', 'contrast = ["prefix", "prefix_norm"]')
    )
    text = report(str(partial), plan=str(plan))
    assert "the plan's contrast names prefix_norm, of which the sweep has no arm" in text


GOOD_PLAN = (
    'question = "Q?"\nalpha = 0.05\nbaseline = "ce"\ncheckpoints = 1\ncontrast = ["prefix"]\n'
    'variance = "pooled"\n[[family]]\nname = "tasks"\nprimary = "hellaswag"\n'
    'exploratory = ["piqa", "arc_easy"]\n'
)


@pytest.mark.parametrize(
    "old, new, words",
    [
        (
            'variance = "pooled"',
            'varience = "baseline_apart"',
            "the plan has no setting 'varience' (did you mean 'variance'?)",
        ),
        (
            "exploratory = [",
            "exploritory = [",
            "[[family]] 'tasks' has no setting 'exploritory' (did you mean 'exploratory'?)",
        ),
        (
            "checkpoints = 1",
            'checkpoints = "3"',
            "checkpoints must be a whole number >= 1; got '3'",
        ),
        (
            "checkpoints = 1",
            "checkpoints = 1.5",
            "checkpoints must be a whole number >= 1; got 1.5",
        ),
        ("alpha = 0.05", 'alpha = "0.05"', "alpha must be a number in (0, 1); got '0.05'"),
        (
            'contrast = ["prefix"]',
            "contrast = []",
            "contrast must be a non-empty list of arm kinds",
        ),
        ('"piqa", "arc_easy"', '"piqa", "piqa"', "family 'tasks' lists 'piqa' more than once"),
        (
            '"piqa", "arc_easy"',
            '"piqa", "hellaswag"',
            "family 'tasks' lists 'hellaswag' more than once",
        ),
        ('primary = "hellaswag"', "primary = 3", "primary must be a metric's name (text); got 3"),
        (
            'exploratory = ["piqa", "arc_easy"]\n',
            'exploratory = ["piqa"]\n[[family]]\nname = "tasks"\nprimary = "sciq"\n',
            "two families are named 'tasks'",
        ),
    ],
    ids=[
        "misspelt setting",
        "misspelt family setting",
        "checkpoints as text",
        "checkpoints a fraction",
        "alpha as text",
        "empty contrast",
        "a metric twice",
        "the primary again",
        "primary a number",
        "two families of one name",
    ],
)
def test_a_plan_that_says_something_else_than_it_means_is_refused(tmp_path, old, new, words):
    """A misspelt setting used to be dropped (varience = ... left the pooled rule in place,
    exploritory = ... every exploratory metric), a value of another form read as it could be:
    each is refused naming the setting and its form."""
    assert load_plan(str(_written(tmp_path / "good.toml", GOOD_PLAN))).families[0].exploratory
    path = _written(tmp_path / "bad.toml", GOOD_PLAN.replace(old, new))
    with pytest.raises(ValueError) as e:
        load_plan(str(path))
    assert words in str(e.value), str(e.value)


def _written(path, text: str):
    path.write_text(text)
    return path


def test_metrics_average_the_last_checkpoints_and_the_steps_are_printed():
    runs = sim.simulate(sim.Sweep(items=40, seeds=(1, 2), tasks=TASKS), seed=1)
    run = runs[0]
    m = metric("hellaswag")
    values = [run["steps"][s]["results"]["hellaswag"]["acc,none"] for s in (1200, 2400, 3600)]
    assert run_value(run, m, 3)[0] == pytest.approx(np.mean(values))
    assert run_value(run, m, 1)[0] == values[-1]
    a = analyse(sim.group(runs), PLAN)
    assert a.steps == [1200, 2400, 3600]
    assert any(c.final for c in a.comparisons) and not any(
        c.final and c.claimed for c in a.comparisons
    )


@pytest.mark.slow
def test_a_run_whose_metrics_log_is_empty_is_named_where_its_arm_is_not_compared(tmp_path):
    """One run's metrics log emptied (a crash before its first write, a file lost in a copy):
    its validation metrics have no value there, so its arm is not compared on them; the report
    says so in one note naming the run, and the validation steps read by the others."""
    runs = sim.simulate(sim.Sweep(items=40, seeds=(1, 2), tasks=TASKS), seed=1)
    folders = sim.write(runs, str(tmp_path))
    empty = next(f for f in folders if f.endswith(os.path.join("prefix_tau0.5", "seed2")))
    open(os.path.join(empty, "prefix_metrics.jsonl"), "w").close()
    text = report(str(tmp_path))
    note = next(line for line in text.splitlines() if "no value for prefix_tau0.5 seed 2" in line)
    assert "val CE" in note.split(": no value")[0].split(", ")
    assert "its metrics log (prefix_metrics.jsonl) has no validation row" in note
    assert "that arm is not compared on it" in note
    assert "steps that differ between runs" not in text
    assert "val CE" in [
        c["metric"]
        for c in json.loads((tmp_path / "report" / "report.json").read_text())["comparisons"]
    ]


def test_the_simulator_knows_a_position_weighted_arm_by_its_target():
    """position_gamma weights the tokens and leaves the target alone: an arm of sweep_arms.toml
    such as prefix_tau0.5_gamma0.99 keeps prefix_tau0.5's gold mass without --gold-mass; an arm
    of another target is still refused without one."""
    from prefix_titan.objectives import ObjectiveSpec

    weighted = ObjectiveSpec("prefix", tau=0.5, position_gamma=0.99)
    runs = sim.simulate(sim.Sweep(arms=(ObjectiveSpec("ce"), weighted), items=10, tasks=TASKS))
    mass = {r["name"]: r["validation"][max(r["validation"])] for r in runs}
    assert (
        mass["prefix_tau0.5_gamma0.99"]["validation_target_gold_mass"]
        == sim.GOLD_MASS["prefix_tau0.5"]
    )
    with pytest.raises(ValueError, match="knows no target gold mass for prefix_tau0.3"):
        sim.simulate(sim.Sweep(arms=(ObjectiveSpec("prefix", tau=0.3),), items=10, tasks=TASKS))
    # label smoothing at any epsilon: 1 - epsilon, as its default's (0.9 at 0.1); it was refused
    eps = ObjectiveSpec("label_smoothing", epsilon=0.05)
    assert sim.known_masses([eps], {}) == {eps.arm_name(): pytest.approx(0.95)}
    assert sim.GOLD_MASS["label_smoothing"] == 1 - ObjectiveSpec("label_smoothing").epsilon
    # every weighting setting leaves the target alone: counted per document too
    doc = ObjectiveSpec("prefix", tau=0.5, position_gamma=0.9, position_start="document")
    assert sim.known_masses([doc], {}) == {
        "prefix_tau0.5_gamma0.9_doc": sim.GOLD_MASS["prefix_tau0.5"]
    }


def test_runs_that_validated_only_their_first_step_are_told_how_to_validate(seed):
    """Runs whose logs hold only step 1's validation (validation off, or a short run trained
    before the last step was always validated): the validation family compares nothing, and
    says why."""
    runs = sim.simulate(sim.Sweep(items=20, seeds=(1, 2), tasks=TASKS), seed=seed)
    for run in runs:
        run["validation"] = {s: v for s, v in run["validation"].items() if s == 1}
    notes = analyse(sim.group(runs), PLAN).notes
    said = next(n for n in notes if n.startswith("validation CE: val CE is not available"))
    assert "trained with validation.enable = false, or before the last step" in said, said


def test_a_metric_missing_at_some_checkpoints_is_averaged_where_it_is_or_left_out():
    """A task evaluated at the last checkpoint only (eval --tasks char_probes after a curve of
    other tasks): averaged over that step, with a note; evaluated at other steps in other runs:
    left out of the comparison, with a note, instead of mixing checkpoints."""
    runs = sim.simulate(sim.Sweep(items=40, seeds=(1, 2), tasks=TASKS), seed=1)
    for run in runs:
        for s in (1200, 2400):
            del run["steps"][s]["results"]["hellaswag"]
    a = analyse(sim.group(runs), PLAN)
    assert any(
        "hellaswag: evaluated at step(s) 3600 only of 1200, 2400, 3600" in n for n in a.notes
    )
    run = runs[0]
    assert a.tables["hellaswag"][run["name"]][run["seed"]] == pytest.approx(
        run["steps"][3600]["results"]["hellaswag"]["acc,none"]
    )
    del runs[0]["steps"][3600]["results"]["hellaswag"]
    runs[0]["steps"][2400]["results"]["hellaswag"] = {"acc,none": 0.3}
    a = analyse(sim.group(runs), PLAN)
    said = " left out: the runs have it at different steps"
    assert any(said in n and "hellaswag" in n.split(said)[0].split(", ") for n in a.notes)
    assert not any(a.tables["hellaswag"].values())


def test_a_primary_left_out_for_one_runs_steps_is_said_so_in_the_answer():
    """A probe missing at one step of one run (its results there lost) takes the char composite
    out of the comparison for every run: the answer says that, not that the metric is not
    measured on every seed (it is, at other steps)."""
    runs = sim.simulate(sim.Sweep(items=40, seeds=(1, 2), tasks=TASKS), seed=1)
    del runs[3]["steps"][2400]["results"]["char_spell"]
    a = analyse(sim.group(runs), PLAN)
    assert "char composite" in a.unaligned
    assert a.answer.startswith(
        "No claim: char composite is left out, the runs having it at different steps"
    ), a.answer
    assert "not measured on every seed" not in a.answer


# -- integrity -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_sweep(module_tmp):
    runs = sim.simulate(sim.Sweep(items=30, seeds=(1, 2), tasks=TASKS), seed=2)
    sim.write(runs, str(module_tmp / "sweep"))
    return module_tmp / "sweep"


@pytest.fixture
def small(small_sweep, tmp_path):
    """A copy of one small simulated sweep's folder, the test's to change."""
    return shutil.copytree(small_sweep, tmp_path / "sweep")


def _results(folder, step):
    return folder / "hf" / f"step-{step}" / "eval_results.json"


def test_a_sweep_is_refused_for_its_runs_before_their_items_are_read(small, monkeypatch):
    """A sweep with a run missing is refused from the runs' records and results alone: the
    per-item files (a few MB a run) are read only for the runs the report compares (it read
    every run's first: minutes for a sweep of 42 runs before its refusal)."""
    from prefix_titan.sweep import runs as sweep_runs

    shutil.rmtree(small / "prefix_tau0.5" / "seed2")
    read = []
    real = sweep_runs.read_items
    monkeypatch.setattr(
        sweep_runs,
        "read_items",
        lambda folder, *a, **k: read.append(folder) or real(folder, *a, **k),
    )
    with pytest.raises(ValueError, match="Finish the missing runs"):
        report(str(small))
    assert read == []
    report(str(small), arms=["label_smoothing", "prefix_tau0.5"], seeds=[1], figures=False)
    assert read and all(
        "/label_smoothing/seed1/" in f or "/prefix_tau0.5/seed1/" in f for f in read
    )


def test_runs_evaluated_at_other_steps_are_refused_naming_them(small):
    (small / "ce" / "seed2" / "hf" / "step-3600").rename(
        small / "ce" / "seed2" / "hf" / "step-3000"
    )
    with pytest.raises(ValueError, match="evaluated at different steps") as e:
        report(str(small))
    assert f"{small}/ce/seed2: steps 1200, 2400, 3000" in str(e.value)
    # the final steps differ too: --checkpoints 1 would be refused as well, so not offered
    assert "--checkpoints 1" not in str(e.value) and "differs out (--seeds;" in str(e.value)
    with pytest.raises(ValueError, match="evaluated at different steps"):
        report(str(small), checkpoints=1)
    (small / "ce" / "seed2" / "hf" / "step-3000").rename(
        small / "ce" / "seed2" / "hf" / "step-3600"
    )
    (small / "ce" / "seed2" / "hf" / "step-1200").rename(
        small / "ce" / "seed2" / "hf" / "step-1000"
    )
    with pytest.raises(ValueError, match="evaluated at different steps") as e:
        report(str(small))
    assert "or pass --checkpoints 2 (to report or power --from): the last 2 steps agree" in str(
        e.value
    )
    shutil.rmtree(small / "ce" / "seed2" / "hf" / "step-2400")
    with pytest.raises(ValueError, match="evaluated at different steps") as e:
        report(str(small))
    assert "or pass --checkpoints 1 (to report or power --from): the final steps agree" in str(
        e.value
    )


def test_runs_evaluated_with_another_limit_or_task_version_are_refused(small):
    path = _results(small / "prefix_tau0.5" / "seed1", 2400)
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "limit": 10}))
    with pytest.raises(ValueError, match="with a different --limit for some runs") as e:
        report(str(small))
    assert f"{small}/prefix_tau0.5/seed1 step 2400: 10" in str(e.value)
    path.write_text(json.dumps({**data, "versions": {**data["versions"], "piqa": 2}}))
    with pytest.raises(ValueError, match="piqa was evaluated with a different task version"):
        report(str(small))
    # character probes built from other words (another shard folder) than the other runs'
    probes = {"words_from": "./data/other_shards", "items": 2000, "seed": 1234, "shots": 3}
    path.write_text(json.dumps({**data, "probes": probes}))
    with pytest.raises(ValueError, match="char_spell was evaluated with a different probe build"):
        report(str(small))


def test_a_refusal_of_evaluations_unalike_names_the_odd_ones_not_every_run(small):
    """Of 14 arms x 2 seeds x 3 steps, one evaluation read whole among --limit samples, or one run short of
    its last step: the refusal says what the others share, counted, then names the odd one out
    (listing all 84 evaluations, or all 28 runs, buried it)."""
    path = _results(small / "prefix_tau0.5" / "seed2", 3600)
    data = json.loads(path.read_text())
    assert data["limit"] == 30  # the small sweep's items, recorded as a --limit of 30
    path.write_text(json.dumps({**data, "limit": None}))
    with pytest.raises(ValueError, match="with a different --limit for some runs") as e:
        report(str(small))
    said = str(e.value)
    assert "83 of the 84 evaluations: 30 (--limit-seed 1234); the others:" in said
    assert f"{small}/prefix_tau0.5/seed2 step 3600: all items (no --limit)" in said
    assert f"{small}/ce/seed1 step 1200" not in said and ": None" not in said
    path.write_text(json.dumps(data))
    shutil.rmtree(small / "ce" / "seed1" / "hf" / "step-3600")
    with pytest.raises(ValueError, match="evaluated at different steps") as e:
        report(str(small))
    said = str(e.value)
    assert "27 of the 28 evaluated runs: steps 1200, 2400, 3600" in said
    assert f"{small}/ce/seed1: steps 1200, 2400" in said
    assert f"{small}/ce/seed2:" not in said and "not evaluated at all" not in said
    # a run stopped before its last checkpoint (its log ends at 2400 of 3600): said unfinished
    run = small / "ce" / "seed1"
    config = json.loads((run / "run_config.json").read_text())
    (run / "run_config.json").write_text(json.dumps({**config, "training": {"steps": 3600}}))
    log = (run / "prefix_metrics.jsonl").read_text().splitlines()
    kept = [line for line in log if json.loads(line).get("step", 0) <= 2400]
    assert 0 < len(kept) < len(log)
    (run / "prefix_metrics.jsonl").write_text("\n".join(kept) + "\n")
    with pytest.raises(ValueError, match="evaluated at different steps") as e:
        report(str(small))
    assert f"{run} (unfinished: step 2400 of 3600): steps 1200, 2400" in str(e.value)
    shutil.rmtree(small / "ce" / "seed2" / "hf")  # a run not evaluated: named, not left out
    with pytest.raises(ValueError, match="evaluated at different steps") as e:
        report(str(small))
    said = str(e.value)
    assert "26 of the 27 evaluated runs: steps 1200, 2400, 3600" in said
    assert f"  not evaluated at all: {small}/ce/seed2" in said


@pytest.mark.slow  # (a few seconds: the power command twice, or a written sweep)
def test_a_per_arm_mean_over_fewer_seeds_than_the_sweep_says_how_many(tmp_path):
    """One run of 3 seeds never evaluated: its arm's per-arm means are over 2 seeds, and the
    table says so beside them, as it says (n=1), instead of showing them as the others'."""
    runs = sim.simulate(sim.Sweep(items=30, seeds=(1, 2, 3), tasks=TASKS), seed=3)
    sim.write(runs, str(tmp_path / "sweep"))
    shutil.rmtree(tmp_path / "sweep" / "prefix_tau0.5" / "seed2" / "hf")
    text = report(str(tmp_path / "sweep"))
    per_arm = text.split("## Per arm")[1].split("## ")[0]
    rows = {line.split(" | ")[0]: line for line in per_arm.splitlines() if line.startswith("| ")}
    cells = rows["| prefix_tau0.5"].split(" | ")
    header = rows["| arm"].split(" | ")
    assert cells[header.index("char composite")].endswith("] (n=2)")
    assert not cells[header.index("val CE")].endswith(")")  # the metrics log has all 3 seeds
    assert "(n=" not in rows["| prefix_tau1.0"]
    assert "'(n=K)' marks a mean of K seeds, fewer than the sweep's" in per_arm


def test_the_power_section_states_no_power_for_a_primary_nothing_was_compared_on(small):
    """The baseline's run of seed 1 evaluated without HellaSwag: downstream bits/byte is compared
    for no arm ("Nothing compared"), and the power section says so, instead of a detectable
    difference at alpha/12 from a fit of the other arms (the baseline not among them)."""
    for step in (1200, 2400, 3600):
        path = _results(small / "label_smoothing" / "seed1", step)
        data = json.loads(path.read_text())
        del data["results"]["hellaswag"], data["versions"]["hellaswag"]
        path.write_text(json.dumps(data))
        os.remove(path.parent / "eval_items" / "hellaswag.jsonl")
    text = report(str(small))
    power = text.split("## Power")[1].split("\n## ")[0]
    assert "- downstream bits/byte: not compared, so no power to state" in power
    assert "- hellaswag: not compared, so no power to state" in power
    assert "- piqa: " in power and "- piqa: not compared" not in power
    assert "- char composite: " in power and "- char composite: not compared" not in power


def test_embedding_probes_of_two_versions_are_not_compared(small):
    """Version 1 of the embedding probe (folds over tokens) recorded no version: a run probed
    by version 2 (folds over stems) beside it is refused, as a task of another version is."""
    from prefix_titan.evaluation.embedding_probe import VERSION

    path = _results(small / "ce" / "seed1", 3600)
    data = json.loads(path.read_text())
    path.write_text(
        json.dumps({**data, "versions": {**data["versions"], EMBEDDING_PROBE: VERSION}})
    )
    with pytest.raises(
        ValueError, match="embedding_probe was evaluated with a different task version"
    ):
        report(str(small))


def test_an_embedding_probe_run_for_some_runs_only_is_refused(small):
    path = _results(small / "ce" / "seed1", 3600)
    data = json.loads(path.read_text())
    del data["results"][EMBEDDING_PROBE]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="embedding probe .* for some runs only"):
        report(str(small))


def test_the_step_is_read_from_the_run_relative_path(small_sweep, tmp_path):
    """A sweep stored under a folder named step-7 still maps each evaluation to its own step."""
    assert _step_of("hf/step-2400/eval_results.json") == 2400
    assert _step_of("evals/step-12/eval_results.json") == 12
    assert _step_of("eval_results.json") == -1
    root = shutil.copytree(small_sweep, tmp_path / "step-7" / "sweep")
    loaded = find_runs(str(root))
    assert all(sorted(r["steps"]) == [1200, 2400, 3600] for r in loaded)


def test_a_checkpoint_evaluated_twice_with_other_results_is_refused(small):
    run = small / "ce" / "seed1"
    copy = run / "evals" / "step-3600"
    shutil.copytree(run / "hf" / "step-3600", copy)  # the same results twice: read once
    assert sorted(find_runs(str(small))[0]["steps"]) == [1200, 2400, 3600]
    data = json.loads((copy / "eval_results.json").read_text())
    data["results"]["piqa"]["acc,none"] += 0.01
    (copy / "eval_results.json").write_text(json.dumps(data))
    with pytest.raises(ValueError) as e:
        report(str(small))
    assert (
        f"run folder {run} holds two evaluations of piqa at step 3600 that differ: "
        f"{run}/evals/step-3600/eval_results.json and {run}/hf/step-3600/eval_results.json"
    ) in str(e.value)


def test_a_nan_metric_is_named(small):
    path = _results(small / "prefix_tau1.0" / "seed2", 3600)
    data = json.loads(path.read_text())
    data["results"]["char_count"]["acc,none"] = float("nan")
    path.write_text(json.dumps(data))
    text = report(str(small))
    notes = text.split("## Notes")[1]
    assert (
        f"char composite is not finite for prefix_tau1.0 seed 2 ({small}/prefix_tau1.0/seed2: "
        "diverged?): prefix_tau1.0 is not compared on it" in notes
    )
    data = json.loads((small / "report" / "report.json").read_text())
    assert "prefix_tau1.0" not in {
        c["arm"] for c in data["comparisons"] if c["metric"] == "char composite"
    }


def test_a_damaged_results_file_is_named(small):
    path = _results(small / "ce" / "seed1", 1200)
    path.write_text('{"results": {"piqa"')
    with pytest.raises(ValueError, match=f"{path} is not valid JSON"):
        report(str(small))


@pytest.mark.slow
def test_written_folders_read_back_as_the_records(tmp_path):
    """The simulator's records and its folders (read by runs.find_runs, as the report reads
    real runs) give the same analysis: the simulation tests below run on the records."""
    runs = sim.simulate(sim.Sweep(items=50, seeds=(1, 2, 3), tasks=TASKS), seed=4)
    sim.write(runs, str(tmp_path))
    a = analyse(sim.group(runs), PLAN)
    b = analyse(group_arms(find_runs(str(tmp_path))), PLAN)
    assert a.arms == b.arms and a.steps == b.steps and len(a.comparisons) == len(b.comparisons)
    for x, y in zip(a.comparisons, b.comparisons):
        assert (x.arm, x.metric, x.final, x.claimed) == (y.arm, y.metric, y.final, y.claimed)
        assert x.estimate == pytest.approx(y.estimate, abs=1e-9)
        assert (x.p is None and y.p is None) or x.p == pytest.approx(y.p, rel=1e-6)


# -- the report's claims ---------------------------------------------------------------------------


@pytest.mark.slow
def test_report_json_and_report_md_state_the_same_claims(tmp_path):
    runs = sim.simulate(
        sim.Sweep(
            items=120,
            tasks=TASKS,
            effects=(("prefix_norm_tau0.5", "char", 0.2),),
            construction_cost=True,
        ),
        seed=5,
    )
    sim.write(runs, str(tmp_path))
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "report.md").write_text("an earlier report")

    def cut(path, text):  # a crash between report.json and report.md
        raise KeyboardInterrupt

    with unittest.mock.patch.object(report_module, "write_atomically", cut):
        with pytest.raises(KeyboardInterrupt):
            report(str(tmp_path))
    assert not (tmp_path / "report" / "report.md").exists()  # never beside another's json
    text = report(str(tmp_path))
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert text.splitlines()[2] == f"**Answer.** {data['answer']}"
    assert data["answer"].startswith("Yes, on char composite: prefix_norm_tau0.5 (+")
    lines = text.split("### Claims")[1].split("###")[0]
    listed = [line for line in lines.splitlines() if line.startswith("- **")]
    claims = [c for c in data["claims"] if not c["aa_check"]]
    assert len(listed) == len(claims)
    for c, line in zip(claims, listed):
        assert f"{c['arm']} is {c['direction']} than {c['baseline']} on {c['metric']} " in line
        assert {"arm", "baseline", "metric", "direction", "primary"} <= set(c)
    comparisons = {
        (c["arm"], c["metric"], c["final"], c["aa_check"]): c for c in data["comparisons"]
    }
    one = comparisons[("prefix_norm_tau0.5", "char composite", False, False)]
    assert one["claimed"] and one["p_adjusted"] <= ALPHA and one["low"] > 0
    # The validation CE differences are mostly what the targets imply: shown beside them.
    assert "targets imply" in text.split("### validation CE")[1]
    marked = [
        line.split("|")[1].strip()
        for line in text.split("## What the targets imply")[1].split("\n\n")[2].splitlines()
        if "CE-equivalent" in line
    ]
    assert marked == ["prefix_tau0.05", "prefix_tau0.1", "prefix_tau0.2"]


def test_the_plots_give_every_arm_its_own_style():
    from prefix_titan.sweep.report import arm_styles

    a = analyse(sim.group(sim.simulate(sim.Sweep(items=20, seeds=(1, 2), tasks=TASKS))), PLAN)
    styles = arm_styles(a)
    assert len({(s["color"], s["linestyle"]) for s in styles.values()}) == len(a.arms) == 14


# -- the commands ----------------------------------------------------------------------------------


@pytest.mark.slow  # two analyses of 14 arms
def test_the_measured_variance_reads_the_seeds_every_arm_has(small):
    from prefix_titan.power import measured_sds

    aside = shutil.move(small / "ce" / "seed2", small.parent / "ce_seed2")
    with pytest.raises(ValueError, match="only seed 1 can be measured"):  # one seed: no variance
        measured_sds(str(small), PLAN, ["val CE"])
    shutil.move(aside, small / "ce" / "seed2")
    m = measured_sds(str(small), PLAN, ["val CE"])
    assert m.where == f"14 arms x 2 seeds under {small}" and m.left_out == ()
    assert m.limits == ["30 (--limit-seed 1234)"] and len(m.arms) == 14  # a --limit sample
    assert m.probe_items == []  # (results that do not record how their probes were built)
    # probes built with fewer items than a sweep's (eval --limit 50 builds 50 a probe)
    for path in small.glob("*/seed*/hf/step-*/eval_results.json"):
        data = json.loads(path.read_text())
        data["probes"] = {"words_from": None, "items": 50, "seed": 1234, "shots": 3}
        path.write_text(json.dumps(data))
    assert measured_sds(str(small), PLAN, ["val CE"]).probe_items == [50]
    shutil.rmtree(small / "ce")
    m = measured_sds(str(small), PLAN, ["val CE"])
    assert m.where == f"13 arms x 2 seeds under {small}" and m.sds["val CE"] > 0
    assert m.dfs == {"val CE": 12}  # (13 - 1) x (2 - 1): the residual degrees of freedom


def test_the_power_command_plans_the_probes_items(capsys):
    """--probe-items: the probes' published sd at the items the sweep's evaluations build (it
    planned 2,000 only); fewer than eval builds is refused."""
    from prefix_titan.power import main

    def char_row(*argv) -> list[str]:
        main(["--seeds", "3", *argv])
        out = capsys.readouterr().out
        (row,) = [r for r in out.splitlines() if r.startswith("| char composite |")]
        return [c.strip() for c in row.split("|")[1:-1]]

    full, few = char_row(), char_row("--probe-items", "500")
    assert "2,000 items" in full[-1] and "500 items" in few[-1]
    assert float(few[2]) == pytest.approx(2 * float(full[2]), rel=0.02)  # sd: sqrt(2000/500)
    assert float(few[3]) > float(full[3])  # a wider detectable difference
    with pytest.raises(SystemExit):
        main(["--probe-items", "5"])
    assert "--probe-items must be >= 30 (eval builds no fewer); got 5" in capsys.readouterr().err


def test_the_power_table_lists_a_task_that_is_a_primary_once(tmp_path, capsys, in_project):
    """A plan whose primary is one of the tasks the table lists anyway (arc_easy) gets one row
    for it, as its primary (it was printed twice, the second time again as the primary)."""
    import pathlib

    from prefix_titan import sweep
    from prefix_titan.power import main

    text = (pathlib.Path(sweep.__file__).parent / "analysis_plan.toml").read_text()
    task = '"winogrande_debiased", "arc_easy",'
    assert 'primary = "downstream bits/byte"' in text and task in text
    plan = tmp_path / "plan.toml"
    plan.write_text(
        text.replace('primary = "downstream bits/byte"', 'primary = "arc_easy"').replace(
            task, '"winogrande_debiased", "downstream bits/byte",'
        )
    )
    main(["--seeds", "3", "--plan", str(plan), "--arms", "label_smoothing", "prefix_tau0.5"])
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| arc_easy |")]
    assert len(rows) == 1 and "| primary, alpha/1 |" in rows[0], rows


@pytest.mark.slow  # (a few seconds: the power command twice, or a written sweep)
def test_the_power_of_another_scale_says_its_accuracies_are_the_pilots(capsys, in_project):
    """The assumed sds read the tasks' accuracies at pilot scale: said at 500M, which reused
    them silently."""
    from prefix_titan.power import main

    for scale, said in (("500M", True), ("pilot", False)):
        main(["--seeds", "3", "--scale", scale])
        out = capsys.readouterr().out
        assert ("At 500M the tasks' accuracies are those published at pilot scale" in out) is said


@pytest.mark.slow  # (a few seconds: the power command twice, or a written sweep)
def test_the_power_table_gives_no_detectable_difference_to_a_metric_the_plan_never_tests(
    tmp_path, capsys, in_project
):
    """A task in none of the plan's families is never tested by the report: its row says so,
    with no alpha, detectable difference or seeds (it printed 'not in the plan, alpha/k' and a
    detectable difference); an effect asked of it gets none either."""
    import pathlib

    from prefix_titan import sweep
    from prefix_titan.power import main

    text = (pathlib.Path(sweep.__file__).parent / "analysis_plan.toml").read_text()
    assert ' "piqa",' in text
    plan = tmp_path / "plan.toml"
    plan.write_text(text.replace(' "piqa",', ""))
    main(["--seeds", "3", "--plan", str(plan), "--effect", "piqa=0.05"])
    out = capsys.readouterr().out
    (row,) = [r for r in out.splitlines() if r.startswith("| piqa |")]
    assert row.startswith("| piqa | not tested by the plan | 0.0114 | - | - | - | binomial SE"), row
    assert f"Note: the plan {plan} tests no comparison on piqa (in none of its families)" in out
    (row,) = [r for r in out.splitlines() if r.startswith("| hellaswag |")]
    assert "| exploratory, alpha/" in row and "| - |" not in row


def test_a_measured_sd_on_few_degrees_of_freedom_is_planned_at_its_upper_limit(
    tmp_path, capsys, in_project
):
    """An sd measured on fewer than FEW_DF degrees of freedom (3 arms x 2 seeds: 2) is printed
    with them and its upper one-sided 80% chi-square limit, which the row plans at (the estimate
    alone was printed as "measured", however few runs it rested on); one on many is planned at
    the estimate, its degrees of freedom said."""
    from scipy.stats import chi2

    from prefix_titan.power import Measured, main
    from prefix_titan.sweep.power import FEW_DF

    measured = Measured(
        {"char composite": 0.01, "val CE": 0.002},
        f"3 arms x 2 seeds under {tmp_path}",
        [],
        [],
        [],
        [],
        {"char composite": 2, "val CE": FEW_DF},
        [],
    )
    with unittest.mock.patch("prefix_titan.power.measured_sds", return_value=measured):
        main(
            ["--seeds", "3", "--from", str(tmp_path), "--arms", "label_smoothing", "prefix_tau0.5"]
        )
    out = capsys.readouterr().out
    rows = {r.split(" | ")[0][2:]: r.split(" | ") for r in out.splitlines() if r.startswith("| ")}
    upper = 0.01 * math.sqrt(2 / chi2.ppf(0.2, 2))
    assert rows["char composite"][2] == f"0.0100, upper {upper:.4f}"
    want = inference.detectable(upper, 3, 2, 1, ALPHA, variance=PLAN.variance)
    assert rows["char composite"][3] == f"{want:.4f}"
    assert rows["char composite"][6].startswith(
        "measured (pooled over the sweep's arms), 2 degrees"
    )
    assert "planned at its upper 80% limit" in rows["char composite"][6]
    assert rows["val CE"][2] == "0.0020" and f"{FEW_DF} degrees of freedom)" in rows["val CE"][6]
    assert (
        f"Note: the sd measured under {tmp_path} rests on fewer than {FEW_DF} degrees of freedom "
        "for char composite (2): at 2 an estimate lies between 0.23x and 1.73x the true sd (90%)"
    ) in out
    assert "at the sd's upper one-sided 80% confidence limit (chi-square" in out


@pytest.mark.slow
def test_the_power_command_reads_an_effect_of_either_sign_and_refuses_none(capsys, in_project):
    """A lower-is-better metric's effect given negative needs the seeds the positive one needs
    (the tests are two-sided; it used to print > 100); 0, nan and inf are refused by name."""
    from prefix_titan.power import main

    needs = {}
    for value in ("0.05", "-0.05"):
        main(["--seeds", "3", "--effect", f"char composite={value}"])
        row = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("| char comp"))
        needs[value] = row.split("|")[6].strip()
    assert needs["0.05"] == needs["-0.05"] and needs["0.05"].isdigit(), needs
    for value in ("0", "nan", "inf"):
        with pytest.raises(SystemExit):
            main(["--seeds", "3", "--effect", f"char composite={value}"])
        assert "the effect must be a finite number other than 0" in capsys.readouterr().err


@pytest.mark.slow  # a simulated sweep of 24 s: the fast tier stays under 3 minutes
def test_the_power_command_uses_the_measured_variance_with_from(tmp_path, capsys, in_project):
    from prefix_titan.power import main

    runs = sim.simulate(sim.Sweep(items=60, tasks=TASKS), seed=6)
    sim.write(runs, str(tmp_path))
    main(["--seeds", "4", "--from", str(tmp_path)])
    out = capsys.readouterr().out
    rows = {
        line.split("|")[1].strip(): line.split("|")[2:-1]
        for line in out.splitlines()
        if line.startswith("| ") and not line.startswith("| metric")
    }
    fit = analyse(group_arms(find_runs(str(tmp_path))), PLAN).fits
    # the primaries at alpha / 12 arms; a task (exploratory, 11 in its family) at its first
    # share once its arm is claimed: half of alpha / 12 over 11 metrics
    for name, k in (("char composite", 12), ("downstream bits/byte", 12), ("val CE", 12)) + (
        ("hellaswag", 264),
    ):
        sd = math.sqrt(fit[name].sigma2)
        assert rows[name][0].strip().endswith(f"alpha/{k}")
        assert rows[name][1].strip() == f"{sd:.4f}" and "measured" in rows[name][-1]
        want = inference.detectable(sd, 4, 14, k, ALPHA, variance=PLAN.variance)
        assert rows[name][2].strip() == f"{want:.4f}"
    assert "detectable at 4 seeds" in out and out.count("Note:") == 1
    assert "evaluated on a --limit sample of each task's items (60 (--limit-seed 1234))" in out
    # --checkpoints K: each run's last K evaluations, as the report's --checkpoints (the
    # refusal of runs evaluated at other steps names it)
    main(["--seeds", "4", "--from", str(tmp_path), "--checkpoints", "1"])
    (row,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("| char composite")]
    sd = math.sqrt(
        analyse(group_arms(find_runs(str(tmp_path))), PLAN, 1).fits["char composite"].sigma2
    )
    assert row.split("|")[3].strip() == f"{sd:.4f}" != rows["char composite"][1].strip()
    for bad, said in (
        (["--checkpoints", "0"], "--checkpoints must be >= 1; got 0"),
        (["--checkpoints", "1"], "--checkpoints reads a sweep's evaluations: give it with --from"),
    ):
        with pytest.raises(SystemExit):
            main(["--seeds", "4", *bad] + (["--from", str(tmp_path)] if "0" in bad else []))
        assert said in capsys.readouterr().err
    from prefix_titan.power import scale_flavor

    for record in tmp_path.glob("*/seed*/run_config.json"):  # runs of the smoke scale's model
        config = json.loads(record.read_text())
        record.write_text(json.dumps({**config, "model": {"flavor": scale_flavor("smoke")}}))
    main(["--seeds", "4", "--from", str(tmp_path)])
    assert (
        f"Note: the runs under {tmp_path} trained model.flavor {scale_flavor('smoke')}, the pilot "
        f"scale trains {scale_flavor('pilot')}: their training noise is not this scale's"
    ) in capsys.readouterr().out
    for path in tmp_path.glob("*/seed*/hf/step-*/eval_results.json"):  # hellaswag alike in all
        data = json.loads(path.read_text())
        data["results"]["hellaswag"] = {**data["results"]["hellaswag"], "acc_norm,none": 0.3}
        data["probes"] = {"words_from": None, "items": 50, "seed": 1234, "shots": 3}
        path.write_text(json.dumps(data))
    main(["--seeds", "4", "--from", str(tmp_path)])
    out = capsys.readouterr().out
    assert f"Note: the runs under {tmp_path} measured no variance of hellaswag" in out
    # probes built at 50 items (eval --limit 50): their measured sd is not a sweep's
    assert (
        f"the character probes under {tmp_path} were built with 50 items each, not the 2,000" in out
    )
    (row,) = [line for line in out.splitlines() if line.startswith("| hellaswag |")]
    assert "binomial SE" in row  # the published default, said


@pytest.mark.slow  # generates a project's configs and runs the power command over them
def test_the_power_command_counts_the_arms_of_the_project_at_root(tmp_path, capsys):
    from prefix_titan.power import main

    main(["--root", str(tmp_path)])
    built_in = capsys.readouterr().out
    assert "scale pilot, 14 arms (12 compared with label_smoothing), 3 seeds" in built_in
    (tmp_path / "sweep_arms.toml").write_text('[[arm]]\nname = "prefix"\ntau = 0.3\n')
    main(["--root", str(tmp_path)])
    assert (
        "scale pilot, 15 arms (13 compared with label_smoothing), 3 seeds"
        in capsys.readouterr().out
    )
    (tmp_path / "sweep_arms.toml").write_text(
        '[[arm]]\nname = "prefix"\ntau = 0.3\n\n[[arm]]\nname = "prefix"\nposition_gamma = 0.99\n'
    )
    main(["--root", str(tmp_path)])
    out = capsys.readouterr().out
    assert "scale pilot, 16 arms (13 compared with label_smoothing), 3 seeds" in out
    assert (  # an arm of one's own outside the contrast: said, not silently left out
        "Note: not compared with label_smoothing, their kind not in the plan's contrast (prefix, "
        "prefix_norm): prefix_tau0.5_gamma0.99; a plan whose contrast names them"
    ) in out
    assert "Note: not compared" not in built_in
    # the arms a sweep will hold (--arms, as launch takes them): fewer arms, fewer degrees of freedom
    main(["--root", str(tmp_path), "--arms", "label_smoothing", "prefix_tau0.3", "ce"])
    few = capsys.readouterr().out
    assert "scale pilot, 3 arms (1 compared with label_smoothing), 3 seeds" in few
    row = next(x for x in few.splitlines() if x.startswith("| char composite |")).split(" | ")
    assert row[1] == "primary, alpha/1"
    assert float(row[3]) == pytest.approx(
        inference.detectable(float(row[2]), 3, 3, 1, ALPHA, variance=PLAN.variance),
        rel=0.01,  # sd shown to 4 places
    )
    for arms, says in (
        (["label_smoothing", "prefix_tau9"], "--arms prefix_tau9: no such arm"),
        (["ce", "prefix_tau0.3"], "--arms leaves out the plan's baseline, label_smoothing"),
        (["label_smoothing", "ce"], "the plan's contrast (prefix, prefix_norm) names no arm"),
    ):
        with pytest.raises(SystemExit):
            main(["--root", str(tmp_path), "--arms", *arms])
        assert says in capsys.readouterr().err, arms
    (tmp_path / "sweep_arms.toml").write_text('[[arm]]\nname = "prefx"\n')
    with pytest.raises(SystemExit):
        main(["--root", str(tmp_path)])
    assert "objective.name must be one of ce, label_smoothing" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seeds", "1"], "--seeds must be >= 2"),
        (["--effect", "nonsense"], "give METRIC=VALUE"),
        (["--effect", "char acc=0.1"], "--effect names char acc; the metrics here: char composite"),
        (["--scale", "huge"], "invalid choice: 'huge'"),
        (  # 2 points meant: an accuracy is a fraction
            ["--effect", "hellaswag=2"],
            "--effect 'hellaswag=2': hellaswag is a fraction (0.01 = one point), so two arms differ "
            "by 1 at most (a difference of 2 points is hellaswag=0.02)",
        ),
        (["--effect", "downstream acc=-1.5"], "downstream acc is a fraction (0.01 = one point)"),
    ],
)
def test_the_power_command_refuses_bad_settings(args, message, capsys):
    from prefix_titan.power import main

    with pytest.raises(SystemExit):
        main(args)
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_the_simulate_command_writes_a_sweep_the_report_reads(tmp_path, capsys, in_project):
    from prefix_titan.simulate import main

    main(
        [
            "--out",
            str(tmp_path),
            "--items",
            "30",
            "--seeds",
            "1",
            "2",
            "--effect",
            "prefix_norm_tau1.0:char=0.2",
        ]
    )
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir())[:2] == ["ce", "label_smoothing"]
    text = report(str(tmp_path))
    assert text.startswith("# Sweep report: 14 arms × 2 seeds (1, 2)")
    for args, message in (
        (["--out", str(tmp_path), "--effect", "prefix_tau9:char=0.1"], "no such arm"),
        (["--out", str(tmp_path), "--effect", "prefix_tau0.5:chars=0.1"], "not a simulated task"),
        (["--out", str(tmp_path), "--effect", "prefix_tau0.5"], "give ARM:WHAT=VALUE"),
        (["--calibrate", "5", "--construction-cost"], "differ by design"),
        (["--calibrate", "5", "--workers", "0"], "--workers must be >= 1; got 0"),
        (["--calibrate", "5", "--seeds", "1", "1", "2"], "--seeds must be distinct: 1 repeated"),
        (["--calibrate", "5", "--seeds", "1"], "--calibrate needs --seeds with 2 or more seeds"),
        (["--out", str(tmp_path), "--seeds", "-1", "2"], "--seeds must be >= 0; got -1 2"),
        ([], "give --out DIR or --calibrate N"),
    ):
        with pytest.raises(SystemExit):
            main(args)
        assert message in capsys.readouterr().err, args


def test_the_simulator_takes_the_arms_a_launch_takes(tmp_path, capsys, in_project):
    """A pilot of some arms (`sweep launch --arms`, `power --arms`) is simulated with the same
    --arms: those arms' runs only, the baseline required, a misspelt arm named with the nearest."""
    from prefix_titan.simulate import main

    out = tmp_path / "sim"
    arms = ["label_smoothing", "prefix_tau0.5", "ce"]
    main(["--out", str(out), "--items", "20", "--seeds", "1", "2", "--arms", *arms])
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [
        "ce",
        "label_smoothing",
        "prefix_tau0.5",
    ]
    for arms, message in (
        (["prefix_tau0.5", "ce"], "--arms leaves out the plan's baseline, label_smoothing"),
        (["label_smoothing", "prefix_tau05"], "prefix_tau05: did you mean prefix_tau0.5?"),
    ):
        with pytest.raises(SystemExit):
            main(["--out", str(tmp_path / "other"), "--arms", *arms])
        assert message in capsys.readouterr().err, arms
    # a gold mass given for an arm --arms leaves out: that arm exists (it said 'no such arm')
    some = ["--arms", "label_smoothing", "prefix_tau0.5", "--gold-mass", "prefix_tau1.0=0.5"]
    main(["--out", str(tmp_path / "g"), "--items", "20", "--seeds", "1", "2", *some])
    assert "no such arm" not in capsys.readouterr().err


@pytest.mark.slow
def test_a_second_simulated_sweep_never_mixes_with_the_first(tmp_path, capsys, in_project):
    """--out takes a new or empty folder; --overwrite replaces an earlier simulated sweep whole
    (none of its runs, nor its report, is left) and never a folder of other runs."""
    from prefix_titan.simulate import SIMULATED, main

    out = tmp_path / "sim"
    first = ["--out", str(out), "--items", "20", "--seeds", "1", "2"]
    main(first)
    report(str(out))
    assert (out / "report" / "report.md").exists() and (out / SIMULATED).exists()
    again = ["--out", str(out), "--items", "20", "--seeds", "7", "8"]
    with pytest.raises(SystemExit):
        main(again)
    assert "exists and is not empty" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "ce").iterdir()) == ["seed1", "seed2"]
    main([*again, "--overwrite"])
    assert sorted(p.name for p in (out / "ce").iterdir()) == ["seed7", "seed8"]
    assert not (out / "report").exists()
    assert "--seeds 7 8" in json.loads((out / SIMULATED).read_text())["command"]
    assert [p.name for p in tmp_path.iterdir()] == ["sim"]  # no draft left beside it
    config = json.loads((out / "ce" / "seed7" / "run_config.json").read_text())
    assert config["job"]["dump_folder"] == str(out / "ce" / "seed7")
    assert report(str(out)).startswith("# Sweep report: 14 arms × 2 seeds (7, 8)")
    other = tmp_path / "runs"
    (other / "ce").mkdir(parents=True)
    with pytest.raises(SystemExit):
        main(["--out", str(other), "--items", "20", "--overwrite"])
    assert f"is not a simulated sweep (it has no {SIMULATED})" in capsys.readouterr().err
    assert [p.name for p in other.iterdir()] == ["ce"]


@pytest.mark.slow
def test_a_simulated_sweep_registers_its_plan_as_a_launch_does(tmp_path, capsys, in_project):
    """--out registers the analysis plan (--plan, else the package's) before the runs, so that
    the report applies it as the sweep's own (not an exploratory re-analysis); --calibrate says
    which variance rule its rates are of."""
    from prefix_titan.runs.folder import RUN_CONFIG, STARTS
    from prefix_titan.simulate import calibrate, main
    from prefix_titan.sweep.analysis import PLAN, REGISTERED, plan_digest, registered_plan_doubt

    out, plan = tmp_path / "sim", tmp_path / "pooled.toml"
    plan.write_text(open(PLAN).read().replace('\nvariance = "baseline_apart"\n', "\n", 1))
    main(["--out", str(out), "--items", "20", "--seeds", "1", "2", "--plan", str(plan)])
    registered = (out / REGISTERED).read_text()
    assert registered.startswith(
        "# The analysis plan registered by `python -m prefix_titan.simulate"
    )
    assert f"from {plan}" in registered and not registered_plan_doubt(str(out / REGISTERED))
    text = report(str(out))
    assert "residual variance pooled over arms), 95% interval" in text
    assert "exploratory re-analysis" not in text.split("\n")[2]
    # each run records the plan it was started under, as a launch's runs do: the plan file
    # removed, the report does not apply the package's plan as the registered one
    digest = plan_digest(load_plan(str(plan)))
    records = [json.loads(p.read_text()) for p in out.glob(f"*/seed*/{RUN_CONFIG}")]
    assert len(records) == 28 and all(r[STARTS][0]["plan_sha256"] == digest for r in records)
    kept = (out / REGISTERED).read_text()
    os.chmod(out / REGISTERED, 0o644)
    (out / REGISTERED).unlink()
    gone = report(str(out), out=str(tmp_path / "gone"))
    assert "(An exploratory re-analysis" in gone and "(analysis_plan.toml removed)" in gone
    (out / REGISTERED).write_text(kept)
    main(["--out", str(out), "--items", "20", "--seeds", "1", "2", "--overwrite"])
    assert f"from {PLAN}" in (out / REGISTERED).read_text()
    small = sim.Sweep(seeds=(1, 2), items=20, tasks=("char_spell",))
    said = calibrate(small, ("prefix_tau0.5", "char_spell", 0.05), load_plan(str(plan)), 2, 0)
    assert "2 sweeps of 14 arms x 2 seeds, the plan's variance = 'pooled':" in said
    assert "A/A checks (CE-equivalent arms against ce): " in said  # prefix_tau0.05 is one
    # without a CE-equivalent arm there is no A/A check: not a rate of 0 that reads as held
    import dataclasses

    kept = ("ce", "label_smoothing", "prefix_tau0.5")
    three = dataclasses.replace(small, arms=tuple(s for s in small.arms if s.arm_name() in kept))
    said = calibrate(three, ("prefix_tau0.5", "char_spell", 0.05), load_plan(str(plan)), 2, 0)
    assert "A/A checks: none in these sweeps (no CE-equivalent arm, or no ce arm)" in said


# -- error rates of the decision code (simulated sweeps) -------------------------------------------


@pytest.mark.slow
def test_under_the_null_the_familywise_false_claim_rate_is_at_most_alpha(seed):
    """400 simulated 14-arm x 3-seed sweeps in which no arm differs (as the other rates are
    asserted): the share with at least one claim in a family (primary or exploratory) is at most
    alpha in each family."""
    sweeps = 400
    found = sim.claims(SMALL, PLAN, sweeps, seed, workers=WORKERS)
    assert repr(found[:6]) == repr(sim.claims(SMALL, PLAN, 6, seed))  # one process: the same
    rates = sim.familywise(found, PLAN)
    for family, hits in rates.items():
        print(f"null, {family}: sweeps with a false claim {sim.rate(hits, sweeps)}")
    assert all(hits / sweeps <= ALPHA for hits in rates.values()), rates
    # Every rule is live: the raw p-values of the primaries are about uniform under the null
    # (baseline_apart's somewhat conservative with equal variances: P(p <= 0.05) is 2.4% exactly
    # under the model with a fifth of Satterthwaite's degrees of freedom kept)
    p = [
        c.p
        for cs in [
            analyse(
                sim.group(sim.simulate(SMALL, seed=(seed, 1, i))), PLAN, answer=False
            ).comparisons
            for i in range(20)
        ]
        for c in cs
        if c.primary and not c.aa_check and not c.final
    ]
    assert 0.01 < np.mean(np.array(p) <= 0.05) < 0.09


@pytest.mark.slow
def test_a_planted_character_effect_is_found_and_never_called_worse(seed):
    """+5 points on every character probe that is not prefix-shaped (and the embedding probe) of
    one arm, at the probes' real item count: claimed better on the character composite in at
    least 80% of 200 sweeps, never claimed worse on what it moves; the metrics it leaves alone
    (prefix-shaped probes, prefix mass) are falsely claimed in at most alpha of the sweeps."""
    sweeps, arm = 200, "prefix_tau0.5"
    sweep = sim.Sweep(tasks=tuple(PROBE_TASKS), effects=((arm, "char", 0.05),))
    found = sim.claims(sweep, PLAN, sweeps, seed, workers=WORKERS)
    moved = sim.moved_metrics("char")

    def count(rule):
        return sum(any(rule(c) for c in cs if c.arm == arm and not c.aa_check) for cs in found)

    hit = count(lambda c: c.metric == "char composite" and c.direction == "better")
    worse = count(lambda c: c.metric in moved and c.direction == "worse")
    other = count(lambda c: c.metric not in moved)
    print(
        f"planted +5 points on {arm}: claimed {sim.rate(hit, sweeps)}, called worse "
        f"{sim.rate(worse, sweeps)}, a false claim on a metric it leaves alone {sim.rate(other, sweeps)}"
    )
    assert hit / sweeps >= 0.8 and worse == 0 and other / sweeps <= ALPHA


@pytest.mark.slow
def test_the_ce_equivalent_arms_are_not_claimed_different_from_ce(seed):
    """A realistic sweep: validation CE carries each target's cost by construction, and two arms
    that are not CE-equivalent have real effects. The CE-equivalent arms (gold mass >= 0.99)
    match ce in truth; each is claimed different from ce (A/A) in at most alpha of the sweeps,
    and the A/A family as a whole is not significantly above alpha."""
    from scipy.stats import binomtest

    sweeps = 300
    sweep = sim.Sweep(
        items=100,
        tasks=TASKS,
        construction_cost=True,
        effects=(("prefix_norm_tau0.5", "char", 0.1), ("prefix_tau2.0", "downstream", -0.01)),
    )
    found = sim.claims(sweep, PLAN, sweeps, seed, workers=WORKERS)
    equivalent = ["prefix_tau0.05", "prefix_tau0.1", "prefix_tau0.2"]
    for arm in equivalent:
        hits = sum(any(c.aa_check and c.arm == arm for c in cs) for cs in found)
        print(f"A/A {arm} against ce: {sim.rate(hits, sweeps)}")
        assert hits / sweeps <= ALPHA
    any_aa = sum(any(c.aa_check for c in cs) for cs in found)
    print(f"A/A, any: {sim.rate(any_aa, sweeps)}")
    assert binomtest(any_aa, sweeps, ALPHA, alternative="greater").pvalue > 0.01
    checked = analyse(sim.group(sim.simulate(sweep, seed=seed)), PLAN)
    assert {c.arm for c in checked.comparisons if c.aa_check} == set(equivalent)


def test_calibration_reports_a_planted_effect_on_one_task_or_on_no_primary():
    """`simulate --calibrate` reports what the report claims of a planted effect for every
    effect it accepts: on one task (hellaswag moves downstream bits/byte, the downstream
    family's primary) as on a group, and, for an effect no family's primary reads (the
    prefix-shaped probes), how often what it moves is claimed, not nothing at all."""
    from prefix_titan.simulate import calibrate
    from prefix_titan.sweep.configs import arm_specs

    three = tuple(
        s for s in arm_specs() if s.arm_name() in ("ce", "label_smoothing", "prefix_tau0.5")
    )
    sweep = sim.Sweep(arms=three, items=30)
    said = calibrate(sweep, ("prefix_tau0.5", "hellaswag", 0.05), PLAN, 2, 0)
    assert "Planted +0.05 on hellaswag of prefix_tau0.5, 2 sweeps: claimed better on " in said
    assert "claimed better on downstream bits/byte " in said, said
    said = calibrate(sweep, ("prefix_tau0.5", "prefix-shaped", 0.05), PLAN, 2, 0)
    assert (
        "Planted +0.05 on prefix-shaped of prefix_tau0.5, 2 sweeps: no family's primary moves "
        "with it" in said
    ), said
    said = calibrate(sweep, ("prefix_tau0.5", "char", 0.05), PLAN, 2, 0)
    assert (
        "Planted +0.05 on char of prefix_tau0.5, 2 sweeps: claimed better on char composite" in said
    )
    assert "\n  any family (the A/A checks excepted): " in said  # under the global null
    # the arms left alone: every claim about them is false, counted as well
    [line] = [x for x in said.splitlines() if "a claim about another arm than" in x]
    assert line.startswith("  with it planted, a claim about another arm than prefix_tau0.5")


def test_a_weighted_arm_with_a_ce_like_target_is_not_an_a_a_check():
    """An arm of ce's target with position weighting is another objective: compared with the
    baseline where the plan's contrast names its kind, never checked against ce as if it were
    CE in all but name (its weighting effect read as a pipeline fault); prefix_tau0.05 with the
    same weighting as ce still is."""
    import dataclasses

    from prefix_titan.objectives import ObjectiveSpec

    arms = (
        ObjectiveSpec("ce"),
        ObjectiveSpec("label_smoothing"),
        ObjectiveSpec("prefix", tau=0.05),
        ObjectiveSpec("ce", position_gamma=0.99),
    )
    sweep = sim.Sweep(arms=arms, items=40, seeds=(1, 2, 3), tasks=TASKS)
    plan = dataclasses.replace(PLAN, contrast=("prefix", "ce_gamma0.99"))
    a = analyse(sim.group(sim.simulate(sweep, seed=1)), plan)
    assert a.equivalent == ["prefix_tau0.05"]
    assert {c.arm for c in a.comparisons if c.aa_check} == {"prefix_tau0.05"}
    assert "ce_gamma0.99" in {c.arm for c in a.comparisons if not c.aa_check}


def test_runs_validated_at_other_steps_are_refused_naming_them_with_the_training_fix():
    """Validation rows come from training: a run validated at other steps is refused, named with
    its last validation step beside what the others share (its rows took every validation metric
    out for every run, with a note only), and the fix is in training's settings."""
    runs = sim.simulate(sim.Sweep(items=40, seeds=(1, 2), tasks=TASKS), seed=1)
    run = runs[0]
    run["val"] = {s + 1: v for s, v in run["val"].items()}
    run["validation"] = {s + 1: v for s, v in run["validation"].items()}
    with pytest.raises(ValueError, match="the runs were validated at different steps") as e:
        analyse(sim.group(runs), PLAN)
    said = str(e.value)
    assert "27 of the 28 validated runs: steps 3000, 3300, 3600 (last validation step 3600)" in said
    assert f"{run['folder']}: steps 3001, 3301, 3601 (last validation step 3601)" in said
    assert (
        "To compare them, train every run with the same training.steps and validation.freq ("
        in (said)
    )
    assert "--checkpoints" not in said


def test_validation_rows_missing_from_unfinished_runs_name_them_and_the_seeds_that_finished():
    """Runs stopped before their last validation (a seed cut short) have fewer rows: the refusal
    names those runs, unfinished, and the seeds to report (not to train every run with the same
    settings, which they were)."""
    runs = sim.simulate(sim.Sweep(items=40, seeds=(1, 2, 3), tasks=TASKS), seed=1)
    for run in runs:
        run["config"] = {"training": {"steps": run["last_step"]}}
        if run["seed"] == 2 and run["name"] in ("ce", "label_smoothing"):
            last = max(run["validation"])
            run["last_step"] = last // 2
            run["val"] = {s: v for s, v in run["val"].items() if s <= last // 2}
            run["validation"] = {s: v for s, v in run["validation"].items() if s <= last // 2}
    with pytest.raises(ValueError, match="the runs were validated at different steps") as e:
        analyse(sim.group(runs), PLAN)
    said = str(e.value)
    ce = next(r for r in runs if r["name"] == "ce" and r["seed"] == 2)
    assert (
        f"{ce['folder']} (unfinished: step 1800 of 3600): steps 1200, 1500, 1800 (last "
        "validation step 1800)"
    ) in said, said
    assert (
        "To compare them, finish the unfinished runs (the same `sweep launch` resumes a run), or "
        "report the seeds whose runs finished (--seeds 1 3)."
    ) in said, said
    assert "train every run with the same" not in said


def test_an_arm_outside_the_plans_contrast_is_named_not_silently_left_out(seed, tmp_path):
    from prefix_titan.objectives import ObjectiveSpec
    from prefix_titan.sweep.configs import arm_specs

    plan = _one_family_plan(tmp_path, "hellaswag", [])
    specs = [*arm_specs(), ObjectiveSpec("my_lab.targets:suffix", tau=0.5)]
    rng = np.random.default_rng(seed)
    y = {"hellaswag": 0.5 + 0.01 * rng.normal(size=(len(specs), 3))}
    a = analyse(_records(y, specs), plan)
    [note] = [n for n in a.notes if "not in the plan's contrast" in n]
    assert "my_lab.targets:suffix" in note and "prefix_tau" not in note and "--plan" in note
    assert not any(c.arm.startswith("my_lab") for c in a.comparisons)


@pytest.mark.parametrize("compared", [1, 3, 12])
def test_first_share_is_the_share_the_graph_gives(compared):
    """The power section's alpha / k is the share the family's graph gives a comparison first: a
    primary's before any claim, an exploratory metric's once its own arm is claimed on the primary
    (with one arm compared, that arm's whole share)."""
    from prefix_titan.sweep.analysis import Comparison, _graph, first_share

    family = PLAN.families[0]
    rows = [
        Comparison(family.name, m, f"arm{a}", "b", m == family.primary, 0.0, None, None, 0.5)
        for a in range(compared)
        for m in (family.primary, *family.exploratory)
    ]
    weights, g = _graph(rows)
    k, role = first_share(PLAN, family.primary, compared)
    assert role == "primary" and weights[0] == pytest.approx(1 / k)
    k, role = first_share(PLAN, family.exploratory[0], compared)
    assert role == "exploratory" and weights[0] * g[0][1] == pytest.approx(1 / k)


def test_a_baseline_of_a_contrast_kind_is_not_compared_with_itself(seed, tmp_path):
    """A plan may take one of the contrast's arms as its baseline (prefix_tau1.0 against the other
    prefix arms): it is compared with the others, never with itself (arm - baseline would be
    minus its own mean, a certain false claim)."""
    from prefix_titan.sweep.configs import arm_specs

    plan = _one_family_plan(tmp_path, "hellaswag", [], baseline="prefix_tau1.0")
    specs = arm_specs()
    rng = np.random.default_rng(seed)
    y = {"hellaswag": 0.3 + 0.01 * rng.normal(size=(len(specs), 3))}
    a = analyse(_records(y, specs), plan)
    compared = {c.arm for c in a.comparisons}
    contrast = {s.arm_name() for s in specs if s.name == "prefix" and s.support == "prefix"}
    assert len(contrast) == 12 and compared == contrast - {"prefix_tau1.0"}, compared
    assert "prefix_tau1.0 worse than prefix_tau1.0" not in a.answer
    assert any("at alpha/11;" in line for line in report_module.power_lines(a))
    f = inference.fit(np.asarray(y["hellaswag"]))
    with pytest.raises(ValueError, match="not compared with itself"):
        inference.versus(f, 2, 2)


def test_the_simulator_refuses_an_arm_whose_target_it_does_not_know():
    from prefix_titan.objectives import ObjectiveSpec

    mine = ObjectiveSpec("my_lab.targets:suffix")
    sweep = sim.Sweep(arms=(ObjectiveSpec("ce"), mine), items=20, tasks=("piqa",), seeds=(1, 2))
    with pytest.raises(ValueError, match="no target gold mass for my_lab.targets:suffix"):
        sim.simulate(sweep)
    runs = sim.simulate(
        sim.Sweep(**{**vars(sweep), "gold_mass": (("my_lab.targets:suffix", 0.8),)}), seed=1
    )
    assert len(runs) == 4


def test_a_simulated_arm_of_ones_own_gets_the_folder_the_launch_gives_it(tmp_path):
    """An import path's arm is written in the folder `sweep launch` gives it (its `:` as `-`,
    the basename of its config's dump folder), and reads back under its own name."""
    from prefix_titan.objectives import ObjectiveSpec
    from prefix_titan.sweep.configs import file_name
    from prefix_titan.sweep.launch import run_folder

    mine = ObjectiveSpec("my_lab.targets:suffix", epsilon=0.3)
    sweep = sim.Sweep(
        arms=(ObjectiveSpec("ce"), mine),
        items=20,
        tasks=("piqa",),
        seeds=(1, 2),
        embedding_probe=False,
        gold_mass=((mine.arm_name(), 0.8),),
    )
    runs = sim.simulate(sweep, seed=1)
    folders = sim.write(runs, str(tmp_path))
    launched = {"job": {"dump_folder": f"outputs/{file_name(mine.arm_name())}"}}
    assert run_folder(launched, 1, str(tmp_path)) in folders
    assert sorted(os.listdir(tmp_path)) == ["ce", "my_lab.targets-suffix_epsilon0.3"]
    assert {r["name"] for r in find_runs(str(tmp_path))} == {"ce", mine.arm_name()}


def test_the_variance_screen_has_its_stated_level_under_equal_variances(seed):
    """Each arm's residual variance over the other arms' is F(S - 1, (A - 2)(S - 1)) when the
    arms' variances are equal (seed effects and arm means do not enter), so the 99% screen names a
    given arm in 1% of sweeps."""
    from types import SimpleNamespace

    from scipy.stats import f as f_dist
    from scipy.stats import kstest

    from prefix_titan.sweep.analysis import arm_variances

    rng = np.random.default_rng(seed)
    arms, seeds, reps = 14, 3, 3000
    names, ids = [f"a{i}" for i in range(arms)], [1, 2, 3]
    first, last = [], []
    for _ in range(reps):
        y = (
            rng.normal(size=(arms, seeds))
            + 5 * rng.normal(size=(1, seeds))
            + np.arange(arms)[:, None]
        )
        table = {a: dict(zip(ids, row)) for a, row in zip(names, y.tolist())}
        result = SimpleNamespace(tables={"m": table}, seeds=ids, fits={"m": inference.fit(y)})
        ratios = arm_variances(result, "m")
        first.append(ratios["a0"])
        last.append(ratios["a13"])
    dist = f_dist(seeds - 1, (arms - 2) * (seeds - 1))
    for got in (first, last):
        assert kstest(got, dist.cdf).pvalue > 1e-3
        rate = np.mean(np.array(got) > dist.ppf(0.99))
        assert 0.004 <= rate <= 0.018, rate  # 30 expected of 3,000 (binomial sd 5.4)


@pytest.mark.slow
def test_a_baseline_far_noisier_than_the_other_arms_is_named(seed, tmp_path):
    """The pooled test assumes equal variances; the report screens the baseline (and claimed
    arms) at the 99% level: rarely named when variances are equal, often at 4x the sd."""
    from prefix_titan.sweep.configs import arm_specs

    plan = _one_family_plan(tmp_path, "hellaswag", [])
    specs = arm_specs()
    base = [s.arm_name() for s in specs].index("label_smoothing")
    rng = np.random.default_rng(seed)
    named = {}
    for k in (1, 4):
        hits = 0
        for _ in range(100):
            shared = rng.normal(size=(1, 3))  # each seed's effect, the same in every arm
            y = 0.5 + 0.01 * (rng.normal(size=(len(specs), 3)) + shared)
            y[base] = 0.5 + 0.01 * (k * rng.normal(size=3) + shared[0])
            notes = analyse(_records({"hellaswag": y}, specs), plan).notes
            hits += any("residual variance of label_smoothing" in n for n in notes)
        named[k] = hits / 100
    assert named[1] <= 0.05 and named[4] >= 0.45, named  # 1% and 69% (5,000 sweeps)


def test_a_noisy_baseline_beside_arms_without_residual_variance_is_named_in_words(tmp_path):
    """Where every other arm moves with the seed alone (no residual variance: models that answer
    alike), the baseline's note says the others' variance is 0, not a ratio of "inf"."""
    from prefix_titan.sweep.configs import arm_specs

    plan = _one_family_plan(tmp_path, "hellaswag", [])
    specs = arm_specs()
    base = [s.arm_name() for s in specs].index("label_smoothing")
    y = np.tile(0.5 + 0.01 * np.array([0.3, -0.2, 0.5]), (len(specs), 1))
    y[base] += 0.02 * np.array([1.0, -1.5, 0.4])
    notes = analyse(_records({"hellaswag": y}, specs), plan).notes
    said = [n for n in notes if n.startswith("hellaswag: the residual variance of label_smoothing")]
    assert said and "inf" not in said[0], notes
    assert "is above 0 where the other arms' is 0 (above the 99% level" in said[0]


def test_a_far_noisier_arm_named_only_where_a_claim_reads_its_variance(seed, tmp_path):
    """An arm with 8x the sd: named where it is claimed (its comparison assumes equal
    variances), not where it only lies on a trend (the trend's per-seed test assumes nothing of
    the arms' variances)."""
    from prefix_titan.sweep.configs import arm_specs

    plan = _one_family_plan(tmp_path, "hellaswag", [])
    specs = arm_specs()
    noisy = [s.arm_name() for s in specs].index("prefix_tau2.0")
    rng = np.random.default_rng(seed)
    unclaimed = 0
    for _ in range(40):
        shared = rng.normal(size=(1, 3))
        y = 0.5 + 0.01 * (rng.normal(size=(len(specs), 3)) + shared)
        y[noisy] = 0.5 + 0.01 * (8 * rng.normal(size=3) + shared[0])
        a = analyse(_records({"hellaswag": y}, specs), plan)
        said = [
            n for n in a.notes if n.startswith("hellaswag: the residual variance of prefix_tau2.0")
        ]
        claimed = any(c.arm == "prefix_tau2.0" for c in a.claims)
        assert not said or claimed, said
        unclaimed += not claimed
    assert unclaimed >= 20, unclaimed


def test_a_primary_without_residual_variance_is_no_claim_not_no_difference(tmp_path):
    """Every arm differs from the baseline by the same amount on every seed: nothing can be
    tested, and the answer says so (it used to say "No difference found")."""
    from prefix_titan.sweep.configs import arm_specs

    plan = _one_family_plan(tmp_path, "hellaswag", [])
    specs = arm_specs()
    y = 0.5 + 0.01 * np.arange(len(specs))[:, None] + 0.02 * np.array([[0.0, 1.0, -1.0]])
    a = analyse(_records({"hellaswag": y}, specs), plan)
    assert a.answer.startswith("No claim: on hellaswag every arm compared differs from")
    assert any("hellaswag has no residual variance" in n for n in a.notes)


def test_an_arm_that_cannot_be_tested_is_named_not_counted_as_no_difference(seed, tmp_path):
    """At 2 seeds (baseline_apart: each arm's per-seed differences alone) an arm +0.02 above the
    baseline on both seeds has no variance to test with: the answer names it as not tested, and
    does not count it among the arms with no difference found (it used to read "No difference
    found: no arm ... was shown to differ"); 0.02 and 0.0201 is tested."""
    from prefix_titan.sweep.configs import arm_specs

    plan = _one_family_plan(tmp_path, "hellaswag", [], variance="baseline_apart")
    specs = arm_specs()
    names = [s.arm_name() for s in specs]
    rng = np.random.default_rng(seed)
    y = 0.5 + 0.01 * rng.normal(size=(len(specs), 2))
    base, arm = names.index("label_smoothing"), names.index("prefix_tau0.5")
    y[arm] = y[base] + 0.02
    a = analyse(_records({"hellaswag": y}, specs), plan)
    assert next(c for c in a.comparisons if c.arm == "prefix_tau0.5").p is None
    assert "no arm tested (11 of the 12 compared) was shown to differ" in a.answer, a.answer
    assert a.answer.endswith(
        "Not tested, the same difference from label_smoothing on every seed (no variance): "
        "prefix_tau0.5."
    ), a.answer
    assert any(
        "prefix_tau0.5 differs from label_smoothing by the same amount" in n for n in a.notes
    )
    rows = report_module.primary_table(a, a.plan.families[0]).splitlines()
    row = next(r for r in rows if r.startswith("| prefix_tau0.5 |"))
    assert "| not tested (the same difference on every seed) |" in row, row
    y[arm, 1] += 0.0001
    a = analyse(_records({"hellaswag": y}, specs), plan)
    assert next(c for c in a.comparisons if c.arm == "prefix_tau0.5").p is not None
    assert "Not tested" not in a.answer and not any("same amount" in n for n in a.notes)


def _interacting(rng, arms: int, seeds: int, spread: float, seed_sd: float) -> np.ndarray:
    """A table under the null with a seed x arm interaction of rank one: every arm responds to
    each seed's effect (sd `seed_sd` run sds) by its own factor, uniform in 1 -+ `spread`."""
    factors = rng.uniform(1 - spread, 1 + spread, size=(arms, 1))
    return rng.normal(size=(arms, seeds)) + factors * seed_sd * rng.normal(size=(1, seeds))


def test_the_seed_interaction_screen_holds_its_level_and_finds_a_planted_one(seed):
    """inference.interaction's p-value is uniform under the two-way model (whatever the seed
    effect: it leaves the residuals alone), so the report's screen at 0.01 names about 1% of
    additive tables; tables whose arms respond to the seed by unequal factors are named more
    often (11.6% and 24.6% in 4,000 simulated tables of each of two strengths, 14 arms x 3
    seeds)."""
    from scipy.stats import kstest

    rng = np.random.default_rng(seed)
    arms, seeds, tables = 14, 3, 2000
    null = [
        inference.interaction(rng.normal(size=(arms, seeds)) + 5 * rng.normal(size=(1, seeds)))[1]
        for _ in range(tables)
    ]
    assert kstest(null, "uniform").pvalue > 1e-3
    assert 0.003 <= np.mean(np.array(null) <= 0.01) <= 0.02  # 20 expected (binomial sd 4.4)
    found = [
        inference.interaction(_interacting(rng, arms, seeds, 0.2, 10))[1] <= 0.01
        for _ in range(tables)
    ]
    assert np.mean(found) >= 0.15, np.mean(found)  # 24.6% expected (binomial sd 1.0%)
    assert inference.interaction(np.ones((arms, seeds))) is None
    assert inference.interaction(rng.normal(size=(arms, 2))) is None  # one residual direction
    # additive but for rounding (probe accuracies that differ by the same item on every seed):
    # residuals of 1e-17 are no variation, not an interaction with p = 5e-05
    additive = np.array([[-0.05, -0.0389, -0.0389], [-0.05, -0.0389, -0.0389]] * 2)
    additive[2:] += 0.0333
    assert inference.interaction(additive) is None


def test_a_seed_interaction_is_named_in_the_report_with_its_consequence(seed, tmp_path):
    """The report's note (analysis.seed_interaction) on a table whose arms respond to the seeds
    by factors 0.2 to 1.8: named, with what it means for the plan's variance rule; an additive
    table with the same seed effects: not named."""
    from prefix_titan.sweep.configs import arm_specs

    specs = arm_specs()
    rng = np.random.default_rng(seed)
    z = 20 * rng.normal(size=(1, 5))
    factors = np.linspace(0.2, 1.8, len(specs))[:, None]
    interacting = 0.5 + 0.01 * (rng.normal(size=(len(specs), 5)) + factors * z)
    additive = 0.5 + 0.01 * (rng.normal(size=(len(specs), 5)) + z)
    for rule, words in (("pooled", "may claim more often"), ("baseline_apart", "held about")):
        plan = _one_family_plan(tmp_path, "hellaswag", [], variance=rule)
        notes = analyse(_records({"hellaswag": interacting}, specs), plan).notes
        said = [n for n in notes if "respond to the seed by unequal amounts" in n]
        assert len(said) == 1 and said[0].startswith("hellaswag: ") and words in said[0], notes
        notes = analyse(_records({"hellaswag": additive}, specs), plan).notes
        assert not any("respond to the seed" in n for n in notes), notes


@pytest.mark.slow
def test_under_a_seed_interaction_the_pooled_rule_claims_above_alpha_and_baseline_apart_not(seed):
    """The departure the screen above looks for, measured: under the null, arms responding to a
    seed effect 3 run sds large by factors uniform in 0.5-1.5 (one primary and 8 exploratory
    metrics, 12 arms against the baseline). The pooled rule counts the interaction as noise with
    (A - 1)(S - 1) degrees of freedom and claims above alpha (6.5-8.1% at four test seeds);
    baseline_apart stays at most alpha (0.8-1.2%; 3.6-4.5% with half of Satterthwaite's degrees of
    freedom kept, the former rule). 2,000 sweeps."""
    rng = np.random.default_rng(seed)
    arms, seeds, sweeps = 13, 3, 2000
    explored = [f"e{i}" for i in range(8)]
    false = {"pooled": 0, "baseline_apart": 0}
    for _ in range(sweeps):
        y = {m: _interacting(rng, arms, seeds, 0.5, 3) for m in ["p", *explored]}
        for rule in false:
            false[rule] += bool(_family_claims(y, "p", explored, rule))
    rates = {k: v / sweeps for k, v in false.items()}
    print(f"rank-one seed x arm interaction: false claims {rates}")
    assert rates["baseline_apart"] <= ALPHA + 2.33 * math.sqrt(ALPHA * (1 - ALPHA) / sweeps)
    assert rates["pooled"] > ALPHA, rates


def _planted_claims(plan, specs, sd: float, effect: float, sweeps: int, seed: int) -> int:
    """In how many of `sweeps` simulated 3-seed sweeps of hellaswag (run-level sd `sd`, a seed
    effect shared by the arms) the plan claims prefix_tau0.5 better, planted `effect` above the
    others."""
    arm = [s.arm_name() for s in specs].index("prefix_tau0.5")
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(sweeps):
        y = 0.5 + sd * rng.normal(size=(len(specs), 3)) + 0.02 * rng.normal(size=(1, 3))
        y[arm] += effect
        claims = analyse(_records({"hellaswag": y}, specs), plan).claims
        hits += any(c.arm == "prefix_tau0.5" and c.direction == "better" for c in claims)
    return hits


@pytest.mark.slow
def test_an_effect_of_the_predicted_detectable_size_is_claimed_with_the_predicted_power(
    seed, tmp_path
):
    """The power module's promise checked with the report's own decision code: one arm better by
    exactly inference.detectable (80% power, 3 seeds, 12 compared) in an exact two-way model is
    claimed in 72-88% of 400 sweeps (a planted effect 8x the noise, as in the test above, is
    claimed always and could not show a wrong power calculation)."""
    from prefix_titan.sweep.configs import arm_specs

    plan = _one_family_plan(tmp_path, "hellaswag", [])
    specs = arm_specs()
    sd = 0.01
    d = inference.detectable(sd, 3, len(specs), 12, ALPHA)
    sweeps = 400
    hits = _planted_claims(plan, specs, sd, d, sweeps, seed)
    print(f"effect {d:.4f} (detectable at 80%): claimed {sim.rate(hits, sweeps)}")
    assert 0.72 <= hits / sweeps <= 0.88


@pytest.mark.slow
def test_the_baseline_apart_rule_has_the_power_it_claims_and_names_its_cost(seed, tmp_path):
    """A plan with variance = baseline_apart, through the report's own decision code: an effect
    of the size inference.detectable gives for that rule is claimed in 72-88% of 400 sweeps;
    the size is larger than the pooled rule's (its price: 6.8 sd against 3.3 at 3 seeds), and
    the report's plan says which rule it applies."""
    from prefix_titan.sweep.analysis import plan_text
    from prefix_titan.sweep.configs import arm_specs

    plan = _one_family_plan(tmp_path, "hellaswag", [], variance="baseline_apart")
    assert "the baseline's residual variance apart" in " ".join(plan_text(plan))
    specs = arm_specs()
    sd = 0.01
    d = inference.detectable(sd, 3, len(specs), 12, ALPHA, variance="baseline_apart")
    assert d > 1.3 * inference.detectable(sd, 3, len(specs), 12, ALPHA)
    sweeps = 400
    hits = _planted_claims(plan, specs, sd, d, sweeps, seed)
    print(f"baseline_apart: effect {d:.4f} (detectable at 80%): claimed {sim.rate(hits, sweeps)}")
    assert 0.72 <= hits / sweeps <= 0.88


def test_the_composite_reads_the_embedding_letters_above_their_own_chance():
    """Clustered vectors lift a letters macro-F1 with no information in it: the composite
    measures the F1 above the probe's own predictions dealt at random (version 2), not above
    the shuffled-label control, which version 1 only had."""
    from prefix_titan.sweep.metrics import CHANCE, CHAR_PROBES, _composite

    probe = {
        "input_letters,none": 0.5,
        "input_letters_shuffled_labels,none": 0.1,
        "input_letters_predictions_permuted,none": 0.5,
    }
    step = {
        "results": {**{t: {"acc,none": CHANCE[t]} for t in CHAR_PROBES}, EMBEDDING_PROBE: probe}
    }
    assert _composite(step) == pytest.approx(0.0)
    del probe["input_letters_predictions_permuted,none"]
    assert _composite(step) == pytest.approx((0.5 - 0.1) / 0.9 / (len(CHAR_PROBES) + 1))


def test_the_char_composite_default_counts_the_fewest_items_each_probe_may_have():
    """char_count's word list may hold only a fifth of the items asked for and char_last_letter's
    two fifths (build_probes accepts that), so the published default takes each probe at its
    fewest accepted items, not all at n."""
    from prefix_titan.evaluation.probes import fewest_items
    from prefix_titan.sweep.metrics import CHANCE, CHAR_PROBES
    from prefix_titan.sweep.power import PROBE_ABOVE_CHANCE, defaults

    def composite(items):
        parts = [
            math.sqrt((CHANCE[t] + PROBE_ABOVE_CHANCE) * (1 - CHANCE[t] - PROBE_ABOVE_CHANCE) / k)
            / (1 - CHANCE[t])
            for t, k in items.items()
        ]
        return math.sqrt(sum(x * x for x in parts)) / len(parts)

    got = defaults(2000)["char composite"]
    assert fewest_items("char_count", 2000) == 400 and fewest_items("char_spell", 2001) == 2001
    assert fewest_items("char_last_letter", 2000) == 800
    at_least = {t: {"char_count": 400, "char_last_letter": 800}.get(t, 2000) for t in CHAR_PROBES}
    assert got.sd == pytest.approx(composite(at_least), rel=1e-12)
    assert got.sd > composite(dict.fromkeys(CHAR_PROBES, 2000))
    assert "4 probes x 2,000 items (char_last_letter 800, char_count 400)" in got.source


def test_the_plans_variance_rule_is_checked_and_printed(tmp_path):
    from prefix_titan.sweep.analysis import PLAN, plan_text

    assert load_plan().variance == "baseline_apart"
    assert "the baseline's residual variance apart from the" in " ".join(plan_text(load_plan()))
    path = tmp_path / "plan.toml"
    path.write_text(
        open(PLAN).read().replace('\nvariance = "baseline_apart"\n', '\nvariance = "welch"\n', 1)
    )
    with pytest.raises(ValueError, match=r"variance must be pooled or baseline_apart; got 'welch'"):
        load_plan(str(path))


@pytest.mark.parametrize(
    "case,seeds,pooled_at_least",
    [
        ("noisy end", 3, 0.1),
        pytest.param("noisy end", 5, 0.1, marks=pytest.mark.slow),  # (the fast tier: one each)
        ("seed pull along the axis", 3, 0.2),
    ],
)
def test_the_trend_test_holds_its_level_where_the_pooled_one_breaks(
    seed, tmp_path, case, seeds, pooled_at_least
):
    """Null sweeps (no arm differs) where the pooled trend's assumptions fail: the axis's last
    arm 3x as noisy (pooled p <= 0.05 in 21% / 20% of sweeps at 3 / 5 seeds), or each arm pulled
    by the seed's effect (3 run sds) by a factor rising from 0.5 to 1.5 along log tau (37%): the
    trend's own test, per seed, at 5% (20,000 sweeps per cell, an independent simulation). The
    report's own decision code (analyse) on the 14 arms."""
    from prefix_titan.sweep.configs import arm_specs

    plan = _one_family_plan(tmp_path, "hellaswag", [])
    specs = arm_specs()
    names = [s.arm_name() for s in specs]
    noisy = names.index("prefix_tau2.0")
    log_tau = np.array([math.log(s.tau) for s in specs])
    prefix = np.array([n.startswith("prefix_tau") for n in names])
    pull = np.ones(len(specs))
    pull[prefix] = 0.5 + (log_tau[prefix] - log_tau.min()) / np.ptp(log_tau[prefix])
    rng = np.random.default_rng(seed)

    def rates(slope: float, sweeps: int, case: str) -> tuple[float, float]:
        pooled = own = 0
        for _ in range(sweeps):
            shared = 3 * rng.normal(size=(1, seeds))
            sd = np.ones((len(specs), 1))
            if case == "noisy end":
                sd[noisy] = 3
            factor = pull[:, None] if case == "seed pull along the axis" else 1.0
            y = 0.5 + 0.01 * (sd * rng.normal(size=(len(specs), seeds)) + factor * shared)
            y[prefix] += 0.01 * slope * (log_tau[prefix] - log_tau[prefix].mean())[:, None]
            analysis = analyse(_records({"hellaswag": y}, specs), plan)
            (t,) = [t for t in analysis.trends if t["kind"] == "prefix"]
            pooled += t["pooled"]["p"] <= 0.05
            own += t["p"] <= 0.05
        return pooled / sweeps, own / sweeps

    pooled, own = rates(0.0, 300, case)
    assert pooled >= pooled_at_least and own <= 0.085, (pooled, own)
    if case == "noisy end" and seeds == 3:  # a slope of 1 run sd per unit of log tau, equal sds
        pooled, own = rates(1.0, 100, "equal")
        assert own >= 0.6 and pooled >= 0.95, (pooled, own)  # 78% and 99.9% (20,000 sweeps)


def test_the_simulator_refuses_an_effect_below_chance():
    """A shift that would take a task below guessing (WinoGrande from 0.515 down 2 points) was
    clamped at -20 logits and made its bits per byte explode; it is refused, naming the task."""
    sweep = sim.Sweep(tasks=TASKS, effects=(("prefix_tau0.5", "downstream", -0.02),), items=50)
    with pytest.raises(ValueError) as e:
        sim.simulate(sweep, seed=0)
    assert str(e.value).startswith(
        "--effect prefix_tau0.5: winogrande_debiased: an effect of -0.02"
    )
    assert "a model guessing among its 2 choices scores 0.5" in str(e.value)


# -- calibration by the blank twins ---------------------------------------------------------------


def _choice_model(rng, n, k, beta, delta=1.5):
    """Probe items scored by a model of choices: a fixed preference among them (scaled by beta,
    as an objective that flattens the output distribution scales it), the word's evidence for
    the gold (delta) and noise; the blank twin has the preference and noise only."""
    gold = np.arange(n) % k  # balanced gold positions, as the probes' are
    prefer = rng.normal(0, 2.0, size=k)  # one preference over the choice slots for every item
    noise = rng.normal(0, 1.0, size=(n, k))
    task = beta * prefer + delta * (np.arange(k) == gold[:, None]) + noise
    blank = beta * prefer + noise * 0.3 + rng.normal(0, 0.1, size=(n, k))

    def rows(ll):
        return [
            {"doc_id": i, "gold": int(gold[i]), "logliks": list(map(float, ll[i]))}
            for i in range(n)
        ]

    return rows(task), rows(blank)


def test_calibration_by_the_blank_twin_removes_a_change_of_prior(seed):
    """The same knowledge of the word (delta) under a strong and a flattened prior: the plain
    accuracy rises as the prior flattens, the blanks stay at chance (balanced items: the twins'
    accuracies cannot see the prior), and the accuracy calibrated item by item does not move."""
    from prefix_titan.evaluation.harness import calibrated_accuracy

    rng = np.random.default_rng(seed)
    n, k = 4000, 4
    plain, calibrated, blanks = {}, {}, {}
    for beta in (1.0, 0.2):
        task, blank = _choice_model(np.random.default_rng(rng.integers(1 << 32)), n, k, beta)
        argmax = lambda rows: np.mean(
            [r["logliks"].index(max(r["logliks"])) == r["gold"] for r in rows]
        )  # noqa: E731
        plain[beta], blanks[beta] = argmax(task), argmax(blank)
        calibrated[beta] = calibrated_accuracy(task, blank)
    assert plain[0.2] - plain[1.0] > 0.1, plain
    assert all(abs(b - 1 / k) < 0.03 for b in blanks.values()), blanks
    assert abs(calibrated[0.2] - calibrated[1.0]) < 0.03, calibrated


def test_calibration_reads_the_twin_item_by_item_and_refuses_items_that_are_not_twins():
    from prefix_titan.evaluation.harness import calibrated_accuracy

    ties = [{"doc_id": i, "gold": i % 2, "logliks": [-1.0, -1.0]} for i in range(6)]
    assert calibrated_accuracy(ties, [dict(r) for r in ties]) == 0.5  # the first, as lm-eval
    task = [{"doc_id": i, "gold": 1, "logliks": [-1.0, -2.0]} for i in range(6)]  # plain: wrong
    favoured = [{**r, "logliks": [-1.0, -3.0]} for r in task]  # the prior favours choice 0 more
    assert calibrated_accuracy(task, favoured) == 1.0  # the word moved choice 1 up: right
    assert calibrated_accuracy(task, favoured[::-1]) == 1.0  # twins are found by doc_id
    assert calibrated_accuracy(task, favoured[:5]) is None  # a twin missing: not calibrated
    assert calibrated_accuracy(task, [{**r, "logliks": None} for r in task]) is None
    other = [{**r, "gold": 1 - r["gold"]} for r in task]
    with pytest.raises(ValueError, match="not the same item"):
        calibrated_accuracy(task, other)


def test_a_simulated_sweep_written_as_folders_reads_back_its_calibrated_probes(tmp_path, seed):
    """sim.write gives the probes and their twins every choice's log-likelihood so that load_run
    finds, from the files, the calibrated accuracies the simulation drew (with a change of prior
    planted: the plain accuracy and the calibrated one differ)."""
    arm = "prefix_tau0.5"
    sweep = sim.Sweep(
        arms=tuple(s for s in sim.Sweep().arms if s.arm_name() in ("ce", arm)),
        items=200,
        seeds=(1,),
        tasks=(*TASKS, *CHAR_BLANKS),
        effects=((arm, sim.PRIOR, 0.1),),
        embedding_probe=False,
    )
    runs = sim.simulate(sweep, seed=seed)
    sim.write(runs, str(tmp_path))
    loaded = {r["name"]: r for r in find_runs(str(tmp_path))}
    for run in runs:
        for step, e in run["steps"].items():
            read = loaded[run["name"]]["steps"][step]["calibrated"]
            assert read == pytest.approx(e["calibrated"], abs=1e-12)
            assert set(read) == {t[: -len("_blank")] for t in CHAR_BLANKS}
    prior = next(r for r in runs if r["name"] == arm)["steps"][3600]
    plain = np.mean([prior["results"][t]["acc,none"] for t in prior["calibrated"]])
    assert plain - np.mean(list(prior["calibrated"].values())) > 0.05, plain


@pytest.mark.parametrize(
    "arms, seeds, rule",
    [(2, 5, "fit"), (3, 1, "fit"), (3, 2, "per_seed"), (3, 3, "apart"), (5, 4, "apart")],
)
def test_apart_used_is_the_apart_versus_apart_computes_for_the_table(arms, seeds, rule, seed):
    """The rule versus_apart follows is inference's alone: apart_used gives the apart() it uses
    for every arm of a table (None where it uses none), and the tests are the same with it
    passed in as without."""
    y = np.random.default_rng(seed).normal(size=(arms, seeds))
    assert inference.apart_rule(arms, seeds) == rule
    v = inference.apart_used(y, 1)
    if rule == "apart":
        assert v == inference.apart(y, 1)
    else:
        assert v is None
    for arm in (0, 2):
        if arm < arms:
            assert inference.versus_apart(y, arm, 1, v=v) == inference.versus_apart(y, arm, 1)


def test_the_simulators_softplus_is_numpys_logaddexp_to_its_last_bits(seed):
    """The simulated gold log-likelihoods are the draws np.logaddexp(0, m) gives, to 2 units in
    the last place (bit for bit with the numpy releases installed before; 2.4.6's differ by up to 2 ulp)."""
    m = np.random.default_rng(seed).normal(size=200_000) * np.geomspace(1e-3, 300, 200_000)
    m = np.concatenate([m, [0.0, -0.0, 700.0, -700.0, 1e-300]])
    np.testing.assert_array_max_ulp(sim._softplus(m), np.logaddexp(0, m), maxulp=2)


@pytest.mark.slow  # (the power command takes 5-10 s here)
def test_power_at_the_smoke_scale_says_how_smoke_sweeps_are_evaluated(capsys, in_project):
    """A smoke sweep is evaluated on --limit 50 (docs/cpu.md); power's rows assume 2,000 probe
    items unless --probe-items says otherwise: said, with the flag that plans it."""
    from prefix_titan.power import main as power

    power(["--scale", "smoke", "--seeds", "3"])
    assert (
        "a smoke sweep is evaluated with `eval --tasks char_probes embedding_probe --limit 50`"
        in (capsys.readouterr().out)
    )
    power(["--scale", "smoke", "--seeds", "3", "--probe-items", "50"])
    assert "--probe-items 50 plans that" not in capsys.readouterr().out
