"""The checks a training runs before any work, run for many runs at once without training:
`python -m prefix_titan.titan.preflight` reads a JSON list of [name, train_args] on stdin and
prints a JSON list of `name: problem` (empty when every run would start). The sweep launcher runs
it before starting any torchrun (sweep/launch.py: preflight)."""

from __future__ import annotations

import json
import logging
import os
import sys


def check_runs(runs: list[tuple[str, list[str]]]) -> list[str]:
    """`names: problem` for each problem a run's training would refuse with (the job config's
    checks, its tokenizer and data folders, relative to the working directory, a live writer's
    lock on its dump folder, and the target table of a family of one's own, built as the run
    would build it), the runs that share a problem named together. The built-in families'
    tables are not built here (seconds each on a 128K vocabulary; their settings are checked
    above)."""
    from torchtitan.config import ConfigManager

    from ..objectives.families import FAMILIES, FamilyError
    from ..runs.lock import LOCK, FolderBusy, RunLock
    from .checks import check_job_config, check_paths
    from .loss import LossPlans

    plans = LossPlans()  # one tokenizer read and one table per setting, whatever the seeds
    problems: dict[str, list[str]] = {}
    logging.disable(logging.WARNING)  # torchtitan's own parse warnings: the run prints them
    try:
        for name, args in runs:
            try:
                job = ConfigManager().parse_args(list(args))
                check_job_config(job)
                check_paths(job)
                if os.path.exists(os.path.join(job.job.dump_folder, LOCK)):
                    RunLock(job.job.dump_folder).acquire().release()  # refused if held
            except (ValueError, FolderBusy, SystemExit) as e:
                for problem in getattr(e, "problems", None) or [str(e)]:
                    problems.setdefault(problem, []).append(name)
                continue
            has_tokenizer = os.path.exists(os.path.join(job.model.hf_assets_path, "tokenizer.json"))
            if job.objective.name not in FAMILIES and has_tokenizer:  # else: made by the run
                try:
                    plans.table_for(job)
                except Exception as e:  # a family's own code: whatever it raises is its problem
                    why = str(e) if isinstance(e, FamilyError) else f"{type(e).__name__}: {e}"
                    problem = (
                        f"objective.name {job.objective.name!r}: its target table could not be "
                        f"built ({why})"
                    )
                    problems.setdefault(problem, []).append(name)
    finally:
        logging.disable(logging.NOTSET)

    def who(names: list[str]) -> str:
        if len(names) == len(runs) > 2:
            return f"all {len(names)} runs"
        return ", ".join(names)

    return [f"{who(names)}: {problem}" for problem, names in problems.items()]


def main() -> None:
    print(json.dumps(check_runs(json.load(sys.stdin))))


if __name__ == "__main__":
    main()
