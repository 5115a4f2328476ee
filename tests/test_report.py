"""The sweep report on small fake run folders."""

import dataclasses
import json
import os
from pathlib import Path

import pytest

from prefix_titan.probes import PROBE_TASKS
from prefix_titan.report import report
from prefix_titan.run_folder import METRICS_LOG

ROOT = Path(__file__).resolve().parent.parent


def base_config():
    from torchtitan.config import ConfigManager

    return dataclasses.asdict(
        ConfigManager().parse_args(["--job.config_file", str(ROOT / "train_configs" / "ce.toml")])
    )


def make_run(root, name, objective, score, seed=1234, eval_kind="curve"):
    folder = root / name
    folder.mkdir(parents=True)
    config = base_config()
    config["objective"].update(objective)
    config["job"]["dump_folder"] = str(folder)
    config["debug"]["seed"] = seed
    (folder / "run_config.json").write_text(json.dumps(config))
    rows = [{"step": s, "loss": 5.0, "plain_ce": 4.0} for s in (1000, 2000)]
    rows += [
        {"step": 1000, "validation_plain_ce": 4.0 - score},
        {"step": 2000, "validation_plain_ce": 3.5 - score},
    ]
    (folder / METRICS_LOG).write_text("".join(json.dumps(r) + "\n" for r in rows))
    results = {
        t: {"acc,none": 0.3 + score, "acc_norm,none": 0.35 + score}
        for t in ("hellaswag", "piqa", "arc_easy")
    }
    results["winogrande_debiased"] = {"acc,none": 0.5 + score}
    results.update(
        {t: {"acc,none": 0.25 + score, "bits_per_byte,none": 2.0 - score} for t in PROBE_TASKS}
    )
    if eval_kind == "curve":
        (folder / "eval_curve.json").write_text(json.dumps({"1000": {}, "2000": results}))
    else:
        (folder / "hf" / "step-2000").mkdir(parents=True)
        (folder / "hf" / "step-2000" / "eval_results.json").write_text(
            json.dumps({"results": results})
        )
    return folder


@pytest.fixture
def runs(tmp_path):
    make_run(tmp_path, "prefix_tau0.5", {"name": "prefix", "tau": 0.5}, 0.03)
    make_run(tmp_path, "ce", {"name": "ce"}, 0.0)
    make_run(
        tmp_path,
        "prefix_norm_tau0.1",
        {"name": "prefix", "tau": 0.1, "normalize": True},
        0.05,
        eval_kind="results",
    )
    make_run(tmp_path, "label_smoothing", {"name": "label_smoothing"}, 0.01)
    make_run(tmp_path, "prefix_tau1.0", {"name": "prefix", "tau": 1.0}, 0.02)
    return tmp_path


def test_table_orders_baselines_first_and_marks_the_best(runs):
    text = report(str(runs))
    table = [line for line in text.splitlines() if line.startswith("| ")]
    names = [line.split("|")[1].strip() for line in table[1:]]
    assert names == [
        "ce",
        "label_smoothing",
        "prefix_tau0.5",
        "prefix_tau1.0",
        "prefix_norm_tau0.1",
    ]
    best_row = next(line for line in table if line.startswith("| prefix_norm_tau0.1 "))
    assert best_row.count("**") == 2 * 7  # best in every column (lowest CE and bits/byte)
    assert "| ce | 3.5000 |" in text
    assert "All runs share every setting outside [objective]" in text
    for png in ("accuracy_vs_tau.png", "validation_ce.png", "char_probes_vs_tau.png"):
        assert (runs / "report" / png).stat().st_size > 5000


def test_invariant_breakers_are_named(runs):
    make_run(runs, "prefix_tau2.0", {"name": "prefix", "tau": 2.0}, 0.0, seed=7)
    text = report(str(runs))
    assert "`debug.seed` differs from 1234 in: prefix_tau2.0 (7)" in text


def test_missing_evaluations_are_listed(tmp_path):
    folder = make_run(tmp_path, "ce", {"name": "ce"}, 0.0)
    os.remove(folder / "eval_curve.json")
    text = report(str(tmp_path))
    assert "No evaluation results yet for: ce." in text and "| ce | **3.5000** | - |" in text


def test_empty_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no runs"):
        report(str(tmp_path))


def test_position_weighted_and_user_family_arms_are_named(tmp_path):
    make_run(tmp_path, "ce", {"name": "ce"}, 0.0)
    make_run(tmp_path, "ce_gamma", {"name": "ce", "position_gamma": 0.99}, 0.01)
    make_run(tmp_path, "suffix", {"name": "my_lab.targets:suffix_targets"}, 0.02)
    text = report(str(tmp_path))
    names = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ")][1:]
    assert names == ["ce", "ce_gamma0.99", "my_lab.targets:suffix_targets"]
    assert "All runs share every setting outside [objective]" in text


def test_evaluations_of_one_step_from_several_places_are_merged(tmp_path):
    # eval --all-checkpoints wrote the downstream tasks; a later eval of an export, filed with
    # the run, added the character probes for the same step.
    folder = make_run(tmp_path, "ce", {"name": "ce"}, 0.0)
    curve = json.loads((folder / "eval_curve.json").read_text())
    probes = {t: v for t, v in curve["2000"].items() if t.startswith("char_")}
    curve["2000"] = {t: v for t, v in curve["2000"].items() if t not in probes}
    (folder / "eval_curve.json").write_text(json.dumps(curve))
    (folder / "evals" / "step-2000").mkdir(parents=True)
    (folder / "evals" / "step-2000" / "eval_results.json").write_text(
        json.dumps({"results": probes})
    )
    assert probes and curve["2000"]
    row = next(line for line in report(str(tmp_path)).splitlines() if line.startswith("| ce "))
    assert " - " not in row, row
