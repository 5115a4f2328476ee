"""The whole loop at smoke scale on a CPU: 2 arms x 2 paired seeds trained by the sweep launcher,
exported and evaluated (character probes, the four downstream tasks from local fixtures), and
reported with intervals."""

import json
import os
import subprocess
import sys

import pytest
from helpers import embedded_tokenizer_at, project
from test_eval import FIXTURES, SECONDARY_FIXTURES

pytestmark = pytest.mark.slow  # the whole loop at smoke scale

ARMS, SEEDS = ("ce", "prefix_tau0.5"), (1, 2)


def launch(tmp_path, sweep, plan):
    command = [
        sys.executable,
        "-m",
        "prefix_titan.sweep",
        "launch",
        "--scale",
        "smoke",
        "--arms",
        *ARMS,
        "--seeds",
        *map(str, SEEDS),
        "--sweep-dir",
        str(sweep),
        "--plan",
        str(plan),
        "--cpu-runs",
        "2",  # two runs at once, one core each
        "--",
        "--model.hf_assets_path",
        str(tmp_path / "tokenizer"),
        "--training.steps",
        "10",
        "--checkpoint.interval",
        "10",
        "--validation.freq",
        "10",
    ]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        command, cwd=project(), env=env, capture_output=True, text=True, timeout=1800
    )


def first_plain_ce(run):
    rows = [json.loads(line) for line in (run / "prefix_metrics.jsonl").read_text().splitlines()]
    return next(r["plain_ce"] for r in rows if r.get("step") == 1 and "plain_ce" in r)


def test_train_export_evaluate_report_for_two_arms_and_two_paired_seeds(tmp_path):
    from prefix_titan.evaluation.harness import evaluate_run, task_index
    from prefix_titan.sweep.analysis import PLAN, load_plan, plan_digest
    from prefix_titan.sweep.report import report

    embedded_tokenizer_at(tmp_path / "tokenizer")
    # The package's analysis plan with ce as the baseline (the smoke sweep has no label
    # smoothing), registered with the sweep by its launch.
    plan = tmp_path / "plan.toml"
    plan.write_text(open(PLAN).read().replace('baseline = "label_smoothing"', 'baseline = "ce"'))
    sweep = tmp_path / "sweep"
    out = launch(tmp_path, sweep, plan)
    runs = {(arm, seed): sweep / arm / f"seed{seed}" for arm in ARMS for seed in SEEDS}
    logs = "".join(
        (r / "launch.log").read_text()[-3000:] for r in runs.values() if (r / "launch.log").exists()
    )
    assert out.returncode == 0, out.stdout + out.stderr + logs
    for run in runs.values():
        assert (run / "checkpoint" / "step-10" / ".metadata").is_file()
    # Paired seeds: the same initialisation and first batch in both arms of a seed (so the same
    # plain CE before any update), another one for the other seed.
    ce1 = {key: first_plain_ce(run) for key, run in runs.items()}
    for seed in SEEDS:
        assert ce1[("ce", seed)] == ce1[("prefix_tau0.5", seed)]
    assert ce1[("ce", 1)] != ce1[("ce", 2)]
    assert 'baseline = "ce"\n' in (sweep / "analysis_plan.toml").read_text()
    # each run's start records the plan its launch registered (a report finds it removed)
    registered = plan_digest(load_plan(str(sweep / "analysis_plan.toml")))
    for run in runs.values():
        (start,) = json.loads((run / "run_config.json").read_text())["starts"]
        assert start["plan_sha256"] == registered, start
    # the launch recorded its runs, each noted as it started, each with its folder
    from prefix_titan.sweep.launches import launched_runs, without_folder

    recorded = launched_runs(str(sweep))
    assert {(r["arm"], r["seed"]) for r in recorded} == set(runs)
    assert all(r["began"] for r in recorded) and without_folder(str(sweep)) == []
    again = launch(tmp_path, sweep, plan)  # finished runs are skipped
    assert again.returncode == 0 and again.stdout.count("finished already, skipped") == 4

    data = tmp_path / "data"
    data.mkdir()
    for task, rows in {**FIXTURES, **SECONDARY_FIXTURES}.items():
        (data / f"{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    index = task_index()  # one index of lm-eval's tasks for every evaluation
    for run in runs.values():
        evaluate_run(
            str(run),
            tasks=["pilot"],  # what the pilot evaluates: tasks, probes, embedding probe
            data_dir=str(data),
            limit=12,
            batch_size="8",
            dtype="float32",
            task_manager=index,
        )
    text = report(str(sweep))  # the plan the sweep registered: the pre-registered analysis
    assert text.startswith("# Sweep report: 2 arms × 2 seeds (1, 2)")
    assert "**Answer.** (An exploratory" not in text
    assert f"The plan the sweep registered when it was launched, before its runs ({sweep}" in text
    assert "## Against ce" in text and "No evaluation results" not in text
    assert "All runs share every setting outside [objective]" in text
    per_arm = text.split("## Per arm")[1].split("\n\n")[1]
    row = next(line for line in per_arm.splitlines() if line.startswith("| prefix_tau0.5 "))
    assert "| - " not in row  # every metric: the primaries, accuracies, probes, embedding probe
    for family in ("character knowledge", "downstream", "validation CE"):
        table = text.split(f"### {family}")[1].split("\n\n")[1]
        row = next(line for line in table.splitlines() if line.startswith("| prefix_tau0.5 "))
        assert "| - " not in row, row  # compared, with an interval and a p
    data = json.loads((sweep / "report" / "report.json").read_text())
    assert data["steps"] and data["plan"]["baseline"] == "ce"
    assert "- char composite: ±" in text.split("## Power")[1]
