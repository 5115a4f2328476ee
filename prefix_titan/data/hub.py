"""Telling "the Hugging Face hub could not be reached" apart from other failures, so that the
commands that download (prepare, eval, scripts/download_tokenizer.py) can say what failed and
what works offline instead of ending in the HTTP client's traceback."""

from __future__ import annotations

import contextlib

UNREACHABLE = (
    "ConnectError",
    "ConnectTimeout",
    "ConnectionError",
    "LocalEntryNotFoundError",
    "NameResolutionError",
    "OfflineModeIsEnabled",
    "ReadTimeout",
    "gaierror",
)
"""Exception class names (anywhere in the cause chain) that mean the hub was not reached"""


def unreachable(error: BaseException) -> BaseException | None:
    """The exception in `error`'s cause chain that says the hub was not reached, or None."""
    seen = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if any(c.__name__ in UNREACHABLE for c in type(e).__mro__):
            return e
        e = e.__cause__ or e.__context__
    return None


class HubUnreachable(RuntimeError):
    """What could not be downloaded, why, and the offline alternatives."""


def explain(error: BaseException, what: str, offline: list[str]) -> HubUnreachable | None:
    """A HubUnreachable for `error` if the hub was not reached, else None."""
    cause = unreachable(error)
    if cause is None:
        return None
    reason = str(cause).splitlines()[0][:200] if str(cause) else type(cause).__name__
    return HubUnreachable(
        f"could not reach the Hugging Face hub to {what} ({type(cause).__name__}: {reason}).\n"
        "Without the hub:\n  " + "\n  ".join(offline)
    )


@contextlib.contextmanager
def exit_if_unreachable(parser, what: str, offline: list[str]):
    """Within the block, an error that means the hub was not reached ends the command through
    `parser` (exit status 1) with `explain`'s message instead of a traceback; others propagate."""
    try:
        yield
    except Exception as e:
        message = explain(e, what, offline)
        if message is None:
            raise
        parser.exit(1, f"{parser.prog}: error: {message}\n")
