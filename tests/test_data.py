import gzip
import json

import numpy as np
import pytest
import torch

import prefix_titan.train_spec  # noqa: F401  (registers datasets)
from prefix_titan.data.cache import CACHE_ENV
from prefix_titan.data.corpus import ascii_only, embedded_documents, embedded_split, has_text
from prefix_titan.titan.datasets import PackedTokenDataset, load_fineweb_edu_ascii


def test_ascii_only_removes_every_non_ascii_character():
    assert ascii_only("naïve café — 10 °C ✓ 日本") == "nave caf  10 C  "
    assert ascii_only("plain text\n\t~") == "plain text\n\t~"


def test_only_whitespace_left_drops_a_document_and_control_characters_stay():
    """Whitespace is space, tab, newline, carriage return, vertical tab and form feed; the ASCII
    separators \x1c-\x1f (which str.isspace() also counts) are text, as docs/data.md says."""
    assert not has_text(" \t\n\r\v\f") and not has_text(ascii_only("\u00a0\u2003 \u65e5"))
    assert all(has_text(chr(c)) for c in range(0x1C, 0x20))
    assert has_text("\x1c\x1d \x1e\x1f") and has_text("\x00") and has_text("\x7f")


def test_the_embedded_corpus_is_read_back_from_its_cache_and_a_damaged_cache_is_rebuilt(
    tmp_path, monkeypatch
):
    """The documents are built once and read back from the cache file by later processes; a
    cache file whose documents were changed or cut short is built again and rewritten, a
    folder that cannot be written still gives the documents, and another version of the module
    reads a file of its own."""
    import os

    from prefix_titan.data import corpus

    builds = []

    def docstrings():  # (a stand-in for the standard library's: the cache, not the parse)
        builds.append(1)
        return ["A docstring of the standard library. " * 8, "Caf\u00e9 and more text. " * 12]

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(corpus, "_stdlib_docstrings", docstrings)

    def documents():
        corpus.embedded_documents.cache_clear()  # (a new process)
        return corpus.embedded_documents()

    try:
        first = documents()
        path = corpus.cache_file()
        assert first[-1].startswith("Caf and more text.") and len(builds) == 1
        assert os.listdir(tmp_path / "cache") == [os.path.basename(path)]
        assert documents() == first and len(builds) == 1  # read back, not built
        saved = json.loads(open(path).read())
        saved["documents"][-1] += " changed"
        open(path, "w").write(json.dumps(saved))
        assert documents() == first and len(builds) == 2
        assert corpus._read_cache(path) == first  # rewritten whole
        open(path, "w").write(open(path).read()[:100])
        assert documents() == first and len(builds) == 3
        assert os.listdir(tmp_path / "cache") == [os.path.basename(path)]  # (no temporary left)
        (tmp_path / "a file").write_text("")
        monkeypatch.setenv(CACHE_ENV, str(tmp_path / "a file"))
        assert documents() == first and len(builds) == 4
        other = tmp_path / "corpus.py"
        other.write_text(open(corpus.__file__).read() + "\n# another version\n")
        monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
        monkeypatch.setattr(corpus, "__file__", str(other))
        assert corpus.cache_file() != path
    finally:
        corpus.embedded_documents.cache_clear()


@pytest.mark.slow
def test_embedded_corpus_is_ascii_split_and_deterministic():
    docs = embedded_documents()
    assert len(docs) > 1000 and sum(map(len, docs)) > 1_000_000
    assert all(d and d.isascii() for d in docs)
    train, val = embedded_split("train"), embedded_split("validation")
    assert set(train).isdisjoint(val) and len(train) + len(val) == len(docs)
    assert 0.02 < len(val) / len(docs) < 0.1
    with pytest.raises(ValueError, match="'train' or 'validation'"):
        embedded_split("test")


def test_embedded_tokenizer_is_deterministic(embedded_tokenizer_dir, tmp_path):
    from prefix_titan.data.tokenizers import train_embedded_tokenizer

    again = train_embedded_tokenizer(str(tmp_path / "again"))
    assert (
        open(f"{again}/tokenizer.json").read()
        == open(f"{embedded_tokenizer_dir}/tokenizer.json").read()
    )


def stream(n_seq, seq_len=7):
    return np.arange(n_seq * (seq_len + 1), dtype=np.int64)


def take(ds, n):
    it = iter(ds)
    return [next(it)[1][0].item() // 8 for _ in range(n)]  # sequence index from its first label


def test_ranks_read_disjoint_sequences_covering_the_stream():
    per_rank = [
        take(PackedTokenDataset(stream(40), 7, r, 4, seed=3, infinite=False), 10) for r in range(4)
    ]
    flat = [s for seqs in per_rank for s in seqs]
    assert sorted(flat) == list(range(40))
    # Global batch order is rank-count independent: 1 rank reads what 4 ranks read, interleaved.
    single = take(PackedTokenDataset(stream(40), 7, 0, 1, seed=3, infinite=False), 40)
    assert single == [per_rank[i % 4][i // 4] for i in range(40)]


def test_order_depends_on_seed_and_epoch():
    a = take(PackedTokenDataset(stream(50), 7, seed=1), 100)
    b = take(PackedTokenDataset(stream(50), 7, seed=2), 100)
    assert a != b and sorted(a[:50]) == sorted(a[50:]) == list(range(50)) and a[:50] != a[50:]


def test_resume_continues_with_the_next_sequence():
    ds = PackedTokenDataset(stream(30), 7, seed=5)
    it = iter(ds)
    for _ in range(37):  # into the second epoch
        next(it)
    state = ds.state_dict()
    expected = [next(it)[1].tolist() for _ in range(5)]
    fresh = PackedTokenDataset(stream(30), 7, seed=5)
    fresh.load_state_dict(state)
    it = iter(fresh)
    assert [next(it)[1].tolist() for _ in range(5)] == expected


def test_inputs_and_labels_are_shifted():
    x, y = next(iter(PackedTokenDataset(stream(3), 7, seed=None)))
    assert torch.equal(x["input"][1:], y[:-1]) and len(y) == 7


def test_validation_order_restarts_each_pass():
    ds = PackedTokenDataset(stream(6), 7, seed=None, infinite=False)
    assert take(ds, 6) == take(ds, 6) == list(range(6))


def test_too_small_corpus_is_refused():
    with pytest.raises(ValueError, match="training.seq_len"):
        PackedTokenDataset(stream(1), 7, 0, 2)


def write_fineweb(folder, name, rows, fmt):
    """A FineWeb-Edu-schema file (text, id, url, score, ...)."""
    rows = [
        {
            "text": t,
            "id": f"{name}-{i}",
            "url": "https://example.org",
            "score": 3.0,
            "int_score": 3,
            "language": "en",
        }
        for i, t in enumerate(rows)
    ]
    if fmt.startswith("jsonl"):
        with (gzip.open if fmt.endswith(".gz") else open)(folder / f"{name}.{fmt}", "wt") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), folder / f"{name}.parquet")


@pytest.fixture(params=["jsonl", "parquet", "jsonl.gz"])
def fineweb_folder(tmp_path, request):
    write_fineweb(
        tmp_path,
        "000_00000",
        ["Caf\u00e9 culture \u2014 an essay.", "\u65e5\u672c\u8a9e", "Plain text."],
        request.param,
    )
    write_fineweb(tmp_path, "000_00001", ["Held \u00bd out.", "\u2603"], request.param)
    return str(tmp_path)


def test_fineweb_loader_filters_ascii_and_splits_by_file(fineweb_folder):
    train = [s["text"] for s in load_fineweb_edu_ascii(fineweb_folder, "train")]
    val = [s["text"] for s in load_fineweb_edu_ascii(fineweb_folder, "validation")]
    assert train == ["Caf culture  an essay.", "Plain text."]  # the CJK-only document is dropped
    assert val == ["Held  out."]


def test_fineweb_loader_refuses_a_single_file(tmp_path):
    write_fineweb(tmp_path, "only", ["text"], "jsonl")
    with pytest.raises(ValueError, match="at least 2, the last of which is held out"):
        load_fineweb_edu_ascii(str(tmp_path), "train")


def test_fineweb_through_torchtitans_text_dataset(fineweb_folder, embedded_tokenizer_dir):
    from torchtitan.components.tokenizer import HuggingFaceTokenizer
    from torchtitan.hf_datasets.text_datasets import HuggingFaceTextDataset

    tok = HuggingFaceTokenizer(embedded_tokenizer_dir)
    ds = HuggingFaceTextDataset("fineweb_edu_ascii", fineweb_folder, tok, seq_len=4)
    x, y = next(iter(ds))
    expected = tok.encode("Caf culture  an essay.", add_bos=True, add_eos=True)
    assert expected[0] == tok.bos_id and x["input"].tolist() == expected[:4]


def test_inspect_cli(embedded_tokenizer_dir, capsys, tmp_path):
    """python -m prefix_titan.targets, in this process (test_targets runs the command itself)."""
    from tokenizers import Tokenizer

    from prefix_titan.targets import _main

    tok = Tokenizer.from_file(f"{embedded_tokenizer_dir}/tokenizer.json")
    longest = max(
        (
            t
            for t in (tok.decode([i]) for i in range(tok.get_vocab_size()))
            if t.isascii() and t.startswith(" ")
        ),
        key=len,
    )
    where = ["--hf-assets-path", embedded_tokenizer_dir]
    options = ["--tau", "0.5", "--normalize", "--support", "vocab"]

    def run(*args):
        try:
            _main([*where, *args])
        except SystemExit as e:
            return e.code, capsys.readouterr()
        return 0, capsys.readouterr()

    code, out = run("--token", longest, *options, "--json")
    info = json.loads(out.out)
    assert info["spec"]["tau"] == 0.5 and "epsilon" not in info["spec"]  # what prefix reads
    code, out = run("--token", longest, "--objective", "label_smoothing", "--json")
    spec = json.loads(out.out)["spec"]
    assert spec["epsilon"] == 0.1 and not {"tau", "normalize", "support"} & set(spec)
    assert info["gold_text"] == longest and abs(info["total"] - 1) < 1e-5
    assert len(info["entries"]) > 1 and all(longest.startswith(e["text"]) for e in info["entries"])
    assert info["background_per_token"] > 0 and info["background_tokens"] == 4096 - len(
        info["entries"]
    )
    code, out = run("--token-id", str(info["gold_id"]), *options)
    assert code == 0 and repr(longest) in out.out and "background:" in out.out
    heading = "objective prefix (tau=0.5, normalize=True, support='vocab')"
    assert out.out.splitlines()[0].endswith(heading)
    code, out = run("--token-id", str(info["gold_id"]), "--objective", "label_smoothing")
    assert code == 0 and out.out.splitlines()[0].endswith("objective label_smoothing (epsilon=0.1)")
    assert "total 1.0000" in out.out
    code, out = run("--token", longest, "--tau", "-1")
    assert code == 2 and "objective.tau must be a finite number >= 0.001" in out.err
    code, out = run("--token", "no such token here")
    assert code == 2 and "is not one ASCII vocabulary token" in out.err
    code, out = run("--token", " caf\u00e9")
    assert code == 2 and "--token ' caf\u00e9' holds non-ASCII characters: the data" in out.err
    code, out = run("--token", "\u2581the")  # a SentencePiece piece as its vocabulary spells it
    assert code == 2 and "give the token's text: --token ' the'" in out.err
    code, out = run("--token", "")
    assert code == 2 and "--token is empty: give a token's text" in out.err
    code, out = run("--token", longest, "--vocab-size", "2000")  # (it named model.vocab_size)
    assert code == 2 and "--vocab-size 2000: the tokenizer has 4096 tokens" in out.err
    broken = tmp_path / "tokenizer.json"
    broken.write_text('{"model": ')
    with pytest.raises(SystemExit):
        _main(["--hf-assets-path", str(tmp_path), "--token", " which"])
    assert f"{broken} is not a tokenizer the tokenizers library reads" in capsys.readouterr().err


def _tokenizer_job(path, dataset="embedded_docs"):
    from types import SimpleNamespace

    return SimpleNamespace(
        model=SimpleNamespace(hf_assets_path=str(path)), training=SimpleNamespace(dataset=dataset)
    )


def test_a_missing_tokenizer_is_created_only_at_the_documented_place(tmp_path, monkeypatch):
    from prefix_titan.titan.checks import EMBEDDED_TOKENIZER
    from prefix_titan.titan.tokenizer import build_tokenizer

    monkeypatch.chdir(tmp_path)  # the documented place is relative to where the run starts
    with pytest.raises(ValueError) as e:
        build_tokenizer(_tokenizer_job("./assets/embeded_tokenizer"))  # a typo
    assert "python scripts/train_tokenizer.py --out ./assets/embeded_tokenizer" in str(e.value)
    assert not (tmp_path / "assets" / "embeded_tokenizer").exists()
    with pytest.raises(ValueError, match="download_tokenizer.py --source llama-models") as e:
        build_tokenizer(_tokenizer_job("./assets/hf/missing", dataset="fineweb_edu_ascii_tokens"))
    # a user's project folder has no scripts/: the repository's script, with an --out that
    # reaches this folder from the repository's checkout
    assert f"--out {tmp_path / 'assets' / 'hf' / 'missing'} (a script of the prefix_titan " in (
        str(e.value)
    )
    assert "repository, not of the installed package: run it in a checkout" in str(e.value)
    tok = build_tokenizer(_tokenizer_job(EMBEDDED_TOKENIZER))
    assert tok.get_vocab_size() == 4096 and (tmp_path / "assets" / "embedded_tokenizer").is_dir()


def test_the_divisors_a_validation_warning_offers():
    """The validation warning says which local batches read every sequence: for a prime count,
    1 and itself (it said "a local batch that divides 197" as if there were others)."""
    from prefix_titan.titan.datasets import _divisors

    assert _divisors(197) == "1, 197"
    assert _divisors(12) == "1, 2, 3, 4, 6, 12"
    assert _divisors(720) == "1, 2, 3, 4, 5, 6, 8, 9, ..., 720"
