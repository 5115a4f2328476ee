"""The files of a run's dump folder (job.dump_folder), written during training and evaluation and
read by the report: their names live here and nowhere else."""

from __future__ import annotations

import dataclasses
import glob
import json
import os

RUN_CONFIG = "run_config.json"
"""The run's whole job config, written when training starts"""
METRICS_LOG = "prefix_metrics.jsonl"
"""One JSON line per logged step (loss, plain CE, lr) and per validation (plain CE)"""
EVAL_RESULTS = "eval_results.json"
"""lm-eval results, written beside each evaluated model folder"""
EVAL_CURVE = "eval_curve.json"
"""{step: results} of every checkpoint (eval --all-checkpoints)"""
EXPORTS = "hf"
"""Sub-folder of the run where eval --all-checkpoints exports each step-N"""
EVALS = "evals"
"""Sub-folder of the run where eval files the results of a model exported elsewhere: step-N/"""
EVAL_ITEMS = "eval_items"
"""Beside each EVAL_RESULTS: <task>.jsonl, one line per evaluated item (doc_id, correct, acc,
acc_norm, gold_loglik), in doc_id order, so that runs can be compared item by item"""
EXPORT_RECORD = "export_source.json"
"""In an exported model folder: the run folder, checkpoint and step it was exported from"""


def current_umask() -> int:
    """The process's umask (reading it means setting it: it is put back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(path: str, text: str) -> None:
    """Write `text` to `path` so that a crash leaves the old file or the new one, never half of
    one: a temporary file beside it, flushed to disk, then renamed over it."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: str, data, **dump_options) -> None:
    """json.dumps(data, indent=2, **dump_options) to `path`, atomically (write_atomically)."""
    write_atomically(path, json.dumps(data, indent=2, **dump_options))


def read_json(path: str):
    """A JSON file the package wrote, parsed; a file that does not parse is named in the error."""
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}): the file is damaged") from None


def read_log(path: str) -> list[dict]:
    """The rows of an append-only JSON-lines log such as METRICS_LOG; a last line without its
    newline (an append cut short by a crash) is not a row."""
    with open(path) as f:
        text = f.read()
    return [json.loads(line) for line in text.split("\n")[:-1] if line.strip()]


def drop_torn_line(path: str) -> None:
    """Before appending to a log that a crashed run may have left mid-line: cut that line off, so
    that the next row starts a line of its own."""
    if not os.path.exists(path):
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


def checkpoint_steps(folder: str) -> list[str]:
    """The `step-N` checkpoint folders under `folder`, oldest first (none if it does not exist)."""
    steps = [d for d in glob.glob(os.path.join(folder, "step-*")) if os.path.isdir(d)]
    return sorted(steps, key=lambda d: int(d.rsplit("-", 1)[1]))


def step_number(path: str) -> int | None:
    """N of a `.../step-N` checkpoint path, or None."""
    name = os.path.basename(os.path.normpath(path))
    return int(name[5:]) if name.startswith("step-") and name[5:].isdigit() else None


def run_record(job_config) -> dict:
    """The job config as RUN_CONFIG records it (JSON types; the refused `[prefix]` left out)."""
    config = dataclasses.asdict(job_config)
    config.pop("prefix", None)
    return json.loads(json.dumps(config, default=str))


def flatten(d: dict, prefix: str = "") -> dict:
    """{"section.key": value} of a nested config dict."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


RESUME_MAY_CHANGE = (
    "training.steps",
    "metrics.",
    "checkpoint.interval",
    "checkpoint.keep_latest_k",
    "checkpoint.load_step",
    "validation.",
    "job.description",
    "job.config_file",
    "job.print_config",
    "profiling.",
    "comm.",
)
"""Settings a resumed run may change: how long it runs, what it logs, saves and validates. Every
other setting (the objective above all, model, data, batch, optimizer, schedule, seed) must equal
the record of the run whose checkpoint it resumes."""


def resume_conflicts(recorded: dict, current: dict, defaults: dict | None = None) -> list[str]:
    """`setting: recorded -> current` for each setting outside RESUME_MAY_CHANGE that differs,
    objective settings first. With `defaults` (the record of a default job config), a setting
    the record lacks (one newer than the run) conflicts only if set away from its default."""
    old, new = flatten(recorded), flatten(current)
    default = flatten(defaults or {})
    keys = sorted(set(old) | set(new), key=lambda k: (not k.startswith("objective."), k))
    return [
        f"{k}: {old.get(k, '(not recorded)')!r} -> {new.get(k)!r}"
        for k in keys
        if not k.startswith(RESUME_MAY_CHANGE)
        and old.get(k) != new.get(k)
        and not (k not in old and k in default and new.get(k) == default[k])
    ]
