"""Answer-only shortcuts of the character probes: how well each probe is answered without reading
its word (or by reading only the word's length). Each shortcut scores the choices and picks the
best; a tie gives the gold's share of it (a random pick among the tied). A probe measures
characters only if every shortcut stays at chance (tests/test_probes.py: within 5 points).

    python scripts/probe_shortcuts.py --hf-assets-path DIR   (a table, as in docs/probes.md)

English letter priors are counted over the running words of the embedded corpus (every
occurrence, any position / first / last letter); the probe's own gold prior is the distribution of
letters over the probe's gold answers.
"""

from __future__ import annotations

import collections
import math
import string

LETTERS = string.ascii_lowercase
SHORTCUTS = (
    "alphabetically first choice",
    "alphabetically last choice",
    "shortest choice",
    "fewest tokens",
    "English letters, any position",
    "English letters, first position",
    "English letters, last position",
    "the probe's gold-letter prior",
    "best fixed position",
    "always yes",
    "queried letter is common (yes/no, count)",
    "word length (yes/no, count)",
)


def letter_priors(word_counts: collections.Counter) -> dict[str, dict[str, float]]:
    """{"any" | "first" | "last": {letter: probability}} over the running words (add-one)."""
    out = {}
    for where, pick in (("any", lambda w: w), ("first", lambda w: w[0]), ("last", lambda w: w[-1])):
        c = collections.Counter()
        for w, n in word_counts.items():
            for letter in pick(w):
                c[letter] += n
        total = sum(c.values()) + len(LETTERS)
        out[where] = {letter: (c[letter] + 1) / total for letter in LETTERS}
    return out


def _letters(choice: str) -> str:
    return "".join(ch for ch in choice if ch in LETTERS)


def _pick(scores: list[float], gold: int) -> float:
    """The credit of picking the highest score: 1, 0, or the gold's share of a tie."""
    best = max(scores)
    tied = [i for i, s in enumerate(scores) if s == best]
    return 1 / len(tied) if gold in tied else 0.0


def _log(p: dict[str, float], text: str) -> float:
    """log p summed exactly (fsum): the same letters in another order score the same."""
    return math.fsum(math.log(p[ch]) for ch in text)


def _above_median(values: list[float]) -> list[bool]:
    median = sorted(values)[len(values) // 2]
    return [v >= median for v in values]


def _rank_answers(values: list[float], answers: list[int]) -> list[int]:
    """Each value's answer by rank: the values cut into len(answers) equal groups, in order."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0] * len(values)
    for rank, i in enumerate(order):
        out[i] = answers[rank * len(answers) // len(values)]
    return out


def shortcut_accuracies(items: list[dict], encode, priors) -> dict[str, float | None]:
    """{shortcut: accuracy} on one probe's items (None where the shortcut does not apply);
    `encode(text) -> token ids`, `priors` from letter_priors."""
    n = len(items)
    gold_letters = collections.Counter(
        ch for it in items for ch in _letters(it["choices"][it["gold"]])
    )
    total = sum(gold_letters.values()) + len(LETTERS)
    gold_prior = {c: (gold_letters[c] + 1) / total for c in LETTERS}
    scorers = {
        "alphabetically first choice": lambda c: [-ord(ch) for ch in c] + [0] * (64 - len(c)),
        "alphabetically last choice": lambda c: [ord(ch) for ch in c],
        "shortest choice": lambda c: -len(c),
        "fewest tokens": lambda c: -len(encode(c)),
        "English letters, any position": lambda c: _log(priors["any"], _letters(c)),
        "English letters, first position": lambda c: _log(priors["first"], _letters(c)[:1]),
        "English letters, last position": lambda c: _log(priors["last"], _letters(c)[-1:]),
        "the probe's gold-letter prior": lambda c: _log(gold_prior, _letters(c)),
    }
    out: dict[str, float | None] = {}
    for name, score in scorers.items():
        out[name] = sum(_pick([score(c) for c in it["choices"]], it["gold"]) for it in items) / n
    k = len(items[0]["choices"])
    out["best fixed position"] = max(sum(it["gold"] == j for it in items) / n for j in range(k))
    yes_no = items[0]["choices"] == [" no", " yes"]
    out["always yes"] = sum(it["gold"] == 1 for it in items) / n if yes_no else None
    counting = items[0]["choices"][0] == " 0"
    queried = [it.get("letter") for it in items]
    if (yes_no or counting) and all(queried):
        common = [sum(math.log(priors["any"][ch]) for ch in q) / len(q) for q in queried]
        lengths = [len(it["word"]) for it in items]
        for name, values in (
            ("queried letter is common (yes/no, count)", common),
            ("word length (yes/no, count)", lengths),
        ):
            if yes_no:
                guesses = [int(b) for b in _above_median(values)]
            else:
                guesses = _rank_answers(values, list(range(k)))
            out[name] = sum(g == it["gold"] for g, it in zip(guesses, items)) / n
    else:
        out["queried letter is common (yes/no, count)"] = None
        out["word length (yes/no, count)"] = None
    return out


def shortcut_table(probes: dict[str, list[dict]], encode, priors, tasks) -> str:
    """A markdown table: a row per shortcut, a column per probe (its chance in the header)."""
    results = {t: shortcut_accuracies(probes[t], encode, priors) for t in tasks}
    chance = {t: 1 / len(probes[t][0]["choices"]) for t in tasks}
    head = "| shortcut | " + " | ".join(f"{t} (chance {chance[t]:.2f})" for t in tasks) + " |"
    lines = [head, "|---|" + "---:|" * len(tasks)]
    for name in SHORTCUTS:
        cells = ["-" if results[t][name] is None else f"{results[t][name]:.3f}" for t in tasks]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
