"""What a sweep report says of runs that cannot all be compared alike: a run whose validation
diverged (a value not finite), a run with a shorter validation log, runs evaluated at steps of
which only the last few agree. Small simulated sweeps (prefix_titan.sweep.simulate)."""

import math

import pytest

from prefix_titan.evaluation.harness import DEFAULT_TASKS, SECONDARY_TASKS
from prefix_titan.evaluation.probes import PROBE_TASKS
from prefix_titan.sweep import simulate as sim
from prefix_titan.sweep.analysis import analyse, load_plan

PLAN = load_plan()
TASKS = (*DEFAULT_TASKS, *SECONDARY_TASKS, *PROBE_TASKS)
ARM = "prefix_tau0.5"


def _runs(seed: int = 3, **kwargs) -> list[dict]:
    sweep = sim.Sweep(tasks=TASKS, effects=((ARM, "char", 0.15),), items=200, **kwargs)
    return sim.simulate(sweep, seed=seed)


def _run(runs: list[dict], arm: str, seed: int) -> dict:
    return next(r for r in runs if r["name"] == arm and r["seed"] == seed)


def test_a_diverged_runs_arm_is_named_where_it_is_not_compared():
    """A run whose last validation rows hold a val CE that is not finite: its arm is not compared
    on val CE, and the answer's cost part, the notes and Analysis.not_finite say which seed and
    why (it read "val CE not compared", the arm gone from the comparison without a word)."""
    runs = _runs()
    clean = analyse(sim.group(runs), PLAN)
    assert clean.answer.startswith(f"Yes, on char composite: {ARM} ("), clean.answer
    compared = {c.arm for c in clean.primary_comparisons("validation CE")}
    assert ARM in compared
    for row in _run(runs, ARM, 2)["validation"].values():
        if "validation_plain_ce" in row:
            row["validation_plain_ce"] = math.nan
    a = analyse(sim.group(runs), PLAN)
    assert a.not_finite["val CE"] == {ARM: [2]}
    assert f"{ARM}: " in a.answer and "val CE not compared: seed 2's is not finite (diverged?)" in (
        a.answer
    ), a.answer
    rows = a.primary_comparisons("validation CE")
    assert {c.arm for c in rows} == compared - {ARM}
    said = next(n for n in a.notes if n.startswith("validation CE: not compared on val CE: "))
    assert f"{ARM} (seed 2's is not finite (diverged?))" in said, said
    assert f"alpha is split over the {len(rows)} arms compared" in said, said
    assert "the trend along tau is fitted without it" in said, said
    assert not any(ARM in t["arms"] for t in a.trends if t["metric"] == "val CE")
    # the per-arm mean is over the seeds left, which the table's "(n=K)" counts
    assert sorted(a.tables["val CE"][ARM]) == [1, 3]
    assert any(f"val CE is not finite for {ARM} seed 2" in n for n in a.notes)
    from prefix_titan.sweep.report import primary_table, targets_table

    family = next(f for f in PLAN.families if f.name == "validation CE")
    table = primary_table(a, family)
    assert f"| {ARM} | not compared: seed 2's is not finite (diverged?) | - | - |" in table, table
    (row,) = [r for r in targets_table(a).splitlines() if r.startswith(f"| {ARM} |")]
    assert "(n=2)" in row, row
    # the Power section's share is the family's split over the arms compared, as the test's
    # (it counted every arm of the contrast: alpha/12 where the family tested at alpha/11)
    from prefix_titan.sweep.report import power_json, power_lines

    power = power_json(a)["metrics"]
    assert power["val CE"]["alpha_divisor"] == len(rows) == len(compared) - 1
    assert power["char composite"]["alpha_divisor"] == len(compared)
    (line,) = [p for p in power_lines(a) if p.startswith("- val CE:")]
    assert f"at alpha/{len(rows)};" in line, line


def test_a_diverged_baseline_is_named_as_the_reason_nothing_is_compared():
    runs = _runs()
    for row in _run(runs, PLAN.baseline, 3)["validation"].values():
        if "validation_plain_ce" in row:
            row["validation_plain_ce"] = math.inf
    a = analyse(sim.group(runs), PLAN)
    assert not a.primary_comparisons("validation CE")
    assert (
        f"validation CE: val CE of {PLAN.baseline}, the baseline: seed 3's is not finite "
        "(diverged?): nothing compared" in a.notes
    ), a.notes
    assert f"val CE not compared: {PLAN.baseline}'s seed 3's is not finite" in a.answer, a.answer


def test_a_shorter_validation_log_is_refused_naming_the_run():
    """One run's validation rows after step 3000 lost: refused, naming that run with its last
    validation step beside what the others share, and the way out (every validation metric of
    every run was left out, with a note only)."""
    runs = _runs(seeds=(1, 2))
    short = _run(runs, ARM, 2)
    short["validation"] = {s: v for s, v in short["validation"].items() if s <= 3000}
    with pytest.raises(ValueError, match="validated at different steps") as e:
        analyse(sim.group(runs), PLAN)
    said = str(e.value)
    assert "27 of the 28 validated runs: steps 3000, 3300, 3600 (last validation step 3600)" in (
        said
    ), said
    assert f"{short['folder']}: steps 2400, 2700, 3000 (last validation step 3000)" in said, said
    assert "train every run with the same training.steps and validation.freq" in said
    assert "--checkpoints" not in said  # no last rows agree
    assert "(--seeds 1: an exploratory report" not in said and "(--seeds)" in said
    # with a third seed, the seeds the odd run leaves are named
    runs = _runs(seeds=(1, 2, 3))
    short = _run(runs, ARM, 2)
    short["validation"] = {s: v for s, v in short["validation"].items() if s <= 3000}
    with pytest.raises(ValueError, match="validated at different steps") as e:
        analyse(sim.group(runs), PLAN)
    assert "whose rows differ (--seeds 1 3: an exploratory report, a seed left out after" in str(
        e.value
    )


def test_a_shorter_validation_log_is_no_refusal_where_the_plan_compares_no_validation_metric():
    """A plan of the downstream family alone compares no validation metric: a run's shorter
    validation log leaves those metrics out of the per-arm table with a note, and the plan's
    comparisons run (it refused the whole analysis)."""
    import dataclasses

    plan = dataclasses.replace(
        PLAN, families=tuple(f for f in PLAN.families if f.name == "downstream")
    )
    runs = _runs(seeds=(1, 2, 3))
    short = _run(runs, ARM, 2)
    short["validation"] = {s: v for s, v in short["validation"].items() if s <= 3000}
    a = analyse(sim.group(runs), plan)
    assert a.primary_comparisons("downstream") and a.tables["val CE"] == {arm: {} for arm in a.arms}
    assert any("val CE" in n and "at different steps" in n for n in a.notes), a.notes


def test_a_validation_log_short_of_one_early_row_is_offered_the_checkpoints_that_agree():
    runs = _runs(seeds=(1, 2))
    gap = _run(runs, "ce", 1)
    del gap["validation"][3000]
    with pytest.raises(ValueError, match="validated at different steps") as e:
        analyse(sim.group(runs), PLAN)
    said = str(e.value)
    assert f"{gap['folder']}: steps 2700, 3300, 3600" in said, said
    assert "or pass --checkpoints 2 (to report or power --from): the last 2 rows agree" in said
    a = analyse(sim.group(runs), PLAN, last=2)
    assert a.comparisons and "val CE" not in a.unaligned


def test_evaluations_whose_last_two_steps_agree_are_offered_checkpoints_2():
    """One run not evaluated at its first of 3 checkpoints (another step there): the refusal
    offers the largest --checkpoints that the runs' last steps agree on, not always 1."""
    runs = _runs(seeds=(1, 2))
    odd = _run(runs, "ce", 2)
    odd["steps"][1000] = odd["steps"].pop(1200)
    with pytest.raises(ValueError, match="evaluated at different steps") as e:
        analyse(sim.group(runs), PLAN)
    said = str(e.value)
    assert "or pass --checkpoints 2 (to report or power --from): the last 2 steps agree" in said
    assert "--checkpoints 1" not in said
    assert analyse(sim.group(runs), PLAN, last=2).steps == [2400, 3600]
