"""How much target mass the gold token keeps under support = "vocab" vs "prefix", for the τ sweep.

    python scripts/vocab_support_mass.py --vocab-file tokenizer.model [--vocab 128256] [--token " personality"]
    python scripts/vocab_support_mass.py --hf-assets-path DIR [--token ...]

--vocab-file takes a tiktoken rank file (Meta's original/tokenizer.model for Llama 3).
"""

from __future__ import annotations

import argparse
import os

from prefix_titan.objectives import (
    SUPPORTS,
    TAU_SWEEP,
    ObjectiveSpec,
    build_target_table,
    describe_target,
    tiktoken_texts,
    token_texts,
)
from prefix_titan.runs.cli import Parser

LLAMA3_VOCAB = 128256


def rank_file_ids(path: str) -> int:
    """Ids a tiktoken rank file uses: one past its largest rank."""
    with open(path) as f:
        return 1 + max((int(line.split()[1]) for line in f if line.strip()), default=-1)


def _example(texts: list) -> str:
    """A token of the vocabulary to name in a refusal: a space and four letters or more, where
    there is one."""
    words = [t for t in texts if t and t[:1] == " " and t[1:].isalpha() and len(t) > 4]
    return words[len(words) // 2] if words else next(t for t in texts if t)


def main() -> None:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--vocab-file")
    src.add_argument("--hf-assets-path")
    p.add_argument(
        "--vocab", type=int, default=None, help="model vocab size (default: the tokenizer's)"
    )
    p.add_argument(
        "--token",
        default=" personality",
        help="the gold token's text (default: ' personality', a Llama-3 token; give one of "
        "another vocabulary's)",
    )
    a = p.parse_args()
    if a.vocab_file:
        if not os.path.isfile(a.vocab_file):
            p.error(
                f"--vocab-file {a.vocab_file}: not a file (a tiktoken rank file, e.g. Meta's "
                "original/tokenizer.model)"
            )
        try:
            ids = rank_file_ids(a.vocab_file)
        except (ValueError, IndexError):
            p.error(
                f"--vocab-file {a.vocab_file}: not a tiktoken rank file "
                "(a line '<base64 bytes> <id>' per token)"
            )
        vocab = LLAMA3_VOCAB if a.vocab is None else a.vocab
    else:
        from tokenizers import Tokenizer

        path = os.path.join(a.hf_assets_path, "tokenizer.json")
        if not os.path.isfile(path):
            p.error(f"--hf-assets-path {a.hf_assets_path}: no tokenizer.json there")
        tok = Tokenizer.from_file(path)
        ids = tok.get_vocab_size(with_added_tokens=True)
        vocab = ids if a.vocab is None else a.vocab
    if vocab < max(ids, 1):
        default = " (the default)" if a.vocab is None else ""
        p.error(
            f"--vocab must be a whole number >= {max(ids, 1):,}, the tokenizer's size (the "
            f"model's vocabulary holds every token id); got {vocab}{default}"
        )
    texts = tiktoken_texts(a.vocab_file, vocab) if a.vocab_file else token_texts(tok, vocab)
    if a.token not in texts:
        p.error(
            f"--token {a.token!r}{' (the default, a Llama-3 token)' if a.token == ' personality' else ''}"
            " is not a token of the vocabulary: give the text of one of its ASCII, non-special "
            f"tokens (e.g. {_example(texts)!r})"
        )
    gold = texts.index(a.token)
    # The gold's row depends only on its prefix set and on V: build the tables over a vocabulary
    # where only that set has text (same V), which takes milliseconds instead of seconds.
    texts = [t if t is not None and a.token.startswith(t) else None for t in texts]
    print(f"gold {a.token!r} (id {gold}), V = {len(texts)}: gold-token probability\n")
    print(
        "| τ | "
        + " | ".join(f"{'norm' if n else 'unnorm'}, {s}" for n in (False, True) for s in SUPPORTS)
        + " |"
    )
    print("|---:|" + "---:|" * 4)
    for tau in TAU_SWEEP:
        cells = []
        for normalize in (False, True):
            for support in SUPPORTS:
                table = build_target_table(texts, ObjectiveSpec("prefix", tau, normalize, support))
                info = describe_target(table, texts, gold)
                cells.append(f"{next(e['prob'] for e in info['entries'] if e['id'] == gold):.3g}")
        print(f"| {tau} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
