"""Kept for one release: `python -m prefix_titan.sweep configs` writes the sweep's configs."""

import pathlib
import sys

from prefix_titan.sweep.__main__ import configs_main

if __name__ == "__main__":
    print(
        "note: scripts/make_configs.py is kept for one release; use "
        "`python -m prefix_titan.sweep configs` (the same options)",
        file=sys.stderr,
    )
    root = str(pathlib.Path(__file__).resolve().parent.parent)
    sys.exit(configs_main(["--root", root, *sys.argv[1:]], prog="scripts/make_configs.py"))
