"""The scripts refuse a bad option value before they work: exit status 2 and one error line that
names the flag and what it allows, no traceback (each case only parses its arguments)."""

import base64
import os
import subprocess
import sys

import pytest
from helpers import ROOT

RANK_IDS = 20
"""Ids of the tiny tiktoken rank file below"""
HF_IDS = 4
"""Tokens of the tiny tokenizer.json below"""


@pytest.fixture
def paths(tmp_path):
    """{rank_file}: a tiktoken rank file of RANK_IDS ids; {hf_dir}: a folder holding a
    tokenizer.json of HF_IDS tokens; {missing}: a path that is not there; {out}: a folder the
    case must not write."""
    from tokenizers import Tokenizer, models

    rank_file = tmp_path / "tokenizer.model"
    lines = [f"{base64.b64encode(chr(97 + i).encode()).decode()} {i}" for i in range(RANK_IDS)]
    rank_file.write_text("\n".join(lines) + "\n")
    hf_dir = tmp_path / "hf"
    hf_dir.mkdir()
    vocab = {"a": 0, "b": 1, " personality": 2, "[UNK]": 3}
    Tokenizer(models.WordLevel(vocab, unk_token="[UNK]")).save(str(hf_dir / "tokenizer.json"))
    return {
        "rank_file": str(rank_file),
        "hf_dir": str(hf_dir),
        "missing": str(tmp_path / "missing"),
        "out": str(tmp_path / "out"),
    }


CASES = {
    "vocab_support_mass": [
        ([], ["one of the arguments --vocab-file --hf-assets-path is required"]),
        (["--vocab-file", "{missing}"], ["--vocab-file", "not a file", "tiktoken rank file"]),
        (["--hf-assets-path", "{missing}"], ["--hf-assets-path", "no tokenizer.json"]),
        (
            ["--vocab-file", "{rank_file}", "--vocab", "10"],
            [f"--vocab must be a whole number >= {RANK_IDS}", "got 10"],
        ),
        (
            ["--vocab-file", "{rank_file}", "--vocab", "0"],
            [f"--vocab must be a whole number >= {RANK_IDS}", "got 0"],
        ),
        (
            ["--hf-assets-path", "{hf_dir}", "--vocab", "2"],
            [f"--vocab must be a whole number >= {HF_IDS}", "got 2"],
        ),
        (
            ["--vocab-file", "{rank_file}", "--token", " zebra"],
            ["--token ' zebra' is not a token of the vocabulary"],
        ),
    ],
    "probe_shortcuts": [
        ([], ["the following arguments are required: --hf-assets-path"]),
        (["--hf-assets-path", "{missing}"], ["--hf-assets-path", "no tokenizer.json"]),
        (
            ["--hf-assets-path", "{hf_dir}", "--items", "0"],
            ["--items must be >= 30 (items per probe", "got 0"],
        ),
        (
            ["--hf-assets-path", "{hf_dir}", "--pairs", "-1"],
            ["--pairs must be a whole number >= 0", "got -1"],
        ),
        (
            ["--hf-assets-path", "{hf_dir}", "--pairs", "2", "--shuffles", "-1"],
            ["--shuffles must be a whole number >= 0", "got -1"],
        ),
        (
            ["--hf-assets-path", "{hf_dir}", "--words-from", "{missing}"],
            ["--words-from", "has no manifest.json", "prefix_titan.prepare"],
        ),
        (
            ["--hf-assets-path", "{hf_dir}", "--words-file", "{missing}"],
            ["--words-file", "is not there: a word list file is asked for"],
        ),
        (
            ["--hf-assets-path", "{hf_dir}", "--words-file", "{hf_dir}"],
            ["--words-file", "is a folder (a shard folder is --words-from)"],
        ),
        (
            ["--hf-assets-path", "{hf_dir}", "--words-file", "{rank_file}"],
            ["--words-file", "tokenizer.model:1: 'YQ== 0' is not a line 'word count'"],
        ),
        (
            ["--hf-assets-path", "{hf_dir}", "--words-file", "{rank_file}", "--words-from", "x"],
            ["argument --words-from: not allowed with argument --words-file"],
        ),
    ],
    "bench_loss": [
        (["--tokens", "0"], ["--tokens must be a whole number >= 1", "got 0"]),
        (["--vocab", "0"], ["--vocab must be a whole number >= 1", "got 0"]),
        (["--repeats", "0"], ["--repeats must be a whole number >= 1", "got 0"]),
        (["--dim", "-1"], ["--dim must be a whole number >= 0", "got -1"]),
        (["--k", "0"], ["--k must be a whole number >= 1", "got 0"]),
        (["--chunk-tokens", "128", "0"], ["--chunk-tokens must be a whole number >= 1", "got 0"]),
        (["--row-block-mib", "-4"], ["--row-block-mib must be a whole number >= 1", "got -4"]),
        (["--device", "tpu"], ["--device", "'tpu'", "'cpu', 'cuda'"]),
        (["--vocab-file", "{missing}"], ["--vocab-file", "No such file"]),
        (
            ["--hf-assets-path", "{hf_dir}", "--vocab", "2"],
            ["--hf-assets-path", "--vocab 2", "model.vocab_size is 2"],
        ),
    ],
    "bench_data": [
        (["--docs", "0"], ["--docs must be a whole number >= 1", "got 0"]),
        (["--seq-len", "0"], ["--seq-len must be a whole number >= 1", "got 0"]),
        (["--files", "0"], ["--files must be a whole number >= 1", "got 0"]),
        (["--workers", "-1"], ["--workers must be a whole number >= 0", "got -1"]),
        (["--docs", "4", "--files", "8"], ["--docs must be >= --files (8", "got 4"]),
    ],
    "train_tokenizer": [
        (
            ["--out", "{out}", "--vocab-size", value],
            ["--vocab-size must be a whole number >= 258", "256 byte tokens", f"got {value}"],
        )
        for value in ("0", "-5", "257")
    ]
    + [  # more than the embedded corpus has pairs to merge for: refused, nothing written
        (
            ["--out", "{out}", "--vocab-size", "1000000"],
            ["--vocab-size: the embedded corpus gives at most", "or fewer, not 1000000"],
        )
    ],
}


@pytest.mark.parametrize(
    "script,args,expected",
    [
        # (each a process of its own, about 2 s: the fast tier runs each script's first case)
        pytest.param(script, args, expected, marks=[pytest.mark.slow] if i else [])
        for script, cases in CASES.items()
        for i, (args, expected) in enumerate(cases)
    ],
    ids=[
        f"{script}:{' '.join(args) or 'no-args'}"
        for script, cases in CASES.items()
        for args, _ in cases
    ],
)
def test_a_bad_input_is_one_error_line_naming_its_flag(script, args, expected, paths):
    args = [arg.format(**paths) for arg in args]
    out = subprocess.run(
        [sys.executable, f"scripts/{script}.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, (out.returncode, out.stderr[-3000:])
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    errors = [line for line in out.stderr.splitlines() if f"{script}.py: error: " in line]
    assert len(errors) == 1, out.stderr
    for text in expected:
        assert text in errors[0], (text, errors[0])
    assert "--probe-items" not in out.stderr  # the flag the user typed, not eval's
    assert not os.path.exists(paths["out"]), "a refused input wrote its output"
