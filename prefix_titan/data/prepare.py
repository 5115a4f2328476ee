"""Tokenize FineWeb-Edu once into token shards (shards.py), resumably: `prepare(...)`, the command
`python -m prefix_titan.prepare` (prefix_titan/prepare.py, whose docstring says what it writes and
how an interrupted run continues)."""

from __future__ import annotations

import contextlib
import functools
import gzip
import json
import os
import re
import signal
import sys
import time
import zlib

from ..runs.folder import read_json, write_json
from ..runs.lock import RunLock
from .corpus import ascii_only, has_text
from .fineweb import DATA_KINDS, GZIP, check_one_config, few
from .shards import (
    FORMAT,
    MANIFEST,
    SPLITS,
    file_crc32,
    load_manifest,
    manifest_sha256,
    shard_name,
    token_dtype,
    tokenizer_hash,
)
from .tokenizers import SPECIAL_TEXT, no_boundaries, older_encoding, text_tokenizer

PROGRESS = "progress.json"
DEFAULT_SHARD_TOKENS = 2**28  # 512 MiB of uint16 / 1 GiB of uint32


def encode_documents(tokenizer, texts: list[str]) -> list[list[int]]:
    """torchtitan's `encode(text, add_bos=True, add_eos=True)` for a batch, on every core."""
    tok = tokenizer.tokenizer
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)
    out = []
    for enc in encode(texts):
        ids = enc.ids
        if not tokenizer.hf_adds_bos and tokenizer.bos_id is not None:
            ids.insert(0, tokenizer.bos_id)
        if not tokenizer.hf_adds_eos and tokenizer.eos_id is not None:
            ids.append(tokenizer.eos_id)
        out.append(ids)
    return out


def _open(path: str):
    if path.startswith("hf://"):
        from huggingface_hub import HfFileSystem

        return HfFileSystem().open(path[len("hf://") :], "rb")
    return open(path, "rb")


def iter_rows(path: str, start: int):
    """(row index, id, text) of one data file from row `start` on."""
    if path == "embedded":
        from .corpus import embedded_documents

        for i, text in enumerate(embedded_documents()[start:], start):
            yield i, f"embedded-{i}", text
    elif path.endswith(".parquet"):
        import pyarrow

        with _open(path) as f:
            data, columns = _parquet(f, path)
            row, batches = 0, data.iter_batches(batch_size=4096, columns=columns)
            while True:
                try:
                    batch = next(batches)
                except StopIteration:
                    break
                except (pyarrow.ArrowException, OSError) as e:  # damaged after its footer
                    raise ValueError(
                        f"{path} cannot be read past row {row} ({type(e).__name__}: {e}): repair "
                        "the file or leave it out of --source" + FRESH_OUT
                    ) from None
                n = batch.num_rows
                if row + n > start:
                    cols = batch.to_pydict()
                    ids = cols["id"] if "id" in cols else range(row, row + n)  # (none: the row)
                    for k in range(max(0, start - row), n):
                        yield row + k, ids[k], _text(cols["text"][k], path, f"row {row + k}")
                row += n
    else:  # JSON lines, gzip-compressed where the name ends in .gz
        yield from _json_rows(path, start)


def _parquet(f, path: str):
    """(pyarrow.parquet.ParquetFile, the columns to read) of the open file `f`, from its footer
    alone; a file that is not parquet, or has no `text` column, refused naming it."""
    import pyarrow
    import pyarrow.parquet as pq

    try:
        data = pq.ParquetFile(f)
    except pyarrow.ArrowException as e:  # not parquet, or cut short
        raise ValueError(
            f"{path} is not a readable parquet file ({type(e).__name__}: {e}): repair "
            "the file or leave it out of --source" + FRESH_OUT
        ) from None
    names = data.schema_arrow.names
    if "text" not in names:
        raise ValueError(
            f"{path} has no `text` column (its columns: {', '.join(names) or 'none'}): "
            "a parquet file of --source holds its documents in `text` (and optionally "
            "an `id`); repair the file or leave it out of --source" + FRESH_OUT
        )
    return data, ["text", "id"] if "id" in names else ["text"]


def _json_rows(path: str, start: int):
    """(line index, id, text) of a JSON Lines file (gzip-compressed where its name ends in .gz)
    from line `start` on; a line, or a compressed stream, that cannot be read is refused, naming
    the file (and the line)."""
    with _open(path) as raw, gzip.open(raw) if path.endswith(GZIP) else raw as f:
        lines = enumerate(f)
        while True:
            try:
                i, line = next(lines)
            except StopIteration:
                return
            except (gzip.BadGzipFile, EOFError, zlib.error) as e:  # damaged or cut short
                raise ValueError(
                    f"{path} cannot be decompressed ({type(e).__name__}: {e}): a .gz file of "
                    "--source is read as gzip-compressed JSON Lines; repair the file or leave it "
                    "out of --source"
                ) from None
            if i >= start and line.strip():  # (a blank line holds no document)
                try:
                    doc = json.loads(line)
                    doc_id, text = doc.get("id", i), doc["text"]
                except (ValueError, KeyError, TypeError, AttributeError) as e:  # (JSON or UTF-8)
                    raise ValueError(
                        f"{path} line {i + 1} is not a JSON object with a `text` (and "
                        f"optionally an `id`) ({type(e).__name__}: {e}): a .json or .jsonl "
                        "file (or .json.gz, .jsonl.gz) is read as JSON Lines, one object per "
                        "line; repair the file or leave it out of --source" + FRESH_OUT
                    ) from None
                yield i, doc_id, _text(text, path, f"line {i + 1}")


def _check_heads(paths: list[str]) -> None:
    """Refuse, before a document is written, a local file of --source that is not what its name
    says (iter_rows' refusals): a parquet file's footer (its columns), a JSON Lines file's first
    document (through its decompression where gzip); found only when reached, a bad file after
    hours of the files sorted before it. Damage further in is still found where it is."""
    for path in paths:
        if path.endswith(".parquet"):
            with _open(path) as f:
                _parquet(f, path)
            continue
        rows = _json_rows(path, 0)
        try:
            next(rows, None)
        finally:
            rows.close()


def _text(text, path: str, where: str) -> str:
    """A row's text, refused where it is no string (a null text: no document to filter)."""
    if not isinstance(text, str):
        raise ValueError(
            f"{path} {where}: its `text` is {text!r}, not a string: repair the file or leave it "
            "out of --source"
        )
    return text


FOLDER_PREFIXES = ("/", ".", "~")
"""A --source that starts with one of these names a folder, there or not (never a hub dataset)"""
HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
"""The shape of a hub dataset's name: owner/name"""
SOURCES = (
    "a local folder of the dataset's .parquet or JSON Lines files, a hub dataset named "
    "owner/name (e.g. HuggingFaceFW/fineweb-edu), or 'embedded'"
)
"""What --source may name (said by its refusals)"""


def hub_source(source: str) -> bool:
    """Whether --source names a hub dataset: shaped owner/name (HUB_NAME), and not a folder or
    file that is there (nor one of FOLDER_PREFIXES, there or not: source_files refuses a name
    that is neither a folder there nor a hub dataset's, and a file)."""
    if source == "embedded" or source.startswith(FOLDER_PREFIXES) or os.path.exists(source):
        return False
    return HUB_NAME.fullmatch(source) is not None


def source_files(
    source: str, revision: str | None = None, out: str | None = None
) -> tuple[list[str], str]:
    """(sorted data files, revision) of a hub dataset, a local folder, or the embedded corpus. A
    hub dataset's revision (a branch, tag or commit; None: main) is resolved to its commit once,
    and its files are listed and read at that commit: what the manifest records is what was
    read, and a commit upstream during a long prepare changes nothing. A local folder's files
    under `out` (the prepare's own --out inside it: its manifest.json and progress.json) are no
    data: listed, they would change the files between a prepare and its rerun; nor are those of
    another prepare's output below it (_without_prepared). An `out` that is the folder itself is
    refused."""
    from .fineweb import list_data_files, other_case_note, walk_folder

    if source == "embedded":
        import platform

        if revision is not None:
            raise ValueError("--revision is for a hub dataset; --source embedded has none")

        return ["embedded"], f"python-{platform.python_version()}"
    if os.path.isfile(source):
        raise ValueError(
            f"--source {source!r} is a file: give the folder that holds it ("
            f"{os.path.dirname(source) or '.'}), whose {DATA_KINDS} files are read"
        )
    if not os.path.isdir(source) and not hub_source(source):
        shaped = "" if source.startswith(FOLDER_PREFIXES) else ", and not a hub dataset's name"
        raise ValueError(f"--source {source!r}: no such folder{shaped}; give {SOURCES}")
    if os.path.isdir(source):
        if revision is not None:
            raise ValueError(f"--revision is for a hub dataset; --source {source!r} is a folder")
        if _prepared_here(source):
            raise ValueError(
                f"--source {source!r} holds a prepare's output ({MANIFEST} or {PROGRESS}), not "
                "documents: train on it with training.dataset_path (validation.dataset_path); "
                "--source takes the folder of the .parquet/.jsonl documents"
            )
        if out is not None and os.path.realpath(out) == os.path.realpath(source):
            raise ValueError(
                f"--out {out!r} is the --source folder itself: the shards go into a folder of "
                "their own; give an --out outside --source (or a new folder inside it, which is "
                "not read as data)"
            )
        files, others = walk_folder(source)
        sha = "local"
        if others:
            print(other_case_note("--source", source, others), file=sys.stderr, flush=True)
        if out is not None:
            own = os.path.realpath(out)
            files = [f for f in files if not os.path.realpath(f).startswith(own + os.sep)]
        files = _without_prepared(source, files)
        check_one_config(source, files, "--source")
    else:
        from huggingface_hub import HfApi

        sha = HfApi().dataset_info(source, revision=revision).sha
        files = list_data_files(source, sha)
    if not files:
        raise ValueError(f"--source {source!r} holds no {DATA_KINDS} files (the data files read)")
    return files, sha


def _prepared_here(folder: str) -> bool:
    """Whether `folder` holds a prepare's output: its manifest (a JSON object of this format) or
    the record of an unfinished one (a JSON object with its settings)."""
    for name, is_ours in (
        (MANIFEST, lambda d: d.get("format") == FORMAT),
        (PROGRESS, lambda d: isinstance(d.get("settings"), dict)),
    ):
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and is_ours(data):
            return True
    return False


def _without_prepared(source: str, files: list[str]) -> list[str]:
    """`files` of the local folder `source` less those in the folders below it that hold a
    prepare's output (another --out inside it: its manifest.json and progress.json are no data,
    and read as JSON Lines they would be refused), said in a note."""
    root = os.path.abspath(source)
    verdicts: dict[str, bool] = {}
    kept, left = [], {}
    for f in files:
        folder = os.path.dirname(os.path.abspath(f))
        outs = []
        while folder != root and folder.startswith(root + os.sep):
            if folder not in verdicts:
                verdicts[folder] = _prepared_here(folder)
            if verdicts[folder]:
                outs.append(folder)
            folder = os.path.dirname(folder)
        if outs:
            left.setdefault(outs[-1], []).append(f)
        else:
            kept.append(f)
    for folder, names in left.items():
        n = len(names)
        print(
            f"note: --source {source}: {folder} holds a prepare's output ({MANIFEST} or "
            f"{PROGRESS}); its {n} data file{'s are' if n != 1 else ' is'} left out of the "
            f"source ({few(names)})",
            file=sys.stderr,
            flush=True,
        )
    return kept


SPLIT_RULE = "crc32(text) % val_every"
"""How a document is assigned to validation (recorded: a prepare resumed under another rule is
refused). By its filtered text, not its id: FineWeb is deduplicated within each crawl, not across
them, so one page crawled twice has two ids, and by id could fall on both sides."""
NO_SPLIT = "none (--val-tokens 0): every document is training"
"""The split recorded where --val-tokens is 0: no document is held out (SPLIT_RULE's would be
read by no validation, and trained on by nothing)"""


def _unfinished_revision(out: str, source: str, asked: str | None) -> str | None:
    """The hub commit an unfinished prepare of `source` into `out` was reading, where it was
    asked for the same revision (`asked`; None: main, or whatever it began on), else None."""
    if source == "embedded" or os.path.isdir(source):
        return None
    path = os.path.join(out, PROGRESS)
    if not os.path.isfile(path):
        return None
    state = read_json(path, "the record of an unfinished prepare", expect=dict)
    settings = state.get("settings")
    if not isinstance(settings, dict) or settings.get("source") != source:
        return None
    revision = settings.get("revision")
    if not isinstance(revision, str):
        return None
    began = state.get("revision_asked") or "main"  # (no --revision: main)
    return revision if asked is None or asked in (revision, began) else None


def _same_folder(recorded: str, asked: str) -> bool:
    """Whether a recorded local --source (absolute; or, recorded before sources were made
    absolute, relative to the folder that prepare ran in, taken as this one) is the folder
    `asked` (absolute, normalized): the same path, or the same folder by another (a link)."""
    there = os.path.abspath(recorded)
    if there == asked:
        return True
    try:
        return os.path.samefile(there, asked)
    except OSError:  # (not there)
        return False


def _as_asked(recorded: dict, asked: dict) -> dict:
    """`recorded` (a manifest, or an unfinished prepare's settings) with a local folder's source
    and files spelled as `asked` spells them, where both read a local folder: its source the
    asked folder where it is the same folder, and its files each by its path inside its own
    source, so that the same files of a folder compare equal however either was spelled
    (`--source fw`, `./fw/`, `/data/fw`; an older record's paths relative to where it ran),
    and a folder elsewhere differs by its source alone unless its files differ too."""
    source, files = recorded.get("source"), recorded.get("files")
    local = recorded.get("revision") == asked.get("revision") == "local"
    if not (local and isinstance(source, str) and isinstance(files, list)):
        return recorded
    here = asked["source"]
    rebased = [
        os.path.join(here, os.path.relpath(f, source)) if isinstance(f, str) else f for f in files
    ]
    return {**recorded, "source": here if _same_folder(source, here) else source, "files": rebased}


FLAGS = {
    "source": "--source",
    "revision": "--revision",
    "budget_tokens": "--tokens",
    "budget_val_tokens": "--val-tokens",
    "val_every": "--val-every",
    "shard_tokens": "--shard-tokens",
}
"""The option that gives each setting a manifest records as given (the others follow from one:
FOLLOWS)"""
FOLLOWS = {
    "tokenizer_sha256": "--tokenizer",
    "vocab_size": "--tokenizer",
    "dtype": "--tokenizer",
    "bos_id": "--tokenizer",
    "eos_id": "--tokenizer",
    "split": "--val-tokens",
    "files": "--source",
}
"""The option a setting a manifest records follows from (its tokenizer's hash, ...)"""


def _differences(recorded: dict, asked: dict) -> str:
    """Each setting of `asked` that `recorded` (a manifest, or an unfinished prepare's settings)
    holds otherwise, with both values; for the files, which were read there and not now, and
    the other way round. A local folder's source and files are compared as folders and paths
    (_as_asked), not as the strings given."""
    original, recorded = recorded, _as_asked(recorded, asked)
    shown = []
    for k in asked:
        there, here = recorded.get(k), asked[k]
        if there == here:
            continue
        if isinstance(here, list):
            there = there if isinstance(there, list) else []
            # (the files gone shown where they were read, not rebased onto the asked folder)
            was = original.get(k)
            was = was if isinstance(was, list) and len(was) == len(there) else there
            new = [f for f in here if f not in there]
            gone = [read for f, read in zip(there, was) if f not in here]
            parts = [f"{len(new)} not there before ({few(new)})"] if new else []
            parts += [f"{len(gone)} there before, not now ({few(gone)})"] if gone else []
            shown.append(
                f"{k} of {FOLLOWS.get(k, '--source')} differ: "
                + ("; ".join(parts) or "in another order")
            )
        elif k in FLAGS:
            shown.append(f"{FLAGS[k]} {there!r} there, {here!r} asked")
        elif k in FOLLOWS:
            shown.append(f"{k} of {FOLLOWS[k]} {there!r} there, {here!r} asked")
        else:
            shown.append(f"{k} {there!r} there, {here!r} asked")
    return "; ".join(shown)


def _finished(out: str, settings: dict, stats: list | None = None) -> dict:
    """The manifest of the finished shards in `out` where they were made with `settings` (those
    it names: nothing to do), else refused naming each that differs; and, for a local folder
    (`stats`: its files' _file_stats now), refused where a file it read changed since
    (_changed_since_finished)."""
    done = load_manifest(out)
    older = "special_text" not in done  # (finished before the setting existed: what they hold)
    compared = dict(settings)
    if older:
        compared.pop("special_text", None)
    # (--val-tokens 0 finished when it still held 1 document in --val-every out: what they hold)
    held_out = compared.get("split") == NO_SPLIT and done.get("split") == SPLIT_RULE
    if held_out:
        compared["split"] = SPLIT_RULE
    if shown := _differences(done, compared):
        raise ValueError(
            f"{out!r} already holds finished shards ({MANIFEST}) made with other settings "
            f"({shown}); choose another --out"
        )
    if stats is not None:
        _changed_since_finished(out, done, stats)
    print(f"{out}: finished with these settings already: nothing to do", file=sys.stderr)
    if older:
        print(f"warning: {older_encoding(out)}", file=sys.stderr)
    if held_out:
        n = done.get("documents_validation_over_budget", 0)
        print(
            f"note: {out} was prepared with --val-tokens 0 when that still held 1 document in "
            f"--val-every out of training ({n:,} dropped, trained on by none); a prepare into a "
            "fresh --out trains on every document",
            file=sys.stderr,
        )
    return done


FRESH_OUT = (
    " and prepare into a new --out (a prepare begun on a file goes on with it; a repaired file "
    "lets the same command go on)"
)


def _file_stats(files: list[str]) -> list[list[int]]:
    """[size, modification time in ns] of each of a local source's files: what a resumed
    prepare compares, so that a file replaced or rewritten between a crash and the resume is
    not read on from a row of what it held before."""
    return [[(s := os.stat(f)).st_size, s.st_mtime_ns] for f in files]


def _changed_since_finished(out: str, done: dict, now: list) -> None:
    """Refuse the finished shards of a local folder in `out` (their manifest `done`) where a file
    they read (wholly, or its first rows: those before its `stopped_at`) differs from what it was
    when they were made (size, modification time, as recorded in its `local_files`): its shards
    do not hold what it holds now. A manifest written before they were recorded: said that they
    cannot be checked."""
    files, recorded = done["files"], done.get("local_files")
    if not isinstance(recorded, list) or len(recorded) != len(files):
        print(
            f"note: {os.path.join(out, MANIFEST)} records no sizes of its --source files (it was "
            "written before they were recorded): whether they changed since cannot be checked",
            file=sys.stderr,
        )
        return
    stop = done.get("stopped_at") or {}
    f, row = stop.get("file", len(files)), stop.get("row", 0)
    read = (f + 1 if row else f) if isinstance(f, int) and isinstance(row, int) else len(files)
    changed = [_change(name, r, n) for name, r, n in zip(files[:read], recorded, now) if r != n]
    if changed:
        raise ValueError(
            f"{out!r} holds finished shards ({MANIFEST}) of files which changed since: "
            f"{'; '.join(changed)}. Its shards do not hold what those files hold now: restore them "
            "with their modification times (cp -p, touch -d), or choose another --out (or remove "
            "this one) and prepare again"
        )


def _change(name: str, then: list, now: list) -> str:
    """How a source file changed: its size then and now, or its modification time (then, with
    the `touch` that restores it where its bytes are the same)."""
    if isinstance(then, list) and then and then[0] != now[0]:
        return f"{name} (size {then[0]:,} then, {now[0]:,} now)"
    if isinstance(then, list) and len(then) == 2 and isinstance(then[1], int):
        seconds, ns = divmod(then[1], 10**9)
        stamp = f"@{seconds}.{ns:09d}"
        return f"{name} (modified since: its time then {stamp}; the same bytes: touch -d {stamp})"
    return f"{name} (modified since)"


def _changed_files(out: str, files: list[str], recorded: list, now: list, at: tuple) -> None:
    """Refuse a resume of `out` where a file it read whole (before the file and row `at` it
    goes on from) differs from what it began reading (size, modification time): continued, its
    shards would hold rows of both versions. The file it goes on in may differ (a damaged row
    repaired, as the refusal of one asks): said, with what to do where it was replaced."""
    if len(recorded) != len(files) or not all(
        isinstance(r, list) and len(r) == 2 and all(isinstance(x, int) for x in r) for r in recorded
    ):
        raise ValueError(
            f"{os.path.join(out, PROGRESS)} is not the record of a prepare of these files (its "
            f"local_files are not one [size, time] per file): it is damaged; remove {out} and "
            "prepare again"
        )
    changed = [_change(f, r, n) for f, r, n in zip(files[: at[0]], recorded, now) if r != n]
    if changed:
        raise ValueError(
            f"{out!r} holds an unfinished prepare that read files which changed since: "
            f"{'; '.join(changed)}. Continued, its shards would hold rows of both versions: "
            "restore the files with their modification times (cp -p, touch -d), or remove it or "
            "choose another --out, and prepare again"
        )
    f = at[0]
    if at[1] and f < len(files) and recorded[f] != now[f]:
        print(
            f"note: {files[f]} changed since this prepare read its first {at[1]:,} rows; it goes "
            f"on from row {at[1]:,} as the file is now (a damaged row repaired). If the file was "
            f"replaced, its rows before are not what it holds now: remove {out} and prepare again",
            file=sys.stderr,
        )


def _not_written_here(out: str) -> list[str]:
    """The entries of `out` a prepare never writes: not its shards, record, manifest, lock or the
    temporary files of its atomic writes (a prepare stopped before its first record may have
    left shards, which a new one writes over), nor hidden ones (.DS_Store, an NFS .nfs file) or
    a fresh filesystem's lost+found."""
    ours = re.compile(r"(train|validation)_\d{5,}\.bin|\..*")
    names = {MANIFEST, PROGRESS, "lost+found"}
    return sorted(
        os.path.join(out, n) for n in os.listdir(out) if n not in names and not ours.fullmatch(n)
    )


@contextlib.contextmanager
def _writing(out: str):
    """The writer's lock of `out`, which it creates: a prepare refused before it recorded
    anything there (its first data file unreadable, say) leaves no empty --out behind (the lock
    removes the folders it made where they are empty)."""
    lock = RunLock(out, elsewhere="prepare into another --out")
    try:
        lock.acquire()
    except OSError as e:  # a file where a folder above it should be, no permission, ...
        raise ValueError(
            f"--out {out!r} cannot be created ({type(e).__name__}: {e.strerror or e}): give a "
            "folder that can be (new, or an unfinished prepare's)"
        ) from None
    try:
        yield lock
    finally:
        lock.release()


class _Writer:
    """Appends tokens of one split to fixed-size shards."""

    def __init__(self, out: str, split: str, dtype, shard_tokens: int, state: dict):
        self.out, self.split, self.dtype, self.shard_tokens = out, split, dtype, shard_tokens
        self.shards: list[int] = state.get("shards", [])  # token count per shard
        self.tokens, self.docs = state.get("tokens", 0), state.get("docs", 0)
        for i, n in enumerate(self.shards):  # drop whatever a killed run wrote past its record
            size = os.path.getsize(self._path(i)) if os.path.exists(self._path(i)) else -1
            if size < n * self.dtype.itemsize:  # truncate() would pad it with zeros
                raise ValueError(
                    f"shard {self._path(i)} holds {max(size, 0)} bytes, fewer than the "
                    f"{n * self.dtype.itemsize} its unfinished prepare recorded (removed or "
                    f"damaged since): remove {self.out} and prepare again"
                )
            with open(self._path(i), "ab") as f:
                f.truncate(n * self.dtype.itemsize)
        self._file = None

    def _path(self, i: int) -> str:
        return os.path.join(self.out, shard_name(self.split, i))

    def write(self, ids: list[int]) -> None:
        import numpy as np

        arr = np.asarray(ids, dtype=self.dtype)
        while len(arr):
            if not self.shards or self.shards[-1] == self.shard_tokens:
                self.close()
                self.shards.append(0)
                # "wb": a killed run may have left a file here that its record never counted.
                self._file = open(self._path(len(self.shards) - 1), "wb")
            if self._file is None:
                self._file = open(self._path(len(self.shards) - 1), "ab")
            take = min(len(arr), self.shard_tokens - self.shards[-1])
            self._file.write(arr[:take].tobytes())
            self.shards[-1] += take
            arr = arr[take:]
        self.tokens += len(ids)
        self.docs += 1

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None

    def remove(self) -> None:
        """Delete the shards of this split (closed first)."""
        self.close()
        for i in range(len(self.shards)):
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._path(i))

    def state(self) -> dict:
        return {"shards": list(self.shards), "tokens": self.tokens, "docs": self.docs}


def process_rows(rows: list, tokenizer, val_every: int) -> list:
    """Filter, classify and encode raw rows (file, row, id, text): (file, row, kind, characters
    read, characters kept, token ids or None) each, kind being empty, validation or train."""
    import numpy as np

    out, texts = [], []
    for f, row, _id, text in rows:
        clean = ascii_only(text)
        if not has_text(clean):
            kind = "empty"
        elif zlib.crc32(clean.encode()) % val_every == 0:  # a copy under another id: same split
            kind = "validation"
        else:
            kind = "train"
        out.append([f, row, kind, len(text), len(clean), None])
        if kind != "empty":
            texts.append(clean)
    encoded = iter(encode_documents(tokenizer, texts) if texts else [])
    dtype = token_dtype(tokenizer.get_vocab_size())
    for r in out:
        if r[2] != "empty":
            r[5] = np.asarray(next(encoded), dtype=dtype)
    return out


@functools.lru_cache(maxsize=1)
def _tokenizer(tokenizer_dir: str):
    """One tokenizer per worker process (loaded on its first batch)."""
    from torchtitan.components.tokenizer import HuggingFaceTokenizer

    return text_tokenizer(HuggingFaceTokenizer(tokenizer_dir))


def _start_worker(parent: int) -> None:
    """A worker encodes on one thread (the workers are the parallelism), set before its first
    encode creates the tokenizers library's thread pool; and ends when the prepare that started
    it (`parent`, its pid) has ended without it (killed: its pool's queues never close, and the
    worker would wait on them for ever)."""
    import threading

    os.environ["RAYON_NUM_THREADS"] = "1"
    # Ctrl-C reaches the whole process group: the prepare handles it (ending the pool, one line
    # said), not each worker with a traceback of its own
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch():
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


PARENT_CHECK_S = 1.0
"""How often a worker looks whether the prepare that started it is there still"""


def _process_in_worker(rows: list, tokenizer_dir: str, val_every: int) -> list:
    return process_rows(rows, _tokenizer(tokenizer_dir), val_every)


@contextlib.contextmanager
def _signals_held():
    """SIGINT and SIGTERM held while the pool starts or stops workers, the first that arrived
    handed to its handler as the block returns: an exception a Python handler raises inside
    (Ctrl-C's, the prepare command's SIGTERM) can land between a worker's start and its
    registration in the pool (workers start as batches are submitted), and that worker, which
    the pool's shutdown does not know, is waited for at exit for ever. Only Python handlers are
    held (one ignored stays ignored, in the workers too; a default one ends the process, raising
    nothing). A signal arriving while the block raises is dropped: the prepare is ending
    already. Outside the main thread (no handlers run there): nothing held."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list = []
    kinds = [s for s in (signal.SIGINT, signal.SIGTERM) if callable(signal.getsignal(s))]
    previous = {
        s: signal.signal(s, lambda signum, frame: held.append((signum, frame))) for s in kinds
    }
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    for signum, frame in held[:1]:  # (the first: its handler ends the prepare)
        previous[signum](signum, frame)


class _Workers:
    """Batches processed in order: in this process (workers = 0) or by a pool of worker processes
    (spawned, each encoding on one thread), with at most 2 x workers batches in flight. At the end
    (the token target reached with batches in flight, or an error) the batches not yet started are
    dropped and those being encoded are let finish: a worker is never killed (one killed as it
    writes a result holds the lock of the pipe the results go back on, and the pool's own
    shutdown then waits on that lock: multiprocessing.Pool.terminate() hangs so, at random).
    The pool's submissions and shutdown run with SIGINT and SIGTERM held (`_signals_held`)."""

    def __init__(self, workers: int, tokenizer, tokenizer_dir: str, val_every: int):
        self.workers, self.tokenizer, self.val_every = workers, tokenizer, val_every
        self.tokenizer_dir, self.pool = tokenizer_dir, None

    def __enter__(self):
        if self.workers:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            self.pool = ProcessPoolExecutor(
                self.workers,
                mp_context=mp.get_context("spawn"),
                initializer=_start_worker,
                initargs=(os.getpid(),),
            )
        return self

    def __exit__(self, *exc):
        if self.pool is not None:
            with _signals_held():
                self.pool.shutdown(wait=True, cancel_futures=True)

    def map_in_order(self, batches):
        """(processed rows, next file, next row) for each (raw rows, next file, next row)."""
        import collections

        if self.pool is None:
            for rows, f, row in batches:
                yield process_rows(rows, self.tokenizer, self.val_every), f, row
            return
        pending = collections.deque()
        for rows, f, row in batches:
            args = (rows, self.tokenizer_dir, self.val_every)
            with _signals_held():
                pending.append((self.pool.submit(_process_in_worker, *args), f, row))
            if len(pending) > 2 * self.workers:
                result, f0, r0 = pending.popleft()
                yield result.result(), f0, r0  # (waiting on a result starts no worker)
        while pending:
            result, f0, r0 = pending.popleft()
            yield result.result(), f0, r0


def _load_tokenizer(tokenizer_dir: str):
    """torchtitan's tokenizer of the folder `tokenizer_dir` (text_tokenizer), refused naming
    --tokenizer and the file at fault where its tokenizer.json or tokenizer_config.json cannot be
    read, or where the config names a bos_token or eos_token that is no token of tokenizer.json's
    vocabulary (torchtitan would add it, growing the vocabulary past the model's)."""
    from tokenizers import Tokenizer
    from torchtitan.components.tokenizer import HuggingFaceTokenizer

    path = os.path.join(tokenizer_dir, "tokenizer.json")
    config_path = os.path.join(tokenizer_dir, "tokenizer_config.json")
    fix = "repair or replace it, or give the folder of another tokenizer"
    config = None
    if os.path.exists(config_path):
        try:
            with open(config_path, encoding="utf-8") as f:
                config = json.load(f)
        except (OSError, ValueError) as e:  # (ValueError: not JSON, or not UTF-8)
            raise ValueError(
                f"--tokenizer {tokenizer_dir!r}: {config_path} cannot be read as JSON "
                f"({type(e).__name__}: {e}); {fix}"
            ) from None
        if not isinstance(config, dict):
            raise ValueError(
                f"--tokenizer {tokenizer_dir!r}: {config_path} holds a JSON "
                f"{type(config).__name__}, not an object (with its bos_token and eos_token); {fix}"
            )
    try:
        raw = Tokenizer.from_file(path)
    except Exception as e:  # the tokenizers library raises a plain Exception
        raise ValueError(
            f"--tokenizer {tokenizer_dir!r}: {path} cannot be read as a tokenizer "
            f"({type(e).__name__}: {e}); {fix}"
        ) from None
    for key in ("bos_token", "eos_token"):
        token = (config or {}).get(key)
        token = token.get("content") if isinstance(token, dict) else token
        if isinstance(token, str) and raw.token_to_id(token) is None:
            raise ValueError(
                f"--tokenizer {tokenizer_dir!r}: {config_path} names {key} {token!r}, which is "
                f"no token of {path}'s vocabulary (its {raw.get_vocab_size():,} tokens; torchtitan "
                "would add it as a new one, growing the vocabulary past them): name tokens of its "
                "vocabulary (the special tokens it was trained with)"
            )
    try:
        return text_tokenizer(HuggingFaceTokenizer(tokenizer_dir))
    except Exception as e:  # (a config value torchtitan cannot parse, say)
        raise ValueError(
            f"--tokenizer {tokenizer_dir!r}: its tokenizer.json and tokenizer_config.json cannot "
            f"be read as one tokenizer ({type(e).__name__}: {e}); {fix}"
        ) from None


def prepare(
    source: str,
    tokenizer_dir: str,
    out: str,
    tokens: int,
    val_tokens: int,
    val_every: int = 100,
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    batch_docs: int = 1024,
    progress: bool = True,
    workers: int = 0,
    revision: str | None = None,
) -> dict:
    for name, value, low in (
        ("--tokens", tokens, 1),
        ("--val-tokens", val_tokens, 0),
        ("--val-every", val_every, 2),  # (1: every document validation, none to train on)
        ("--shard-tokens", shard_tokens, 1),
        ("--batch-docs", batch_docs, 1),
        ("--workers", workers, 0),
    ):
        if value < low:
            raise ValueError(f"{name} must be >= {low}; got {value}")
    if workers > (cores := os.cpu_count() or 1):
        raise ValueError(
            f"--workers must be at most {cores}, the cores of this machine (each worker is a "
            f"process that loads the tokenizer and encodes on one core; 0: all in this process, "
            f"the encoding on every core); got {workers}"
        )
    if not os.path.isfile(os.path.join(tokenizer_dir, "tokenizer.json")):
        if not os.path.exists(tokenizer_dir):
            what = "no such folder"
        elif not os.path.isdir(tokenizer_dir):
            what = "is a file (give the folder that holds tokenizer.json)"
        else:
            what = "holds no tokenizer.json"
        raise ValueError(
            f"--tokenizer {tokenizer_dir!r}: {what}; give the folder of a tokenizer.json (the "
            "folder a run's model.hf_assets_path names: python scripts/download_tokenizer.py, a "
            "script of the prefix_titan repository run in its checkout, puts Llama-3's there; "
            "python scripts/train_tokenizer.py --out DIR makes the embedded 4,096-token BPE)"
        )
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(
            f"--out {out!r} is a file: give a folder (new, or an unfinished prepare's)"
        )
    tokenizer = _load_tokenizer(tokenizer_dir)
    if tokenizer.bos_id is None and tokenizer.eos_id is None:
        raise ValueError(f"--tokenizer {no_boundaries(tokenizer_dir)}")
    vocab = tokenizer.get_vocab_size()
    dtype = token_dtype(vocab)
    asked = revision
    if source != "embedded" and os.path.isdir(source):  # recorded absolute and normalized: the
        source = os.path.abspath(source)  # same folder however given, and from any folder
    settings = {
        "split": SPLIT_RULE if val_tokens else NO_SPLIT,
        "source": source,
        "tokenizer_sha256": tokenizer_hash(tokenizer),
        "vocab_size": vocab,
        "dtype": dtype.name,
        "bos_id": tokenizer.bos_id,
        "eos_id": tokenizer.eos_id,
        "special_text": SPECIAL_TEXT,
        "budget_tokens": tokens,
        "budget_val_tokens": val_tokens,
        "val_every": val_every,
        "shard_tokens": shard_tokens,
    }
    if os.path.exists(os.path.join(out, MANIFEST)) and hub_source(source) and asked is None:
        # finished from a hub dataset at whatever commit its main was: no revision to compare
        # (main may have moved since), and nothing to ask the hub
        return _finished(out, settings)
    # resuming: the commit it began reading, not the newest (a branch moves)
    revision = _unfinished_revision(out, source, asked) or revision
    files, revision = source_files(source, revision, out)
    first = {k: settings.pop(k) for k in ("split", "source")}
    settings = {**first, "revision": revision, "files": files, **settings}  # (the manifest's order)
    # one prepare writes into --out at a time: two with other settings would mix their shards
    stats = _file_stats(files) if revision == "local" else None
    with _writing(out):
        if os.path.exists(os.path.join(out, MANIFEST)):
            return _finished(out, settings, stats)
        state_path = os.path.join(out, PROGRESS)
        state = {
            "settings": settings,
            "file": 0,
            "row": 0,
            "splits": {},
            "chars_read": 0,
            "chars_removed": 0,
            "docs_read": 0,
            "docs_empty": 0,
            "docs_val_over_budget": 0,
            "revision_asked": asked,
        }
        if not os.path.exists(state_path) and (foreign := _not_written_here(out)):
            raise ValueError(
                f"--out {out!r} holds files a prepare does not write ({few(foreign)}): shards "
                "go into a folder of their own (a new one, or an unfinished prepare's, which it "
                "resumes); give another --out, or move those files out"
            )
        if os.path.exists(state_path):
            state = read_json(state_path, "the record of an unfinished prepare", expect=dict)
            if not isinstance(state.get("settings"), dict):
                raise ValueError(
                    f"{state_path} is not the record of a prepare (no settings): it is damaged; "
                    f"remove {out} and prepare again"
                )
            if "special_text" not in state["settings"] and "split" in state["settings"]:
                raise ValueError(
                    f"{out!r} holds an unfinished prepare begun before documents' text that "
                    "spells a special token (<|end_of_text|>, ...) was encoded as text: continued, "
                    "its shards would hold both encodings; remove it or choose another --out, "
                    "and prepare again"
                )
            if "split" not in state["settings"]:
                raise ValueError(
                    f"{out!r} holds an unfinished prepare that split its documents by id, before "
                    "they were split by their text: it cannot be continued under the new rule; "
                    "remove it or choose another --out, and prepare again"
                )
            if state["settings"].get("split") == SPLIT_RULE and settings["split"] == NO_SPLIT:
                raise ValueError(
                    f"{out!r} holds an unfinished prepare with --val-tokens 0 begun when that "
                    "still held 1 document in --val-every out of training: continued, its "
                    "training split would hold those of its first part dropped and the later "
                    "ones trained on; remove it or choose another --out, and prepare again"
                )
            if _as_asked(state["settings"], settings) != settings:
                raise ValueError(
                    f"{out!r} holds an unfinished run with other settings "
                    f"({_differences(state['settings'], settings)}): re-run with the same "
                    "settings or choose another --out"
                )
            state["settings"] = settings  # (a local folder's paths as now recorded: absolute)
            done = (state.get("splits") or {}).get("train") or {}
            f, row = state.get("file", 0), state.get("row", 0)
            where = (
                f"after the first {row:,} rows of {files[f]}"
                if isinstance(f, int) and 0 <= f < len(files)
                else f"after the last of its {len(files)} files"
            )
            print(
                f"[prepare] {out}: resuming an unfinished prepare {where} ({PROGRESS}: file {f} "
                f"of files 0 to {len(files) - 1}, row {row}; {done.get('tokens', 0):,} training "
                "tokens written)",
                file=sys.stderr,
                flush=True,
            )
            if stats is not None and isinstance(state.get("local_files"), list):
                at = (state["file"], state["row"])
                _changed_files(out, files, state["local_files"], stats, at)
        if stats is not None:  # (a record begun before they were recorded: from now on)
            state["local_files"] = stats
            _check_heads(files[state["file"] :])
        writers = {
            s: _Writer(out, s, dtype, shard_tokens, state["splits"].get(s, {})) for s in SPLITS
        }

        bar = _Progress(tokens, writers["train"].tokens, enabled=progress)

        def commit(processed: list, next_file: int, next_row: int) -> bool:
            """Write the documents of processed rows (process_rows) in order and record where reading
            goes on; a budget is checked before each document against what is written, so the splits
            (and the statistics) depend neither on the batch size nor on the workers, and a resumed
            run decides identically. True when the training budget is reached (at the document that
            reaches it, whose successor is next)."""
            reached = False
            for f, row, kind, n_read, n_clean, ids in processed:
                state["docs_read"] += 1
                state["chars_read"] += n_read
                state["chars_removed"] += n_read - n_clean
                if kind == "empty":
                    state["docs_empty"] += 1
                elif kind == "validation" and val_tokens:  # (0: no split, every one trains)
                    if writers["validation"].tokens < val_tokens:
                        writers["validation"].write(ids)
                    else:
                        state["docs_val_over_budget"] += 1
                else:
                    writers["train"].write(ids)
                    if writers["train"].tokens >= tokens:
                        next_file, next_row, reached = f, row + 1, True
                        break
            for w in writers.values():
                w.flush()
            state.update(
                file=next_file, row=next_row, splits={s: w.state() for s, w in writers.items()}
            )
            write_json(state_path, state, sort_keys=True)
            bar.update(writers["train"].tokens, len(processed))
            return reached

        def batches():
            """(raw rows, file, row to go on from) of batch_docs rows each, and at each file's end."""
            rows = []
            for f in range(state["file"], len(files)):
                for row, doc_id, text in iter_rows(
                    files[f], state["row"] if f == state["file"] else 0
                ):
                    rows.append((f, row, doc_id, text))
                    if len(rows) >= batch_docs:
                        yield rows, f, row + 1
                        rows = []
                yield rows, f + 1, 0
                rows = []

        done = writers["train"].tokens >= tokens
        if not done:
            with _Workers(workers, tokenizer, tokenizer_dir, val_every) as pool:
                for processed, next_file, next_row in pool.map_in_order(batches()):
                    if commit(processed, next_file, next_row):
                        break
        for w in writers.values():
            w.close()
        bar.close(writers["train"].tokens)

        manifest = {"format": FORMAT, **settings, "splits": {}}
        for split, w in writers.items():
            manifest["splits"][split] = {
                "tokens": w.tokens,
                "documents": w.docs,
                "shards": [
                    {
                        "name": shard_name(split, i),
                        "tokens": n,
                        "crc32": file_crc32(os.path.join(out, shard_name(split, i))),
                    }
                    for i, n in enumerate(w.shards)
                ],
            }
        manifest.update(
            documents_read=state["docs_read"],
            documents_empty_dropped=state["docs_empty"],
            documents_validation_over_budget=state["docs_val_over_budget"],
            characters_read=state["chars_read"],
            characters_removed=state["chars_removed"],
            stopped_at={"file": state["file"], "row": state["row"]},
        )
        if stats is not None:  # (what a rerun compares: _changed_since_finished)
            manifest["local_files"] = stats
        manifest["sha256"] = manifest_sha256(manifest)
        if empty := empty_splits(manifest, tokens, val_tokens):
            for w in writers.values():  # (no manifest: none of it can be trained on)
                w.remove()
            os.remove(state_path)
            raise ValueError(
                f"--out {out!r}: {empty}. Nothing was kept in {out}: the same --out takes the "
                "changed settings"
            )
        warn_short_splits(manifest, tokens, val_tokens, out)
        write_json(os.path.join(out, MANIFEST), manifest, sort_keys=True)
        os.remove(state_path)
        return manifest


def short_splits(manifest: dict, tokens: int, val_tokens: int) -> list[str]:
    """A line for each split that holds fewer tokens than asked: the source ran out, or (the
    validation split) the training budget was reached first."""
    lines = []
    asked = {"train": (tokens, "--tokens"), "validation": (val_tokens, "--val-tokens")}
    reached = manifest["splits"]["train"]["tokens"] >= tokens
    for split, (want, option) in asked.items():
        got = manifest["splits"][split]["tokens"]
        if got < want and reached:  # (validation: read alongside training, which stopped first)
            every = manifest["val_every"]
            lines.append(
                f"warning: the validation split holds {got:,} tokens, fewer than the {want:,} "
                f"asked (--val-tokens): reading stopped at the training budget (--tokens "
                f"{tokens:,}), and 1 document in {every} (--val-every) is validation; ask for "
                "more --tokens, fewer --val-tokens or a smaller --val-every"
            )
        elif got < want:
            every, over = manifest["val_every"], manifest["documents_validation_over_budget"]
            if split == "validation":
                why = f"1 document in {every} is held out for validation, chosen by its text's "
                why += "crc32 (--val-every)"
            elif not val_tokens:
                why = "every document is training: --val-tokens 0"
            else:
                why = f"1 document in {every} is held out for validation (--val-every)"
                if over:
                    why += f", {over:,} of them past its budget and dropped, trained on by none"
            lines.append(
                f"warning: the {split} split holds {got:,} tokens, fewer than the {want:,} asked "
                f"({option}): the source ran out after {manifest['documents_read']:,} documents "
                f"({why}); use a larger --source or ask for fewer tokens"
            )
    return lines


def empty_splits(manifest: dict, tokens: int, val_tokens: int) -> str | None:
    """What a split that holds no token where tokens were asked (training always; validation
    where --val-tokens is not 0) says: those splits with the budgets asked, what was read, and
    what to change (a training split left empty cannot be trained on, nor a validation split
    validated); None where neither is."""
    every = manifest["val_every"]
    train, val = manifest["splits"]["train"], manifest["splits"]["validation"]
    empty, advice = [], []
    if train["tokens"] == 0:
        empty.append(f"the training split holds 0 tokens of the --tokens {tokens:,} asked")
        advice.append(
            "give a --source whose documents hold ASCII text (more of them)"
            + (", or a larger --val-every" if val_tokens else "")
        )
    if val_tokens > 0 and val["tokens"] == 0:
        empty.append(
            f"the validation split holds 0 tokens of the --val-tokens {val_tokens:,} asked"
        )
        advice.append(
            f"for validation, reading stopped at the training budget (--tokens {tokens:,}) "
            "before any document fell to it: ask for more --tokens or a smaller --val-every"
            if train["tokens"] >= tokens
            else "for validation, the source ran out before any document fell to it: give a "
            "larger --source or a smaller --val-every"
        )
        advice[-1] += ", or --val-tokens 0 for no validation split (a run that does not validate)"
    if not empty:
        return None
    held = (
        f"{val['documents']:,} went to validation and "
        f"{manifest['documents_validation_over_budget']:,} more were held out past its budget: "
        f"1 in {every} by its text's crc32, --val-every {every}"
        if val_tokens
        else "none was held out for validation: --val-tokens 0"
    )
    return (
        f"{' and '.join(empty)} (of the {manifest['documents_read']:,} documents read from "
        f"--source, {manifest['documents_empty_dropped']:,} were empty once their non-ASCII "
        f"characters were removed, {held}): " + "; ".join(advice)
    )


def warn_short_splits(manifest: dict, tokens: int, val_tokens: int, out: str) -> None:
    for line in short_splits(manifest, tokens, val_tokens):
        print(f"[prepare] {out}: {line}", file=sys.stderr, flush=True)


class _Progress:
    """One line on stderr: tokens, docs/s, tokens/s, ETA to the training budget."""

    def __init__(self, total: int, start: int, enabled: bool):
        self.total, self.start, self.enabled = total, start, enabled
        self.t0, self.docs, self.last = time.perf_counter(), 0, 0.0

    def update(self, done: int, docs: int) -> None:
        self.docs += docs
        now = time.perf_counter()
        if not self.enabled or now - self.last < 1.0:
            return
        self.last = now
        dt = max(now - self.t0, 1e-9)
        rate = (done - self.start) / dt
        eta = max(self.total - done, 0) / rate if rate > 0 else float("inf")
        sys.stderr.write(
            f"\r{done:,}/{self.total:,} train tokens  {self.docs / dt:,.0f} docs/s  "
            f"{rate:,.0f} tok/s  ETA {eta / 60:,.1f} min   "
        )
        sys.stderr.flush()

    def close(self, done: int) -> None:
        if self.enabled:
            minutes = (time.perf_counter() - self.t0) / 60
            sys.stderr.write(
                f"\r{done:,}/{self.total:,} train tokens  done in {minutes:,.1f} min"
                + " " * 30
                + "\n"
            )
