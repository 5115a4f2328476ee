"""How well each character probe is answered without reading its word: every answer-only shortcut
of prefix_titan/evaluation/shortcuts.py on the probes built for a tokenizer, as a markdown table
(docs/probes.md shows it for the Llama-3 vocabulary; a test checks each cell within 5 points of
chance, the lookups not above it).

    python scripts/probe_shortcuts.py --hf-assets-path assets/hf/Llama-3.1-8B \
        [--words-from SHARDS | --words-file WORDS.txt] [--pairs N]

--words-file takes a word list as the package ships its own (probe_words.txt: a line
"word count" per word), e.g. one written from wordfreq's English list to see the probes as a
shard folder's word list of tens of thousands of words makes them (docs/probes.md).
--pairs N adds each probe's N best pairs of the lookups the check takes together, each pair as one
lookup keyed by both (interactions; a measurement, not a check: docs/probes.md, "What is left"),
and the best pair's range with the features dealt within the items' units (--shuffles draws),
with the share of draws at or above the best pair (p).
"""

from __future__ import annotations

import argparse
import os

from tokenizers import Tokenizer

from prefix_titan.evaluation.probes import (
    ITEMS_PER_TASK,
    PROBE_TASKS,
    SEED,
    build_probes,
    word_source,
)
from prefix_titan.evaluation.probes import (
    MIN_ITEMS as PROBE_MIN_ITEMS,
)
from prefix_titan.evaluation.shortcuts import (
    pair_lookups,
    reference,
    shortcut_table,
    token_pieces,
)
from prefix_titan.runs.cli import Parser


def main(argv: list[str] | None = None) -> None:
    p = Parser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--hf-assets-path", required=True, help="folder holding tokenizer.json")
    words = p.add_mutually_exclusive_group()
    words.add_argument("--words-from", default=None, help="a shard folder written by prepare")
    words.add_argument("--words-file", default=None, help="a word list: lines 'word count'")
    p.add_argument("--items", type=int, default=ITEMS_PER_TASK)
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--pairs", type=int, default=0, help="each probe's best N pairs of lookups")
    p.add_argument(
        "--shuffles",
        type=int,
        default=20,
        help="with --pairs: times the features are dealt within units for the no-signal level",
    )
    a = p.parse_args(argv)
    if a.items < PROBE_MIN_ITEMS:
        p.error(
            f"--items must be >= {PROBE_MIN_ITEMS} (items per probe: fewer cannot be balanced); "
            f"got {a.items}"
        )
    if a.pairs < 0:
        p.error(f"--pairs must be a whole number >= 0 (pairs of lookups per probe); got {a.pairs}")
    if a.shuffles < 0:
        p.error(
            f"--shuffles must be a whole number >= 0 (draws of the no-signal level); got {a.shuffles}"
        )
    path = os.path.join(a.hf_assets_path, "tokenizer.json")
    if not os.path.isfile(path):
        p.error(f"--hf-assets-path {a.hf_assets_path}: no tokenizer.json there")
    tok = Tokenizer.from_file(path)
    if a.words_from and os.path.isfile(a.words_from):
        p.error(f"--words-from {a.words_from!r} is a file: a word list is --words-file")
    if a.words_file and not os.path.isfile(a.words_file):
        what = (
            "a folder (a shard folder is --words-from)"
            if os.path.isdir(a.words_file)
            else "not there"
        )
        p.error(f"--words-file {a.words_file!r} is {what}: a word list file is asked for")
    try:  # the words as an evaluation's --probe-words takes them (probes.word_source)
        counts, source = word_source(a.words_from or a.words_file, tok)
    except (OSError, ValueError) as e:  # not a finished shard folder, not a word list
        p.error(f"{'--words-from' if a.words_from else '--words-file'} {e}")
    try:
        probes = build_probes(tok, a.items, a.seed, word_counts=counts, source=source)
    except ValueError as e:  # too few words for the items
        p.refuse(str(e))
    ref = reference(counts)
    pieces = token_pieces(tok)
    print(shortcut_table(probes, pieces, ref, PROBE_TASKS))
    if a.pairs:
        print("\n| probe (chance) | pair of lookups | accuracy |\n|---|---|---:|")
        for task in PROBE_TASKS:
            chance = 1 / len(probes[task][0]["choices"])
            pairs, shuffled = pair_lookups(probes[task], pieces, ref, task, a.shuffles, a.seed)
            for accuracy, one, other in pairs[: a.pairs]:
                both = f"{one.removeprefix('lookup: ')} x {other.removeprefix('lookup: ')}"
                print(f"| {task} ({chance:.2f}) | {both} | {accuracy:.3f} |")
            if shuffled:
                # the share of draws at or above the best pair, counting the pairs themselves
                p_value = (1 + sum(s >= pairs[0][0] for s in shuffled)) / (1 + len(shuffled))
                level = f"{min(shuffled):.3f}-{max(shuffled):.3f} (p {p_value:.2f})"
                print(
                    f"| {task} ({chance:.2f}) | the best of {len(pairs)}, features dealt within"
                    f" units ({len(shuffled)} draws) | {level} |"
                )


if __name__ == "__main__":
    main()
