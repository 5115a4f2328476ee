import os
import random
import shutil
import tempfile
import zlib

import numpy as np
import pytest
import torch
from helpers import ODD_VOCAB

SEED = int(os.environ.get("PREFIX_TITAN_TEST_SEED", "1234"))
"""Base of every test's random seed: PREFIX_TITAN_TEST_SEED=N pytest ... reruns with other draws."""

THREADS = int(os.environ.get("PREFIX_TITAN_TEST_THREADS", "1"))
"""torch's intra-op threads in the test process (PREFIX_TITAN_TEST_THREADS=N overrides): its
tensors are small, and a second thread mostly waits for the first: on 2 idle cores the fast
tier takes the same time with 2 and 11% more CPU; on 2 cores other processes share, the kernel
tests take about twice the time and CPU. The trainings the tests start keep their own setting
(helpers.train: OMP_NUM_THREADS=1)."""
torch.set_num_threads(THREADS)

# The evaluations' JSONL tasks are cached by `datasets` under a key of their path, new in every
# session: a cache of the session's own (inherited by the evaluations it starts), removed after
# it, keeps the user's ~/.cache from growing with every run. A cache the caller set is kept.
_OWN_DATASETS_CACHE = None
if "HF_DATASETS_CACHE" not in os.environ:
    _OWN_DATASETS_CACHE = tempfile.mkdtemp(prefix="prefix_titan_test_datasets_")
    os.environ["HF_DATASETS_CACHE"] = _OWN_DATASETS_CACHE


# The package's cache files (data/cache.py: the embedded corpus, lm-eval's task index) likewise:
# a folder of the session's own, which the trainings it starts read back, unless the caller set
# the folder.
_OWN_CORPUS_CACHE = None
if "PREFIX_TITAN_CACHE" not in os.environ:
    _OWN_CORPUS_CACHE = tempfile.mkdtemp(prefix="prefix_titan_test_cache_")
    os.environ["PREFIX_TITAN_CACHE"] = _OWN_CORPUS_CACHE


def pytest_unconfigure(config):
    for own in (_OWN_DATASETS_CACHE, _OWN_CORPUS_CACHE):
        if own is not None:
            shutil.rmtree(own, ignore_errors=True)


@pytest.fixture(scope="session")
def embedded_tokenizer_dir(tmp_path_factory):
    """The embedded default's byte-level BPE, trained the way scripts/train_tokenizer.py does (a
    child pytest is handed its parent's through PREFIX_TITAN_TEST_TOKENIZER)."""
    from prefix_titan.data.tokenizers import train_embedded_tokenizer

    given = os.environ.get("PREFIX_TITAN_TEST_TOKENIZER")
    if given:
        return given
    return train_embedded_tokenizer(str(tmp_path_factory.mktemp("embedded_tokenizer")))


@pytest.fixture(scope="session")
def bpe_texts(embedded_tokenizer_dir):
    """Decoded texts of a real BPE vocabulary (None for special / non-ASCII tokens)."""
    from tokenizers import Tokenizer

    from prefix_titan.objectives import token_texts

    return token_texts(Tokenizer.from_file(os.path.join(embedded_tokenizer_dir, "tokenizer.json")))


@pytest.fixture(autouse=True)
def seed(request):
    """Seeds torch, numpy and random for each test from SEED and the test's id; returns the seed
    (kernel tests name it in their failure messages)."""
    value = (SEED + zlib.crc32(request.node.nodeid.encode())) % 2**31
    torch.manual_seed(value)
    np.random.seed(value)
    random.seed(value)
    return value


def seed_line() -> str:
    return (
        f"test seed base: {SEED} (each test seeds torch, numpy and random with the base plus a "
        "hash of its id; PREFIX_TITAN_TEST_SEED=N python -m pytest ... reruns with other draws)"
    )


def pytest_report_header(config):
    return seed_line()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The seed line where the header is not printed (-q, --no-header)."""
    if config.get_verbosity() < 0 or config.getoption("no_header", False):
        terminalreporter.write_line(seed_line())


LONGEST_FIRST = (
    "test_smoke_sweep.py",
    "test_train_e2e.py",
    "test_verdict.py",
    "test_eval.py",
    "test_probes.py",
    "test_collisions.py",
    "test_sweep.py",
)
"""The test files that take longest (each 100-350 s on 2 cores, measured with --durations), in
the order a run in several processes (pytest -n N, pytest-xdist) hands them out, before every
other file: a file dealt last would run alone while the other processes wait."""


@pytest.hookimpl(optionalhook=True)  # (hooks of pytest-xdist, which a run without it lacks)
def pytest_xdist_auto_num_workers(config):
    """-n auto: a process per CPU this one may run on, at most 8 (the tests are mostly one
    thread each; xdist's own count is of physical cores, 1 on a machine of two hyperthreads)."""
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count())
    return max(1, min(len(cpus), 8))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """With -n and no --dist of the caller's own: each file whole to one process (its module
    fixtures, trainings some of them, made once), in the order of the collection (LONGEST_FIRST
    first), not xdist's default of the files with the most tests first."""
    given = any(a.startswith("--dist") for a in config.invocation_params.args)
    if given or config.getoption("dist") != "load":
        return None
    from xdist.scheduler import LoadFileScheduling

    config.option.loadscopereorder = False
    return LoadFileScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    """In a process of a run with -n: LONGEST_FIRST's files first (the rest in their order)."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def odd_texts(embedded_tokenizer_dir):
    """The embedded BPE's texts in a model vocabulary of ODD_VOCAB ids (the padding has no text)."""
    from tokenizers import Tokenizer

    from prefix_titan.objectives import token_texts

    tok = Tokenizer.from_file(os.path.join(embedded_tokenizer_dir, "tokenizer.json"))
    return token_texts(tok, ODD_VOCAB)


@pytest.fixture(scope="session")
def llama3_dir(tmp_path_factory):
    """The real Llama-3 tokenizer, converted once per session from the llama-models package."""
    from prefix_titan.data.tokenizers import convert_llama3_tokenizer

    return convert_llama3_tokenizer(str(tmp_path_factory.mktemp("llama3_tokenizer")))


@pytest.fixture(scope="module")
def module_tmp(request, tmp_path_factory):
    """A folder shared by one module's tests, removed after them unless one of them failed (the
    suite's disk use then stays that of one module, not the sum of all)."""
    path = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    failed_before = request.session.testsfailed
    yield path
    if request.session.testsfailed == failed_before:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def llama3_texts(llama3_dir):
    from tokenizers import Tokenizer

    from prefix_titan.objectives import token_texts

    return token_texts(Tokenizer.from_file(os.path.join(llama3_dir, "tokenizer.json")))


@pytest.fixture(scope="session")
def llama3_tables(llama3_texts):
    """Prefix tables over the real vocabulary, built once per session (seconds each): tau 0.5,
    unnormalized with prefix support, and normalized with vocab support."""
    from prefix_titan.objectives import ObjectiveSpec, build_target_table

    specs = (
        ObjectiveSpec("prefix", tau=0.5, normalize=False, support="prefix"),
        ObjectiveSpec("prefix", tau=0.5, normalize=True, support="vocab"),
    )
    return {s.normalize: (s, build_target_table(llama3_texts, s)) for s in specs}


@pytest.fixture
def in_project(monkeypatch):
    """The test runs in a project folder as the package ships it (helpers.project), as the
    commands that read the project's arms from their working directory (power, simulate, the
    report) see it: a checkout used as a project folder may hold arms of its own."""
    from helpers import project

    monkeypatch.chdir(project())
    return project()
