"""Character probes: does the model know the letters inside its tokens? (lm-eval tasks)

Six multiple-choice tasks scored by log-likelihood, so that a 500M base model gives a measurable
signal (accuracy, and bits per byte of the gold answer):

    char_spell          which spelling is right ("p e r s o n" vs near misses)
    char_first_letter   first letter of a word
    char_last_letter    last letter of a word
    char_count          how many times a letter occurs ("how many r in strawberry")
    char_contains       does the word contain a letter (yes/no)
    char_prefix         does the word start with a given vocabulary token's text (yes/no) - the
                        relation prefix-aware smoothing trains on

The documents are generated offline and deterministically (fixed seed) from the run's tokenizer
and a word list derived from the embedded corpus: lowercase words that are one vocabulary token
(with a leading space) come first. Gold answers are balanced over positions / yes-no / counts.
The task definitions are data: prefix_titan/tasks/char_*.yaml.
"""

from __future__ import annotations

import collections
import json
import os
import re
import string

import numpy as np

PROBE_TASKS = [
    "char_spell",
    "char_first_letter",
    "char_last_letter",
    "char_count",
    "char_contains",
    "char_prefix",
]
ITEMS_PER_TASK = 600
SEED = 1234
LETTERS = string.ascii_lowercase


def derive_words(token_texts: list[str | None], min_count: int = 3) -> list[str]:
    """Lowercase words (3-14 letters) seen >= min_count times in the embedded corpus; single-token
    words (" word" is in the vocabulary) first, each group sorted."""
    from ..data.corpus import embedded_documents

    counts = collections.Counter(
        w for d in embedded_documents() for w in re.findall(r"\b[a-z]{3,14}\b", d)
    )
    words = sorted(w for w, c in counts.items() if c >= min_count)
    vocab = {t for t in token_texts if t}
    single = [w for w in words if f" {w}" in vocab]
    return single + [w for w in words if f" {w}" not in vocab]


def _spell(word: str) -> str:
    return " ".join(word)


def _near_misses(word: str, rng) -> list[str]:
    """Three distinct wrong spellings: two letters swapped, one substituted, one dropped/doubled."""
    out: list[str] = []
    while len(out) < 3:
        kind, i = len(out), int(rng.integers(len(word)))
        if kind == 0 and len(word) > 1:
            j = (i + 1) % len(word)
            chars = list(word)
            chars[i], chars[j] = chars[j], chars[i]
            cand = "".join(chars)
        elif kind == 1:
            cand = word[:i] + rng.choice([c for c in LETTERS if c != word[i]]) + word[i + 1 :]
        else:
            cand = word[:i] + word[i + 1 :] if len(word) > 3 else word + word[-1]
        if cand != word and cand not in out:
            out.append(cand)
        elif kind == 0 and len(set(word)) == 1:
            out.append(word + word[-1])
    return out


def _choice_item(query: str, gold: str, wrong: list[str], slot: int) -> dict:
    choices = list(wrong)
    choices.insert(slot, gold)
    return {"query": query, "choices": choices, "gold": slot}


def build_probes(token_texts: list[str | None], n: int = ITEMS_PER_TASK, seed: int = SEED) -> dict:
    """{task: [documents]} with `query`, `choices` (answers start with a space) and `gold`."""
    from ..objectives.families import prefix_sets

    rng = np.random.default_rng(seed)
    words = derive_words(token_texts)
    if len(words) < n:
        raise ValueError(f"only {len(words)} probe words; {n} needed per task")
    pick = words[:n]  # single-token words first
    tasks: dict[str, list[dict]] = {t: [] for t in PROBE_TASKS}
    for k, w in enumerate(pick):
        slot4, yes = k % 4, k % 2 == 0  # balanced gold positions and yes/no answers
        tasks["char_spell"].append(
            _choice_item(
                f'Spell the word "{w}" letter by letter.\nAnswer:',
                f" {_spell(w)}",
                [f" {_spell(x)}" for x in _near_misses(w, rng)],
                slot4,
            )
        )
        for task, letter, where in (
            ("char_first_letter", w[0], "first"),
            ("char_last_letter", w[-1], "last"),
        ):
            others = rng.choice([c for c in LETTERS if c != letter], size=3, replace=False)
            tasks[task].append(
                _choice_item(
                    f'What is the {where} letter of the word "{w}"?\nAnswer:',
                    f" {letter}",
                    [f" {c}" for c in others],
                    slot4,
                )
            )
        target = (
            w[int(rng.integers(len(w)))] if yes else rng.choice([c for c in LETTERS if c not in w])
        )
        tasks["char_contains"].append(
            {
                "query": f'Does the word "{w}" contain the letter "{target}"?\nAnswer:',
                "choices": [" no", " yes"],
                "gold": int(yes),
            }
        )
    # char_count: gold counts cycle 1, 2, 3 (a letter occurring once is far the most common
    # case, so picking words per item keeps the answers balanced); options are always 1-4.
    by_count: dict[int, list[tuple[str, str]]] = {1: [], 2: [], 3: []}
    for w in words:
        for letter in sorted(set(w)):
            if w.count(letter) in by_count:
                by_count[w.count(letter)].append((w, letter))
    for c, pool in by_count.items():
        if len(pool) < n // 3 + 1:
            raise ValueError(
                f"only {len(pool)} words with a letter occurring {c} times; need {n // 3 + 1}"
            )
    for k in range(n):
        count = 1 + k % 3
        w, letter = by_count[count][k // 3]
        tasks["char_count"].append(
            {
                "query": f'How many times does the letter "{letter}" appear in "{w}"?\nAnswer:',
                "choices": [" 1", " 2", " 3", " 4"],
                "gold": count - 1,
            }
        )
    # char_prefix: yes = a vocabulary token that is a proper prefix of a single-token word.
    index = {t: i for i, t in enumerate(token_texts) if t}
    sets = prefix_sets(token_texts)
    pairs = []
    for w in words:
        if f" {w}" in index:
            prefixes = [token_texts[t].strip() for t in sets[index[f" {w}"]][1:]]
            prefixes = [p for p in prefixes if 2 <= len(p) < len(w)]
            if prefixes:
                pairs.append((w, max(prefixes, key=len)))
    if len(pairs) < n:
        raise ValueError(f"only {len(pairs)} word/prefix-token pairs for char_prefix; {n} needed")
    for k, (w, p) in enumerate(pairs[:n]):
        yes = k % 2 == 0
        if not yes:  # same length, not a prefix: the start of another word
            p = next(
                o[: len(p)]
                for o in (pairs[(k + j) % len(pairs)][0] for j in range(1, len(pairs)))
                if len(o) >= len(p) and not w.startswith(o[: len(p)])
            )
        tasks["char_prefix"].append(
            {
                "query": f'Does the word "{w}" start with "{p}"?\nAnswer:',
                "choices": [" no", " yes"],
                "gold": int(yes),
            }
        )
    return tasks


def write_probes(tokenizer_dir: str, out_dir: str, n: int = ITEMS_PER_TASK) -> dict[str, str]:
    """Generate the probe documents for a tokenizer folder; returns {task: jsonl path}."""
    from tokenizers import Tokenizer

    from ..objectives.table import token_texts

    texts = token_texts(Tokenizer.from_file(os.path.join(tokenizer_dir, "tokenizer.json")))
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    for task, docs in build_probes(texts, n).items():
        paths[task] = os.path.join(out_dir, f"{task}.jsonl")
        with open(paths[task], "w") as f:
            f.writelines(json.dumps(d) + "\n" for d in docs)
    return paths
