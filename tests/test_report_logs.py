"""What a sweep report says of a run whose metrics log is cut short, ends in a torn line or is
missing: the run named, the cause that fits and the way to get its validation rows back. Small
fake run folders (helpers.make_run: validation rows at steps 1000 and 2000)."""

import json
import os

import pytest
from helpers import make_run

from prefix_titan.runs.folder import METRICS_LOG
from prefix_titan.sweep import report as report_module
from prefix_titan.sweep.analysis import _how_measured
from prefix_titan.sweep.runs import load_run

ARMS = {
    "ce": ({"name": "ce"}, 0.0),
    "label_smoothing": ({"name": "label_smoothing"}, 0.0),
    "prefix_tau0.5": ({"name": "prefix", "tau": 0.5}, 0.15),
}
AGAIN = (
    "run its training command again (or the same `sweep launch`): a stopped run resumes, and one "
    "whose final checkpoint is saved loads it, trains nothing and validates its final step where "
    "its log holds no row of it (docs/experiment.md); restore the log from a copy to get the "
    "earlier rows back"
)


@pytest.fixture
def sweep(tmp_path):
    for seed in (1, 2):
        for name, (objective, score) in ARMS.items():
            make_run(tmp_path, name, objective, score, seed=seed)
    return tmp_path


def _report(root) -> str:
    return report_module.report(str(root), figures=False)


def _notes(text: str) -> list[str]:
    return text.split("## Notes")[1].splitlines()


def _log(root, arm="label_smoothing", seed=1):
    return root / arm / f"seed{seed}" / METRICS_LOG


def _step_one_only(log) -> None:
    """The log cut short after step 1's rows (torchtitan validates step 1 too)."""
    rows = ({"step": 1, "loss": 9.0}, {"step": 1, "validation_plain_ce": 9.0})
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_a_log_cut_short_is_named_with_its_cause_and_the_launch_that_validates_again(sweep):
    """A baseline run's rows after step 1 gone while its evaluation at step 2000 is there: its
    note says where the log ends against the step the run recorded, and that running it again
    validates the final step; the family's note points to it (it said validation was off and the
    runs were to be trained again)."""
    _step_one_only(_log(sweep))
    text = _report(sweep)
    (note,) = [n for n in _notes(text) if "no value for label_smoothing seed 1" in n]
    assert "val CE" in note.split(": no value")[0]
    assert (
        f"its metrics log ({METRICS_LOG}) has no validation row after step 1 (it ends at step 1, "
        "though the run recorded step 2000 in a checkpoint or evaluation: cut short, or an older "
        "copy put back); that arm is not compared on it; " + AGAIN
    ) in note, note
    assert "validation.enable = false" not in note
    (family,) = [n for n in _notes(text) if n.startswith("- validation CE: val CE is not")]
    assert "the note on it names the runs whose metrics logs hold no validation row" in family
    assert "train them again" not in family and "validation.enable" not in family, family


def test_a_run_trained_with_validation_off_is_told_to_train_with_it_on(sweep):
    log = _log(sweep, "prefix_tau0.5", 2)
    _step_one_only(log)
    record = log.parent / "run_config.json"
    config = json.loads(record.read_text())
    config["validation"] = {**config.get("validation", {}), "enable": False}
    record.write_text(json.dumps(config))
    (note,) = [n for n in _notes(_report(sweep)) if "no value for prefix_tau0.5 seed 2" in n]
    assert "cut short, or an older copy put back; trained with validation.enable = false)" in note
    assert note.endswith("; a run trained with validation off is trained again with it on"), note
    assert "run its training command again" not in note


def test_a_missing_log_is_said_to_be_missing(sweep):
    os.remove(_log(sweep))
    (note,) = [n for n in _notes(_report(sweep)) if "no value for label_smoothing seed 1" in n]
    assert f"({_log(sweep).parent}): its metrics log ({METRICS_LOG}) is missing; " in note, note
    assert "has no validation row" not in note and AGAIN in note
    assert load_run(str(_log(sweep).parent))["log"] == "missing"


def test_a_torn_last_line_is_named_where_it_was_not_read(sweep):
    """A row cut off mid-line at the log's end (an append cut short) is not read, and the report
    says so, naming the run (it was skipped without a word); the rows before it are read."""
    log = _log(sweep, "ce", 2)
    whole = log.read_bytes()
    log.write_bytes(whole + b'{"step": 2001, "loss": 4.')
    assert load_run(str(log.parent))["log"] == "torn"
    assert load_run(str(_log(sweep).parent))["log"] is None
    text = _report(sweep)
    (note,) = [n for n in _notes(text) if "torn" in n]
    assert note.startswith(
        f"- the metrics log ({METRICS_LOG}) of ce seed 2 ({log.parent}) ends in a torn line"
    ), note
    assert "not read: its numbers are those of the rows before it" in note
    assert "no value for" not in text  # the rows before it are read
    # a torn final validation row: the refusal of runs validated at different steps names it
    log.write_bytes(whole[:-20])  # (its last row, step 2000's validation, cut mid-line)
    with pytest.raises(ValueError, match="validated at different steps") as e:
        _report(sweep)
    assert f"{log.parent} (unfinished: step 2000 of " in str(e.value)
    assert f") ({METRICS_LOG} ends in a torn line, not read): steps 1000 " in str(e.value), str(
        e.value
    )


def test_no_run_validated_is_told_every_cause_and_the_fix_that_works():
    said = _how_measured("val CE")
    assert "the logs cut short, older copies put back or the logs missing" in said
    assert "trained with validation.enable = false, or before the last step" in said
    assert "run their training command again (or the same `sweep launch`)" in said
    assert "runs trained with validation off are trained again with it on" in said
    assert "the note on it names the runs" in _how_measured("val CE", held=True)
