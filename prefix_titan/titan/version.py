"""The torchtitan this package adapts: 0.2.x from 0.2.2 (0.3 removed the TOML configs)."""

from __future__ import annotations

import os
import re

SUPPORTED = "torchtitan>=0.2.2,<0.3"
"""The requirement, as pip takes it (pyproject.toml pins the same)"""


def imported_version(module) -> str | None:
    """The version of the distribution installed with `module`'s files (its dist-info beside the
    package folder), else the module's own `__version__` (a source checkout: torchtitan's is read
    from whatever distribution is installed, so it may name another copy). A copy earlier on the
    path is the one that runs, whatever else pip installed."""
    from importlib.metadata import distributions

    name = module.__name__.split(".")[0]
    root = os.path.dirname(os.path.dirname(os.path.abspath(module.__file__)))
    for dist in distributions(path=[root]):
        if (dist.metadata["Name"] or "").lower().replace("_", "-") == name:
            return dist.version
    return getattr(module, "__version__", None)


def torchtitan_problem() -> str | None:
    """Why the importable torchtitan is not one this package adapts, or None."""
    try:
        import torchtitan
    except ImportError as e:
        return f"torchtitan cannot be imported ({e}): pip install '{SUPPORTED}'"
    found = imported_version(torchtitan)
    parts = re.match(r"(\d+)\.(\d+)\.(\d+)", str(found or ""))
    if parts and (0, 2, 2) <= tuple(int(p) for p in parts.groups()) < (0, 3, 0):
        return None
    what = f"torchtitan {found}" if found else "a torchtitan that names no version (0.1 or older)"
    return (
        f"{torchtitan.__file__} is {what}; this package adapts {SUPPORTED} (0.3 removed the TOML "
        f"configs): pip install '{SUPPORTED}'"
    )
