"""The checks a training runs before any work, run for many runs at once without training:
`python -m prefix_titan.titan.preflight` reads a JSON object on stdin, {"runs": a list of
[name, train_args] (or [name, train_args, "finished"]: a finished run, checked against its record
only), "device": the device type the runs will train on ("cuda", "cpu"; null: this machine's),
"world": the ranks each run starts on (null: not checked)},
and prints a JSON list of `name: problem` (empty when every run would start). The sweep launcher
runs it before starting any torchrun (sweep/launch.py: preflight); a plan made on a machine
without GPUs for GPUs is checked as the GPUs will run it (the row kernel `auto` resolves to, the
attention a flavor needs)."""

from __future__ import annotations

import json
import logging
import os
import sys

SWEEP_ELSEWHERE = "launch a new sweep into another --sweep-dir"
"""Where a sweep's run refused for a live writer of its folder may go instead (the launch sets
job.dump_folder itself)"""


def _parse(manager, args: list[str]):
    """torchtitan's parse of `args`; where its parser exits (an unknown option, a value of the
    wrong form), a ValueError holding the parser's own message on one line, with the options it
    suggests (printed in a box on stderr, which this checking process's caller does not show)."""
    import contextlib
    import io

    shown = io.StringIO()
    try:
        with contextlib.redirect_stderr(shown), contextlib.redirect_stdout(shown):
            return manager.parse_args(args)
    except SystemExit as e:
        if e.code in (0, None):  # the settings' help, asked for among the overrides
            raise ValueError(
                "--help among the overrides: a launch does not print the settings' help; "
                "`python -m prefix_titan.train --help` lists the settings"
            ) from None
        raise ValueError(_one_line(shown.getvalue(), e.code)) from None
    except AssertionError as e:  # a value torchtitan's config asserts on as it is built
        from .checks import explain_titan_assertion

        raise ValueError(explain_titan_assertion(args, e) or str(e)) from None


def _one_line(box: str, code) -> str:
    """tyro's error box (a title, the message, then the argument's help or the options it
    suggests, between rules) as one line."""
    sections: list[list[str]] = [[]]
    for line in box.splitlines():
        core = line.strip(" \t│╭╮╰╯")
        if not core:
            continue
        if set(core) <= set("-─"):  # a rule
            sections.append([])
        elif line.lstrip().startswith("╭"):  # (on a terminal) the title, in the box's top rule
            sections[-1].append(core.strip("─ "))
            sections.append([])
        else:
            sections[-1].append(core)
    sections = [s for s in sections if s]
    message = " ".join(sections[1] if len(sections) > 1 else sum(sections, []))
    near = [
        x.split()[0]
        for s in sections
        if s[0] == "Perhaps you meant:"
        for x in s[1:]
        if x.startswith("--")
    ]
    return (
        (message or f"the settings' parser exited with status {code}")
        + (f" (did you mean {', '.join(dict.fromkeys(near))}?)" if near else "")
        + "; `python -m prefix_titan.train --help` lists the settings"
    )


def check_runs(
    runs: list[tuple[str, list[str]]],
    device_type: str | None = None,
    sweep: dict | None = None,
    records: list | None = None,
    world: int | None = None,
    dry: bool = False,
) -> list[str]:
    """`names: problem` for each problem a run's training would refuse with (the job config's
    checks, its tokenizer and data folders, relative to the working directory, a live writer's
    lock on its dump folder, and the target table of a family of one's own, built as the run
    would build it), the runs that share a problem named together. A built-in family's table
    (seconds on a 128K vocabulary; its settings are checked above) is built only for a sweep's
    new seed of an arm whose other seeds recorded theirs (check_arm_table). `device_type`: the
    device the runs train on (None: this machine's). `sweep`: the
    runs are a sweep launch's, {"folder": the sweep folder, "extra": the launch's overrides
    after `--`}: the refusals name the launch's ways out. `records`: where given, (name, dump
    folder, the record it would write) of each run that would start is appended to it (the
    sweep floor compares them with the runs already in the sweep folder). `world`: the ranks
    each run starts on (None: not checked). `dry`: a plan's check, read only: a lock left by a
    gone process is said to be taken over by a launch, not taken over (RunLock.look)."""
    from torchtitan.config import ConfigManager

    from ..objectives.families import FAMILIES, FamilyError
    from ..objectives.spec import WEIGHTING
    from ..objectives.table import TableError
    from ..runs.folder import DATA_FILES, RESOLVED, RUN_CONFIG, run_record
    from ..runs.lock import LOCK, FolderBusy, RunLock, live_writer
    from .checks import (
        arm_tables,
        check_arm_table,
        check_job_config,
        check_paths,
        check_resume,
        check_table_unchanged,
        data_files,
        run_execution,
        unverified_resume,
    )
    from .loss import LossPlans

    plans = LossPlans()  # one tokenizer read and one table per setting, whatever the seeds
    problems: dict[str, list[str]] = {}
    folders: dict[str, list[tuple[str, str]]] = {}  # shared problem -> (folder, its own text)
    built: dict[tuple, tuple] = {}  # (tokenizer, target settings) -> (spec, table, runs)
    logging.disable(logging.WARNING)  # torchtitan's own parse warnings: the run prints them
    try:
        for name, args, *finished in runs:
            try:
                job = _parse(ConfigManager(), list(args))
                if finished:  # skipped: only whether it trained what these arguments ask
                    check_resume(job, finished=True, device_type=device_type)
                    continue
                check_job_config(job, device_type, sweep=sweep is not None, world=world)
                check_paths(job)
                if said := unverified_resume(job):  # (its load would refuse it)
                    raise ValueError(said)
                if os.path.exists(os.path.join(job.job.dump_folder, LOCK)):
                    elsewhere = SWEEP_ELSEWHERE if sweep is not None else None
                    lock = RunLock(job.job.dump_folder, elsewhere=elsewhere)
                    if not dry:
                        lock.acquire().release()
                    elif left := lock.look():
                        print(f"warning: {left}; a launch takes it over", file=sys.stderr)
            except FolderBusy as e:
                if sweep is not None and live_writer(e):
                    # taken by a writer since the launch looked (a run it left, just starting):
                    # left to it, as the launch leaves a run it finds written (not refused)
                    print(
                        f"warning: {name}: {str(e).split('. A second')[0]}; left to it",
                        file=sys.stderr,
                    )
                    continue
                problems.setdefault(shared := _shared(str(e), args), []).append(name)
                folders.setdefault(shared, []).append((_folder(args), str(e)))
                continue
            except (ValueError, SystemExit) as e:
                for problem in getattr(e, "problems", None) or [str(e)]:
                    problems.setdefault(shared := _shared(problem, args), []).append(name)
                    folders.setdefault(shared, []).append((_folder(args), problem))
                continue
            if records is not None:
                record = run_record(job)
                record[RESOLVED] = run_execution(job, device_type)
                record[DATA_FILES] = data_files(job)
                records.append((name, os.path.realpath(job.job.dump_folder), record))
            has_tokenizer = os.path.exists(os.path.join(job.model.hf_assets_path, "tokenizer.json"))
            own = job.objective.name not in FAMILIES
            # a built-in family's table (seconds on a 128K vocabulary) where a new seed joins
            # an arm whose other seeds recorded theirs: the package may have changed between
            try:
                joins = (
                    sweep is not None
                    and not os.path.exists(os.path.join(job.job.dump_folder, RUN_CONFIG))
                    and bool(arm_tables(job))
                )
            except ValueError as e:  # another seed's record damaged
                problems.setdefault(str(e), []).append(name)
                continue
            if (own or joins) and has_tokenizer:  # else: made by the run
                try:
                    table = plans.table_for(job)
                    spec = job.objective.validate()
                    key = (job.model.hf_assets_path, spec.target_key())
                    if own:
                        built.setdefault(key, (spec, table, []))[2].append(name)
                except Exception as e:  # a family's own code: whatever it raises is its problem
                    said = isinstance(e, (FamilyError, TableError))  # (they name the family)
                    why = str(e) if said else f"{type(e).__name__}: {e}"
                    problem = (
                        f"objective.name {job.objective.name!r}: its target table could not be "
                        f"built ({why})"
                    )
                    problems.setdefault(problem, []).append(name)
                    continue
                try:  # a run started before its family's code was edited, or its arm's seeds
                    check_table_unchanged(job, table.sha256)
                    if sweep is not None:
                        check_arm_table(job, table.sha256)
                except ValueError as e:
                    problems.setdefault(str(e), []).append(name)
    finally:
        logging.disable(logging.NOTSET)
    for problem, names in _alike(built, WEIGHTING):
        problems.setdefault(problem, []).extend(names)

    def who(names: list[str]) -> str:
        if len(names) == len(runs) > 2:
            return f"all {len(names)} runs"
        return ", ".join(names)

    def line(problem: str, names: list[str]) -> str:
        own = folders.get(problem, [])
        if len(own) == len(names) == 1:  # one run: its own words, its folder in them
            return f"{names[0]}: {own[0][1]}"
        where = [f for f, _ in own if f and "its run folder" in problem]
        shown = ", ".join(where[:3]) + (f", ... ({len(where)} folders)" if len(where) > 3 else "")
        return f"{who(names)}" + (f" (its run folder: {shown})" if where else "") + f": {problem}"

    return [line(problem, names) for problem, names in problems.items()]


def _folder(args) -> str | None:
    """The run's job.dump_folder as its arguments give it (None where they do not)."""
    return next((b for a, b in zip(args, args[1:]) if a == "--job.dump_folder"), None)


def _shared(problem: str, args) -> str:
    """A run's refusal with its own folder (job.dump_folder, as its arguments give it) named
    "its run folder": runs refused alike then share one line, their names before it (a later
    launch that forgot an earlier one's override listed one paragraph per run), their folders
    beside their names; a run refused alone is said in its own words, its folder in them."""
    import re

    folder = _folder(args)
    if not folder:
        return problem
    return re.sub(re.escape(folder) + r"(?![\w.-])", "its run folder", problem)


def _alike(built: dict[tuple, tuple], weighting: str) -> list[tuple[str, list[str]]]:
    """(problem, runs) for each two objectives of a family of one's own that differ in a setting
    the family does not read: the same target table and weighting, so their arms would train
    alike (a comparison of them is an A/A check, not an effect of the setting)."""
    import torch

    out = []
    keys = list(built)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            (sa, ta, ra), (sb, tb, rb) = built[a], built[b]
            if a[0] != b[0] or any(
                getattr(sa, f.name) != getattr(sb, f.name) for f in sa.fields_of(weighting)
            ):
                continue
            pairs = [(ta.idx, tb.idx), (ta.weight, tb.weight), (ta.background, tb.background)]
            if all(x.shape == y.shape and torch.equal(x, y) for x, y in pairs):
                differ = [f"{k} {v!r} / {dict(b[1])[k]!r}" for k, v in a[1] if dict(b[1])[k] != v]
                why = (
                    f"they differ in {', '.join(differ)}, which {sa.name} does not read"
                    if sa.name == sb.name
                    else "two families, one table on this vocabulary"
                )
                out.append(
                    (
                        f"objectives {sa.arm_name()} and {sb.arm_name()} build the same target "
                        f"table ({why}) and would train alike: leave one out (--arms), or have "
                        "the family read the setting",
                        [*ra, *rb],
                    )
                )
    return out


def main() -> None:
    request = json.load(sys.stdin)
    from .checks import run_device

    records: list = []
    problems = check_runs(
        request["runs"],
        request.get("device"),
        request.get("sweep"),
        records,
        request.get("world"),
        bool(request.get("dry")),
    )
    device = request.get("device") or run_device()
    print(json.dumps({"problems": problems, "starting": records, "device": device}))


if __name__ == "__main__":
    main()
