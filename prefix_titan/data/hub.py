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
import threading
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
        if isinstance(e, ImportError) and "socks" in str(e).lower():  # (httpx without socksio)
            return e
        e = e.__cause__ or e.__context__
    return None


def shorten(text: str, limit: int) -> str:
    """The first line of `text`, cut to at most `limit` characters at the end of a sentence, else
    of a word (marked "..."): never mid-word, as a library's long message would be."""
    line = text.splitlines()[0] if text else ""
    if len(line) <= limit:
        return line
    head = line[:limit]
    end = head.rfind(". ")
    if end > limit // 3:  # (a first sentence shorter than that says too little alone)
        return head[: end + 1]
    space = head.rfind(" ", 0, limit - 3)
    return head[: space if space > 0 else limit - 3].rstrip(" ,;:") + "..."


class HubUnreachable(RuntimeError):
    """What could not be downloaded, why, and the offline alternatives."""


def explain(error: BaseException, what: str, offline: list[str]) -> HubUnreachable | None:
    """A HubUnreachable for `error` if the hub was not reached, else None."""
    cause = unreachable(error)
    if cause is None:
        return None
    reason = shorten(str(cause), 200) or type(cause).__name__
    if type(cause).__name__ == "OfflineModeIsEnabled":  # (its text says to unset a variable)
        reason = f"{'=1 or '.join(OFFLINE_VARIABLES)}=1 is set: only the cache is read"
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
    """Whether a failed request's reason says no connection was made (the name not resolved, no
    route, refused, timed out); one that was made and then dropped, or answered badly (TLS,
    HTTP), reached the host."""
    if isinstance(reason, (socket.gaierror, ConnectionRefusedError, TimeoutError)):
        return True
    return isinstance(reason, OSError) and reason.errno in _NOT_REACHED


def _asks_like_the_client() -> bool:
    """Whether urllib reaches the hub the way huggingface_hub's HTTP client would: not where
    the environment names a proxy urllib does not use (ALL_PROXY without an http and https
    one of its own, or a SOCKS proxy)."""
    proxies = urllib.request.getproxies()
    if "all" in proxies and not {"http", "https"} <= set(proxies):
        return False
    return not any(str(v).lower().startswith("socks") for v in proxies.values())


def _ask(endpoint: str, timeout: float, opener) -> BaseException | None:
    """Why the endpoint was not reached (None: it was, or nothing can be said here), within
    `timeout` seconds in all (urllib's own timeout is per address and per operation, and the
    name lookup has none: the request runs in a thread that is given up after `timeout`)."""
    outcome: list = []

    def request():
        try:
            opener(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout).close()
            outcome.append(None)
        except BaseException as e:  # judged below, in the caller's thread
            outcome.append(e)

    thread = threading.Thread(target=request, daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        return TimeoutError(f"no answer within {timeout:g} s")
    error = outcome[0]
    if error is None or isinstance(error, urllib.error.HTTPError):
        return None  # it answered
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if not isinstance(reason, BaseException) or not _not_reached(reason):
        return None  # reached and answered badly, or an endpoint it cannot ask: the client's
    return reason  # to say, as before


def hub_endpoint() -> str:
    """Where huggingface_hub asks the hub: HF_ENDPOINT, else huggingface.co."""
    return os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT


def not_reached(timeout: float = PROBE_TIMEOUT_S, opener=urllib.request.urlopen):
    """Why no connection was made to the hub's endpoint (hub_endpoint; through the proxy the
    environment names) within `timeout` seconds, asked for its front page (a failed name lookup
    asked once more); None where it answered (however badly), or where the environment names a
    proxy urllib does not use (nothing can be said here). `opener`: urllib's, for tests."""
    if not _asks_like_the_client():
        return None
    why = _ask(hub_endpoint(), timeout, opener)
    if isinstance(why, socket.gaierror):  # a passing resolver failure: asked once more
        why = _ask(hub_endpoint(), timeout, opener)
    return why


def offline_unless_reachable(timeout: float = PROBE_TIMEOUT_S, opener=urllib.request.urlopen):
    """Ask the hub's endpoint (HF_ENDPOINT, else huggingface.co; through the proxy the
    environment names) for its front page; where no connection is made within `timeout`
    seconds, set OFFLINE_VARIABLES to 1 in this process, so that huggingface_hub and datasets
    do not ask it again: what they have cached is read from there at once, and what they have
    not fails at once, with an error `explain` names, instead of after half a minute of retries
    per file. Returns the line to print where it set them, else None: the hub answered (however
    badly), either variable is set already (either way: the user's choice is kept), the
    environment names a proxy urllib does not use, or huggingface_hub or datasets is imported
    already (they read the variables on import: too late to change them). `opener`: urllib's,
    for tests."""
    if any(v in os.environ for v in OFFLINE_VARIABLES):
        return None
    if "huggingface_hub" in sys.modules or "datasets" in sys.modules:
        return None
    endpoint = hub_endpoint()
    why = not_reached(timeout, opener)
    if why is None:
        return None
    for v in OFFLINE_VARIABLES:
        os.environ[v] = "1"
    return (
        f"the Hugging Face hub ({endpoint}) was not reached ({type(why).__name__}: "
        f"{shorten(str(why), 120)}): it is not asked again in this process ({'=1, '.join(OFFLINE_VARIABLES)}"
        "=1: what is cached is read from the cache; set HF_HUB_OFFLINE=0 to try the hub anyway)"
    )
