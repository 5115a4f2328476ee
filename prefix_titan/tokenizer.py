"""Tokenizers: the run's HF tokenizer, and the byte-level BPE trained on the embedded corpus.

Experiments load the Llama-3 tokenizer from `model.hf_assets_path` through torchtitan's own
`HuggingFaceTokenizer`. The embedded default trains a small byte-level BPE deterministically on
the embedded corpus's training split (`scripts/train_tokenizer.py`, or automatically the first
time an embedded-corpus run finds no tokenizer at its `hf_assets_path`).
"""

from __future__ import annotations

import json
import os
import tempfile

from torchtitan.components.tokenizer import build_hf_tokenizer
from torchtitan.tools.logging import logger

from .corpus import EMBEDDED_VOCAB_SIZE, embedded_split
from .data import EMBEDDED_DATASETS

BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"


def train_embedded_tokenizer(out_dir: str, vocab_size: int = EMBEDDED_VOCAB_SIZE) -> str:
    """Train the byte-level BPE on the embedded corpus and write tokenizer.json (+ config)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(embedded_split("train"), trainer=trainer)
    os.makedirs(out_dir, exist_ok=True)
    config = {"bos_token": BOS, "eos_token": EOS, "add_bos_token": False, "add_eos_token": False}
    # Write to temporary names then rename, so ranks racing to create it never read a half file.
    for name, text in (
        ("tokenizer.json", tok.to_str()),
        ("tokenizer_config.json", json.dumps(config)),
    ):
        fd, tmp = tempfile.mkstemp(dir=out_dir)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, os.path.join(out_dir, name))
    return out_dir


def build_tokenizer(job_config):
    """torchtitan's HF tokenizer, creating the embedded one first if an embedded-corpus run has none."""
    path = job_config.model.hf_assets_path
    if job_config.training.dataset in EMBEDDED_DATASETS and not os.path.exists(
        os.path.join(path, "tokenizer.json")
    ):
        logger.info(f"No tokenizer at {path}: training the embedded byte-level BPE there")
        train_embedded_tokenizer(path)
    return build_hf_tokenizer(job_config)
