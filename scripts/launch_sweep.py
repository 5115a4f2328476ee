"""Kept for one release: `python -m prefix_titan.sweep launch` runs a sweep."""

import pathlib
import sys

from prefix_titan.sweep.launch import main

if __name__ == "__main__":
    print(
        "note: scripts/launch_sweep.py is kept for one release; use "
        "`python -m prefix_titan.sweep launch` (the same options)",
        file=sys.stderr,
    )
    root = str(pathlib.Path(__file__).resolve().parent.parent)
    sys.exit(main(["--root", root, *sys.argv[1:]], prog="scripts/launch_sweep.py"))
