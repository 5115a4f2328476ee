"""Checksums of torchtitan's checkpoint steps: recorded after each save, verified before a step is
loaded (resume, export) so that a damaged checkpoint is named instead of trained on.

Each rank records the SHA-256 of the files it wrote into `step-N/sha256sums-rank<R>.txt`
(`sha256sum` format, so `cat sha256sums-*.txt | sha256sum -c` checks a step by hand): rank R its
`__R_*.distcp` files, rank 0 also `.metadata` and any other file of the step. A step is recorded
once it is complete (torchtitan's rule: `.metadata`, or the index of a last save in HF format).
Each checksum file starts with the line `# prefix_titan checkpoint step N rank R files K`: a
comment, which `sha256sum -c` skips, so the by-hand check still works while the file binds its sums
to step N (a step folder holding another step's files and sums fails verification) and counts
them (a file cut short at a line's end is damage, not files left unrecorded). A checksum file
with a line that is neither a comment nor `<sha256>  <name>` is damage, not absence.

A step without checksums (saved just before the run was killed) is refused as unverified until it
is accepted: `python -m prefix_titan.runs.checkpoints seal STEP_DIR` (seal_step) records the
checksums of its files as they are now; export also takes `--accept-unverified`.

Verification also checks what needs no record: `.metadata` reads (after its checksum, where one is
recorded, matches: torch unpickles it), and every file it points into exists and is long enough (a
truncated file is named even in a step saved without checksums).
Plain Python and torch; no torchtitan.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil

from .cli import Parser, path_arg
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


def sealed(step_dir: str) -> bool:
    """Whether a step is finished and every one of its files has a recorded checksum (read, not
    hashed: check_step verifies them); a checksum file that does not parse is not sealed."""
    if not is_complete(step_dir):
        return False
    sums, problems = read_sums(step_dir)
    return not problems and set(_files(step_dir)) <= set(sums)


def unrecorded(step_dir: str) -> list[str]:
    """The files of a finished step that have no recorded checksum (read, not hashed: a step
    saved just before its run was killed has them all), for a refusal before any run starts."""
    sums, _ = read_sums(step_dir)
    return [n for n in _files(step_dir) if n not in sums]


def complete_steps(folder: str) -> list[str]:
    """The finished `step-N` folders under `folder`, oldest first."""
    return [d for d in checkpoint_steps(folder) if is_complete(d)]


def unfinished_steps(folder: str, finished: list[str] | None = None) -> list[str]:
    """The `step-N` folders under `folder` after its newest finished one (`finished`: its
    complete_steps, where the caller has them), none of them finished (a save cut short, or one
    under way): what reading the newest step passes over."""
    steps = complete_steps(folder) if finished is None else finished
    newest = step_number(steps[-1]) if steps else 0
    return [d for d in checkpoint_steps(folder) if (step_number(d) or 0) > newest]


def passed_over(folder: str) -> str | None:
    """A note naming the unfinished steps after the newest finished one in `folder`, which a
    command reading the newest passes over, or None."""
    steps = complete_steps(folder)
    cut = unfinished_steps(folder, steps)
    if not cut:
        return None
    return (
        f"note: {', '.join(cut)} unfinished (no {DCP_METADATA}: a save cut short, or one under "
        "way), not read; "
        + (f"the newest finished step is {steps[-1]}" if steps else "no step is finished")
    )


def _is_sums(name: str) -> bool:
    """A rank's checksum file, or one being written (write_atomically's `.NAME.XXXX.tmp`: another
    rank may be writing its own while this one lists the step)."""
    written = name.startswith("sha256sums-rank") and name.endswith(".txt")
    return written or (name.startswith(".sha256sums-rank") and name.endswith(".tmp"))


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


def sums_header(step: int | None, rank: int, files: int) -> str:
    """The first line of a checksum file (a comment to `sha256sum -c`)."""
    number = "?" if step is None else step
    return f"# prefix_titan checkpoint step {number} rank {rank} files {files}\n"


# `files K` is absent from the files written before it was added: their length is not checked
_HEADER = re.compile(r"# prefix_titan checkpoint step (\d+|\?) rank (\d+)(?: files (\d+))?$")
_SUM_LINE = re.compile(r"([0-9a-f]{64})  (\S.*)$")


def record_step(step_dir: str, rank: int) -> None:
    """Write this rank's checksum file for a finished step (atomically), bound to its step."""
    lines = [f"{sha256(os.path.join(step_dir, n))}  {n}\n" for n in files_of_rank(step_dir, rank)]
    header = sums_header(step_number(step_dir), rank, len(lines))
    write_atomically(os.path.join(step_dir, SUMS.format(rank=rank)), header + "".join(lines))


def read_sums(step_dir: str) -> tuple[dict[str, str], list[str]]:
    """({file name: sha256} from every rank's checksum file of a step, problems): a line that does
    not parse, a missing header, or a header of another step or rank is a problem."""
    sums, problems = {}, []
    step = step_number(step_dir)
    for path in sorted(glob.glob(os.path.join(step_dir, "sha256sums-rank*.txt"))):
        name = os.path.basename(path)
        rank = name[len("sha256sums-rank") : -len(".txt")]
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().split("\n")
        except (OSError, UnicodeDecodeError) as e:
            problems.append(f"{name} cannot be read ({e})")
            continue
        if lines and lines[-1] == "":
            lines.pop()
        header = _HEADER.match(lines[0]) if lines else None
        if header is None:
            problems.append(
                f"{name} does not start with its `# prefix_titan checkpoint step N rank R "
                "files K` line: "
                f"it is damaged, or was written before checksum files named their step (then "
                f"check the step with `sha256sum -c {name}` in it, delete {name} and seal the step)"
            )
        else:
            recorded_step, recorded_rank, files = header.groups()
            if step is not None and recorded_step != str(step):
                problems.append(
                    f"{name} records the checksums of step {recorded_step}, but the folder is "
                    f"step-{step}: it holds another step's files"
                )
            if recorded_rank != rank:
                problems.append(f"{name} records the checksums of rank {recorded_rank}")
        held = 0
        for number, line in enumerate(lines[1:] if header else lines, 2 if header else 1):
            if line.startswith("#"):
                continue
            m = _SUM_LINE.match(line)
            if m is None:
                problems.append(f"{name} line {number} is not `<sha256>  <file>`: {line[:60]!r}")
            else:
                sums[m.group(2)] = m.group(1)
                held += 1
        if header and files is not None and held != int(files):
            problems.append(
                f"{name} holds {held} checksums, but was written with {files}: it was cut short "
                "or edited"
            )
    return sums, problems


def recorded_sums(step_dir: str) -> dict[str, str]:
    """{file name: sha256} from every rank's checksum file of a step; DamagedCheckpoint if one
    does not parse or belongs to another step."""
    sums, problems = read_sums(step_dir)
    if problems:
        raise DamagedCheckpoint(damage_message(step_dir, problems, "load"))
    return sums


class ChecksumRecorder:
    """Records the steps this process's run saves under `folder` (run state of one rank).

    Steps that were already complete when the run started are left as they are, unless a save
    rewrites them (their `.metadata` changes): a resumed run does not bless files it did not write.
    """

    def __init__(self, folder: str, rank: int):
        self.folder, self.rank = folder, rank
        self.seen = {d: _stamp(d) for d in complete_steps(folder)}

    def record_pending(self, interrupted: bool = False) -> list[str]:
        """Record every step saved since the last call (those whose save has finished).
        `interrupted`: where the run was interrupted (Ctrl-C, a preemption's SIGTERM), in a
        recorder made at the run's start rather than the run's own: a step this rank recorded
        after its save is passed over (the run's steps are recorded at the next step's log, so
        only the one saved just before the interruption has none; else it is refused unverified
        until sealed by hand), so that no step is hashed twice."""
        done = []
        for step_dir in complete_steps(self.folder):
            stamp = _stamp(step_dir)
            if stamp is None or self.seen.get(step_dir) == stamp:
                continue
            if interrupted and (own := _stamp_of(step_dir, SUMS.format(rank=self.rank))):
                if own >= stamp:  # (recorded after this save)
                    continue
            try:
                record_step(step_dir, self.rank)
            except FileNotFoundError:  # purged by torchtitan (keep_latest_k) meanwhile
                continue
            self.seen[step_dir] = stamp
            done.append(step_dir)
        return done


def _stamp_of(step_dir: str, name: str) -> int | None:
    try:
        return os.stat(os.path.join(step_dir, name)).st_mtime_ns
    except FileNotFoundError:
        return None


def purge_older_steps(folder: str, keep: int) -> list[str]:
    """Delete the `step-N` folders of `folder` older than its newest `keep` (keep >= 1), as
    torchtitan's `checkpoint.keep_latest_k` does after every save but the last one; returns the
    deleted. Each is renamed aside before it is deleted, so a crash leaves no half-deleted step-N
    that a loader could pick; what a purge killed midway left aside is deleted first."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1; got {keep}")
    for left in glob.glob(os.path.join(folder, ".purged-step-*")):
        if os.path.isdir(left) and not os.path.islink(left):
            shutil.rmtree(left)
    deleted = []
    for step_dir in checkpoint_steps(folder)[:-keep]:
        aside = os.path.join(folder, f".purged-{os.path.basename(step_dir)}")
        try:
            os.rename(step_dir, aside)
        except FileNotFoundError:  # deleted meanwhile
            continue
        shutil.rmtree(aside)
        deleted.append(step_dir)
    return deleted


def _stamp(step_dir: str):
    for name in (DCP_METADATA, HF_INDEX):
        if (stamp := _stamp_of(step_dir, name)) is not None:
            return stamp
    return None


def check_step(step_dir: str, rank: int = 0, world: int = 1) -> tuple[list[str], list[str]]:
    """(problems, unverified files) of a step. `rank`/`world` split the hashing between ranks
    (each hashes every world-th recorded file); the structural checks run on every rank."""
    if not os.path.isdir(step_dir):
        return [f"{step_dir} does not exist"], []
    sums, problems = read_sums(step_dir)
    files = set(_files(step_dir))
    hashed = set()
    metadata_ok = not problems
    if DCP_METADATA in sums and os.path.isfile(os.path.join(step_dir, DCP_METADATA)):
        hashed.add(DCP_METADATA)
        if sha256(os.path.join(step_dir, DCP_METADATA)) != sums[DCP_METADATA]:
            problems.append(f"{DCP_METADATA} differs from the checksum recorded when it was saved")
            metadata_ok = False
    needed = _needed_sizes(step_dir, problems) if metadata_ok else {}
    for name, size in sorted(needed.items()):
        if name not in files:
            problems.append(f"{name} is missing (the checkpoint metadata points into it)")
        elif (actual := os.path.getsize(os.path.join(step_dir, name))) < size:
            problems.append(
                f"{name} is {actual:,} bytes, shorter than the {size:,} the checkpoint metadata "
                f"needs: it is truncated"
            )
    for i, (name, digest) in enumerate(sorted(sums.items())):
        if i % world != rank or name in hashed:
            continue
        path = os.path.join(step_dir, name)
        if not os.path.isfile(path):
            if name not in needed:
                problems.append(f"{name} is missing (its checksum was recorded when it was saved)")
        elif sha256(path) != digest:
            problems.append(f"{name} differs from the checksum recorded when it was saved")
    return problems, sorted(files - set(sums))


METADATA_LIMIT = 1 << 30
"""The most bytes a `.metadata` may hold before it is unpickled (torchtitan's are kilobytes)"""


def _needed_sizes(step_dir: str, problems: list[str]) -> dict[str, int]:
    """{file: bytes the DCP metadata needs}; a `.metadata` that is empty, implausibly large or
    does not read is a problem. Callers compare its recorded checksum first."""
    path = os.path.join(step_dir, DCP_METADATA)
    if not os.path.isfile(path):
        return {}
    size = os.path.getsize(path)
    if size == 0 or size > METADATA_LIMIT:
        problems.append(f"{DCP_METADATA} is {size:,} bytes: it is damaged")
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


class UnverifiedCheckpoint(ValueError):
    """A step whose files (some or all) have no recorded checksum and that was not accepted."""


def verify_step(
    step_dir: str,
    rank: int = 0,
    world: int = 1,
    what: str = "load",
    accept_unverified: bool = False,
) -> list[str]:
    """Raise DamagedCheckpoint naming the damaged files of `step_dir` and the newest intact earlier
    step; raise UnverifiedCheckpoint for files without a recorded checksum unless
    `accept_unverified`, then return them (verified by size only)."""
    refuse_missing_step(step_dir, setting="checkpoint")
    refuse_unfinished_step(step_dir, what)
    problems, unverified = check_step(step_dir, rank, world)
    if problems:
        raise DamagedCheckpoint(damage_message(step_dir, problems, what))
    if unverified and not accept_unverified:
        raise UnverifiedCheckpoint(unverified_message(step_dir, unverified, what))
    return unverified


def refuse_missing_step(
    step_dir: str, folder: str | None = None, setting: str = "--checkpoint"
) -> None:
    """Refuse a checkpoint step folder that does not exist (a mistyped step, not a damaged one),
    naming the step folders beside it (else those of the checkpoint folder `folder`)."""
    if os.path.isdir(step_dir):
        return
    if os.path.exists(step_dir):
        raise ValueError(f"{setting} {step_dir} is a file, not a checkpoint step's folder")
    near = checkpoint_steps(os.path.dirname(os.path.normpath(step_dir)))
    if not near and folder is not None:
        near = checkpoint_steps(folder)
    where = folder or os.path.dirname(os.path.normpath(step_dir))
    raise ValueError(
        f"{setting} {step_dir} does not exist; "
        + (f"step folders nearby: {', '.join(near)}" if near else f"no step folders in {where}")
    )


def refuse_unfinished_step(step_dir: str, what: str = "check") -> None:
    """Refuse a folder that is not a finished checkpoint step (a run folder, a checkpoint
    folder, a save cut short), naming the finished steps in it, or beside it; a step whose
    metadata was lost after its save (its checksum names it) as damaged, for `what`."""
    if is_complete(step_dir):
        return
    if not os.path.isdir(step_dir):
        raise ValueError(f"{step_dir} does not exist: give a step folder, RUN/checkpoint/step-N")
    if DCP_METADATA in read_sums(step_dir)[0]:  # finished once: damage, not a save cut short
        raise DamagedCheckpoint(
            damage_message(
                step_dir,
                [
                    f"{DCP_METADATA} is missing, though its checksum was recorded when the step "
                    "was saved: the save finished and the file was lost since"
                ],
                what,
            )
        )
    near = (
        complete_steps(os.path.join(step_dir, "checkpoint"))
        or complete_steps(step_dir)
        or complete_steps(os.path.dirname(os.path.normpath(step_dir)))
    )
    raise ValueError(
        f"{step_dir} is not a finished checkpoint step (it holds no {DCP_METADATA} nor "
        f"{HF_INDEX}; a save cut short leaves such a step): give a step folder, "
        "RUN/checkpoint/step-N" + (f"; finished here: {', '.join(near)}" if near else "")
    )


def unreadable_weights(model_dir: str) -> str | None:
    """Why the weights of an exported model folder cannot be read (none there: no *.safetensors
    nor PyTorch *.bin; a file cut short or damaged, whose header does not describe it), or None:
    said before any model is built, not as the loader's traceback."""
    import glob

    from safetensors import safe_open  # (imported here: the commands without weights skip it)

    files = sorted(glob.glob(os.path.join(glob.escape(model_dir), "*.safetensors")))
    if not files and not glob.glob(os.path.join(glob.escape(model_dir), "*.bin")):
        return (
            f"{model_dir} holds no weights (no model.safetensors, nor any *.safetensors or *.bin "
            "file): a copy of an export that left them out, or not an exported model folder; "
            "export the checkpoint again (python -m prefix_titan.export ... --out DIR)"
        )
    for path in files:
        try:
            with safe_open(path, framework="pt"):
                pass
        except Exception as e:  # safetensors' own error (SafetensorError), or an OSError
            return (
                f"{path} cannot be read ({type(e).__name__}: {e}): the export is damaged or was "
                "cut short; export the checkpoint again (python -m prefix_titan.export ... "
                "--out DIR --overwrite)"
            )
    return None


def _fate(what: str) -> str:
    """What a refusal does to the step (nothing to say where the step was only checked)."""
    return "" if what == "check" else f" and will not be {what}ed"


def unverified_message(step_dir: str, unverified: list[str], what: str) -> str:
    accept = "; or export it as it is with --accept-unverified" if what == "export" else ""
    folder = os.path.dirname(os.path.normpath(step_dir))
    n = step_number(step_dir)
    earlier = [d for d in complete_steps(folder) if n is not None and step_number(d) < n]
    verified = (  # (a check says nothing of other steps: none hashed for it)
        None
        if what == "check"
        else next((d for d in reversed(earlier) if check_step(d) == ([], [])), None)
    )
    if verified is not None:
        accept += (
            f". Or leave it: the newest verified earlier step is {verified} (resume from it with "
            f"--checkpoint.load_step {step_number(verified)}; export: --checkpoint {verified})"
        )
    return (
        f"checkpoint {step_dir} is unverified{_fate(what)}: "
        f"{', '.join(unverified)} {'has' if len(unverified) == 1 else 'have'} no recorded "
        "checksum (the run that saved it stopped before "
        f"recording one, or the files were added later), so its content cannot be checked; its "
        f"sizes match the checkpoint metadata.\nTo accept the step as it is now, record its "
        f"checksums with `python -m prefix_titan.runs.checkpoints seal {step_dir}` and "
        f"{what} again{accept}."
    )


def seal_step(step_dir: str) -> list[str]:
    """Accept a step whose files lack checksums: after the checks that need no record pass (and
    the recorded checksums match), write the checksum file of every rank that has unrecorded
    files. Returns the files newly recorded; DamagedCheckpoint if the step is damaged."""
    problems, unverified = check_step(step_dir)
    if problems:
        raise DamagedCheckpoint(damage_message(step_dir, problems, "seal"))
    if not is_complete(step_dir):
        raise ValueError(
            f"{step_dir} is not a finished step (no {DCP_METADATA} or {HF_INDEX}): it cannot be "
            f"sealed"
        )
    ranks = {0} | {int(m.group(1)) for n in _files(step_dir) if (m := _RANK_FILE.match(n))}
    for rank in sorted(ranks):
        if set(files_of_rank(step_dir, rank)) & set(unverified):
            record_step(step_dir, rank)
    return unverified


def damage_message(step_dir: str, problems: list[str], what: str) -> str:
    folder = os.path.dirname(os.path.normpath(step_dir))
    n = step_number(step_dir)
    steps = complete_steps(folder) if n is not None else []
    earlier = [d for d in steps if step_number(d) < n]
    intact = next((d for d in reversed(earlier) if not check_step(d)[0]), None)
    later = [d for d in steps if step_number(d) > n]
    newer = next((d for d in reversed(later) if not check_step(d)[0]), None)
    if intact is None and newer is not None:
        advice = (
            f"No earlier step under it is intact, but a later one is: {newer} (a resume takes "
            "the newest step unless --checkpoint.load_step names another; export: --checkpoint "
            f"{newer})."
        )
    elif intact is None:
        advice = "No earlier step under it is intact: start the run again in a fresh dump folder."
    else:
        n = step_number(intact)
        advice = (
            f"The newest intact earlier step is {intact}: resume from it with "
            f"--checkpoint.load_step {n} (export: --checkpoint {intact}), or move "
            f"{step_dir} out of {folder}."
        ) + (f" A later step is intact too: {newer}." if newer else "")
    return (
        f"checkpoint {step_dir} is damaged{_fate(what)}:\n  "
        + "\n  ".join(problems)
        + f"\n{advice}"
    )


def main(argv: list[str] | None = None) -> None:
    import sys

    p = Parser(
        prog="python -m prefix_titan.runs.checkpoints",
        description="check a checkpoint step against its checksums, or seal (accept) a step "
        "saved without them",
    )
    p.add_argument("command", choices=["check", "seal"])
    p.add_argument("step_dir", nargs="+", type=path_arg)
    a = p.parse_args(argv)
    failed = False
    for step_dir in a.step_dir:
        try:
            refuse_unfinished_step(step_dir)
            if a.command == "seal":
                done = seal_step(step_dir)
                print(f"{step_dir}: " + (f"sealed {', '.join(done)}" if done else "already sealed"))
            else:
                verify_step(step_dir, what="check")
                print(f"{step_dir}: OK")
        except ValueError as e:
            print(str(e), file=sys.stderr)
            failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
