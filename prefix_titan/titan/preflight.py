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
    """`name: problem` for each run whose training would refuse: the job config's checks, its data
    folders (relative to the working directory) and a live writer's lock on its dump folder."""
    from torchtitan.config import ConfigManager

    from ..runs.lock import LOCK, FolderBusy, RunLock
    from .checks import check_job_config, check_paths

    problems = []
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
                problems.append(f"{name}: {e}")
    finally:
        logging.disable(logging.NOTSET)
    return problems


def main() -> None:
    print(json.dumps(check_runs(json.load(sys.stdin))))


if __name__ == "__main__":
    main()
