"""prepare's reruns and inputs: a finished prepare whose source files changed is refused, --val-tokens
0 holds no document out, a tokenizer folder that cannot be read (or whose BOS/EOS are no tokens of
its vocabulary) is refused naming the file, --workers is bounded by the cores, and workers leave
Ctrl-C to the prepare."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from prefix_titan.data.prepare import NO_SPLIT, SPLIT_RULE, prepare
from prefix_titan.data.shards import MANIFEST, manifest_sha256

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KW = dict(tokens=10**9, val_tokens=10**9, val_every=5, shard_tokens=4000, progress=False)
TEXTS = [f"Document {i} on the strawberry problem, counted {i * 7} times." for i in range(60)]


def write_jsonl(path, texts):
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))


def rewrite_manifest(out, change):
    """The manifest of `out` changed by `change` (a function of it) and sealed again: what an
    earlier prepare wrote."""
    path = os.path.join(out, MANIFEST)
    with open(path) as f:
        m = json.load(f)
    change(m)
    m["sha256"] = manifest_sha256(m)
    with open(path, "w") as f:
        json.dump(m, f)


def test_a_finished_prepare_whose_source_file_changed_is_refused_naming_it(
    tmp_path, embedded_tokenizer_dir, capsys
):
    src, out = tmp_path / "src", str(tmp_path / "out")
    os.makedirs(src)
    write_jsonl(src / "a.jsonl", TEXTS[:30])
    write_jsonl(src / "b.jsonl", TEXTS[30:])
    done = prepare(str(src), embedded_tokenizer_dir, out, **KW)
    assert [len(r) for r in done["local_files"]] == [2, 2]
    assert prepare(str(src), embedded_tokenizer_dir, out, **KW) == done  # nothing to do
    before = (src / "a.jsonl").read_text(), os.stat(src / "a.jsonl")
    new = '{"text": "A brand new document."}\n'
    with open(src / "a.jsonl", "a") as f:
        f.write(new)
    with pytest.raises(ValueError) as e:
        prepare(str(src), embedded_tokenizer_dir, out, **KW)
    said = str(e.value)
    size = len(before[0])
    assert said.startswith(
        f"{out!r} holds finished shards (manifest.json) of files which changed since: "
        f"{src / 'a.jsonl'} (size {size:,} then, {size + len(new):,} now)."
    ), said
    assert "b.jsonl" not in said and "cp -p" in said
    # the same bytes, another modification time: changed too; restored with its time: finished
    (src / "a.jsonl").write_text(before[0])
    with pytest.raises(ValueError, match=r"a.jsonl \(modified since: its time then @") as e:
        prepare(str(src), embedded_tokenizer_dir, out, **KW)
    (stamp,) = re.findall(r"the same bytes: touch -d (@\d+\.\d{9})\)", str(e.value))
    subprocess.run(["touch", "-d", stamp, str(src / "a.jsonl")], check=True)  # as it says
    assert os.stat(src / "a.jsonl").st_mtime_ns == before[1].st_mtime_ns
    assert prepare(str(src), embedded_tokenizer_dir, out, **KW) == done
    # a manifest written before the files' sizes were recorded: read, and said unchecked
    rewrite_manifest(out, lambda m: m.pop("local_files"))
    capsys.readouterr()
    with open(src / "a.jsonl", "a") as f:
        f.write('{"text": "A brand new document."}\n')
    assert prepare(str(src), embedded_tokenizer_dir, out, **KW)["documents_read"] == 60
    err = capsys.readouterr().err
    assert "records no sizes of its --source files" in err and "cannot be checked" in err


def test_a_file_the_finished_prepare_never_read_may_change(tmp_path, embedded_tokenizer_dir):
    """The training budget reached in the first file: the second was never read, and its change
    leaves the shards what they would be."""
    src, out = tmp_path / "src", str(tmp_path / "out")
    os.makedirs(src)
    write_jsonl(src / "a.jsonl", TEXTS)
    write_jsonl(src / "b.jsonl", TEXTS[:5])
    done = prepare(str(src), embedded_tokenizer_dir, out, **{**KW, "tokens": 100})
    assert done["stopped_at"]["file"] == 0 and done["stopped_at"]["row"] > 0
    with open(src / "b.jsonl", "a") as f:
        f.write('{"text": "A brand new document."}\n')
    assert prepare(str(src), embedded_tokenizer_dir, out, **{**KW, "tokens": 100}) == done


def test_val_tokens_0_holds_no_document_out(tmp_path, embedded_tokenizer_dir, capsys):
    """With --val-tokens 0 (no validation split) every document trains: none is held out and
    dropped. A small validation budget drops those past it, which the summary says."""
    from prefix_titan.prepare import main

    src = tmp_path / "src"
    os.makedirs(src)
    write_jsonl(src / "a.jsonl", TEXTS)
    none = prepare(
        str(src), embedded_tokenizer_dir, str(tmp_path / "o0"), **{**KW, "val_tokens": 0}
    )
    assert none["split"] == NO_SPLIT
    assert none["documents_validation_over_budget"] == 0
    assert none["splits"]["validation"]["documents"] == 0
    assert none["splits"]["train"]["documents"] == none["documents_read"] == 60
    held = prepare(str(src), embedded_tokenizer_dir, str(tmp_path / "o1"), **KW)
    assert held["split"] == SPLIT_RULE and held["splits"]["validation"]["documents"] > 0
    assert held["splits"]["train"]["documents"] < 60
    capsys.readouterr()
    args = ["--source", str(src), "--tokenizer", embedded_tokenizer_dir, "--tokens", "1e9"]
    main([*args, "--out", str(tmp_path / "o2"), "--val-tokens", "1", "--val-every", "5"])
    m = json.loads((tmp_path / "o2" / MANIFEST).read_text())
    over = m["documents_validation_over_budget"]
    assert over == held["splits"]["validation"]["documents"] - 1 > 0
    said = capsys.readouterr()
    assert f"{over:,} docs held out past the validation budget dropped" in said.out, said.out
    assert f"{over:,} of them past its budget and dropped, trained on by none" in said.err


def test_val_tokens_0_finished_when_it_held_documents_out_is_read_with_a_note(
    tmp_path, embedded_tokenizer_dir, capsys
):
    """Shards of --val-tokens 0 recorded under the rule that held 1 document in --val-every out:
    finished, read as they are, said; unfinished, refused (continued, it would mix the two)."""
    src, out = tmp_path / "src", str(tmp_path / "out")
    os.makedirs(src)
    write_jsonl(src / "a.jsonl", TEXTS)
    kw = {**KW, "val_tokens": 0}
    prepare(str(src), embedded_tokenizer_dir, out, **kw)
    rewrite_manifest(out, lambda m: m.update(split=SPLIT_RULE, documents_validation_over_budget=9))
    capsys.readouterr()
    assert prepare(str(src), embedded_tokenizer_dir, out, **kw)["split"] == SPLIT_RULE
    assert "(9 dropped, trained on by none)" in capsys.readouterr().err
    cut = tmp_path / "cut"
    os.makedirs(cut)
    settings = json.loads((tmp_path / "out" / MANIFEST).read_text())
    settings = {k: settings[k] for k in ("split", "source", "val_every", "special_text")}
    (cut / "progress.json").write_text(
        json.dumps({"settings": settings, "file": 0, "row": 0, "splits": {}})
    )
    with pytest.raises(ValueError, match="unfinished prepare with --val-tokens 0 begun when"):
        prepare(str(src), embedded_tokenizer_dir, str(cut), **kw)


def tokenizer_copy(tmp_path, embedded_tokenizer_dir, name):
    folder = tmp_path / name
    shutil.copytree(embedded_tokenizer_dir, folder)
    return folder


@pytest.mark.parametrize(
    "damaged, said",
    [
        ("tokenizer.json", "tokenizer.json cannot be read as a tokenizer (Exception: "),
        ("tokenizer_config.json", "tokenizer_config.json cannot be read as JSON (JSONDecodeError"),
    ],
)
def test_a_damaged_tokenizer_file_is_refused_naming_it(
    tmp_path, embedded_tokenizer_dir, capsys, damaged, said
):
    from prefix_titan.prepare import main

    tok = tokenizer_copy(tmp_path, embedded_tokenizer_dir, "tok")
    (tok / damaged).write_text("{not json\n")
    src = tmp_path / "src"
    os.makedirs(src)
    write_jsonl(src / "a.jsonl", TEXTS)
    with pytest.raises(ValueError) as e:
        prepare(str(src), str(tok), str(tmp_path / "out"), **KW)
    assert str(e.value).startswith(f"--tokenizer {str(tok)!r}: {tok / damaged} "), str(e.value)
    assert said in str(e.value)
    args = ["--source", str(src), "--tokenizer", str(tok), "--tokens", "1e4", "--no-progress"]
    with pytest.raises(SystemExit) as e:
        main([*args, "--out", str(tmp_path / "out")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1 and said in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("key", ["bos_token", "eos_token"])
def test_a_bos_or_eos_outside_the_vocabulary_is_refused_naming_it(
    tmp_path, embedded_tokenizer_dir, key
):
    """torchtitan would add the token, the vocabulary growing past tokenizer.json's (4,096 ->
    4,098 ids), which training then blamed on the model's flavor."""
    tok = tokenizer_copy(tmp_path, embedded_tokenizer_dir, "tok")
    config = json.loads((tok / "tokenizer_config.json").read_text())
    config[key] = {"content": "<s>"} if key == "eos_token" else "<s>"
    (tok / "tokenizer_config.json").write_text(json.dumps(config))
    src = tmp_path / "src"
    os.makedirs(src)
    write_jsonl(src / "a.jsonl", TEXTS)
    with pytest.raises(ValueError) as e:
        prepare(str(src), str(tok), str(tmp_path / "out"), **KW)
    assert str(e.value).startswith(
        f"--tokenizer {str(tok)!r}: {tok / 'tokenizer_config.json'} names {key} '<s>', which is "
        f"no token of {tok / 'tokenizer.json'}'s vocabulary (its 4,096 tokens;"
    ), str(e.value)


def test_more_workers_than_cores_are_refused(tmp_path, embedded_tokenizer_dir, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    with pytest.raises(ValueError, match="--workers must be at most 2, the cores of this machine"):
        prepare("embedded", embedded_tokenizer_dir, str(tmp_path / "out"), **KW, workers=3)
    assert not (tmp_path / "out").exists()


def test_a_worker_leaves_ctrl_c_to_the_prepare():
    """Ctrl-C reaches the whole process group: a worker ignores it (no traceback of its own)."""
    code = (
        "import os, signal\n"
        "from prefix_titan.data.prepare import _start_worker\n"
        # as an interactive shell starts it (one started in the background inherits SIG_IGN)
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "_start_worker(os.getppid())\n"
        "print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)\n"
    )
    env = {**os.environ, "PYTHONPATH": ROOT}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr[-2000:]


def test_shard_tokens_take_the_forms_tokens_take(tmp_path, embedded_tokenizer_dir, capsys):
    from prefix_titan.prepare import main

    src = tmp_path / "src"
    os.makedirs(src)
    write_jsonl(src / "a.jsonl", TEXTS)
    (src / "B.JSONL").write_text('{"text": "not read"}\n')
    args = ["--source", str(src), "--tokenizer", embedded_tokenizer_dir, "--tokens", "1e9"]
    main([*args, "--out", str(tmp_path / "out"), "--val-tokens", "0", "--shard-tokens", "1e3"])
    m = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert m["shard_tokens"] == 1000 and len(m["splits"]["train"]["shards"]) > 1
    assert m["files"] == [str(src / "a.jsonl")]
    err = capsys.readouterr().err
    assert "1 file is not read, whose names end as a data file's in another letter case" in err
    assert "B.JSONL" in err
    with pytest.raises(SystemExit):
        main([*args, "--out", str(tmp_path / "x"), "--shard-tokens", "2.5e0"])
    assert "--shard-tokens must be a whole number of tokens" in capsys.readouterr().err


def test_a_refused_rerun_names_the_options(tmp_path, embedded_tokenizer_dir):
    src, out = tmp_path / "src", str(tmp_path / "out")
    os.makedirs(src)
    write_jsonl(src / "a.jsonl", TEXTS)
    prepare(str(src), embedded_tokenizer_dir, out, **KW)
    with pytest.raises(ValueError) as e:
        prepare(str(src), embedded_tokenizer_dir, out, **{**KW, "tokens": 5, "val_every": 4})
    said = str(e.value)
    assert "(--tokens 1000000000 there, 5 asked; --val-every 5 there, 4 asked)" in said, said
    tok = tokenizer_copy(tmp_path, embedded_tokenizer_dir, "tok")
    tok_json = json.loads((tok / "tokenizer.json").read_text())
    tok_json["normalizer"] = {"type": "Lowercase"}  # (another tokenizer, the same vocabulary)
    (tok / "tokenizer.json").write_text(json.dumps(tok_json))
    with pytest.raises(ValueError, match="tokenizer_sha256 of --tokenizer '"):
        prepare(str(src), str(tok), out, **KW)


def test_a_mixed_folder_streamed_names_the_setting(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from prefix_titan.titan.datasets import load_fineweb_edu_ascii

    write_jsonl(tmp_path / "a.jsonl", TEXTS[:10])
    pq.write_table(pa.table({"text": TEXTS[10:20]}), tmp_path / "b.parquet")
    write_jsonl(tmp_path / "c.jsonl", TEXTS[20:])
    with pytest.raises(ValueError) as e:
        load_fineweb_edu_ascii(str(tmp_path), "train")
    said = str(e.value)
    assert said.startswith(
        f"training.dataset_path {str(tmp_path)!r}: its FineWeb-Edu files mix formats "
        "['json', 'parquet']"
    ), said
    assert "which reads a mixed folder" in said


@pytest.mark.slow
def test_a_hub_name_that_is_no_local_folder_says_so(tmp_path, embedded_tokenizer_dir):
    from test_shards import ONLINE_ENV

    out = subprocess.run(
        [sys.executable, "-m", "prefix_titan.prepare", "--tokenizer", embedded_tokenizer_dir]
        + ["--out", str(tmp_path / "out"), "--tokens", "1e4", "--source", "work/nonexistent"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**ONLINE_ENV, "HF_ENDPOINT": "http://127.0.0.1:9", "PYTHONPATH": ROOT},
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert (
        "files of work/nonexistent (read as a hub dataset's name: no local folder "
        "work/nonexistent is here)" in out.stderr
    ), out.stderr[-2000:]


def test_one_source_prepared_twice_its_files_touched_between_has_one_digest(
    tmp_path, embedded_tokenizer_dir
):
    """The manifest's digest names the data (a run records it, a sweep compares its arms'): the
    source files' times, which a rerun checks, are left out of it."""
    src = tmp_path / "src"
    os.makedirs(src)
    write_jsonl(src / "a.jsonl", TEXTS)
    first = prepare(str(src), embedded_tokenizer_dir, str(tmp_path / "one"), **KW)
    os.utime(src / "a.jsonl", ns=(1, 10**18))  # the same bytes, another time
    second = prepare(str(src), embedded_tokenizer_dir, str(tmp_path / "two"), **KW)
    assert first["local_files"] != second["local_files"]
    assert first["sha256"] == second["sha256"] == manifest_sha256(second)
