"""Train the embedded default's byte-level BPE on the embedded corpus (deterministic).

python scripts/train_tokenizer.py [--out assets/embedded_tokenizer] [--vocab-size 4096]
"""

from __future__ import annotations

import argparse
import hashlib
import pathlib

from prefix_titan.data.corpus import EMBEDDED_VOCAB_SIZE
from prefix_titan.data.tokenizers import BOS, EOS, train_embedded_tokenizer
from prefix_titan.runs.cli import Parser

FEWEST = 256 + len((BOS, EOS))
"""The byte alphabet and the special tokens train_embedded_tokenizer adds: a smaller --vocab-size
would still get all of them"""


def main() -> None:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="assets/embedded_tokenizer")
    p.add_argument("--vocab-size", type=int, default=EMBEDDED_VOCAB_SIZE)
    a = p.parse_args()
    if a.vocab_size < FEWEST:
        p.error(
            f"--vocab-size must be a whole number >= {FEWEST} (the 256 byte tokens and the "
            f"special tokens {BOS}, {EOS}); got {a.vocab_size}"
        )
    try:
        out = train_embedded_tokenizer(a.out, a.vocab_size)
    except ValueError as e:  # more tokens than the corpus has merges for
        p.error(f"--vocab-size: {e}")
    digest = hashlib.sha256((pathlib.Path(out) / "tokenizer.json").read_bytes()).hexdigest()[:16]
    print(f"wrote {out}/tokenizer.json (sha256 {digest}...)")


if __name__ == "__main__":
    main()
