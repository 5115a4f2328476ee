"""Run a sweep: every chosen arm once per seed, at one scale (or print the commands).

    python -m prefix_titan.sweep launch --dry-run [--scale 500M|pilot|smoke] [--seeds 1234 1235 1236]
        [--gpus N]
    python -m prefix_titan.sweep launch [--scale pilot] [--arms ce label_smoothing prefix_tau0.5 ...]
        [--seeds S ...] [--gpus-per-run K|node] [--nproc-per-node 8]
        [--nnodes 4 --rdzv-endpoint HOST:29500] [--stop-on-failure]
        [--root DIR] [-- extra torchtitan overrides]

Runs. Each (arm, seed) trains the scale's generated config (configs.py) with
`--debug.seed S` into its own dump folder, `<sweep>/<arm>/seed<S>` (--sweep-dir moves <sweep>).
The seed sets both the initialisation and the data order, so seed S is the same in every arm:
the arms of one seed differ only in the objective (paired seeds). Without --seeds, the config's
own seed. The arms: the built-in ones (configs.arm_specs), then the `[[arm]]` tables of
`sweep_arms.toml` in the project root (--arms picks some; their configs are written by
`python -m prefix_titan.sweep configs` like the built-in arms').

Placement, by --gpus-per-run (default: the scale's; 500M: node, pilot and smoke: 1):
- node: one run at a time over every GPU of the node(s), FSDP2 (torchrun --nproc-per-node, and
  --nnodes with a c10d rendezvous at --rdzv-endpoint, which numbers the nodes itself: every node
  runs this same command, as scripts/sweep.sbatch does). The run's log is printed.
- K: independent runs side by side on this node, each on K of the visible GPUs
  (CUDA_VISIBLE_DEVICES, or all that nvidia-smi lists), queueing the rest; each run's log goes to
  `<run>/launch.log`. Without GPUs (the smoke scale on a CPU) the runs go one after another, or
  --cpu-runs N at once (each with OMP_NUM_THREADS = the cores / N, unless it is set).
In both, the local batch is lowered where the GPUs of a run times the config's local batch do not
divide the global batch (which torchtitan needs), so every run of a scale trains on the same
tokens per step; a GPU count that cannot divide it is refused before anything starts.

--dry-run prints the plan and needs no GPU (a login node plans as well as a GPU node). Runs
side by side (--gpus-per-run K) are placed on --gpus N GPUs (default: the GPUs visible here, or 8
when none is; the smoke scale without visible GPUs: on the CPU, as it would run here); a real
launch uses the visible GPUs. A run over the node (--gpus-per-run node) starts --nproc-per-node
processes per node (default: --gpus, else the GPUs visible here, else 8).

Before any run starts, every run that would start is checked in this process (the job config's
checks, its data folders and tokenizer, the target table of a family of one's own, built as its
run would build it, and the settings every run of a sweep shares (sweep/runs.py matched_settings,
the report's compute-matched invariants) against the runs already in the sweep folder; and,
but at the smoke scale, that the analysis plan averages no more checkpoints than a run keeps):
a refusal names each run and nothing starts (exit status 2), instead of one torchrun failure
report per run. A
--dry-run makes the same checks after printing its plan, and exits 2 with the same list where a
launch from here would be refused (data not prepared yet, a tokenizer missing). It checks the runs
for the device it plans for: a plan for GPUs made on a machine without them resolves
objective.kernel = 'auto' (and the fused head's chunk size) as a GPU will.

A finished run (its final step's checkpoint is complete) is skipped, so the same command resumes
a sweep (a --dry-run lists it as a comment line, `# ARM seed S: finished already, skipped`, and
places only the others). A failed run is reported as it ends, with the line of its log that says
why (its refusal, or its last exception), and at the end; it does not stop the others, unless
--stop-on-failure. The exit status is 1 when any run failed. Ctrl-C or a SIGTERM to the launcher
ends the runs going (each saying which checkpoint resumes it), then the launch (status 130 or
143), in one line: the same command resumes the sweep.

Two launches may share a sweep folder: each run is checked again just before it starts (taken),
and one finished meanwhile is skipped, one that another live process writes (another launch
trains it) is left to it with a line naming that process, not counted as failed; so is a run
whose own log says its start was refused for such a writer that took its folder in between (one
run at a time over the node, whose output goes to the terminal: a failure, named with what holds
its folder now). A launch that finds other writers in its sweep folder as it starts says so.
Where the filesystem does not share flock between hosts, another host's writer is not seen: its
lock record refuses a launch from here, naming the file to remove once that writer is gone.

The project root (--root, default: the current folder) holds train_configs/; the runs start there,
so the configs' relative paths (./assets, ./data, ./outputs) resolve against it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys
import time

from ..runs.checkpoints import sealed
from ..runs.cli import Parser, path_arg
from ..runs.folder import LAUNCH_PLAN_ENV, PLACEMENT, RUN_CONFIG, open_log, read_json, validated
from ..runs.lock import describe, writer
from .configs import (
    ARMS_FILE,
    SCALES,
    arms,
    config_path,
    file_name,
    load_config,
    override_flags,
    pick_arms,
    render,
)


def _gpus(dp: int, per_rank: int) -> str:
    """How a refusal names a run of `dp` data-parallel ranks of `per_rank` GPUs each (tensor x
    context x pipeline parallel)."""
    if per_rank == 1:
        return f"{dp} GPUs per run"
    return f"{dp * per_rank} GPUs per run ({dp} data-parallel ranks of {per_rank} GPUs each)"


def batch_override(config: dict, world: int, per_rank: int = 1) -> list[str]:
    """Keep the global batch (sequences, so tokens, per step) on `world` data-parallel ranks (of
    `per_rank` GPUs each: tensor x context x pipeline parallel; a refusal names GPUs). torchtitan needs
    it to be local batch x world x gradient-accumulation steps: where the config's local batch
    does not fit, it is lowered to the largest size that does (at most the config's, so the
    memory per GPU never grows); a world that cannot split the global batch is refused. A
    config without a global batch (the smoke scale's) trains its local batch per step on any
    number of ranks: each rank takes its share."""
    t = config["training"]
    local, global_ = t["local_batch_size"], t.get("global_batch_size", -1)
    if global_ <= 0:  # no global batch set: the config's local batch is the step's, split
        if world == 1:
            return []
        if local % world:
            fits = [n for n in range(1, local + 1) if local % n == 0]
            raise SystemExit(
                f"{_gpus(world, per_rank).replace('GPUs', 'ranks', 1)} cannot split the step's "
                f"{local} sequences (training.local_batch_size; no global batch set) evenly; "
                f"rank counts that can: {', '.join(str(n * per_rank) for n in fits)}"
            )
        return ["--training.local_batch_size", str(local // world)]
    if global_ % (local * world) == 0:
        return []
    if global_ % world:
        fits = [n for n in range(1, global_ + 1) if global_ % n == 0]
        raise SystemExit(
            f"{_gpus(world, per_rank)} cannot split the global batch of {global_} sequences "
            f"(training.global_batch_size) evenly; GPU counts that can: "
            f"{', '.join(str(n * per_rank) for n in fits)}"
        )
    return ["--training.local_batch_size", str(_largest_fit(global_, local, world))]


def batch_line(config: dict, extra: list[str], world: int, sequences: int) -> str | None:
    """What a run of `config` on `world` GPUs trains a step on and validates on, as the launch's
    own overrides (batch_override, validation_override) and the flags after -- leave them: the
    data-parallel ranks, local batch, accumulation steps, tokens a step, validation sequences.
    None where a setting is not a whole number (the run's checks name it)."""
    dp = data_parallel(config, extra, world)
    args = [*batch_override(config, dp), *validation_override(config, dp, sequences), *extra]
    try:
        local = int(_setting(config, args, "training.local_batch_size"))
        global_ = int(_setting(config, args, "training.global_batch_size") or -1)
        seq_len = int(_setting(config, args, "training.seq_len"))
        if global_ <= 0:  # (no global batch: each rank's local batch, side by side)
            global_ = local * dp
        line = (
            f"{dp} data-parallel rank{'s' if dp > 1 else ''}"
            + (f" of {world} GPUs" if dp != world else "")
            + f" x local batch {local} x {global_ // (local * dp)} accumulation "
            f"step{'s' if global_ // (local * dp) > 1 else ''} = {global_} sequences of "
            f"{seq_len} tokens = {global_ * seq_len:,} tokens a step"
        )
        if _switch(config, args, "validation.enable"):
            steps = int(_setting(config, args, "validation.steps"))
            v_local = int(_setting(config, args, "validation.local_batch_size"))
            line += (
                f"; validation: {steps} steps x {v_local} x {dp} = {steps * v_local * dp:,} "
                "sequences"
            )
        return line
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def _largest_fit(total: int, local: int, world: int) -> int | None:
    """The largest local batch up to `local` whose `world` copies split `total` sequences evenly
    (None: none does)."""
    return max((n for n in range(1, local + 1) if total % (n * world) == 0), default=None)


def validation_override(config: dict, world: int, sequences: int, per_rank: int = 1) -> list[str]:
    """Keep the validation set at `sequences` on `world` data-parallel ranks (of `per_rank` GPUs
    each, as batch_override): torchtitan reads validation.steps
    batches of validation.local_batch_size on every rank, so the set grows with the ranks unless
    the steps follow them (the largest local batch up to the config's that splits it evenly)."""
    v = config.get("validation") or {}
    if not v.get("enable", False):
        return []
    local = v["local_batch_size"]
    fit = _largest_fit(sequences, local, world)
    if fit is None:
        raise SystemExit(
            f"{_gpus(world, per_rank)} cannot split the validation set of {sequences} sequences "
            "evenly (validation.steps x validation.local_batch_size x data-parallel ranks)"
        )
    steps = sequences // (fit * world)
    out = [] if steps == v.get("steps") else ["--validation.steps", str(steps)]
    return out + ([] if fit == local else ["--validation.local_batch_size", str(fit)])


MODEL_PARALLEL = (
    "parallelism.tensor_parallel_degree",
    "parallelism.context_parallel_degree",
    "parallelism.pipeline_parallel_degree",
)
"""The degrees that split one data-parallel rank's model over several GPUs: the GPUs of a run
over their product are its data-parallel ranks, which read the batches"""


def model_parallel_degrees(config: dict, extra: list[str]) -> dict[str, int] | None:
    """The MODEL_PARALLEL degrees of a run of `config` ({setting: degree}, 1 where unset), as the
    launch's flags after -- leave them; None where one is not a whole number (the run's own
    checks name it)."""
    degrees = {}
    for key in MODEL_PARALLEL:
        value = _setting(config, extra, key)
        try:
            degrees[key] = max(int(value if value is not None else 1), 1)
        except (TypeError, ValueError):
            return None
    return degrees


def model_parallel(config: dict, extra: list[str]) -> int | None:
    """The GPUs of one data-parallel rank of a run of `config`: the product of its
    model_parallel_degrees (None where one is not a whole number)."""
    degrees = model_parallel_degrees(config, extra)
    return None if degrees is None else math.prod(degrees.values())


def data_parallel(config: dict, extra: list[str], world: int) -> int:
    """The data-parallel ranks of a run of `config` on `world` GPUs, as the launch's flags after
    -- leave its parallel degrees: torchtitan deals the training and validation batches to them,
    so the batches per step and the validation set are counted over them, not over the GPUs.
    `world` itself where the degrees are not whole numbers or do not divide it (_check_batch
    refuses the latter; the run's own checks name the former)."""
    others = model_parallel(config, extra)
    return world // others if others and world % others == 0 else world


def _check_batch(p: argparse.ArgumentParser, a, world: int, extra: list[str]) -> None:
    """Refuse, before anything starts, a world size that cannot keep an arm's global batch, or
    that the tensor, context and pipeline parallel degrees given do not divide."""
    for arm in a.arms:
        try:
            config = load_config(a.root, a.scale, arm)
            degrees = model_parallel_degrees(config, extra) or {}
            others = math.prod(degrees.values())
            if world % others:
                given = ", ".join(f"{key} {n}" for key, n in degrees.items() if n != 1)
                raise SystemExit(
                    f"{world} GPUs per run cannot be split into data-parallel ranks of {others} "
                    f"GPUs ({given}): give a GPU count that {others} divides, or other degrees"
                )
            dp = world // others
            batch_override(config, dp, others)
            validation_override(config, dp, SCALES[a.scale].validation_sequences, others)
        except SystemExit as e:
            p.error(f"{e} (--scale {a.scale})")


def unwritable(folder: pathlib.Path) -> str | None:
    """Why a launch cannot write its run folders into `folder` (or make it: its nearest existing
    parent), said before anything starts, a dry run's too (a read-only folder ended the launch in
    a traceback at its first run, after its checks said nothing); None where it can."""
    there = folder
    while not there.exists() and there != there.parent:
        there = there.parent
    if not there.is_dir():
        return f"{there} is a file, not a folder"
    if os.access(there, os.W_OK | os.X_OK):
        return None
    made = "" if there == folder else f" (it does not exist yet, and {there} holds it)"
    return f"{there} cannot be written by this user, or lies on a read-only file system{made}"


def run_folder(config: dict, seed: int, sweep_dir: str) -> str:
    """`<sweep>/<arm>/seed<S>`: sweep_dir/<arm> (the arm's name: the basename of the config's
    dump folder, which lies outside the sweep: configs.Scale.single) per seed."""
    arm = os.path.basename(config["job"]["dump_folder"].rstrip("/"))
    return f"{os.path.join(sweep_dir, arm)}/seed{seed}"


def owned_overrides(extra: list[str]) -> list[str]:
    """The flags among the extra overrides that would change what the launcher decides: an arm's
    objective (its target and weighting settings: the arm's name), its seed, its folder."""
    from ..objectives.spec import TARGET, WEIGHTING, ObjectiveSpec

    owned = {f"--objective.{f.name}" for f in ObjectiveSpec.fields_of(TARGET, WEIGHTING)}
    owned |= {"--debug.seed", "--job.dump_folder", "--job.config_file"}
    return [flag for k, flag in override_flags(extra) if f"--{k}" in owned]  # (as given)


def last_override(extra: list[str], flag: str) -> str | None:
    value = None
    for i, x in enumerate(extra):
        if x == flag and i + 1 < len(extra):
            value = extra[i + 1]
        elif x.startswith(flag + "="):
            value = x.split("=", 1)[1]
    return value


def finished(root, config: dict, seed: int, extra: list[str], sweep_dir: str | None) -> bool:
    """The run's final step has a complete checkpoint (torchtitan's rule) whose checksums are
    recorded (checkpoints.sealed) and, where the run validates, a validation row in its metrics
    log. The run validates the final step before saving it (titan/validate.py) and records the
    checksums at the end: a run stopped in between is not finished, and its launch resumes it; a
    folder saved first (torchtitan's order) and stopped while validating resumes at the final
    step, which the run then validates (titan/metrics.py)."""
    try:
        steps = int(last_override(extra, "--training.steps") or config["training"]["steps"])
    except ValueError:  # not a number: not finished (the launch's checks name the setting)
        return False
    run = pathlib.Path(root) / run_folder(config, seed, sweep_dir)  # an absolute one stays itself
    folder = run / config["checkpoint"]["folder"] / f"step-{steps}"
    if not sealed(str(folder)):
        return False
    if not _switch(config, extra, "validation.enable"):  # (the run does not validate)
        return True
    return validated(str(run), steps)


def _setting(config: dict, extra: list[str], key: str):
    """The value a run of `config` has for setting `key` ("section.name"), as the launch's flags
    after -- leave it (the last one given: `--section.name V` or `--section.name=V`, either
    spelling of the name)."""
    section, name = key.split(".")
    value = (config.get(section) or {}).get(name)
    for i, x in enumerate(extra):
        flag, eq, given = x.partition("=")
        if flag.startswith("--") and flag[2:].replace("-", "_") == key:
            value = given if eq else (extra[i + 1] if i + 1 < len(extra) else value)
    return value


TORCHTITAN_DEFAULTS = {
    "training.steps": 10000,
    "checkpoint.interval": 500,
    "checkpoint.keep_latest_k": 10,
}
"""torchtitan 0.2's defaults of the settings kept_checkpoints reads, for a config that leaves
them out (tests/test_sweep.py checks them against torchtitan's JobConfig)"""


def kept_checkpoints(config: dict, extra: list[str]) -> tuple[int, str] | None:
    """(the checkpoints a run of `config` keeps for its evaluations, as the launch's flags leave
    its settings; how, in words): torchtitan saves one every checkpoint.interval steps and at the
    final step, and keeps the last checkpoint.keep_latest_k of them where that is above 0. None
    where the run saves none or a setting is not a whole number (the launch's checks name it)."""
    if not _switch(config, extra, "checkpoint.enable"):
        return None

    def setting(key):
        value = _setting(config, extra, key)
        return TORCHTITAN_DEFAULTS[key] if value is None else value

    try:
        steps = int(setting("training.steps"))
        interval = int(setting("checkpoint.interval"))
        keep = int(setting("checkpoint.keep_latest_k"))
    except (TypeError, ValueError):
        return None
    if steps < 1 or interval < 1:
        return None
    saved = steps // interval + (1 if steps % interval else 0)
    how = f"training.steps {steps}, checkpoint.interval {interval}"
    if keep > 0 and keep < saved:
        return keep, f"{how}, checkpoint.keep_latest_k {keep}"
    return saved, how


def plan_checkpoint_problem(plan, runs: list[tuple[str, dict]], extra: list[str]) -> str | None:
    """The refusal of a plan that averages more checkpoints than the runs keep (runs: (arm,
    config) of the runs a launch would train): its report would average fewer than the plan it
    registers says, and a registered plan cannot change."""
    kept = {arm: k for arm, config in runs if (k := kept_checkpoints(config, extra))}
    if not kept:
        return None
    fewest = min(n for n, _ in kept.values())
    if plan.checkpoints <= fewest:
        return None
    how = next(h for n, h in kept.values() if n == fewest)
    return (
        f"the analysis plan {plan.source}: checkpoints = {plan.checkpoints} averages each run's "
        f"last {plan.checkpoints} evaluated checkpoints, and a run of this launch keeps "
        f"{fewest} ({how}): the plan's checkpoints must be 1 to {fewest} here; set it in the plan "
        "(--plan FILE) before a launch registers it, or keep more checkpoints (those settings "
        "after --)"
    )


def _switch(config: dict, extra: list[str], key: str) -> bool:
    """A boolean setting of `config` ("section.name"), as the launch's flags leave it."""
    section, name = key.split(".")
    on = bool((config.get(section) or {}).get(name, False))
    for x in extra:
        flag, _, value = x.partition("=")
        if flag == f"--{key}":
            on = value.lower() not in ("false", "0", "no") if value else True
        elif flag in (f"--{section}.no-{name}", f"--{section}.no_{name}"):
            on = False
    return on


def one_seed_note(sweep_folder: pathlib.Path, seeds: list[int], given: bool) -> str | None:
    """What a launch of fewer seeds than the report needs for a claim says (None: enough, or
    the sweep folder holds runs of other seeds, which pair with them): a smoke launch of one
    seed is legitimate, but `--seeds 3` is the seed numbered 3, where `power --seeds 3` plans
    for three seeds."""
    from .inference import CLAIM_MIN_SEEDS  # (numpy: imported only here)

    if len(seeds) >= CLAIM_MIN_SEEDS:
        return None
    there = {p.name for p in sweep_folder.glob("*/seed*") if p.is_dir()}
    if there - {f"seed{s}" for s in seeds}:
        return None  # other seeds' runs are in the sweep already
    (seed,) = seeds
    which = (
        f"--seeds {seed} is the seed numbered {seed}" + (f", not {seed} seeds" if seed > 1 else "")
        if given
        else f"the config's, {seed}: no --seeds"
    )
    three = " ".join(str(seed + i) for i in range(3))
    return (
        f"one seed ({which}): the report needs at least {CLAIM_MIN_SEEDS} seeds, every arm run "
        "at each, to test a comparison (one seed measures no training noise), so this sweep "
        f"alone allows no claim; list the seeds, --seeds {three} for three (a later launch into "
        "this sweep folder adds seeds)"
    )


def finished_here(a, arm: str, seed: int, extra: list[str]) -> bool:
    """finished() for a run of this launch; False where its config is not there to say (a dry
    run before `configs`: the run is listed, and the refusal names the missing config)."""
    try:
        config = load_config(a.root, a.scale, arm)
    except (OSError, ValueError):
        return False
    return finished(a.root, config, seed, extra, a.sweep_dir)


SKIPPED = "finished already, skipped"
"""What a launch prints for a run whose final checkpoint is there (a dry run: a comment line)"""

BUSY = "being written by"
"""How the line of a run another live process writes begins (taken)"""


def taken(a, arm: str, seed: int, extra: list[str]) -> str | None:
    """Why this launch does not start the run (arm, seed) now: it is finished (SKIPPED), or
    another live process writes into its folder (another launch into the same sweep folder
    trains it: the run is in its hands, and this launch leaves it); None: start it. Asked as the
    launch plans, again just before the run starts, and after a run that failed (refused for a
    writer that took its folder in between). Over several nodes, whose launchers must start the
    same runs, only whether it finished (each node would see a writer at its own moment)."""
    if finished_here(a, arm, seed, extra):
        return SKIPPED
    if a.nnodes > 1:
        return None
    try:
        folder = a.root / run_folder(load_config(a.root, a.scale, arm), seed, a.sweep_dir)
    except (OSError, ValueError):
        return None
    holder = writer(str(folder))
    if holder is None:
        return None
    return (
        f"{BUSY} {describe(holder)}; skipped: that process writes this run (a launch after it "
        "ends resumes the run if it is left unfinished)"
    )


def other_writers(a) -> str | None:
    """A note naming the run folders of the sweep folder that other live processes write into
    now (another launch into the same sweep folder, an evaluation), or None."""
    found = []
    for folder in sorted(a.sweep_folder.glob("*/seed*")):
        holder = writer(str(folder)) if folder.is_dir() else None
        if holder is not None:
            found.append(f"{folder.parent.name}/{folder.name} ({describe(holder)})")
    if not found:
        return None
    return (
        f"other processes write in {a.sweep_folder} now: {'; '.join(found)}. This launch leaves "
        "them a run they write, and checks each run again just before starting it (a run "
        "finished meanwhile is skipped)"
    )


def train_args(scale, arm, config, seed, world, extra, sweep_dir=None):
    """The trainer's arguments of one run of a sweep on `world` GPUs (`sweep_dir`, None: the
    scale's)."""
    sweep_dir = sweep_dir or SCALES[scale].sweep
    dp = data_parallel(config, extra, world)
    return [
        "--job.config_file",
        str(config_path(pathlib.Path("."), scale, arm)),
        "--debug.seed",
        str(seed),
        "--job.dump_folder",
        run_folder(config, seed, sweep_dir),
        *batch_override(config, dp),
        *validation_override(config, dp, SCALES[scale].validation_sequences),
        *extra,
    ]


FINISHED = "finished"
"""A run preflight checks only against its record (a finished run the launch skips)"""


def preflight(
    root,
    runs: list[tuple],
    device: str | None = None,
    sweep=None,
    world: int | None = None,
    dry: bool = False,
) -> list[str]:
    """`name: problem` for each run (name, its train_args) that its training would refuse, found
    before any torchrun starts by titan/preflight.py in a process of its own (this floor does not
    import torchtitan): the job config's checks, the data folders, a live writer on its folder;
    for a run given as (name, train_args, FINISHED), only whether its record says it trained
    what these arguments would (else the launch is another sweep's). `device`: the device type
    the runs will train on where it is not this machine's (a plan for GPUs made without them),
    which decides what objective.kernel = 'auto' runs. `sweep`: {"folder": the sweep folder,
    "extra": the overrides after --}: the runs that would start are checked against the runs
    already there in the settings every run of a sweep shares, and the refusals name the
    launch's ways out (titan/preflight.py: check_runs). `world`: the ranks each run starts on
    (a global batch they cannot split, a checkpoint saved on others: refused). `dry`: a
    --dry-run's check, which takes over no lock a gone process left (it says a launch would).
    No run: no process."""
    if not runs:
        return []
    out = subprocess.run(
        [sys.executable, "-m", "prefix_titan.titan.preflight"],
        input=json.dumps(
            {"runs": runs, "device": device, "sweep": sweep, "world": world, "dry": dry}
        ),
        cwd=root,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        tail = "\n    ".join(out.stderr.strip().splitlines()[-5:])
        return [f"the checks before the runs could not run (exit {out.returncode}):\n    {tail}"]
    for line in out.stderr.splitlines():  # e.g. a killed run's lock taken over: said here
        if line.startswith("warning: "):
            print(f"[sweep] {line}", file=sys.stderr, flush=True)
    found = json.loads(out.stdout)
    problems = found["problems"]
    if sweep is not None and found["starting"]:
        from .runs import launch_conflicts

        extra = sweep.get("extra") or []
        for problem, names in launch_conflicts(
            found["starting"], sweep["folder"], extra, found["device"]
        ):
            who = f"all {len(names)} runs" if len(names) == len(runs) > 2 else ", ".join(names)
            problems.append(f"{who}: {problem}")
    return problems


def ranks_filter() -> list[str]:
    ranks = os.environ.get("LOG_RANK", "0")  # local rank 0's log; LOG_RANK=all: every rank
    return [] if ranks == "all" else [f"--local-ranks-filter={ranks}"]


def node_command(
    a, scale: str, arm: str, seed: int, extra: list[str], cpu: bool = False
) -> list[str]:
    """One run over every GPU of the node(s) (`cpu`: over nproc_per_node CPU ranks, through
    prefix_titan's launcher, which sets torchtitan up for the CPU). On one node, --standalone:
    a free port for its rendezvous (torchrun's default, 29500, is taken by a second launch's run
    on the same host)."""
    config = load_config(a.root, scale, arm)
    cmd = ["torchrun", f"--nproc_per_node={a.nproc_per_node}", f"--nnodes={a.nnodes}"]
    cmd += ranks_filter() + (["--standalone"] if a.nnodes == 1 else [])
    if a.nnodes > 1:
        cmd += [
            "--rdzv_backend=c10d",
            f"--rdzv_endpoint={a.rdzv_endpoint}",
            f"--rdzv_id=prefix_titan_{scale}_{file_name(arm)}_seed{seed}",
        ]
    world = a.nnodes * a.nproc_per_node
    args = train_args(scale, arm, config, seed, world, extra, a.sweep_dir)
    return cmd + ["-m", "prefix_titan.train" if cpu else "torchtitan.train", *args]


def slot_command(root, scale, arm, seed, gpus: int, extra, sweep_dir) -> list[str]:
    """One run on `gpus` GPUs of this node (0: a CPU run through prefix_titan's launcher)."""
    config = load_config(root, scale, arm)
    module = "torchtitan.train" if gpus else "prefix_titan.train"
    cmd = ["torchrun", "--standalone", f"--nproc_per_node={max(gpus, 1)}"]
    cmd += ranks_filter() if gpus > 1 else []
    return cmd + [
        "-m",
        module,
        *train_args(scale, arm, config, seed, max(gpus, 1), extra, sweep_dir),
    ]


def visible_gpus() -> list[str]:
    """The GPUs this node offers: CUDA_VISIBLE_DEVICES if set, else every one nvidia-smi lists."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d for d in env.split(",") if d.strip() and d.strip() != "-1"]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return []
    return [str(i) for i, line in enumerate(out.stdout.splitlines()) if line.startswith("GPU ")]


def planned_gpus(visible: list[str], wanted: int | None, scale: str) -> tuple[list[str], str]:
    """The GPUs a --dry-run places its runs on, and the plan's heading: `wanted` GPUs (0..N-1)
    where given, else the visible ones, else 8 (the smoke scale: none, the CPU)."""
    if wanted is not None:
        gpus, why = [str(i) for i in range(wanted)], "--gpus"
    elif visible:
        return visible, f"the {len(visible)} visible GPU{'s' if len(visible) != 1 else ''}"
    elif scale == "smoke":
        return [], "the CPU (no GPU is visible; --gpus N plans for N GPUs)"
    else:
        gpus, why = [str(i) for i in range(8)], "no GPU is visible here; --gpus N changes it"
    if not gpus:
        return [], "the CPU (--gpus 0)"
    return gpus, f"{len(gpus)} GPU{'s' if len(gpus) != 1 else ''} ({why})"


def _hours(x: float) -> str:
    """Hours as a reader takes them: whole from 100 up, else to two or three figures."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def training_cost(
    tokens: list[int], tokens_per_s: float, gpus_per_run: int, side_by_side: int
) -> str:
    """A --dry-run's estimate of what its runs (`tokens` to train each) cost on H100s that each
    train `tokens_per_s` (configs.Scale.h100_tokens_per_s), a run over `gpus_per_run` GPUs
    (taken to scale linearly), `side_by_side` runs at a time: GPU-hours, then waves and hours
    as if every run took as long as the longest. Training only, said."""
    if not tokens:
        return "no run to train"
    hours = [t / tokens_per_s / 3600 for t in tokens]  # (GPU-hours of each run)
    waves = -(-len(tokens) // side_by_side)
    wall = waves * max(hours) / gpus_per_run
    mean = sum(tokens) / len(tokens) / 1e9
    runs = f"{len(tokens)} run{'s' if len(tokens) > 1 else ''}"
    if len(set(tokens)) == 1:
        runs += f" of {mean:.3g}B tokens ({_hours(hours[0])} GPU-hours each"
    else:
        runs += f" averaging {mean:.3g}B tokens (each by its own"
    gpus = f"{gpus_per_run} GPU{'s' if gpus_per_run > 1 else ''}"
    placed = (
        f"one run at a time over {gpus}"
        if side_by_side == 1
        else f"{waves} wave{'s' if waves > 1 else ''} of up to {side_by_side} runs side by side, "
        f"{gpus} each"
    )
    return (
        f"training cost, estimated: {runs}, at the {tokens_per_s:,.0f} tokens/s one H100 trained "
        f"this shape at, docs/benchmarks.md) = {_hours(sum(hours))} GPU-hours; {placed}: about "
        f"{_hours(wall)} h, if each GPU trains as that H100 did. Not counted: compilation, "
        "checkpoint writes, validation, evaluation"
    )


SIZED = ("training.steps", "training.global_batch_size", "training.seq_len")
"""The overrides that change how many tokens a run trains: no cost estimated under them"""


def sized_overrides(extra: list[str]) -> list[str]:
    """The overrides after -- (as given) that change how many tokens a run trains (SIZED)."""
    return [flag for k, flag in override_flags(extra) if k in SIZED]


def cpu_time(runs: int, run_seconds: float, at_once: int, load: tuple | None = None) -> str:
    """A --dry-run's estimate of how long `runs` runs take on the CPU, `at_once` at a time, each
    taking `run_seconds` (configs.Scale.cpu_run_seconds) one at a time; `load`: (this machine's
    1-minute load average, its cores), said where other work keeps the cores busy."""
    if not runs:
        return "no run to train"
    one = f"{runs} run{'s' if runs > 1 else ''} one at a time: about {run_seconds * runs / 60:.0f} min"
    if at_once > 1:
        one += f" (--cpu-runs {at_once} shares the same cores: not much less, measure it)"
    busy = ""
    if load is not None and load[0] >= load[1] / 2:
        busy = (
            f"; this machine's load now is {load[0]:.1f} on {load[1]} cores: expect longer, "
            "as much as the other work takes of them"
        )
    return (
        f"training time on the CPU, estimated: {one}, at the {run_seconds:.0f} s a run took on "
        "a 2-core VM (docs/cpu.md); more cores take less, other work beside it more (4x with "
        f"two other jobs there){busy}. Not counted: evaluation"
    )


def _cost(a, arms: list[str], extra: list[str], rate: float, world: int, side: int) -> str:
    """training_cost of a dry run's runs (of `arms`, one entry a run) over `world` GPUs each,
    from their configs' steps, batch and sequence length; not estimated where the overrides
    change those."""
    if changed := sized_overrides(extra):
        return f"training cost not estimated ({', '.join(changed)} given after --)"
    tokens = []
    for arm in arms:
        t = load_config(a.root, a.scale, arm)["training"]
        batch = t.get("global_batch_size", -1)  # (none: the local batch, split: batch_override)
        batch = batch if batch > 0 else t["local_batch_size"]
        tokens.append(t["steps"] * batch * t["seq_len"])
    return training_cost(tokens, rate, world, side)


def slots(gpus: list[str], per_run: int, cpu_runs: int = 1) -> list[list[str]]:
    """Disjoint groups of `per_run` GPUs (without GPUs, `cpu_runs` CPU slots: [[], ...])."""
    if not gpus:
        return [[] for _ in range(cpu_runs)]
    return [gpus[i : i + per_run] for i in range(0, len(gpus) - per_run + 1, per_run)]


class _Terminated(BaseException):
    """Children's SIGTERM, raised out of whatever the launcher was doing: waiting on a run, say,
    which holds the run's wait lock, so that waiting for it again inside the signal handler would
    wait forever; Children.__exit__ waits for the runs once it has unwound."""


class Children:
    """The runs a launch started (their torchrun processes), ended with it: within `with
    Children()`, a SIGTERM to the launcher (a `kill` of it; a scheduler signals the whole job
    anyway) is passed on to each run still going, whose ranks end as a terminated run does (the
    newest checkpoint resumes it), and waited for (after the launcher's own wait on a run, which
    the signal interrupts, has unwound); then the launcher exits with status 143. They
    ran on without it. Ctrl-C (SIGINT, which a terminal sends to the runs as well) is waited out
    the same way, the runs still going after GRACE seconds sent SIGINT (the launcher's alone was
    interrupted), and the launcher exits with status 130, in one line instead of a traceback."""

    GRACE = 10.0
    """Seconds the runs get to end on the Ctrl-C their terminal sent them too"""

    def __init__(self):
        self.procs: set[subprocess.Popen] = set()

    def start(self, cmd: list[str], **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(cmd, **kwargs)
        self.procs.add(proc)
        return proc

    def __enter__(self) -> Children:
        self.before = signal.getsignal(signal.SIGTERM)
        try:
            signal.signal(signal.SIGTERM, self._terminate)
        except _Terminated:  # (come before the handler's setting returned: nothing started)
            signal.signal(signal.SIGTERM, self.before)
            _ended([], "terminated: no run started", 143)
        return self

    def __exit__(self, kind, value, trace) -> None:
        try:
            signal.signal(signal.SIGTERM, self.before)
        except _Terminated:  # (come as the block ended, before the handler was put back)
            signal.signal(signal.SIGTERM, self.before)
            kind = _Terminated
        if kind is not None and issubclass(kind, KeyboardInterrupt):
            self._interrupted()
        if kind is not None and issubclass(kind, _Terminated):
            going = [proc for proc in self.procs if proc.poll() is None]
            for proc in going:
                proc.send_signal(signal.SIGTERM)
            _ended(
                going,
                f"terminated: SIGTERM passed on to the {len(going)} run(s) going, which ended",
                143,
            )

    def _interrupted(self) -> None:
        going = [proc for proc in self.procs if proc.poll() is None]
        end = time.monotonic() + self.GRACE
        for proc in going:
            try:
                proc.wait(timeout=max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGINT)
        _ended(going, f"interrupted: {len(going)} run(s) going ended (Ctrl-C)", 130)

    def _terminate(self, signum, frame) -> None:
        raise _Terminated


def _ended(going: list[subprocess.Popen], said: str, status: int) -> None:
    """Wait for the runs `going`, say what ended them and how to resume, exit with `status`."""
    for proc in going:
        proc.wait()
    print(f"[sweep] {said}; the same command resumes the sweep", file=sys.stderr, flush=True)
    raise SystemExit(status)


def run_queue(
    jobs: list[tuple[str, pathlib.Path, list[str]]],
    groups,
    stop_on_failure=False,
    root=".",
    recheck=None,
    plan_sha256: str | None = None,
    started=None,
):
    """Run (name, log file, command) jobs in `root` on the slots (GPU groups), each as soon as a
    slot is free, with CUDA_VISIBLE_DEVICES set to its group; returns the failed and
    never-started ones. `recheck(name)`: why a job is not to start now (its run finished
    meanwhile, another process writes it), or None; asked just before it starts (a job it names
    a reason for is said so and skipped), and after a job whose own log says it was refused for
    another writer of its folder (then said so, not failed; any other end is a failure). The runs
    end with the launch (Children). `plan_sha256`: the registered plan's, each run's
    LAUNCH_PLAN_ENV (run_env). `started(name)`: called just before a job starts."""
    with Children() as children:
        return _run_queue(
            jobs, groups, stop_on_failure, root, recheck, children, plan_sha256, started
        )


def run_env(plan_sha256: str | None) -> dict[str, str]:
    """The environment a launch starts a run with: its own, with LAUNCH_PLAN_ENV the plan it
    registered (each start of the run records it), or unset where it registered none (not one
    left in the shell by another launch)."""
    env = dict(os.environ)
    env.pop(LAUNCH_PLAN_ENV, None)
    if plan_sha256 is not None:
        env[LAUNCH_PLAN_ENV] = plan_sha256
    return env


def _run_queue(
    jobs, groups, stop_on_failure, root, recheck, children: Children, plan_sha256=None, started=None
) -> list[str]:
    pending, running, failed = list(jobs), {}, []
    free = list(range(len(groups)))
    while pending or running:
        while pending and free and not (failed and stop_on_failure):
            name, log, cmd = pending.pop(0)
            if recheck is not None and (why := recheck(name)):
                print(f"[sweep] {name}: {why}", flush=True)
                continue
            slot = free.pop(0)
            log.parent.mkdir(parents=True, exist_ok=True)
            env = run_env(plan_sha256)
            if groups[slot]:
                env["CUDA_VISIBLE_DEVICES"] = ",".join(groups[slot])
            elif len(groups) > 1 and "OMP_NUM_THREADS" not in env:  # CPU runs side by side
                env["OMP_NUM_THREADS"] = str(cpu_threads(len(groups)))
            try:
                f = open_log(str(log))
            except ValueError as e:  # a link: written through, it would reach another file
                free.append(slot)
                failed.append(f"{name} (not started: {e})")
                continue
            if started is not None:
                started(name)
            with f:
                start = f.seek(0, os.SEEK_END)  # a rerun appends: its reason is read from here
                proc = children.start(cmd, cwd=root, env=env, stdout=f, stderr=subprocess.STDOUT)
            where = f"GPU {','.join(groups[slot])}" if groups[slot] else "CPU"
            print(f"[sweep] {name}: started on {where}, log {log}", flush=True)
            running[proc] = (slot, name, log, start)
        if not running:
            break
        time.sleep(0.2)
        for proc in [p for p in running if p.poll() is not None]:
            slot, name, log, start = running.pop(proc)
            free.append(slot)
            if proc.returncode == 0:
                print(f"[sweep] {name}: finished", flush=True)
                continue
            why = failure_reason(log, start)
            # refused for another writer of its folder (which took it after the check before the
            # start): the run is that writer's, or finished by it; any other end is a failure
            refused = why is not None and (BUSY in why or "is locked by" in why)
            taken_by = recheck(name) if refused and recheck is not None else None
            if taken_by:
                print(f"[sweep] {name}: {taken_by} (its start here was refused: {why})", flush=True)
                with open_log(str(log)) as f:  # the refused start wrote into the writer's log
                    f.write(
                        f"[sweep] a start of this run by another launch (pid {os.getpid()}) was "
                        f"refused for the writer that holds it: its lines, from byte {start} of "
                        "this log to here among the writer's own, are not this run's output (its "
                        "refusal and torchrun's traceback)\n".encode()
                    )
            else:
                failed.append(f"{name} (exit {proc.returncode}, log {log})")
                print(
                    f"[sweep] {name}: FAILED, exit {proc.returncode}" + (f": {why}" if why else ""),
                    flush=True,
                )
    return failed + [f"{name} (not started)" for name, _, _ in pending]


def cpu_threads(runs_at_once: int) -> int:
    """The OMP_NUM_THREADS each of that many CPU runs side by side gets (run_queue): its share
    of the cores."""
    return max(1, (os.cpu_count() or 1) // runs_at_once)


def cpu_placement(runs_at_once: int) -> str:
    """How the runs share this machine's CPU (run_queue's OMP_NUM_THREADS)."""
    if runs_at_once == 1:
        return "on the CPU: one run at a time (--cpu-runs N runs N at once)"
    threads = os.environ.get("OMP_NUM_THREADS") or cpu_threads(runs_at_once)
    return f"on the CPU: {runs_at_once} runs at a time, each with OMP_NUM_THREADS={threads}"


def failure_reason(log: pathlib.Path, start: int = 0, width: int = 400) -> str | None:
    """The line of a failed run's log (from byte `start`) that says why it ended: its refusal
    (`error: ...`, titan/refusal.py), the signal torchrun says killed it, or the last exception
    line of a traceback; None if none."""
    try:
        with open(log, "rb") as f:
            f.seek(start)
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for pattern in (
        r"error: (.+)",
        r"((?:terminated|interrupted): .+)",  # (a signal: train.py says what resumes the run)
        r".*(Signal \d+ \(SIG\w+\) received by PID \d+)",
        r"((?:\w+\.)*\w*(?:Error|Exception|Interrupt): .+)",
    ):
        for line in reversed(lines):
            line = re.sub(r"^\[(?:default)?(?:rank)?\d+\]:\s*", "", line.strip())
            if m := re.match(pattern, line):
                why = m.group(1).strip()
                return why if len(why) <= width else why[: width - 3] + "..."
    return None


def _placed_otherwise(sweep_folder: pathlib.Path, starting: set, world: int) -> list[str]:
    """The seeds this launch starts runs of (`starting`) that have runs in `sweep_folder`, of
    any arm (this launch's or another's), trained on another number of ranks (their recorded
    placement): torchtitan draws a seed's initial weights by it, so the new runs would not be
    paired with them."""
    problems = []
    for seed in sorted(starting):
        other = {}
        for record in sorted(sweep_folder.glob(f"*/seed{seed}/{RUN_CONFIG}")):
            if record.is_file():
                placed = read_json(str(record), "the run's record", expect=dict).get(PLACEMENT)
                if isinstance(placed, dict) and placed.get("ranks") not in (None, world):
                    other[record.parent.parent.name] = placed["ranks"]
        if other:
            shown = ", ".join(f"{arm} on {n}" for arm, n in other.items())
            problems.append(
                f"seed {seed}: its runs {shown} ranks were trained on other placements than the "
                f"{world} rank(s) this launch gives a run; torchtitan draws a seed's initial "
                "weights by its ranks, so the runs would not be paired: launch with their "
                "placement (--gpus-per-run, --nnodes, --nproc-per-node)"
            )
    return problems


def _refused(a, runs, extra, world: int, device: str | None = None) -> int:
    """Check every run that would start (preflight); print the refusals and return 2 if any (a
    --dry-run prints them after its plan: what a launch from here would refuse, on the device
    type it plans for, `device`; None: this machine's)."""
    todo, starting, arms = [], set(), []
    for arm, seed in runs:
        config = load_config(a.root, a.scale, arm)
        args = train_args(a.scale, arm, config, seed, world, extra, a.sweep_dir)
        why = taken(a, arm, seed, extra) or ""
        if why.startswith(BUSY):
            continue  # another process's run (its settings: checked against the sweep's below)
        if why == SKIPPED:
            # skipped, if what this launch would train is what it trained (its record): a
            # finished run is no run of a launch with other settings
            todo.append((f"{arm} seed {seed}", args, FINISHED))
        else:
            todo.append((f"{arm} seed {seed}", args))
            starting.add(seed)
            arms.append(arm)
    sweep = {"folder": os.path.abspath(a.sweep_folder), "extra": extra}
    problems = []
    if a.scale != "smoke":  # (smoke runs check the code: their report says what they lack)
        from .analysis import load_plan

        # (the runs that would start: a sweep whose runs are finished trains nothing the plan
        # could lack checkpoints of)
        configs = [(arm, load_config(a.root, a.scale, arm)) for arm in dict.fromkeys(arms)]
        if problem := plan_checkpoint_problem(load_plan(a.plan), configs, extra):
            problems.append(problem)
    problems += preflight(a.root, todo, device, sweep, world, a.dry_run)
    problems += _placed_otherwise(a.sweep_folder, starting, world)
    if problems:
        heading = (
            "a launch from here would be refused before any run started"
            if a.dry_run
            else "refused before any run started"
        )
        print(
            f"[sweep] {heading}:\n  " + "\n  ".join(problems),
            file=sys.stderr,
            flush=True,
        )
        return 2
    return 0


def _check_plan(p: argparse.ArgumentParser, a, specs: dict) -> tuple[str | None, str]:
    """(the plan this launch registers, or the one its sweep registered already, None: the
    package's; what a launch does with it, in a line, with what runs started by hand from a
    --dry-run's commands need), checked: a plan that differs from the
    registered one, or whose baseline or contrast names no arm of the project, is refused
    before anything is registered (a registered plan cannot change)."""
    from .analysis import (
        REGISTERED,
        compared_arms,
        launch_deviation,
        launched_plans,
        load_plan,
        plan_arm_problems,
        plan_digest,
        registered_plan,
        registered_plan_doubt,
        registration_conflict,
        runs_began,
        unread_axis,
        unstated_variance,
    )

    sweep = str(a.sweep_folder)
    registered = registered_plan(sweep)
    try:
        plan = load_plan(a.plan or registered)
        conflict = registration_conflict(sweep, a.plan)
    except ValueError as e:
        p.refuse(str(e))
    if conflict:
        p.error(conflict)
    launched = launched_plans(sweep)
    replaced = registered is not None and launch_deviation(launched, sweep, registered, plan)
    if replaced:
        p.error(
            f"{replaced}: put back the plan the runs were launched under, or launch into a new "
            "sweep folder (--sweep-dir)"
        )
    began = registered is None and runs_began(sweep)
    again = began and bool(launched)  # (the plan its runs were launched under, registered again)
    if began and launched:
        if plan_digest(plan) not in launched:
            p.error(
                f"{sweep} holds runs a launch started under a registered plan (sha256 "
                f"{', '.join(d[:12] for d in sorted(launched))}…) that is no longer there "
                f"({REGISTERED} removed), and {a.plan or 'the package plan'} has other settings: "
                "launch with --plan FILE holding the settings they were launched under, which "
                "registers it again (its report is an exploratory re-analysis until then)"
            )
        began = False  # (registered again: register_plan)
    if began and a.plan:
        p.error(
            f"{sweep} holds runs begun before any analysis plan was registered: --plan {a.plan} "
            "registered now would not be pre-registered; launch without --plan (its report "
            "applies the package's plan), or into a new sweep folder (--sweep-dir)"
        )
    if registered is None and not began:
        problems = plan_arm_problems(plan, {name: vars(s) for name, s in specs.items()})
        if a.plan and not again and (unstated := unstated_variance(a.plan)):
            problems.insert(0, unstated)
        if problems:
            p.error(
                f"the analysis plan {a.plan or 'of the package'}: {'; '.join(problems)}. A "
                "launch registers the plan in the sweep folder, and it cannot change after: "
                "fix it first (--plan FILE)"
            )
    compared = compared_arms(plan, {arm: vars(specs[arm]) for arm in a.arms})
    others = [arm for arm in a.arms if arm not in compared and arm != plan.baseline]
    print(
        f"[sweep] the report compares with {plan.baseline} the arms of kind "
        f"{', '.join(plan.contrast)}: {', '.join(compared) or 'none launched here'}"
        + (f"; not in the contrast: {', '.join(others)}" if others else ""),
        file=sys.stderr,
    )
    unread = unread_axis(plan, {arm: vars(specs[arm]) for arm in compared})
    if unread:
        print(f"[sweep] note: {unread}", file=sys.stderr)
    if plan.baseline not in a.arms:
        baseline_runs = []
        if config_path(a.root, a.scale, plan.baseline).exists():
            folder = pathlib.Path(run_folder(load_config(a.root, a.scale, plan.baseline), 0, sweep))
            baseline_runs = sorted(
                (p.parent.name for p in folder.parent.glob(f"seed*/{RUN_CONFIG}")),
                key=lambda s: (len(s), s),
            )
        print(
            f"[sweep] note: the plan's baseline, {plan.baseline}, is not among the arms "
            "launched here; "
            + (
                f"its runs in the sweep folder: {', '.join(baseline_runs)}"
                if baseline_runs
                else "the report compares with it only once its runs are in the sweep folder"
            ),
            file=sys.stderr,
        )
    by_hand = (  # what a launch gives each run it starts (run_env)
        f"; runs started by hand from the commands above record it with {LAUNCH_PLAN_ENV}="
        f"{plan_digest(plan)} in their environment"
        if a.dry_run
        else ""
    )
    if registered:
        said = f"the analysis plan the sweep registered: {registered}"
        if changed := registered_plan_doubt(registered):
            said += f" (which {changed}: the report labels its analysis exploratory)"
        said += by_hand
    elif began:
        said = (
            f"no analysis plan is registered: the runs in {sweep} began before one was; the "
            "report applies the package's plan"
        )
    else:
        shown = f"the analysis plan {a.plan}" if a.plan else "the package's analysis plan"
        said = (
            f"a launch registers {shown} in {os.path.join(sweep, REGISTERED)} before its first run"
            + (
                "; to start the commands above by hand, register it first (a run begun "
                "before leaves the sweep without one for good): "
                + shlex.join(_registering_command(p.prog, a))
                + by_hand
                if a.dry_run
                else ""
            )
        )
    return a.plan or registered, said


def _registering_command(prog: str, a) -> list[str]:
    """The command (`prog`: the launch's own) that registers the plan of launch arguments `a`
    and starts nothing."""
    cmd = [*shlex.split(prog), "--scale", a.scale]
    if str(a.root) != ".":
        cmd += ["--root", str(a.root)]
    cmd += ["--sweep-dir", str(a.sweep_dir)]
    return cmd + (["--plan", str(a.plan)] if a.plan else []) + ["--register-plan"]


def _begin(p: argparse.ArgumentParser, a, runs: list[tuple[str, int]]) -> str | None:
    """Before the first run: register the plan (_register_plan) and record the launch's `runs`
    ((arm, seed) each) in the sweep folder (launches.record_launch, its path `a.launch_record`:
    a report finds those without a folder; _started notes each as it starts); the registered
    plan's sha256, or None."""
    from .launches import record_launch

    plan_sha256 = _register_plan(p, a)
    folders = [(arm, seed, _in_sweep(a, arm, seed)) for arm, seed in runs]
    try:
        a.launch_record = record_launch(str(a.sweep_folder), folders, plan_sha256)
    except OSError as e:
        p.refuse(f"--sweep-dir {a.sweep_folder}: the launch's record cannot be written ({e})")
    return plan_sha256


def _in_sweep(a, arm: str, seed: int) -> str:
    """The run folder of (arm, seed) relative to the sweep folder (run_folder's `<arm>/seed<S>`),
    as the launch records name it."""
    return os.path.relpath(run_folder(load_config(a.root, a.scale, arm), seed, "."), ".")


def _started(a, arm: str, seed: int) -> None:
    """Note in the launch's record that run (arm, seed) starts now (launches.record_start): its
    folder removed later, the report knows it began."""
    from .launches import record_start

    try:
        record_start(a.launch_record, arm, seed, _in_sweep(a, arm, seed))
    except (OSError, ValueError) as e:  # (the run starts all the same: its folder records it)
        print(
            f"[sweep] warning: {arm} seed {seed}: its start could not be noted beside "
            f"{a.launch_record} ({e}); a report that finds its folder gone cannot tell it began",
            file=sys.stderr,
            flush=True,
        )


def _register_plan(p: argparse.ArgumentParser, a) -> str | None:
    """Register the analysis plan in the sweep folder before the first run (analysis.py); the
    registered plan's sha256, which the runs started here record (each start, run_env: a report
    finds the plan gone or replaced), or None where none is registered."""
    from .analysis import load_plan, plan_digest, register_plan

    sweep = a.sweep_folder
    try:
        path = register_plan(str(sweep), a.plan, time.strftime(" on %Y-%m-%d %H:%M:%S %Z"))
    except ValueError as e:
        p.refuse(str(e))
    if path is None:
        print(
            f"[sweep] no analysis plan registered: {sweep} holds runs begun before one was; its "
            "report applies the package's plan",
            file=sys.stderr,
        )
        return None
    print(f"[sweep] analysis plan: {path}", file=sys.stderr)
    return plan_digest(load_plan(path))


def main(argv: list[str] | None = None, prog: str = "python -m prefix_titan.sweep launch") -> int:
    p = Parser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", default="500M", choices=list(SCALES))
    p.add_argument(
        "--arms",
        nargs="+",
        default=None,
        metavar="ARM",
        help="the arms to run (default: every one: the built-in arms, then sweep_arms.toml's)",
    )
    p.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=None,
        metavar="S",
        help="the seeds themselves, one run of each arm per seed (--seeds 1234 1235 1236: three; "
        "--seeds 3: the seed numbered 3); the report needs 2 or more for a claim (default: the "
        "config's seed)",
    )
    p.add_argument(
        "--gpus-per-run",
        default=None,
        help="'node' (one run over all GPUs) or K (runs side by side, K GPUs each)",
    )
    p.add_argument(
        "--nproc-per-node",
        type=int,
        default=None,
        help="with --gpus-per-run node (default: --gpus, else the GPUs visible here, else 8; "
        "the smoke scale on a node without a GPU: 1)",
    )
    p.add_argument("--nnodes", type=int, default=1)
    p.add_argument("--node-rank", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--rdzv-endpoint", default=None, help="HOST:PORT of node 0 (multi-node)")
    p.add_argument(
        "--sweep-dir",
        type=path_arg,
        default=None,
        help="put the runs in DIR/<arm>/seed<S> (default: the scale's)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument(
        "--register-plan",
        action="store_true",
        help="register the analysis plan in the sweep folder, as a launch does before its first "
        "run, and start nothing (for a --dry-run's commands started by hand)",
    )
    p.add_argument(
        "--gpus",
        type=int,
        default=None,
        metavar="N",
        help="with --dry-run: plan for N GPUs per node (default: the visible GPUs, or 8 when "
        "none is visible; with --gpus-per-run node, the default of --nproc-per-node)",
    )
    p.add_argument(
        "--root",
        type=path_arg,
        default=".",
        help="the project folder that holds train_configs/ (default: here)",
    )
    p.add_argument("--stop-on-failure", action="store_true", help="start no run after a failure")
    p.add_argument(
        "--cpu-runs",
        type=int,
        default=1,
        metavar="N",
        help="without GPUs: N runs at once, each with OMP_NUM_THREADS = the cores / N unless set "
        "(default: 1)",
    )
    p.add_argument(
        "--plan",
        type=path_arg,
        default=None,
        help="the analysis plan to register with the sweep before its runs (default: the "
        "package's); its report applies it",
    )
    a, extra = p.parse_known_args(argv)
    extra = [x for x in extra if x != "--"]
    if owned := owned_overrides(extra):
        p.error(
            f"{', '.join(owned)} after --: the launcher sets these (each arm's objective is its "
            "config's, the seed comes from --seeds, the folder is <sweep>/<arm>/seed<S>); extra "
            "overrides apply to every arm alike. Another objective is another arm: add an [[arm]] "
            "to sweep_arms.toml in the project folder (docs/objectives.md)"
        )
    scale = SCALES[a.scale]
    a.root = pathlib.Path(a.root)
    if not (a.root / "train_configs").is_dir():
        p.error(
            f"--root {a.root} holds no train_configs/ folder: run from the project folder, or "
            "pass it with --root DIR"
            + (
                f" (it holds {ARMS_FILE}: write the configs there first with "
                "`python -m prefix_titan.sweep configs`)"
                if (a.root / ARMS_FILE).is_file()
                else ""
            )
        )
    try:
        specs = arms(a.root)
    except ValueError as e:
        p.refuse(str(e))
    try:  # (an arm also by its file name: the `-` form of an import path's `:`)
        a.arms = list(pick_arms(specs, a.arms, a.root) if a.arms else specs)
    except ValueError as e:
        p.error(str(e))
    a.sweep_dir = a.sweep_dir or scale.sweep  # (the configs' own folder is outside it)
    a.sweep_folder = a.root / a.sweep_dir
    if a.sweep_folder.exists() and not a.sweep_folder.is_dir():
        p.error(f"--sweep-dir {a.sweep_folder} is a file: a sweep is a folder of run folders")
    if (a.sweep_folder / RUN_CONFIG).exists():
        p.error(
            f"--sweep-dir {a.sweep_folder} is one run's folder (it holds {RUN_CONFIG}): a sweep "
            "folder holds <arm>/seed<S> run folders; give a new folder or a sweep's"
        )
    if why := unwritable(a.sweep_folder):
        p.error(f"--sweep-dir {a.sweep_folder}: {why}; give a folder this user can write")
    if a.register_plan and a.dry_run:
        p.error("--register-plan writes the plan into the sweep folder; --dry-run writes nothing")
    a.plan, plan_line = _check_plan(p, a, specs)
    if a.register_plan:
        if not (digest := _register_plan(p, a)):
            return 2  # (the runs began before any plan: said)
        print(
            f"[sweep] start runs by hand with {LAUNCH_PLAN_ENV}={digest} in their "
            "environment, as a launch does: each records the plan it began under",
            file=sys.stderr,
        )
        return 0
    missing = [arm for arm in a.arms if not config_path(a.root, a.scale, arm).exists()]
    if missing:
        p.error(
            f"--scale {a.scale} has no configs for {', '.join(missing)} in {scale.out}: run "
            f"python -m prefix_titan.sweep configs"
        )
    edited = [
        str(config_path(a.root, a.scale, arm).relative_to(a.root))
        for arm in a.arms
        if config_path(a.root, a.scale, arm).read_text() != render(specs[arm], a.scale)
    ]
    if edited:
        p.error(
            f"{', '.join(edited)} {'differs' if len(edited) == 1 else 'differ'} from what "
            "`python -m prefix_titan.sweep configs` makes "
            "of their arms (edited by hand, or generated before a change of a base or of "
            "sweep_arms.toml): the arms of a sweep differ only in their [objective] as generated. "
            "Change the base (prefix_titan/sweep/bases/) or the arm (sweep_arms.toml), then "
            "regenerate with `python -m prefix_titan.sweep configs`; settings of one launch go "
            "after --: `sweep launch ... -- --training.steps 40`"
        )
    seeds = a.seeds or [load_config(a.root, a.scale, a.arms[0])["debug"]["seed"]]
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        p.error(f"--seeds must be distinct: {', '.join(map(str, repeated))} repeated")
    if any(s < 0 for s in seeds):
        p.error("--seeds must be >= 0")
    if note := one_seed_note(a.sweep_folder, seeds, given=bool(a.seeds)):
        print(f"[sweep] note: {note}", file=sys.stderr, flush=True)
    per_run = a.gpus_per_run or ("node" if scale.gpus_per_run is None else str(scale.gpus_per_run))
    if per_run != "node" and not (per_run.isdigit() and int(per_run) >= 1):
        p.error(f"--gpus-per-run must be 'node' or a whole number >= 1; got {per_run!r}")
    if a.nnodes < 1:
        p.error(f"--nnodes must be >= 1 (the nodes of one launch); got {a.nnodes}")
    if per_run != "node" and a.nnodes > 1:
        p.error(
            f"--nnodes {a.nnodes}: runs side by side (--gpus-per-run {per_run}, the "
            f"{a.scale} scale's placement) run on this node only. On several nodes, launch on "
            "each its own seeds (one single-node job per seed under Slurm: docs/experiment.md), "
            "into the same sweep folder; --gpus-per-run node with --nnodes would place the runs "
            "otherwise, so that their seeds would not pair with runs trained on one GPU each"
        )
    if a.nnodes > 1 and not a.rdzv_endpoint:
        p.error("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (node 0's address)")
    if a.node_rank is not None:  # (torchrun ignores --node_rank under c10d, warning each run)
        p.error(
            "--node-rank: the c10d rendezvous numbers the nodes itself (torchrun ignores a node "
            "rank there); leave it out, every node runs the same command"
        )
    if a.gpus is not None and not a.dry_run:
        p.error(
            f"--gpus {a.gpus} plans a --dry-run only; a real launch uses the GPUs visible here "
            "(choose them with CUDA_VISIBLE_DEVICES)"
        )
    if a.gpus is not None and a.gpus < 0:
        p.error(f"--gpus must be >= 0; got {a.gpus}")
    if a.cpu_runs < 1:
        p.error(f"--cpu-runs must be >= 1; got {a.cpu_runs}")
    if a.nproc_per_node is not None and a.nproc_per_node < 1:
        p.error(f"--nproc-per-node must be >= 1; got {a.nproc_per_node}")
    if a.nproc_per_node is not None and per_run != "node":  # (it was ignored)
        p.error(
            f"--nproc-per-node sets the ranks of a run over the whole node (--gpus-per-run node); "
            f"--gpus-per-run {per_run} gives each run {per_run} GPU(s): leave one out"
        )
    if a.nnodes == 1 and a.rdzv_endpoint:  # (it was ignored)
        p.error("--rdzv-endpoint places a run over several nodes: give --nnodes N")
    # Seed by seed, each over every arm (baselines first, then the arms in generator order): a
    # sweep cut short holds whole seeds, every arm paired on them.
    runs = [(arm, seed) for seed in seeds for arm in a.arms]
    if note := other_writers(a):  # another launch into this sweep folder, say
        print(f"[sweep] note: {note}", file=sys.stderr, flush=True)
    left: dict[str, None] = {}  # the runs left to other writers, in order

    def check(arm: str, seed: int) -> str | None:
        """taken(), each run it leaves to another writer noted for the end"""
        why = taken(a, arm, seed, extra)
        if why and why.startswith(BUSY):
            left[f"{arm} seed {seed}"] = None
        return why

    if per_run == "node":
        if a.cpu_runs > 1:
            p.error(
                f"--cpu-runs {a.cpu_runs}: the {a.scale} scale runs over every GPU of the node "
                "(--gpus-per-run node); runs side by side on a CPU are for --scale smoke"
            )
        if a.gpus == 0:
            p.error(
                f"--gpus 0: the {a.scale} scale runs over every GPU of the node; plan for some "
                "with --gpus N"
            )
        # no GPU visible and none planned: the smoke scale's ranks on the CPU; another scale's
        # dry run plans for GPUs, its launch is refused
        no_gpu = a.gpus is None and not visible_gpus()
        cpu = no_gpu and a.scale == "smoke"
        if no_gpu and not cpu and not a.dry_run:
            p.error(
                f"no GPU is visible (CUDA_VISIBLE_DEVICES, nvidia-smi): the {a.scale} scale needs "
                "GPUs; --scale smoke runs on a CPU, and --dry-run plans without GPUs"
            )
        if a.nproc_per_node is None:  # (the visible GPUs: a 4-GPU node plans and runs on 4)
            a.nproc_per_node = a.gpus or (1 if cpu else len(visible_gpus()) or 8)
        shown = visible_gpus() if not (a.dry_run or cpu) else []  # (a plan: for any node)
        if shown and a.nproc_per_node > len(shown):  # (torchrun would start ranks without one)
            p.error(
                f"--nproc-per-node {a.nproc_per_node}: this node shows {len(shown)} GPU(s) "
                f"({','.join(shown)}; CUDA_VISIBLE_DEVICES, nvidia-smi): give at most "
                f"--nproc-per-node {len(shown)}"
            )
        _check_batch(p, a, a.nnodes * a.nproc_per_node, extra)
        if a.dry_run:
            nodes = f" x {a.nnodes} nodes" if a.nnodes > 1 else ""
            kind = "CPU ranks (no GPU is visible)" if cpu else "GPUs"
            print(
                f"[sweep] plan for {a.nproc_per_node} {kind} per node{nodes}, one run at a time",
                file=sys.stderr,
            )
        failed, dry_runs = [], []
        if not a.dry_run and (refused := _refused(a, runs, extra, a.nnodes * a.nproc_per_node)):
            return refused
        plan_sha256 = None if a.dry_run else _begin(p, a, runs)
        for arm, seed in runs:
            cmd = node_command(a, a.scale, arm, seed, extra, cpu)
            if why := check(arm, seed):  # just before it starts: another launch's?
                print(f"{'#' if a.dry_run else '[sweep]'} {arm} seed {seed}: {why}", flush=True)
                continue
            if a.dry_run:
                print(shlex.join(cmd), flush=True)
                dry_runs.append(arm)
                continue
            print(f"[sweep] {arm} seed {seed}: {shlex.join(cmd)}", flush=True)
            _started(a, arm, seed)
            with Children() as children:
                code = children.start(cmd, cwd=a.root, env=run_env(plan_sha256)).wait()
            if code:  # (its output went to the terminal: a failure, whatever holds the run now)
                now = (taken(a, arm, seed, extra) or "").split("; skipped")[0]
                now = "finished" if now == SKIPPED else now
                failed.append(f"{arm} seed {seed} (exit {code}" + (f"; now {now})" if now else ")"))
                if a.stop_on_failure:
                    break
    else:
        k, gpus = int(per_run), visible_gpus()
        shown = f"this node shows {len(gpus)} ({','.join(gpus)})"
        if a.dry_run:
            planned = a.gpus is not None or not gpus  # else the visible ones
            gpus, where = planned_gpus(gpus, a.gpus, a.scale)
            if not gpus and a.scale != "smoke":
                p.error(
                    f"--gpus 0: the {a.scale} scale needs GPUs; plan for some with --gpus N "
                    "(--scale smoke runs on a CPU)"
                )
            if planned:
                shown = f"the plan has {len(gpus)}"
            print(f"[sweep] plan for {where}", file=sys.stderr)
        if gpus and k > len(gpus):
            p.error(
                f"--gpus-per-run {k} needs {k} GPUs, but {shown}: lower it, or use "
                f"--gpus-per-run node" + (", or plan for more with --gpus N" if a.dry_run else "")
            )
        if not gpus and a.scale != "smoke":
            p.error(
                f"no GPU is visible (CUDA_VISIBLE_DEVICES, nvidia-smi): the {a.scale} scale needs "
                f"GPUs; --scale smoke runs on a CPU, and --dry-run plans without GPUs"
            )
        _check_batch(p, a, k if gpus else 1, extra)
        if not a.dry_run and (refused := _refused(a, runs, extra, max(k if gpus else 0, 1))):
            return refused
        plan_sha256 = None if a.dry_run else _begin(p, a, runs)
        if gpus and a.cpu_runs > 1:
            p.error(
                f"--cpu-runs {a.cpu_runs} places runs on the CPU, but {len(gpus)} GPUs are "
                f"{'planned' if a.dry_run else 'visible'}: leave it out, or hide the GPUs "
                "(CUDA_VISIBLE_DEVICES=)"
            )
        groups = slots(gpus, k, a.cpu_runs)
        if not gpus:
            print(f"[sweep] {cpu_placement(len(groups))}", file=sys.stderr)
            if a.gpus_per_run:
                print(
                    f"[sweep] note: --gpus-per-run {a.gpus_per_run} places runs on GPUs, and "
                    "there are none here: each run takes one CPU slot (--cpu-runs)",
                    file=sys.stderr,
                )
        if gpus and len(gpus) % k:
            print(f"[sweep] {len(gpus) % k} of {len(gpus)} GPUs stay idle", file=sys.stderr)
        jobs, placed, named, dry_runs = [], 0, {}, []
        for arm, seed in runs:
            cmd = slot_command(a.root, a.scale, arm, seed, k if gpus else 0, extra, a.sweep_dir)
            if why := check(arm, seed):
                print(f"{'#' if a.dry_run else '[sweep]'} {arm} seed {seed}: {why}", flush=True)
            elif a.dry_run:  # placement shown as if every run took equally long
                devices = ",".join(groups[placed % len(groups)])
                placed += 1
                dry_runs.append(arm)
                print(
                    shlex.join(cmd)
                    if not devices
                    else f"CUDA_VISIBLE_DEVICES={devices} " + shlex.join(cmd)
                )
            else:
                config = load_config(a.root, a.scale, arm)
                log = a.root / run_folder(config, seed, a.sweep_dir) / "launch.log"
                jobs.append((f"{arm} seed {seed}", log, cmd))
                named[f"{arm} seed {seed}"] = (arm, seed)
        failed = (
            []
            if a.dry_run
            else run_queue(
                jobs,
                groups,
                a.stop_on_failure,
                a.root,
                recheck=lambda name: check(*named[name]),
                plan_sha256=plan_sha256,
                started=lambda name: _started(a, *named[name]),
            )
        )
    if a.dry_run:
        sys.stdout.flush()
        print(f"[sweep] {plan_line}", file=sys.stderr)
        world = a.nnodes * a.nproc_per_node if per_run == "node" else max(k if gpus else 0, 1)
        lines = {}  # each run's batch and validation set, the arms that share it
        for arm in dict.fromkeys(arm for arm, _ in runs):
            config = load_config(a.root, a.scale, arm)
            line = batch_line(config, extra, world, SCALES[a.scale].validation_sequences)
            if line:
                lines.setdefault(line, []).append(arm)
        for line, named_arms in lines.items():
            which = "each run" if len(lines) == 1 else f"each run of {', '.join(named_arms)}"
            print(f"[sweep] {which}: {line}", file=sys.stderr)
        on_gpus = not cpu if per_run == "node" else bool(gpus)
        if on_gpus and (rate := SCALES[a.scale].h100_tokens_per_s):
            side_by_side = 1 if per_run == "node" else len(groups)
            print(
                f"[sweep] {_cost(a, dry_runs, extra, rate, world, side_by_side)}", file=sys.stderr
            )
        elif not on_gpus and per_run != "node" and (s := SCALES[a.scale].cpu_run_seconds):
            changed = sized_overrides(extra)
            said = (
                f"training time not estimated ({', '.join(changed)} given after --)"
                if changed
                else cpu_time(
                    len(dry_runs), s, len(groups), (os.getloadavg()[0], os.cpu_count() or 1)
                )
            )
            print(f"[sweep] {said}", file=sys.stderr)
        return _refused(a, runs, extra, world, "cuda" if on_gpus else "cpu")
    if left:
        print(
            "[sweep] left to the processes that write them (not failed; a launch after they end "
            f"resumes any they leave unfinished): {', '.join(left)}",
            file=sys.stderr,
        )
    if failed:
        print("[sweep] failed:\n  " + "\n  ".join(failed), file=sys.stderr)
    return 1 if failed else 0
