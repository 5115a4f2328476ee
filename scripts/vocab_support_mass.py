"""How much target mass the gold token keeps under support = "vocab" vs "prefix", for the τ sweep.

    python scripts/vocab_support_mass.py --vocab-file tokenizer.model [--vocab 128256] [--token " personality"]
    python scripts/vocab_support_mass.py --hf-assets-path DIR [--token ...]

--vocab-file takes a tiktoken rank file (Meta's original/tokenizer.model for Llama 3).
"""

from __future__ import annotations

import argparse

from prefix_titan.objectives import (
    SUPPORTS,
    TAU_SWEEP,
    ObjectiveSpec,
    build_target_table,
    describe_target,
    tiktoken_texts,
    token_texts,
)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--vocab-file")
    src.add_argument("--hf-assets-path")
    p.add_argument(
        "--vocab", type=int, default=None, help="model vocab size (default: the tokenizer's)"
    )
    p.add_argument("--token", default=" personality")
    a = p.parse_args()
    if a.vocab_file:
        texts = tiktoken_texts(a.vocab_file, a.vocab or 128256)
    else:
        from tokenizers import Tokenizer

        texts = token_texts(Tokenizer.from_file(f"{a.hf_assets_path}/tokenizer.json"), a.vocab)
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
