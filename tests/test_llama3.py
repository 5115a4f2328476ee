"""The real Llama-3 tokenizer, converted offline from the llama-models package, and everything
that depends on the real vocabulary: prefix sets (K = 86), the vocab-support table of
docs/objectives.md, the kernel on real prefix sets, uint32 shards, the character probes and an
export's tokenizer."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from prefix_titan.data.corpus import embedded_documents
from prefix_titan.objectives import IGNORE_INDEX, target_loss
from prefix_titan.objectives.reference import reference_loss

pytestmark = pytest.mark.slow  # the real Llama-3 vocabulary: 128K-entry tables

ROOT = Path(__file__).resolve().parent.parent
V = 128256
PERSONALITY = " personality"


@pytest.fixture(scope="module")
def reference():
    from prefix_titan.data.tokenizers import llama3_tokenizer_files

    return llama3_tokenizer_files()[3]  # llama-models' own tiktoken tokenizer


@pytest.fixture(scope="module")
def hf(llama3_dir):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(os.path.join(llama3_dir, "tokenizer.json"))


def varied_text() -> str:
    """The embedded corpus, plus what stresses a pre-tokenizer: non-ASCII scripts and emoji,
    digit runs, whitespace runs, contractions in both cases, punctuation runs."""
    extra = [
        "héllo wörld — naïve café, Straße, 東京タワー, Привет мир, مرحبا, 😀🚀👍🏽",
        "1 12 123 1234 12345 3.14159 2026-11-23 0x1F 1e-05 100,000,000",
        "a  b   c    d\t\te\n\n\nf \n \n g      \r\n\r\nend   ",
        "it's I'm you're we've they'll she'd IT'S DON'T We'Ve",
        "!!! ??? ... ---- ==== ((())) {{}} <<>> ~~~ ``` '' \"\" ;;",
    ]
    return "\n\n".join([*embedded_documents(), *extra])


def test_converted_tokenizer_encodes_exactly_like_tiktoken(reference, hf):
    text = varied_text()
    assert len(text) > 1_000_000
    want = reference.model.encode(text, allowed_special=set(), disallowed_special=())
    got = hf.encode(text, add_special_tokens=False).ids
    assert got == want
    for line in varied_text().splitlines()[-12:]:  # short strings too (edge of the pattern)
        assert hf.encode(line, add_special_tokens=False).ids == reference.model.encode(
            line, allowed_special=set(), disallowed_special=()
        )


def test_every_special_token_has_its_id(reference, hf, llama3_dir):
    assert len(reference.special_tokens) == 256
    for token, token_id in reference.special_tokens.items():
        assert hf.encode(token, add_special_tokens=False).ids == [token_id]
        assert hf.id_to_token(token_id) == token
    assert hf.get_vocab_size(with_added_tokens=True) == V


def test_torchtitan_and_transformers_load_it_with_bos_and_eos(llama3_dir):
    from torchtitan.components.tokenizer import HuggingFaceTokenizer
    from transformers import AutoTokenizer

    titan = HuggingFaceTokenizer(llama3_dir)
    assert (titan.bos_id, titan.eos_id, titan.get_vocab_size()) == (128000, 128001, V)
    assert titan.encode("hello", add_bos=True, add_eos=True) == [128000, 15339, 128001]
    auto = AutoTokenizer.from_pretrained(llama3_dir)
    assert (auto.bos_token_id, auto.eos_token_id) == (128000, 128001)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in Path(llama3_dir).iterdir()}
    assert all(m == oct(0o666 & ~_umask()) for m in modes.values()), modes


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_the_script_writes_it(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "scripts/download_tokenizer.py",
            "--source",
            "llama-models",
            "--out",
            str(tmp_path / "l3"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    config = json.loads((tmp_path / "l3" / "tokenizer_config.json").read_text())
    assert config["bos_token"] == "<|begin_of_text|>" and config["eos_token"] == "<|end_of_text|>"
    assert (tmp_path / "l3" / "tokenizer.json").stat().st_size > 5_000_000


def test_token_texts_are_the_tokens_bytes(llama3_texts):
    """Each id's text (token_texts: decoded after another token) is its tiktoken bytes, where
    they are ASCII, for every id: the texts of the tables runs recorded."""
    from prefix_titan.data.tokenizers import llama3_tokenizer_files
    from prefix_titan.objectives import tiktoken_texts

    assert llama3_texts == tiktoken_texts(llama3_tokenizer_files()[0], V)
    assert llama3_texts[-256:] == [None] * 256  # the special tokens


def test_prefix_table_has_86_entries_per_row(llama3_tables):
    for _, table in llama3_tables.values():
        assert table.vocab_size == V
        assert table.idx.shape[1] == 86


@pytest.mark.parametrize(
    "normalize", [False, True], ids=["unnormalized-prefix", "normalized-vocab"]
)
def test_personality_row_hand_checked(llama3_texts, llama3_tables, normalize):
    spec, table = llama3_tables[normalize]
    gold = llama3_texts.index(PERSONALITY)
    members = [i for i, t in enumerate(llama3_texts) if t and PERSONALITY.startswith(t)]
    assert len(members) == 10  # " ", " p", " pe", " per", " pers", " person", ...
    score = {i: len(llama3_texts[i]) / (len(PERSONALITY) if normalize else 1) for i in members}
    # support "vocab": the V - |S| other tokens score 0 and keep weight e^0 each.
    outside = V - len(members) if spec.support == "vocab" else 0
    z = sum(math.exp(s / spec.tau) for s in score.values()) + outside
    row = table.dense(torch.tensor([gold]))[0].double()
    for i in members:
        want = math.exp(score[i] / spec.tau) / z
        assert row[i].item() == pytest.approx(want, rel=1e-5, abs=1e-12)
    others = [i for i in range(V) if i not in members]
    torch.testing.assert_close(
        row[others],
        torch.full((len(others),), outside and 1 / z, dtype=torch.float64),
        rtol=1e-5,
        atol=1e-12,
    )
    assert row.sum().item() == pytest.approx(1.0, abs=1e-6)


def test_the_vocab_support_table_is_what_the_script_computes(
    llama3_dir, llama3_tables, llama3_texts
):
    out = subprocess.run(
        [sys.executable, "scripts/vocab_support_mass.py", "--hf-assets-path", llama3_dir],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    rows = [line for line in out.splitlines() if re.match(r"\| \d", line)]
    assert len(rows) == 6
    page = (ROOT / "docs" / "objectives.md").read_text()
    for row in rows:
        assert row in page, row
    # The script's shortcut (only the gold's prefix set keeps its text) against the full tables.
    gold = llama3_texts.index(PERSONALITY)
    full = [
        f"{t.dense(torch.tensor([gold]))[0, gold].item():.3g}" for _, t in llama3_tables.values()
    ]
    assert f"| 0.5 | {full[0]} | 0.997 | 0.246 | {full[1]} |" in rows


@pytest.mark.parametrize(
    "normalize", [False, True], ids=["unnormalized-prefix", "normalized-vocab"]
)
def test_kernel_matches_reference_on_real_prefix_sets(llama3_tables, normalize, seed):
    _, table = llama3_tables[normalize]
    rich = torch.argsort((table.weight > 0).sum(1), descending=True)[:40]  # long prefix sets
    labels = torch.cat([rich, torch.randint(0, V, (8,)), torch.tensor([IGNORE_INDEX] * 2)])
    logits = (torch.randn(len(labels), V) * 4).requires_grad_()
    ref_logits = logits.detach().double().requires_grad_()  # float64: the reference is exact
    got = target_loss(logits, labels, table.tensors("cpu"))
    ref = reference_loss(ref_logits, labels, table, dtype=torch.float64)
    (got[0] * 0.5).backward()
    (ref[0] * 0.5).backward()
    for g, r, what in (
        (got[0], ref[0], "objective"),
        (got[1], ref[1], "plain CE"),
        (logits.grad, ref_logits.grad, "gradient"),
    ):
        torch.testing.assert_close(
            g.double(),
            r,
            atol=2e-5,
            rtol=2e-5,
            msg=lambda m, what=what: f"{what} (seed {seed}): {m}",
        )


def test_prepare_writes_uint32_shards_the_loader_reads(llama3_dir, tmp_path):
    from torchtitan.components.tokenizer import HuggingFaceTokenizer

    from prefix_titan.data.prepare import prepare
    from prefix_titan.data.shards import ShardedTokens

    m = prepare(
        "embedded",
        llama3_dir,
        str(tmp_path / "shards"),
        tokens=200_000,
        val_tokens=20_000,
        val_every=20,
        shard_tokens=50_000,
        progress=False,
    )
    assert m["dtype"] == "uint32"
    tok = HuggingFaceTokenizer(llama3_dir)
    tokens = ShardedTokens(str(tmp_path / "shards"), "train", tok)
    ids = tokens[:]
    assert len(ids) >= 200_000 and ids.max() < V and (ids > 65535).any()  # needs 32 bits
    ends = np.flatnonzero(ids == tok.eos_id)
    first = ids[: ends[0] + 1].tolist()
    assert first[0] == tok.bos_id
    text = tok.decode(first[1:-1])
    assert text in set(embedded_documents())
    assert tok.encode(text, add_bos=True, add_eos=True) == first


def test_character_probes_from_the_real_vocabulary(llama3_dir, llama3_texts):
    """The probes built for Llama-3's vocabulary: 2,000 items each (char_count: as many as the
    word list allows), single- and multi-token words, prefixes that are Llama-3 tokens, and every
    shortcut within 5 points of chance (the lookups not above it; the lead's reader on the
    probes past the lead; the documented residuals under their own bounds); docs/probes.md
    shows the table that scripts/probe_shortcuts.py prints."""
    from tokenizers import Tokenizer

    from prefix_titan.evaluation.probes import (
        PAST_THE_LEAD,
        PROBE_TASKS,
        build_probes,
        embedded_word_counts,
        fewest_items,
    )
    from prefix_titan.evaluation.shortcuts import (
        READERS,
        off_chance,
        reference,
        shortcut_accuracies,
        token_pieces,
    )

    tok = Tokenizer.from_file(os.path.join(llama3_dir, "tokenizer.json"))
    probes = build_probes(tok)
    vocab = {t for t in llama3_texts if t}
    ref = reference(embedded_word_counts())
    pieces = token_pieces(tok)
    for task in PROBE_TASKS:
        items = probes[task]
        assert fewest_items(task, 2000) <= len(items) <= 2000, task
        tokens = {min(i["tokens"], 2) for i in items}
        assert tokens == {1, 2}, task  # single- and multi-token words
        accuracies = shortcut_accuracies(items, pieces, ref, task)
        assert not off_chance(accuracies, items, task), (task, accuracies)
        if task in PAST_THE_LEAD:
            assert accuracies[READERS[0]] is not None, task
    # char_spell credits the lead's letters (docs/probes.md): the reader finds most golds there
    spell = shortcut_accuracies(probes["char_spell"], pieces, ref, "char_spell")
    assert spell[READERS[0]] > 0.8
    yes = [d for d in probes["char_prefix"] if d["gold"] == 1]
    assert yes and all(f" {d['letter']}" in vocab for d in yes)
    out = subprocess.run(
        [sys.executable, "scripts/probe_shortcuts.py", "--hf-assets-path", llama3_dir],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    page = (ROOT / "docs" / "probes.md").read_text()
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert len(rows) >= 10 and all(row in page for row in rows), out


def test_an_export_tokenizes_like_torchtitan(llama3_dir, tmp_path):
    from torchtitan.components.tokenizer import HuggingFaceTokenizer
    from torchtitan.models.llama3 import Transformer
    from transformers import AutoTokenizer

    from prefix_titan.evaluation.export import write_hf_folder
    from prefix_titan.model.flavors import FLAVORS

    args = FLAVORS["tiny_128k"]
    with torch.device("meta"):
        names = Transformer(args).state_dict()
    state = {k: torch.zeros(v.shape) for k, v in names.items() if not k.startswith("freqs_cis")}
    out = write_hf_folder(state, args, llama3_dir, str(tmp_path / "hf"), 256)
    auto = AutoTokenizer.from_pretrained(out)
    titan = HuggingFaceTokenizer(llama3_dir)
    for text in varied_text().splitlines()[-5:] + ["The personality of strawberries."]:
        # as training encoded documents: BOS first, added by the exported tokenizer itself
        assert auto(text)["input_ids"] == titan.encode(text, add_bos=True, add_eos=False)
        assert auto(text, add_special_tokens=False)["input_ids"] == titan.encode(
            text, add_bos=False, add_eos=False
        )
    assert auto.bos_token_id == 128000 and auto.eos_token_id == 128001


def test_an_unreachable_hub_points_to_the_offline_conversion(tmp_path):
    """Offline, a download into a new folder fails naming the conversion; into a folder that
    holds the files already it says nothing was downloaded (it said the files were fetched)."""

    def download():
        return subprocess.run(
            [sys.executable, "scripts/download_tokenizer.py", "--out", str(tmp_path / "l3")],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            env={
                **{
                    k: v
                    for k, v in os.environ.items()
                    if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
                    and not k.lower().endswith("_proxy")  # (a proxy would answer for the port)
                },
                "HF_ENDPOINT": "http://127.0.0.1:9",  # refused: found in one try, no retries
                "HF_HOME": str(tmp_path / "hf_home"),
            },
        )

    out = download()
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "was not reached" in out.stderr and "Retrying" not in out.stderr, out.stderr[-2000:]
    assert "could not reach the Hugging Face hub to download the tokenizer" in out.stderr
    assert "--source llama-models" in out.stderr
    (tmp_path / "l3").mkdir()
    (tmp_path / "l3" / "tokenizer.json").write_text("{}")
    out = download()
    assert out.returncode == 0, out.stderr[-2000:]
    assert "nothing downloaded (the hub is unreachable): " in out.stdout
    assert "tokenizer files in" not in out.stdout
