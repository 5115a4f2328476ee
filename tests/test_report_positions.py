"""Validation CE by the target's position in its window, in a sweep report: shown per arm where an
arm weights positions (objective.position_gamma), read from each run's validation rows."""

import json

import pytest
from helpers import make_run

from prefix_titan.objectives.mechanism import POSITIONS
from prefix_titan.runs.folder import METRICS_LOG
from prefix_titan.sweep import report as report_module
from prefix_titan.sweep.metrics import POSITION_METRICS, metric

ARMS = {
    "ce": ({"name": "ce"}, 0.0),
    "label_smoothing": ({"name": "label_smoothing"}, 0.0),
    "prefix_tau0.5": ({"name": "prefix", "tau": 0.5}, 0.15),
}
GAMMA = {"ce_gamma0.9": ({"name": "ce", "position_gamma": 0.9}, 0.0)}


def _with_positions(folder, early: float, seed: int):
    """Add CE by position to the run's validation rows: `early` at k 1-16, 3.0 + seed/100 later."""
    path = folder / METRICS_LOG
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for r in rows:
        if "validation_plain_ce" in r:
            r["validation_ce_pos_1-16"] = early
            r.update({f"validation_ce_pos_{b}": 3.0 + seed / 100 for b in POSITIONS[1:3]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _sweep(root, arms):
    for seed in (1, 2):
        for name, (objective, score) in arms.items():
            folder = make_run(root, name, objective, score, seed=seed)
            _with_positions(folder, 4.5 if "gamma" in name else 4.0 + seed / 10, seed)
    return root


def test_the_position_table_shows_where_a_weighted_arm_pays(tmp_path):
    _sweep(tmp_path, {**ARMS, **GAMMA})
    text = report_module.report(str(tmp_path), figures=False)
    head = "Validation plain CE by the target's position k in its window (1: the first target;"
    assert head in text
    block = text.split(head)[1].split("\n\n")[1]
    rows = {line.split("|")[1].strip(): line for line in block.splitlines()[2:]}
    assert set(rows) == {*ARMS, *GAMMA}
    assert "val CE at k 1-16" in block.splitlines()[0]
    assert "val CE at k 257-1024" not in block  # logged by no run: left out
    assert "| 4.5000 [-, -] |" in rows["ce_gamma0.9"] and "| 4.1500 [" in rows["ce"]
    # paired by seed with the same objective unweighted (ce): 4.5 - 4.1, 4.5 - 4.2
    pairs = text.split("Each weighted arm less the same objective unweighted, seed by seed")[1]
    (row,) = [line for line in pairs.split("\n\n")[1].splitlines() if line.startswith("| ce_")]
    assert row.startswith("| ce_gamma0.9 − ce | +0.3500 [") and row.count("|") == 5, row
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert data["per_arm"]["val CE at k 1-16"]["ce_gamma0.9"]["mean"] == pytest.approx(4.5)
    assert data["per_arm"]["val CE at k 17-64"]["ce"]["mean"] == pytest.approx(3.015)
    assert data["metrics"]["val CE at k 1-16"]["unit"] == "nats per token"
    assert data["metrics"]["val CE at k 1-16"]["better"] == "lower"


def test_no_position_table_without_a_weighted_arm(tmp_path):
    _sweep(tmp_path, ARMS)
    text = report_module.report(str(tmp_path), figures=False)
    assert "by the target's position k" not in text
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert not set(POSITION_METRICS) & set(data["per_arm"])


def test_the_position_metrics_are_validation_metrics_a_plan_may_name():
    for name, bucket in zip(POSITION_METRICS, POSITIONS):
        m = metric(name)
        assert m.source == "validation" and m.lower_is_better
        assert m.read({f"validation_ce_pos_{bucket}": 2.5}) == 2.5
