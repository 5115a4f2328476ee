"""Print the training target of one gold token:

    python -m prefix_titan.targets --hf-assets-path DIR --token " personality" --tau 0.5 [--json]

The targets themselves are built by the objectives floor (objectives/families.py).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import traceback

from .objectives.families import (
    FAMILIES,
    FamilyError,
    build_target_table,
    canonical_options,
    describe_objective,
    family_reads,
)
from .objectives.spec import TARGET, ObjectiveSpec
from .objectives.table import describe_target, token_texts
from .runs.cli import Parser, path_arg


def add_target_options(parser: argparse.ArgumentParser, spec_class=ObjectiveSpec) -> list[str]:
    """One option per setting the target depends on (the spec's TARGET fields, the family aside:
    --objective): a switch for a boolean, the allowed values where they are a closed list.
    Returns the field names."""
    names = []
    for f in spec_class.fields_of(TARGET):
        if f.name == "name":
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            parser.add_argument(flag, dest=f.name, action="store_true", default=f.default)
        else:
            kind = type(f.default) if f.default is not None else str
            parser.add_argument(
                flag, dest=f.name, type=kind, default=f.default, choices=f.metadata["choices"]
            )
        names.append(f.name)
    return names


def _main(argv: list[str] | None = None) -> None:
    from tokenizers import Tokenizer

    p = Parser(
        prog="python -m prefix_titan.targets",
        description="Print the training target of one gold token.",
    )
    p.add_argument(
        "--hf-assets-path", required=True, type=path_arg, help="folder holding tokenizer.json"
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--token", help='exact text of one token, e.g. " personality"')
    which.add_argument("--token-id", type=int)
    p.add_argument(
        "--objective",
        default="prefix",
        help=f'{", ".join(FAMILIES)}, or a family\'s import path "module:function"',
    )
    options = add_target_options(p)
    p.add_argument(
        "--vocab-size", type=int, default=None, help="model vocab (default: tokenizer's)"
    )
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)

    spec = ObjectiveSpec(name=a.objective, **{name: getattr(a, name) for name in options})
    try:
        spec.validate()
        spec.options = canonical_options(spec)  # as a run records them
        path = os.path.join(a.hf_assets_path, "tokenizer.json")
        if not os.path.isfile(path):
            raise ValueError(
                f"--hf-assets-path {a.hf_assets_path}: no tokenizer.json there (the folder a "
                "run's [model] hf_assets_path names, e.g. assets/embedded_tokenizer, which "
                "`python scripts/train_tokenizer.py` or the embedded default's first training "
                "makes)"
            )
        try:
            tok = Tokenizer.from_file(path)
        except Exception as e:  # tokenizers' parse error names no file
            raise ValueError(
                f"{path} is not a tokenizer the tokenizers library reads: {e}"
            ) from None
        if a.vocab_size is not None and a.vocab_size < tok.get_vocab_size():
            raise ValueError(
                f"--vocab-size {a.vocab_size}: the tokenizer has {tok.get_vocab_size()} tokens, "
                "and the model's vocabulary holds every token id: give at least that (a flavor's "
                "vocab_size), or leave it out for the tokenizer's own"
            )
        texts = token_texts(tok, a.vocab_size)
    except Exception as e:  # bad settings (ValueError), a missing file; tokenizers raises Exception
        p.refuse(str(e))
    if a.token == "":
        p.error("--token is empty: give a token's text (e.g. ' which'), or an id with --token-id")
    if a.token is not None and "\u2581" in a.token:  # a SentencePiece piece, as its vocab spells it
        p.error(
            f"--token {a.token!r} is spelled as a SentencePiece vocabulary spells a word start "
            f"(\u2581 for a space); give the token's text: --token {a.token.replace(chr(0x2581), ' ')!r}"
        )
    if a.token is not None and not a.token.isascii():
        p.error(
            f"--token {a.token!r} holds non-ASCII characters: the data has every one removed, so "
            "no training target is such a token (the tables cover ASCII tokens only)"
        )
    if a.token is not None:
        ids = [i for i, t in enumerate(texts) if t == a.token]
        special = tok.token_to_id(a.token)
        if not ids and special is not None and texts[special] is None:
            p.error(
                f"{a.token!r} is a special token (id {special}), not text: no token's text is a "
                f"prefix of it; its row: --token-id {special}"
            )
        if not ids:
            pieces = [
                (i, texts[i] if i < len(texts) and texts[i] is not None else tok.decode([i]))
                for i in tok.encode(a.token, add_special_tokens=False).ids
            ]
            p.error(
                f"{a.token!r} is not one ASCII vocabulary token; it tokenizes as "
                + " + ".join(f"{t!r} (id {i})" for i, t in pieces)
                + ". Pass one of those with --token, or an id with --token-id."
            )
        gold = ids[0]
    else:
        gold = a.token_id
        if not 0 <= gold < len(texts):
            p.error(f"--token-id must be in [0, {len(texts)}); got {gold}")
    start = time.perf_counter()
    try:
        table = build_target_table(texts, spec)
    except FamilyError as e:  # the family's own code: its traceback, then what it raised
        traceback.print_exception(e.__cause__)
        p.refuse(str(e))
    except ValueError as e:
        p.refuse(str(e))
    info = describe_target(table, texts, gold)
    info["table_build_seconds"] = round(time.perf_counter() - start, 3)
    reads = family_reads(spec)  # (None: a family that does not say reads any shared setting)
    info["spec"] = {
        k: v
        for k, v in spec.__dict__.items()
        if reads is None or k not in spec.shared() or k in reads
    }
    if a.json:
        print(json.dumps(info, indent=2))
        return
    shown = (
        repr(info["gold_text"])
        if info["gold_text"] is not None
        else f"{tok.id_to_token(gold)!r} (special, or not ASCII: no text in the tables)"
    )
    print(f"gold {info['gold_id']} {shown}   objective {describe_objective(spec)}")
    for r in info["entries"]:
        print(f"  {r['id']:>7}  {r['prob']:.6g}  {r['text']!r}")
    print(
        f"  background: {info['background_per_token']:.6g} on each of "
        f"{info['background_tokens']} other tokens (mass {info['background_mass']:.6g})"
    )
    print(f"  total {info['total']:.6f}; table built in {info['table_build_seconds']} s")


if __name__ == "__main__":
    _main()
