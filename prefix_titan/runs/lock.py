"""One writer per run folder: a lock that a training, an export or an evaluation holds while
it writes into a run's dump folder.

The lock is `<folder>/.writer.lock` (never opened through a symlink), held with the kernel's
`flock` for the life of the holder: the kernel releases it when the process ends, however it
ends (killed, out of memory), so a second writer is refused exactly while the first lives,
whatever its PID namespace or container. The file holds the holder's host, pid and command as
JSON (for a torchrun rank, also its torchrun's pid and command: the process to end), shown to a
refused second writer; a record left by a process that ended without releasing is taken over
with a warning. A record from another host is refused (where the filesystem does not share flock
between hosts, that holder cannot be seen from here), naming the file to remove once that holder
is known to be gone, unless it names a Slurm job that has ended (squeue) or was requeued since:
a resubmitted sweep resumes on other nodes. Within one process the lock nests: a writer inside another (an export
inside an evaluation of the run) shares its lock. On a filesystem without flock, the lock is the
record alone (created exclusively; a holder judged gone by its pid on this host), said in a
warning. Plain Python; no torch, no torchtitan.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
import subprocess
import sys
import time

LOCK = ".writer.lock"
"""The lock file's name inside the run folder"""


class FolderBusy(ValueError):
    """Another live process writes into the folder (`holder`: its lock record, where read; {}
    where its lock names none yet), or the folder's lock cannot be taken at all (a link, a
    file of another user: `holder` None)."""

    def __init__(self, message: str, holder: dict | None = None):
        super().__init__(message)
        self.holder = holder


def live_writer(e: FolderBusy) -> bool:
    """Whether `e` refused a folder for a live writer (not for a lock that cannot be taken)."""
    return e.holder is not None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _parse(text: str) -> dict:
    """A lock record read as text; a damaged one (written half by a killed process) is {}."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return record if isinstance(record, dict) else {}


TAKEOVER = ".takeover"
"""Beside the lock, where the filesystem has no flock: held by the one opener that removes a gone
holder's lock"""


def _gone(holder: dict) -> bool:
    """Whether a lock record names a process of this host that is gone."""
    pid = holder.get("pid")
    return holder.get("host") == socket.gethostname() and isinstance(pid, int) and not _alive(pid)


def process_gone(host: str, pid: int) -> bool:
    """Whether process `pid` of `host` is known to be gone: only a process of this host is."""
    return _gone({"host": host, "pid": pid})


def _holder(path: str) -> dict | None:
    """The lock's record, or None if the file went away; a damaged record reads as {}."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise FolderBusy(_not_plain(path, e.strerror)) from None
    with os.fdopen(fd) as f:
        return _parse(f.read())


def _holder_soon(path: str, tries: int = 10) -> dict | None:
    """The record of a holder that may have just taken the lock and not yet written it."""
    for _ in range(tries):
        holder = _holder(path)
        if holder:
            return holder
        time.sleep(0.05)
    return holder


def _not_plain(path: str, why: str) -> str:
    return (
        f"{path} is not a plain lock file ({why}): remove it if no process writes into this folder"
    )


def _is_this_process(holder: dict | None) -> bool:
    return (
        bool(holder)
        and holder.get("pid") == os.getpid()
        and holder.get("host") == socket.gethostname()
    )


def let_go(folder: str) -> None:
    """Unlink `folder`'s lock file where its record names this process: a process about to exit
    whose RunLock is out of reach (its flock ends with the process; a waiter sees the file gone
    and opens the path again, as after `RunLock.release`)."""
    path = os.path.join(folder, LOCK)
    if _is_this_process(_holder(path)):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _key(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _read_all(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
"""flock's errors on a filesystem that does not support it (some network filesystems)"""

_HELD: set[tuple[int, int]] = set()
"""The lock files this process holds, by (device, inode): flock does not nest within a process
(a second open of the file is another holder to the kernel), so nesting is known here"""


def _write_record(fd: int, record: dict) -> None:
    """The holder's record in place of what the lock file held, flushed to disk (fd stays open)."""
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(record).encode())
    os.fsync(fd)


def slurm_job() -> dict | None:
    """The Slurm job this process runs in, as {"id", "restart"} (a requeued job keeps its id and
    counts its restarts), or None outside Slurm."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    restart = os.environ.get("SLURM_RESTART_COUNT", "0")
    return {"id": job, "restart": int(restart) if restart.isdigit() else 0}


SLURM_ENDED = {
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "TIMEOUT",
}
"""The states of a Slurm job that has ended (squeue's %T)"""


def job_ended(holder: dict) -> str | None:
    """Why the process of a lock record from another host is known gone: it ran in a Slurm job
    (its record's `slurm_job`) that has ended, by squeue, or that was requeued since (this
    process runs in the same job, restarted); None where that is not known (no such record, no
    squeue, a job still listed as not ended). A resubmitted or requeued job then resumes its run
    on other nodes, where the killed job's lock named a host that its flock cannot be seen from."""
    job = holder.get("slurm_job")
    if not isinstance(job, dict) or not job.get("id"):
        return None
    ours = slurm_job()
    if ours and ours["id"] == str(job["id"]):
        if isinstance(job.get("restart"), int) and job["restart"] < ours["restart"]:
            return (
                f"its Slurm job {job['id']} was requeued since: this is restart {ours['restart']}"
            )
        return None
    try:
        out = subprocess.run(
            ["squeue", "-h", "-j", str(job["id"]), "-o", "%T"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    state = out.stdout.strip()
    if out.returncode == 0 and state and state not in SLURM_ENDED:
        return None
    if out.returncode != 0 and "invalid job id" not in out.stderr.lower():
        return None  # squeue could not tell
    return f"its Slurm job {job['id']} has ended: {state or 'squeue no longer lists it'}"


def launcher() -> dict | None:
    """The torchrun (torchelastic agent) that started this process, as {"pid", "command"}: a rank
    of a torchrun job is a worker whose own command is the module it runs, and ending the job
    means ending its launcher. None outside torchrun, or where the launcher's command cannot be
    read (no /proc)."""
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        return None
    pid = os.getppid()
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            words = [w.decode(errors="replace") for w in f.read().split(b"\0") if w]
    except OSError:
        return None
    if not words:
        return None
    words[0] = os.path.basename(words[0])
    return {"pid": pid, "command": " ".join(words)}


def describe(holder: dict) -> str:
    if not holder:
        return "an unknown process (the lock file does not say which)"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    started_by = holder.get("launcher")
    by = (
        f" (a rank started by torchrun, pid {started_by.get('pid')}: {started_by.get('command')})"
        if isinstance(started_by, dict)
        else ""
    )
    if by and _gone({"host": holder.get("host"), "pid": started_by.get("pid")}):
        by = (
            f" (a rank started by torchrun, pid {started_by.get('pid')}, which has ended too)"
            if _gone(holder)
            else f" (a rank started by torchrun, pid {started_by.get('pid')}, which has ended: "
            "the rank runs on without it; end the rank itself)"
        )
    return (
        f"pid {holder.get('pid')} on {holder.get('host')} since {since}: "
        f"{holder.get('command', '?')}{by}"
    )


ELSEWHERE = "write elsewhere (a training: another job.dump_folder; an export: another --out)"
AFTER_IT = "run the same command again after it (an evaluation keeps what is evaluated already)"
"""An evaluation's way out (it has no other folder to write in)"""
"""What a refused second writer is told to do besides waiting"""


def writer(folder: str) -> dict | None:
    """The record of the live process that holds the lock of `folder` now ({} where the record
    does not say which), or None: no lock file, one left by a process that is gone, or one whose
    flock is free but whose record names another host (which a writer is refused for, naming the
    file to remove: left to that refusal). It looks with a shared flock held for an instant,
    which a writer starting at that instant waits out (`_exclusive`). A lock file that is no
    plain file is left to the writer's own refusal (None)."""
    path = os.path.join(folder, LOCK)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:  # not there (or not a plain file: the writer names it)
        return None
    with os.fdopen(fd) as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        try:  # a shared lock, at once let go: taken only while no writer holds it
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            held = True
        except OSError as e:
            if e.errno not in NO_FLOCK:
                raise
            holder = _parse(f.read())  # the record alone: a holder of this host judged by its pid
            here = holder.get("host") == socket.gethostname()
            return holder if holder and here and not _gone(holder) else None
        else:
            held = False
            fcntl.flock(fd, fcntl.LOCK_UN)
        holder = _parse(f.read())
    return (holder or _holder_soon(path) or {}) if held else None


LOOKS = 10
"""Tries of the exclusive flock, 25 ms apart, before a writer is refused: `writer` takes a shared
flock for an instant to look, which must not refuse a writer that starts at that instant"""


def _exclusive(fd: int) -> bool:
    """flock(LOCK_EX) without blocking, tried LOOKS times: False while another process holds
    the lock (an OSError where the filesystem has no flock)."""
    for i in range(LOOKS):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if i + 1 < LOOKS:
                time.sleep(0.025)
    return False


def command_line() -> list[str]:
    """This process's command as typed: `python -m NAME ...` for a module run with -m (its argv[0]
    is the module's file), `python FILE ...` for a script; an argv[0] already naming python
    (prefix_titan.train names itself "python -m prefix_titan.train") is kept."""
    if sys.argv[0].startswith("python"):
        return list(sys.argv)
    python = os.path.basename(sys.executable)
    main = sys.modules.get("__main__")
    spec, file = getattr(main, "__spec__", None), getattr(main, "__file__", None)
    if spec is not None and file and os.path.abspath(file) == os.path.abspath(sys.argv[0]):
        name = spec.name.removesuffix(".__main__")
        return [python, "-m", name, *sys.argv[1:]]
    return [python, *sys.argv]


class RunLock:
    """The writer's lock of `folder` (created if missing); a context manager. `command` says what
    holds it (shown to a refused second writer); `elsewhere`, where that writer is told to write
    instead (default: ELSEWHERE)."""

    def __init__(self, folder: str, command: str | None = None, elsewhere: str | None = None):
        self.folder = folder
        self.elsewhere = elsewhere or ELSEWHERE
        """where a refused writer is told to write instead (the sweep launcher names its own)"""
        self.path = os.path.join(folder, LOCK)
        self.command = command or " ".join(command_line())
        self.held = False
        self.created: list[str] = []
        self.fd: int | None = None
        """the lock file, open and flocked while held (None: not held, or held by its record)"""
        self.key: tuple[int, int] | None = None

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
        if started_by := launcher():
            record["launcher"] = started_by
        if job := slurm_job():
            record["slurm_job"] = job
        for _ in range(5):
            fd, created = self._open()
            if fd is None:  # removed between two looks: look again
                continue
            key = _key(os.fstat(fd))
            if key in _HELD:  # held by this process: nested
                os.close(fd)
                return self
            try:
                got = _exclusive(fd)
            except OSError as e:
                if e.errno not in NO_FLOCK:
                    os.close(fd)
                    raise
                self._no_flock_warning(e)
                if created:  # made here, exclusively: the record's own way of taking it
                    _write_record(fd, record)
                    os.close(fd)
                    self.held = True
                    return self
                os.close(fd)
                return self._acquire_by_record(record)
            if not got:  # held by a live process
                os.close(fd)
                raise self._busy(_holder_soon(self.path))
            try:
                now = _key(os.stat(self.path, follow_symlinks=False))
            except FileNotFoundError:
                now = None
            if now != key:  # unlinked (or replaced) by a holder releasing it: open it again
                os.close(fd)
                continue
            try:
                self._take_over(_read_all(fd))
                _write_record(fd, record)
            except BaseException:
                os.close(fd)
                raise
            self.fd, self.key, self.held = fd, key, True
            _HELD.add(key)
            return self
        raise FolderBusy(f"{self.folder}: could not take the writer's lock {self.path}")

    def look(self) -> str | None:
        """What `acquire` would do now, read only (a dry run's check; nothing created, taken over
        or removed): raises its FolderBusy where it would be refused; returns the warning of a
        lock it would take over, or None where it would take the lock plainly. A moment's look:
        the holder may start or end before the real acquire."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise FolderBusy(_not_plain(self.path, "a symbolic link")) from None
            raise
        with os.fdopen(fd) as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise FolderBusy(_not_plain(self.path, "not a regular file"))
            if not os.access(self.path, os.W_OK):
                raise FolderBusy(
                    f"{self.path}, the writer's lock of {self.folder}, cannot be opened for "
                    "writing (permission denied): a folder of another user, or a read-only one, "
                    "cannot take a writer"
                )
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                raise self._busy(_holder_soon(self.path)) from None
            except OSError as e:
                if e.errno not in NO_FLOCK:
                    raise
                holder = _parse(f.read())  # the record alone (_acquire_by_record)
                if holder and not _is_this_process(holder):
                    if not (_gone(holder) or job_ended(holder)):
                        raise self._busy(holder) from None
                    return f"{self.path} was left by a process that is gone ({describe(holder)})"
                return None
            fcntl.flock(fd, fcntl.LOCK_UN)
            return self._left(f.read())

    def _open(self) -> tuple[int | None, bool]:
        """(the lock file open for writing, whether this call created it); (None, False) if it
        was removed between the two looks."""
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK
        created = True
        try:
            try:
                fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                created = False
                fd = os.open(self.path, flags)
        except FileNotFoundError:
            return None, False
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise FolderBusy(_not_plain(self.path, "a symbolic link")) from None
            raise FolderBusy(
                f"{self.path}, the writer's lock of {self.folder}, cannot be opened for writing "
                f"({e.strerror}): a folder of another user, or a read-only one, cannot take a "
                "writer"
            ) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise FolderBusy(_not_plain(self.path, "not a regular file"))
        return fd, created

    def _take_over(self, left: str) -> None:
        """With the flock taken: the record a holder left when it ended without releasing (killed,
        out of memory) is taken over with a warning; one from another host is refused (there the
        flock may not reach: that holder may live)."""
        if said := self._left(left):
            print(f"warning: {said}; taking it over", file=sys.stderr, flush=True)

    def _left(self, left: str) -> str | None:
        """What a lock file whose flock no process holds says, `left` its text: None where it is
        empty, else that its holder ended without releasing it; a record from another host is
        refused unless its Slurm job is known to have ended (job_ended)."""
        if not left.strip():
            return None
        holder = _parse(left)
        ended = None
        if holder and holder.get("host") != socket.gethostname():
            if not (ended := job_ended(holder)):
                raise self._busy(holder)
        return (
            f"{self.path} was left by {describe(holder)}, which ended without releasing it "
            f"({ended or 'no process holds it now'})"
        )

    def _busy(self, holder: dict | None) -> FolderBusy:
        if not holder:
            return FolderBusy(
                f"{self.folder} is locked by {self.path}, which does not name its holder (it may "
                "be starting): wait for it, or, if no training, export or evaluation writes into "
                f"this folder, remove {self.path}",
                {},
            )
        where = (
            ""
            if holder.get("host") == socket.gethostname()
            else f" (another host: once that process is known to be gone, remove {self.path})"
        )
        return FolderBusy(
            f"{self.folder} is being written by {describe(holder)}{where}. A second writer would "
            f"mix its files with that one's (checkpoints, records, results, logs, shards): wait "
            f"for it to finish, or "
            f"{self.elsewhere}.",
            holder,
        )

    def _no_flock_warning(self, why: OSError) -> None:
        print(
            f"warning: the filesystem of {self.folder} has no flock ({why.strerror}): its "
            "writer's lock is the holder's record alone, which judges a holder gone by its pid on "
            "this host (two writers in containers that share a host name are not told apart)",
            file=sys.stderr,
            flush=True,
        )

    def _acquire_by_record(self, record: dict) -> RunLock:
        """Where the filesystem has no flock: the record alone, created exclusively; a holder is
        judged gone by its pid on this host (which another PID namespace, or a reused pid, can
        mislead)."""
        for _ in range(50):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            except FileExistsError:
                holder = _holder(self.path)
                if _is_this_process(holder):  # nested (an export inside an evaluation): held
                    return self
                self._take_over_if_gone(holder)
                continue
            _write_record(fd, record)
            os.close(fd)
            self.held = True
            return self
        raise FolderBusy(
            f"{self.folder}: could not take the writer's lock {self.path} (a takeover of a gone "
            f"holder's lock goes through {self.path + TAKEOVER}: if that file is there and no "
            "process of this folder runs, remove both)"
        )

    def _take_over_if_gone(self, holder: dict | None) -> None:
        """The record alone: remove the lock file if `holder` (its record, as just read) is a
        process gone from this host; else refuse, naming the holder. Several openers may have
        read the same record: only the one that creates TAKEOVER beside the lock (exclusively)
        removes it, after reading it again and finding it still the gone holder's (not a lock
        another opener took over meanwhile); the others look again. A TAKEOVER left by a process
        that died inside those few lines is removed once its own holder is gone (an empty one once
        it is 10 s old)."""
        if holder is None:  # released meanwhile
            return
        if not (_gone(holder) or job_ended(holder)):
            raise self._busy(holder)
        mutex = self.path + TAKEOVER
        try:
            fd = os.open(mutex, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        except FileExistsError:
            other = _holder(mutex)
            try:
                stale = other is not None and (
                    _gone(other) if other else time.time() - os.stat(mutex).st_mtime > 10
                )  # (empty: its opener died before writing it, or is writing it now)
                if stale:
                    os.unlink(mutex)
            except FileNotFoundError:
                pass
            time.sleep(0.02)
            return
        try:
            _write_record(fd, {"host": socket.gethostname(), "pid": os.getpid()})
            os.close(fd)
            if _holder(self.path) == holder:
                os.unlink(self.path)
                print(
                    f"warning: {self.path} was left by a process that is gone "
                    f"({describe(holder)}); taking it over",
                    file=sys.stderr,
                    flush=True,
                )
        finally:
            os.unlink(mutex)

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        if self.fd is not None:  # unlinked while still held, then let go: a waiting opener of
            try:  # the old file sees it gone and opens the path again
                if _key(os.stat(self.path, follow_symlinks=False)) == self.key:
                    os.unlink(self.path)
            except FileNotFoundError:
                pass
            _HELD.discard(self.key)
            os.close(self.fd)
            self.fd = self.key = None
        elif _is_this_process(_holder(self.path)):
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
