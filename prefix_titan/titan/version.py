"""The torchtitan this package adapts: 0.2.x from 0.2.2 (0.3 removed the TOML configs)."""

from __future__ import annotations

import re

SUPPORTED = "torchtitan>=0.2.2,<0.3"
"""The requirement, as pip takes it (pyproject.toml pins the same)"""


def torchtitan_problem() -> str | None:
    """Why the importable torchtitan is not one this package adapts, or None. Read from the
    imported module (`torchtitan.__version__`), not from the installed distribution's metadata:
    a copy earlier on the path is the one that runs."""
    try:
        import torchtitan
    except ImportError as e:
        return f"torchtitan cannot be imported ({e}): pip install '{SUPPORTED}'"
    found = getattr(torchtitan, "__version__", None)
    parts = re.match(r"(\d+)\.(\d+)\.(\d+)", str(found or ""))
    if parts and (0, 2, 2) <= tuple(int(p) for p in parts.groups()) < (0, 3, 0):
        return None
    what = f"torchtitan {found}" if found else "a torchtitan that names no version (0.1 or older)"
    return (
        f"{torchtitan.__file__} is {what}; this package adapts {SUPPORTED} (0.3 removed the TOML "
        f"configs): pip install '{SUPPORTED}'"
    )
