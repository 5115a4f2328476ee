"""Telling an unreachable hub apart from other failures."""

import http.client
import io
import os
import socket
import ssl
import sys
import threading
import urllib.error

import pytest

from prefix_titan.data.hub import OFFLINE_VARIABLES, explain, offline_unless_reachable, unreachable


class ConnectError(Exception):  # the HTTP client's class name, as httpx spells it
    pass


def test_the_cause_chain_is_searched():
    try:
        try:
            raise ConnectError("[Errno -2] Name or service not known")
        except ConnectError as e:
            raise RuntimeError("while listing files") from e
    except RuntimeError as e:
        found = unreachable(e)
    assert isinstance(found, ConnectError)
    message = str(explain(found, "list the files", ["--source DIR"]))
    assert "could not reach the Hugging Face hub to list the files (ConnectError: " in message
    assert message.endswith("Without the hub:\n  --source DIR")


def test_a_long_reason_is_cut_at_a_sentence_or_a_word_never_inside_one():
    from prefix_titan.data.hub import shorten

    long = (
        "We have no connection or you are trying to access a resource in offline mode. Please "
        "set 'HF_HUB_OFFLINE=1' as environment variable to use the cache, or check your network "
        "connection and try again later, since the hub could not be reached from this machine."
    )
    assert len(long) > 200
    message = str(explain(ConnectError(long), "list the files", ["--source DIR"]))
    assert "(ConnectError: We have no connection or you are trying to access a resource in " in (
        message
    )
    assert "offline mode.)" in message and "HF_HUB_OFFLINE" not in message, message
    assert shorten("short\nsecond line", 200) == "short"
    assert shorten("a" * 50 + " " + "b" * 300, 120) == "a" * 50 + "..."  # at a word
    assert shorten("x" * 300, 120) == "x" * 117 + "..."  # no space at all: cut, marked
    assert all(len(shorten(long, n)) <= n for n in (20, 80, 120, 200))
    early = "Error. " + "word " * 60  # a sentence too short to stand alone: cut at a word
    assert shorten(early, 120).startswith("Error. word word") and shorten(early, 120)[-3:] == "..."


def test_other_failures_are_not_called_unreachable():
    assert unreachable(ValueError("bad value")) is None
    assert explain(KeyError("x"), "do it", []) is None
    assert unreachable(ConnectionRefusedError()) is not None  # a builtin ConnectionError


@pytest.fixture
def online(monkeypatch):
    """Neither offline variable set, the hub's libraries not imported (as a command starts)."""
    for v in OFFLINE_VARIABLES:
        monkeypatch.delenv(v, raising=False)
    for m in ("huggingface_hub", "datasets"):
        monkeypatch.delitem(sys.modules, m, raising=False)
    for v in PROXY_VARIABLES:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example")


PROXY_VARIABLES = [f"{k}{s}" for k in ("http", "https", "all") for s in ("_proxy", "_PROXY")]


def opener_raising(error):
    asked = []

    def opener(request, timeout):
        asked.append((request.full_url, request.get_method(), timeout))
        raise error

    return opener, asked


@pytest.mark.parametrize(
    "reason",
    [
        socket.gaierror(-2, "Name or service not known"),
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError("timed out"),
        OSError(101, "Network is unreachable"),
    ],
)
def test_a_hub_not_reached_makes_the_process_read_the_cache(online, reason):
    opener, asked = opener_raising(urllib.error.URLError(reason))
    line = offline_unless_reachable(timeout=3, opener=opener)
    tries = 2 if isinstance(reason, socket.gaierror) else 1  # a name not resolved: asked again
    assert asked == [("https://hub.example", "HEAD", 3)] * tries
    assert all(os.environ[v] == "1" for v in OFFLINE_VARIABLES)
    assert line.startswith(
        f"the Hugging Face hub (https://hub.example) was not reached ({type(reason).__name__}: "
    )
    assert "not asked again in this process" in line and "HF_HUB_OFFLINE=0" in line


def test_a_name_resolved_the_second_time_is_reached(online):
    asked = []

    def opener(request, timeout):
        asked.append(request.full_url)
        if len(asked) == 1:
            raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure"))
        return io.BytesIO()

    assert offline_unless_reachable(opener=opener) is None and len(asked) == 2
    assert not any(v in os.environ for v in OFFLINE_VARIABLES)


def test_a_hub_that_never_answers_is_given_up_after_the_timeout(online):
    """urllib's timeout is per address and operation (and none for the name lookup): the probe
    keeps its own deadline. The opener here would block the test for a minute without it."""
    release = threading.Event()

    def opener(request, timeout):
        release.wait(60)
        return io.BytesIO()

    try:
        line = offline_unless_reachable(timeout=0.2, opener=opener)
    finally:
        release.set()
    assert line is not None and "(TimeoutError: no answer within 0.2 s)" in line


@pytest.mark.parametrize(
    "proxies",
    [{"ALL_PROXY": "http://proxy:3128"}, {"https_proxy": "socks5://proxy:1080"}],
)
def test_a_proxy_urllib_would_not_use_leaves_the_hub_to_the_client(online, monkeypatch, proxies):
    for k, v in proxies.items():
        monkeypatch.setenv(k, v)
    opener, asked = opener_raising(urllib.error.URLError(socket.gaierror(-2, "x")))
    assert offline_unless_reachable(opener=opener) is None and asked == []


@pytest.mark.parametrize(
    "error",
    [
        urllib.error.HTTPError("https://hub.example", 503, "busy", {}, None),  # it answered
        urllib.error.URLError(ssl.SSLError("certificate verify failed")),  # reached, refused
        urllib.error.URLError(ConnectionResetError(104, "reset")),  # connected, then dropped
        http.client.RemoteDisconnected("closed without an answer"),
    ],
)
def test_a_hub_that_answers_however_badly_is_left_to_the_client(online, error):
    opener, asked = opener_raising(error)
    assert offline_unless_reachable(opener=opener) is None and asked
    assert not any(v in os.environ for v in OFFLINE_VARIABLES)


def test_an_endpoint_it_cannot_ask_is_left_to_the_client(online, monkeypatch):
    """HF_ENDPOINT without a scheme: urllib cannot ask it (ValueError), nothing is decided here
    and no traceback ends the command."""
    monkeypatch.setenv("HF_ENDPOINT", "huggingface.co")
    assert offline_unless_reachable(timeout=1) is None
    assert not any(v in os.environ for v in OFFLINE_VARIABLES)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example")
    opener, asked = opener_raising(http.client.BadStatusLine("garbled"))  # it answered, garbled
    assert offline_unless_reachable(opener=opener) is None and asked


def test_the_users_setting_is_kept_and_not_probed(online, monkeypatch):
    opener, asked = opener_raising(urllib.error.URLError(socket.gaierror(-2, "x")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # try the hub, whatever happens
    assert offline_unless_reachable(opener=opener) is None and asked == []
    assert "HF_DATASETS_OFFLINE" not in os.environ
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setitem(sys.modules, "datasets", sys)  # imported already: too late to switch
    assert offline_unless_reachable(opener=opener) is None and asked == []


def test_only_a_source_read_from_the_hub_asks_it(tmp_path):
    """prepare asks the hub only for a hub dataset; eval only for tasks read from it."""
    from prefix_titan.data.prepare import hub_source
    from prefix_titan.evaluation.harness import hub_tasks

    assert hub_source("HuggingFaceFW/fineweb-edu")
    assert not hub_source("embedded") and not hub_source(str(tmp_path))
    assert not hub_source("./not_there") and not hub_source("~/data")  # folders, there or not
    assert hub_tasks(["char_probes", "embedding_probe"], None) == []  # made here
    assert hub_tasks(["piqa", "char_probes"], None) == ["piqa"]
    assert hub_tasks(["piqa", "hellaswag"], str(tmp_path)) == []  # --data-dir: read from files
    assert "arc_easy" in hub_tasks(["pilot"], None)


def streamed_job(*extra):
    from helpers import ROOT
    from torchtitan.config import ConfigManager

    return ConfigManager().parse_args(
        [
            *("--job.config_file", f"{ROOT}/train_configs/embedded_default.toml"),
            *("--training.dataset", "fineweb_edu_ascii"),
            *("--validation.dataset", "fineweb_edu_ascii_validation"),
            *extra,
        ]
    )


@pytest.mark.parametrize("offline", [None, "1", "false"])
def test_a_run_streaming_from_an_unreachable_hub_is_refused_before_it_starts(
    monkeypatch, offline, embedded_tokenizer_dir
):
    """A streamed FineWeb-Edu without training.dataset_path lists the hub's files on every rank:
    offline, that was each rank's traceback after the client's retries; the checks before the
    run (and a sweep's dry run) ask the hub once and name the local ways instead. (The tokenizer
    is the tests' own: the config's ./assets one is there only once a run has trained it.)"""
    from prefix_titan.titan import checks

    for v in PROXY_VARIABLES:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: refused
    if offline:  # ("false": off, as huggingface_hub reads it)
        monkeypatch.setenv("HF_HUB_OFFLINE", offline)
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    checks._hub_not_reached.cache_clear()
    with pytest.raises(checks.PathProblems) as e:
        checks.check_paths(streamed_job("--model.hf_assets_path", embedded_tokenizer_dir))
    problems = e.value.problems
    assert [p.split(" ")[0] for p in problems] == [
        "training.dataset_path",
        "validation.dataset_path",
    ]
    why = "is not asked: HF_HUB_OFFLINE=1 is set" if offline == "1" else "was not reached (Conn"
    assert f"(http://127.0.0.1:9), which {why}" in problems[0]
    assert "set training.dataset_path to a local folder of FineWeb-Edu's files" in problems[0]
    assert "fineweb_edu_ascii_tokens" in problems[0]


def test_a_streamed_dataset_whose_listing_fails_offline_says_so(monkeypatch):
    """The rank-side listing, where the checks did not run: the client's error named with the
    local ways, not its traceback; another failure is left as it is."""
    from prefix_titan.titan import datasets

    def listing(error):
        def list_data_files(path):
            raise error

        return list_data_files

    monkeypatch.setattr(datasets, "list_data_files", listing(ConnectError("Name not known")))
    with pytest.raises(ValueError) as e:
        datasets.fineweb_files("HuggingFaceFW/fineweb-edu")
    assert "could not reach the Hugging Face hub to list the files of HuggingFaceFW" in str(e.value)
    assert "set training.dataset_path to a local folder of FineWeb-Edu's files" in str(e.value)
    monkeypatch.setattr(datasets, "list_data_files", listing(KeyError("other")))
    with pytest.raises(KeyError):
        datasets.fineweb_files("HuggingFaceFW/fineweb-edu")


def test_a_socks_proxy_the_client_cannot_use_is_the_hub_not_reached():
    """ALL_PROXY=socks5://... without socksio: httpx raises ImportError before any connection;
    said with the offline ways, not as a traceback."""
    error = ImportError("Using SOCKS proxy, but the 'socksio' package is not installed.")
    message = str(explain(error, "download", ["--data-dir DIR"]))
    assert "(ImportError: Using SOCKS proxy, but the 'socksio' package" in message
    assert "--data-dir DIR" in message
    assert unreachable(ImportError("No module named 'numpy'")) is None


def test_offline_mode_is_said_without_the_clients_advice_to_unset_it():
    """huggingface_hub's OfflineModeIsEnabled says to unset HF_HUB_OFFLINE, which the command set
    itself where the hub was not reached: the reason says what is set and what it means."""

    class OfflineModeIsEnabled(ConnectionError):
        pass

    error = OfflineModeIsEnabled("Cannot reach: offline mode is enabled. To disable it, unset")
    message = str(explain(error, "download", ["--data-dir DIR"]))
    assert "(OfflineModeIsEnabled: HF_HUB_OFFLINE=1 or HF_DATASETS_OFFLINE=1 is set" in message
    assert "unset" not in message
