"""The tokenizer files a run reads (`model.hf_assets_path`): the byte-level BPE trained on the
embedded corpus, and Llama-3's converted from Meta's `llama-models` package.

The embedded default trains a small byte-level BPE deterministically on the embedded corpus's
training split (`scripts/train_tokenizer.py`, or automatically the first time an embedded-corpus
run finds no tokenizer at its `hf_assets_path`: titan/tokenizer.py). No torchtitan here.
"""

from __future__ import annotations

import json
import os
import pathlib

from ..runs.folder import write_atomically
from .corpus import EMBEDDED_VOCAB_SIZE, embedded_split

BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"
SPECIAL_TEXT = "as text"
"""How a document's text that spells a special token is encoded (recorded in the shards'
manifest): as the text it is (text_tokenizer)"""


def no_boundaries(folder: str) -> str:
    """Why a tokenizer folder whose tokenizer has neither a BOS nor an EOS token cannot make or
    read training data (said after the setting that names the folder)."""
    has_config = os.path.isfile(os.path.join(folder, "tokenizer_config.json"))
    return (
        f"{folder!r}: its tokenizer has neither a BOS nor an EOS token (torchtitan reads them "
        "from tokenizer_config.json's bos_token and eos_token, and the folder holds "
        + ("one naming neither" if has_config else "no tokenizer_config.json")
        + "): every document would run into the next with no token between them. Add a "
        'tokenizer_config.json naming them, e.g. {"bos_token": "<s>", "eos_token": "</s>"} '
        "(tokens of its vocabulary; the special tokens a tokenizers.Tokenizer was trained with)"
    )


def older_encoding(path: str) -> str:
    """What is said of shards at `path` whose manifest predates SPECIAL_TEXT (read, not refused:
    every arm reading them reads the same tokens)."""
    return (
        f"{path} was prepared before documents' text that spells a special token "
        "(<|end_of_text|>, ...) was encoded as text: such a document holds that token there (an "
        "EOS and a BOS inside it, which document masking cuts at), where the streamed dataset and "
        "shards prepared now hold the text. Every arm reading these shards reads the same "
        "tokens; prepare into a fresh --out for the present encoding"
    )


def text_tokenizer(tokenizer):
    """`tokenizer` (torchtitan's HuggingFaceTokenizer, or a `tokenizers.Tokenizer`) set to encode
    a document's text that spells a special token (`<|end_of_text|>`, `<|eot_id|>`, ...) as the
    text it is, as Meta's Llama-3 reference encodes documents (no special token allowed in
    text): BOS and EOS stand only where the loader puts them around each document. Matching them
    in the text put an EOS and a BOS inside a document that quotes a chat template, which
    document masking then cut in two. Returned, changed in place (the hash of its serialized
    form, which the shards record, is unchanged)."""
    getattr(tokenizer, "tokenizer", tokenizer).encode_special_tokens = True
    return tokenizer


def write_tokenizer_files(out_dir: str, tokenizer, config: dict) -> str:
    """tokenizer.json and tokenizer_config.json for a `tokenizers.Tokenizer`, each written
    atomically (runs.folder.write_atomically: ranks racing to create it never read a half file,
    and a killed writer leaves no temporary file behind)."""
    os.makedirs(out_dir, exist_ok=True)
    for name, text in (
        ("tokenizer.json", tokenizer.to_str()),
        ("tokenizer_config.json", json.dumps(config, indent=2)),
    ):
        write_atomically(os.path.join(out_dir, name), text)
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
    if tok.get_vocab_size() < vocab_size:  # the corpus ran out of pairs to merge
        raise ValueError(
            f"the embedded corpus gives at most {tok.get_vocab_size()} tokens (every pair of its "
            f"text merged): ask for {tok.get_vocab_size()} or fewer, not {vocab_size}"
        )
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
