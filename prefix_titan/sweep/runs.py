"""A sweep's runs as the report reads them: each run folder's record, metrics and evaluations,
named by its arm (ObjectiveSpec.arm_name of the recorded objective), grouped by arm and paired by
seed, with the settings that must be equal across runs checked."""

from __future__ import annotations

import json
import os
import re

from ..evaluation.harness import (
    EMBEDDING_PROBE,
    ITEM_DIGESTS,
    PROBES_READ_WHOLE,
    bits_per_byte,
    calibrated_accuracy,
    read_items,
    reads_every_item,
)
from ..evaluation.probes import BLANK_TASKS, PROBE_TASKS
from ..objectives.plan import recorded_execution
from ..objectives.spec import ObjectiveSpec
from ..runs.checkpoints import complete_steps
from ..runs.folder import (
    DATA_FILES,
    EVAL_CURVE,
    EVAL_RESULTS,
    FOLDERS_HASHED,
    METRICS_LOG,
    PLACEMENT,
    RESOLVED,
    RESUME_MAY_CHANGE,
    RUN_CONFIG,
    STARTS,
    TARGET_TABLE,
    flatten,
    read_export_record,
    read_json,
    read_log,
    step_number,
)
from .configs import file_name, override_flags

# Settings that may differ between arms: the objective itself and where the run writes (how the
# loss is computed, ObjectiveSpec.execution_fields, excepted: the arms share it) ...
ARM_KEYS = ("objective.", "job.dump_folder", "job.description", "job.config_file")
# ... and between the runs of one arm: the seed, which pairs the arms.
SEED_KEY = "debug.seed"


def _step_of(path: str) -> int:
    """N of the first `step-N` in a run-relative path (-1: none)."""
    m = re.search(r"(?:^|/)step-(\d+)(?:/|$)", path)
    return int(m.group(1)) if m else -1


def _evaluated_step(folder: str, results_dir: str, record: dict) -> int:
    """The step an evaluation in `results_dir` (below run `folder`) is of: an exported model
    folder says so in its EXPORT_RECORD, whatever the folder is named; elsewhere (RUN/evals/step-N,
    written from that record) the run-relative path says it. A model exported from another run
    (one whose folder is here with another record) or from no run is refused: its results would
    be counted as this run's. A run folder moved or copied keeps its exports. `record`: the run's
    own RUN_CONFIG."""
    source = read_export_record(results_dir)
    if source is None:
        return _step_of(os.path.relpath(results_dir, folder))
    run_dir = source["run_dir"]
    other = run_dir is None
    if not other and os.path.realpath(run_dir) != os.path.realpath(folder):
        theirs = os.path.join(run_dir, RUN_CONFIG)
        other = os.path.isfile(theirs) and read_json(theirs, "the run record") != record
    if other:
        raise ValueError(
            f"{results_dir} holds the evaluation of a model exported from "
            f"{'no recorded run' if run_dir is None else f'another run ({run_dir})'}, inside the "
            f"run folder {folder}: its results would be counted as this run's; move it out"
        )
    step = source.get("step")
    return step if isinstance(step, int) else -1


def _text(metrics) -> str:
    return json.dumps(metrics, sort_keys=True, default=str)


def load_run(folder: str, items: bool = True) -> dict:
    """One run folder: its recorded config and objective (arm name); its validation rows by step
    (plain CE and the validation metrics); by evaluated step, the evaluation results, the
    per-item outcomes (with the bits per byte they give), and the --limit and task version each
    result was made with; and the last step it recorded (`last_step`: its latest complete
    checkpoint, metrics log row, validation or evaluation; None if none); the state of its
    metrics log (`log`: "missing", "torn" where it ends in a line cut short that is not read, else
    None) and the last step it logs (`log_last`). `items=False` leaves the per-item files unread
    (what an evaluation checks before it writes needs none)."""
    config = read_json(os.path.join(folder, RUN_CONFIG), "the run record", expect=dict)
    if not isinstance(config.get("objective"), dict):
        raise ValueError(f"{os.path.join(folder, RUN_CONFIG)} is not a run record (no objective)")
    rows, log = [], os.path.join(folder, METRICS_LOG)
    log_state = "missing" if not os.path.exists(log) else None
    if log_state is None:
        rows = read_log(log)
        log_state = "torn" if _ends_torn(log) else None
    val, validation = {}, {}
    for r in rows:
        if "validation_plain_ce" in r:
            val[r["step"]] = r["validation_plain_ce"]  # a resumed run may repeat a step: last wins
            validation[r["step"]] = {k: v for k, v in r.items() if k.startswith("validation_")}
    # Every evaluation of the run, by step: each eval_results.json below the run folder
    # (RUN/hf/step-N, RUN/evals/step-N) and eval --all-checkpoints' curve, merged by task, with
    # the per-item outcomes written beside them. The step is read from the export's record or
    # the run-relative path (_evaluated_step).
    steps: dict[int, dict] = {}

    def entry(step: int) -> dict:
        return steps.setdefault(
            step,
            {
                "results": {},
                "items": {},
                "limits": {},
                "n_samples": {},
                "versions": {},
                "probes": {},
                "probe_items": {},
                "checks": {},
                "files": {},
                "sample": set(),
            },
        )

    for d, _, files in sorted(os.walk(folder)):
        if EVAL_RESULTS in files:
            path = os.path.join(d, EVAL_RESULTS)
            data = read_json(path, "evaluation results", expect=dict)
            if not isinstance(data.get("results"), dict):
                raise ValueError(
                    f"{path} holds no `results` object: it is damaged or not lm-eval's results; "
                    f"evaluate that model again (or move the file out of the run folder)"
                )
            step = _evaluated_step(folder, d, config)
            e = entry(step)
            e["sample"].add((data.get("limit"), data.get("limit_seed")))  # (eval's --limit)
            for task, metrics in data["results"].items():
                twice = task in e["files"] and _text(e["results"][task]) != _text(metrics)
                if twice and step >= 0:  # (a step not found is never read)
                    raise ValueError(
                        f"run folder {folder} holds two evaluations of {task} at step {step} "
                        f"that differ: {e['files'][task]} and {path}; the report reads one per "
                        f"checkpoint: move the other out of the run folder"
                    )
                e["results"][task] = metrics
                e["limits"][task] = items_read(data, task)
                e["n_samples"][task] = (data.get("n_samples") or {}).get(task)
                if task in PROBE_TASKS + BLANK_TASKS:
                    e["probes"][task] = probes_built(data)
                    e["probe_items"][task] = (data.get("probes") or {}).get("items")
                if task in PROBE_TASKS and (data.get("probe_check") or {}).get(task):
                    e["checks"][task] = data["probe_check"][task]
                e["versions"][task] = (data.get("versions") or {}).get(task)
                e["files"][task] = path
            if items:
                e["items"].update(read_items(d, data.get(ITEM_DIGESTS)))
    curve = os.path.join(folder, EVAL_CURVE)
    if os.path.exists(curve):
        for step, results in read_json(curve, "the learning curve", expect=dict).items():
            e = entry(int(step))
            for task, metrics in results.items():
                e["results"].setdefault(task, metrics)
                e["files"].setdefault(task, curve)
    for step, e in steps.items():
        bpb = {task: bits_per_byte(rows) for task, rows in e["items"].items()}
        e["bits_per_byte"] = {t: v for t, v in bpb.items() if v is not None}
        e["calibrated"] = {}
        for task in PROBE_TASKS:
            answered, blank = e["items"].get(task), e["items"].get(f"{task}_blank")
            if answered and blank and step >= 0:  # (a step not found is never read)
                try:
                    value = calibrated_accuracy(answered, blank)
                except ValueError as err:
                    raise ValueError(f"{folder}, step {step}: {task}_blank: {err}") from None
                if value is not None:
                    e["calibrated"][task] = value
    spec = ObjectiveSpec.from_record(config["objective"], os.path.join(folder, RUN_CONFIG))
    seen = [r["step"] for r in rows if isinstance(r.get("step"), int)]
    seen += [s for s in steps if s >= 0]
    checkpoint = (config.get("checkpoint") or {}).get("folder")
    if checkpoint:
        found = (step_number(d) for d in complete_steps(os.path.join(folder, checkpoint)))
        seen += [s for s in found if s is not None]
    return {
        "folder": folder,
        "name": spec.arm_name(),
        "seed": config.get("debug", {}).get("seed"),
        "config": config,
        "objective": vars(spec),
        "val": dict(sorted(val.items())),
        "validation": dict(sorted(validation.items())),
        "steps": dict(sorted(steps.items())),
        "last_step": max(seen, default=None),
        "log": log_state,
        "log_last": max((r["step"] for r in rows if isinstance(r.get("step"), int)), default=None),
    }


def _ends_torn(path: str) -> bool:
    """Whether the log at `path` ends in a line without its newline (an append cut short, or one
    being written): read_log reads no row of it."""
    try:
        with open(path, "rb") as f:
            f.seek(max(f.seek(0, os.SEEK_END) - 4096, 0))
            tail = f.read()
    except OSError:
        return False
    return bool(tail.rsplit(b"\n", 1)[-1].strip())


def run_order(r: dict):
    """Where a run goes in a report: ce, label smoothing, the other built-in families by their
    settings (tau last), then the families named by import path, each together, by arm name
    (a setting they may not read, tau say, does not place them among the built-in arms)."""
    o = r["objective"]
    own = ":" in o["name"]
    return (
        3 if own else {"ce": 0, "label_smoothing": 1}.get(o["name"], 2),
        o["name"] if own else "",
        (False, "", 0.0) if own else (o["normalize"], o["support"], o["tau"]),
        r["name"],
    )


def find_runs(runs_dir: str, items: bool = True) -> list[dict]:
    """Every run under `runs_dir` (load_run; `items=False`: their per-item files unread)."""
    if not os.path.isdir(runs_dir):
        what = "is not a folder" if os.path.exists(runs_dir) else "does not exist"
        raise ValueError(f"{runs_dir!r} {what}: give the folder that holds the sweep's runs")
    runs = [load_run(d, items) for d, _, files in os.walk(runs_dir) if RUN_CONFIG in files]
    if not runs:
        raise ValueError(f"no runs (folders with {RUN_CONFIG}) under {runs_dir!r}")
    return sorted(runs, key=lambda r: (run_order(r), r["seed"]))


def seed_order(v):
    """A sort key of seeds (and of arm names beside them): numbers as numbers, names as text."""
    return (not isinstance(v, int), v if isinstance(v, int) else 0, str(v))


def select_runs(
    runs: list[dict], seeds: list[int] | None = None, arms: list[str] | None = None
) -> tuple[list[dict], list[dict]]:
    """(kept, left out): the runs of the given seeds and arms (None: every one). Refuses a seed
    or an arm that no run has, naming those the runs have."""
    if arms:  # an import path's arm by its file-name form (`:` written `-`)
        by_file = {file_name(r["name"]): r["name"] for r in runs}
        arms = [by_file.get(arm, arm) for arm in arms]
    for flag, wanted, key in (("--seeds", seeds, "seed"), ("--arms", arms, "name")):
        found = list(dict.fromkeys(r[key] for r in runs))
        unknown = [w for w in wanted or [] if w not in found]
        if unknown:
            raise ValueError(
                f"{flag} {' '.join(map(str, unknown))}: no run has "
                f"{'that' if len(unknown) == 1 else 'these'}; the runs have "
                f"{', '.join(map(str, sorted(found, key=seed_order)))}"
            )
    kept = [
        r
        for r in runs
        if (seeds is None or r["seed"] in seeds) and (arms is None or r["name"] in arms)
    ]
    return kept, [r for r in runs if r not in kept]


def complete_seeds(runs: list[dict]) -> list[int]:
    """The seeds at which every arm of `runs` has a run."""
    names = {r["name"] for r in runs}
    by_seed: dict[int, set] = {}
    for r in runs:
        by_seed.setdefault(r["seed"], set()).add(r["name"])
    return sorted(s for s, have in by_seed.items() if have == names)


def group_arms(runs: list[dict], baseline: str | None = None) -> dict[str, dict[int, dict]]:
    """{arm: {seed: run}} in report order. Refuses two runs of one (arm, seed) and arms whose seed
    lists differ (the paired comparisons need every arm at every seed), its ways out keeping the
    plan's `baseline` (None: no plan known, no arm kept)."""
    arms: dict[str, dict[int, dict]] = {}
    for r in runs:
        seeds = arms.setdefault(r["name"], {})
        if r["seed"] in seeds:
            raise ValueError(
                f"two runs of arm {r['name']} with seed {r['seed']}: {seeds[r['seed']]['folder']} "
                f"and {r['folder']}; report one of them (move the other out of the folder)"
            )
        seeds[r["seed"]] = r
    problem = unpaired({name: list(seeds) for name, seeds in arms.items()}, baseline)
    if problem:
        raise ValueError(problem)
    return arms


def unpaired(seeds_by_arm: dict[str, list], baseline: str | None = None) -> str | None:
    """Why arms with these seeds cannot be paired (their seed lists differ), with the ways out, or
    None. The ways out keep what a report can compare: 2 seeds or more (one measures no training
    noise), and the plan's `baseline` (None: no plan known) among the arms."""
    lists = {name: sorted(seeds) for name, seeds in seeds_by_arm.items()}
    if len({tuple(v) for v in lists.values()}) > 1:
        complete = sorted(set.intersection(*map(set, lists.values())))
        subset = (
            f", or report the seeds every arm has (--seeds {' '.join(map(str, complete))})"
            if len(complete) > 1
            else ""
        )
        every = set().union(*lists.values())
        whole = [name for name, v in lists.items() if set(v) == every]
        if 1 < len(whole) < len(lists) and (baseline in whole or baseline not in lists):
            subset += (
                f", or leave out the arms that miss runs (--arms {' '.join(whole)}: an "
                "exploratory report, as any choice of arms after the runs)"
            )
        elif 1 < len(whole) < len(lists):
            subset += (
                f"; leaving out the arms that miss runs is no way out: they include the plan's "
                f"baseline, {baseline}, which every comparison is with"
            )
        return (
            "the arms were not run with the same seeds, so they cannot be paired:\n  "
            + "\n  ".join(f"{name}: seeds {', '.join(map(str, v))}" for name, v in lists.items())
            + "\nFinish the missing runs (`python -m prefix_titan.sweep launch` skips finished "
            f"ones){subset}."
        )
    return None


def unplaced(runs_by_arm: dict[str, dict]) -> str | None:
    """Why runs of one seed are not paired though every arm has it: they trained on other
    placements (ranks and parallel degrees, recorded beside the config), and torchtitan draws the
    initial weights of a seed differently for each; None where every seed's runs that record one
    agree."""
    by_seed: dict = {}
    for arm, runs in runs_by_arm.items():
        for seed, run in runs.items():
            placed = (run.get("config") or {}).get(PLACEMENT)
            if placed is not None:
                key = json.dumps(placed, sort_keys=True)
                by_seed.setdefault(seed, {}).setdefault(key, []).append(arm)
    odd = {s: p for s, p in by_seed.items() if len(p) > 1}
    if not odd:
        return None
    lines = [
        f"seed {s}: "
        + "; ".join(f"{', '.join(arms)} on {_placement(json.loads(k))}" for k, arms in p.items())
        for s, p in odd.items()
    ]
    return (
        "runs of one seed were trained on different placements, so their initial weights differ "
        "(torchtitan draws a seed's weights by its ranks and degrees) and they are not paired:\n  "
        + "\n  ".join(lines)
        + "\nTrain the odd runs again with the others' placement (`sweep launch --gpus-per-run "
        "N`, --nnodes), or report the other seeds (--seeds)."
    )


def _placement(p: dict) -> str:
    degrees = ", ".join(f"{k} {v}" for k, v in p.items() if k != "ranks" and v != 1)
    return f"{p.get('ranks')} rank(s)" + (f" ({degrees})" if degrees else "")


def _as_resolved(config: dict) -> dict:
    """A run's record without its placement, its execution settings as its device resolved them
    (RESOLVED; a kernel = 'auto' that ran the PyTorch rows is the same as 'pytorch')."""
    out = {k: v for k, v in config.items() if k not in (PLACEMENT, RESOLVED, TARGET_TABLE, STARTS)}
    objective = dict(out.get("objective") or {})
    objective.update(recorded_execution(objective, config.get(RESOLVED)))
    out["objective"] = objective
    return out


MEASURED = (
    "training.steps",
    "validation.freq",
    "validation.enable",
    "checkpoint.interval",
    "checkpoint.keep_latest_k",
    "checkpoint.last_save_in_hf",
    "checkpoint.last_save_model_only",
)
"""What a resumed run may change that decides what the runs of a sweep train or which steps are
measured (validated, kept as checkpoints to evaluate, and how the last is saved: a model-only
save is cast to checkpoint.export_dtype)"""
FREE = tuple(k for k in RESUME_MAY_CHANGE if k not in MEASURED)
"""Settings the runs of a sweep may differ in: those a resumed run may change but MEASURED (how
often it logs, its communication timeouts, profiling, ...)"""


def matched_settings(config: dict) -> dict:
    """{setting: value} of a run record (RUN_CONFIG) that every run of a sweep must share (the
    report's compute-matched invariants): every setting outside the objective, the seed and FREE,
    the execution settings of [objective] (ObjectiveSpec.execution_fields) counted as outside and
    compared as the run's device resolved them."""
    shared = tuple(f"objective.{name}" for name in ObjectiveSpec.execution_fields())
    hashed = config.get(DATA_FILES) if isinstance(config.get(DATA_FILES), dict) else {}
    # a folder whose files the run hashed is compared by those hashes, not by its name (a sweep
    # resumed on a copy of its shards, or a path spelled otherwise: titan.checks.same_files)
    named = {s for s, keys in FOLDERS_HASHED.items() if any(k in hashed for k in keys)}
    return {
        k: v
        for k, v in flatten(_as_resolved(config)).items()
        if (not k.startswith(ARM_KEYS) or k in shared)
        and k != SEED_KEY
        and not k.startswith(FREE)
        and k not in named
    }


def invariant_violations(runs: list[dict]) -> list[str]:
    """Settings outside the objective (and the seed) that differ between runs, naming the runs
    (matched_settings); and an arm whose runs trained towards different target tables
    (`retabled`)."""
    flat = [matched_settings(r["config"]) for r in runs]
    keys = sorted({k for f in flat for k in f})
    problems = []
    for key in keys:
        if key.startswith(f"{DATA_FILES}.") and any(key not in f for f in flat):
            continue  # (a run recorded before the files were: not told apart)
        values = [json.dumps(f.get(key), sort_keys=True, default=str) for f in flat]
        if len(set(values)) > 1:
            common = max(set(values), key=values.count)
            odd = [
                f"{r['name']} seed {r['seed']} ({json.loads(v)!r})"
                for r, v in zip(runs, values)
                if v != common
            ]
            problems.append(
                f"`{key}` differs from {json.loads(common)!r} in: {', '.join(odd)}"
                + (
                    " (the launch sets it from each run's GPUs: the same validation set, and the "
                    "same sequences per step: the global batch, or a config's local batch split "
                    "over the run's ranks where it sets none)"
                    if placed(key)
                    else ""
                )
            )
    return problems + retabled(runs)


def sweep_records(sweep: str, leave_out: set[str] = frozenset()) -> list[tuple[str, dict]]:
    """(run folder relative to `sweep`, its record) of each run folder below `sweep` (a folder
    with RUN_CONFIG; found as the report finds them), but those in `leave_out` (real paths); a
    record that cannot be read is left out (the report names it)."""
    out = []
    for d, dirs, files in os.walk(sweep):
        if RUN_CONFIG not in files:
            continue
        dirs[:] = []  # (a run folder's own subfolders hold no other run)
        if os.path.realpath(d) in leave_out:
            continue
        try:
            out.append((os.path.relpath(d, sweep), read_json(os.path.join(d, RUN_CONFIG))))
        except ValueError:
            continue
    return sorted(out, key=lambda x: x[0])


LAUNCH_SETS = (
    "training.local_batch_size",
    "validation.local_batch_size",
    "validation.steps",
    "parallelism.",
)
"""What the sweep launch sets from the GPUs a run gets (launch.batch_override,
validation_override: the same validation set, and the same sequences per step: the global
batch, or the config's local batch split over the ranks where it sets none) or what follows its
placement"""


def placed(key: str) -> bool:
    """Whether the sweep launch sets `key` from the GPUs a run gets (LAUNCH_SETS)."""
    return key.startswith(LAUNCH_SETS)


def unmatched(record: dict, others: list[tuple[str, dict]], given: list[str] = ()) -> list[str]:
    """`setting: value here, value in runs` for each setting a run with `record` (what it would
    record) would not share with the runs `others` (name, record) already in its sweep, as the
    report's invariants compare them (matched_settings); a value any of them has is no
    difference (the sweep differs in it already), nor a setting none of them records (one newer
    than their runs), nor the files a run read where one of them did not record them, nor a
    setting the launch sets from the run's GPUs (`placed`: the same sequences per step and
    validation set on any count) unless `given` (the settings given after `--`) names it."""
    mine = {
        k: v
        for k, v in matched_settings(record).items()
        if not placed(k) or any(k == g or k.startswith(g + ".") for g in given)
    }
    theirs = [(name, matched_settings(r)) for name, r in others]
    out = []
    for key, value in mine.items():
        had = [(name, f[key]) for name, f in theirs if key in f]
        if not had or (key.startswith(f"{DATA_FILES}.") and len(had) < len(theirs)):
            continue
        values = {json.dumps(v, sort_keys=True, default=str) for _, v in had}
        if json.dumps(value, sort_keys=True, default=str) in values:
            continue
        by_value: dict[str, list[str]] = {}
        for name, v in had:
            by_value.setdefault(repr(v), []).append(name)
        shown = "; ".join(
            f"{v} in {', '.join(names[:6])}"
            + (f" and {len(names) - 6} more" if len(names) > 6 else "")
            for v, names in by_value.items()
        )
        out.append(f"{key}: {value!r} here, {shown}")
    return out


def _cause(key: str) -> str:
    """Where a difference the launch's overrides did not make comes from."""
    if key.startswith(f"{DATA_FILES}."):
        return f"{key}: the data or tokenizer files differ from those the runs read"
    if key.startswith("objective."):
        return (
            f"{key}: resolved otherwise on this device (launch on the device type the runs had, "
            "or set it in the config)"
        )
    return (
        f"{key}: the runs already there were launched with it set after -- (launch with the "
        f"same `-- --{key} ...`), or the scale's config changed since (regenerate the configs as "
        "the runs had them)"
    )


def launch_conflicts(
    starting: list, folder: str, extra: list[str], device_type: str
) -> list[tuple[str, list[str]]]:
    """(problem, runs) for the runs a launch would start (name, dump folder, the record it would
    write) whose settings differ from those of the runs already in the sweep folder in one
    every run of a sweep must share (the report's compute-matched invariants): the arms would
    no longer differ only in the objective, nor the seeds be paired. A run recorded before
    records kept what its execution settings resolved to is compared as they resolve on
    `device_type` (as a resume is)."""
    others = sweep_records(folder, {os.path.realpath(f) for _, f, _ in starting})
    if not others:
        return []
    for _, record in others:
        if RESOLVED not in record:
            from ..model.flavors import flavor_args  # (torchtitan's: only for old records)

            try:
                dim = flavor_args((record.get("model") or {}).get("flavor")).dim
            except (KeyError, TypeError, ValueError):
                dim = None
            objective = record.get("objective") or {}
            record[RESOLVED] = recorded_execution(objective, None, device_type, dim)
    pairs = override_flags(extra)
    given = [setting for setting, _ in pairs]
    spelled = dict(pairs)  # a setting's flag as given (--validation.no-enable)
    out: dict[str, list[str]] = {}
    for name, _, record in starting:
        differ = unmatched(record, others, given)
        if not differ:
            continue
        keys = [d.split(":", 1)[0] for d in differ]
        overrides = [k for k in dict.fromkeys(given) if k in keys]
        ways = [f"drop {', '.join(spelled[k] for k in overrides)} after --"] if overrides else []
        causes = [_cause(k) for k in keys if k not in overrides]
        if causes:
            ways.append("remove the cause of the rest (" + "; ".join(causes) + ")")
        problem = (
            f"settings differ from the runs already in the sweep folder {folder} (a sweep's runs "
            "must share every setting outside the objective and the seed: the arms differ only "
            "in the objective, the seeds are paired; the report checks these as compute-matched "
            "invariants):\n    "
            + "\n    ".join(differ)
            + f"\n  To launch into this sweep, {' and '.join(ways)}; for a new sweep with these "
            "settings, give another --sweep-dir"
        )
        out.setdefault(problem, []).append(name)
    return list(out.items())


def retabled(runs: list[dict]) -> list[str]:
    """An arm whose runs trained towards different target tables (TARGET_TABLE, where recorded)
    under the same settings: its family's code, or the package's, changed between them."""
    tables: dict[str, dict[str, list[str]]] = {}
    for r in runs:
        sha = (r.get("config") or {}).get(TARGET_TABLE)
        if sha is not None:
            tables.setdefault(r["name"], {}).setdefault(sha, []).append(f"seed {r['seed']}")
    return [
        f"arm {arm} trained towards {len(by)} different target tables under its settings (its "
        "family's code, or this package's, changed between its runs): "
        + "; ".join(f"{', '.join(seeds)}: sha256 {sha[:12]}..." for sha, seeds in by.items())
        for arm, by in tables.items()
        if len(by) > 1
    ]


def probes_built(results: dict) -> str | None:
    """How an evaluation built the character probes (the words' source by its folder's name,
    items, seed, shots), so that runs are compared only on probes built alike; None where the
    results predate the record."""
    probes = results.get("probes")
    if not isinstance(probes, dict):
        return None
    words = probes.get("words_from")
    source = os.path.basename(os.path.normpath(words)) if words else "the embedded corpus"
    return (
        f"words from {source}, {probes.get('items')} items, seed {probes.get('seed')}, "
        f"{probes.get('shots')} shots"
    )


def items_read(results: dict, task: str | None = None) -> str | None:
    """Which items an evaluation read: all (None), or a --limit sample with its seed, drawn in
    proportion to the gold answers (harness.LIMIT_SAMPLING; results written before that drew
    them at random, and before samples were seeded took the first N). Given a `task` whose
    results record its item count (lm-eval's n-samples), a limit at or above it read all; a
    character probe of results under PROBES_READ_WHOLE was built with the limit and read whole."""
    limit = results.get("limit")
    if limit is None:
        return None
    if task in PROBE_TASKS + BLANK_TASKS and results.get("limit_sampling") in PROBES_READ_WHOLE:
        return None  # built with the limit and read whole (harness.probes_at_limit)
    if task == EMBEDDING_PROBE:
        return None  # every token vector, whatever the limit (harness.MADE_HERE)
    if task is not None and reads_every_item(results, task):
        return None
    seed = results.get("limit_seed")
    if seed is None:
        return f"{limit} (the first {limit})"
    if results.get("limit_sampling") is None:
        return f"{limit} (--limit-seed {seed}, drawn regardless of the answers)"
    return f"{limit} (--limit-seed {seed})"
