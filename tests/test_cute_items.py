"""CUTE from --data-dir files, evaluated by a tiny model through the command: each item's record
holds the generated answer, its target and whether they matched (the reported exact_match is
their mean), the printed table shows exact_match, and a file lacking a field CUTE reads is
refused with its line before a model is loaded."""

import json
import os
import shutil

import pytest
from helpers import tiny_hf_model

from prefix_titan.evaluation.harness import (
    EVAL_ITEMS,
    EVAL_RESULTS,
    FIELDS,
    check_data_dir,
    read_items,
)

TASK = "cute_spell"
LIMIT = 4
"""Documents evaluated of the file's six (a --limit sample)"""


def cute_model(folder, tokenizer_dir):
    """A tiny random Llama with the embedded BPE (a byte-level tokenizer with an end-of-text
    token, which lm-eval's generation needs; a vocabulary of its size)."""
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_file(os.path.join(tokenizer_dir, "tokenizer.json")).get_vocab_size()
    tiny_hf_model(folder, vocab_size=vocab, tokens=None)
    for name in os.listdir(tokenizer_dir):
        if name.endswith(".json"):
            shutil.copy(os.path.join(tokenizer_dir, name), folder / name)
    return folder


def write(folder, task, rows):
    folder.mkdir(exist_ok=True)
    (folder / f"{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def run_main(capsys, *args):
    """`python -m prefix_titan.eval ARGS` in this process: (exit code, stdout, stderr)."""
    from prefix_titan.eval import main

    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def evaluate_cute(capsys, model, data):
    code, out, err = run_main(
        capsys,
        *("--model", str(model), "--tasks", TASK, "--limit", str(LIMIT)),
        *("--data-dir", str(data), "--dtype", "float32", "--batch-size", "4"),
    )
    assert code == 0, err[-3000:]
    results = json.loads((model / EVAL_RESULTS).read_text())
    return out, results


def test_cute_items_hold_the_generation_target_and_outcome_whose_mean_is_reported(
    tmp_path, capsys, embedded_tokenizer_dir
):
    model = cute_model(tmp_path / "model", embedded_tokenizer_dir)
    data = tmp_path / "data"
    rows = [{"prompt": f'Spell out the word "w{i}".', "answer": f"w {i}"} for i in range(6)]
    write(data, TASK, rows)
    evaluate_cute(capsys, model, data)
    first = read_items(str(model))[TASK]
    assert len(first) == LIMIT and all(r is not None for r in first)
    assert all(isinstance(r["generated"], str) for r in first), first

    # The answers of some items set to what the model generated for them (surrounding spaces
    # stripped, as the template's exact match strips them; ASCII, as the documents are filtered
    # to): the same prompts give the same greedy answers, so those items match and the rest not.
    matched = [
        r["doc_id"]
        for r in first
        if r["generated"].strip() and r["generated"].strip().isascii() and '"' not in r["generated"]
    ][::2]
    assert matched, f"no generation to match an answer to: {first}"
    for i in matched:
        rows[i]["answer"] = next(r["generated"].strip() for r in first if r["doc_id"] == i)
    write(data, TASK, rows)  # (another file: evaluated again, not kept)
    out, results = evaluate_cute(capsys, model, data)
    items = read_items(str(model), results["item_sha256"])[TASK]
    lines = (model / EVAL_ITEMS / f"{TASK}.jsonl").read_text().splitlines()
    assert len(lines) == LIMIT and "null" not in [line.strip() for line in lines]

    assert [r["doc_id"] for r in items] == [r["doc_id"] for r in first]
    for r in items:
        assert r["metric"] == "exact_match" and r["correct"] in (0.0, 1.0), r
        assert r["target"] == rows[r["doc_id"]]["answer"], r  # lm-eval's target: the answer
        assert isinstance(r["generated"], str), r
        # re-scored by hand from the record alone: spaces around both stripped, case kept
        assert r["correct"] == float(r["generated"].strip() == r["target"].strip()), r
    assert [r["doc_id"] for r in items if r["correct"] == 1.0] == matched
    reported = results["results"][TASK]["exact_match,none"]
    assert reported == pytest.approx(sum(r["correct"] for r in items) / len(items))
    assert reported == pytest.approx(len(matched) / LIMIT) and 0 < reported < 1

    # The printed table shows the task's exact match and its standard error, not dashes.
    header = "| task | acc | ± se | acc_norm | exact_match | ± se | chance | bits/byte |"
    assert header in out, out
    (row,) = [line for line in out.splitlines() if line.startswith(f"| {TASK} |")]
    cells = [c.strip() for c in row.split("|")[1:-1]]
    stderr = results["results"][TASK]["exact_match_stderr,none"]
    assert cells[4:6] == [f"{reported:.4f}", f"{stderr:.4f}"], row


def test_the_table_without_an_exact_match_task_keeps_its_columns():
    from prefix_titan.evaluation.harness import table

    shown = table({"results": {"piqa": {"acc,none": 0.5, "acc_stderr,none": 0.1}}})
    assert shown.splitlines()[0] == "| task | acc | ± se | acc_norm | chance | bits/byte |"
    both = table(
        {
            "results": {
                "piqa": {"acc,none": 0.5, "acc_stderr,none": 0.1},
                TASK: {"exact_match,none": 0.25, "exact_match_stderr,none": 0.125},
            }
        }
    ).splitlines()
    assert both[2] == "| piqa | 0.5000 | 0.1000 | - | - | - | - | - |"
    assert both[3] == f"| {TASK} | - | - | - | 0.2500 | 0.1250 | - | - |"


def test_a_cute_file_without_a_field_the_template_reads_is_refused_with_its_line(tmp_path):
    assert FIELDS[TASK] == ("prompt", "answer")
    good = {"prompt": 'Spell out the word "cat".', "answer": "c a t"}
    write(tmp_path, TASK, [good, {"prompt": good["prompt"]}, good, {**good, "answer": 7}])
    with pytest.raises(ValueError) as e:
        check_data_dir(str(tmp_path), [TASK])
    message = str(e.value)
    said = f"{tmp_path / (TASK + '.jsonl')} has 2 of 4 documents unreadable (line 2: no answer)"
    assert said in message, message
    assert f"{TASK} reads prompt, answer from each line's JSON object" in message, message
    assert "prompt and answer: texts" in message, message
    write(tmp_path, "cute_swap_word", [{"question": "q", "answer": "a"}])  # `prompt` misnamed
    with pytest.raises(ValueError, match="line 1: no prompt\\): cute_swap_word reads prompt"):
        check_data_dir(str(tmp_path), ["cute_swap_word"])
    with pytest.raises(ValueError) as e:  # every missing file named at once
        check_data_dir(str(tmp_path / "none"), ["cute_spell", "cute_sub_char"])
    assert "has no cute_spell.jsonl, cute_sub_char.jsonl: each task reads" in str(e.value)
    assert "docs/evaluation.md" in str(e.value)


def test_the_command_refuses_a_bad_cute_file_before_loading_the_model(tmp_path, capsys):
    model = tiny_hf_model(tmp_path / "model", vocab_size=48, tokens=48)
    before = sorted(os.listdir(model))
    data = tmp_path / "data"
    write(data, TASK, [{"prompt": 'Spell out the word "cat".', "answer": None}] * 2)
    code, _, err = run_main(
        capsys, "--model", str(model), "--tasks", "cute", "--data-dir", str(data)
    )
    assert code == 2 and "Traceback" not in err, err[-2000:]
    assert "--data-dir" in err and "has no cute_spell_inverse.jsonl, cute_contains_char" in err
    code, _, err = run_main(
        capsys, "--model", str(model), "--tasks", "cute_spell", "--data-dir", str(data)
    )
    assert code == 2 and "Traceback" not in err, err[-2000:]
    assert f"{data / (TASK + '.jsonl')} has 2 of 2 documents unreadable (line 1: no answer)" in err
    assert sorted(os.listdir(model)) == before  # refused before anything was evaluated
