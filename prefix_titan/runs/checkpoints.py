"""Checksums of torchtitan's checkpoint steps: recorded after each save, verified before a step is
loaded (resume, export) so that a damaged checkpoint is named instead of trained on.

Each rank records the SHA-256 of the files it wrote into `step-N/sha256sums-rank<R>.txt`
(`sha256sum` format, so `cat sha256sums-*.txt | sha256sum -c` checks a step by hand): rank R its
`__R_*.distcp` files, rank 0 also `.metadata` and any other file of the step. A step is recorded
once it is complete (torchtitan's rule: `.metadata`, or the index of a last save in HF format).

Verification also checks what needs no record: `.metadata` reads, and every file it points into
exists and is long enough (a truncated file is named even in a step saved without checksums).
Plain Python and torch; no torchtitan.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re

from .folder import checkpoint_steps, step_number, write_atomically

SUMS = "sha256sums-rank{rank}.txt"
"""The checksum file of one rank, inside each step folder"""
DCP_METADATA = ".metadata"
HF_INDEX = "model.safetensors.index.json"
_RANK_FILE = re.compile(r"__(\d+)_\d+\.distcp$")


def is_complete(step_dir: str) -> bool:
    """torchtitan's test of a finished step (what its loader picks from)."""
    return os.path.isfile(os.path.join(step_dir, DCP_METADATA)) or os.path.isfile(
        os.path.join(step_dir, HF_INDEX)
    )


def complete_steps(folder: str) -> list[str]:
    """The finished `step-N` folders under `folder`, oldest first."""
    return [d for d in checkpoint_steps(folder) if is_complete(d)]


def _is_sums(name: str) -> bool:
    return name.startswith("sha256sums-rank") and name.endswith(".txt")


def _files(step_dir: str) -> list[str]:
    return sorted(
        n
        for n in os.listdir(step_dir)
        if os.path.isfile(os.path.join(step_dir, n)) and not _is_sums(n)
    )


def files_of_rank(step_dir: str, rank: int) -> list[str]:
    """The files of a step that `rank` records: its own `__R_*.distcp`; rank 0 also the rest."""
    out = []
    for name in _files(step_dir):
        m = _RANK_FILE.match(name)
        if (int(m.group(1)) == rank) if m else rank == 0:
            out.append(name)
    return out


def sha256(path: str, block: int = 1 << 23) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def record_step(step_dir: str, rank: int) -> None:
    """Write this rank's checksum file for a finished step (atomically)."""
    lines = [f"{sha256(os.path.join(step_dir, n))}  {n}\n" for n in files_of_rank(step_dir, rank)]
    write_atomically(os.path.join(step_dir, SUMS.format(rank=rank)), "".join(lines))


def recorded_sums(step_dir: str) -> dict[str, str]:
    """{file name: sha256} from every rank's checksum file of a step."""
    sums = {}
    for path in glob.glob(os.path.join(step_dir, "sha256sums-rank*.txt")):
        with open(path) as f:
            for line in f:
                digest, _, name = line.rstrip("\n").partition("  ")
                if name:
                    sums[name] = digest
    return sums


class ChecksumRecorder:
    """Records the steps this process's run saves under `folder` (run state of one rank).

    Steps that were already complete when the run started are left as they are, unless a save
    rewrites them (their `.metadata` changes): a resumed run does not bless files it did not write.
    """

    def __init__(self, folder: str, rank: int):
        self.folder, self.rank = folder, rank
        self.seen = {d: _stamp(d) for d in complete_steps(folder)}

    def record_pending(self) -> list[str]:
        """Record every step saved since the last call (those whose save has finished)."""
        done = []
        for step_dir in complete_steps(self.folder):
            stamp = _stamp(step_dir)
            if stamp is None or self.seen.get(step_dir) == stamp:
                continue
            try:
                record_step(step_dir, self.rank)
            except FileNotFoundError:  # purged by torchtitan (keep_latest_k) meanwhile
                continue
            self.seen[step_dir] = stamp
            done.append(step_dir)
        return done


def _stamp(step_dir: str):
    for name in (DCP_METADATA, HF_INDEX):
        try:
            return os.stat(os.path.join(step_dir, name)).st_mtime_ns
        except FileNotFoundError:
            continue
    return None


def check_step(step_dir: str, rank: int = 0, world: int = 1) -> tuple[list[str], list[str]]:
    """(problems, unverified files) of a step. `rank`/`world` split the hashing between ranks
    (each hashes every world-th recorded file); the structural checks run on every rank."""
    problems = []
    if not os.path.isdir(step_dir):
        return [f"{step_dir} does not exist"], []
    files = set(_files(step_dir))
    needed = _needed_sizes(step_dir, problems)
    for name, size in sorted(needed.items()):
        if name not in files:
            problems.append(f"{name} is missing (the checkpoint metadata points into it)")
        elif (actual := os.path.getsize(os.path.join(step_dir, name))) < size:
            problems.append(
                f"{name} is {actual:,} bytes, shorter than the {size:,} the checkpoint metadata "
                f"needs: it is truncated"
            )
    sums = recorded_sums(step_dir)
    for i, (name, digest) in enumerate(sorted(sums.items())):
        if i % world != rank:
            continue
        path = os.path.join(step_dir, name)
        if not os.path.isfile(path):
            if name not in needed:
                problems.append(f"{name} is missing (its checksum was recorded when it was saved)")
        elif sha256(path) != digest:
            problems.append(f"{name} differs from the checksum recorded when it was saved")
    return problems, sorted(files - set(sums))


def _needed_sizes(step_dir: str, problems: list[str]) -> dict[str, int]:
    """{file: bytes the DCP metadata needs}; a `.metadata` that does not read is a problem."""
    if not os.path.isfile(os.path.join(step_dir, DCP_METADATA)):
        return {}
    from torch.distributed.checkpoint import FileSystemReader

    try:
        metadata = FileSystemReader(step_dir).read_metadata()
    except Exception as e:  # truncated or overwritten .metadata: unpickling fails in many ways
        problems.append(f"{DCP_METADATA} does not read ({type(e).__name__}: {e})")
        return {}
    needed: dict[str, int] = {}
    for info in (metadata.storage_data or {}).values():
        end = info.offset + info.length
        needed[info.relative_path] = max(needed.get(info.relative_path, 0), end)
    return needed


class DamagedCheckpoint(ValueError):
    pass


def verify_step(step_dir: str, rank: int = 0, world: int = 1, what: str = "load") -> list[str]:
    """Raise DamagedCheckpoint naming the damaged files of `step_dir` and the newest intact earlier
    step; return the files that have no recorded checksum (verified by size only)."""
    problems, unverified = check_step(step_dir, rank, world)
    if problems:
        raise DamagedCheckpoint(damage_message(step_dir, problems, what))
    return unverified


def damage_message(step_dir: str, problems: list[str], what: str) -> str:
    folder = os.path.dirname(os.path.normpath(step_dir))
    earlier = [d for d in complete_steps(folder) if step_number(d) < step_number(step_dir)]
    intact = next((d for d in reversed(earlier) if not check_step(d)[0]), None)
    if intact is None:
        advice = "No earlier step under it is intact: start the run again in a fresh dump folder."
    else:
        n = step_number(intact)
        advice = (
            f"The newest intact earlier step is {intact}: resume from it with "
            f"--checkpoint.load_step {n} (export: --checkpoint {intact}), or move "
            f"{step_dir} out of {folder}."
        )
    return (
        f"checkpoint {step_dir} is damaged and will not be {what}ed:\n  "
        + "\n  ".join(problems)
        + f"\n{advice}"
    )
