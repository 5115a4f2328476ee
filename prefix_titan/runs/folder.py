"""The files of a run's dump folder (job.dump_folder), written during training and evaluation and
read by the report: their names live here and nowhere else."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import glob
import json
import os
import re
import tempfile

RUN_CONFIG = "run_config.json"
"""The run's whole job config, written when training starts"""
PLACEMENT = "placement"
"""In RUN_CONFIG beside the job config: the ranks and parallel degrees the run trained on (the
initial weights torchtitan draws for a seed depend on them)"""
DATA_FILES = "data_files"
"""In RUN_CONFIG beside the job config: the sha256 of what the run read under its settings' names
(the tokenizer's files, each token-shard folder's manifest): a resume or a sweep that reads other
files under the same paths is told apart"""
FOLDERS_HASHED = {
    "model.hf_assets_path": ("tokenizer.json", "tokenizer_config.json"),
    "training.dataset_path": ("training shards",),
    "validation.dataset_path": ("validation shards",),
}
"""The folder settings whose files DATA_FILES hashes: {setting: the keys of its files there}. A
run that recorded them is told apart by those hashes, not by how the folder is named"""
TARGET_TABLE = "target_table"
"""In RUN_CONFIG beside the job config: the sha256 of the target table the run trained towards
(TargetTable.sha256; built from its objective settings, its tokenizer and its family's code): a
resume whose settings now build another table (a family edited in place) is refused, and a sweep
report names an arm whose seeds trained towards different tables"""
STARTS = "starts"
"""In RUN_CONFIG beside the job config: each start of the run, oldest first (start_record: when,
where, the checkpoint it found, the software it ran, a family's source file and its sha256),
kept from the record it replaces: which steps a resume trained under which versions. Not a
setting: neither resumes nor sweeps compare it"""
LAUNCH_PLAN_ENV = "PREFIX_TITAN_PLAN_SHA256"
"""The environment variable the sweep launcher sets for the runs it starts: the sha256 of the
analysis plan it registered in the sweep folder (analysis.plan_digest), which each start records
(STARTS: `plan_sha256`), so that a report finds a registered plan gone or replaced"""
RESOLVED = "resolved"
"""In RUN_CONFIG beside the job config: what the run's device made of the execution settings
whose defaults depend on it (objectives/plan.py resolved_execution: the row kernel, the fused
head's chunk size); resumes and sweep reports compare these"""
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
acc_norm, gold_loglik; a generation task's: doc_id, correct, generated, target), in doc_id
order, so that runs can be compared item by item"""
EXPORT_RECORD = "export_source.json"
"""In an exported model folder: the run folder (null for a checkpoint that lies in no recorded
run), checkpoint and step it was exported from"""


def current_umask() -> int:
    """The process's umask: read from /proc where Linux shows it, else by setting it and putting
    it back at once."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _refuse_symlink(path: str) -> None:
    if os.path.islink(path):
        raise ValueError(
            f"{path} is a symbolic link (to {os.readlink(path)}): the package does not write "
            f"through links; remove the link (or move the file it points to into its place)"
        )


def write_atomically(path: str, text: str | bytes) -> None:
    """Write `text` (or bytes: a figure) to `path` so that a crash leaves the old file or the new one, never half of
    one: a temporary file created exclusively beside it (a fresh name, links not followed),
    flushed to disk, then renamed over it. A `path` that is a symbolic link is refused; the new
    file gets the modes the umask gives new files."""
    _refuse_symlink(path)
    folder, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~current_umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def fsync_tree(folder: str) -> None:
    """Flush every file under `folder`, and the folders themselves, to disk (before the folder is
    renamed into place: after a power loss the new name then never holds truncated files)."""
    for root, _, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY | os.O_NOFOLLOW)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_folder(root)


def fsync_folder(folder: str) -> None:
    """Flush a folder's entries (a rename into it) to disk."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: str, data, **dump_options) -> None:
    """json.dumps(data, indent=2, **dump_options) to `path`, atomically (write_atomically)."""
    write_atomically(path, json.dumps(data, indent=2, **dump_options))


def _open_nofollow(path: str, flags: int, mode: int = 0o666) -> int:
    try:
        return os.open(path, flags | os.O_NOFOLLOW, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            _refuse_symlink(path)
        raise


def open_log(path: str):
    """`path` opened to append bytes (created if needed), a symbolic link refused: a log that a
    process writes to, such as the sweep launcher's launch.log."""
    return os.fdopen(_open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "ab")


def append_line(path: str, text: str) -> None:
    """Append one line (`text`, its newline added) to a JSON-lines log such as METRICS_LOG, in
    one write, creating the file if needed; a `path` that is a symbolic link is refused."""
    line = text if text.endswith("\n") else text + "\n"
    fd = _open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    with os.fdopen(fd, "w") as f:
        f.write(line)


def _the_file(what: str | None) -> str:
    return f"the file ({what})" if what else "the file"


def read_json(path: str, what: str | None = None, expect: type | None = None):
    """A JSON file the package wrote, parsed. A file that cannot be read, does not parse or (with
    `expect`, e.g. dict) holds another type is refused in a ValueError naming it (`what` says
    what the file is); a missing file raises FileNotFoundError."""
    the_file = _the_file(what)
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}): {the_file} is damaged") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not text ({e}): {the_file} is damaged") from None
    except OSError as e:
        raise ValueError(f"{path} cannot be read ({e.strerror or e}): {the_file}") from None
    if expect is not None and not isinstance(data, expect):
        raise ValueError(
            f"{path} holds a JSON {type(data).__name__}, not the {_json_type(expect)} expected: "
            f"{the_file} is damaged or is not the file it is named after"
        )
    return data


def _json_type(expect) -> str:
    names = {dict: "object", list: "array", str: "string"}
    types = expect if isinstance(expect, tuple) else (expect,)
    return " or ".join(names.get(t, t.__name__) for t in types)


def read_toml(path: str, what: str | None = None) -> dict:
    """A TOML file, parsed; a file that cannot be read or does not parse is refused in a
    ValueError naming it (`what` says what the file is); a missing file raises
    FileNotFoundError."""
    import tomllib

    the_file = _the_file(what)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path} is not valid TOML ({e}): correct {the_file}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e}): {the_file} is damaged") from None
    except OSError as e:
        raise ValueError(f"{path} cannot be read ({e.strerror or e}): {the_file}") from None


def read_log(path: str) -> list[dict]:
    """The rows of an append-only JSON-lines log such as METRICS_LOG. A last line without its
    newline (an append cut short by a crash) is not a row; any other line that is not a JSON
    object is damage, refused naming the file and the line number."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise ValueError(f"{path} cannot be read: {e.strerror or e}") from None
    rows = []
    for number, line in enumerate(text.split("\n")[:-1], 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(
                f"{path} line {number} is not valid JSON ({e}): a torn or overwritten line in the "
                f"middle of the log; repair or remove that line"
            ) from None
        if not isinstance(row, dict):
            raise ValueError(
                f"{path} line {number} holds a JSON {type(row).__name__}, not an object: the log "
                f"is damaged; repair or remove that line"
            )
        rows.append(row)
    return rows


def validated(run_dir: str, step: int) -> bool:
    """Whether the run folder's metrics log holds a validation row of `step` (a log missing or
    damaged: no)."""
    try:
        rows = read_log(os.path.join(run_dir, METRICS_LOG))
    except (OSError, ValueError):
        return False
    return any(r.get("step") == step and "validation_plain_ce" in r for r in rows)


def drop_torn_line(path: str) -> None:
    """Before appending to a log that a crashed run may have left mid-line: cut that line off, so
    that the next row starts a line of its own. A `path` that is a symbolic link is refused."""
    try:
        fd = _open_nofollow(path, os.O_RDWR)
    except FileNotFoundError:
        return
    with os.fdopen(fd, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


def read_export_record(model_dir: str) -> dict | None:
    """An exported model folder's EXPORT_RECORD (None where the folder has none), its `run_dir`
    checked: a path, or null for a checkpoint that lay in no recorded run; anything else is
    damage, refused naming the file."""
    path = os.path.join(model_dir, EXPORT_RECORD)
    if not os.path.isfile(path):
        return None
    source = read_json(path, "the export's record", expect=dict)
    run_dir = source.get("run_dir", "")
    if run_dir is not None and (not isinstance(run_dir, str) or not run_dir):
        raise ValueError(f"{path} names no run_dir: the export's record is damaged")
    return source


def writer_folder(model_dir: str) -> str:
    """Whose writer's lock an evaluation of `model_dir` holds (and an export replacing it takes):
    the run folder's where the model was exported into its run (RUN/hf/step-N: a training, an
    `--all-checkpoints` evaluation or another evaluation of the run writes there too), else the
    model folder's own."""
    source = read_export_record(model_dir)
    run_dir = source and source["run_dir"]
    return run_dir if run_dir and inside_run(model_dir, run_dir) else model_dir


def inside_run(model_dir: str, run_dir: str) -> bool:
    """Whether the model folder lies inside the run folder (RUN/hf/step-N)."""
    return os.path.abspath(model_dir).startswith(os.path.join(os.path.abspath(run_dir), ""))


def _step_entries(folder: str) -> list[str]:
    """The entries of `folder` named `step-N`, oldest first, whatever they are (folders, links).
    Other names that start so (a copy `step-4-backup`) are not steps: left alone (a run
    refuses them: read_as_steps)."""
    found = glob.glob(os.path.join(glob.escape(folder), "step-*"))
    return sorted((d for d in found if step_number(d) is not None), key=step_number)


def checkpoint_steps(folder: str) -> list[str]:
    """The `step-N` checkpoint folders under `folder`, oldest first (none if it does not exist)."""
    return [d for d in _step_entries(folder) if os.path.isdir(d)]


def checkpoint_folder_problem(dump_folder: str, folder: str) -> str | None:
    """Why checkpoint.folder `folder` may not hold the checkpoints of the run in `dump_folder`,
    or None: it must lie inside the run folder (the writer's lock and the run's record cover that
    folder alone; a checkpoint folder elsewhere can be another run's, resumed and purged under
    this run's settings), and hold no `step-N` that is a link (the same, one step at a time)."""
    root = os.path.realpath(dump_folder)
    where = os.path.realpath(os.path.join(dump_folder, folder))
    if not os.path.isabs(folder) and where.startswith(os.path.join(root, "")):
        linked = [d for d in _step_entries(where) if os.path.islink(d)]
        if not linked:
            return None
        return (
            f"{linked[0]} is a symbolic link (to {os.path.realpath(linked[0])}): a checkpoint "
            "step must be the run's own folder, for a linked one may be another run's, resumed "
            "as this run's (its checksums are bound to the step, not the run) and purged through "
            "the link. Copy it in, or start from it with checkpoint.initial_load_path"
        )
    return (
        f"checkpoint.folder must be a folder inside job.dump_folder, a relative name such as "
        f"'checkpoint' (a link out of it counts as outside: link the whole run folder instead); "
        f"got {folder!r}, which is {where}: the run's lock and record cover job.dump_folder "
        "alone, and another run's checkpoints there would be resumed and purged as this run's. "
        "To start from another run's weights, use checkpoint.initial_load_path"
    )


TITAN_STEP = re.compile(r"step-(\d+)")
"""How torchtitan 0.2's checkpoint loader and its keep_latest_k purge find a step: `step-N`
anywhere in an entry's name (re.search)"""


def read_as_steps(folder: str) -> list[tuple[str, int]]:
    """(path, N) of the entries of `folder` that are no `step-N` but that torchtitan reads as
    step N (TITAN_STEP: `step-4-backup`, `old-step-4`): its loader may load one, its purge delete
    one. A purge's own aside (`.purged-step-N`, checkpoints.purge_older_steps: deleted by the
    next purge, and older than a kept step) is not one of them."""
    if not os.path.isdir(folder):
        return []
    return sorted(
        (os.path.join(folder, name), int(found.group(1)))
        for name in os.listdir(folder)
        if (found := TITAN_STEP.search(name))
        and step_number(name) is None
        and not name.startswith(".purged-step-")
    )


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
    "checkpoint.last_save_in_hf",
    "checkpoint.last_save_model_only",
    "validation.freq",
    "validation.enable",
    "job.description",
    "job.config_file",
    "job.print_config",
    "profiling.",
    "comm.",
)
"""Settings a resumed run may change: how long it runs, what it logs and saves (how the last
step is saved included), how often it validates. Every other setting (the objective above all,
model, data, batch, optimizer, schedule, seed, what validation reads) must equal the record of
the run whose checkpoint it resumes; and training.steps may change only with the learning-rate schedule's length
(lr_scheduler.total_steps, else training.steps) kept, for the schedule is drawn over it."""


def schedule_length(flat: dict) -> object:
    """The steps torchtitan draws the learning-rate schedule over: lr_scheduler.total_steps, else
    training.steps (of a flattened config record)."""
    total = flat.get("lr_scheduler.total_steps")
    return total if total is not None else flat.get("training.steps")


def settings_shown(settings) -> str:
    """Settings as a message lists them: a section prefix ("metrics.") as "metrics.*"."""
    return ", ".join(s + "*" if s.endswith(".") else s for s in settings)


PLACED_BY_LAUNCH = ("validation.", "training.local_batch_size", "parallelism.")
"""Settings the sweep launcher sets from the GPUs a run gets (the same global batch and
validation sequences on any count): a finished run it skips is not compared on them"""


def resume_conflicts(
    recorded: dict, current: dict, defaults: dict | None = None, also: tuple[str, ...] = ()
) -> list[str]:
    """`setting: recorded -> current` for each setting outside RESUME_MAY_CHANGE that differs,
    objective settings first. With `defaults` (the record of a default job config), a setting
    the record lacks (one newer than the run) conflicts only if set away from its default."""
    old, new = flatten(recorded), flatten(current)
    default = flatten(defaults or {})
    keys = sorted(set(old) | set(new), key=lambda k: (not k.startswith("objective."), k))

    def shown(flat: dict, k: str, missing: str) -> str:
        """A setting's value as a conflict shows it: None as `unset` (position_gamma's off)."""
        if k not in flat:
            return missing
        return "unset" if flat[k] is None else repr(flat[k])

    out = [
        f"{k}: {shown(old, k, repr('(not recorded)'))} -> {shown(new, k, 'unset')}"
        for k in keys
        if not k.startswith(RESUME_MAY_CHANGE + also)
        and k != "lr_scheduler.total_steps"  # (below: what it decides, the schedule's length)
        and old.get(k) != new.get(k)
        and not (k not in old and k in default and new.get(k) == default[k])
    ]
    before, after = schedule_length(old), schedule_length(new)
    if before != after:
        out.append(
            f"the learning-rate schedule's length (lr_scheduler.total_steps, else "
            f"training.steps): {before!r} -> {after!r}: the warmup and decay are drawn over it, "
            f"so the resumed steps would follow another schedule than the steps before them "
            f"(to stop earlier on the run's schedule, keep --lr_scheduler.total_steps {before!r}; "
            f"a run that may go longer sets lr_scheduler.total_steps to its last step from its "
            f"start)"
        )
    return out
