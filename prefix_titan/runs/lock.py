"""One writer per run folder: an advisory lock file that a training, an export or an evaluation
holds while it writes into a run's dump folder.

The lock is `<folder>/.writer.lock`, created exclusively (O_CREAT | O_EXCL, never through a
symlink) and holding the holder's host, pid and command as JSON. A second writer is refused naming
the holder. A lock left by a process that is gone (killed, out of memory) on this host is taken
over with a warning; one from another host cannot be checked from here and is refused, naming the
file to remove once that holder is known to be gone. Within one process the lock nests: a writer
inside another (an export inside an evaluation of the run) shares its lock. Plain Python; no torch, no torchtitan.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

LOCK = ".writer.lock"
"""The lock file's name inside the run folder"""


class FolderBusy(ValueError):
    """Another live process writes into the folder."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _holder(path: str) -> dict | None:
    """The lock's record, or None if the file went away; a damaged record reads as {}."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise FolderBusy(
            f"{path} is not a plain lock file ({e.strerror}): remove it if no process writes "
            "into this folder"
        ) from None
    with os.fdopen(fd) as f:
        text = f.read()
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return {}  # written half by a killed process: the pid is unknown
    return record if isinstance(record, dict) else {}


def _is_this_process(holder: dict | None) -> bool:
    return (
        bool(holder)
        and holder.get("pid") == os.getpid()
        and holder.get("host") == socket.gethostname()
    )


def describe(holder: dict) -> str:
    if not holder:
        return "an unknown process (the lock file does not say which)"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    return (
        f"pid {holder.get('pid')} on {holder.get('host')} since {since}: "
        f"{holder.get('command', '?')}"
    )


class RunLock:
    """The writer's lock of `folder` (created if missing); a context manager. `command` says what
    holds it (shown to a refused second writer)."""

    def __init__(self, folder: str, command: str | None = None):
        self.folder = folder
        self.path = os.path.join(folder, LOCK)
        self.command = command or " ".join([os.path.basename(sys.executable), *sys.argv])
        self.held = False
        self.created: list[str] = []

    def acquire(self) -> RunLock:
        missing, up = [], os.path.abspath(self.folder)
        while not os.path.exists(up):
            missing.append(up)
            up = os.path.dirname(up)
        os.makedirs(self.folder, exist_ok=True)
        self.created = missing  # deepest first: release() removes those still empty
        record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "command": self.command,
            "started": time.time(),
        }
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            except FileExistsError:
                holder = _holder(self.path)
                if _is_this_process(holder):  # nested (an export inside an evaluation): held
                    return self
                self._take_over_if_stale(holder)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(record))
                f.flush()
                os.fsync(f.fileno())
            self.held = True
            return self
        raise FolderBusy(f"{self.folder}: could not take the writer's lock {self.path}")

    def _take_over_if_stale(self, holder: dict | None) -> None:
        """Remove the lock file if `holder` (its record, as just read) is a process gone from
        this host; else refuse, naming the holder."""
        if holder is None:  # released meanwhile
            return
        here = socket.gethostname()
        pid = holder.get("pid")
        if holder.get("host") == here and isinstance(pid, int) and not _alive(pid):
            print(
                f"warning: {self.path} was left by a process that is gone ({describe(holder)}); "
                "taking it over",
                file=sys.stderr,
                flush=True,
            )
            os.unlink(self.path)
            return
        if not holder:
            raise FolderBusy(
                f"{self.folder} is locked by {self.path}, which does not name its holder: if no "
                f"training, export or evaluation writes into this folder, remove {self.path}"
            )
        where = (
            ""
            if holder.get("host") == here
            else f" (another host: once that process is known to be gone, remove {self.path})"
        )
        raise FolderBusy(
            f"{self.folder} is being written by {describe(holder)}{where}. Two writers would mix "
            "their checkpoints, records and logs: wait for it to finish, or give this one another "
            "folder (job.dump_folder / --out)."
        )

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        holder = _holder(self.path)
        if (
            holder
            and holder.get("pid") == os.getpid()
            and holder.get("host") == socket.gethostname()
        ):
            os.unlink(self.path)
        for folder in self.created:  # the folders acquire() made, if nothing was put in them
            try:
                os.rmdir(folder)
            except OSError:
                break

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
