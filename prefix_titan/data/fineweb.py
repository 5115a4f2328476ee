"""Where FineWeb-Edu's documents come from: the hub's `sample/100BT` parquet files, or a local
folder of files in its schema. Read by prepare (data/prepare.py) and by the streamed datasets
(titan/datasets.py)."""

from __future__ import annotations

import fnmatch
import os
import pathlib
import re

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
        return walk_folder(path)[0]
    from huggingface_hub import HfApi

    names = HfApi().list_repo_files(path, repo_type="dataset", revision=revision)
    repo = f"{path}@{revision}" if revision else path
    return [f"hf://datasets/{repo}/{n}" for n in sorted(fnmatch.filter(names, FINEWEB_EDU_FILES))]


def walk_folder(path: str) -> tuple[list[str], list[str]]:
    """One walk of a local folder: (its data files, sorted; the files not read whose names end
    as a data file's would in another letter case, sorted: B.JSONL, a.Parquet)."""
    read, other = [], []
    for p in pathlib.Path(path).rglob("*"):
        if data_format(p):
            read.append(str(p))
        elif data_format(str(p).lower()) and p.is_file():
            other.append(str(p))
    return sorted(read), sorted(other)


def few(names: list) -> str:
    """The first three of `names`, and how many more."""
    return ", ".join(map(str, names[:3])) + (
        f" and {len(names) - 3} more" if len(names) > 3 else ""
    )


def other_case_note(setting: str, folder: str, names: list[str]) -> str:
    """The note on the files of `folder` (given as `setting`) that walk_folder found not read for
    their names' letter case."""
    return (
        f"note: {setting} {folder}: {len(names)} file{'s are' if len(names) != 1 else ' is'} "
        f"not read, whose names end as a data file's in another letter case ({few(names)}): the "
        f"data files read end in {DATA_KINDS}, in lower case; rename them to be read"
    )


SAMPLE_NAME = r"[0-9]+BT"
"""How the hub repository names its samples (sample/10BT, sample/100BT, sample/350BT)"""


def hub_configs(folder: str, files: list[str]) -> dict[str, str]:
    """{config: its folder} of the hub repository's configs that a local folder's data files fall
    in, where the folder is laid out like a copy of it: `data/` (every crawl) and each
    `sample/NAME/` (sample/10BT is drawn from sample/100BT, and each sample from data/), also
    where `folder` is the copy's `sample/` itself. A sample is named as the hub names them (10BT,
    100BT, 350BT: SAMPLE_NAME), so a folder of one's own named `sample` is not taken for one."""
    found = {}
    inside_sample = os.path.basename(os.path.abspath(folder)) == "sample"
    for f in files:
        rel = pathlib.PurePath(os.path.relpath(f, folder)).parts
        if inside_sample and len(rel) > 1 and re.fullmatch(SAMPLE_NAME, rel[0]):
            found[f"sample/{rel[0]}"] = os.path.join(folder, rel[0])
        elif rel[0] == "sample" and len(rel) > 2 and re.fullmatch(SAMPLE_NAME, rel[1]):
            found[f"sample/{rel[1]}"] = os.path.join(folder, rel[0], rel[1])
        elif rel[0] == "data" and len(rel) > 1:
            found["data"] = os.path.join(folder, rel[0])
    return dict(sorted(found.items()))


def check_one_config(folder: str, files: list[str], setting: str) -> None:
    """Refuses a local folder whose files fall in more than one of the hub's configs
    (hub_configs): read whole, it would repeat documents; `setting` names the option."""
    configs = hub_configs(folder, files)
    if len(configs) < 2:
        return
    samples = [path for name, path in configs.items() if name.startswith("sample/")]
    example = min(samples, key=len) if samples else next(iter(configs.values()))
    raise ValueError(
        f"{setting} {folder!r} holds the files of {len(configs)} of the hub repository's "
        f"configs ({', '.join(f'{n}/' for n in configs)}): read together, they would repeat "
        "documents (sample/10BT is drawn from sample/100BT, and each sample from data/); give "
        f"{setting} the one folder to read, e.g. {example}"
    )
