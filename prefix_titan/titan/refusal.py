"""A refused run ends as one message and exit status 2, printed once, with no traceback around it
and no empty folders left behind."""

from __future__ import annotations

import functools
import os
import sys
import time

_STARTED = time.time()
"""When this process imported the package (a TOML's custom_import: before torchtitan makes any
folder), to tell the folders it made from those of a live writer it is refused for"""


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


def refuse(job_config, error: BaseException, rank: int | None = None, lock=None):
    """End the process with status 2 after printing `error` once (on rank 0). `lock` (the run
    folder's writer's lock, runs/lock.py) is released (where the refusal comes later than the
    hook that took it, its file is let go of: runs/lock.let_go), the record of a run that trained
    nothing is removed (it is replaced at the next start anyway: titan/checks.check_resume), and
    the folders made for the run before the refusal are removed while they are empty; where the
    refusal is another writer's live lock on the folder (runs/lock.py: FolderBusy), only an empty
    traces folder made since this process started by a writer that took the lock before it: an
    older one is that writer's (where it writes when it fails), and so may be a fresh one where
    the writer started after this process (two started together: it is kept)."""
    from ..runs.lock import FolderBusy

    if (_rank() if rank is None else rank) == 0:
        print(f"error: {error}", file=sys.stderr, flush=True)
        if lock is not None:
            lock.release()
        if not isinstance(error, FolderBusy):
            clean_up(job_config)
        elif _before_us(error.holder):
            traces = os.path.join(job_config.job.dump_folder, job_config.comm.save_traces_folder)
            try:
                if os.stat(traces).st_mtime >= _STARTED - 1:  # (coarse file-system clocks)
                    os.rmdir(traces)
            except OSError:  # not there, not empty
                pass
    raise SystemExit(2)


def _before_us(holder: dict | None) -> bool:
    """Whether a lock's holder took it before this process started (its record's `started`,
    a second apart for coarse clocks): that writer made its traces folder before it took the lock,
    so a traces folder made since this process started is this process's."""
    started = (holder or {}).get("started")
    return isinstance(started, (int, float)) and started < _STARTED - 1


def clean_up(job_config) -> None:
    """What a refused run leaves (on rank 0): its lock file let go of (runs/lock.let_go), its
    record removed where it trained nothing, and the folders made for it removed while empty.
    refuse() calls it; so does `prefix_titan.train` for a refusal raised inside torchtitan's
    trainer (a target table, a family's code, labels outside the vocabulary)."""
    from ..runs.lock import let_go

    let_go(job_config.job.dump_folder)
    _forget_untrained(job_config)
    _remove_empty(job_config.job.dump_folder, job_config.comm.save_traces_folder)


def _forget_untrained(job_config) -> None:
    """Remove the folder's run record (and an empty metrics log) where the run trained nothing
    (checks.trained_anything)."""
    from ..runs.folder import METRICS_LOG, RUN_CONFIG
    from .checks import trained_anything

    if trained_anything(job_config):
        return
    folder = job_config.job.dump_folder
    for name in (RUN_CONFIG, METRICS_LOG):
        try:
            os.remove(os.path.join(folder, name))
        except (FileNotFoundError, IsADirectoryError):
            pass


def _remove_empty(folder: str, traces: str) -> None:
    """The traces folder, the dump folder and, for a relative dump folder, its parents named in it
    (./outputs/sweep/arm), each while it is empty: nothing a refused run made is left behind."""
    paths = [os.path.join(folder, traces), folder]
    if not os.path.isabs(folder):
        parent = os.path.dirname(os.path.normpath(folder))
        while parent not in ("", ".", ".."):
            paths.append(parent)
            parent = os.path.dirname(parent)
    for path in paths:
        try:
            os.rmdir(path)
        except OSError:  # not there, or not empty: stop at a folder that holds something
            if os.path.exists(path):
                return


def refusing(builder):
    """A TrainSpec builder whose ValueError (a refused setting or input) ends the run as refuse()
    does; the builder takes the job config as `job_config`."""

    @functools.wraps(builder)
    def build(*args, **kwargs):
        try:
            return builder(*args, **kwargs)
        except ValueError as e:
            job_config = kwargs.get("job_config")
            if job_config is None:
                job_config = next(a for a in args if hasattr(a, "job"))
            refuse(job_config, e)

    return build
