"""Text sources: the ASCII filter, and the embedded English corpus that needs no download.

The embedded corpus is the documentation that ships with every CPython: the reference topics in
`pydoc_data.topics` and the docstrings of the standard library's modules, classes and functions
(read with `ast`, never imported, so no module runs). Nothing is committed to this repository and
the result depends only on the Python version.

Parsing the standard library takes seconds, so the documents are kept in a file of the user's
cache (cache_file), read back by every later process of the same Python and of this module: a
training reads them in each of its ranks, a sweep in each of its runs.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import sys
import sysconfig
import zlib

from .cache import cache_folder, write_whole

# Standard-library folders that hold tests, demos or vendored code rather than documentation.
_SKIP_DIRS = {"test", "tests", "site-packages", "idlelib", "turtledemo", "lib2to3", "__pycache__"}
MIN_DOC_CHARS = 200  # shorter docstrings are mostly signatures and one-liners
VALIDATION_EVERY = 20  # one document in 20 (chosen by a hash of its text) is held out
EMBEDDED_VOCAB_SIZE = (
    4096  # the byte-level BPE trained on this corpus (tokenizer.py, flavor "tiny")
)


def ascii_only(text: str) -> str:
    """Remove every non-ASCII character (the experiment's data filter)."""
    return text.encode("ascii", "ignore").decode("ascii")


WHITESPACE = " \t\n\r\v\f"
"""What counts as whitespace for dropping a document: space, tab, newline, carriage return,
vertical tab and form feed. Not str.isspace()'s wider set, which also counts the ASCII control
characters \x1c-\x1f (file, group, record and unit separators): those stay, as every other
ASCII control character does, so a document made of them is kept."""


def has_text(text: str) -> bool:
    """A filtered document is kept unless nothing but whitespace (WHITESPACE) is left."""
    return bool(text.strip(WHITESPACE))


def _stdlib_docstrings() -> list[str]:
    root = sysconfig.get_paths()["stdlib"]
    docs = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            try:
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    tree = ast.parse(f.read())
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(
                    node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
                ):
                    doc = ast.get_docstring(node)
                    if doc and len(doc) >= MIN_DOC_CHARS:
                        docs.append(doc)
    return docs


def _built_documents() -> tuple[str, ...]:
    from pydoc_data.topics import topics

    raw = [topics[k] for k in sorted(topics)] + _stdlib_docstrings()
    return tuple(d for d in (ascii_only(t).strip(WHITESPACE) for t in raw) if d)


def cache_file() -> str:
    """The embedded documents' cache file: its name is a hash of what they depend on (the Python
    build, its standard library's folder and that folder's last change, this module's source), so
    another Python or another version of this module reads a file of its own."""
    root = sysconfig.get_paths()["stdlib"]
    with open(__file__, "rb") as f:
        source = hashlib.sha256(f.read()).hexdigest()
    key = "\0".join([sys.version, sys.platform, root, str(os.stat(root).st_mtime_ns), source])
    name = f"embedded_corpus-{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"
    return os.path.join(cache_folder(), name)


def _digest(docs) -> str:
    return hashlib.sha256("\0".join(docs).encode()).hexdigest()


def _read_cache(path: str) -> tuple[str, ...] | None:
    """The documents in the cache file at `path`; None where it is missing, unreadable, or its
    documents are not those it recorded (a damaged file is built again, never read)."""
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        docs = saved["documents"]
        if (
            isinstance(docs, list)
            and all(isinstance(d, str) for d in docs)
            and saved["sha256"] == _digest(docs)
        ):
            return tuple(docs)
    except (OSError, ValueError, TypeError, KeyError):
        pass
    return None


def _write_cache(path: str, docs: tuple[str, ...]) -> None:
    """The cache file written whole or not at all (cache.write_whole)."""
    saved = {"sha256": _digest(docs), "documents": list(docs)}
    write_whole(path, json.dumps(saved).encode("utf-8"))


@functools.lru_cache(maxsize=1)
def embedded_documents() -> tuple[str, ...]:
    """All embedded documents, ASCII-filtered, empty ones dropped, in a fixed order: read from
    the cache file (cache_file), or built and written there."""
    path = cache_file()
    docs = _read_cache(path)
    if docs is None:
        docs = _built_documents()
        _write_cache(path, docs)
    return docs


def embedded_split(split: str) -> list[str]:
    """`train` or `validation`: disjoint whole documents, chosen by a stable hash of the text."""
    if split not in ("train", "validation"):
        raise ValueError(f"embedded corpus split must be 'train' or 'validation'; got {split!r}")
    held_out = split == "validation"
    return [
        d
        for d in embedded_documents()
        if (zlib.crc32(d.encode()) % VALIDATION_EVERY == 0) == held_out
    ]


def embedded_sha256(split: str) -> str:
    """The sha256 of an embedded split's documents (each one's UTF-8 text, NUL-separated, in
    order): which corpus a run read, since it depends on the Python installation that read it."""
    digest = hashlib.sha256()
    for i, doc in enumerate(embedded_split(split)):
        digest.update(b"\0" * bool(i) + doc.encode())
    return digest.hexdigest()
