"""Metrics a run measures on its own target table (`val support mass`): compared by the report's
decision code (analysis.analyse) only between arms trained towards the same table, shown per arm
otherwise; the 'targets imply' column beside validation CE alone; a metric no run holds said to
be held by none; the simulator's implied CE given apart from its gold mass."""

import math

import numpy as np
import pytest

from prefix_titan.objectives.spec import ObjectiveSpec
from prefix_titan.sweep import report as report_module
from prefix_titan.sweep import simulate as sim
from prefix_titan.sweep.analysis import analyse, load_plan
from prefix_titan.sweep.metrics import OWN_TABLE

SWEEP_TASKS = ("hellaswag",)
"""The simulated sweeps' one evaluated task (the tests read validation metrics)"""


def _plan(tmp_path, primary, exploratory=(), baseline="ce", contrast=("label_smoothing",)):
    path = tmp_path / "plan.toml"
    path.write_text(
        f'question = "Q"\nalpha = 0.05\nbaseline = "{baseline}"\ncheckpoints = 1\n'
        f'variance = "pooled"\ncontrast = {list(contrast)!r}\n[[family]]\nname = "f"\n'.replace(
            "'", '"'
        )
        + f'primary = "{primary}"\nexploratory = {list(exploratory)!r}\n'.replace("'", '"')
    )
    return path


def _registered(path):
    """The plan as a sweep's registered copy (read as registered, whatever the rules since)."""
    path.write_text("# The analysis plan registered by `sweep launch` from x\n" + path.read_text())
    return str(path)


def _sweep(arms, mass: dict[str, float], tables: dict[str, str], seed: int) -> dict:
    """{arm: {seed: run}} of a simulated sweep of `arms` whose validation rows hold `mass[arm]`
    (plus a little noise) as val support mass, each run recording `tables[arm]` as its target
    table: an arm far above the baseline on it, were it compared."""
    rng = np.random.default_rng(seed)
    sweep = sim.Sweep(arms=tuple(arms), tasks=SWEEP_TASKS, items=20)
    runs = sim.simulate(sweep, seed=seed)
    for r in runs:
        r["config"]["target_table"] = tables[r["name"]]
        for row in r["validation"].values():
            noise = 0.0 if mass[r["name"]] == 0 else rng.normal(0, 1e-5)
            row["validation_support_mass"] = mass[r["name"]] + noise
    return sim.group(runs)


CE = ObjectiveSpec(name="ce")
SMOOTHING = ObjectiveSpec(name="label_smoothing")
PREFIX = ObjectiveSpec(name="prefix", tau=0.5)
PREFIX_GAMMA = ObjectiveSpec(name="prefix", tau=0.5, position_gamma=0.99)
PREFIX_1_GAMMA = ObjectiveSpec(name="prefix", tau=1.0, position_gamma=0.99)


def test_support_mass_is_measured_on_each_runs_own_table():
    assert OWN_TABLE == {"val support mass"}


def test_a_plan_with_support_mass_its_primary_against_ce_is_refused(tmp_path):
    """ce's table holds the gold alone: its support mass is 0 by construction, and an arm's
    difference from it one of tables. The plan is refused where it is written; a sweep's
    registered copy is read as registered."""
    path = _plan(tmp_path, "val support mass")
    with pytest.raises(ValueError) as e:
        load_plan(str(path))
    said = str(e.value)
    assert "family 'f' names 'val support mass' its primary against the baseline 'ce'" in said
    assert "Name it as exploratory" in said
    assert load_plan(_registered(path)).families[0].primary == "val support mass"
    # as exploratory against ce, or as primary against another baseline: accepted
    load_plan(str(_plan(tmp_path, "val CE", ["val support mass"])))
    load_plan(str(_plan(tmp_path, "val support mass", baseline="prefix_tau0.5", contrast=["ce"])))
    # label smoothing's table holds the gold alone too (its uniform part is no entry): refused
    with pytest.raises(ValueError, match="against the baseline 'label_smoothing'"):
        load_plan(str(_plan(tmp_path, "val support mass", baseline="label_smoothing")))


def test_support_mass_against_another_table_is_not_claimed(seed, tmp_path):
    """The false claim it made: an arm's support mass (probability on its own table's other
    entries) above ce's 0 was claimed as better than ce. Across tables the report compares
    nothing on it and says why, in the answer and the notes; the per-arm table shows it."""
    runs = _sweep(
        (CE, SMOOTHING),
        {"ce": 0.0, "label_smoothing": 0.002},
        {"ce": "a", "label_smoothing": "b"},
        seed,
    )
    plan = load_plan(_registered(_plan(tmp_path, "val support mass")))
    a = analyse(runs, plan)
    assert not [c for c in a.comparisons if c.metric == "val support mass"]
    assert not a.claims
    assert a.answer.startswith(
        "No claim: val support mass is measured by each run on its own target table"
    ), a.answer
    assert "label_smoothing trained towards another table than ce's" in a.answer
    assert any(
        n.startswith("f: val support mass is measured") and n.endswith("nothing claimed")
        for n in a.notes
    ), a.notes
    assert report_module.claim_lines(a) == ["No claims."]
    assert report_module.primary_table(a, plan.families[0]) == "Nothing compared (see the notes)."


def test_exploratory_support_mass_across_tables_is_shown_per_arm_not_tested(seed, tmp_path):
    runs = _sweep(
        (CE, SMOOTHING),
        {"ce": 0.0, "label_smoothing": 0.002},
        {"ce": "a", "label_smoothing": "b"},
        seed,
    )
    a = analyse(runs, load_plan(str(_plan(tmp_path, "val CE", ["val support mass"]))))
    assert not [c for c in a.comparisons if c.metric == "val support mass"]
    assert a.table_apart == {"val support mass": ["label_smoothing"]}
    assert any("not compared, shown per arm (descriptive)" in n for n in a.notes), a.notes
    names = report_module._summary_names(a)
    assert "val support mass" in names
    assert "| label_smoothing | " in report_module.summary_table(a, names)
    assert report_module.exploratory_table(a, a.plan.families[0]) == ""


def test_support_mass_on_the_same_table_is_compared(seed, tmp_path):
    """Arms that differ in their token weighting alone train towards the same table: compared
    on it (and the planted difference claimed); an arm of another table of the same kind is not."""
    arms = (PREFIX, PREFIX_GAMMA, PREFIX_1_GAMMA)
    names = [s.arm_name() for s in arms]
    runs = _sweep(arms, dict(zip(names, (0.01, 0.02, 0.03))), dict(zip(names, "aab")), seed)
    plan = _plan(tmp_path, "val support mass", baseline=names[0], contrast=["prefix_gamma0.99"])
    a = analyse(runs, load_plan(str(plan)))
    primary = a.primary_comparisons("f")
    assert [c.arm for c in primary] == [names[1]]
    assert primary[0].claimed and primary[0].direction == "better"
    assert a.table_apart == {"val support mass": [names[2]]}
    assert f"Not compared, trained towards another target table than {names[0]}'s" in a.answer
    # no recorded table (runs from before the record): never compared
    for by_seed in runs.values():
        for r in by_seed.values():
            del r["config"]["target_table"]
    a = analyse(runs, load_plan(str(plan)))
    assert not a.primary_comparisons("f") and a.answer.startswith("No claim: val support mass")


@pytest.mark.parametrize("primary, column", [("val CE", True), ("val top1", False)])
def test_the_targets_imply_column_is_beside_validation_ce_alone(primary, column, seed, tmp_path):
    """A difference in CE (nats) beside val top1 (or ECE, Brier, support mass) is not a part of
    it: the column is shown for val CE alone."""
    sweep = sim.Sweep(arms=(CE, SMOOTHING), tasks=SWEEP_TASKS, items=20, construction_cost=True)
    runs = sim.group(sim.simulate(sweep, seed=seed))
    contrast = ["label_smoothing"]
    a = analyse(runs, load_plan(str(_plan(tmp_path, primary, contrast=contrast))))
    table = report_module.primary_table(a, a.plan.families[0])
    assert ("targets imply" in table) == column, table
    if column:
        implied = -math.log(sim.GOLD_MASS["label_smoothing"])
        assert f"+{implied:.4f} |" in table.splitlines()[2]


def test_an_exploratory_metric_no_simulated_run_holds_is_said_unsimulated(seed, tmp_path):
    sweep = sim.Sweep(arms=(CE, SMOOTHING), tasks=SWEEP_TASKS, items=20)
    runs = sim.group(sim.simulate(sweep, seed=seed))
    a = analyse(runs, load_plan(str(_plan(tmp_path, "val top1", ["val support mass", "val ECE"]))))
    assert a.simulated
    assert (
        "f: exploratory val support mass not compared: no run of the sweep holds it (the "
        "simulator does not simulate it)"
    ) in a.notes
    assert not any("not available for every run" in n for n in a.notes), a.notes


def test_the_simulators_implied_ce_is_given_apart_from_its_gold_mass(seed):
    """Without one the simulated implied CE is -log of the mean gold mass; given (the runs' own
    mean of -log), it is written and costs the validation CE that; below -log of the mass it is
    refused, and so is one of no arm."""
    own = "label_smoothing"
    plain = sim.Sweep(arms=(CE, SMOOTHING), tasks=SWEEP_TASKS, items=20, construction_cost=True)

    def implied(sweep):
        rows = [r for r in sim.simulate(sweep, seed=seed) if r["name"] == own]
        return {v["validation_implied_ce"] for r in rows for v in r["validation"].values()}

    assert list(implied(plain)) == [pytest.approx(-math.log(0.9))]
    given = sim.Sweep(**{**vars(plain), "implied_ce": ((own, 0.2),)})
    assert implied(given) == {0.2}
    ce_plain = [r for r in sim.simulate(plain, seed=seed) if r["name"] == own]
    ce_given = [r for r in sim.simulate(given, seed=seed) if r["name"] == own]
    for p, g in zip(ce_plain, ce_given):
        for step, row in p["validation"].items():
            gap = g["validation"][step]["validation_plain_ce"] - row["validation_plain_ce"]
            assert gap == pytest.approx(0.2 + math.log(0.9))
    with pytest.raises(ValueError, match="is below -log of its mean gold mass"):
        sim.simulate(sim.Sweep(**{**vars(plain), "implied_ce": ((own, 0.05),)}), seed=seed)
    with pytest.raises(ValueError, match="implied CE of 'nope': no such arm"):
        sim.simulate(sim.Sweep(**{**vars(plain), "implied_ce": (("nope", 0.2),)}), seed=seed)
