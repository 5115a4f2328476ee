"""Tokenizers: the run's HF tokenizer, and the byte-level BPE trained on the embedded corpus.

Experiments load the Llama-3 tokenizer from `model.hf_assets_path` through torchtitan's own
`HuggingFaceTokenizer`. The embedded default trains a small byte-level BPE deterministically on
the embedded corpus's training split (`scripts/train_tokenizer.py`, or automatically the first
time an embedded-corpus run finds no tokenizer at its `hf_assets_path`).
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile

from torchtitan.components.tokenizer import build_hf_tokenizer
from torchtitan.tools.logging import logger

from .corpus import EMBEDDED_VOCAB_SIZE, embedded_split
from .data import EMBEDDED_DATASETS

BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"


def current_umask() -> int:
    """The process's umask (reading it means setting it: it is put back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_tokenizer_files(out_dir: str, tokenizer, config: dict) -> str:
    """tokenizer.json and tokenizer_config.json for a `tokenizers.Tokenizer`, each written to a
    temporary name and renamed (ranks racing to create it never read a half file), with the
    modes the umask gives new files."""
    os.makedirs(out_dir, exist_ok=True)
    for name, text in (
        ("tokenizer.json", tokenizer.to_str()),
        ("tokenizer_config.json", json.dumps(config, indent=2)),
    ):
        fd, tmp = tempfile.mkstemp(dir=out_dir)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, os.path.join(out_dir, name))
    return out_dir


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
    config = {"bos_token": BOS, "eos_token": EOS, "add_bos_token": False, "add_eos_token": False}
    return write_tokenizer_files(out_dir, tok, config)


LLAMA3_EXTRA = 'pip install -e ".[llama3]"'


def llama3_tokenizer_files():
    """(tiktoken rank file, pre-tokenizer pattern, special tokens by id) of the Llama-3 tokenizer
    that Meta's `llama-models` package ships (PyPI, no hub access)."""
    try:
        from llama_models.llama3 import tokenizer as meta
    except ImportError as e:
        raise ImportError(f"the llama-models package is missing: {LLAMA3_EXTRA}") from e
    path = os.path.join(os.path.dirname(meta.__file__), "tokenizer.model")
    reference = meta.Tokenizer(pathlib.Path(path))
    specials = sorted(reference.special_tokens, key=reference.special_tokens.__getitem__)
    return path, meta.Tokenizer.pat_str, specials, reference


def convert_llama3_tokenizer(out_dir: str) -> str:
    """Write the Llama-3 tokenizer as tokenizer.json + tokenizer_config.json (BOS
    <|begin_of_text|> = 128000, EOS <|end_of_text|> = 128001), converted from `llama-models`'
    tiktoken ranks with transformers' TikTokenConverter; it encodes exactly like tiktoken."""
    from transformers.convert_slow_tokenizer import TikTokenConverter

    path, pattern, specials, reference = llama3_tokenizer_files()
    tok = TikTokenConverter(
        vocab_file=path, pattern=pattern, extra_special_tokens=specials
    ).converted()
    for token in specials:
        if tok.token_to_id(token) != reference.special_tokens[token]:
            raise RuntimeError(
                f"converted tokenizer puts {token} at {tok.token_to_id(token)}, "
                f"llama-models at {reference.special_tokens[token]}"
            )
    config = {
        "bos_token": BOS,
        "eos_token": EOS,
        "add_bos_token": False,
        "add_eos_token": False,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "clean_up_tokenization_spaces": False,
        "model_max_length": 131072,
    }
    return write_tokenizer_files(out_dir, tok, config)


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
                f"model.hf_assets_path {path!r} holds no tokenizer.json. The embedded BPE is created "
                f"by itself only at {EMBEDDED_TOKENIZER}; to create it at {path!r}, run "
                f"python scripts/train_tokenizer.py --out {path}"
            )
        else:
            raise ValueError(
                f"model.hf_assets_path {path!r} holds no tokenizer.json: get the Llama-3 "
                f"tokenizer there with python scripts/download_tokenizer.py --source llama-models "
                f"--out {path}"
            )
    return build_hf_tokenizer(job_config)
