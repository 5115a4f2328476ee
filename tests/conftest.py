import os
import random
import re
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from prefix_titan.train import local_command  # noqa: E402

SEED = int(os.environ.get("PREFIX_TITAN_TEST_SEED", "1234"))
"""Base of every test's random seed: PREFIX_TITAN_TEST_SEED=N pytest ... reruns with other draws."""
ODD_VOCAB = 4099  # the embedded BPE's 4,096 tokens padded to a size that is not a power of two

STEP = re.compile(r"step:\s+(\d+)\s+loss:\s+([-\d.naif]+)")
CE = re.compile(r"step:\s+(\d+)\s+plain_ce:\s+([-\d.naif]+)")
VAL = re.compile(r"validate step:\s+(\d+)\s+plain_ce:\s+([-\d.naif]+)\s+perplexity")


_EMBEDDED_BPE: list[str] = []  # one trained copy per test process, copied where runs want it


def embedded_tokenizer_at(path) -> str:
    """The embedded BPE at `path` (runs refuse to create it anywhere but its documented place)."""
    import shutil
    import tempfile

    from prefix_titan.tokenizer import train_embedded_tokenizer

    if not os.path.exists(os.path.join(path, "tokenizer.json")):
        if not _EMBEDDED_BPE:
            _EMBEDDED_BPE.append(train_embedded_tokenizer(tempfile.mkdtemp(prefix="embedded_bpe_")))
        shutil.copytree(_EMBEDDED_BPE[0], path, dirs_exist_ok=True)
    return str(path)


def train(tmp, *overrides, nproc=1, name="run", check=True):
    """Run a short embedded-default job; returns (stdout+stderr, {step: loss})."""
    embedded_tokenizer_at(tmp / "tokenizer")
    args = local_command(
        "--job.config_file",
        "train_configs/embedded_default.toml",
        "--job.dump_folder",
        str(tmp / name),
        "--model.hf_assets_path",
        str(tmp / "tokenizer"),
        "--metrics.log_freq",
        "1",
        "--training.seq_len",
        "64",
        "--training.local_batch_size",
        "4",
        "--training.steps",
        "4",
        "--validation.seq_len",
        "64",
        "--lr_scheduler.warmup_steps",
        "2",
        "--validation.no-enable",
        "--checkpoint.no-enable",
        *overrides,
        nproc=nproc,
    )
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    log = out.stdout + out.stderr
    if check:
        assert out.returncode == 0, log[-4000:]
    losses = {}
    for step, loss in STEP.findall(log):
        losses.setdefault(int(step), float(loss))
    return log, losses


@pytest.fixture(scope="session")
def embedded_tokenizer_dir(tmp_path_factory):
    """The embedded default's byte-level BPE, trained the way scripts/train_tokenizer.py does (a
    child pytest is handed its parent's through PREFIX_TITAN_TEST_TOKENIZER)."""
    from prefix_titan.tokenizer import train_embedded_tokenizer

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


def pytest_report_header(config):
    return f"test seed base: {SEED} (set PREFIX_TITAN_TEST_SEED to change it)"


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
    from prefix_titan.tokenizer import convert_llama3_tokenizer

    return convert_llama3_tokenizer(str(tmp_path_factory.mktemp("llama3_tokenizer")))


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
        ObjectiveSpec("prefix", 0.5, False, "prefix"),
        ObjectiveSpec("prefix", 0.5, True, "vocab"),
    )
    return {s.normalize: (s, build_target_table(llama3_texts, s)) for s in specs}
