"""Where FineWeb-Edu's documents come from: the hub's `sample/100BT` parquet files, or a local
folder of files in its schema. Read by prepare (data/prepare.py) and by the streamed datasets
(titan/datasets.py)."""

from __future__ import annotations

import fnmatch
import os
import pathlib

FINEWEB_EDU = "HuggingFaceFW/fineweb-edu"
FINEWEB_EDU_FILES = "sample/100BT/*.parquet"  # the files of config sample-100BT
DATA_SUFFIXES = {".parquet": "parquet", ".jsonl": "json", ".json": "json"}
GZIP = ".gz"
"""JSON Lines may be gzip-compressed (.jsonl.gz, .json.gz); parquet compresses within its file."""
DATA_KINDS = "/".join(
    [*DATA_SUFFIXES, *(s + GZIP for s, fmt in DATA_SUFFIXES.items() if fmt == "json")]
)
"""The names of the data files read (data_format), as refusals list them"""


def data_format(path) -> str | None:
    """The format of a data file by its name ("parquet" or "json"), None for any other file."""
    name = str(path)
    if name.endswith(GZIP):
        fmt = DATA_SUFFIXES.get(os.path.splitext(name[: -len(GZIP)])[1])
        return fmt if fmt == "json" else None
    return DATA_SUFFIXES.get(os.path.splitext(name)[1])


def list_data_files(path: str, revision: str | None = None) -> list[str]:
    """Sorted data files: a local folder of parquet/JSONL (or .jsonl.gz, .json.gz) files, or the hub repository's sample
    (at `revision`, a commit, whose files are then read at that commit; None: the newest)."""
    if os.path.isdir(path):
        return sorted(str(p) for p in pathlib.Path(path).rglob("*") if data_format(p))
    from huggingface_hub import HfApi

    names = HfApi().list_repo_files(path, repo_type="dataset", revision=revision)
    repo = f"{path}@{revision}" if revision else path
    return [f"hf://datasets/{repo}/{n}" for n in sorted(fnmatch.filter(names, FINEWEB_EDU_FILES))]
