"""Text sources: the ASCII filter, and the embedded English corpus that needs no download.

The embedded corpus is the documentation that ships with every CPython: the reference topics in
`pydoc_data.topics` and the docstrings of the standard library's modules, classes and functions
(read with `ast`, never imported, so no module runs). Nothing is committed to this repository and
the result depends only on the Python version.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
import sysconfig
import zlib

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


@functools.lru_cache(maxsize=1)
def embedded_documents() -> tuple[str, ...]:
    """All embedded documents, ASCII-filtered, empty ones dropped, in a fixed order."""
    from pydoc_data.topics import topics

    raw = [topics[k] for k in sorted(topics)] + _stdlib_docstrings()
    return tuple(d for d in (ascii_only(t).strip(WHITESPACE) for t in raw) if d)


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
