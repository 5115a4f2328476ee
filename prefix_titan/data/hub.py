"""Telling "the Hugging Face hub could not be reached" apart from other failures, so that the
commands that download (prepare, eval, scripts/download_tokenizer.py) can say what failed and
what works offline instead of ending in the HTTP client's traceback, and (`offline_unless_reachable`)
finding an unreachable hub in one try instead of the HTTP client's half minute of retries per file."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sys
import urllib.error
import urllib.request

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


OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
"""What huggingface_hub and datasets read, on import, to stay off the network (cache only)"""
DEFAULT_ENDPOINT = "https://huggingface.co"
PROBE_TIMEOUT_S = 10.0
_NOT_REACHED = (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ECONNREFUSED, errno.ETIMEDOUT)


def _not_reached(reason) -> bool:
    """Whether a failed request's reason says the host was not reached (its name not resolved, no
    route, refused, timed out), not that it answered badly (a TLS or HTTP error: reached)."""
    if isinstance(reason, (socket.gaierror, ConnectionError, TimeoutError)):
        return True
    return isinstance(reason, OSError) and reason.errno in _NOT_REACHED


def offline_unless_reachable(timeout: float = PROBE_TIMEOUT_S, opener=urllib.request.urlopen):
    """Ask the hub's endpoint (HF_ENDPOINT, else huggingface.co; through the proxy the
    environment names) for its front page once; where it is not reached within `timeout`
    seconds, set OFFLINE_VARIABLES to 1 in this process, so that huggingface_hub and datasets
    read their local cache at once (and a file not there fails at once, with an error `explain`
    names), instead of retrying each file for half a minute. Returns the line to print where it
    set them, else None: the hub answered, either variable is set already (either way: the
    user's choice is kept), or huggingface_hub or datasets is imported already (they read the
    variables on import: too late to change them). `opener`: urllib's, for tests."""
    if any(v in os.environ for v in OFFLINE_VARIABLES):
        return None
    if "huggingface_hub" in sys.modules or "datasets" in sys.modules:
        return None
    endpoint = os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
    try:
        opener(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout).close()
        return None
    except urllib.error.HTTPError:
        return None  # it answered
    except urllib.error.URLError as e:
        if not _not_reached(e.reason):
            return None
        why = e.reason
    except OSError as e:  # a timeout while reading the answer, a reset connection
        if not _not_reached(e):
            return None
        why = e
    except Exception:  # an endpoint it cannot ask (no scheme), an answer it cannot read: the
        return None  # client's to say, as before
    for v in OFFLINE_VARIABLES:
        os.environ[v] = "1"
    return (
        f"the Hugging Face hub ({endpoint}) was not reached within {timeout:g} s "
        f"({type(why).__name__}: {str(why)[:120]}): reading from the local cache only "
        f"({'=1, '.join(OFFLINE_VARIABLES)}=1; set HF_HUB_OFFLINE=0 to try the hub anyway)"
    )
