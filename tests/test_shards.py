"""Pre-tokenized shards: prepare (local FineWeb-Edu-schema fixtures) and the training reader."""

import gzip
import json
import os
import signal
import subprocess
import sys
import time
import types
import zlib

import numpy as np
import pytest
import torch
from helpers import holding_lock

import prefix_titan.train_spec  # noqa: F401  (registers datasets)
from prefix_titan.data.corpus import ascii_only
from prefix_titan.data.prepare import prepare
from prefix_titan.data.shards import ShardedTokens, load_manifest
from prefix_titan.titan.datasets import build_prefix_dataloader

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = "the of strawberry personality person ünïcödé — café 日本 data token model letter".split()


def make_corpus(folder, n_files=3, docs_per_file=400, fmt="jsonl", seed=0):
    """FineWeb-Edu-schema files with non-ASCII text, some documents that filter to nothing."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    docs = []
    for f in range(n_files):
        rows = []
        for i in range(docs_per_file):
            if i % 97 == 5:
                text = "日本語 — ✓"  # nothing ASCII but spaces: dropped
            else:
                text = " ".join(rng.choice(WORDS, size=int(rng.integers(5, 120)))) + "."
            rows.append(
                {
                    "text": text,
                    "id": f"<urn:uuid:{f:03d}-{i:05d}>",
                    "dump": "CC-MAIN",
                    "url": f"https://example.org/{f}/{i}",
                    "score": 3.5,
                    "int_score": 4,
                }
            )
        if fmt.startswith("jsonl"):
            name = os.path.join(folder, f"{f:03d}_00000.{fmt}")
            with (gzip.open if fmt.endswith(".gz") else open)(name, "wt") as out:
                out.writelines(json.dumps(r) + "\n" for r in rows)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(
                pa.Table.from_pylist(rows),
                os.path.join(folder, f"{f:03d}_00000.parquet"),
                row_group_size=128,
            )
        docs.extend(rows)
    return docs


def expected_split(docs, tokenizer, val_every, tokens, val_tokens):
    """What prepare must write, computed independently (same rules, one document at a time), and
    the index of the document that reached the training budget (None: never reached)."""
    t_tok, v_tok, out_t, out_v = 0, 0, [], []
    for n, d in enumerate(docs):
        text = ascii_only(d["text"])
        if not text.strip():
            continue
        ids = tokenizer.encode(text, add_bos=True, add_eos=True)
        if zlib.crc32(text.encode()) % val_every != 0:
            out_t.append(ids)
            t_tok += len(ids)
            if t_tok >= tokens:
                return out_t, out_v, n
        elif v_tok < val_tokens:
            out_v.append(ids)
            v_tok += len(ids)
    return out_t, out_v, None


@pytest.fixture(scope="module")
def tokenizer(embedded_tokenizer_dir):
    from torchtitan.components.tokenizer import HuggingFaceTokenizer

    return HuggingFaceTokenizer(embedded_tokenizer_dir)


def split_documents(tokens, bos, eos):
    docs, current = [], []
    for t in tokens.tolist():
        current.append(t)
        if t == eos:
            docs.append(current)
            current = []
    assert not current and all(d[0] == bos for d in docs)
    return docs


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "jsonl.gz"])
def test_shards_hold_the_ascii_filtered_documents(tmp_path, tokenizer, embedded_tokenizer_dir, fmt):
    docs = make_corpus(tmp_path / "src", fmt=fmt)
    m = prepare(
        str(tmp_path / "src"),
        embedded_tokenizer_dir,
        str(tmp_path / "out"),
        tokens=10**9,
        val_tokens=10**9,
        val_every=10,
        shard_tokens=3000,
        batch_docs=50,
        progress=False,
    )
    want_train, want_val, _ = expected_split(docs, tokenizer, 10, 10**9, 10**9)
    for split, want in (("train", want_train), ("validation", want_val)):
        tokens = ShardedTokens(str(tmp_path / "out"), split, tokenizer)
        assert split_documents(tokens[:], tokenizer.bos_id, tokenizer.eos_id) == want
        assert m["splits"][split]["documents"] == len(want) and len(tokens) == sum(map(len, want))
    assert len(m["splits"]["train"]["shards"]) > 3  # several fixed-size shards
    assert all(s["tokens"] == 3000 for s in m["splits"]["train"]["shards"][:-1])
    empty = sum(1 for d in docs if not ascii_only(d["text"]).strip())
    assert m["documents_empty_dropped"] == empty > 0
    assert m["characters_removed"] == sum(len(d["text"]) - len(ascii_only(d["text"])) for d in docs)
    assert m["dtype"] == "uint16" and m["revision"] == "local" and len(m["files"]) == 3
    # Validation documents are whole documents that never appear in training.
    val_texts = {tokenizer.decode(d) for d in want_val}
    assert val_texts and not val_texts & {tokenizer.decode(d) for d in want_train}


@pytest.mark.parametrize("batch_docs", [16, 7])
def test_budgets_stop_at_the_document_that_reaches_them(
    tmp_path, tokenizer, embedded_tokenizer_dir, batch_docs
):
    docs = make_corpus(tmp_path / "src")
    m = prepare(
        str(tmp_path / "src"),
        embedded_tokenizer_dir,
        str(tmp_path / "out"),
        tokens=20_000,
        val_tokens=1_000,
        val_every=10,
        shard_tokens=4096,
        batch_docs=batch_docs,  # the splits do not depend on it
        progress=False,
    )
    want_train, want_val, last = expected_split(docs, tokenizer, 10, 20_000, 1_000)
    assert m["splits"]["train"]["tokens"] == sum(map(len, want_train))
    assert 0 <= m["splits"]["train"]["tokens"] - 20_000 < len(want_train[-1])  # < one document
    assert m["splits"]["validation"]["tokens"] == sum(map(len, want_val))
    assert m["splits"]["validation"]["tokens"] - 1_000 < len(want_val[-1])
    assert m["documents_validation_over_budget"] > 0 and m["documents_read"] < len(docs)
    assert m["documents_read"] == last + 1  # reading stops right after it
    f, row = docs[last]["id"][10:-1].split("-")
    assert m["stopped_at"] == {"file": int(f), "row": int(row) + 1}


def test_two_prepares_are_identical(tmp_path, embedded_tokenizer_dir):
    make_corpus(tmp_path / "src", fmt="parquet")
    outs = [str(tmp_path / name) for name in ("a", "b")]
    for out in outs:
        prepare(
            str(tmp_path / "src"),
            embedded_tokenizer_dir,
            out,
            tokens=10**9,
            val_tokens=10**9,
            val_every=10,
            shard_tokens=5000,
            batch_docs=64,
            progress=False,
        )
    assert sorted(os.listdir(outs[0])) == sorted(os.listdir(outs[1]))
    for name in os.listdir(outs[0]):
        a, b = (open(os.path.join(o, name), "rb").read() for o in outs)
        assert a == b, name


@pytest.mark.slow
def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (read from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            status = open(f"/proc/{entry}/status").read()
        except OSError:
            continue
        if f"\nPPid:\t{pid}\n" in status:
            found.append(int(entry))
    return found


def running(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize(
    "how, workers",
    [("SIGKILL", 0), pytest.param("SIGKILL", 2, marks=pytest.mark.slow)],  # (3 prepares each)
)
def test_killed_prepare_resumes_without_loss_or_duplication(
    tmp_path, embedded_tokenizer_dir, how, workers
):
    """Killed mid-run, a prepare resumes where its record says (and says so), to the same bytes
    as one never stopped; the worker processes of one killed end by themselves."""
    make_corpus(tmp_path / "src", n_files=4, docs_per_file=1500)
    args = [
        "--source",
        str(tmp_path / "src"),
        "--tokenizer",
        embedded_tokenizer_dir,
        "--tokens",
        "1e9",
        "--val-tokens",
        "1e9",
        "--val-every",
        "10",
        "--shard-tokens",
        "7000",
        "--batch-docs",
        "8",
        "--no-progress",
    ]
    cmd = [sys.executable, "-m", "prefix_titan.prepare", *args, "--workers", str(workers)]
    env = dict(os.environ)
    subprocess.run(
        cmd + ["--out", str(tmp_path / "clean")], check=True, env=env, capture_output=True
    )

    progress = tmp_path / "killed" / "progress.json"
    killed_at = None
    for _ in range(3):  # kill mid-run (retry if the machine was too quick to catch it)
        proc = subprocess.Popen(
            cmd + ["--out", str(tmp_path / "killed")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if progress.exists():
                state = json.loads(progress.read_text())
                if state["splits"].get("train", {}).get("docs", 0) > 200:
                    workers_seen = [c for c in children(proc.pid) if running(c)]
                    proc.send_signal(getattr(signal, how))
                    killed_at = state["splits"]["train"]["docs"]
                    break
            time.sleep(0.005)
        proc.communicate()  # (its stderr read: a full pipe would block it)
        if killed_at is not None:
            break
    assert killed_at is not None and not (tmp_path / "killed" / "manifest.json").exists()
    if workers:  # (the workers and the resource tracker)
        assert len(workers_seen) >= workers
        deadline = time.time() + 30
        while any(map(running, workers_seen)) and time.time() < deadline:
            time.sleep(0.1)
        assert not any(map(running, workers_seen)), "workers left behind"
    resumed = subprocess.run(
        cmd + ["--out", str(tmp_path / "killed")], check=True, env=env, capture_output=True
    )
    assert "resuming an unfinished prepare after the first" in resumed.stderr.decode()
    for name in os.listdir(tmp_path / "clean"):
        assert (tmp_path / "clean" / name).read_bytes() == (
            tmp_path / "killed" / name
        ).read_bytes(), name


def test_a_terminated_prepare_says_so_and_lets_go_of_its_folder(tmp_path, monkeypatch, capsys):
    """SIGTERM (a scheduler's, a `kill`) unwinds a prepare as Ctrl-C does: one line, exit 143,
    its lock released by the way out (it was killed outright, the lock left to be taken over)."""
    import prefix_titan.prepare as command
    from prefix_titan.runs.lock import RunLock

    def terminated_while_writing(source, tokenizer, out, *args, **kwargs):
        with RunLock(out):
            if recorded:
                (out_path / "progress.json").write_text("{}")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # (the handler raises before this ends)

    monkeypatch.setattr(command, "prepare", terminated_while_writing)
    out = out_path = tmp_path / "out"
    out.mkdir()
    before = signal.getsignal(signal.SIGTERM)
    args = ["--source", "embedded", "--tokenizer", "t", "--out", str(out), "--tokens", "9"]
    for recorded in (False, True):
        with pytest.raises(SystemExit) as e:
            command.main(args)
        assert e.value.code == 143 and signal.getsignal(signal.SIGTERM) == before
        err = capsys.readouterr().err
        said = (
            "the batches written are kept; the same command resumes after the last one"
            if recorded
            else "nothing was recorded yet; the same command starts it again"
        )
        assert f"[prepare] {out}: terminated (SIGTERM): {said}" in err, err
        assert not (out / ".writer.lock").exists()


def test_a_prepare_stopped_by_a_full_disk_says_so_and_resumes(
    tmp_path, embedded_tokenizer_dir, monkeypatch, capsys
):
    """A write that fails (no space left, a file size limit) ends a prepare with one line naming
    its folder, the error and that the same command resumes (a traceback that named neither);
    resumed, it writes the bytes of a prepare never stopped."""
    import errno

    import prefix_titan.data.prepare as prep
    import prefix_titan.prepare as command

    make_corpus(tmp_path / "src", n_files=2, docs_per_file=100)
    args = ["--source", str(tmp_path / "src"), "--tokenizer", embedded_tokenizer_dir]
    args += ["--tokens", "1e9", "--val-tokens", "1e9", "--val-every", "10"]
    args += ["--shard-tokens", "3000", "--batch-docs", "8", "--no-progress"]
    command.main([*args, "--out", str(tmp_path / "clean")])
    write, calls = prep._Writer.write, []

    def full_disk(self, ids):
        calls.append(1)
        if len(calls) == 120:  # half the document written, as a disk filling up leaves it
            write(self, ids[: len(ids) // 2])
            raise OSError(errno.ENOSPC, "No space left on device", self._path(len(self.shards)))
        return write(self, ids)

    monkeypatch.setattr(prep._Writer, "write", full_disk)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        command.main([*args, "--out", str(out)])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert f"[prepare] {out}: stopped: [Errno {errno.ENOSPC}] No space left on device: " in err
    assert "the same command resumes after the last one" in err and "Traceback" not in err
    assert "(free space on the disk of --out, or a larger file size limit)" in err
    monkeypatch.setattr(prep._Writer, "write", write)
    command.main([*args, "--out", str(out)])
    assert "resuming an unfinished prepare after the first" in capsys.readouterr().err
    for name in os.listdir(tmp_path / "clean"):
        assert (tmp_path / "clean" / name).read_bytes() == (out / name).read_bytes(), name


def test_a_resume_after_a_file_it_read_changed_is_refused(
    tmp_path, embedded_tokenizer_dir, monkeypatch, capsys
):
    """A prepare of a local folder records each file's size and modification time: a file it
    had read whole, replaced or rewritten between a crash and the resume, is named and the
    resume refused (its shards would hold rows of both versions); the file it goes on in may
    have changed (a damaged row repaired, as that refusal asks): said, and read as it is now."""
    import prefix_titan.data.prepare as prep

    make_corpus(tmp_path / "src", n_files=2, docs_per_file=60)
    kw = dict(tokens=10**9, val_tokens=10**9, val_every=10, shard_tokens=5000, progress=False)
    kw["batch_docs"] = 8
    clean = prepare(str(tmp_path / "src"), embedded_tokenizer_dir, str(tmp_path / "clean"), **kw)
    real = prep.iter_rows
    first, second = sorted((tmp_path / "src").iterdir())

    def crashing(path, start):  # (the process dies after some rows of the second file)
        for i, row in enumerate(real(path, start)):
            if path == str(second) and i == 20:
                raise RuntimeError("killed")
            yield row

    monkeypatch.setattr(prep, "iter_rows", crashing)
    with pytest.raises(RuntimeError, match="killed"):
        prepare(str(tmp_path / "src"), embedded_tokenizer_dir, str(tmp_path / "out"), **kw)
    monkeypatch.setattr(prep, "iter_rows", real)
    state = json.loads((tmp_path / "out" / "progress.json").read_text())
    assert state["file"] == 1 and state["row"] > 0 and len(state["local_files"]) == 2
    held, stat = first.read_bytes(), first.stat()
    first.write_bytes(held[: len(held) // 2])
    with pytest.raises(ValueError, match=rf"read files which changed since: {first} \(size"):
        prepare(str(tmp_path / "src"), embedded_tokenizer_dir, str(tmp_path / "out"), **kw)
    first.write_bytes(held)  # the same size, written again: modified since
    with pytest.raises(ValueError, match=rf"{first} \(modified since"):
        prepare(str(tmp_path / "src"), embedded_tokenizer_dir, str(tmp_path / "out"), **kw)
    os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # restored
    record = (tmp_path / "out" / "progress.json").read_text()
    (tmp_path / "out" / "progress.json").write_text(json.dumps({**state, "local_files": [[1]]}))
    with pytest.raises(ValueError, match="local_files are not one .size, time. per file.*damaged"):
        prepare(str(tmp_path / "src"), embedded_tokenizer_dir, str(tmp_path / "out"), **kw)
    (tmp_path / "out" / "progress.json").write_text(record)
    second.write_bytes(second.read_bytes())  # the file it goes on in, written again
    capsys.readouterr()
    done = prepare(str(tmp_path / "src"), embedded_tokenizer_dir, str(tmp_path / "out"), **kw)
    assert f"note: {second} changed since this prepare read its first {state['row']:,} rows" in (
        capsys.readouterr().err
    )
    # (its files as read now: the second written again, the manifest records its new time)
    assert done["local_files"][0] == clean["local_files"][0] != done["local_files"][1]
    assert {k: v for k, v in done.items() if k not in ("sha256", "local_files")} == {
        k: v for k, v in clean.items() if k not in ("sha256", "local_files")
    }


def test_a_local_json_lines_corpus_of_ones_own(tmp_path, embedded_tokenizer_dir, monkeypatch):
    """A folder of JSON Lines: `id` optional, blank lines skipped; a null text, a line that is
    no object and a file given as --source are refused, naming the file and line."""
    from prefix_titan.data.prepare import iter_rows

    folder = tmp_path / "corpus"
    folder.mkdir()
    path = folder / "a.jsonl"
    path.write_text('{"text": "one"}\n\n{"id": "x", "text": "two"}\n')
    assert [r[1:] for r in iter_rows(str(path), 0)] == [(0, "one"), ("x", "two")]
    path.write_text('{"text": "one"}\n{"id": 2, "text": null}\n')
    with pytest.raises(ValueError, match=f"{path} line 2: its `text` is None, not a string"):
        list(iter_rows(str(path), 0))
    path.write_text('[{"text": "one"}]\n')
    with pytest.raises(ValueError, match="line 1 is not a JSON object with a `text`.*JSON Lines"):
        list(iter_rows(str(path), 0))
    path.write_text('{"text": "one"}\n')
    with pytest.raises(ValueError, match=f"--source '{path}' is a file: give the folder"):
        prepare(str(path), embedded_tokenizer_dir, str(tmp_path / "out"), 100, 10)
    assert not (tmp_path / "out").exists()
    # a file whose relative path is shaped owner/name is not taken for a hub dataset (the
    # command probed the hub, and warned it was unreachable, before refusing it as a file)
    from prefix_titan.data.prepare import hub_source

    monkeypatch.chdir(tmp_path)
    assert not hub_source("corpus/a.jsonl") and hub_source("HuggingFaceFW/fineweb-edu")


def test_a_resumed_hub_prepare_reads_the_commit_it_began_on(tmp_path):
    """Resuming a prepare of a hub dataset reads the commit its record names, where it was asked
    for the same revision (a branch moves); a damaged record is refused naming the file (it used
    to be read as no record: the branch's newest commit)."""
    from prefix_titan.data.prepare import PROGRESS, _unfinished_revision

    state = {"settings": {"source": "org/data", "revision": "abc123"}, "revision_asked": None}
    (tmp_path / PROGRESS).write_text(json.dumps(state))
    assert _unfinished_revision(str(tmp_path), "org/data", None) == "abc123"
    assert _unfinished_revision(str(tmp_path), "org/data", "main") == "abc123"
    assert _unfinished_revision(str(tmp_path), "org/data", "v2") is None  # asked for another
    assert _unfinished_revision(str(tmp_path), "org/other", None) is None
    assert _unfinished_revision(str(tmp_path / "none"), "org/data", None) is None
    (tmp_path / PROGRESS).write_text('{"settings": {"source": "org/da')  # cut by a crash
    with pytest.raises(ValueError, match=f"{tmp_path / PROGRESS}"):
        _unfinished_revision(str(tmp_path), "org/data", None)


def test_resume_with_other_settings_and_finished_out_are_refused(
    tmp_path, embedded_tokenizer_dir, monkeypatch
):
    make_corpus(tmp_path / "src", n_files=1, docs_per_file=50)
    kw = dict(tokens=10**9, val_tokens=10**9, val_every=10, shard_tokens=5000, progress=False)
    os.makedirs(tmp_path / "out")
    (tmp_path / "out" / "progress.json").write_text(
        json.dumps({"settings": {"val_every": 3}, "file": 0, "row": 0, "splits": {}})
    )
    with pytest.raises(ValueError, match="split its documents by id, before they were split"):
        prepare(str(tmp_path / "src"), embedded_tokenizer_dir, str(tmp_path / "out"), **kw)
    (tmp_path / "out" / "progress.json").write_text(
        json.dumps(
            {
                "settings": {"split": "x", "val_every": 3, "special_text": "as text"},
                **{"file": 0, "row": 0, "splits": {}},
            }
        )
    )
    with pytest.raises(ValueError, match="unfinished run with other settings"):
        prepare(str(tmp_path / "src"), embedded_tokenizer_dir, str(tmp_path / "out"), **kw)
    done = prepare(str(tmp_path / "src"), embedded_tokenizer_dir, str(tmp_path / "done"), **kw)
    # the same settings again: nothing to do (a pipeline that reruns its steps goes on)
    again = prepare(str(tmp_path / "src"), embedded_tokenizer_dir, str(tmp_path / "done"), **kw)
    assert again == done
    # a hub dataset's, asked again without --revision: nothing to do, and nothing asked of the
    # hub (its main may have moved since)
    import prefix_titan.data.prepare as prep

    def offline(*args):
        raise AssertionError("the hub was asked")

    with monkeypatch.context() as m:
        m.setattr(prep, "hub_source", lambda source: True)
        m.setattr(prep, "source_files", offline)
        hub = prepare(str(tmp_path / "src"), embedded_tokenizer_dir, str(tmp_path / "done"), **kw)
    assert hub == done
    with pytest.raises(
        ValueError,
        match="already holds finished shards .* made with other settings "
        r"\(--val-every 10 there, 20 asked\); choose another --out",
    ):
        prepare(
            str(tmp_path / "src"),
            embedded_tokenizer_dir,
            str(tmp_path / "done"),
            **{**kw, "val_every": 20},
        )
    with pytest.raises(ValueError, match="--val-every must be >= 2; got 1"):  # nothing to train
        prepare(
            str(tmp_path / "src"),
            embedded_tokenizer_dir,
            str(tmp_path / "x"),
            **{**kw, "val_every": 1},
        )
    holder = holding_lock(tmp_path / "busy", command="prepare --out busy")
    try:  # another prepare writes there: refused before it reads a document
        with pytest.raises(ValueError, match=r"is being written by .*prepare --out busy") as e:
            prepare(str(tmp_path / "src"), embedded_tokenizer_dir, str(tmp_path / "busy"), **kw)
        assert "or prepare into another --out." in str(e.value)  # (not a training's words)
        assert os.listdir(tmp_path / "busy") == [".writer.lock"]
    finally:
        holder.kill()
        holder.wait()
    (tmp_path / "a_file").write_text("")
    for source, tokenizer, out, words in (
        (tmp_path / "nope", embedded_tokenizer_dir, tmp_path / "x", "--source '/"),
        (tmp_path / "src", tmp_path / "nope", tmp_path / "x", "'/.*nope': no such folder"),
        (tmp_path / "src", tmp_path / "src", tmp_path / "x", "'/.*src': holds no tokenizer.json"),
        (tmp_path / "src", embedded_tokenizer_dir, tmp_path / "a_file", "is a file: give a folder"),
    ):
        with pytest.raises(ValueError, match=words):
            prepare(str(source), str(tokenizer), str(out), **kw)
    assert not (tmp_path / "x").exists()  # refused before anything is written


def test_an_empty_validation_split_is_named_with_its_folder(tmp_path, embedded_tokenizer_dir):
    """Shards prepared with --val-tokens 0 read as validation data: the error names the setting,
    the folder and the split (it used to say only "the corpus has 0 tokens")."""
    from torchtitan.components.tokenizer import HuggingFaceTokenizer

    from prefix_titan.titan.datasets import build_dataset

    make_corpus(tmp_path / "src", n_files=1, docs_per_file=20)
    out = str(tmp_path / "shards")
    prepare(str(tmp_path / "src"), embedded_tokenizer_dir, out, 10**6, 0, progress=False)
    tokenizer = HuggingFaceTokenizer(embedded_tokenizer_dir)
    args = (tokenizer, 64, 0, 1, None, False, "validation.dataset", "validation")
    with pytest.raises(ValueError) as e:
        build_dataset("fineweb_edu_ascii_tokens", out, *args)
    assert str(e.value).startswith(
        f"validation.dataset 'fineweb_edu_ascii_tokens' at {out!r} (validation split) has 0 "
        "tokens: too few for one sequence of validation.seq_len + 1 = 65"
    ), str(e.value)


@pytest.mark.parametrize("value", ["2.5", "nan", "inf", "lots"])
def test_prepare_takes_whole_token_counts_only(capsys, value):
    from prefix_titan.prepare import main

    with pytest.raises(SystemExit) as e:
        main(["--tokenizer", "t", "--out", "o", "--source", "embedded", "--tokens", value])
    assert e.value.code == 2
    assert f"--tokens must be a whole number of tokens (e.g. 20e9 or 50000000); got {value!r}" in (
        capsys.readouterr().err
    )


@pytest.fixture(scope="module")
def shard_dir(module_tmp, embedded_tokenizer_dir):
    out = module_tmp
    make_corpus(out / "src")
    prepare(
        str(out / "src"),
        embedded_tokenizer_dir,
        str(out / "shards"),
        tokens=10**9,
        val_tokens=10**9,
        val_every=10,
        shard_tokens=2500,
        batch_docs=32,
        progress=False,
    )
    return str(out / "shards")


def test_reads_across_shard_boundaries(shard_dir, tokenizer):
    t = ShardedTokens(shard_dir, "train", tokenizer)
    whole = np.concatenate(
        [
            np.fromfile(os.path.join(shard_dir, f"train_{i:05d}.bin"), np.uint16)
            for i in range(len(t.arrays))
        ]
    ).astype(np.int64)
    assert len(t) == len(whole)
    for a, b in ((0, 10), (2490, 2510), (2400, 7600), (len(t) - 5, len(t))):
        assert np.array_equal(t[a:b], whole[a:b])


def copy_shards(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return str(dst)


def test_refuses_other_tokenizer(shard_dir, tmp_path):
    from tokenizers import Tokenizer, models

    class Other:
        tokenizer = Tokenizer(models.BPE())

    with pytest.raises(ValueError, match="different tokenizer"):
        ShardedTokens(shard_dir, "train", Other())


def test_refuses_a_tokenizer_whose_document_marks_differ(shard_dir, tokenizer):
    """The same tokenizer.json with another tokenizer_config.json (BOS and EOS swapped, or an
    instruct config's EOS): the hash agrees, the document boundaries would not."""
    import copy

    other = copy.copy(tokenizer)
    other.bos_id, other.eos_id = tokenizer.eos_id, tokenizer.bos_id
    with pytest.raises(ValueError) as e:
        ShardedTokens(shard_dir, "train", other)
    assert f"marks documents with bos_id {tokenizer.bos_id}" in str(e.value)
    assert f"gives bos_id {tokenizer.eos_id}" in str(e.value)
    ShardedTokens(shard_dir, "train", tokenizer)  # the one they were prepared with


def test_a_tokenizer_without_bos_or_eos_cannot_prepare_nor_read(
    shard_dir, tmp_path, tokenizer, embedded_tokenizer_dir
):
    """A tokenizer.json alone (what `tokenizers.Tokenizer.save` writes) has no BOS nor EOS for
    torchtitan: prepare refuses it (it wrote documents run together, rc 0), a run's checks
    refuse it, shards prepared so before are refused, and shards prepared with a BOS read with
    such a tokenizer name the missing file."""
    import copy
    import shutil

    from prefix_titan.data.shards import MANIFEST, manifest_sha256
    from prefix_titan.titan.checks import tokenizer_size_problem

    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(os.path.join(embedded_tokenizer_dir, "tokenizer.json"), bare)
    make_corpus(tmp_path / "src", n_files=1, docs_per_file=20)
    with pytest.raises(ValueError) as e:
        prepare(str(tmp_path / "src"), str(bare), str(tmp_path / "out"), 1000, 100)
    said = str(e.value)
    assert said.startswith(f"--tokenizer {str(bare)!r}: its tokenizer has neither a BOS nor an EOS")
    assert (
        "holds no tokenizer_config.json" in said
        and "every document would run into the next" in said
    )
    assert not (tmp_path / "out").exists()
    (bare / "tokenizer_config.json").write_text('{"model_max_length": 256}')
    with pytest.raises(ValueError, match="holds one naming neither"):
        prepare(str(tmp_path / "src"), str(bare), str(tmp_path / "out"), 1000, 100)

    class Job:
        model = types.SimpleNamespace(hf_assets_path=str(bare), flavor="tiny")

    assert tokenizer_size_problem(Job).startswith(
        f"model.hf_assets_path {str(bare)!r}: its tokenizer has neither a BOS nor an EOS"
    )
    Job.model.hf_assets_path = embedded_tokenizer_dir
    assert tokenizer_size_problem(Job) is None

    d = copy_shards(shard_dir, tmp_path / "unmarked")  # as an earlier prepare wrote them
    manifest = json.load(open(os.path.join(d, MANIFEST)))
    manifest["bos_id"] = manifest["eos_id"] = None
    manifest["sha256"] = manifest_sha256(manifest)
    json.dump(manifest, open(os.path.join(d, MANIFEST), "w"))
    with pytest.raises(ValueError, match="neither a BOS nor an EOS token: its documents run into"):
        ShardedTokens(d, "train")

    other = copy.copy(tokenizer)
    other.bos_id = other.eos_id = None
    with pytest.raises(ValueError, match="tokenizer_config.json is missing or names no bos_token"):
        ShardedTokens(shard_dir, "train", other)


def test_refuses_truncated_corrupt_and_unfinished(shard_dir, tmp_path, tokenizer):
    d = copy_shards(shard_dir, tmp_path / "truncated")
    with open(os.path.join(d, "train_00001.bin"), "r+b") as f:
        f.truncate(100)
    with pytest.raises(ValueError, match="train_00001.bin is truncated or missing"):
        ShardedTokens(d, "train", tokenizer)

    d = copy_shards(shard_dir, tmp_path / "corrupt")
    with open(os.path.join(d, "train_00002.bin"), "r+b") as f:
        f.seek(77)
        byte = f.read(1)
        f.seek(77)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ValueError, match="train_00002.bin is corrupt"):
        ShardedTokens(d, "train", tokenizer)
    # a run's data names the setting that points at the shards and the way out
    from prefix_titan.titan.datasets import build_dataset

    args = (tokenizer, 64, 0, 1, None, False, "training.dataset", "train")
    with pytest.raises(ValueError) as e:
        build_dataset("fineweb_edu_ascii_tokens", d, *args)
    assert str(e.value).startswith(f"training.dataset_path {d!r}: shard ")
    assert "is corrupt: its CRC32 differs" in str(e.value)
    assert "run `python -m prefix_titan.prepare` again into a fresh --out" in str(e.value)
    # Ranks share the CRC checks: rank 1 of 2 checks odd shards only... and finds it.
    with pytest.raises(ValueError, match="corrupt"):
        ShardedTokens(d, "train", tokenizer, verify_rank=0, verify_world=2)
    ShardedTokens(d, "train", tokenizer, verify_rank=1, verify_world=2)  # shard 2 is rank 0's

    d = copy_shards(shard_dir, tmp_path / "unfinished")
    os.remove(os.path.join(d, "manifest.json"))
    with pytest.raises(ValueError, match="no manifest.json"):
        load_manifest(d)


class Config:
    """The fields of torchtitan's JobConfig that the prefix dataloader reads."""

    def __init__(self, path, local_batch_size, document_mask=False, seed=7, fused_loss=False):
        from torchtitan.config import JobConfig

        from prefix_titan.config import DataOptions
        from prefix_titan.objectives import ObjectiveSpec

        c = JobConfig()
        c.training.dataset, c.training.dataset_path = "fineweb_edu_ascii_tokens", path
        c.training.seq_len, c.training.local_batch_size = 32, local_batch_size
        c.debug.seed = seed
        self.training, self.debug, self.data = c.training, c.debug, DataOptions(document_mask)
        self.objective = ObjectiveSpec(fused_loss=fused_loss)


def batches(loader, n):
    it = iter(loader)
    return [next(it) for _ in range(n)]


def test_an_edited_or_damaged_manifest_is_refused(shard_dir, tmp_path):
    from prefix_titan.data.shards import manifest_sha256

    path = os.path.join(shard_dir, "manifest.json")
    manifest = load_manifest(shard_dir)
    assert manifest["sha256"] == manifest_sha256(manifest)

    d = copy_shards(shard_dir, tmp_path / "edited")
    edited = {**manifest, "budget_tokens": 5}
    with open(os.path.join(d, "manifest.json"), "w") as f:
        json.dump(edited, f)
    with pytest.raises(
        ValueError, match=r"manifest.json was changed after prepare.*prepare` again"
    ):
        load_manifest(d)

    d = copy_shards(shard_dir, tmp_path / "torn")
    with open(path, "rb") as f:
        data = f.read()
    with open(os.path.join(d, "manifest.json"), "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"torn/manifest.json is not valid JSON.*prepare"):
        ShardedTokens(d, "train")

    d = copy_shards(shard_dir, tmp_path / "shared")
    shared = json.loads(json.dumps(manifest))
    shared["splits"]["validation"]["shards"].append(shared["splits"]["train"]["shards"][0])
    shared["sha256"] = manifest_sha256(shared)
    with open(os.path.join(d, "manifest.json"), "w") as f:
        json.dump(shared, f)
    with pytest.raises(ValueError, match=r"shard train_00000.bin in both train and validation"):
        load_manifest(d)

    d = copy_shards(shard_dir, tmp_path / "older")  # written before the checksum: no check
    with open(os.path.join(d, "manifest.json"), "w") as f:
        json.dump({k: v for k, v in manifest.items() if k != "sha256"}, f)
    assert len(ShardedTokens(d, "train")) == manifest["splits"]["train"]["tokens"]


def test_a_split_shorter_than_asked_is_reported(tmp_path, embedded_tokenizer_dir, capsys):
    make_corpus(tmp_path / "src", n_files=1, docs_per_file=60)
    manifest = prepare(
        str(tmp_path / "src"),
        embedded_tokenizer_dir,
        str(tmp_path / "out"),
        tokens=10**9,
        val_tokens=20_000,
        val_every=10,
        progress=False,
    )
    err = capsys.readouterr().err
    got = manifest["splits"]["validation"]["tokens"]
    assert 0 < got < 20_000
    assert f"the validation split holds {got:,} tokens, fewer than the 20,000 asked" in err
    assert "(--val-tokens)" in err and "the train split holds" in err
    assert err.count("the source ran out") == 2  # both splits: the corpus is smaller than asked
    # the training budget reached first: the validation split is short for that reason
    manifest = prepare(
        str(tmp_path / "src"),
        embedded_tokenizer_dir,
        str(tmp_path / "out2"),
        tokens=2_000,
        val_tokens=20_000,
        val_every=10,
        progress=False,
    )
    err = capsys.readouterr().err
    assert manifest["splits"]["train"]["tokens"] >= 2_000
    assert "reading stopped at the training budget (--tokens 2,000)" in err
    assert "source ran out" not in err and "the train split holds" not in err


def test_ranks_are_disjoint_and_match_one_rank(shard_dir, tokenizer):
    one = batches(build_prefix_dataloader(1, 0, tokenizer, Config(shard_dir, 4)), 5)
    two = [
        batches(build_prefix_dataloader(2, r, tokenizer, Config(shard_dir, 2)), 5) for r in range(2)
    ]
    for step in range(5):
        rank_rows = [two[r][step][1] for r in range(2)]
        # global batch of 4 = rows 0, 2 from rank 0 and 1, 3 from rank 1
        merged = torch.stack([rank_rows[i % 2][i // 2] for i in range(4)])
        assert torch.equal(merged, one[step][1])
    seen = [tuple(row.tolist()) for r in range(2) for _, y in two[r] for row in y]
    assert len(seen) == len(set(seen))


def test_a_local_batch_beyond_what_the_split_holds_is_refused(shard_dir, tokenizer):
    """A batch larger than a rank's share of the split would read the same sequences again within
    itself (the embedded set 58 times, then out of memory): refused when the loader is built,
    naming the setting and the most that fits; the most that fits is taken."""
    held = build_prefix_dataloader(2, 0, tokenizer, Config(shard_dir, 1)).dataset.per_rank
    build_prefix_dataloader(2, 1, tokenizer, Config(shard_dir, held))
    with pytest.raises(ValueError) as e:
        build_prefix_dataloader(2, 1, tokenizer, Config(shard_dir, held + 1))
    assert str(e.value).startswith(
        f"training.local_batch_size {held + 1:,} is more than training.dataset "
        f"'fineweb_edu_ascii_tokens' at {shard_dir!r} (train split) holds per data-parallel rank "
        f"(2): {held:,} sequences of training.seq_len + 1 = 33 tokens"
    ), str(e.value)
    assert f"Set training.local_batch_size to at most {held:,}" in str(e.value)


def test_a_local_batch_beyond_the_shards_is_refused_by_the_checks_before_a_run(
    shard_dir, embedded_tokenizer_dir, capsys
):
    """The checks that run before any rank starts (and before a sweep launches its runs) read the
    shards' manifest: a local batch above the sequences the training split holds is named there,
    with the most that fits."""
    from torchtitan.config import ConfigManager

    from prefix_titan.data.shards import load_manifest
    from prefix_titan.titan.checks import PathProblems, check_paths

    held = load_manifest(shard_dir)["splits"]["train"]["tokens"] // 65

    def job(batch: int, *extra: str):
        return ConfigManager().parse_args(
            [
                *("--job.config_file", f"{ROOT}/train_configs/embedded_default.toml"),
                *("--training.dataset", "fineweb_edu_ascii_tokens"),
                *("--training.dataset_path", shard_dir, "--training.seq_len", "64"),
                *("--training.local_batch_size", str(batch), "--validation.no-enable"),
                *("--model.hf_assets_path", embedded_tokenizer_dir, *extra),
            ]
        )

    check_paths(job(held))
    for _ in range(3):  # the runs of a sweep's dry run: their epochs said once, not per run
        check_paths(job(held, "--training.steps", "3"))
    assert capsys.readouterr().err.count("3.00 epochs") == 1
    with pytest.raises(PathProblems) as e:
        check_paths(job(held + 1))
    assert e.value.problems == [
        f"training.local_batch_size {held + 1:,} is more than the {held:,} sequences of "
        f"training.seq_len + 1 = 65 tokens that {shard_dir!r} holds: every batch would read each "
        f"of them more than once. Set training.local_batch_size to at most {held:,}, or prepare "
        "more tokens"
    ]


def test_shards_of_another_tokenizer_are_refused_by_the_checks_before_a_run(
    shard_dir, embedded_tokenizer_dir, tmp_path
):
    """A launch's checks (its dry run's too) compare each shard folder with the run's tokenizer,
    as the loader does when the run starts: another tokenizer.json, or a tokenizer_config.json
    whose BOS and EOS differ, is named there with both splits' settings, not in every run's log."""
    import json
    import shutil

    from tokenizers import Tokenizer
    from torchtitan.config import ConfigManager

    from prefix_titan.titan.checks import PathProblems, check_paths

    def job(tokenizer_dir):
        return ConfigManager().parse_args(
            [
                *("--job.config_file", f"{ROOT}/train_configs/embedded_default.toml"),
                *("--training.dataset", "fineweb_edu_ascii_tokens"),
                *("--validation.dataset", "fineweb_edu_ascii_tokens"),
                *("--training.dataset_path", shard_dir, "--validation.dataset_path", shard_dir),
                *("--training.seq_len", "64", "--model.hf_assets_path", str(tokenizer_dir)),
            ]
        )

    check_paths(job(embedded_tokenizer_dir))
    other = shutil.copytree(embedded_tokenizer_dir, tmp_path / "other")
    t = Tokenizer.from_file(str(other / "tokenizer.json"))
    t.enable_padding(pad_id=0)  # the same ids, another serialized form
    t.save(str(other / "tokenizer.json"))
    with pytest.raises(PathProblems) as e:
        check_paths(job(other))
    assert [p.split(":")[0] for p in e.value.problems] == [
        "training.dataset_path",
        "validation.dataset_path",
    ]
    assert f"{shard_dir!r} was tokenized with a different tokenizer" in e.value.problems[0]
    swapped = tmp_path / "swapped"
    shutil.copytree(embedded_tokenizer_dir, swapped)
    config = json.loads((swapped / "tokenizer_config.json").read_text())
    config["bos_token"], config["eos_token"] = config["eos_token"], config["bos_token"]
    (swapped / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(PathProblems) as e:
        check_paths(job(swapped))
    assert len(e.value.problems) == 2
    assert f"{shard_dir!r} marks documents with bos_id" in e.value.problems[0]


def test_fused_loss_batches_carry_the_labels_to_the_model(shard_dir, tokenizer):
    plain = batches(build_prefix_dataloader(1, 0, tokenizer, Config(shard_dir, 4)), 2)
    fused = batches(
        build_prefix_dataloader(1, 0, tokenizer, Config(shard_dir, 4, fused_loss=True)), 2
    )
    for (x, y), (fx, fy) in zip(plain, fused):
        assert set(x) == {"input"} and set(fx) == {"input", "labels"}
        assert torch.equal(fx["input"], x["input"]) and torch.equal(fy, y)
        assert torch.equal(fx["labels"], y)


def test_same_seed_same_order_across_arms(shard_dir, tokenizer):
    a = batches(build_prefix_dataloader(1, 0, tokenizer, Config(shard_dir, 4, seed=7)), 3)
    b = batches(build_prefix_dataloader(1, 0, tokenizer, Config(shard_dir, 4, seed=7)), 3)
    c = batches(build_prefix_dataloader(1, 0, tokenizer, Config(shard_dir, 4, seed=8)), 3)
    assert all(torch.equal(x[1], y[1]) for x, y in zip(a, b))
    assert not all(torch.equal(x[1], y[1]) for x, y in zip(a, c))


def test_loader_resumes_with_the_next_batch(shard_dir, tokenizer):
    loader = build_prefix_dataloader(1, 0, tokenizer, Config(shard_dir, 4))
    it = iter(loader)
    for _ in range(3):
        next(it)
    state = loader.state_dict()
    expected = [next(it)[1] for _ in range(2)]
    fresh = build_prefix_dataloader(1, 0, tokenizer, Config(shard_dir, 4))
    fresh.load_state_dict(state)
    it = iter(fresh)
    assert all(torch.equal(next(it)[1], e) for e in expected)


def test_document_mask_positions_and_labels(shard_dir, tokenizer):
    x, y = batches(
        build_prefix_dataloader(1, 0, tokenizer, Config(shard_dir, 8, document_mask=True)), 1
    )[0]
    inputs, positions, eos, bos = x["input"], x["positions"], tokenizer.eos_id, tokenizer.bos_id
    assert positions.shape == inputs.shape
    for row in range(inputs.shape[0]):
        inp, pos, lab = inputs[row].tolist(), positions[row].tolist(), y[row].tolist()
        for i in range(len(inp)):
            if i > 0 and inp[i - 1] == eos:
                assert pos[i] == 0 and inp[i] == bos  # a new document restarts RoPE positions
            elif i > 0:
                assert pos[i] == pos[i - 1] + 1
            assert (lab[i] == -100) == (inp[i] == eos)  # no target across a document boundary
    assert (inputs == eos).any()


def test_model_consumes_document_positions(shard_dir, tokenizer):
    from torchtitan.models.llama3 import Transformer

    from prefix_titan.model.flavors import FLAVORS

    torch.manual_seed(0)
    model = Transformer(FLAVORS["tiny"])
    with torch.no_grad():
        model.init_weights()
    x, _ = batches(
        build_prefix_dataloader(1, 0, tokenizer, Config(shard_dir, 8, document_mask=True)), 1
    )[0]
    restarts = [
        (r, int(i)) for r in range(8) for i in (x["positions"][r] == 0).nonzero()[:, 0] if i > 0
    ]
    assert restarts, "no document boundary in the batch"
    row, start = restarts[0]
    with torch.no_grad():
        plain = model(x["input"][row : row + 1])
        per_doc = model(x["input"][row : row + 1], positions=x["positions"][row : row + 1])
    torch.testing.assert_close(plain[0, :start], per_doc[0, :start])  # same positions so far
    assert not torch.allclose(plain[0, start:], per_doc[0, start:])  # positions restarted


def test_document_mask_needs_block_causal_flavor(tmp_path):
    from torchtitan.config import ConfigManager

    from prefix_titan.titan.checks import check_job_config

    config = ConfigManager().parse_args(
        [
            *("--job.config_file", f"{ROOT}/train_configs/embedded_default.toml"),
            *("--job.dump_folder", str(tmp_path / "run")),  # not the README run's folder
            "--data.document_mask",
        ]
    )
    with pytest.raises(ValueError, match="needs a block_causal flavor"):
        check_job_config(config)
    config.model.flavor = "tiny_flex"
    if torch.cuda.is_available():
        check_job_config(config)
    else:  # torch has no CPU backward for FlexAttention: said before the model is built
        with pytest.raises(
            ValueError, match="attends with FlexAttention, which torch cannot train"
        ):
            check_job_config(config)


ONLINE_ENV = {  # no offline setting, no proxy (one would answer for a refused local port)
    k: v
    for k, v in os.environ.items()
    if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") and not k.lower().endswith("_proxy")
}


@pytest.mark.slow
def test_an_unreachable_hub_names_the_offline_sources(tmp_path, embedded_tokenizer_dir):
    out = subprocess.run(
        [sys.executable, "-m", "prefix_titan.prepare", "--tokenizer", embedded_tokenizer_dir]
        + ["--out", str(tmp_path / "out"), "--tokens", "1e4"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**ONLINE_ENV, "HF_ENDPOINT": "http://127.0.0.1:9"},  # refused: found in one try
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "warning: the Hugging Face hub (http://127.0.0.1:9) was not reached" in out.stderr
    assert "Retrying" not in out.stderr, out.stderr[-2000:]
    assert "could not reach the Hugging Face hub to list and read the files of" in out.stderr
    assert "--source DIR" in out.stderr and "--source embedded" in out.stderr


def test_progress_ends_with_a_summary_not_a_negative_eta(capsys):
    from prefix_titan.data.prepare import _Progress

    bar = _Progress(total=100, start=0, enabled=True)
    bar.update(130, 3)  # the last document went past the budget
    bar.close(130)
    err = capsys.readouterr().err
    assert "ETA -" not in err and "ETA 0.0 min" in err and "130/100 train tokens  done in" in err


@pytest.mark.slow
def test_worker_processes_write_the_same_bytes(tmp_path, embedded_tokenizer_dir, monkeypatch):
    """prepare with 2 worker processes writes the bytes it writes alone, and its workers end on
    their own when it is done (exit code 0): a pool that kills them (SIGTERM) can hang on a lock
    a killed one held (prepare._Workers)."""
    import multiprocessing as mp

    import prefix_titan.data.prepare as prep

    seen, leave = [], prep._Workers.__exit__

    def leave_seeing_the_workers(self, *exc):
        seen.extend(mp.active_children())
        return leave(self, *exc)

    monkeypatch.setattr(prep._Workers, "__exit__", leave_seeing_the_workers)
    make_corpus(tmp_path / "src", fmt="parquet")
    outs = {}
    for workers in (0, 2):
        out = str(tmp_path / f"w{workers}")
        prepare(
            str(tmp_path / "src"),
            embedded_tokenizer_dir,
            out,
            tokens=20_000,
            val_tokens=2_000,
            val_every=10,
            shard_tokens=5000,
            batch_docs=64,
            progress=False,
            workers=workers,
        )
        outs[workers] = out
    names = sorted(os.listdir(outs[0]))
    assert names == sorted(os.listdir(outs[2])) and len(names) > 3
    for name in names:
        a, b = (open(os.path.join(outs[w], name), "rb").read() for w in (0, 2))
        assert a == b, name
    assert len(seen) == 2 and [p.exitcode for p in seen] == [0, 0], seen


class _FakeHub:
    """The hub's listing and files, served from a local folder of parquet files: `newest` is the
    commit main points at now; `fail` names a file whose reading breaks off (a lost connection)."""

    def __init__(self, folder, newest):
        self.folder, self.newest, self.fail, self.opened, self.listed = folder, newest, None, [], []

    def api(self):
        hub = self

        class Api:
            def dataset_info(self, repo, revision=None):
                return types.SimpleNamespace(
                    sha=hub.newest if revision in (None, "main") else revision
                )

            def list_repo_files(self, repo, repo_type=None, revision=None):
                hub.listed.append(revision)
                return [f"sample/100BT/{n}" for n in sorted(os.listdir(hub.folder))]

        return Api()

    def fs(self):
        hub = self

        class Fs:
            def open(self, path, mode="rb"):
                hub.opened.append(path)
                name = os.path.basename(path)
                if name == hub.fail:
                    raise ConnectionError("the hub closed the connection")
                return open(os.path.join(hub.folder, name), mode)

        return Fs()


def test_a_hub_prepare_reads_and_resumes_at_the_commit_it_began(
    tmp_path, embedded_tokenizer_dir, monkeypatch
):
    """main moves on upstream while a prepare is interrupted: the resumed prepare keeps reading
    the commit it began on (it used to be refused as "other settings (revision)"), every file
    is opened at that commit, and the result equals an uninterrupted prepare's bytes."""
    import huggingface_hub

    make_corpus(tmp_path / "src", n_files=3, docs_per_file=300, fmt="parquet")
    hub = _FakeHub(str(tmp_path / "src"), newest="c0ffee")
    monkeypatch.setattr(huggingface_hub, "HfApi", hub.api)
    monkeypatch.setattr(huggingface_hub, "HfFileSystem", hub.fs)
    kw = dict(tokens=10**9, val_tokens=10**9, val_every=10, shard_tokens=5000, progress=False)
    kw["batch_docs"] = 50
    clean = prepare("owner/data", embedded_tokenizer_dir, str(tmp_path / "clean"), **kw)
    assert clean["revision"] == "c0ffee"
    assert hub.opened and all(p.startswith("datasets/owner/data@c0ffee/") for p in hub.opened)
    hub.fail = sorted(os.listdir(tmp_path / "src"))[1]
    with pytest.raises(ConnectionError):
        prepare("owner/data", embedded_tokenizer_dir, str(tmp_path / "cut"), **kw)
    hub.fail, hub.newest, hub.opened = None, "beef00", []
    resumed = prepare("owner/data", embedded_tokenizer_dir, str(tmp_path / "cut"), **kw)
    assert resumed["revision"] == "c0ffee" and hub.listed[-1] == "c0ffee"
    assert all(p.startswith("datasets/owner/data@c0ffee/") for p in hub.opened)
    for name in os.listdir(tmp_path / "clean"):
        assert (tmp_path / "clean" / name).read_bytes() == (tmp_path / "cut" / name).read_bytes()
    fresh = prepare("owner/data", embedded_tokenizer_dir, str(tmp_path / "new"), **kw)
    assert fresh["revision"] == "beef00"  # a new prepare reads the newest commit
    # asked for a branch by name: resumed with the same name, the commit it began on
    hub.fail = sorted(os.listdir(tmp_path / "src"))[1]
    with pytest.raises(ConnectionError):
        prepare("owner/data", embedded_tokenizer_dir, str(tmp_path / "main"), **kw, revision="main")
    hub.fail, hub.newest = None, "feed01"
    resumed = prepare(
        "owner/data", embedded_tokenizer_dir, str(tmp_path / "main"), **kw, revision="main"
    )
    assert resumed["revision"] == "beef00"
    # begun with no --revision (main), resumed naming main: the same commit
    hub.fail = sorted(os.listdir(tmp_path / "src"))[1]
    with pytest.raises(ConnectionError):
        prepare("owner/data", embedded_tokenizer_dir, str(tmp_path / "named"), **kw)
    hub.fail, hub.newest = None, "0ddba11"
    resumed = prepare(
        "owner/data", embedded_tokenizer_dir, str(tmp_path / "named"), **kw, revision="main"
    )
    assert resumed["revision"] == "feed01"
    with pytest.raises(ValueError, match="--revision is for a hub dataset"):
        prepare(
            str(tmp_path / "src"),
            embedded_tokenizer_dir,
            str(tmp_path / "x"),
            **kw,
            revision="c0ffee",
        )


SETTINGS = (
    *("split", "source", "revision", "files", "tokenizer_sha256", "vocab_size", "dtype"),
    *("bos_id", "eos_id", "special_text", "budget_tokens", "budget_val_tokens", "val_every"),
    "shard_tokens",
)
"""The settings a prepare records in progress.json (and copies into its manifest)"""


def test_a_shard_shorter_than_its_record_is_refused_not_padded(tmp_path, embedded_tokenizer_dir):
    """An interrupted prepare whose recorded shard was removed since: resuming refuses it (it
    used to extend the file with zeros, which the CRC then vouched for)."""
    make_corpus(tmp_path / "src", n_files=2, docs_per_file=300, fmt="parquet")
    kw = dict(tokens=10**9, val_tokens=10**9, val_every=10, shard_tokens=5000, progress=False)
    out = tmp_path / "out"
    prepare(str(tmp_path / "src"), embedded_tokenizer_dir, str(out), **kw)
    manifest = json.loads((out / "manifest.json").read_text())
    progress = {  # the record of a prepare interrupted after its first train shard
        "settings": {k: manifest[k] for k in SETTINGS},
        "file": 0,
        "row": 0,
        "splits": {"train": {"shards": [5000], "tokens": 5000, "docs": 1}},
    }
    (out / "manifest.json").unlink()
    (out / "train_00000.bin").unlink()
    (out / "progress.json").write_text(json.dumps(progress))
    with pytest.raises(ValueError) as e:
        prepare(str(tmp_path / "src"), embedded_tokenizer_dir, str(out), **kw)
    assert f"shard {out / 'train_00000.bin'} holds 0 bytes, fewer than the 10000" in str(e.value)
    assert not (out / "train_00000.bin").exists()


def test_a_document_under_two_ids_falls_in_one_split(embedded_tokenizer_dir):
    """FineWeb deduplicates within a crawl only: the same text under other ids goes to one split,
    validation or training, never both."""
    from torchtitan.components.tokenizer import HuggingFaceTokenizer

    from prefix_titan.data.prepare import process_rows

    tokenizer = HuggingFaceTokenizer(embedded_tokenizer_dir)
    texts = [f"document number {i} about {WORDS[i % len(WORDS)]}." for i in range(60)]
    rows = [("f", k, f"<urn:{k}:{i}>", t) for k in range(4) for i, t in enumerate(texts)]
    out = process_rows(rows, tokenizer, val_every=5)
    by_text = {}
    for (_, _, _, text), r in zip(rows, out):
        by_text.setdefault(text, set()).add(r[2])
    assert all(len(k) == 1 for k in by_text.values())
    assert {"validation", "train"} == set().union(*by_text.values())


def test_a_run_that_would_read_its_shards_again_is_told_before_and_as_it_happens(
    shard_dir, tokenizer, caplog
):
    """The loader starts another epoch when the data runs out (torchtitan reads on): the checks
    before the run say how many epochs its steps read, and the loader says when one begins."""
    from types import SimpleNamespace

    from prefix_titan.data.shards import load_manifest
    from prefix_titan.titan.checks import epochs_note
    from prefix_titan.titan.datasets import PackedTokenDataset

    manifest = load_manifest(shard_dir)
    held = manifest["splits"]["train"]["tokens"] // 65
    training = SimpleNamespace(seq_len=64, global_batch_size=4, dataset_path=shard_dir)
    job = SimpleNamespace(training=training)
    training.steps = held // 4  # one epoch: nothing to say
    assert epochs_note(job, manifest) is None
    training.steps = held // 2
    note = epochs_note(job, manifest)
    assert note.startswith(f"training.steps {held // 2} x training.global_batch_size 4 read ")
    assert f"{shard_dir} holds {held:,} (" in note and ": 2.00 epochs" in note
    training.global_batch_size = -1  # follows the ranks: at least a local batch a step
    training.local_batch_size = 4
    note = epochs_note(job, manifest)
    assert note.startswith(
        f"training.steps {held // 2} x training.local_batch_size 4 (global_batch_size unset: a "
        "local batch per data-parallel rank) read at least "
    )
    assert ": at least 2.00 epochs" in note
    training.steps = held // 4
    assert epochs_note(job, manifest) is None
    training.seq_len = 10**9  # not one sequence: the loader's refusal says so, not a division
    assert epochs_note(job, manifest) is None
    training.seq_len = 64

    ds = PackedTokenDataset(
        ShardedTokens(shard_dir, "train", tokenizer), 64, seed=1, what="training.dataset X"
    )
    stream = iter(ds)
    with caplog.at_level("WARNING"):
        for _ in range(ds.per_rank):
            next(stream)
        assert "epoch 2 begins" not in caplog.text
        next(stream)
    assert (
        f"training.dataset X: every one of its {ds.per_rank:,} sequences per rank has been read; "
        "epoch 2 begins" in caplog.text
    )


def test_a_validation_reads_each_sequence_once_however_many_steps_it_asks(
    shard_dir, tokenizer, caplog
):
    """torchtitan asks for an endless validation loader whenever validation.steps is set: steps
    beyond the split's sequences would read them again within one validation and weigh them
    double. The loader is one pass in whole batches (torchtitan averages the batches' means: a
    short last batch would weigh its sequences more), and says so."""
    from prefix_titan.titan.datasets import build_prefix_validation_dataloader

    c = Config(shard_dir, 4)
    from torchtitan.config import JobConfig

    v = JobConfig().validation
    v.dataset, v.dataset_path, v.seq_len, v.local_batch_size = (
        "fineweb_edu_ascii_tokens",
        shard_dir,
        32,
        4,
    )
    held = len(ShardedTokens(shard_dir, "validation", tokenizer)) // 33
    v.steps = held  # 4 x held sequences asked
    c.validation = v
    with caplog.at_level("WARNING"):
        loader = build_prefix_validation_dataloader(1, 0, tokenizer, c, infinite=True)
    whole = held // 4 * 4
    said = f"reads {whole} of them once" if whole < held else f"reads those {held} once"
    assert said in caplog.text, caplog.text
    assert f"validation.steps {held} x validation.local_batch_size 4 = {4 * held} sequences" in (
        caplog.text
    )  # (what was asked: the trial's 2-rank runs read half the steps their config names)
    if whole < held:
        assert f"reads {whole} of them once ({whole // 4} steps)" in caplog.text
    for _ in range(2):  # every pass: each sequence once, whole batches
        batches = [x["input"] for x, _ in loader]
        seen = [tuple(row.tolist()) for b in batches for row in b]
        assert len(seen) == whole and len(set(seen)) == whole
        assert all(len(b) == 4 for b in batches)


def test_a_missing_tokenizer_is_named_by_the_one_the_shards_were_prepared_with(
    shard_dir, embedded_tokenizer_dir, tmp_path, monkeypatch
):
    """Training on shards, a model.hf_assets_path without tokenizer.json is pointed at the
    tokenizer the shards' manifest names (here the embedded BPE, and the folder that holds it),
    not at the Llama-3 download; a path that names the file is told to name its folder."""
    from torchtitan.config import ConfigManager

    from prefix_titan.titan import checks

    def job(assets):
        return ConfigManager().parse_args(
            [
                "--job.config_file",
                os.path.join(
                    os.path.dirname(__file__), "..", "train_configs", "embedded_default.toml"
                ),
                "--training.dataset",
                "fineweb_edu_ascii_tokens",
                "--training.dataset_path",
                shard_dir,
                "--model.hf_assets_path",
                assets,
                "--job.dump_folder",
                str(tmp_path / "run"),
            ]
        )

    monkeypatch.setattr(checks, "EMBEDDED_TOKENIZER", embedded_tokenizer_dir)
    sha = load_manifest(shard_dir)["tokenizer_sha256"]
    problem = checks.tokenizer_missing(job(str(tmp_path / "none")), hint=False)
    assert f"were prepared with the tokenizer of sha256 {sha[:12]}..." in problem
    assert f"given to prepare's --tokenizer ({embedded_tokenizer_dir} holds it)" in problem
    assert "Llama-3" not in problem
    problem = checks.tokenizer_missing(job(str(tmp_path / "tok" / "tokenizer.json")), hint=False)
    assert "names the file: it is the folder that holds tokenizer.json" in problem
    assert problem.endswith(f"{str(tmp_path / 'tok')!r}")
    assert problem.startswith("model.hf_assets_path ")
    former = ConfigManager().parse_args(  # torchtitan's former key, which it reads as the new
        [
            "--job.config_file",
            os.path.join(os.path.dirname(__file__), "..", "train_configs", "embedded_default.toml"),
            "--model.tokenizer_path",
            str(tmp_path / "tok" / "tokenizer.json"),
        ]
    )
    problem = checks.tokenizer_missing(former, hint=False)
    assert problem.startswith(
        "model.tokenizer_path (torchtitan's former key, read as model.hf_assets_path) "
    )
    assert "names the file: it is the folder that holds tokenizer.json" in problem
    embedded = ConfigManager().parse_args(
        [
            "--job.config_file",
            os.path.join(os.path.dirname(__file__), "..", "train_configs", "embedded_default.toml"),
            "--model.hf_assets_path",
            str(tmp_path / "tok" / "tokenizer.json"),
        ]
    )
    assert "names the file" in checks.tokenizer_missing(embedded, hint=False)  # (on any data)


def _one_rank_finds_the_damage(rank, world, path):
    from prefix_titan.titan.datasets import first_of_every_rank

    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{path}", rank=rank, world_size=world
    )
    try:
        found = ValueError("shard train_00001.bin is corrupt") if rank == 1 else None
        shared = first_of_every_rank(found)
        assert isinstance(shared, ValueError) and str(shared) == "shard train_00001.bin is corrupt"
        assert first_of_every_rank(None) is None
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_a_damaged_shard_one_rank_finds_is_refused_by_every_rank(tmp_path):
    """Each rank checks the CRCs of its share of the shards: the rank that finds the damage
    hands its error to the others, so that every rank refuses alike and rank 0 says why (rank 1
    used to exit alone, silently, and rank 0 to go on)."""
    import torch.multiprocessing as mp

    from prefix_titan.titan.datasets import first_of_every_rank

    error = ValueError("x")
    assert first_of_every_rank(error) is error and first_of_every_rank(None) is None
    mp.spawn(_one_rank_finds_the_damage, args=(2, str(tmp_path / "store")), nprocs=2, join=True)


def test_text_that_spells_a_special_token_is_encoded_as_text(tmp_path, embedded_tokenizer_dir):
    """A document quoting `<|end_of_text|>` (a chat template, a page about tokenizers) was encoded
    with that special token inside it: an EOS and a BOS in the middle of the document, which
    document masking cut in two. Every path encodes such text as the text it is (the shards, the
    run's tokenizer, which the streamed dataset and the embedded corpus use): each document holds
    exactly one BOS, first, and one EOS, last, and decodes to its text."""
    import types

    from prefix_titan.data.tokenizers import BOS, EOS, SPECIAL_TEXT
    from prefix_titan.titan.tokenizer import build_tokenizer

    texts = [f"a chat template: {BOS}user{EOS} and more", f"{EOS}", f"plain {BOS}{BOS} text"]
    texts += [" ".join(["the letter data"] * (i % 7 + 1)) for i in range(60)]
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    m = prepare(str(src), embedded_tokenizer_dir, str(tmp_path / "out"), 10**6, 0, progress=False)
    assert m["special_text"] == SPECIAL_TEXT
    job = types.SimpleNamespace(
        model=types.SimpleNamespace(hf_assets_path=embedded_tokenizer_dir),
        training=types.SimpleNamespace(dataset="fineweb_edu_ascii_tokens"),
    )
    tok = build_tokenizer(job)
    docs = split_documents(ShardedTokens(str(tmp_path / "out"), "train", tok)[:], 0, 1)
    docs += split_documents(ShardedTokens(str(tmp_path / "out"), "validation", tok)[:], 0, 1)
    assert len(docs) == len(texts)
    for doc, text in zip(docs, sorted(texts, key=lambda t: zlib.crc32(t.encode()) % 100 == 0)):
        assert doc.count(tok.bos_id) == 1 and doc.count(tok.eos_id) == 1, (text, doc)
        assert tok.decode(doc[1:-1]) == text
        assert tok.encode(text, add_bos=True, add_eos=True) == doc  # the run's own encoding
    assert (tok.bos_id, tok.eos_id) == (0, 1)


def test_shards_prepared_before_special_text_was_encoded_as_text_are_read_with_a_warning(
    shard_dir, tmp_path, tokenizer, caplog
):
    """Older shards hold the special tokens where a document spelled them: read (every arm reads
    the same tokens), said, with what prepares them anew."""
    import shutil

    from prefix_titan.data.shards import manifest_sha256
    from prefix_titan.titan.datasets import token_stream

    old = tmp_path / "old"
    shutil.copytree(shard_dir, old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["special_text"]
    manifest["sha256"] = manifest_sha256(manifest)
    (old / "manifest.json").write_text(json.dumps(manifest))
    for path, said in ((shard_dir, False), (str(old), True)):
        caplog.clear()
        with caplog.at_level("WARNING"):
            token_stream("fineweb_edu_ascii_tokens", path, "train", tokenizer, 0, 1)
        assert ("was prepared before documents' text that spells" in caplog.text) is said


PLANTED_SIGTERM = """
import multiprocessing.context, os, signal, sys, time
start = multiprocessing.context.SpawnProcess.start
def start_then_signalled(self):  # a SIGTERM as the pool starts a worker (before it records it)
    start(self)
    if not getattr(start_then_signalled, "sent", False):
        start_then_signalled.sent = True
        time.sleep(float(os.environ.get("WORKER_UP_S", "4")))  # (the worker waits for work)
        os.kill(os.getpid(), signal.SIGTERM)
multiprocessing.context.SpawnProcess.start = start_then_signalled
from prefix_titan.prepare import main
main(sys.argv[1:])
"""


@pytest.mark.slow  # (a few seconds: two spawned workers)
def test_a_sigterm_as_a_worker_starts_ends_the_prepare(tmp_path, embedded_tokenizer_dir):
    """A SIGTERM whose handler raised between a worker's start and the pool's record of it left
    that worker unknown to the pool's shutdown, and the prepare waited for it at exit for ever
    (after its "terminated" line): the pool's calls hold the signal until they return. The
    same command resumes."""
    make_corpus(tmp_path / "src", n_files=2, docs_per_file=200)
    args = ["--source", str(tmp_path / "src"), "--tokenizer", embedded_tokenizer_dir]
    args += ["--out", str(tmp_path / "out"), "--tokens", "1e9", "--val-tokens", "1e9"]
    args += ["--batch-docs", "8", "--no-progress", "--workers", "2"]
    try:
        done = subprocess.run(
            [sys.executable, "-c", PLANTED_SIGTERM, *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError("the prepare did not end after its SIGTERM") from None
    assert done.returncode == 143, done.stderr
    assert f"[prepare] {tmp_path / 'out'}: terminated (SIGTERM)" in done.stderr
    resumed = subprocess.run(
        [sys.executable, "-m", "prefix_titan.prepare", *args], capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "out" / "manifest.json").exists()


def test_signals_are_held_for_python_handlers_only_and_delivered_after():
    """The worker pool's submissions hold SIGINT/SIGTERM (prepare._signals_held): a Python
    handler's signal is delivered as the block returns, once; an ignored SIGINT (a prepare run in
    the background of a script) stays ignored inside, as the workers started there inherit it."""
    from prefix_titan.data.prepare import _signals_held

    got = []
    before = signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
    ignored = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with _signals_held():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            assert got == []  # (held)
        assert got == [signal.SIGTERM]  # the first, handed on as the block returned
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, before)
        signal.signal(signal.SIGINT, ignored)
