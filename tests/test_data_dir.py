"""--data-dir files checked before a model is loaded: every missing file named, and a document
lm-eval could not score (a field missing, an answer naming no choice) refused with its line."""

import json

import pytest
from test_eval import CUTE_FIXTURES, FIXTURES, SECONDARY_FIXTURES

from prefix_titan.evaluation.harness import (
    DATA_MARK,
    FIELDS,
    check_data_dir,
    data_sources,
    read_from,
)
from prefix_titan.runs.checkpoints import sha256

TASKS = {**FIXTURES, **SECONDARY_FIXTURES, **CUTE_FIXTURES}


def write(folder, task, rows):
    (folder / f"{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_the_fixtures_of_every_task_pass_and_each_field_is_named(tmp_path):
    assert set(FIELDS) == set(TASKS)
    for task, rows in TASKS.items():
        write(tmp_path, task, rows)
    digests = check_data_dir(str(tmp_path), [*TASKS, "char_spell", "embedding_probe"])
    # (the probes are built here: no file); each file hashed as it is checked
    assert digests == {t: sha256(str(tmp_path / f"{t}.jsonl")) for t in TASKS}


def test_every_missing_file_is_named_at_once(tmp_path):
    write(tmp_path, "piqa", FIXTURES["piqa"])
    with pytest.raises(ValueError) as e:
        check_data_dir(str(tmp_path), ["hellaswag", "piqa", "arc_easy"])
    assert f"--data-dir {str(tmp_path)!r} has no hellaswag.jsonl, arc_easy.jsonl:" in str(e.value)


@pytest.mark.parametrize(
    "task, change, said",
    [
        ("piqa", {"sol2": None}, "line 2: no sol2"),
        ("piqa", {"label": 7}, "line 2: label 7 is not 0 or 1"),
        ("piqa", {"label": True}, "line 2: label True is not 0 or 1"),
        ("hellaswag", {"label": "4"}, "line 2: label '4' is not an index of its 4 endings"),
        ("hellaswag", {"endings": "one"}, "line 2: endings is not a list of texts"),
        ("winogrande_debiased", {"answer": 1}, 'line 2: answer 1 is not "1" or "2"'),
        ("winogrande_debiased", {"sentence": "No blank."}, "line 2: its sentence has no _"),
        ("arc_easy", {"answerKey": "E"}, "line 2: answerKey 'E' is not among choices.label"),
        ("arc_challenge", {"choices": {"text": ["a"], "label": ["A", "B"]}}, "1 texts and 2"),
        ("sciq", {"support": 3}, "line 2: support is not text"),
        ("cute_spell", {"answer": None}, "line 2: no answer"),
        ("cute_swap_word", {"prompt": ["a", "b"]}, "line 2: prompt is not text"),
    ],
)
def test_a_document_lm_eval_could_not_score_is_refused_with_its_line(tmp_path, task, change, said):
    rows = [dict(r) for r in TASKS[task]]
    rows[1].update(change)
    rows[4].update(change)
    write(tmp_path, task, rows)
    with pytest.raises(ValueError) as e:
        check_data_dir(str(tmp_path), [task])
    message = str(e.value)
    assert f"{tmp_path / (task + '.jsonl')} has 2 of {len(rows)} documents unreadable" in message
    assert said in message and f"{task} reads {', '.join(FIELDS[task])}" in message


def test_lines_that_are_not_json_objects_and_empty_files_are_refused(tmp_path):
    (tmp_path / "piqa.jsonl").write_text(json.dumps(FIXTURES["piqa"][0]) + "\n{oops\n[1]\n")
    with pytest.raises(ValueError) as e:
        check_data_dir(str(tmp_path), ["piqa"])
    assert "has 2 of 3 documents unreadable (line 2: not JSON" in str(e.value)
    (tmp_path / "piqa.jsonl").write_bytes(json.dumps(FIXTURES["piqa"][0]).encode() + b"\n\xe9\n")
    with pytest.raises(ValueError, match="has 1 of 2 documents unreadable \\(line 2: not UTF-8"):
        check_data_dir(str(tmp_path), ["piqa"])
    (tmp_path / "piqa.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="piqa.jsonl holds no document: piqa reads goal"):
        check_data_dir(str(tmp_path), ["piqa"])


def test_the_source_a_task_is_read_from_is_what_its_recorded_version_says(tmp_path):
    """An evaluation records a --data-dir file's sha256 in the task's version; read_from gives
    it back, and data_sources says the same of the file now, or None for the hub."""
    write(tmp_path, "piqa", FIXTURES["piqa"])
    now = data_sources(["piqa", "char_spell"], str(tmp_path))
    assert list(now) == ["piqa"] and now["piqa"].startswith(DATA_MARK)
    recorded = {"versions": {"piqa": f"1.0 ascii {now['piqa']}", "arc_easy": "1.0 ascii"}}
    assert read_from(recorded, "piqa") == now["piqa"]
    assert read_from(recorded, "arc_easy") is None  # the hub's
    assert data_sources(["arc_easy"], None) == {"arc_easy": None}
    write(tmp_path, "piqa", FIXTURES["piqa"][:3])
    assert data_sources(["piqa"], str(tmp_path))["piqa"] != now["piqa"]
