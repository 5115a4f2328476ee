"""The runs each `sweep launch` set out to start, recorded in the sweep folder before the first of
them starts: LAUNCHES/ holds one file per launch, each naming its runs' arms, seeds and folders.
A report reads them to find runs launched that have no run folder (runs that never began, or
whose folders were removed), which it would otherwise never see: the sweep folder alone says
which runs are there, not which were meant to be."""

from __future__ import annotations

import datetime
import json
import os
import re
import socket

from ..runs.folder import RUN_CONFIG, append_line, read_json, read_log, write_json

LAUNCHES = "launches"
"""In a sweep folder: one JSON file per launch (record_launch), never rewritten, and beside it
the runs that launch started, one line each as it starts them (STARTED)"""
STARTED = ".started.jsonl"
"""Beside a launch's record (its name with this ending in place of `.json`): {arm, seed, folder,
at} of each run the launch started, appended as it starts it"""


def started_path(record: str) -> str:
    """The file of the runs started by the launch whose record is `record`."""
    return record.removesuffix(".json") + STARTED


def record_start(record: str, arm: str, seed: int, folder: str) -> None:
    """Note that the launch whose record is `record` starts run (arm, seed, folder relative to
    the sweep folder) now: a run whose folder is removed later is known to have begun."""
    at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    line = {"arm": arm, "seed": seed, "folder": folder, "at": at}
    append_line(started_path(record), json.dumps(line) + "\n")


def record_launch(
    sweep_dir: str, runs: list[tuple[str, int, str]], plan_sha256: str | None = None
) -> str:
    """Write a launch's record into `sweep_dir`/LAUNCHES and return its path: when, where, the
    plan it registered (its sha256, or None) and `runs`, each (arm, seed, run folder relative
    to `sweep_dir`). One new file per launch, written whole (write_json), so that launches into
    one sweep folder at once, on one host or several, never write the same file."""
    folder = os.path.join(sweep_dir, LAUNCHES)
    os.makedirs(folder, exist_ok=True)
    at = datetime.datetime.now(datetime.UTC)
    host = socket.gethostname()
    stem = f"launch-{at:%Y%m%dT%H%M%S.%f}Z-{re.sub(r'[^A-Za-z0-9._-]', '_', host)}-{os.getpid()}"
    path = os.path.join(folder, f"{stem}.json")
    write_json(
        path,
        {
            "at": at.isoformat(timespec="seconds"),
            "host": host,
            "pid": os.getpid(),
            "plan_sha256": plan_sha256,
            "runs": [{"arm": arm, "seed": seed, "folder": run} for arm, seed, run in runs],
        },
    )
    return path


def launched_runs(sweep_dir: str) -> list[dict]:
    """Every run the launch records in `sweep_dir` name, each once ({arm, seed, folder, began},
    the folder relative to `sweep_dir`; began: a launch started it, record_start), oldest launch
    first; [] where none is recorded (a sweep launched before launches were recorded, or runs
    started by hand). A record that cannot be read is refused, naming it."""
    folder = os.path.join(sweep_dir, LAUNCHES)
    if not os.path.isdir(folder):
        return []
    seen: dict[tuple, dict] = {}
    for name in sorted(os.listdir(folder)):
        if not (name.startswith("launch-") and name.endswith(".json")):
            continue
        path = os.path.join(folder, name)
        record = read_json(path, "a launch record", expect=dict)
        runs = record.get("runs")
        fields = {"arm": str, "seed": int, "folder": str}
        if not isinstance(runs, list) or not all(
            isinstance(r, dict) and all(isinstance(r.get(k), t) for k, t in fields.items())
            for r in runs
        ):
            raise ValueError(
                f"{path} is not a launch record (a list `runs` of {{arm, seed, folder}}): it was "
                f"edited or damaged; move it out of {folder} to report without it (the report "
                "then cannot see which of that launch's runs have no folder)"
            )
        for r in runs:
            seen.setdefault((r["arm"], r["seed"], r["folder"]), {k: r[k] for k in fields})
        began = started_path(path)
        for r in read_log(began) if os.path.isfile(began) else []:
            key = (r.get("arm"), r.get("seed"), r.get("folder"))
            if key in seen:
                seen[key]["began"] = True
    return [{**r, "began": r.get("began", False)} for r in seen.values()]


def without_folder(sweep_dir: str) -> list[dict]:
    """The runs launched into `sweep_dir` (launched_runs) whose folder holds no run record
    (RUN_CONFIG): never begun (a launch cut short, a run that failed before it started, one
    still waiting for its turn), or removed."""
    return [
        r
        for r in launched_runs(sweep_dir)
        if not os.path.isfile(os.path.join(sweep_dir, r["folder"], RUN_CONFIG))
    ]
