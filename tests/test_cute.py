"""CUTE (`--tasks cute`) as its hub dataset writes it: each prompt holds its quoted few-shot
answers and ends with its question; the answer is cued and read as CUTE's evaluation reads it."""

import json

import pytest

from prefix_titan.evaluation.harness import TASKS_DIR, task_specs

PROMPT = (
    "Spell out the word, putting spaces between each letter, based on the following examples:"
    '\n\n1. Spell out the word "alphabet". Answer: "a l p h a b e t"'
    '\n2. Spell out the word "hello". Answer: "h e l l o"'
    '\n3. Spell out the word "zebra". Answer: "z e b r a"'
    '\n4. Spell out the word "tongue". Answer: "t o n g u e"'
    '\n\nQuestion: Spell out the word "cow".'
)
WORDS = (
    "Swap the positions of two words, based on the following examples:"
    '\n\n1. Swap "the" and "dog" in "the dog ran". Answer: "dog the ran"'
    '\n\nQuestion: Swap "a" and "cat" in "a cat sat".'
)


def cute_task(tmp_path, name, rows):
    from lm_eval.tasks import TaskManager

    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    manager = TaskManager(include_path=TASKS_DIR, include_defaults=False)
    loaded = manager.load(task_specs([name], {name: str(path)}, manager))
    task = loaded["tasks"][name]
    return task, list(task.eval_docs)[0]


def test_cute_cues_the_quoted_answer_and_stops_at_the_closing_quote(tmp_path):
    task, doc = cute_task(tmp_path, "cute_spell", [{"prompt": PROMPT, "answer": "c o w"}])
    # the question is followed by the answer's cue, in the format of the prompt's own examples
    assert task.doc_to_text(doc) == PROMPT + ' Answer: "'
    assert task.config.generation_kwargs["until"][0] == '"'  # the greedy answer ends at its quote
    scored = {
        completion: task.process_results(doc, [completion])["exact_match"]
        for completion in ("c o w", " c o w ", "C o w", "c o w s", "cow")
    }
    assert scored == {"c o w": 1, " c o w ": 1, "C o w": 0, "c o w s": 0, "cow": 0}


def test_cute_results_of_the_earlier_answer_reading_are_evaluated_again():
    """A folder's CUTE results scored before the answer was cued (template version 1.0) are
    outdated, as a redesigned probe's are; those of the present template are kept."""
    from prefix_titan.evaluation.harness import ASCII_MARK, CUTE_TASKS, _outdated, current_version

    assert {current_version(t) for t in CUTE_TASKS} == {"2.0"}
    for task in ("cute_spell", "cute_swap_word"):
        assert _outdated({"versions": {task: f"1.0 {ASCII_MARK}"}}, task)
        assert not _outdated({"versions": {task: f"2.0 {ASCII_MARK}"}}, task)
        assert _outdated({"versions": {}}, task)


@pytest.mark.parametrize("name", ["cute_swap_word", "cute_contains_word"])
def test_cute_word_tasks_ignore_case_as_cute_does(tmp_path, name):
    task, doc = cute_task(tmp_path, name, [{"prompt": WORDS, "answer": "A cat sat"}])
    assert task.doc_to_text(doc) == WORDS + ' Answer: "'
    assert task.process_results(doc, ["a cat sat"])["exact_match"] == 1
    assert task.process_results(doc, ["a cat sat down"])["exact_match"] == 0
