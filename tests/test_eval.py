"""lm-eval end to end through our command, offline: local JSONL in each task's exact schema."""

import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from helpers import ROOT, holding_lock, train

pytestmark = pytest.mark.slow  # evaluates a trained and exported model


def run_eval(*args, check=True):
    """`python -m prefix_titan.eval ARGS` in a subprocess; returns the CompletedProcess."""
    out = subprocess.run(
        [sys.executable, "-m", "prefix_titan.eval", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


def unevaluated_copy(exported, tmp_path):
    """The shared export copied for one test, without the evaluations other tests left in it."""
    hf = tmp_path / "hf"
    shutil.copytree(exported / "hf", hf)
    (hf / "eval_results.json").unlink(missing_ok=True)
    shutil.rmtree(hf / "eval_items", ignore_errors=True)
    return hf


FIXTURES = {
    "hellaswag": [
        {
            "ind": i,
            "activity_label": "Cooking",
            "ctx_a": "A man takes a pan.",
            "ctx_b": "he",
            "ctx": "A man takes a pan. he",
            "source_id": f"s{i}",
            "split": "val",
            "split_type": "indomain",
            "label": str(i % 4),
            "endings": [
                "puts it on the stove.",
                "reads the [title] manual.",
                "returns the value.",
                "raises an exception.",
            ],
        }
        for i in range(6)
    ],
    "piqa": [
        {
            "goal": "To open a file for reading,",
            "sol1": "call open with mode r.",
            "sol2": "call close first.",
            "label": i % 2,
        }
        for i in range(6)
    ],
    "winogrande_debiased": [
        {
            "sentence": "The list was longer than the tuple because _ had more items.",
            "option1": "the list",
            "option2": "the tuple",
            "answer": str(1 + i % 2),
        }
        for i in range(6)
    ],
    "arc_easy": [
        {
            "id": f"q{i}",
            "question": "Which function returns the length of a list?",
            "choices": {"text": ["len", "sum", "max", "sorted"], "label": ["A", "B", "C", "D"]},
            "answerKey": "ABCD"[i % 4],
        }
        for i in range(6)
    ],
}


SECONDARY_FIXTURES = {
    "arc_challenge": [
        {
            "id": f"c{i}",
            "question": "Which keyword defines a function in Python?",
            "choices": {
                "text": ["def", "class", "lambda", "return"],
                "label": ["A", "B", "C", "D"],
            },
            "answerKey": "ABCD"[i % 4],
        }
        for i in range(6)
    ],
    "sciq": [
        {
            "question": "What does a list comprehension build?",
            "distractor1": "a tuple",
            "distractor2": "a module",
            "distractor3": "a thread",
            "correct_answer": "a list",
            "support": "A list comprehension builds a new list from an iterable.",
        }
        for _ in range(6)
    ],
}


CUTE_FIXTURES = {
    f"cute_{t}": [
        {
            "prompt": "Spell out the word, based on the following examples:\n\n1. Spell out the "
            'word "dog". Answer: "d o g"\n\nQuestion: Spell out the word "cat".',
            "answer": "c a t",
        }
        for _ in range(6)
    ]
    for t in (
        *("spell", "spell_inverse", "contains_char", "contains_word", "orth", "sem", "ins_char"),
        *("ins_word", "del_char", "del_word", "sub_char", "sub_word", "swap_char", "swap_word"),
    )
}
"""CUTE's documents as its hub dataset holds them (the prompt, its question last, and the
answer), one file per task"""


@pytest.fixture(scope="module")
def exported(module_tmp):
    """A tiny model trained a few steps through torchtitan's main, exported to HF format."""
    tmp = module_tmp
    # steps 2 and 4; a context of 128 (the export states it): cute_spell generates up to 64 tokens
    train(tmp, "--checkpoint.enable", "--checkpoint.interval", "2", "--training.seq_len", "128")
    from prefix_titan.evaluation.export import export

    config = [
        "--job.config_file",
        f"{ROOT}/train_configs/embedded_default.toml",
        "--job.dump_folder",
        str(tmp / "run"),
        "--model.hf_assets_path",
        str(tmp / "tokenizer"),
        "--training.seq_len",
        "128",  # as it trained
    ]
    export(config, str(tmp / "hf"), checkpoint=str(tmp / "run" / "checkpoint" / "step-4"))
    data = tmp / "data"
    data.mkdir()
    for task, rows in {**FIXTURES, **SECONDARY_FIXTURES}.items():
        (data / f"{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp


def test_eval_command_end_to_end(exported):
    out = run_eval(
        "--model", str(exported / "hf"), "--data-dir", str(exported / "data"), "--dtype", "float32"
    )
    results = json.load(open(exported / "hf" / "eval_results.json"))["results"]
    assert set(results) == set(FIXTURES)
    for metrics in results.values():
        assert 0.0 <= metrics["acc,none"] <= 1.0
    assert (
        "acc_norm,none" in results["hellaswag"]
        and "acc_norm,none" not in results["winogrande_debiased"]
    )
    assert (
        "| winogrande_debiased |" in out.stdout
        and "| task | acc | ± se | acc_norm | chance | bits/byte |" in out.stdout
    )
    (row,) = [r for r in out.stdout.splitlines() if r.startswith("| piqa |")]
    assert row.split("|")[3].strip() == f"{results['piqa']['acc_stderr,none']:.4f}"  # its se
    # Each task beside a uniform guess among its items' choices: WinoGrande and PIQA have two,
    # HellaSwag and ARC-Easy four (the fixtures' own counts).
    chance = json.load(open(exported / "hf" / "eval_results.json"))["chance"]
    want = {"winogrande_debiased": 0.5, "piqa": 0.5, "hellaswag": 0.25, "arc_easy": 0.25}
    assert chance == pytest.approx(want)
    assert "| winogrande_debiased |" in out.stdout and "| 0.5000 |" in out.stdout
    assert f"results written to {exported / 'hf' / 'eval_results.json'}" in out.stdout
    # Every item's outcome beside the results: the table's metric is their mean.
    from prefix_titan.evaluation.harness import read_items

    items = read_items(str(exported / "hf"))
    assert set(items) == set(FIXTURES)
    for task, rows in items.items():
        metric = results[task].get("acc_norm,none", results[task]["acc,none"])
        assert [r["doc_id"] for r in rows] == list(range(len(rows))) and len(rows) > 1
        assert sum(r["correct"] for r in rows) / len(rows) == pytest.approx(metric)
        assert all(r["gold_loglik"] < 0 and math.isfinite(r["gold_loglik"]) for r in rows)
    for noise in ("Generating ", "Loading weights", "Overwriting default num_fewshot"):
        assert noise not in out.stderr, noise
    # What scored each task, and which file its items came from (ASCII-filtered, as training)
    from prefix_titan.runs.checkpoints import sha256

    data = json.load(open(exported / "hf" / "eval_results.json"))
    for task in FIXTURES:
        digest = sha256(str(exported / "data" / f"{task}.jsonl"))[:16]
        assert data["versions"][task].endswith(f" ascii data sha256:{digest}"), data["versions"]
        assert data["setup"][task]["dtype"] == "float32" and data["setup"][task]["lm_eval"]
        assert data["ascii_filtered"][task] >= 0
    read_items(str(exported / "hf"), data["item_sha256"])  # the items the results name


def test_character_probes_end_to_end(exported):
    from prefix_titan.evaluation.harness import _outdated, read_items
    from prefix_titan.evaluation.probes import BLANK_TASKS, PROBE_TASKS, fewest_items

    printed = run_eval(
        "--model",
        str(exported / "hf"),
        "--tasks",
        "char_probes",
        "char_probes_blank",  # as the docs write it (the blank twins again: once each)
        "--limit",
        "40",
        "--dtype",
        "float32",
        "--replace",  # the shared export holds other tests' evaluations: probes evaluated again
    )
    results = json.load(open(exported / "hf" / "eval_results.json"))["results"]
    # (lm-eval tasks other tests evaluated there are kept: the limit decides nothing for probes)
    results = {t: m for t, m in results.items() if t in PROBE_TASKS + BLANK_TASKS}
    assert set(results) == set(PROBE_TASKS) | set(BLANK_TASKS)
    [line] = [x for x in printed.stdout.splitlines() if x.startswith("calibrated by the blank")]
    assert all(f" {task} 0." in line or f" {task} 1." in line for task in PROBE_TASKS), line
    checked = [x for x in printed.stdout.splitlines() if "checked for shortcuts" in x]
    flagged = [x for x in printed.stdout.splitlines() if "is answered without reading" in x]
    assert len(checked) + len(flagged) >= 1 and len(checked) <= 1, printed.stdout[-3000:]
    # the items each probe holds, as built (whole units: 39 of char_count's triples at 40)
    held = sorted(
        sum(1 for _ in open(exported / "hf" / "char_probes" / f"{t}.jsonl")) for t in PROBE_TASKS
    )
    at = f"{held[0]}" if held[0] == held[-1] else f"{held[0]}-{held[-1]}"
    assert held[-1] == 40 and held[0] < 40, held
    assert not checked or f"at {at} items a probe goes unseen" in checked[0], (at, checked)
    for task, m in results.items():
        assert 0.0 <= m["acc,none"] <= 1.0 and 0.0 < m["bits_per_byte,none"] < 100, task
        assert 0.0 <= m["acc_norm,none"] <= 1.0, task
    # The documents were generated from the exported tokenizer, built with --limit's 40 items per
    # task and read whole (char_count and char_last_letter: as many as the word list allows, from
    # a fifth and two fifths of them up);
    # each item's outcome keeps its word, queried letter, token count, lead and ending, and every
    # choice's log-likelihood.
    for task in PROBE_TASKS + BLANK_TASKS:
        lines = (exported / "hf" / "char_probes" / f"{task}.jsonl").read_text().splitlines()
        least = fewest_items(task.removesuffix("_blank"), 40)
        assert least <= len(lines) <= 40, (task, len(lines))
    # the probes as built (and read) checked for shortcuts, the check recorded with
    # the results and its table beside the probes: none found on these
    record = json.load(open(exported / "hf" / "eval_results.json"))
    assert set(record["probe_check"]) == set(PROBE_TASKS)
    # each probe recorded at the version its task file names (an evaluation of a later version
    # evaluates it again instead of keeping it)
    assert not any(_outdated(record, t) for t in PROBE_TASKS + BLANK_TASKS)
    older = {**record, "versions": {**record["versions"], "char_spell": 4.0, "embedding_probe": 3}}
    assert _outdated(older, "char_spell") and not _outdated(older, "char_count")
    assert _outdated(older, "embedding_probe") and not _outdated(older, "piqa")
    for task, check in record["probe_check"].items():
        lines = (exported / "hf" / "char_probes" / f"{task}.jsonl").read_text().splitlines()
        assert check["items"] == len(lines) and check["off"] == {}, (task, check)
    table = (exported / "hf" / "char_probes" / "shortcuts.md").read_text()
    assert table.startswith("| shortcut | char_spell") and "lookup: word length" in table
    items = read_items(str(exported / "hf"))
    for task in PROBE_TASKS:
        docs = [json.loads(x) for x in (exported / "hf" / "char_probes" / f"{task}.jsonl").open()]
        rows = items[task]
        assert len(rows) == len(docs) and [r["correct"] for r in rows] == [r["acc"] for r in rows]
        for r in rows:
            doc = docs[r["doc_id"]]
            assert r["word"] == doc["word"] and r["tokens"] == doc["tokens"]
            assert r.get("letter") == doc.get("letter")
            assert (r["lead"], r["ending"]) == (doc["lead"], doc["ending"])
            assert r["forms"] == doc["forms"] and r["known"] == doc["known"]
            assert len(r["logliks"]) == len(doc["choices"]) and r["gold_loglik"] < 0
            assert r["gold_loglik"] == r["logliks"][doc["gold"]] and r["gold"] == doc["gold"]
            assert r["gold_bytes"] == len(doc["choices"][doc["gold"]].encode())


def test_a_limit_is_a_seeded_sample_evaluated_quietly(exported, tmp_path):
    """--limit N evaluates N documents drawn with --limit-seed (recorded with the results, each
    item under its own document index), a character probe built with N items (at least 30) and
    read whole; without --progress no progress bar is printed."""
    from prefix_titan.evaluation.harness import LIMIT_SAMPLING, LIMIT_SEED, read_items, sample_docs

    hf = unevaluated_copy(exported, tmp_path)
    (hf / "export_source.json").unlink()  # not filed with the run: this test's own copy
    out = run_eval(
        "--model",
        str(hf),
        "--tasks",
        "piqa",
        "winogrande_debiased",
        "char_first_letter",
        "--data-dir",
        str(exported / "data"),
        "--limit",
        "3",
        "--dtype",
        "float32",
    )
    recorded = json.load(open(hf / "eval_results.json"))
    assert recorded["limit"] == 3 and recorded["limit_seed"] == LIMIT_SEED
    assert recorded["limit_sampling"] == LIMIT_SAMPLING
    items = read_items(str(hf))
    piqa = [r["doc_id"] for r in items["piqa"]]  # drawn in proportion to the gold answers
    assert piqa == sample_docs(6, 3, LIMIT_SEED, "piqa", [r["label"] for r in FIXTURES["piqa"]])
    wino = [int(r["answer"]) - 1 for r in FIXTURES["winogrande_debiased"]]  # its context's index
    drawn = [r["doc_id"] for r in items["winogrande_debiased"]]
    assert drawn == sample_docs(6, 3, LIMIT_SEED, "winogrande_debiased", wino)
    letter = [r["doc_id"] for r in items["char_first_letter"]]
    docs = (hf / "char_probes" / "char_first_letter.jsonl").read_text().splitlines()
    assert letter == list(range(len(docs))) and len(docs) == 30  # built with the limit (>= 30)
    for r in items["char_first_letter"]:  # each item under its own document's index
        assert r["word"] == json.loads(docs[r["doc_id"]])["word"]
    assert "it/s]" not in out.stderr and "%|" not in out.stderr, out.stderr[-2000:]


def test_a_task_scored_on_one_item_and_a_limit_past_its_items(exported, tmp_path):
    """--limit 1: lm-eval records the standard error as 'N/A', shown as n/a (the table ended
    eval with exit 2 after writing the results, and every later evaluation of the task too).
    --limit 1000 on piqa's 6 items reads them all: an evaluation without a limit keeps it (it
    was refused as made with other settings)."""
    hf = unevaluated_copy(exported, tmp_path)
    (hf / "export_source.json").unlink()  # not filed with the run: this test's own copy
    base = ["--model", str(hf), "--data-dir", str(exported / "data"), "--dtype", "float32"]
    base += ["--tasks", "piqa"]
    one = run_eval(*base, "--limit", "1")
    assert "| piqa | " in one.stdout and " | n/a | " in one.stdout, one.stdout
    again = run_eval(*base, "--limit", "1")  # kept, its table printed again
    assert "piqa evaluated already" in again.stderr and " | n/a | " in again.stdout
    run_eval(*base, "--limit", "1000", "--replace")
    whole = run_eval(*base)
    assert "piqa evaluated already" in whole.stderr, whole.stderr[-2000:]


def test_the_secondary_tasks_and_bits_per_byte_from_the_items(exported, tmp_path):
    """`--tasks secondary` (ARC-Challenge, SciQ) offline; every item records its gold answer's
    log-likelihood and bytes, whose ratio the report gives as bits per byte."""
    from prefix_titan.evaluation.harness import bits_per_byte, read_items

    hf = unevaluated_copy(exported, tmp_path)
    (hf / "export_source.json").unlink()  # not filed with the run: this test's own copy
    out = run_eval(
        "--model",
        str(hf),
        "--tasks",
        "secondary",
        "--data-dir",
        str(exported / "data"),
        "--dtype",
        "float32",
    )
    results = json.load(open(hf / "eval_results.json"))["results"]
    assert set(results) == set(SECONDARY_FIXTURES)
    items = {t: read_items(str(hf))[t] for t in SECONDARY_FIXTURES}
    for task, rows in items.items():
        assert len(rows) == 6 and all(r["gold_bytes"] > 0 for r in rows), task
        bpb = bits_per_byte(rows)
        nats = -sum(r["gold_loglik"] for r in rows) / sum(r["gold_bytes"] for r in rows)
        assert bpb == pytest.approx(nats / math.log(2)) and bpb > 0, task
    # SciQ's gold is "a list" after lm-eval's space: 7 bytes.
    assert {r["gold_bytes"] for r in items["sciq"]} == {len(" a list")}
    for task, rows in items.items():  # the printed table's bits/byte: the items' (lm-eval has none)
        line = next(x for x in out.stdout.splitlines() if x.startswith(f"| {task} |"))
        assert line.rstrip(" |").endswith(f"{bits_per_byte(rows):.4f}"), line


def test_embedding_probe_on_an_export_and_on_a_run_folder(exported, tmp_path):
    """`eval --tasks embedding_probe` beside an lm-eval task, and the command on the run folder:
    both read the same step-4 weights, so they give the same scores."""
    from prefix_titan.evaluation.embedding_probe import TASKS

    hf = unevaluated_copy(exported, tmp_path)
    run_eval(
        "--model",
        str(hf),
        "--tasks",
        "embedding_probe",
        "piqa",
        "--data-dir",
        str(exported / "data"),
        "--dtype",
        "float32",
        "--replace",  # filed with the run, which holds other tests' evaluations of step 4
    )
    results = json.load(open(hf / "eval_results.json"))["results"]
    assert set(results) == {"embedding_probe", "piqa"}
    probe = results["embedding_probe"]
    assert probe["tokens"] > 1000
    for vectors in ("input", "output"):
        for task in TASKS:
            score = probe[f"{vectors}_{task},none"]
            assert probe[f"{vectors}_{task}_low"] <= score <= probe[f"{vectors}_{task}_high"]

    def run_probe(folder, check=False):
        return subprocess.run(
            [sys.executable, "-m", "prefix_titan.embedding_probe", str(folder)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=check,
        )

    out = run_probe(exported / "run", check=True)
    assert "| input | trained |" in out.stdout and "| output | fresh init |" in out.stdout
    assert "the report reads the embedding probe of `python -m prefix_titan.eval" in out.stdout
    filed = json.loads((exported / "run" / "evals" / "step-4" / "embedding_probe.json").read_text())
    assert filed["input"]["trained"]["letters"][0] == pytest.approx(probe["input_letters,none"])
    bad = run_probe(exported / "data")
    assert bad.returncode == 2 and "neither an exported model folder" in bad.stderr
    # the writer's lock of the folder it writes into, as an evaluation holds it (it wrote into a
    # run folder that a training was writing)
    holder = holding_lock(exported / "run")
    try:
        busy = run_probe(exported / "run")
    finally:
        holder.kill()
        holder.wait()
    assert busy.returncode == 2 and f"is being written by pid {holder.pid}" in busy.stderr, busy


@pytest.mark.slow  # two commands that load torch
def test_an_export_cut_short_is_refused_in_one_line(exported, tmp_path):
    """A model.safetensors cut short (a copy interrupted) ended eval and the embedding probe in
    the loader's traceback; now one error line names the file and says to export again."""
    hf = unevaluated_copy(exported, tmp_path)
    weights = hf / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    for command in (
        ["prefix_titan.eval", "--model", str(hf), "--tasks", "embedding_probe"],
        ["prefix_titan.embedding_probe", str(hf)],
    ):
        out = subprocess.run(
            [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=600
        )
        assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr[-3000:]
        assert f"{weights} cannot be read (" in out.stderr and "export the checkpoint again" in (
            out.stderr
        ), out.stderr[-3000:]
    gone = run_eval("--model", str(tmp_path / "nowhere"), "--tasks", "piqa", check=False)
    assert "does not exist" in gone.stderr and gone.returncode != 0, gone.stderr


def test_loglikelihood_matches_torchtitan(exported):
    """One example's log-likelihood as lm-eval computes it == our own from the torchtitan model."""
    from lm_eval.models.huggingface import HFLM
    from torchtitan.components.tokenizer import HuggingFaceTokenizer
    from torchtitan.models.llama3 import Transformer

    from prefix_titan.evaluation.export import load_torchtitan_state
    from prefix_titan.model.flavors import FLAVORS

    lm = HFLM(
        pretrained=str(exported / "hf"),
        dtype="float32",
        add_bos_token=True,
        batch_size=1,
        device="cpu",
    )
    context, continuation = (
        "Question: To open a file for reading,\nAnswer:",
        " call open with mode r.",
    )
    [(lm_ll, _)] = lm.loglikelihood([_Request(context, continuation)])

    tok = HuggingFaceTokenizer(str(exported / "tokenizer"))
    ctx = tok.encode(context, add_bos=True, add_eos=False)
    whole = tok.encode(context + continuation, add_bos=True, add_eos=False)
    assert whole[: len(ctx)] == ctx  # the continuation starts on a token boundary here
    args = replace(FLAVORS["tiny"], max_seq_len=64)
    model = Transformer(args)
    model.load_state_dict(
        load_torchtitan_state(str(exported / "run" / "checkpoint" / "step-4"), args)
    )
    with torch.no_grad():
        logp = torch.log_softmax(model.eval()(torch.tensor([whole[:-1]])).double(), -1)[0]
    ours = sum(logp[i - 1, whole[i]].item() for i in range(len(ctx), len(whole)))
    assert math.isfinite(ours) and ours < 0
    assert lm_ll == pytest.approx(ours, abs=1e-3)


def test_cute_task_offline(exported, tmp_path):
    rows = [
        {
            "prompt": 'Spell out the word "cat", based on the following examples:\n\n'
            'Spell out the word "dog": d o g\nSpell out the word "cat":',
            "answer": " c a t",
        }
    ] * 3
    (tmp_path / "cute_spell.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run_eval(
        "--model",
        str(exported / "hf"),
        "--data-dir",
        str(tmp_path),
        "--tasks",
        "cute_spell",
        "--dtype",
        "float32",
        "--replace",  # the shared export holds other tests' evaluations
    )
    metrics = json.load(open(exported / "hf" / "eval_results.json"))["results"]["cute_spell"]
    assert metrics["exact_match,none"] in (0.0, 1.0)  # three identical documents


def test_all_checkpoints_gives_a_curve(exported, tmp_path, capsys):
    from prefix_titan.evaluation.harness import evaluate_run, task_index

    # A copy of the run: its evaluations on a --limit sample stay out of the run the other tests
    # evaluate whole (eval refuses to file two that differ for one task and step).
    run = tmp_path / "run"
    shutil.copytree(exported / "run", run)
    index = task_index()  # lm-eval's index of every task, built once for both evaluations
    # The run's own run_config.json says which flavor and tokenizer it used: no TOML needed.
    curve = evaluate_run(
        str(run),
        tasks=["piqa", "arc_easy"],
        limit=3,
        data_dir=str(exported / "data"),
        dtype="float32",
        task_manager=index,
    )
    assert sorted(curve) == [2, 4]
    saved = json.load(open(run / "eval_curve.json"))
    assert sorted(saved) == ["2", "4"] and set(saved["4"]) == {"piqa", "arc_easy"}
    assert (run / "hf" / "step-2" / "config.json").exists()
    # Each step's table gives the tasks' chance levels (PIQA: two choices), as --model's does.
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| piqa |")]
    assert len(rows) == 2 and all(r.split("|")[5].strip() == "0.5000" for r in rows), rows
    # Again with one more task: only that one is evaluated (a crashed or widened evaluation
    # resumes); the curve holds all three.
    before = (run / "hf" / "step-4" / "eval_items" / "piqa.jsonl").stat().st_mtime_ns
    curve = evaluate_run(
        str(run),
        tasks=["piqa", "arc_easy", "winogrande_debiased"],
        limit=3,
        data_dir=str(exported / "data"),
        dtype="float32",
        task_manager=index,
    )
    out = capsys.readouterr().out
    assert "| piqa |" not in out and out.count("| winogrande_debiased |") == 2, out
    assert out.count("piqa, arc_easy evaluated already with these settings, kept") == 2
    assert set(curve[4]) == {"piqa", "arc_easy", "winogrande_debiased"}
    assert (run / "hf" / "step-4" / "eval_items" / "piqa.jsonl").stat().st_mtime_ns == before
    # From another file of piqa's documents: piqa is evaluated again (not kept from the other
    # file), the tasks read from the same files are kept.
    other = tmp_path / "other"
    shutil.copytree(exported / "data", other)
    rows = reversed(FIXTURES["piqa"])
    (other / "piqa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    curve = evaluate_run(
        str(run),
        tasks=["piqa", "arc_easy", "winogrande_debiased"],
        limit=3,
        data_dir=str(other),
        dtype="float32",
        task_manager=index,
    )
    out = capsys.readouterr()
    assert out.out.count("| piqa |") == 2 and "| arc_easy |" not in out.out, out.out
    assert out.err.count("piqa evaluated before in") == 2, out.err
    assert "from other documents (from another file now): evaluated again" in out.err
    recorded = json.load(open(run / "hf" / "step-4" / "eval_results.json"))["versions"]
    from prefix_titan.runs.checkpoints import sha256

    assert sha256(str(other / "piqa.jsonl"))[:16] in recorded["piqa"]
    assert set(curve[4]) == {"piqa", "arc_easy", "winogrande_debiased"}


class _Request:
    """The part of lm-eval's Instance that `loglikelihood` reads."""

    def __init__(self, context, continuation):
        self.args = (context, continuation)


def run_main(capsys, *args):
    """`python -m prefix_titan.eval ARGS` in this process: (exit status, stderr)."""
    from prefix_titan.eval import main

    with pytest.raises(SystemExit) as e:
        main(list(args))
    return e.value.code, capsys.readouterr().err


def test_missing_fixture_is_refused(exported, tmp_path, capsys):
    code, err = run_main(
        capsys,
        *("--model", str(exported / "hf"), "--data-dir", str(tmp_path), "--tasks", "piqa"),
        "--replace",  # (the shared export may hold piqa already: kept, its documents not read)
    )
    assert code == 2 and "has no piqa.jsonl" in err


def test_a_data_dir_file_in_another_schema_names_the_fields_its_task_reads(
    exported, tmp_path, capsys
):
    rows = [{"question": "q", "sol1": "a", "sol2": "b", "label": 0}] * 3  # `goal` misnamed
    (tmp_path / "piqa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, err = run_main(
        capsys,
        *("--model", str(exported / "hf"), "--data-dir", str(tmp_path), "--tasks", "piqa"),
        "--replace",  # (the shared export holds other tests' evaluations; nothing is written)
    )
    assert code == 2 and "Traceback" not in err, err[-2000:]
    assert f"{tmp_path / 'piqa.jsonl'} has 3 of 3 documents unreadable (line 1: no goal)" in err
    assert "piqa reads goal, sol1, sol2, label from each line's JSON object" in err


def test_the_named_fields_are_those_of_the_tasks_own_schema():
    from prefix_titan.evaluation.harness import FIELDS

    fixtures = {**FIXTURES, **SECONDARY_FIXTURES, **CUTE_FIXTURES}
    assert set(FIELDS) == set(fixtures)
    for task, fields in FIELDS.items():
        assert {f.split(" ")[0] for f in fields} <= set(fixtures[task][0]), task


def test_a_task_typo_names_the_tasks_that_exist(exported, capsys):
    code, err = run_main(capsys, "--model", str(exported / "hf"), "--tasks", "hellswag")
    assert code == 2 and "Traceback" not in err
    assert "no task named 'hellswag' (did you mean hellaswag" in err
    assert "char_probes" in err and "hellaswag piqa winogrande_debiased arc_easy" in err


NO_PROXY_VARIABLES = [f"{k}{s}" for k in ("http", "https", "all") for s in ("_proxy", "_PROXY")]


def test_an_unreachable_hub_names_the_offline_alternatives(exported, monkeypatch):
    """A hub that is not reached (here an endpoint that refuses connections) is found in one try:
    the cache is read at once, without the HTTP client's retries, and a dataset not there ends
    the command with the offline alternatives."""
    for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", *NO_PROXY_VARIABLES):
        monkeypatch.delenv(v, raising=False)  # (a proxy would answer for the port below)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: refused
    monkeypatch.setenv("HF_HOME", str(exported / "empty_hf_home"))
    out = run_eval(
        "--model", str(exported / "hf"), "--tasks", "piqa", "--limit", "1", "--replace", check=False
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "warning: the Hugging Face hub (http://127.0.0.1:9) was not reached" in out.stderr
    assert "Retrying" not in out.stderr, out.stderr[-2000:]
    assert (
        "could not reach the Hugging Face hub to download the datasets of --tasks piqa"
        in out.stderr
    )
    assert "--tasks char_probes" in out.stderr and "--data-dir DIR" in out.stderr


def test_the_readme_flow_export_eval_report_connects(exported, tmp_path):
    """docs/evaluation.md: export the run to a folder outside it, evaluate there, report on the runs' folder."""
    from prefix_titan.evaluation.probes import BLANK_TASKS, PROBE_TASKS

    env = dict(os.environ)
    hf = tmp_path / "hf" / "embedded_default"
    config = [
        "--config",
        f"{ROOT}/train_configs/embedded_default.toml",
        "--job.dump_folder",
        str(exported / "run"),
        "--model.hf_assets_path",
        str(exported / "tokenizer"),
        "--training.seq_len",
        "128",
    ]
    subprocess.run(
        [sys.executable, "-m", "prefix_titan.export", *config, "--out", str(hf)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    assert oct(hf.stat().st_mode & 0o777) == oct(0o777 & ~_umask())  # not a private folder
    for f in hf.iterdir():
        assert oct(f.stat().st_mode & 0o777) == oct(0o666 & ~_umask()), f.name
    source = json.loads((hf / "export_source.json").read_text())
    assert source["step"] == 4 and source["run_dir"] == str(exported / "run")
    run_eval(  # filed with the run, which holds other tests' evaluations of step 4: replaced
        "--model",
        str(hf),
        "--tasks",
        "char_probes",
        "--limit",
        "20",
        "--dtype",
        "float32",
        "--replace",
    )
    filed = exported / "run" / "evals" / "step-4" / "eval_results.json"
    # (beside the tasks other tests filed for step 4 with the same settings, which are kept)
    assert set(PROBE_TASKS) | set(BLANK_TASKS) <= set(json.loads(filed.read_text())["results"])
    out = subprocess.run(
        [sys.executable, "-m", "prefix_titan.report", str(exported)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = (exported / "report" / "report.md").read_text()
    assert "No evaluation results yet" not in report, report
    lines = report.splitlines()
    header = [c.strip() for c in next(x for x in lines if x.startswith("| arm |")).split("|")]
    row = [c.strip() for c in next(x for x in lines if x.startswith("| prefix_tau0.5 ")).split("|")]
    cell = {
        name: float(value.split()[0])
        for name, value in zip(header, row)
        if value.lstrip("-")[:1].isdigit()
    }
    assert 0 <= cell["char acc"] <= 1 and 0 <= cell["char acc, calibrated"] <= 1, row
    assert "char acc - blank" in cell, row
    assert -1 <= cell["char composite"] <= 1 and 0 <= cell["prefix-shaped acc"] <= 1, row
    assert out.returncode == 0


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("cuda,want", [(True, "bfloat16"), (False, "float32")])
def test_the_dtype_follows_the_device_unless_named(monkeypatch, tmp_path, cuda, want):
    """bf16 on a GPU, fp32 on a CPU (whose bf16 matmuls are slow); --dtype overrides both; the
    log-likelihoods come from an fp32 log-softmax either way."""
    import prefix_titan.eval as cli
    from prefix_titan.evaluation.harness import model_args

    seen = []
    monkeypatch.setattr(cli, "evaluate", lambda model, **kw: seen.append(kw["dtype"]) or {})
    monkeypatch.setattr(cli, "table", lambda results: "")
    cli.main(["--model", str(tmp_path), "--tasks", "char_probes"])
    cli.main(["--model", str(tmp_path), "--tasks", "char_probes", "--dtype", "bfloat16"])
    cli.main(["--model", str(tmp_path), "--tasks", "char_probes", "--dtype", "fp32"])  # export's
    resolved = [model_args("m", dtype, cuda) for dtype in seen]
    assert [args["dtype"] for args in resolved] == [want, "bfloat16", "float32"]
    assert all(args["softmax_dtype"] == "float32" for args in resolved)
    assert resolved[0]["device"] == ("cuda" if cuda else "cpu")


def test_another_export_of_a_step_is_not_filed_beside_the_first(exported, tmp_path):
    """Two exports of one step that score differently (weights in fp32 and in bf16): the
    second's results are not filed with the run beside the first's (the report would read a
    mix under one step), but refused, naming both; with --replace they replace them whole."""
    from prefix_titan.evaluation.export import export
    from prefix_titan.evaluation.harness import evaluate

    run = shutil.copytree(exported / "run", tmp_path / "run")
    shutil.rmtree(run / "evals", ignore_errors=True)  # (other tests' evaluations)
    config = [
        *("--job.config_file", f"{ROOT}/train_configs/embedded_default.toml"),
        *("--job.dump_folder", str(run), "--model.hf_assets_path", str(exported / "tokenizer")),
        *("--training.seq_len", "128"),
    ]
    step = str(run / "checkpoint" / "step-4")
    fp32 = export(config, str(tmp_path / "fp32"), checkpoint=step)
    bf16 = export(config, str(tmp_path / "bf16"), checkpoint=step, dtype="bf16")
    evaluate(fp32, tasks=["embedding_probe"])
    filed = run / "evals" / "step-4" / "eval_results.json"
    assert json.loads(filed.read_text())["export"] == {"dtype": "float32", "context": 128}
    with pytest.raises(ValueError) as e:
        evaluate(bf16, tasks=["embedding_probe"])
    assert str(e.value).startswith(
        f"{filed} holds the results of another export of this step ({fp32}: weights float32, "
        f"context 128), and {bf16} is another (weights bfloat16, context 128): the report reads "
        "one evaluation per step"
    )
    assert "pass --replace" in str(e.value)
    assert not os.path.exists(os.path.join(bf16, "eval_results.json"))  # refused before
    evaluate(bf16, tasks=["embedding_probe"], replace=True)
    record = json.loads(filed.read_text())
    assert record["export"] == {"dtype": "bfloat16", "context": 128}
    assert record["exported_to"] == os.path.abspath(bf16)
    # the export `eval --all-checkpoints` makes in the run (RUN/hf/step-N), which the report
    # reads too: another export of the step is refused, --replace or not
    in_run = run / "hf" / "step-4"
    in_run.mkdir(parents=True)
    other = {"model": str(in_run), "export": {"dtype": "float32", "context": 128}, "results": {}}
    (in_run / "eval_results.json").write_text(json.dumps(other))
    with pytest.raises(ValueError, match=r"hf/step-4/eval_results.json holds the results of an"):
        evaluate(bf16, tasks=["embedding_probe"], replace=True)


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_an_evaluation_stopped_says_what_is_kept_and_what_resumes_it(monkeypatch, capsys, how):
    """SIGTERM ended an evaluation without a word (status -15), Ctrl-C in lm-eval's traceback:
    one line each, exit 143 / 130, the process's own SIGTERM handler back in place after."""
    import signal
    import time

    import prefix_titan.eval as eval_module

    def stopped(argv):
        if how == "SIGTERM":
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # (the handler raises here)
        raise KeyboardInterrupt

    monkeypatch.setattr(eval_module, "_main", stopped)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as e:
        eval_module.main(["--model", "m"])
    assert e.value.code == (143 if how == "SIGTERM" else 130)
    said = "terminated" if how == "SIGTERM" else "interrupted"
    assert capsys.readouterr().err == (
        f"{said}: the evaluation stopped; the results written before are kept, and the same "
        "command evaluates what is left (tasks evaluated already with its settings are kept, not "
        "evaluated again)\n"
    )
    assert signal.getsignal(signal.SIGTERM) is before
