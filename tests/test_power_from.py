"""`power --from` on a sweep that is not whole (a run missing, cut short, or one seed only) and
the ways out a refused sweep's report names: each seed measured or left out is said, and no way
out leads to an analysis that cannot compare."""

import math
import shutil

import pytest

from prefix_titan.evaluation.harness import DEFAULT_TASKS, SECONDARY_TASKS
from prefix_titan.evaluation.probes import PROBE_TASKS
from prefix_titan.objectives import ObjectiveSpec
from prefix_titan.sweep import simulate as sim
from prefix_titan.sweep.analysis import analyse, load_plan
from prefix_titan.sweep.runs import find_runs, group_arms, unpaired

PLAN = load_plan()
NAMES = ["char composite", "val CE"]
ARMS = (
    ObjectiveSpec("ce"),
    ObjectiveSpec("label_smoothing"),
    ObjectiveSpec("prefix", tau=0.5),
)
TASKS = (*DEFAULT_TASKS, *SECONDARY_TASKS, *PROBE_TASKS)


@pytest.fixture(scope="module")
def three_seeds(module_tmp):
    """A simulated sweep of 3 arms x 3 seeds (1, 2, 3), 30 items a task."""
    runs = sim.simulate(sim.Sweep(arms=ARMS, items=30, tasks=TASKS), seed=4)
    sim.write(runs, str(module_tmp / "sweep"))
    return module_tmp / "sweep"


@pytest.fixture
def sweep(three_seeds, tmp_path):
    """A copy of the sweep, the test's to change."""
    return shutil.copytree(three_seeds, tmp_path / "sweep")


def _sd(folder, seeds, name):
    runs = [r for r in find_runs(str(folder)) if r["seed"] in seeds]
    return math.sqrt(analyse(group_arms(runs), PLAN).fits[name].sigma2)


def test_one_seed_is_refused_naming_the_seeds_found(sweep, capsys, in_project):
    """One seed measures no run-to-run variance (the fit's residual degrees of freedom are 0):
    `--from` is refused, naming the seeds the runs have and why the others are not measured (it
    printed "measured in 3 arms x 1 seed" and kept every published default, unsaid)."""
    from prefix_titan.power import main, measured_sds

    for arm in ("ce", "label_smoothing", "prefix_tau0.5"):
        for seed in (2, 3):
            shutil.rmtree(sweep / arm / f"seed{seed}")
    with pytest.raises(ValueError, match=r"only seed 1 can be measured \(the runs' seeds: 1\)"):
        measured_sds(str(sweep), PLAN, NAMES)
    with pytest.raises(SystemExit):
        main(["--from", str(sweep)])
    err = capsys.readouterr().err
    assert "one seed measures no run-to-run variance" in err
    assert "plan without --from (the published default sds)" in err


def test_one_complete_seed_is_refused_naming_the_arms_that_miss_the_others(sweep):
    from prefix_titan.power import measured_sds

    shutil.rmtree(sweep / "prefix_tau0.5" / "seed2")
    shutil.rmtree(sweep / "label_smoothing" / "seed3")
    with pytest.raises(ValueError) as e:
        measured_sds(str(sweep), PLAN, NAMES)
    said = str(e.value)
    assert "only seed 1 can be measured (the runs' seeds: 1, 2, 3; " in said
    assert "seed 2 left out: prefix_tau0.5 has no run of it (2 runs not read)" in said
    assert "seed 3 left out: label_smoothing has no run of it (2 runs not read)" in said


def test_a_seed_an_arm_misses_is_left_out_said(sweep, capsys, in_project):
    """The seeds every arm has are measured; a seed one arm misses, or one arm alone has, is
    named with the arms concerned (the complete seeds were measured and the others dropped
    unsaid)."""
    from prefix_titan.power import main, measured_sds

    shutil.rmtree(sweep / "prefix_tau0.5" / "seed3")
    extra = sim.simulate(sim.Sweep(arms=ARMS[:1], seeds=(4,), items=30, tasks=TASKS), seed=5)
    sim.write(extra, str(sweep))
    m = measured_sds(str(sweep), PLAN, NAMES)
    assert m.where == f"3 arms x 2 seeds under {sweep}"
    assert m.left_out == (
        "seed 3 left out: prefix_tau0.5 has no run of it (2 runs not read)",
        "seed 4 left out: only ce has a run of it (1 run not read)",
    )
    assert m.sds["char composite"] == pytest.approx(_sd(sweep, (1, 2), "char composite"))
    main(["--from", str(sweep)])
    out = capsys.readouterr().out
    assert "Note: seed 3 left out: prefix_tau0.5 has no run of it (2 runs not read)." in out
    assert "Note: seed 4 left out: only ce has a run of it (1 run not read)." in out


def test_a_seed_with_a_run_cut_short_is_left_out_not_refused(sweep, capsys, in_project):
    """A run whose last evaluated step differs from the others' (its final evaluation missing):
    its seed is left out, said, and the rest measured (the report's refusal was passed on, with
    a way out, --seeds, that is power's count of seeds to plan)."""
    from prefix_titan.power import main, measured_sds

    shutil.rmtree(sweep / "prefix_tau0.5" / "seed3" / "hf" / "step-3600")
    m = measured_sds(str(sweep), PLAN, NAMES)
    assert m.where == f"3 arms x 2 seeds under {sweep}"
    assert m.left_out == (
        "seed 3 left out: prefix_tau0.5 last evaluated at step 2400, where the seeds measured "
        "end at step 3600 (3 runs not read; finish and evaluate them to keep them)",
    )
    assert m.sds["val CE"] == pytest.approx(_sd(sweep, (1, 2), "val CE"))
    main(["--from", str(sweep)])
    out = capsys.readouterr().out
    assert "Run sd: measured in 3 arms x 2 seeds under" in out
    assert "Note: seed 3 left out: prefix_tau0.5 last evaluated at step 2400" in out
    # two seeds cut short leave one: refused, each named
    shutil.rmtree(sweep / "ce" / "seed2" / "hf" / "step-3600")
    with pytest.raises(ValueError) as e:
        measured_sds(str(sweep), PLAN, NAMES)
    said = str(e.value)
    assert "only seed 1 can be measured" in said and "--seeds" not in said
    assert "seed 2 left out: ce last evaluated at step 2400" in said


def test_a_metric_the_sweep_does_not_hold_is_said_to_keep_its_default(tmp_path, capsys, in_project):
    """A metric the runs hold no values of (here the downstream tasks, not evaluated) keeps its
    published default, said in a note (it was kept unsaid)."""
    from prefix_titan.power import main

    runs = sim.simulate(sim.Sweep(arms=ARMS, seeds=(1, 2), items=30, tasks=PROBE_TASKS), seed=4)
    sim.write(runs, str(tmp_path))
    main(["--from", str(tmp_path)])
    out = capsys.readouterr().out
    (note,) = [line for line in out.splitlines() if " hold no values of " in line]
    assert note.startswith(f"Note: the runs under {tmp_path} hold no values of downstream bits/b")
    assert "hellaswag" in note and "char composite" not in note and "val CE" not in note


def test_the_ways_out_of_unpaired_arms_keep_the_baseline_and_two_seeds():
    """A refusal of arms run with other seeds names no way out that cannot compare: no --arms
    list without the plan's baseline (it gave "No claim: the sweep has no label_smoothing arm"),
    no --seeds of one seed (it gave "No claim can be made: with one seed")."""
    base_short = {"ce": [1, 2, 3], "label_smoothing": [1, 2], "prefix_tau0.5": [1, 2, 3]}
    said = unpaired(base_short, baseline="label_smoothing")
    assert "report the seeds every arm has (--seeds 1 2)" in said and "--arms" not in said
    assert "they include the plan's baseline, label_smoothing, which every comparison" in said
    # a plan whose baseline is another arm: that one kept
    said = unpaired(base_short, baseline="ce")
    assert "leave out the arms that miss runs (--arms ce prefix_tau0.5: an exploratory" in said
    one = {"ce": [1, 2, 3], "label_smoothing": [1, 2, 3], "prefix_tau0.5": [1]}
    said = unpaired(one, baseline="label_smoothing")
    assert "--seeds" not in said
    assert "(--arms ce label_smoothing: an exploratory report" in said
    with pytest.raises(ValueError, match="not run with the same seeds") as e:
        group_arms(
            [
                {"name": n, "seed": s, "folder": f"{n}/{s}"}
                for n, v in base_short.items()
                for s in v
            ],
            "label_smoothing",
        )
    assert "--arms" not in str(e.value)


def test_a_measured_sd_far_below_the_published_default_is_noted(sweep, capsys, in_project):
    """Runs that answer their items alike (a 12-step smoke sweep's, 50 items a probe) measured
    the char composite's sd at 3e-6 against a published 0.012, and `power --from` planned 2 seeds
    from it, unsaid: an sd below a tenth of the default is named in a note."""
    from prefix_titan import power

    measured = power.measured_sds(str(sweep), PLAN, NAMES)
    said = "measured a run sd below 1/10 of the published default for char composite"
    power.main(["--from", str(sweep)])
    assert said not in capsys.readouterr().out  # (30-item probes: a measured sd above it)
    tiny = measured._replace(sds={**measured.sds, "char composite": 3.2e-6})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(power, "measured_sds", lambda *a, **k: tiny)
        power.main(["--from", str(sweep)])
    out = capsys.readouterr().out
    assert f"{said} 3.2e-06 against 0.012 (the default: one model's binomial" in out


def test_a_seed_never_evaluated_is_left_out_not_taken_for_any_step(sweep, capsys, in_project):
    """A seed none of whose runs was evaluated, beside seeds evaluated to one last step, is
    left out, named (its runs passed for any step: the char composite, held by the other seeds
    in every arm, was said to be held by none)."""
    from prefix_titan import power

    for arm in ("ce", "label_smoothing", "prefix_tau0.5"):
        shutil.rmtree(sweep / arm / "seed2" / "hf")
    m = power.measured_sds(str(sweep), PLAN, NAMES)
    assert m.where == f"3 arms x 2 seeds under {sweep}"
    assert m.left_out == (
        "seed 2 left out: no run of it evaluated, where the seeds measured end at step 3600 (3 "
        "runs not read; evaluate them to keep them)",
    )
    assert "char composite" in m.sds and not m.unheld
    assert m.sds["char composite"] == pytest.approx(_sd(sweep, (1, 3), "char composite"))
    # a validation metric the runs do not hold: the note says why and how, not "evaluate"
    power.main(["--from", str(sweep)])
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(power, "measured_sds", lambda *a, **k: m._replace(unheld=("val CE",)))
        power.main(["--from", str(sweep)])
    out = capsys.readouterr().out
    assert "hold no values of val CE in two arms or more (their metrics logs hold no valid" in out
    assert "run their training command again (or the same `sweep launch`)" in out
    assert "with it on) to measure it." in out and "evaluate the runs on" not in out


def test_the_evaluated_tasks_outside_the_plan_are_measured_not_said_unevaluated(
    three_seeds, capsys, in_project
):
    """The default tasks the runs were evaluated on, which the plan does not compare, have their
    sd measured from the runs as the plan's metrics do (they were said "not evaluated" and kept
    their published defaults: the fit was the comparisons' alone)."""
    import numpy as np

    from prefix_titan.power import main, measured_sds
    from prefix_titan.sweep.analysis import fit_of

    m = measured_sds(str(three_seeds), PLAN, [*NAMES, "downstream acc", *DEFAULT_TASKS])
    runs = group_arms(find_runs(str(three_seeds)))
    a = analyse(runs, PLAN, read=("hellaswag",))
    table = a.tables["hellaswag"]
    y = np.array([[table[arm][s] for s in (1, 2, 3)] for arm in table])
    resid = y - y.mean(1, keepdims=True) - y.mean(0, keepdims=True) + y.mean()
    want = math.sqrt((resid**2).sum() / ((y.shape[0] - 1) * (y.shape[1] - 1)))
    assert m.sds["hellaswag"] == pytest.approx(want) and fit_of(a, "hellaswag").df == 4
    assert "downstream acc" in m.sds and "hellaswag" not in m.unheld
    main(["--from", str(three_seeds)])
    out = capsys.readouterr().out
    assert not [line for line in out.splitlines() if " hold no values of " in line], out
