import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from prefix_titan.train import local_command  # noqa: E402

STEP = re.compile(r"step:\s+(\d+)\s+loss:\s+([-\d.naif]+)")
CE = re.compile(r"step:\s+(\d+)\s+plain_ce:\s+([-\d.naif]+)")
VAL = re.compile(r"validate step:\s+(\d+)\s+plain_ce:\s+([-\d.naif]+)\s+perplexity")


def train(tmp, *overrides, nproc=1, name="run", check=True):
    """Run a short embedded-default job; returns (stdout+stderr, {step: loss})."""
    args = local_command(
        "--job.config_file", "train_configs/embedded_default.toml",
        "--job.dump_folder", str(tmp / name), "--model.hf_assets_path", str(tmp / "tokenizer"),
        "--metrics.log_freq", "1", "--metrics.disable_color_printing",
        "--training.seq_len", "64", "--training.local_batch_size", "4", "--training.steps", "4",
        "--validation.seq_len", "64",
        "--lr_scheduler.warmup_steps", "2", "--validation.no-enable", "--checkpoint.no-enable",
        *overrides, nproc=nproc,
    )
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(args, cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    log = out.stdout + out.stderr
    if check:
        assert out.returncode == 0, log[-4000:]
    losses = {}
    for step, loss in STEP.findall(log):
        losses.setdefault(int(step), float(loss))  # with 2 ranks both log the same global value
    return log, losses


@pytest.fixture(scope="session")
def embedded_tokenizer_dir(tmp_path_factory):
    """The embedded default's byte-level BPE, trained the way scripts/train_tokenizer.py does."""
    from prefix_titan.tokenizer import train_embedded_tokenizer

    return train_embedded_tokenizer(str(tmp_path_factory.mktemp("embedded_tokenizer")))


@pytest.fixture(scope="session")
def bpe_texts(embedded_tokenizer_dir):
    """Decoded texts of a real BPE vocabulary (None for special / non-ASCII tokens)."""
    from tokenizers import Tokenizer

    from prefix_titan.targets import token_texts

    return token_texts(Tokenizer.from_file(os.path.join(embedded_tokenizer_dir, "tokenizer.json")))
