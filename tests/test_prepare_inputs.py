"""prepare's local inputs: a data file it cannot read is refused naming the file, an `--out`
inside `--source` is not read as data, and a refused rerun names the values that differ."""

import gzip
import json
import os
import shutil

import pytest

from prefix_titan.data.prepare import iter_rows, prepare
from prefix_titan.data.shards import ShardedTokens

KW = dict(tokens=10**9, val_tokens=10**9, val_every=5, shard_tokens=4000, progress=False)
TEXTS = [f"Document {i}: caf\u00e9 \u65e5\u672c and the strawberry problem." for i in range(60)]


def write_parquet(path, columns):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path)


def tokens(out):
    return [ShardedTokens(out, split)[:].tolist() for split in ("train", "validation")]


def test_shards_read_with_a_raw_tokenizer_are_refused_saying_which_they_take(
    tmp_path, embedded_tokenizer_dir
):
    """`tokenizers.Tokenizer` has no bos_id/eos_id: it was checked as a tokenizer whose BOS is
    None (a refusal that blamed the shards); said as what ShardedTokens takes."""
    from tokenizers import Tokenizer

    write_parquet(tmp_path / "x.parquet", {"text": TEXTS})
    prepare(str(tmp_path), embedded_tokenizer_dir, str(tmp_path / "out"), **KW)
    raw = Tokenizer.from_file(os.path.join(embedded_tokenizer_dir, "tokenizer.json"))
    with pytest.raises(ValueError, match="takes torchtitan's HuggingFaceTokenizer .* got a Tok"):
        ShardedTokens(str(tmp_path / "out"), "train", raw)
    assert len(ShardedTokens(str(tmp_path / "out"), "train", None)) > 0
    from tokenizers import models

    with pytest.raises(ValueError, match="different tokenizer"):  # another one: said so
        ShardedTokens(str(tmp_path / "out"), "train", Tokenizer(models.BPE()))


def test_a_parquet_file_without_ids_is_read_like_one_with_them(tmp_path, embedded_tokenizer_dir):
    """`id` is optional in parquet as in JSON Lines: the split goes by the text alone."""
    os.makedirs(tmp_path / "a")
    os.makedirs(tmp_path / "b")
    write_parquet(tmp_path / "a" / "x.parquet", {"text": TEXTS, "id": [str(i) for i in range(60)]})
    write_parquet(tmp_path / "b" / "x.parquet", {"text": TEXTS})
    for name in ("a", "b"):
        prepare(str(tmp_path / name), embedded_tokenizer_dir, str(tmp_path / f"out_{name}"), **KW)
    assert tokens(str(tmp_path / "out_a")) == tokens(str(tmp_path / "out_b"))
    assert sum(map(len, tokens(str(tmp_path / "out_b")))) > 0


def damaged():
    """(file name, its writer, what the refusal must say) of files prepare cannot read."""
    return [
        ("notext.parquet", lambda p: write_parquet(p, {"body": ["x"], "id": ["1"]}),
         r"notext.parquet has no `text` column \(its columns: body, id\)"),
        ("cut.parquet", lambda p: p.write_bytes(b"PAR1" + b"\0" * 40),
         r"cut.parquet is not a readable parquet file"),
        ("notgzip.jsonl.gz", lambda p: p.write_bytes(b"not gzip at all"),
         r"notgzip.jsonl.gz cannot be decompressed"),
        ("cutgzip.jsonl.gz", lambda p: p.write_bytes(gzip.compress(b'{"text": "a"}\n' * 50)[:30]),
         r"cutgzip.jsonl.gz cannot be decompressed"),
        ("latin1.jsonl", lambda p: p.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n'),
         r"latin1.jsonl line 2 is not a JSON object"),
    ]  # fmt: skip


@pytest.mark.parametrize("case", range(5))
def test_a_data_file_that_cannot_be_read_is_refused_naming_it(
    tmp_path, embedded_tokenizer_dir, case
):
    name, write, words = damaged()[case]
    os.makedirs(tmp_path / "src")
    write(tmp_path / "src" / name)
    with pytest.raises(ValueError, match=words):
        prepare(str(tmp_path / "src"), embedded_tokenizer_dir, str(tmp_path / "out"), **KW)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_an_out_inside_the_source_is_not_read_as_data(tmp_path, embedded_tokenizer_dir):
    """The prepare's own manifest.json and progress.json are .json files of the source folder:
    listed, they made a rerun (finished: 'nothing to do'; unfinished: resume) 'other settings'."""
    src, out = tmp_path / "src", tmp_path / "src" / "shards"
    os.makedirs(src)
    write_parquet(src / "000.parquet", {"text": TEXTS, "id": [str(i) for i in range(60)]})
    (src / "001.jsonl").write_text('{"text": "fine"}\n{"text": broken}\n')
    with pytest.raises(ValueError, match="001.jsonl line 2"):  # stops after the first file
        prepare(str(src), embedded_tokenizer_dir, str(out), **{**KW, "batch_docs": 8})
    assert (out / "progress.json").exists()
    (src / "001.jsonl").write_text('{"text": "fine"}\n{"text": "repaired"}\n')
    done = prepare(str(src), embedded_tokenizer_dir, str(out), **{**KW, "batch_docs": 8})
    assert done["files"] == [str(src / "000.parquet"), str(src / "001.jsonl")]
    assert done["documents_read"] == 62
    again = prepare(str(src), embedded_tokenizer_dir, str(out), **KW)  # nothing to do
    assert again == done


def test_a_refused_rerun_names_what_differs_with_both_values(tmp_path, embedded_tokenizer_dir):
    src = tmp_path / "src"
    os.makedirs(src)
    write_parquet(src / "000.parquet", {"text": TEXTS})
    (src / "001.jsonl").write_text('{"text": "fine"}\n{"text": broken}\n')
    with pytest.raises(ValueError, match="001.jsonl line 2"):  # leaves an unfinished prepare
        prepare(str(src), embedded_tokenizer_dir, str(tmp_path / "out"), **KW)
    (src / "001.jsonl").unlink()
    with pytest.raises(
        ValueError,
        match=r"unfinished run with other settings \(files of --source differ: 1 there before, "
        r"not now \(.*001.jsonl\); --tokens 1000000000 there, 5000 asked\)",
    ):
        prepare(str(src), embedded_tokenizer_dir, str(tmp_path / "out"), **{**KW, "tokens": 5000})


def test_files_gone_from_another_source_are_named_where_they_were_read(
    tmp_path, embedded_tokenizer_dir
):
    """A rerun with another --source lists the files the recorded prepare read there, not now,
    at the paths it read them from (they were shown under the new folder, where they never
    were)."""
    for name in ("a", "b"):
        os.makedirs(tmp_path / name)
    write_parquet(tmp_path / "a" / "000.parquet", {"text": TEXTS})
    write_parquet(tmp_path / "b" / "001.parquet", {"text": TEXTS})
    prepare(str(tmp_path / "a"), embedded_tokenizer_dir, str(tmp_path / "out"), **KW)
    with pytest.raises(ValueError, match="files of --source differ") as e:
        prepare(str(tmp_path / "b"), embedded_tokenizer_dir, str(tmp_path / "out"), **KW)
    said = str(e.value)
    assert f"1 there before, not now ({tmp_path / 'a' / '000.parquet'})" in said, said
    assert f"1 not there before ({tmp_path / 'b' / '001.parquet'})" in said, said


@pytest.mark.parametrize(
    "name, data",
    [
        ("z.parquet", b"not parquet at all"),
        ("z.jsonl.gz", b"\x1f\x8b but not gzip after its magic"),
        ("z.jsonl", b"[1, 2, 3]\n"),
    ],
)
def test_a_bad_file_sorted_last_is_refused_before_anything_is_written(
    tmp_path, embedded_tokenizer_dir, name, data
):
    """Each local file's head is read before the first document (a parquet file's footer, a
    JSON Lines file's first line): a bad file sorted after the others was found only when
    reached, after they had been tokenized (hours, at FineWeb's size)."""
    src = tmp_path / "src"
    os.makedirs(src)
    write_parquet(src / "a.parquet", {"text": TEXTS})
    (src / name).write_bytes(data)
    with pytest.raises(ValueError, match=f"{src / name} (is not|cannot be|line 1 is not)"):
        prepare(str(src), embedded_tokenizer_dir, str(tmp_path / "out"), **KW)
    assert not (tmp_path / "out").exists()  # (nothing written: the folder it made removed)


def test_an_out_holding_other_files_is_refused(tmp_path, embedded_tokenizer_dir):
    """A new prepare into a folder holding files it does not write (the source folder, a
    project's, given by mistake) is refused naming them, before a shard is written; shards a
    prepare stopped before its first record left are written over, as before."""
    write_parquet(tmp_path / "x.parquet", {"text": TEXTS})
    out = tmp_path / "out"
    os.makedirs(out)
    (out / "notes.txt").write_text("mine")
    (out / "train_00000.bin").write_bytes(b"left by a prepare killed early")
    (out / ".DS_Store").write_bytes(b"")  # (hidden files and a fresh disk's lost+found pass)
    (out / "lost+found").mkdir()
    with pytest.raises(ValueError, match="holds files a prepare does not write") as e:
        prepare(str(tmp_path), embedded_tokenizer_dir, str(out), **KW)
    assert str(out / "notes.txt") in str(e.value) and "train_00000" not in str(e.value)
    assert "DS_Store" not in str(e.value) and "lost+found" not in str(e.value)
    assert sorted(os.listdir(out)) == [".DS_Store", "lost+found", "notes.txt", "train_00000.bin"]
    (out / "notes.txt").unlink()
    prepare(str(tmp_path), embedded_tokenizer_dir, str(out), **KW)
    assert (out / "manifest.json").exists()


def test_an_out_below_a_file_is_refused_naming_it(tmp_path, embedded_tokenizer_dir):
    write_parquet(tmp_path / "x.parquet", {"text": TEXTS})
    (tmp_path / "a_file").write_text("")
    out = tmp_path / "a_file" / "shards"
    with pytest.raises(ValueError, match=r"--out '.*a_file/shards' cannot be created"):
        prepare(str(tmp_path), embedded_tokenizer_dir, str(out), **KW)


def test_the_json_lines_of_a_source_still_refuse_a_bad_line(tmp_path, embedded_tokenizer_dir):
    os.makedirs(tmp_path / "src")
    (tmp_path / "src" / "a.jsonl").write_text(json.dumps({"text": None}) + "\n")
    with pytest.raises(ValueError, match=r"a.jsonl line 1: its `text` is None"):
        prepare(str(tmp_path / "src"), embedded_tokenizer_dir, str(tmp_path / "out"), **KW)


def test_refusals_say_what_the_tokenizer_and_source_are_and_create_nothing(
    tmp_path, embedded_tokenizer_dir, monkeypatch
):
    """A missing --tokenizer folder and a file given as one are told apart from a folder without
    tokenizer.json; a --source that is neither a folder there nor shaped owner/name is refused
    naming both readings (it was asked of the hub); the data files listed are those read."""
    from prefix_titan.data.prepare import hub_source

    monkeypatch.chdir(tmp_path)
    os.makedirs("src")
    write_parquet(tmp_path / "src" / "x.parquet", {"text": TEXTS})
    (tmp_path / "tok.json").write_text("{}")
    for tokenizer, words in (
        ("missing", r"--tokenizer 'missing': no such folder; give the folder of a tokenizer.json"),
        ("tok.json", r"--tokenizer 'tok.json': is a file \(give the folder that holds tokenizer"),
    ):
        with pytest.raises(ValueError, match=words):
            prepare("src", tokenizer, "out", **KW)
    assert hub_source("owner/name") and not hub_source("src") and not hub_source("srcs")
    with pytest.raises(
        ValueError,
        match=r"--source 'srcs': no such folder, and not a hub dataset's name; give a local "
        r"folder .* a hub dataset named owner/name .* or 'embedded'",
    ):
        prepare("srcs", embedded_tokenizer_dir, "out", **KW)
    os.makedirs("empty")
    (tmp_path / "empty" / "notes.txt").write_text("")
    with pytest.raises(
        ValueError, match=r"holds no .parquet/.jsonl/.json/.jsonl.gz/.json.gz files"
    ):
        prepare("empty", embedded_tokenizer_dir, "out", **KW)
    assert sorted(os.listdir(tmp_path)) == ["empty", "src", "tok.json"]  # no --out made


def test_a_prepare_refused_before_it_recorded_anything_leaves_no_out(
    tmp_path, embedded_tokenizer_dir
):
    """Its first data file unreadable: no empty --out (nor the folders above it) is left behind;
    one that was there stays."""
    os.makedirs(tmp_path / "src")
    (tmp_path / "src" / "a.parquet").write_bytes(b"not parquet")
    out = tmp_path / "new" / "out"
    with pytest.raises(ValueError, match="a.parquet is not a readable parquet file"):
        prepare(str(tmp_path / "src"), embedded_tokenizer_dir, str(out), **KW)
    assert not (tmp_path / "new").exists()
    os.makedirs(out)
    with pytest.raises(ValueError, match="a.parquet is not a readable parquet file"):
        prepare(str(tmp_path / "src"), embedded_tokenizer_dir, str(out), **KW)
    assert os.listdir(out) == []


def test_a_local_source_is_the_same_folder_however_spelled(
    tmp_path, embedded_tokenizer_dir, monkeypatch, capsys
):
    """`src`, `./src/`, its absolute path, from another working folder: one folder, recorded
    absolute (its files too); a finished or unfinished prepare recorded with relative paths (as
    before) is still that folder, from where it ran; a folder elsewhere differs by its source."""
    from prefix_titan.data.prepare import PROGRESS
    from prefix_titan.data.shards import manifest_sha256

    monkeypatch.chdir(tmp_path)
    os.makedirs("src")
    write_parquet(tmp_path / "src" / "x.parquet", {"text": TEXTS})
    done = prepare("src/", embedded_tokenizer_dir, "out", **KW)
    assert done["source"] == str(tmp_path / "src")
    assert done["files"] == [str(tmp_path / "src" / "x.parquet")]
    os.makedirs("elsewhere")
    for source in ("./src", str(tmp_path / "src"), "src/../src", "src"):
        assert prepare(source, embedded_tokenizer_dir, "out", **KW) == done
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert prepare("../src/", embedded_tokenizer_dir, str(tmp_path / "out"), **KW) == done
    monkeypatch.chdir(tmp_path)
    old = {**done, "source": "./src", "files": ["src/x.parquet"]}  # as an older prepare wrote it
    del old["special_text"]  # (written before special-token text was encoded as text)
    old["sha256"] = manifest_sha256(old)
    (tmp_path / "out" / "manifest.json").write_text(json.dumps(old))
    capsys.readouterr()
    assert prepare(str(tmp_path / "src"), embedded_tokenizer_dir, "out", **KW) == old
    assert "was prepared before documents' text that spells a special token" in (
        capsys.readouterr().err
    )
    os.makedirs("copy")
    write_parquet(tmp_path / "copy" / "x.parquet", {"text": TEXTS})
    with pytest.raises(
        ValueError, match=r"other settings \(--source './src' there, '/.*/copy' asked\)"
    ):
        prepare("copy", embedded_tokenizer_dir, "out", **KW)  # (its files: the same names)
    # unfinished, recorded relative: resumed from its folder under another spelling
    (tmp_path / "src" / "y.jsonl").write_text('{"text": "fine"}\n{"text": broken}\n')
    with pytest.raises(ValueError, match="y.jsonl line 2"):
        prepare(str(tmp_path / "src"), embedded_tokenizer_dir, "cut", **{**KW, "batch_docs": 8})
    state = json.loads((tmp_path / "cut" / PROGRESS).read_text())
    state["settings"].update(source="src", files=["src/x.parquet", "src/y.jsonl"])
    (tmp_path / "cut" / PROGRESS).write_text(json.dumps(state))
    (tmp_path / "src" / "y.jsonl").write_text('{"text": "fine"}\n{"text": "repaired"}\n')
    before = {**state, "settings": {**state["settings"]}}
    del before["settings"]["special_text"]  # begun before special text was encoded as text
    (tmp_path / "cut" / PROGRESS).write_text(json.dumps(before))
    with pytest.raises(ValueError, match="its shards would hold both encodings"):
        prepare("./src/", embedded_tokenizer_dir, "cut", **{**KW, "batch_docs": 8})
    (tmp_path / "cut" / PROGRESS).write_text(json.dumps(state))
    resumed = prepare("./src/", embedded_tokenizer_dir, "cut", **{**KW, "batch_docs": 8})
    assert resumed["source"] == str(tmp_path / "src") and resumed["documents_read"] == 62
    assert resumed["files"] == [str(tmp_path / "src" / n) for n in ("x.parquet", "y.jsonl")]


def test_a_copy_of_the_hub_repository_with_several_configs_is_refused(
    tmp_path, embedded_tokenizer_dir
):
    """A local copy laid out like the hub's repository (data/, sample/100BT, sample/10BT drawn
    from it) read whole repeats documents: prepare and the streamed dataset refuse it naming
    the configs and the folder to give; one config's folder is read."""
    from prefix_titan.titan.datasets import fineweb_files

    hub = tmp_path / "fineweb-edu"
    for folder in ("data/CC-MAIN-2024-10", "sample/100BT", "sample/10BT"):
        os.makedirs(hub / folder)
        for i in range(2):
            write_parquet(hub / folder / f"00{i}_00000.parquet", {"text": TEXTS[i::2]})
    words = r"holds the files of 3 of the hub repository's configs \(data/, sample/100BT/, sample/10BT/\)"
    with pytest.raises(
        ValueError, match=rf"--source '{hub}' {words}.* give --source the one folder"
    ):
        prepare(str(hub), embedded_tokenizer_dir, str(tmp_path / "out"), **KW)
    with pytest.raises(ValueError, match=rf"dataset_path '{hub}' {words}"):
        fineweb_files(str(hub))
    with pytest.raises(
        ValueError, match=r"2 of the hub .*\(sample/100BT/, sample/10BT/\).* e\.g\. "
    ):
        prepare(str(hub / "sample"), embedded_tokenizer_dir, str(tmp_path / "out"), **KW)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match=r"2 of the hub .*\(data/, sample/10BT/\).*sample/10BT$"):
        shutil.rmtree(hub / "sample" / "100BT")
        fineweb_files(str(hub))
    assert len(fineweb_files(str(hub / "sample" / "10BT"))) == 2
    done = prepare(
        str(hub / "sample" / "10BT"), embedded_tokenizer_dir, str(tmp_path / "out"), **KW
    )
    assert done["documents_read"] == len(TEXTS)
    own = tmp_path / "mine" / "sample"  # a folder of one's own named `sample`: not the hub's
    for part in ("part1", "part2"):
        os.makedirs(own / part)
        write_parquet(own / part / "0.parquet", {"text": TEXTS})
    assert len(fineweb_files(str(own))) == len(fineweb_files(str(own.parent))) == 2


def test_a_parquet_file_damaged_past_its_footer_is_named(tmp_path):
    """A parquet file whose footer reads but whose data is damaged: refused naming the file and
    the row it was read to (pyarrow's message alone named neither)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "a.parquet"
    texts = [f"document {i} " * 50 for i in range(3000)]
    pq.write_table(pa.table({"text": texts}), path, row_group_size=1000, compression="snappy")
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 2000] = b"\xab" * 2000  # (inside the row groups, the footer intact)
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"{path} cannot be read past row \d+ \("):
        list(iter_rows(str(path), 0))


def test_a_source_with_no_ascii_text_is_refused_and_leaves_no_out(
    tmp_path, embedded_tokenizer_dir, capsys
):
    """Every document empty once its non-ASCII characters are removed: no manifest of 0 shards
    (training then asked for a local batch size of at most 0), but a refusal naming the split,
    the counts and what to change, exit 2 from the command, and no --out left behind."""
    from prefix_titan.prepare import main

    write_parquet(tmp_path / "x.parquet", {"text": ["\u65e5\u672c\u8a9e"] * 10})
    out = tmp_path / "new" / "out"
    with pytest.raises(ValueError) as e:
        prepare(str(tmp_path), embedded_tokenizer_dir, str(out), **KW)
    said = str(e.value)
    assert "the training split holds 0 tokens of the --tokens 1,000,000,000 asked" in said, said
    assert "of the 10 documents read from --source, 10 were empty" in said
    assert "a --source whose documents hold ASCII text" in said
    assert " and the validation split holds 0 tokens of the --val-tokens 1,000,000,000" in said
    assert not (tmp_path / "new").exists()
    args = ["--source", str(tmp_path), "--tokenizer", embedded_tokenizer_dir, "--tokens", "1e6"]
    with pytest.raises(SystemExit) as e:
        main([*args, "--out", str(out), "--val-tokens", "0", "--no-progress"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "the training split holds 0 tokens" in err and "Nothing was kept" in err
    assert not (tmp_path / "new").exists()


def test_an_empty_validation_split_is_refused_and_the_same_out_takes_new_settings(
    tmp_path, embedded_tokenizer_dir
):
    """Validation asked for but no document fell to it (1 in 1,000 of 60 documents): refused
    naming the split and what to change, no manifest; a rerun into the same --out with a
    smaller --val-every is not refused as 'other settings' and finishes."""
    src, out = tmp_path / "src", tmp_path / "out"
    os.makedirs(src)
    write_parquet(src / "x.parquet", {"text": TEXTS})
    kw = {**KW, "val_tokens": 100}
    with pytest.raises(ValueError) as e:
        prepare(str(src), embedded_tokenizer_dir, str(out), **{**kw, "val_every": 1000})
    said = str(e.value)
    assert said.startswith(
        f"--out {str(out)!r}: the validation split holds 0 tokens of the --val-tokens 100 asked "
        "(of the 60 documents read from --source, 0 were empty once their non-ASCII characters "
        "were removed, 0 went to validation"
    ), said
    assert "for validation, the source ran out before any document fell to it" in said
    assert "a smaller --val-every, or --val-tokens 0" in said and "training split" not in said
    assert not out.exists()
    with pytest.raises(
        ValueError, match=r"reading stopped at the training budget \(--tokens 1\) before any doc"
    ):
        prepare(str(src), embedded_tokenizer_dir, str(out), **{**kw, "tokens": 1})
    assert not out.exists()
    done = prepare(str(src), embedded_tokenizer_dir, str(out), **kw)
    assert done["splits"]["validation"]["tokens"] > 0 and done["splits"]["train"]["tokens"] > 0
    # no validation asked for: an empty validation split is what was asked
    none = prepare(
        str(src), embedded_tokenizer_dir, str(tmp_path / "o2"), **{**KW, "val_tokens": 0}
    )
    assert none["splits"]["validation"]["tokens"] == 0 < none["splits"]["train"]["tokens"]


def test_the_output_of_another_prepare_inside_the_source_is_left_out(
    tmp_path, embedded_tokenizer_dir, capsys
):
    """An earlier prepare's --out inside --source (finished: its manifest.json; unfinished: its
    progress.json) is no data: it was read as JSON Lines and refused. Left out with a note; a
    manifest.json that is no prepare's is a data file like any other."""
    src = tmp_path / "src"
    os.makedirs(src / "docs")
    write_parquet(src / "000.parquet", {"text": TEXTS})
    (src / "docs" / "manifest.json").write_text('{"text": "a document of the source"}\n')
    first = prepare(str(src), embedded_tokenizer_dir, str(src / "shards"), **KW)
    assert first["files"] == [str(src / "000.parquet"), str(src / "docs" / "manifest.json")]
    assert first["documents_read"] == 61
    os.makedirs(src / "half" / "deeper")  # an unfinished prepare's record, and a file below it
    (src / "half" / "progress.json").write_text(json.dumps({"settings": {}, "file": 0}))
    (src / "half" / "deeper" / "x.jsonl").write_text('{"text": "not this"}\n')
    capsys.readouterr()
    again = prepare(str(src), embedded_tokenizer_dir, str(tmp_path / "out"), **KW)
    assert again["files"] == first["files"] and again["splits"] == first["splits"]
    err = capsys.readouterr().err
    assert (
        f"note: --source {src}: {src / 'shards'} holds a prepare's output (manifest.json or "
        "progress.json); its 1 data file is left out of the source "
        f"({src / 'shards'}/manifest.json)"
    ) in err, err
    assert f"{src / 'half'} holds a prepare's output" in err and "its 2 data files are" in err
    with pytest.raises(ValueError) as e:  # a prepare's output given as the source itself
        prepare(str(src / "shards"), embedded_tokenizer_dir, str(tmp_path / "o2"), **KW)
    assert str(e.value).startswith(
        f"--source {str(src / 'shards')!r} holds a prepare's output (manifest.json or "
        "progress.json), not documents: train on it with training.dataset_path"
    ), e.value


def test_an_out_that_is_the_source_folder_is_refused_saying_so(tmp_path, embedded_tokenizer_dir):
    """It was refused as a source that holds no data files (its files all under --out)."""
    write_parquet(tmp_path / "a.parquet", {"text": TEXTS})
    (tmp_path / "b.jsonl").write_text('{"text": "fine"}\n')
    for out in (str(tmp_path), str(tmp_path) + "/."):
        with pytest.raises(ValueError) as e:
            prepare(str(tmp_path), embedded_tokenizer_dir, out, **KW)
        assert str(e.value).startswith(f"--out {out!r} is the --source folder itself"), e.value
    assert sorted(os.listdir(tmp_path)) == ["a.parquet", "b.jsonl"]


def test_the_streamed_dataset_names_files_not_read_for_their_letter_case(tmp_path, monkeypatch):
    """A local training.dataset_path's B.JSONL is not read (the names read are lower-case), as
    prepare's --source: the streamed dataset says so too, naming the file, and lists the rest."""
    from prefix_titan.titan import datasets

    for name in ("a.jsonl", "b.jsonl", "C.JSONL", "d.Parquet", "notes.txt"):
        (tmp_path / name).write_text(json.dumps({"text": TEXTS[0]}) + "\n")
    said = []
    monkeypatch.setattr(datasets.logger, "warning", said.append)
    files = datasets.fineweb_files(str(tmp_path))
    assert files == [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]
    assert len(said) == 1 and said[0].startswith(f"note: dataset_path {tmp_path}: 2 files are")
    assert "(" + f"{tmp_path / 'C.JSONL'}, {tmp_path / 'd.Parquet'})" in said[0]
    os.remove(tmp_path / "C.JSONL")
    os.remove(tmp_path / "d.Parquet")
    said.clear()
    assert len(datasets.fineweb_files(str(tmp_path))) == 2 and said == []
