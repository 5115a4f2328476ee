"""The run's tokenizer (the TrainSpec's tokenizer hook): torchtitan's HF tokenizer, after making
sure the embedded default has its BPE (data/tokenizers.py)."""

from __future__ import annotations

import os

from torchtitan.components.tokenizer import build_hf_tokenizer
from torchtitan.tools.logging import logger

from ..data.tokenizers import text_tokenizer, train_embedded_tokenizer
from .checks import tokenizer_missing


def build_tokenizer(job_config):
    """torchtitan's HF tokenizer. An embedded-corpus run whose model.hf_assets_path is the
    documented EMBEDDED_TOKENIZER and holds no tokenizer yet trains the embedded BPE there first;
    any other path without tokenizer.json is refused (a typo must not create a new tokenizer).
    Text that spells a special token is encoded as text (data/tokenizers.py: text_tokenizer),
    as prepare encodes the shards."""
    path = job_config.model.hf_assets_path
    if (problem := tokenizer_missing(job_config)) is not None:
        raise ValueError(problem)
    if not os.path.exists(os.path.join(path, "tokenizer.json")):  # the embedded default's
        logger.info(
            f"No tokenizer at {path} yet (so the warning above that it does not exist is "
            f"expected on a first run): training the embedded byte-level BPE there"
        )
        train_embedded_tokenizer(path)
    return text_tokenizer(build_hf_tokenizer(job_config))
