"""A launch records the runs it sets out to start (sweep/launches.py); a report finds those that
have no run folder: an arm or a seed launched and gone is refused, not silently left out."""

import json
import os
import shutil

import pytest
from helpers import make_run, project

from prefix_titan.sweep import launch
from prefix_titan.sweep import report as report_module
from prefix_titan.sweep.launches import (
    LAUNCHES,
    launched_runs,
    record_launch,
    record_start,
    without_folder,
)

ARMS = {
    "ce": ({"name": "ce"}, 0.0),
    "label_smoothing": ({"name": "label_smoothing"}, 0.0),
    "prefix_tau0.5": ({"name": "prefix", "tau": 0.5}, 0.15),
}


def report(*args, **kwargs):
    return report_module.report(*args, **{"figures": False, **kwargs})


def _sweep(root, arms=ARMS, seeds=(1, 2)):
    for seed in seeds:
        for name, (objective, score) in arms.items():
            make_run(root, name, objective, score, seed=seed)
    return root


def _launched(root, arms, seeds):
    return record_launch(str(root), [(arm, s, f"{arm}/seed{s}") for s in seeds for arm in arms])


def test_a_launch_records_its_runs_before_the_first_starts(tmp_path, monkeypatch):
    """The record is written before any run starts and names each run's arm, seed and folder
    as the launch places it; a second launch adds its own file; a dry run records nothing."""
    sweep = tmp_path / "sweep"
    seen = []

    def run_queue(
        jobs, groups, stop_on_failure, root, recheck=None, plan_sha256=None, started=None
    ):
        seen.append((launched_runs(str(sweep)), [str(log.parent) for _, log, _ in jobs]))
        if len(seen) == 1:
            started(jobs[0][0])  # the first job starts (then the launch is cut short, say)
        return []

    monkeypatch.setattr(
        launch, "preflight", lambda root, runs, device=None, sweep=None, world=None, dry=False: []
    )
    monkeypatch.setattr(launch, "run_queue", run_queue)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    args = ["--root", str(project()), "--scale", "smoke", "--sweep-dir", str(sweep)]
    assert launch.main([*args, "--arms", "ce", "--seeds", "1", "2", "--dry-run"]) == 0
    assert not (sweep / LAUNCHES).exists()
    assert launch.main([*args, "--arms", "ce", "label_smoothing", "--seeds", "1", "2"]) == 0
    recorded, folders = seen[0]
    assert not any(r["began"] for r in recorded)
    assert [(r["arm"], r["seed"]) for r in recorded] == [
        ("ce", 1),
        ("label_smoothing", 1),
        ("ce", 2),
        ("label_smoothing", 2),
    ]
    assert [str(sweep / r["folder"]) for r in recorded] == [
        os.path.normpath(f) for f in folders
    ]  # where the runs are started
    began = [(r["arm"], r["seed"]) for r in launched_runs(str(sweep)) if r["began"]]
    assert began == [("ce", 1)]  # noted as it started
    files = sorted(f for f in os.listdir(sweep / LAUNCHES) if f.endswith(".json"))
    assert len(files) == 1
    record = json.loads((sweep / LAUNCHES / files[0]).read_text())
    assert record["plan_sha256"] is not None and record["pid"] == os.getpid()
    assert launch.main([*args, "--arms", "prefix_tau0.5", "--seeds", "1"]) == 0
    assert len([f for f in os.listdir(sweep / LAUNCHES) if f.endswith(".json")]) == 2
    assert ("prefix_tau0.5", 1) in {(r["arm"], r["seed"]) for r in launched_runs(str(sweep))}
    assert len(without_folder(str(sweep))) == 5  # (none has a run record here)


def test_an_arm_launched_without_any_run_is_refused_and_left_out_only_exploratorily(tmp_path):
    """An arm whose folder is gone altogether was left out of the report unsaid (the comparison
    family one arm smaller); it is refused, naming it, and `--arms` without it is exploratory."""
    _sweep(tmp_path)
    _launched(tmp_path, [*ARMS, "prefix_tau1.0"], (1, 2))
    with pytest.raises(ValueError) as e:
        report(str(tmp_path))
    said = str(e.value)
    assert "2 runs launched into " in said and "have no run folder there" in said
    assert "arms with no run: prefix_tau1.0 (seeds 1, 2)" in said
    assert f"(--arms {' '.join(ARMS)}: an exploratory report" in said
    assert not (tmp_path / "report").exists()
    text = report(str(tmp_path), arms=list(ARMS))
    assert "(An exploratory re-analysis, not the pre-registered test: launched arms left out " in (
        text
    )
    assert "(prefix_tau1.0)" in text
    assert "Launched into this sweep (its launch records, launches/) and without a run folder " in (
        text
    )
    assert (
        "(2 runs), so not in this report: prefix_tau1.0 (seeds 1, 2). They never began, or were "
        in text
    )
    data = json.loads(next(tmp_path.glob("report*/report.json")).read_text())
    assert data["exploratory"] is True
    assert data["launched_without_folder"] == [
        {"arm": "prefix_tau1.0", "seed": s, "folder": f"prefix_tau1.0/seed{s}", "began": False}
        for s in (1, 2)
    ]


def test_a_seed_launched_without_any_run_is_refused_and_the_complete_seeds_are_the_plans(
    tmp_path,
):
    """A seed gone from every arm (a launch cut short, a node lost): refused, naming it; the
    seeds every arm has are the plan's analysis (its rule for missing runs), the runs named."""
    _sweep(tmp_path)
    _launched(tmp_path, ARMS, (1, 2, 3))
    with pytest.raises(ValueError) as e:
        report(str(tmp_path))
    said = str(e.value)
    assert "3 runs launched into" in said and "seeds with no run of any arm: ce (seed 3); " in said
    assert "or report the seeds every arm has (--seeds 1 2): the plan pairs the complete" in said
    text = report(str(tmp_path), seeds=[1, 2])
    assert "(An exploratory" not in text
    assert (
        "so not in this report: ce (seed 3); label_smoothing (seed 3); prefix_tau0.5 (seed 3)"
        in (text)
    )


def test_a_run_missing_beside_others_of_its_seed_is_refused_as_before(tmp_path):
    """One run gone of a seed other arms have: the unpaired refusal (finish it, or --seeds)."""
    _sweep(tmp_path)
    _launched(tmp_path, ARMS, (1, 2, 3))
    make_run(tmp_path, "ce", ARMS["ce"][0], 0.0, seed=3)
    with pytest.raises(ValueError, match="not run with the same seeds"):
        report(str(tmp_path))
    text = report(str(tmp_path), seeds=[1, 2])
    assert "so not in this report: label_smoothing (seed 3); prefix_tau0.5 (seed 3)." in text
    assert "Seed 3 left out because a reported arm has no run there" in text


def test_the_baseline_launched_and_gone_offers_no_arms_way_out(tmp_path):
    arms = {k: v for k, v in ARMS.items() if k != "label_smoothing"}
    _sweep(tmp_path, arms)
    _launched(tmp_path, ARMS, (1, 2))
    with pytest.raises(ValueError) as e:
        report(str(tmp_path))
    said = str(e.value)
    assert "arms with no run: label_smoothing (seeds 1, 2)" in said
    assert "no way out: they include the plan's baseline, label_smoothing" in said
    assert "--arms" not in said


def test_every_launched_run_there_adds_nothing_and_a_damaged_record_is_named(tmp_path):
    _sweep(tmp_path)
    path = _launched(tmp_path, ARMS, (1, 2))
    text = report(str(tmp_path))
    assert "Launched into this sweep" not in text
    assert (
        json.loads((tmp_path / "report" / "report.json").read_text())["launched_without_folder"]
        == []
    )
    with open(path, "w") as f:
        json.dump({"runs": [{"arm": "ce", "seed": "1", "folder": "ce/seed1"}]}, f)
    with pytest.raises(ValueError, match=r"is not a launch record \(a list `runs` of"):
        report(str(tmp_path))


def test_the_seeds_offered_are_those_every_arm_has(tmp_path):
    """A seed gone from every arm and another arm missing one more seed: the way out offered is
    the seeds every arm has (it offered every seed some run has, a report refused in turn)."""
    _sweep(tmp_path, seeds=(1, 2, 3))
    _launched(tmp_path, ARMS, (1, 2, 3, 4))
    shutil.rmtree(tmp_path / "prefix_tau0.5" / "seed3")
    with pytest.raises(ValueError) as e:
        report(str(tmp_path))
    assert "(--seeds 1 2): the plan pairs the complete seeds" in str(e.value)
    text = report(str(tmp_path), seeds=[1, 2])  # the way out offered: taken
    assert "(An exploratory" not in text
    assert "prefix_tau0.5 (seeds 3, 4)" in text


def test_a_seed_left_out_where_a_started_run_is_gone_is_exploratory(tmp_path):
    """A run the launch started whose folder is gone (removed after its result, say) counts as
    there: leaving its seed out is a choice, and the report says the launch started it."""
    _sweep(tmp_path, seeds=(1, 2, 3))
    record = _launched(tmp_path, ARMS, (1, 2, 3))
    record_start(record, "prefix_tau0.5", 3, "prefix_tau0.5/seed3")
    shutil.rmtree(tmp_path / "prefix_tau0.5" / "seed3")
    with pytest.raises(ValueError, match="not run with the same seeds"):
        report(str(tmp_path))
    text = report(str(tmp_path), seeds=[1, 2])
    assert (
        "(An exploratory re-analysis, not the pre-registered test: seeds left out at which a "
        in (text)
    )
    assert "launched run began and its folder is gone (3)" in text
    assert "A launch started prefix_tau0.5 (seed 3) (its folder removed since" in text


def test_a_sweep_folder_without_runs_names_the_runs_launched(tmp_path):
    _launched(tmp_path, ARMS, (1,))
    with pytest.raises(ValueError) as e:
        report(str(tmp_path))
    assert str(e.value).startswith(
        f"no runs (folders with run_config.json) under {str(tmp_path)!r}"
    )
    assert "so not in this report: ce (seed 1); label_smoothing (seed 1); prefix_tau0.5" in str(
        e.value
    )


def test_a_damaged_run_record_is_refused_without_the_launch_note(tmp_path):
    _launched(tmp_path, ["ce"], (0, 1))
    (tmp_path / "ce" / "seed0").mkdir(parents=True)
    (tmp_path / "ce" / "seed0" / "run_config.json").write_text('{"x": 1}')
    with pytest.raises(ValueError) as e:
        report(str(tmp_path))
    assert "is not a run record (no objective)" in str(e.value)
    assert "Launched into this sweep" not in str(e.value)
