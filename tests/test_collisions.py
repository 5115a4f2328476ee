"""One writer per run folder, one arm per record, torchtitan's numbers checked up front, and a
refused training that says so once."""

import fcntl
import importlib.util
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types

import pytest
from helpers import ROOT, embedded_tokenizer_at, fake_export, holding_lock, project, train

from prefix_titan.runs.lock import LOCK, FolderBusy, RunLock, describe, writer


def _job(*overrides, folder=None):
    """The default config as torchtitan parses it, its run folder `folder` or a fresh one (never
    the config's own ./outputs/..., which a run of the README's may hold)."""
    from torchtitan.config import ConfigManager

    args = ["--job.config_file", str(ROOT / "train_configs" / "embedded_default.toml")]
    if folder is None and "--job.dump_folder" not in overrides:
        folder = tempfile.mkdtemp(prefix="run-")
    if folder is not None:
        args += ["--job.dump_folder", str(folder)]
    return ConfigManager().parse_args([*args, *overrides])


# -- the writer's lock ---------------------------------------------------------------------------


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    with RunLock(str(tmp_path / "run"), command="train prefix_tau0.5"):
        record = json.loads((tmp_path / "run" / LOCK).read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        with RunLock(str(tmp_path / "run")):  # nested in this process (export inside eval)
            pass
        assert (tmp_path / "run" / LOCK).exists()  # still the outer writer's
    assert not (tmp_path / "run").exists()  # released, with the folder it made (empty)
    holder = holding_lock(tmp_path / "run")
    try:  # a live process holds it
        with pytest.raises(
            FolderBusy, match=rf"is being written by pid {holder.pid} on .*train ce"
        ):
            RunLock(str(tmp_path / "run")).acquire()
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_holders_lock_is_taken_over_with_a_warning(tmp_path, capsys):
    holder = holding_lock(tmp_path, command="train ce")
    holder.kill()  # SIGKILL: no atexit, no release; the kernel lets go of its flock
    holder.wait()
    assert json.loads((tmp_path / LOCK).read_text())["pid"] == holder.pid  # its record is left
    lock = RunLock(str(tmp_path)).acquire()
    err = capsys.readouterr().err
    assert f"pid {holder.pid}" in err and "taking it over" in err
    assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / LOCK).exists()


def test_a_look_at_the_lock_says_what_acquire_would_do_and_changes_nothing(tmp_path):
    """RunLock.look (a dry run's check): refused where acquire would be, the warning of a takeover
    where it would take one over, and the folder left exactly as it was."""
    assert RunLock(str(tmp_path / "none")).look() is None and not (tmp_path / "none").exists()
    holder = holding_lock(tmp_path, command="train ce")
    try:
        with pytest.raises(
            FolderBusy, match=rf"is being written by pid {holder.pid} on .*train ce"
        ):
            RunLock(str(tmp_path)).look()
    finally:
        holder.kill()
        holder.wait()
    left = (tmp_path / LOCK).read_text()
    said = RunLock(str(tmp_path)).look()
    assert f"was left by pid {holder.pid}" in said and "ended without releasing it" in said
    assert (tmp_path / LOCK).read_text() == left and sorted(os.listdir(tmp_path)) == [LOCK]
    (tmp_path / LOCK).write_text(json.dumps({"host": "node-17", "pid": 1, "command": "train"}))
    with pytest.raises(FolderBusy, match="another host"):
        RunLock(str(tmp_path)).look()
    (tmp_path / LOCK).unlink()
    (tmp_path / LOCK).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FolderBusy, match="a symbolic link"):
        RunLock(str(tmp_path)).look()


def test_a_record_without_a_live_holder_is_taken_over_whatever_its_pid(tmp_path, capsys):
    """The kernel's flock, not the pid, says whether a holder lives: a record naming a live pid
    (a pid reused since, or this very process's pid as another PID namespace would see it) is
    taken over when no process holds the lock, and a damaged record too."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for pid in (sleeper.pid, os.getpid()):
            (tmp_path / LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": pid}))
            RunLock(str(tmp_path)).acquire().release()
            assert "taking it over" in capsys.readouterr().err
    finally:
        sleeper.kill()
        sleeper.wait()
    (tmp_path / LOCK).write_text("{not json")
    lock = RunLock(str(tmp_path)).acquire()
    assert "unknown process" in capsys.readouterr().err and lock.held
    lock.release()


def test_a_holder_claiming_this_processs_pid_is_not_taken_for_nesting(tmp_path):
    """A holder in another PID namespace of this host can have this process's pid: the lock
    nests only for the locks this process itself holds."""
    holder = holding_lock(tmp_path)
    try:
        (tmp_path / LOCK).write_text(
            json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "command": "train x"})
        )
        with pytest.raises(FolderBusy, match="is being written by pid"):
            RunLock(str(tmp_path)).acquire()
    finally:
        holder.kill()
        holder.wait()


RACE = """
import os, sys, time
from prefix_titan.runs.lock import FolderBusy, RunLock
print("ready", flush=True)
while not os.path.exists(sys.argv[2]):  # both start together once both are ready
    time.sleep(0.001)
try:
    RunLock(sys.argv[1]).acquire()
    print("held", flush=True)
    time.sleep(2)
except FolderBusy:
    print("refused", flush=True)
"""


def _race_on_a_left_lock(folder, go, script: str, racers: int) -> list[str]:
    """`racers` processes running `script` start together (once `go` exists) on `folder`, whose
    lock holds the record of a process that is gone; their outcomes, sorted."""
    folder.mkdir()
    (folder / LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": 2**22 + 1}))
    started = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(folder), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(racers)
    ]
    assert [r.stdout.readline() for r in started] == ["ready\n"] * racers
    go.touch()
    return sorted(r.communicate(timeout=60)[0].strip() for r in started)


@pytest.mark.slow  # subprocess races, 4 s: the fast tier stays under 3 minutes
def test_two_writers_starting_together_on_a_left_lock_get_one_lock(tmp_path):
    """Both find the record of a holder that is gone; exactly one of them takes the lock."""
    for trial in range(2):
        folder, go = tmp_path / str(trial), tmp_path / f"go{trial}"
        outcomes = _race_on_a_left_lock(folder, go, RACE, 2)
        assert outcomes == ["held", "refused"], (trial, outcomes)


RACE_NO_FLOCK = (
    """
import errno, fcntl, time
import prefix_titan.runs.lock as lock

def no_flock(fd, op):
    raise OSError(errno.ENOLCK, "No locks available")

fcntl.flock = no_flock
alive = lock._alive
lock._alive = lambda pid: (time.sleep(0.02), alive(pid))[1]  # a slow filesystem's pace
"""
    + RACE
)


@pytest.mark.slow  # subprocess races, 6 s: the fast tier stays under 3 minutes
def test_without_flock_racers_on_a_left_lock_get_one_lock(tmp_path):
    """Where the filesystem has no flock, four openers find the record of a holder that is
    gone, at a slow filesystem's pace: exactly one takes the lock over (the others are refused,
    none fails otherwise), and nothing is left beside the lock."""
    for trial in range(3):
        folder, go = tmp_path / str(trial), tmp_path / f"go{trial}"
        outcomes = _race_on_a_left_lock(folder, go, RACE_NO_FLOCK, 4)
        assert outcomes == ["held", "refused", "refused", "refused"], (trial, outcomes)
        assert sorted(os.listdir(folder)) == [LOCK], trial


def test_a_lock_from_another_host_is_refused_naming_the_file(tmp_path):
    (tmp_path / LOCK).write_text(json.dumps({"host": "node-17", "pid": 1, "command": "train"}))
    with pytest.raises(FolderBusy, match=rf"another host: .*remove {tmp_path / LOCK}"):
        RunLock(str(tmp_path)).acquire()
    assert json.loads((tmp_path / LOCK).read_text())["host"] == "node-17"  # left as it was
    # a launch's look does not take it for a live writer (the run is not skipped for good: its
    # start is refused with the file to remove)
    assert writer(str(tmp_path)) is None


def test_a_lock_from_a_slurm_job_that_has_ended_is_taken_over(tmp_path, monkeypatch, capsys):
    """A run killed with its node (SIGKILL) leaves a record naming that host; the resubmitted job
    runs on other nodes: a record naming a Slurm job that squeue lists as ended, or no longer
    lists, or this very job before it was requeued, is taken over with a warning that says
    why; a job still running, a squeue that cannot tell, or no squeue, are refused as before.
    The record names the job it was taken in."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    squeue = bin_dir / "squeue"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "900")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    run = tmp_path / "run"
    run.mkdir()

    def left_by(job):
        record = {"host": "node-17", "pid": 1, "command": "train", "slurm_job": job}
        (run / LOCK).write_text(json.dumps(record))

    for answer, why in [
        ("echo TIMEOUT", "its Slurm job 812 has ended: TIMEOUT"),
        (
            "echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1",
            "its Slurm job 812 has ended: squeue no longer lists it",
        ),
    ]:
        squeue.write_text(f"#!/bin/sh\n{answer}\n")
        squeue.chmod(0o755)
        left_by({"id": "812", "restart": 0})
        with RunLock(str(run)):
            assert json.loads((run / LOCK).read_text())["slurm_job"] == {"id": "900", "restart": 1}
        assert "was left by pid 1 on node-17 since" in (err := capsys.readouterr().err)
        assert f"({why}); taking it over" in err
    left_by({"id": "900", "restart": 0})  # this job, before Slurm requeued it
    with RunLock(str(run)):
        pass
    assert "its Slurm job 900 was requeued since: this is restart 1" in capsys.readouterr().err
    for answer in ("echo RUNNING", "echo 'slurm_load_jobs error: Socket timed out' >&2; exit 1"):
        squeue.write_text(f"#!/bin/sh\n{answer}\n")
        left_by({"id": "812", "restart": 0})
        with pytest.raises(FolderBusy, match="another host"):
            RunLock(str(run)).acquire()
    left_by({"id": "900", "restart": 1})  # this job now, on another node: a live writer
    with pytest.raises(FolderBusy, match="another host"):
        RunLock(str(run)).acquire()
    squeue.unlink()
    left_by({"id": "812", "restart": 0})
    with pytest.raises(FolderBusy, match="another host"):
        RunLock(str(run)).acquire()


def test_a_look_at_the_lock_does_not_refuse_a_writer_starting_then(tmp_path):
    """`writer` looks with a shared flock held for an instant; a writer starting in that instant
    waits it out instead of being refused (here the look is held for 0.1 s)."""
    fd = os.open(tmp_path / LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_SH)
    threading.Timer(0.1, lambda: os.close(fd)).start()
    with RunLock(str(tmp_path)):
        assert writer(str(tmp_path))["pid"] == os.getpid()


def test_without_flock_the_lock_is_its_record_said_in_a_warning(tmp_path, monkeypatch, capsys):
    import errno
    import fcntl

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    with RunLock(str(tmp_path), command="train ce"):
        assert "has no flock (No locks available)" in capsys.readouterr().err
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
        with RunLock(str(tmp_path)):  # nested
            pass
        assert (tmp_path / LOCK).exists()
    assert not (tmp_path / LOCK).exists()
    (tmp_path / LOCK).write_text(json.dumps({"host": "node-17", "pid": 1, "command": "train"}))
    with pytest.raises(FolderBusy, match="another host"):
        RunLock(str(tmp_path)).acquire()
    # a gone holder's lock, and an empty takeover file its taker left when it died: once that
    # file is old, it is removed and the lock taken over
    (tmp_path / LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": 2**22 + 1}))
    mutex = tmp_path / (LOCK + ".takeover")
    mutex.write_text("")
    os.utime(mutex, (time.time() - 60, time.time() - 60))
    with RunLock(str(tmp_path)):
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    assert sorted(os.listdir(tmp_path)) == []


def test_an_evaluation_holds_the_lock_of_the_folder_it_writes_into(tmp_path):
    """A model exported into its run (RUN/hf/step-N) is written under the run's lock; any other
    model folder under its own: a second writer is refused before anything is evaluated."""
    from prefix_titan.evaluation.harness import evaluate, writer_folder
    from prefix_titan.runs.folder import EXPORT_RECORD

    run = tmp_path / "run"
    inside, outside = run / "hf" / "step-4", tmp_path / "hf" / "model"
    for model in (inside, outside):
        model.mkdir(parents=True)
        fake_export(model)
        (model / EXPORT_RECORD).write_text(json.dumps({"run_dir": str(run), "step": 4}))
    assert writer_folder(str(inside)) == str(run)
    assert writer_folder(str(outside)) == str(outside)
    for model, held in ((inside, run), (outside, outside)):
        holder = holding_lock(held, command="eval --tasks piqa")
        try:
            with pytest.raises(FolderBusy, match=r"is being written by .*eval --tasks piqa") as e:
                evaluate(str(model), tasks=["hellaswag"])
            # (an evaluation has no other folder to write in: not "another job.dump_folder")
            assert str(e.value).endswith(
                "wait for it to finish, or run the same command again after it (an evaluation "
                "keeps what is evaluated already)."
            )
        finally:
            holder.kill()
            holder.wait()
        assert not (model / "eval_results.json").exists()


def test_a_checkpoint_folder_outside_the_run_folder_is_refused(tmp_path):
    """The lock and the record cover job.dump_folder: checkpoints elsewhere (another run's) are
    refused for training and export alike."""
    from prefix_titan.runs.folder import checkpoint_folder_problem

    run = tmp_path / "runB"
    run.mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", run / "linked")
    assert checkpoint_folder_problem(str(run), "checkpoint") is None
    assert checkpoint_folder_problem(str(run), "sub/checkpoint") is None
    for folder in ("../runA/checkpoint", str(tmp_path / "runA"), "linked", ".", ""):
        problem = checkpoint_folder_problem(str(run), folder)
        assert problem and "checkpoint.folder must be a folder inside job.dump_folder" in problem
        assert repr(folder) in problem and "initial_load_path" in problem
    with pytest.raises(ValueError, match="checkpoint.folder must be a folder inside"):
        from prefix_titan.titan.checks import check_job_config

        check_job_config(_job("--checkpoint.folder", "../../other/checkpoint", folder=run))
    from prefix_titan.evaluation.export import export

    config = str(ROOT / "train_configs" / "embedded_default.toml")
    args = ["--job.config_file", config, "--job.dump_folder", str(run)]
    with pytest.raises(ValueError, match="checkpoint.folder must be a folder inside"):
        export([*args, "--checkpoint.folder", "../runA/checkpoint"], str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    # one step linked in from another run: the same, a step at a time
    (tmp_path / "runA" / "checkpoint" / "step-6").mkdir(parents=True)
    (run / "checkpoint" / "step-3").mkdir(parents=True)
    os.symlink(tmp_path / "runA" / "checkpoint" / "step-6", run / "checkpoint" / "step-6")
    os.symlink(tmp_path / "runA", run / "checkpoint" / "step-6-copy")  # not a step: left alone
    problem = checkpoint_folder_problem(str(run), "checkpoint")
    assert problem and problem.startswith(f"{run / 'checkpoint' / 'step-6'} is a symbolic link")
    with pytest.raises(ValueError, match="step-6 is a symbolic link"):
        check_job_config(_job(folder=run))
    os.unlink(run / "checkpoint" / "step-6")
    assert checkpoint_folder_problem(str(run), "checkpoint") is None


@pytest.mark.slow
def test_an_exports_files_reach_the_disk_before_it_takes_its_name(tmp_path, monkeypatch):
    """Every file of an export is flushed before its folder is renamed into place, and the
    rename itself after: after a power loss, RUN/hf/step-N holds whole files or is not there."""
    import torch
    from torchtitan.models.llama3 import Transformer

    from prefix_titan.evaluation import export as ex
    from prefix_titan.model.flavors import FLAVORS

    args = FLAVORS["tiny"]
    with torch.device("meta"):
        names = Transformer(args).state_dict()
    state = {k: torch.zeros(v.shape) for k, v in names.items() if not k.startswith("freqs_cis")}
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(
        os,
        "fsync",
        lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))), real_fsync(fd)),
    )
    monkeypatch.setattr(
        os, "replace", lambda a, b: (events.append(("rename", str(b))), real_replace(a, b))
    )
    tokenizer = embedded_tokenizer_at(tmp_path / "tok")
    out = ex.write_hf_folder(state, args, tokenizer, str(tmp_path / "hf"), 256)
    renamed = events.index(("rename", out))
    flushed = {os.path.basename(p) for kind, p in events[:renamed] if kind == "fsync"}
    assert set(os.listdir(out)) <= flushed and "model.safetensors" in flushed
    assert ("fsync", str(tmp_path)) in events[renamed:]  # the rename, flushed in its folder


def test_a_symlinked_lock_is_not_followed(tmp_path):
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep")
    (tmp_path / "run").mkdir()
    os.symlink(target, tmp_path / "run" / LOCK)
    with pytest.raises(FolderBusy, match="not a plain lock file"):
        RunLock(str(tmp_path / "run")).acquire()
    assert target.read_text() == "keep"


# -- settings checked up front ------------------------------------------------------------------


@pytest.mark.parametrize(
    "setting, value, allowed",
    [
        ("optimizer.lr", "nan", ">= 0"),
        ("optimizer.lr", "inf", ">= 0"),
        ("optimizer.lr", "1e39", ">= 0"),  # (torch's AdamW failed casting it to float32)
        ("optimizer.lr", "-1e-3", ">= 0"),
        ("optimizer.eps", "inf", "> 0"),
        ("optimizer.weight_decay", "inf", ">= 0"),
        ("training.max_norm", "-inf", "> 0 (inf: no clipping)"),
        ("training.steps", "0", "> 0"),
        ("training.local_batch_size", "0", "> 0"),
        ("training.max_norm", "nan", "> 0 (inf: no clipping)"),
        ("checkpoint.interval", "0", "> 0"),
        ("checkpoint.keep_latest_k", "-1", ">= 0"),
        ("lr_scheduler.warmup_steps", "-5", ">= 0"),
        ("optimizer.weight_decay", "nan", ">= 0"),
        ("lr_scheduler.min_lr_factor", "1.5", "[0, 1]"),
    ],
)
def test_torchtitans_numbers_are_checked_before_any_work(setting, value, allowed):
    from prefix_titan.titan.checks import check_job_config

    with pytest.raises(ValueError) as e:
        check_job_config(_job(f"--{setting}", value))
    assert str(e.value).startswith(f"{setting} must be a finite number {allowed}; got")


def test_a_checkpoint_saved_on_other_ranks_is_refused_before_the_record_is_rewritten(
    tmp_path, monkeypatch
):
    from prefix_titan.titan.checks import check_batch_on_ranks, check_ranks

    job = _job("--checkpoint.enable", folder=tmp_path)
    placed = {"ranks": 2, "dp_replicate": 1, "dp_shard": 2, "cp": 1, "tp": 1, "pp": 1}
    check_ranks(job, placed, 1)  # nothing saved: nothing to load
    (tmp_path / "checkpoint" / "step-0").mkdir(parents=True)
    (tmp_path / "checkpoint" / "step-0" / ".metadata").write_bytes(b"")
    check_ranks(job, placed, 1)  # a seed checkpoint: weights only
    step = tmp_path / "checkpoint" / "step-10"
    step.mkdir(parents=True)
    (step / ".metadata").write_bytes(b"")
    check_ranks(job, placed, 2)
    with pytest.raises(ValueError) as e:
        check_ranks(job, placed, 1)
    assert str(e.value) == (
        f"{tmp_path} holds checkpoints saved on 2 ranks in all (dp_shard 2), and this run starts "
        "on 1: torchtitan resumes the data loader's place only on the ranks that saved it. "
        "Resume on 2 ranks (torchrun's --nnodes x --nproc_per_node, as the run was started), or "
        "start a run on these ranks in a fresh job.dump_folder (a run started with "
        "checkpoint.exclude_from_loading = ['dataloader'] resumes on any ranks, its data loader "
        "starting over at each resume)"
    )
    excluded = _job(
        "--checkpoint.enable", "--checkpoint.exclude_from_loading", "dataloader", folder=tmp_path
    )
    from torchtitan.tools.logging import logger

    warned = []
    monkeypatch.setattr(logger, "warning", warned.append)
    check_ranks(excluded, placed, 1)  # the data loader not loaded: the weights reshard, said
    assert warned == [
        "resuming step 10, saved on 2 ranks, on 1: the data loader is not loaded "
        "(checkpoint.exclude_from_loading), so it starts over and the run reads its first "
        "batches again"
    ]
    check_ranks(excluded, placed, 2)
    assert len(warned) == 1
    check_ranks(job, {"placement": "older record"}, 1)  # no ranks recorded: not checked
    # a global batch the ranks cannot take in whole local batches: said with those that fit
    batch = _job("--training.global_batch_size", "16", "--training.local_batch_size", "16")
    check_batch_on_ranks(batch, 1)
    with pytest.raises(
        ValueError,
        match=r"x the 2 data-parallel ranks of this run: set "
        r"training.local_batch_size to 8 \(or another of 1, 2, 4, 8\)",
    ):
        check_batch_on_ranks(batch, 2)


def test_a_launchs_checks_know_the_ranks_each_run_starts_on(tmp_path):
    """A global batch the run's ranks cannot split is refused by the launch's checks, before any
    run starts (not when that run starts, after others trained)."""
    from prefix_titan.titan.preflight import check_runs

    args = ["--job.config_file", str(ROOT / "train_configs" / "smoke" / "ce.toml")]
    args += ["--job.dump_folder", str(tmp_path / "run"), "--training.global_batch_size", "16"]
    assert check_runs([("ce seed 1", args)], "cpu", world=1) == []
    (problem,) = check_runs([("ce seed 1", args)], "cpu", world=2)
    assert problem.startswith("ce seed 1: training.global_batch_size (16) must be a multiple of ")
    assert "x the 2 data-parallel ranks of this run: set training.local_batch_size to 8" in problem


@pytest.mark.slow
def test_parallel_degrees_that_do_not_multiply_to_the_ranks_are_refused(tmp_path):
    """Degrees whose product is not the run's ranks (torchtitan asserts it on every rank as it
    builds its device mesh, in a traceback) are refused in one line naming the degrees, the
    ranks and the way out, by a launch's checks before any run starts too."""
    from prefix_titan.titan.checks import check_parallel_degrees
    from prefix_titan.titan.preflight import check_runs

    check_parallel_degrees(_job(), 8)  # data_parallel_shard_degree = -1: the ranks left
    check_parallel_degrees(_job("--parallelism.tensor_parallel_degree", "2"), 8)
    check_parallel_degrees(_job("--parallelism.data_parallel_shard_degree", "4"), 4)
    with pytest.raises(ValueError) as e:
        check_parallel_degrees(_job("--parallelism.data_parallel_shard_degree", "4"), 8)
    assert str(e.value) == (
        "parallelism: the parallel degrees (data_parallel_shard_degree 4) must multiply to the 8 "
        "ranks this run starts on (torchrun's --nnodes x --nproc_per_node): set "
        "parallelism.data_parallel_shard_degree = -1 (the 8 ranks the others leave), or start "
        "it on 4 ranks"
    )
    with pytest.raises(ValueError) as e:
        check_parallel_degrees(_job("--parallelism.tensor_parallel_degree", "4"), 6)
    assert str(e.value) == (
        "parallelism: the parallel degrees besides data_parallel_shard_degree = -1 "
        "(tensor_parallel_degree 4) must divide the 6 ranks this run starts on (torchrun's "
        "--nnodes x --nproc_per_node): set degrees whose product divides 6, or start it on a "
        "multiple of 4 ranks"
    )
    args = ["--job.config_file", str(ROOT / "train_configs" / "smoke" / "ce.toml")]
    args += ["--job.dump_folder", str(tmp_path / "run")]
    args += ["--parallelism.data_parallel_shard_degree", "1"]
    assert check_runs([("ce seed 1", args)], "cpu", world=1) == []
    (problem,) = check_runs([("ce seed 1", args)], "cpu", world=2)
    assert problem.startswith(
        "ce seed 1: parallelism: the parallel degrees (all 1) must multiply to the 2 ranks"
    )


def test_an_infinite_max_norm_is_no_clipping_and_allowed():
    from prefix_titan.titan.checks import check_job_config

    check_job_config(_job("--training.max_norm", "inf"))


@pytest.mark.parametrize(
    "section, line, words",
    [
        (
            "lr_scheduler",
            'decay_type = "cosin"',
            "lr_scheduler.decay_type must be one of 'linear', 'sqrt', 'cosine'; got 'cosin'",
        ),
        ("training", "steps = 2.5", "training.steps must be a whole number; got 2.5"),
        ("checkpoint", "interval = 1.5", "checkpoint.interval must be a whole number; got 1.5"),
        (
            "data",
            'document_mask = "false"',
            "data.document_mask must be true or false; got 'false'",
        ),
        ("data", "document_mask = 1", "data.document_mask must be true or false; got 1"),
        (  # a section inside a section: checked too (a non-empty string would read as true)
            "training.dataloader",
            'pin_memory = "false"',
            "training.dataloader.pin_memory must be true or false; got 'false'",
        ),
        (
            "training",
            'mixed_precision_param = "fp32"',
            "training.mixed_precision_param must be one of 'bfloat16', 'float32'",
        ),
        (
            "activation_checkpoint",
            'mode = "sel"',
            "activation_checkpoint.mode must be one of 'selective', 'full'",
        ),
        (
            "compile",
            'components = ["modle"]',
            "compile.components must list some of 'model', 'loss'; got ['modle']",
        ),
        (
            "optimizer",
            'name = "Adamw"',
            "optimizer.name must be one of 'Adam', 'AdamW'; got 'Adamw'",
        ),
        ("training", "seq_len = 255", "training.seq_len must be a multiple of 2 (torchtitan's"),
        ("training", "global_batch_size = 7", "training.global_batch_size must be -1 (one micro"),
        ("debug", "seed = -5", "debug.seed must be a whole number >= 0 (or unset); got -5"),
        (
            "lr_scheduler",
            "decay_ratio = 1.5",
            "lr_scheduler.decay_ratio must be in [0, 1] (or unset); got 1.5",
        ),
    ],
)
def test_a_toml_value_of_another_form_is_refused_before_any_work(tmp_path, section, line, words):
    """A TOML value reaches the job config unchecked (the command line's parser checks its own):
    each is refused by the form its setting declares, where it used to run as something else
    (2.5 steps, a string read as true) or fail when first used (the decay, hours in)."""
    import warnings

    from torchtitan.config import ConfigManager

    from prefix_titan.titan.checks import check_job_config

    text = (ROOT / "train_configs" / "embedded_default.toml").read_text()
    path = tmp_path / "c.toml"
    header = f"[{section}]"
    key, lines, inside = line.split(" =")[0], [], False
    for old in text.splitlines():
        if old.startswith("["):
            inside = old.strip() == header
        if not (inside and old.split("=")[0].strip() == key):  # the section's own value: replaced
            lines.append(old)
            if inside and old.strip() == header:
                lines.append(line)
    if header not in text:
        lines += [header, line]
    path.write_text("\n".join(lines) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the config parser's own warning about the value's type
        job = ConfigManager().parse_args(
            ["--job.config_file", str(path), "--job.dump_folder", str(tmp_path / "run")]
        )
    with pytest.raises(ValueError) as e:
        check_job_config(job)
    assert str(e.value).startswith(words), str(e.value)


def test_an_empty_dump_folder_and_a_path_the_dataset_does_not_read_are_refused():
    from prefix_titan.titan.checks import check_job_config

    with pytest.raises(ValueError, match="job.dump_folder must name the run's folder"):
        check_job_config(_job("--job.dump_folder", " "))
    with pytest.raises(ValueError, match="training.dataset_path '/x' is not read by training.d"):
        check_job_config(_job("--training.dataset_path", "/x"))  # the embedded corpus


def _record(folder, *overrides):
    """The record and a metrics row of a run that trained (a run that trained nothing does
    not hold its folder)."""
    from prefix_titan.runs.folder import METRICS_LOG, run_record

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run_config.json").write_text(json.dumps(run_record(_job(*overrides, folder=folder))))
    (folder / METRICS_LOG).write_text('{"step": 1}\n')


def test_another_arm_is_refused_whatever_the_checkpoint_settings(tmp_path):
    from prefix_titan.titan.checks import check_job_config

    _record(tmp_path / "run")  # a finished prefix run, checkpointing off
    for extra in ([], ["--checkpoint.enable", "--checkpoint.folder", "elsewhere"]):
        with pytest.raises(ValueError, match="objective.name: 'prefix' -> 'ce'"):
            check_job_config(_job("--objective.name", "ce", *extra, folder=tmp_path / "run"))
    steps = ("--training.steps", "200", "--lr_scheduler.total_steps", "300")
    check_job_config(_job(*steps, folder=tmp_path / "run"))  # may change, on the same schedule


def test_a_moved_or_respelled_run_folder_is_the_same_run(tmp_path, caplog):
    from prefix_titan.titan.checks import check_job_config

    _record(tmp_path / "old" / "run", "--objective.tau", "0.2")
    os.rename(tmp_path / "old", tmp_path / "new")
    moved = tmp_path / "new" / "run"
    check_job_config(_job("--objective.tau", "0.2", folder=moved))
    assert "it has moved" in caplog.text
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path / "new")
        check_job_config(_job("--objective.tau", "0.2", folder="run/"))
    finally:
        os.chdir(cwd)


def test_a_damaged_record_is_named(tmp_path):
    from prefix_titan.titan.checks import check_job_config

    (tmp_path / "run").mkdir()
    for text, what in (("{torn", "is not valid JSON"), ("[1, 2]", "holds a JSON list")):
        (tmp_path / "run" / "run_config.json").write_text(text)
        with pytest.raises(ValueError, match=f"run_config.json {what}"):
            check_job_config(_job(folder=tmp_path / "run"))


@pytest.mark.slow
def test_validation_shorter_than_one_batch_is_refused(tmp_path, capsys):
    from prefix_titan.titan.datasets import build_prefix_validation_dataloader
    from prefix_titan.titan.refusal import refusing
    from prefix_titan.titan.tokenizer import build_tokenizer

    job = _job(
        "--validation.enable",
        "--validation.local_batch_size",
        "100000",
        "--model.hf_assets_path",
        embedded_tokenizer_at(tmp_path / "tokenizer"),
        folder=tmp_path / "run",
    )
    tokenizer = build_tokenizer(job)
    with pytest.raises(SystemExit) as e:
        refusing(build_prefix_validation_dataloader)(
            job_config=job, dp_world_size=1, dp_rank=0, tokenizer=tokenizer
        )
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "fewer than one batch (validation.local_batch_size = 100000)" in err
    assert err.count("error:") == 1


# -- end to end ---------------------------------------------------------------------------------


def _refused_run(config: str, *overrides: str) -> str:
    """The log of a training of `config` (from the repository's root) that must be refused:
    exit status 2."""
    cmd = [sys.executable, "-m", "prefix_titan.train", "--job.config_file", config, *overrides]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    log = out.stdout + out.stderr
    assert out.returncode == 2, log[-3000:]
    return log


def _only_the_message(log: str, message: str) -> None:
    assert log.count(message) == 1, log[-3000:]
    assert "Traceback" not in log and "ChildFailedError" not in log, log[-3000:]


@pytest.mark.slow
def test_a_refused_training_says_so_once_and_leaves_no_folder(tmp_path):
    """A TOML value of another form than its setting's (a quoted number): one line, without the
    config parser's own warning that it will "try to handle this gracefully" before it."""
    toml = (ROOT / "train_configs" / "embedded_default.toml").read_text()
    assert toml.count("\ntau = 0.5\n") == 1
    config = tmp_path / "quoted.toml"
    config.write_text(toml.replace("\ntau = 0.5\n", '\ntau = "0.5"\n'))
    log = _refused_run(str(config), "--job.dump_folder", str(tmp_path / "run"))
    _only_the_message(log, "error: objective.tau must be a finite number >= 0.001 (")
    assert "got '0.5', a string (in a TOML file, write it without quotes)" in log
    assert "Warning" not in log and "gracefully" not in log, log[-3000:]
    assert log.count("HF assets path") <= 1  # torchtitan's warning, not repeated by our parse
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_second_training_into_a_busy_folder_is_refused_and_changes_nothing(tmp_path):
    holder = holding_lock(tmp_path / "run", command="train other arm")
    try:
        record = (tmp_path / "run" / LOCK).read_text()
        log, losses = train(tmp_path, "--objective.name", "ce", check=False)
        assert not losses
        _only_the_message(log, f"is being written by pid {holder.pid}")
        assert sorted(os.listdir(tmp_path / "run")) == [LOCK]
        assert (tmp_path / "run" / LOCK).read_text() == record
    finally:  # killed: the next run takes the folder (with a warning), trains, and releases it
        holder.kill()
        holder.wait()
    log, losses = train(tmp_path, "--objective.name", "ce")
    assert f"was left by pid {holder.pid}" in log and "taking it over" in log
    assert sorted(losses) == [1, 2, 3, 4] and not (tmp_path / "run" / LOCK).exists()


@pytest.mark.slow
def test_from_another_working_directory_a_relative_path_is_named_with_where_it_was_read(tmp_path):
    """The 500M config started from a folder other than the repository root (as from a
    torchtitan checkout): refused once, naming every missing path's setting and fix, then the
    working directory they were read from."""
    config = ROOT / "train_configs" / "prefix_tau0.5.toml"
    out = subprocess.run(
        [sys.executable, "-m", "prefix_titan.train", "--job.config_file", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = out.stdout + out.stderr
    assert out.returncode == 2, log[-3000:]
    _only_the_message(
        log,
        "error: model.hf_assets_path './assets/hf/Llama-3.1-8B' holds no tokenizer.json: get the "
        "Llama-3 tokenizer there with python scripts/download_tokenizer.py",
    )
    assert "\ntraining.dataset_path './data/fineweb_edu_ascii_llama3' does not exist. " in log
    assert "--out ./data/fineweb_edu_ascii_llama3 --tokens N" in log
    assert "the pilot and the 500M sweep share one folder: --tokens 20.1e9 --val-tokens 50e6" in log
    assert log.count(f"read from the working directory, {tmp_path}: start the run") == 1, log
    assert os.listdir(tmp_path) == []  # no outputs/ nor empty run folder left behind


def test_a_tokenizer_larger_than_the_flavors_vocabulary_is_refused_before_the_run(
    tmp_path, embedded_tokenizer_dir
):
    """One more token than the tiny flavor's 4,096 embedding rows: named with both settings and
    the flavors that would fit, by the checks that run before any folder is made (it used to
    surface as a traceback from the loss's target table, after the model was built)."""
    from tokenizers import Tokenizer

    from prefix_titan.model.flavors import FLAVORS
    from prefix_titan.titan.checks import PathProblems, check_paths

    tok = Tokenizer.from_file(os.path.join(embedded_tokenizer_dir, "tokenizer.json"))
    assert tok.get_vocab_size(with_added_tokens=True) == FLAVORS["tiny"].vocab_size
    check_paths(_job("--model.hf_assets_path", embedded_tokenizer_dir))  # fits: nothing said
    fits = [n for n, f in FLAVORS.items() if f.vocab_size > 4096]
    assert fits and "tiny" not in fits
    config = json.loads(
        (pathlib.Path(embedded_tokenizer_dir) / "tokenizer_config.json").read_text()
    )
    # one id too many in tokenizer.json, or a special token only tokenizer_config.json names
    # (torchtitan's tokenizer adds it, and the loss's table counts it)
    for where, extra in (("json", tok), ("config", None)):
        folder = tmp_path / where
        folder.mkdir()
        if extra is not None:
            extra.add_tokens(["<one too many>"])
            extra.save(str(folder / "tokenizer.json"))
            (folder / "tokenizer_config.json").write_text(json.dumps(config))
        else:
            shutil.copy(pathlib.Path(embedded_tokenizer_dir) / "tokenizer.json", folder)
            (folder / "tokenizer_config.json").write_text(
                json.dumps({**config, "pad_token": "<pad>"})
            )
        # a relative path, found: no note on where relative paths are read from
        job = _job("--model.hf_assets_path", os.path.relpath(folder), folder=tmp_path / "run")
        with pytest.raises(PathProblems) as e:
            check_paths(job)
        assert e.value.problems == [
            f"model.hf_assets_path {os.path.relpath(folder)!r} holds a tokenizer of 4,097 tokens, "
            "but model.flavor 'tiny' has a vocabulary of 4,096: every token id needs its own row. "
            f"Choose a flavor whose vocabulary holds 4,097 tokens ({', '.join(fits)}), or the "
            "tokenizer the flavor was made for"
        ], where
    (tmp_path / "json" / "tokenizer.json").write_text("{ not json")
    job = _job("--model.hf_assets_path", str(tmp_path / "json"), folder=tmp_path / "run")
    with pytest.raises(PathProblems, match=r"its tokenizer cannot be read \("):
        check_paths(job)


@pytest.mark.slow
def test_a_run_with_a_tokenizer_larger_than_its_flavor_is_refused_in_one_line(
    tmp_path, embedded_tokenizer_dir
):
    """The refusal above, through the launcher: one message, exit 2, no run folder left."""
    shutil.copytree(embedded_tokenizer_dir, tmp_path / "tok")
    config = json.loads((tmp_path / "tok" / "tokenizer_config.json").read_text())
    (tmp_path / "tok" / "tokenizer_config.json").write_text(
        json.dumps({**config, "pad_token": "<p>"})
    )
    log = _refused_run(
        "train_configs/embedded_default.toml",
        "--job.dump_folder",
        str(tmp_path / "run"),
        "--model.hf_assets_path",
        str(tmp_path / "tok"),
    )
    _only_the_message(log, "holds a tokenizer of 4,097 tokens, but model.flavor 'tiny' has a")
    assert not (tmp_path / "run").exists()


def test_torchtitans_model_config_dump_is_one_line():
    from prefix_titan.titan.logs import one_line_model

    dump = 'Building llama3 tinywith {\n  "dim": 64,\n  "n_layers": 2,\n  "vocab_size": 4096\n}'
    assert one_line_model(dump) == "Building llama3 tiny: dim 64, n_layers 2, vocab_size 4096"
    assert one_line_model("Building the model") is None


@pytest.mark.slow
def test_help_lists_the_objective_without_a_config_and_export_help_needs_no_torch():
    from prefix_titan.evaluation.export import DTYPES
    from prefix_titan.export import DTYPE_NAMES

    assert tuple(DTYPES) == DTYPE_NAMES
    out = subprocess.run(
        [sys.executable, "-m", "prefix_titan.train", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0 and "--objective.tau" in out.stdout, out.stderr[-2000:]
    code = (
        "import sys, prefix_titan.export as e\n"
        "try: e.main(['--help'])\nexcept SystemExit: pass\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip().endswith("False"), out.stdout[-500:] + out.stderr[-500:]


@pytest.mark.slow
def test_the_report_is_not_written_through_a_symlinked_folder(tmp_path):
    from prefix_titan.sweep import simulate as sim
    from prefix_titan.sweep.report import report

    sim.write(
        sim.simulate(sim.Sweep(items=20, seeds=(1, 2), tasks=("hellaswag",)), 0),
        str(tmp_path / "s"),
    )
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "s" / "report")
    with pytest.raises(ValueError, match="report is a symbolic link"):
        report(str(tmp_path / "s"))
    assert os.listdir(tmp_path / "elsewhere") == []
    os.unlink(tmp_path / "s" / "report")  # a figure linked to a file of its own: not written
    (tmp_path / "s" / "report").mkdir()
    os.symlink(tmp_path / "a_file", tmp_path / "s" / "report" / "validation_ce.png")
    (tmp_path / "a_file").write_text("keep")
    with pytest.raises(ValueError, match="validation_ce.png is a symbolic link"):
        report(str(tmp_path / "s"))
    assert (tmp_path / "a_file").read_text() == "keep"
    assert not any(n.endswith(".tmp") for n in os.listdir(tmp_path / "s" / "report"))
    with pytest.raises(ValueError, match="a_file is a file: the report is a folder"):
        report(str(tmp_path / "s"), out=str(tmp_path / "a_file"))
    assert (tmp_path / "a_file").read_text() == "keep"


TYRO_BOXES = {
    "terminal": """╭─ Unrecognized options ─────────────╮
│ Unrecognized options: --training.stepz, 5 │
│ ────────────────────────────────── │
│ Perhaps you meant:                 │
│     --training.steps INT           │
│         How many train steps       │
│ ────────────────────────────────── │
│ For full helptext, run x --help    │
╰────────────────────────────────────╯""",
    "plain": """ Unrecognized options
 ----------------------------------
  Unrecognized options: --training.stepz, 5
  ----------------------------------
  Perhaps you meant:
      --training.steps INT
          How many train steps (default: 40)
  ----------------------------------
  For full helptext, run - --help
""",
}


@pytest.mark.parametrize("form", sorted(TYRO_BOXES))
def test_the_settings_parsers_box_is_one_line_with_its_suggestions(form):
    from prefix_titan.titan.preflight import _one_line

    assert _one_line(TYRO_BOXES[form], 2) == (
        "Unrecognized options: --training.stepz, 5 (did you mean --training.steps?); "
        "`python -m prefix_titan.train --help` lists the settings"
    )


@pytest.mark.slow
def test_the_sweep_launcher_checks_every_run_before_any_starts(tmp_path, capsys):
    """A setting every run would refuse: refused in the launcher's own process, each run named,
    before any torchrun starts (nothing written). A run whose folder a live writer holds (another
    launch trains it) is left to it, named with its pid, not refused: the others are planned."""
    from prefix_titan.sweep.launch import main

    common = ["--scale", "smoke", "--arms", "ce", "label_smoothing", "--seeds", "7"]
    common += ["--root", str(project()), "--sweep-dir", str(tmp_path / "sweep")]
    assert main([*common, "--", "--optimizer.lr", "nan"]) == 2
    err = capsys.readouterr().err
    assert "[sweep] refused before any run started:" in err
    # one problem, named once with every run it stops
    assert (
        "ce seed 7, label_smoothing seed 7: optimizer.lr must be a finite number >= 0; got nan"
        in err
    )
    assert err.count("optimizer.lr must be") == 1
    assert not (tmp_path / "sweep").exists()
    # the parser's own refusals, on one line (they used to read "2", or end in a traceback)
    for extra, says in (
        (["--training.stepz", "5"], "Unrecognized options: --training.stepz, 5 (did you mean "),
        (["--training.steps", "abc"], "Error parsing --training.steps: invalid literal for int()"),
        (["--help"], "--help among the overrides: a launch does not print the settings' help"),
    ):
        assert main([*common, "--", *extra]) == 2
        err = capsys.readouterr().err
        assert f"ce seed 7, label_smoothing seed 7: {says}" in err and "Traceback" not in err, err
    assert not (tmp_path / "sweep").exists()
    held = tmp_path / "sweep" / "ce" / "seed7"
    held.mkdir(parents=True)
    holder = holding_lock(held)
    try:
        assert main([*common, "--dry-run"]) == 0
    finally:
        holder.kill()
        holder.wait()
    out, err = capsys.readouterr()
    assert f"# ce seed 7: being written by pid {holder.pid} on " in out, out
    assert "label_smoothing.toml --debug.seed 7" in out and "refused" not in err, err


def test_probes_of_a_run_on_shards_not_found_from_here_are_refused(tmp_path, monkeypatch):
    """eval --all-checkpoints builds a shard-trained run's probes from its shards' words; where
    the run's relative shard path is not found from the working directory, it is refused, not
    built from the embedded corpus (the report compares only runs whose probes were built alike)."""
    from prefix_titan.evaluation.harness import run_shards

    record = {"training": {"dataset": "fineweb_edu_ascii_tokens", "dataset_path": "./data/s"}}
    (tmp_path / "data" / "s").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert run_shards(record) == "./data/s"
    monkeypatch.chdir(tmp_path / "data")
    with pytest.raises(
        ValueError, match=r"the run trained on the shards './data/s'.*--probe-words"
    ):
        run_shards(record)
    assert run_shards({"training": {"dataset": "embedded_corpus"}}) is None


def test_a_launch_refuses_to_start_runs_of_a_seed_placed_otherwise(tmp_path):
    """A seed whose runs trained on 2 ranks: a launch giving its other runs 1 rank is refused
    before it starts them (their initial weights would differ: not paired)."""
    from prefix_titan.sweep.configs import load_config
    from prefix_titan.sweep.launch import _placed_otherwise, run_folder

    done = ROOT / run_folder(load_config(ROOT, "smoke", "label_smoothing"), 7, str(tmp_path))
    done.mkdir(parents=True)
    (done / "run_config.json").write_text(json.dumps({"placement": {"ranks": 2}}))
    (problem,) = _placed_otherwise(tmp_path, {7}, 1)
    assert problem.startswith("seed 7: its runs label_smoothing on 2 ranks were trained on other")
    assert "launch with their placement" in problem
    assert _placed_otherwise(tmp_path, {7}, 2) == []


def test_a_launch_of_other_arms_refuses_a_seed_placed_otherwise(tmp_path):
    """A seed whose ce run trained on 2 ranks: a launch of label_smoothing alone, on 1 rank, into
    the same sweep folder is refused too (the seed's runs there are of any arm, not only of the
    arms this launch names)."""
    from prefix_titan.sweep.configs import load_config
    from prefix_titan.sweep.launch import _placed_otherwise, run_folder

    done = ROOT / run_folder(load_config(ROOT, "smoke", "ce"), 7, str(tmp_path))
    done.mkdir(parents=True)
    (done / "run_config.json").write_text(json.dumps({"placement": {"ranks": 2}}))
    (problem,) = _placed_otherwise(tmp_path, {7}, 1)
    assert problem.startswith("seed 7: its runs ce on 2 ranks were trained on other")
    assert _placed_otherwise(tmp_path, {7}, 2) == []
    assert _placed_otherwise(tmp_path, {8}, 1) == []  # (another seed's runs: none there)


@pytest.mark.slow
def test_the_launchers_checks_say_when_they_take_over_a_killed_runs_lock(tmp_path, capsys):
    """The checks before a sweep's runs take over a killed run's lock: its warning is printed
    by the launcher (the checks' process is its own; its stderr used to be dropped)."""
    from prefix_titan.sweep.configs import load_config
    from prefix_titan.sweep.launch import preflight, run_folder, train_args

    config = load_config(ROOT, "smoke", "ce")
    args = train_args("smoke", "ce", config, 7, 1, [], str(tmp_path / "sweep"))
    held = ROOT / run_folder(config, 7, str(tmp_path / "sweep"))
    holder = holding_lock(held)
    holder.kill()
    holder.wait()
    left = (held / LOCK).read_text()
    assert preflight(ROOT, [("ce seed 7", args)], dry=True) == []  # a --dry-run's: read only
    err = capsys.readouterr().err
    assert f"[sweep] warning: {held / LOCK} was left by pid {holder.pid}" in err
    assert "a launch takes it over" in err and (held / LOCK).read_text() == left
    assert preflight(ROOT, [("ce seed 7", args)]) == []
    err = capsys.readouterr().err
    assert f"[sweep] warning: {held / LOCK} was left by pid {holder.pid}" in err
    assert "taking it over" in err


@pytest.mark.slow
def test_a_run_taken_by_a_writer_during_the_launchers_checks_is_left_to_it(tmp_path, capsys):
    """A run whose writer takes its lock after the launch looked (a run it left, starting: its
    torchrun takes seconds to reach the lock) and before the checks: left to that writer with a
    warning, as a run found written is, not a refusal of every run (outside a launch: refused)."""
    from prefix_titan.sweep.configs import load_config
    from prefix_titan.sweep.launch import preflight, run_folder, train_args

    config = load_config(ROOT, "smoke", "ce")
    sweep = tmp_path / "sweep"
    args = train_args("smoke", "ce", config, 7, 1, [], str(sweep))
    held = ROOT / run_folder(config, 7, str(sweep))
    holder = holding_lock(held)
    try:
        checks = {"folder": str(sweep), "extra": []}
        assert preflight(ROOT, [("ce seed 7", args)], sweep=checks) == []
        err = capsys.readouterr().err
        assert f"[sweep] warning: ce seed 7: {held} is being written by pid {holder.pid}" in err
        assert err.rstrip().endswith("; left to it")
        (problem,) = preflight(ROOT, [("ce seed 7", args)])
        assert problem.startswith(f"ce seed 7: {held} is being written by pid {holder.pid}")
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_names_its_holders_command_once(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["python -m prefix_titan.train", "--job.config_file", "x"])
    assert RunLock(str(tmp_path)).command == "python -m prefix_titan.train --job.config_file x"
    monkeypatch.setattr(sys, "argv", ["/repo/prefix_titan/eval.py", "--model", "m"])
    name = os.path.basename(sys.executable)
    assert RunLock(str(tmp_path)).command == f"{name} /repo/prefix_titan/eval.py --model m"


def test_the_lock_names_a_module_run_with_dash_m_by_its_module(tmp_path, monkeypatch):
    """`python -m prefix_titan.export ...` has the module's file as argv[0]: the lock names the
    module, as typed (not `python /site-packages/prefix_titan/export.py`)."""
    main = types.ModuleType("__main__")
    main.__file__ = "/repo/prefix_titan/export.py"
    main.__spec__ = importlib.util.spec_from_loader("prefix_titan.export", loader=None)
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.setattr(sys, "argv", ["/repo/prefix_titan/export.py", "--run", "r"])
    name = os.path.basename(sys.executable)
    assert RunLock(str(tmp_path)).command == f"{name} -m prefix_titan.export --run r"
    main.__spec__ = importlib.util.spec_from_loader("prefix_titan.sweep.__main__", loader=None)
    main.__file__ = "/repo/prefix_titan/sweep/__main__.py"
    monkeypatch.setattr(sys, "argv", ["/repo/prefix_titan/sweep/__main__.py", "launch"])
    assert RunLock(str(tmp_path)).command == f"{name} -m prefix_titan.sweep launch"
    monkeypatch.setattr(sys, "argv", ["/elsewhere/script.py", "x"])  # a script, not the module
    assert RunLock(str(tmp_path)).command == f"{name} /elsewhere/script.py x"


def test_a_torchrun_rank_names_its_torchrun_in_the_lock(tmp_path, monkeypatch):
    """A rank of a torchrun job runs the module (`.../torchtitan/train.py ...`): the record also
    names its parent, the torchrun to end; outside torchrun there is none."""
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    with RunLock(str(tmp_path / "one")):
        assert "launcher" not in json.loads((tmp_path / "one" / LOCK).read_text())
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    with RunLock(str(tmp_path / "run")):
        record = json.loads((tmp_path / "run" / LOCK).read_text())
    words = open(f"/proc/{os.getppid()}/cmdline", "rb").read().decode().split("\0")
    assert record["launcher"]["pid"] == os.getppid()
    program = os.path.basename(words[0])  # its words, the program by its base name
    assert record["launcher"]["command"] == " ".join([program, *filter(None, words[1:])])
    said = describe(record)
    assert f"(a rank started by torchrun, pid {os.getppid()}: " in said
    # a torchrun killed (SIGKILL) leaves its ranks running: the rank is then the one to end
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    record["launcher"]["pid"] = int(ended.stdout)
    said = describe(record)
    assert f"pid {int(ended.stdout)}, which has ended: the rank runs on without it; end " in said
    assert said.startswith(f"pid {os.getpid()} on ")
    # both ended (a stale lock taken over): nothing to end, said so (it said "end the rank")
    record["pid"] = int(ended.stdout)
    said = describe(record)
    assert said.endswith(
        f"(a rank started by torchrun, pid {int(ended.stdout)}, which has ended too)"
    )


def test_a_refusal_for_a_live_writer_leaves_that_runs_empty_folders(tmp_path):
    """A refused run removes the empty folders it made (its dump and traces folders); refused
    because another process writes the folder, it leaves a traces folder older than itself:
    that run's (written to when it fails), and a fresh one where that writer started after it
    (two started together: which made it is not known)."""
    from prefix_titan.titan import refusal
    from prefix_titan.titan.refusal import refuse

    def busy(started):
        return FolderBusy(f"{run} is being written by pid 1", {"pid": 1, "started": started})

    run = tmp_path / "run"
    job = _job("--job.dump_folder", str(run))
    traces = run / job.comm.save_traces_folder
    traces.mkdir(parents=True)
    made = os.stat(traces).st_mtime
    os.utime(traces, (made - 3600, made - 3600))  # made before this process: the writer's
    earlier = refusal._STARTED - 60  # the writer's lock taken a minute before this process
    with pytest.raises(SystemExit):
        refuse(job, busy(earlier), rank=0)
    assert traces.is_dir()
    os.utime(traces, (made, made))  # made since this process started
    for holder_started in (refusal._STARTED, None):  # a writer started with it, or not named
        with pytest.raises(SystemExit):
            refuse(job, busy(holder_started), rank=0)
        assert traces.is_dir()
    with pytest.raises(SystemExit):
        refuse(job, busy(earlier), rank=0)  # by this process (its training's start): removed
    assert not traces.exists() and run.is_dir()
    traces.mkdir()
    with pytest.raises(SystemExit):
        refuse(job, ValueError("a refused setting"), rank=0)
    assert not run.exists()


def test_a_later_refusal_lets_go_of_the_lock_and_the_record_of_a_run_that_trained_nothing(
    tmp_path,
):
    """Refused by a builder after the hook that took the folder's lock (the data, the validator,
    the target table), the run leaves nothing: its lock file, its record and an empty metrics
    log go with the empty folders; a run that trained keeps its record and metrics."""
    from prefix_titan.runs.folder import METRICS_LOG, RUN_CONFIG
    from prefix_titan.titan.refusal import refuse

    run = tmp_path / "outputs" / "run"
    job = _job("--job.dump_folder", str(run))
    lock = RunLock(str(run)).acquire()  # held by this process, out of the refusal's reach
    (run / RUN_CONFIG).write_text("{}")
    (run / METRICS_LOG).write_text("")
    (run / job.comm.save_traces_folder).mkdir()
    with pytest.raises(SystemExit) as e:
        refuse(job, ValueError("shard x is corrupt"))
    assert e.value.code == 2 and not run.exists() and (tmp_path / "outputs").exists()
    lock.release()  # (at exit: the file is gone already)
    lock = RunLock(str(run)).acquire()
    (run / RUN_CONFIG).write_text("{}")
    (run / METRICS_LOG).write_text('{"step": 1}\n')
    with pytest.raises(SystemExit):
        refuse(job, ValueError("a refused table"))
    assert sorted(os.listdir(run)) == sorted([METRICS_LOG, RUN_CONFIG])
    lock.release()
