"""`python -m prefix_titan.sweep configs|launch ...`: write (or check) the sweep's configs, or run
the sweep (`python -m prefix_titan.sweep launch --help`)."""

from __future__ import annotations

import pathlib
import shutil
import sys

from ..runs.cli import Parser, path_arg
from . import launch
from .configs import ARMS_FILE, arm_specs, arms, write_configs

PROG = "python -m prefix_titan.sweep"


def configs_main(argv: list[str] | None = None, prog: str = f"{PROG} configs") -> int:
    p = Parser(
        prog=prog,
        description="Write every scale's configs (train_configs/, train_configs/pilot/, "
        "train_configs/smoke/) from prefix_titan/sweep/bases/, one file per arm: the built-in "
        "arms, then the [[arm]] tables of sweep_arms.toml in the project folder (--root). A "
        "generated config that no arm makes any more is removed (--check: listed).",
    )
    p.add_argument("--check", action="store_true", help="compare instead of writing")
    p.add_argument(
        "--root",
        type=path_arg,
        default=".",
        help="the project folder that holds train_configs/ (default: here)",
    )
    a = p.parse_args(argv)
    root = pathlib.Path(a.root)
    made = False
    if not (root / "train_configs").is_dir():
        if not (root / ARMS_FILE).is_file():
            p.error(
                f"--root {root} holds no train_configs/ folder (nor {ARMS_FILE}): run from the "
                "project folder, or make this one a project folder with `mkdir train_configs`"
            )
        if not a.check:  # a project folder begun with its arms: the configs' folder is made
            (root / "train_configs").mkdir()
            made = True
    try:
        written, stale, orphans = write_configs(root, check=a.check)
    except ValueError as e:
        if made:  # (nothing written into it: the refusal leaves the folder as it found it)
            shutil.rmtree(root / "train_configs", ignore_errors=True)
        p.refuse(str(e))
    if made:
        print(f"made {root / 'train_configs'}/ (the project folder's configs, beside {ARMS_FILE})")
    if stale or (a.check and orphans):
        if stale:
            print(f"out of date (run {PROG} configs): {', '.join(stale)}")
        if orphans:
            print(f"made by no arm (run {PROG} configs to remove them): {', '.join(orphans)}")
        return 1
    if a.check:
        print("sweep configs are up to date")
        return 0
    own = [name for name in arms(root) if name not in {s.arm_name() for s in arm_specs()}]
    print(
        f"wrote {written} configs for {len(arms(root))} arms"
        + (f" ({len(own)} from {ARMS_FILE}: {', '.join(own)})" if own else "")
        + (f"; removed {len(orphans)} that no arm makes: {', '.join(orphans)}" if orphans else "")
    )
    return 0


COMMANDS = {"configs": configs_main, "launch": launch.main}


USAGE = f"""usage: {PROG} {{{",".join(COMMANDS)}}} ...
  configs  write (--check: compare) the sweep's generated configs
  launch   run every arm once per seed (--dry-run: print the commands)"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        return COMMANDS[argv[0]](argv[1:], prog=f"{PROG} {argv[0]}")
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    got = f"; got {argv[0]!r}" if argv else ""
    print(
        f"{USAGE}\nerror: the first argument must be one of {', '.join(COMMANDS)}{got}",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
