"""The run's tokenizer (the TrainSpec's tokenizer hook): torchtitan's HF tokenizer, after making
sure the embedded default has its BPE (data/tokenizers.py)."""

from __future__ import annotations

import os

from torchtitan.components.tokenizer import build_hf_tokenizer
from torchtitan.tools.logging import logger

from ..data.tokenizers import train_embedded_tokenizer
from .checks import relative_hint
from .datasets import EMBEDDED_DATASETS

EMBEDDED_TOKENIZER = "./assets/embedded_tokenizer"
"""Where the embedded default keeps its BPE (train_configs/embedded_default.toml): the one place a
run creates a missing tokenizer by itself."""


def build_tokenizer(job_config):
    """torchtitan's HF tokenizer. An embedded-corpus run whose model.hf_assets_path is the
    documented EMBEDDED_TOKENIZER and holds no tokenizer yet trains the embedded BPE there first;
    any other path without tokenizer.json is refused (a typo must not create a new tokenizer)."""
    path = job_config.model.hf_assets_path
    if not os.path.exists(os.path.join(path, "tokenizer.json")):
        embedded = job_config.training.dataset in EMBEDDED_DATASETS
        if embedded and os.path.abspath(path) == os.path.abspath(EMBEDDED_TOKENIZER):
            logger.info(
                f"No tokenizer at {path} yet (so the warning above that it does not exist is "
                f"expected on a first run): training the embedded byte-level BPE there"
            )
            train_embedded_tokenizer(path)
        elif embedded:
            raise ValueError(
                f"model.hf_assets_path {path!r} holds no tokenizer.json{relative_hint(path)}. The "
                f"embedded BPE is created by itself only at {EMBEDDED_TOKENIZER}; to create it at "
                f"{path!r}, run python scripts/train_tokenizer.py --out {path}"
            )
        else:
            raise ValueError(
                f"model.hf_assets_path {path!r} holds no tokenizer.json{relative_hint(path)}: get "
                f"the Llama-3 tokenizer there with python scripts/download_tokenizer.py --source "
                f"llama-models --out {path}"
            )
    return build_hf_tokenizer(job_config)
