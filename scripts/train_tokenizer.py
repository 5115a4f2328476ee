"""Train the embedded default's byte-level BPE on the embedded corpus (deterministic).

python scripts/train_tokenizer.py [--out assets/embedded_tokenizer] [--vocab-size 4096]
"""

from __future__ import annotations

import argparse
import hashlib
import pathlib

from prefix_titan.data.corpus import EMBEDDED_VOCAB_SIZE
from prefix_titan.data.tokenizers import train_embedded_tokenizer


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default="assets/embedded_tokenizer")
    p.add_argument("--vocab-size", type=int, default=EMBEDDED_VOCAB_SIZE)
    a = p.parse_args()
    out = train_embedded_tokenizer(a.out, a.vocab_size)
    digest = hashlib.sha256((pathlib.Path(out) / "tokenizer.json").read_bytes()).hexdigest()[:16]
    print(f"wrote {out}/tokenizer.json (sha256 {digest}...)")


if __name__ == "__main__":
    main()
