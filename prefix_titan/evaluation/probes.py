"""Character probes: does the model know the letters inside its tokens? (lm-eval tasks)

Six multiple-choice tasks scored by log-likelihood, k-shot (SHOTS fixed exemplars, never probed):

    char_spell          which spelling is the word's (" a p p l e" against three other words)
    char_first_letter   the first letter of a word                       (prefix-shaped)
    char_last_letter    the last letter of a word
    char_count          how many times a letter occurs (3 choices, from what its known letters hold)
    char_contains       does the word contain a letter (yes/no)
    char_prefix         does the word start with a vocabulary token's text (yes/no) (prefix-shaped)

Each has a content-free twin, `<task>_blank`: the same items with the word replaced by BLANK
("calibrate before use"): what the model answers without reading the word.

Every answer-only shortcut is made useless by construction, not by hope:
- the word stands after a space in the question (`the word apple`), so the model reads it as the
  tokens of " apple", the tokenization each item records;
- words are sampled (seeded) from a word list, stratified over the letter the probe asks about,
  length and token count; no letter over MAX_LETTER_SHARE of a probe, >= MIN_LETTERS of them
  (char_last_letter: in units of four words of one tail group, set of forms and word class, its
  asked letter bounded by the balance);
- letter probes: each letter is a distractor exactly three times as often as it is the gold
  answer, so P(gold | a letter is offered) = 1/4 for every letter and no letter prior helps
  (the last letter: within every tail group, `tail_group`, set of forms, `word_forms`, and
  derivational word class, `word_class`); no word whose first (last) token is the asked letter
  alone, which the answer would copy;
- past the lead (char_last_letter, char_count, char_contains): the answer never lies in the
  word's known letters (`known_mask`): its leading vocabulary prefix (`leading_prefix`: " straw"
  of " strawberry"), each later token's own leading prefix ("abilit" of "ability") and its
  inflection ending (`inflection`: "-ing", "-ed", ...), so a model that knows only those
  letters, as the prefix relation between tokens and the word's grammar give them, is at
  chance; no inflected word asks its last letter;
- char_contains: the queried letters of yes and no items have the same distribution (each letter
  queried as often with a yes as with a no); the yes word holds the letter only past its known
  letters, and never as a token alone (the question's quoted letter is that token: matching the
  two would answer it); the no word has the yes word's first letter, a length within three
  letters of its and the nearest token count (then number of unknown letters, then length), and
  no word starts with the queried letter (a reader of first letters only is at chance);
- char_count: each letter queried equally often at 0, 1 and 2 occurrences past the known letters
  by three words of one first letter that the known letters hold it alike (0 or 1 times),
  matched lengths and token counts; the choices are the counts the known letters leave possible
  (" 1", " 2", " 3" where they hold it once); no word holds the letter as a token alone; a word
  is asked about at most twice, with two letters;
- char_spell: the three distractors are the spellings of other listed words of the same length,
  first letter, token count and inflection ending, drawn uniformly from them: every choice is a real word's
  spelling and the gold is any of the four alike, so neither a lexicon, a letter model nor the
  choices' places in the word list find it, and the blank twin is at chance even for a model
  that spells every word; it is not past the lead: the distractors differ from the gold past
  its first letter, and a reader of the lead's letters finds the gold (in 95% of the items on
  Llama-3), so it credits what the prefix relation gives too;
- char_prefix: each queried prefix appears once with a yes and once with a no (a word with the
  same first letter where there is one); a yes prefix ends inside a token of the word, never at a
  token boundary, so comparing the prefix's tokens with the word's does not answer it;
- gold positions are balanced, and the items are in a seeded random order (eval's `--limit`
  draws its own seeded sample of them, --limit-seed; a blank twin the same items as its task).
shortcuts.py computes the shortcuts (answer-only scorers: alphabetical order, shortest choice,
fewest tokens, letter priors, a letter model and a lexicon of the choices, a fixed position,
always-yes; cross-validated lookups from what the word is besides its letters: length, token
count, frequency, inflection ending, letters past the lead and ending, and for the probes that
are not prefix-shaped its first letter; readers of the lead's and the ending's letters; token
copies) and tests/test_probes.py requires each within 5 points of chance (the readers of the lead: on
the probes past it; the residuals of shortcuts.RESIDUALS: under their own bounds).

Words come from a FineWeb-Edu shard folder written by prepare where one is given, otherwise
from the embedded corpus's word list, which ships with the package (probe_words.txt: counted
once from CPython 3.11.7's documentation, whose text changes between Python versions, so that
the probes are the same items on every Python). Each item records `word`, the queried `letter`
where there is one, `tokens`, the word's token count (" word", as the question holds it), `lead`
and `ending` (the letters of its leading vocabulary prefix and inflection ending), so that
results break down by them.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import json
import math
import os
import re
import string
from collections.abc import Callable, Iterable

import numpy as np

PROBE_TASKS = [
    "char_spell",
    "char_first_letter",
    "char_last_letter",
    "char_count",
    "char_contains",
    "char_prefix",
]
PREFIX_SHAPED = ("char_first_letter", "char_prefix")
"""Probes whose gold answer is a vocabulary prefix of the word: prefix targets raise such tokens'
probabilities in general, so these are reported apart from the others"""
BLANK = "N/A"
BLANK_TASKS = [f"{t}_blank" for t in PROBE_TASKS]
ITEMS_PER_TASK = 2000
SHOTS = 3
MAX_SHOTS = 8
"""The exemplar pool: each probe's exemplars come from its first units, at most this many"""
SEED = 1234
MAX_LETTER_SHARE = 0.12
MIN_ITEMS = 30
"""The fewest items a probe is built with: the builders balance their items in groups and units
that fewer cannot fill (with the embedded BPE char_spell gives one item short of any number under
30)"""
UNIT_ITEMS = {"char_last_letter": 4, "char_count": 3, "char_contains": 2, "char_prefix": 2}
"""The items a probe's design balances together (a unit: four last letters of one tail, a count
triple, a yes/no pair): a probe is built in whole units, so that any fixed answer scores its chance
exactly over them (31 items asked for give char_contains 30; a unit cut in two left 16 yes and 15
no, and "yes" always scored 0.516)"""
MIN_LETTERS = 20
MIN_COUNT = 2
"""A word is listed once it occurs this often in the source (fewer: typos and fragments)"""
SHARD_TOKENS = 20_000_000
"""Tokens of a shard folder's training split read for its words"""
LETTERS = string.ascii_lowercase
WORD = re.compile(r"\b[a-z]{3,14}\b")
QUESTIONS = {
    "char_spell": "Spell the word {w} letter by letter.",
    "char_first_letter": "What is the first letter of the word {w}?",
    "char_last_letter": "What is the last letter of the word {w}?",
    "char_count": 'How many times does the letter "{l}" appear in the word {w}?',
    "char_contains": 'Does the word {w} contain the letter "{l}"?',
    "char_prefix": 'Does the word {w} start with "{l}"?',
}
"""The word follows a space and no quote: the model reads the tokens of " word", which is what
`tokens` counts and where the token boundaries below are taken (a quote before it would be read
as part of its first token by Llama-3's pre-tokenizer)"""
YES_NO = [" no", " yes"]
COUNTS = [" 0", " 1", " 2"]
CHOICES = {
    "char_spell": 4,
    "char_first_letter": 4,
    "char_last_letter": 4,
    "char_count": len(COUNTS),
    "char_contains": len(YES_NO),
    "char_prefix": len(YES_NO),
}
"""Each probe's number of choices (its chance accuracy is one over it)"""
PAST_THE_LEAD = ("char_last_letter", "char_count", "char_contains")
"""Probes whose answer lies past the word's leading vocabulary prefix and its inflection ending:
a model that knows only the letters of those (what the prefix relation and the grammar give) is
at chance on them. char_spell is not one: its choices differ past the lead, and a reader of the
lead's letters finds the gold (docs/probes.md)"""
INFLECTIONS = ("ing", "est", "ed", "er", "es", "ly", "s")
"""The endings `inflection` recognises, longest first"""


# -- the word list ------------------------------------------------------------------------------


def count_words(texts: Iterable[str]) -> collections.Counter:
    """Lowercase words of 3-14 letters in `texts`, with their counts."""
    counts: collections.Counter = collections.Counter()
    for text in texts:
        counts.update(WORD.findall(text))
    return counts


WORDS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probe_words.txt")


def embedded_word_counts() -> collections.Counter:
    """The embedded corpus's words with their counts, as shipped in WORDS_FILE (the same on
    every Python; `corpus_word_counts` counts the running Python's own corpus)."""
    return collections.Counter(_shipped_words())


@functools.cache
def _shipped_words() -> dict[str, int]:
    return dict(read_word_list(WORDS_FILE))


def read_word_list(path: str) -> collections.Counter:
    """A word list written as WORDS_FILE is: a line "word count" per word (3-14 lowercase
    letters, a whole count >= 1), lines starting with # and blank lines skipped."""
    counts: collections.Counter = collections.Counter()
    with open(path, encoding="ascii", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if line.startswith("#") or not line.strip():
                continue
            parts = line.split()
            ok = len(parts) == 2 and WORD.fullmatch(parts[0]) and parts[1].isdigit()
            if not ok or int(parts[1]) < 1 or parts[0] in counts:
                raise ValueError(
                    f"{path}:{number}: {line.strip()[:60]!r} is not a line 'word count' with a new "
                    "word of 3-14 lowercase ASCII letters and a whole count >= 1"
                )
            counts[parts[0]] = int(parts[1])
    if not counts:
        raise ValueError(f"{path}: no words (lines 'word count')")
    return counts


def corpus_word_counts() -> collections.Counter:
    """The words of the running Python's embedded corpus, with their counts."""
    from ..data.corpus import embedded_documents

    return count_words(embedded_documents())


def write_word_list(path: str = WORDS_FILE) -> None:
    """Write the running Python's embedded corpus's word list (how WORDS_FILE was made)."""
    import platform

    counts = corpus_word_counts()
    head = (
        "# Words of 3-14 lowercase letters of the embedded corpus (prefix_titan.data.corpus) and "
        f"their counts, from CPython {platform.python_version()}: the character probes' default "
        "word list\n"
    )
    from ..runs.folder import write_atomically

    write_atomically(path, head + "".join(f"{w} {n}\n" for w, n in sorted(counts.items())))


def shard_word_counts(shard_dir: str, tokenizer, max_tokens: int = SHARD_TOKENS):
    """Words of the first `max_tokens` tokens of a shard folder's training split (decoded one
    document at a time), with their counts; the tokenizer must be the one that wrote them."""
    from ..data.shards import ShardedTokens

    tok = getattr(tokenizer, "tokenizer", tokenizer)
    tokens = ShardedTokens(shard_dir, "train")
    ids = tokens[0 : min(len(tokens), max_tokens)]
    eos = tok.token_to_id("<|end_of_text|>")
    cuts = np.flatnonzero(ids == eos) + 1 if eos is not None else np.array([], dtype=np.int64)
    documents = [d.tolist() for d in np.split(ids, cuts) if len(d)]
    return count_words(tok.decode_batch(documents, skip_special_tokens=True))


def word_pool(tokenizer, counts: collections.Counter, min_count: int = MIN_COUNT) -> dict:
    """{word: token count of " word"} of the words seen at least `min_count` times."""
    tok = getattr(tokenizer, "tokenizer", tokenizer)
    words = sorted(w for w, c in counts.items() if c >= min_count)
    encoded = tok.encode_batch([f" {w}" for w in words], add_special_tokens=False)
    return {w: len(e.ids) for w, e in zip(words, encoded)}


def word_tokens(tokenizer, counts: collections.Counter, min_count: int = MIN_COUNT) -> dict:
    """{word: the letters after which each of its tokens ends} for " word" (the space counts
    with the first token): " person" + "ality" gives (6, 11) for "personality"."""
    tok = getattr(tokenizer, "tokenizer", tokenizer)
    words = sorted(w for w, c in counts.items() if c >= min_count)
    encoded = tok.encode_batch([f" {w}" for w in words], add_special_tokens=False)
    out = {}
    for w, e in zip(words, encoded):
        ends = sorted({min(max(end - 1, 0), len(w)) for _, end in e.offsets})
        out[w] = tuple(end for end in ends if end > 0) or (len(w),)
    return out


def leading_prefix(word: str, vocab: set[str]) -> str:
    """The letters of the word's leading vocabulary prefix: the longest text p shorter than the
    word with " p" a vocabulary token (" person" of " personality", " straw" of " strawberry"); ""
    where there is none. A model that learned which tokens are prefixes of which knows these
    letters of the word (as far as it knows the shorter tokens' letters)."""
    for k in range(len(word) - 1, 0, -1):
        if f" {word[:k]}" in vocab:
            return word[:k]
    return ""


def inflection(word: str, listed: set[str]) -> str:
    """The word's inflection ending (one of INFLECTIONS) where the word is a listed word so
    inflected (a final e dropped, a consonant doubled or a y made i before it): "ing" for
    "making" and "running", "es" for "studies" (and "makes"), "ed" for "baked", "" for "glass"
    or "sing". A model that knows the
    word's grammatical form knows these letters without reading any."""
    for s in INFLECTIONS:
        if _stems(word, s) & listed:
            return s
    return ""


def _stems(word: str, ending: str) -> set[str]:
    """The words that `word` may inflect with `ending` (a final e dropped, a consonant doubled or
    a y made i before it): {"mak", "make"} for "making" and "ing"; none where the word does not
    end so or the stem would be under three letters."""
    stem = word[: -len(ending)]
    if len(stem) < 3 or not word.endswith(ending):
        return set()
    stems = {stem, stem + "e"}
    if len(stem) > 3 and stem[-1] == stem[-2]:
        stems.add(stem[:-1])
    if stem.endswith("i"):
        stems.add(stem[:-1] + "y")
    return stems


def word_forms(listed: set[str]) -> dict[str, str]:
    """{word: the endings its inflected forms in the list take, joined ("ed,ing,s" for "bake":
    baked, baking, bakes; -es counted as -s; "" for none)}. Which forms a word has tells its word
    class (a verb, an adjective that takes -ly), which a model knows from what the word means,
    and the class tells letters: most words that take -ly end in l ("final", "usual"), and a
    lookup of the forms found the last letter in 31-32% of char_last_letter's items balanced
    within tail groups alone (task version 4.1)."""
    forms: dict[str, set[str]] = collections.defaultdict(set)
    for v in listed:
        for s in INFLECTIONS:
            for w in _stems(v, s) & listed:
                forms[w].add("s" if s == "es" else s)
    return {w: ",".join(sorted(forms[w])) for w in listed}


WORD_CLASSES = {
    "noun": (
        "ation", "ition", "tion", "sion", "ment", "ness", "ity", "ance", "ence", "ship", "hood",
        "ism", "ist", "ure", "ian",
    ),
    "adjective": (
        "able", "ible", "ous", "ive", "ful", "less", "ical", "ic", "al", "ary", "ory", "ant", "ent",
    ),
    "verb": ("ize", "ise", "ify", "ate", "en"),
}  # fmt: skip
"""{word class: the derivational endings that form it}: the one list `word_class` reads. A model
knows a word's class (a noun, an adjective, a verb) from what the word means, and the ending
that forms the class tells its last letters ("-tion": n, "-ity": y, "-ous": s): a lookup of the
class alone found the last letter in 39.6% of char_last_letter's items balanced within tail
groups and forms (task version 4.2, embedded BPE; 41.2% on Llama-3); 4.3 balances within the
class too"""


def word_class(word: str) -> str:
    """The class (a key of WORD_CLASSES) of the longest derivational ending `word` ends with, three
    letters or more before it: "noun" for "kindness", "adjective" for "famous", "verb" for
    "realize", "" for a word with none ("glass", "ration")."""
    found = max(
        (s for s in _CLASS_OF if word.endswith(s) and len(word) - len(s) >= 3), key=len, default=""
    )
    return _CLASS_OF.get(found, "")


_CLASS_OF = {s: c for c, endings in WORD_CLASSES.items() for s in endings}


def known_mask(word: str, ends: tuple[int, ...], lead: str, ending: str, vocab: set[str]) -> str:
    """The word with "." for each letter that neither its lead, nor any later token's own leading
    vocabulary prefix, nor its ending gives away (a prefix target trains a continuation token
    towards its own prefixes as it does the first): with Llama-3's vocabulary "portability",
    read as " port" + "ability", has the lead "porta" and "ability" the prefix "abilit", so
    "portabilit."; "running" is "run.ing". `ends`: the letters after which each token ends
    (word_tokens)."""
    known = set(range(len(lead))) | set(range(len(word) - len(ending), len(word)))
    for start, end in zip(ends[:-1], ends[1:]):  # every token after the first
        token = word[start:end]
        for k in range(len(token) - 1, 0, -1):
            if token[:k] in vocab:
                known.update(range(start, start + k))
                break
    return "".join(c if i in known else "." for i, c in enumerate(word))


def letter_bigrams(words: Iterable[str]) -> dict[tuple[str, str], float]:
    """{(a, b): log p(b | a)} over the words' letters ("^" starts a word, "$" ends it), add-one:
    the letter model a reader of English spelling has (shortcuts.py)."""
    pairs, firsts = collections.Counter(), collections.Counter()
    for w in words:
        s = f"^{w}$"
        pairs.update(zip(s, s[1:]))
        firsts.update(s[:-1])
    symbols = len(LETTERS) + 1
    return {
        (a, b): math.log((pairs[(a, b)] + 1) / (firsts[a] + symbols))
        for a in "^" + LETTERS
        for b in LETTERS + "$"
    }


def expected_letters(mask: str, letter: str, bigrams: dict) -> float:
    """How many times a reader of the known letters (known_mask) and of English letter pairs
    (letter_bigrams) expects `letter` at the unknown places ("."): each place's probability of
    it given its known neighbours, summed."""
    total = 0.0
    for i, m in enumerate(mask):
        if m != ".":
            continue
        before = "^" if i == 0 else mask[i - 1].strip(".")
        after = "$" if i == len(mask) - 1 else mask[i + 1].strip(".")
        logs = [
            (bigrams[(before, c)] if before else 0.0) + (bigrams[(c, after)] if after else 0.0)
            for c in LETTERS
        ]
        top = max(logs)
        total += math.exp(logs[LETTERS.index(letter)] - top) / math.fsum(
            math.exp(v - top) for v in logs
        )
    return total


def known_letters(item: dict) -> str:
    """An item's known_mask: the letters of its word that the leads of its tokens and its ending
    give away, "." for the rest (see PAST_THE_LEAD)."""
    return item["known"]


# -- sampling ------------------------------------------------------------------------------------


def _bucket(n: int, edges: tuple[int, ...]) -> int:
    return sum(n >= e for e in edges)


def stratified(words, n: int, rng, letter: Callable[[str], str], tokens: dict) -> list[str]:
    """Up to n distinct words, one at a time from each stratum (the letter asked about, length
    3-5/6-8/9+, 1/2/3+ tokens) in a seeded round robin; a letter that reaches MAX_LETTER_SHARE
    of n takes no more, nor does a first letter."""
    strata = collections.defaultdict(list)
    for w in sorted(words):
        strata[(letter(w), _bucket(len(w), (6, 9)), _bucket(tokens[w], (2, 3)))].append(w)
    keys = sorted(strata)
    for k in keys:
        rng.shuffle(strata[k])
    order = [keys[i] for i in rng.permutation(len(keys))]
    limit = max(1, int(MAX_LETTER_SHARE * n))
    asked, first = collections.Counter(), collections.Counter()
    out: list[str] = []
    while len(out) < n:
        progressed = False
        for k in order:
            while strata[k] and first[strata[k][-1][0]] >= limit:
                strata[k].pop()
            if not strata[k] or asked[k[0]] >= limit:
                continue
            w = strata[k].pop()
            out.append(w)
            asked[k[0]] += 1
            first[w[0]] += 1
            progressed = True
            if len(out) == n:
                break
        if not progressed:
            break
    return out


def balanced_distractors(golds: list[str], k: int, rng, max_rounds: int = 100) -> list[list[str]]:
    """k distractors per item such that every letter is a distractor exactly k times as often as
    it is gold (no letter is more likely gold than any other when offered), none equal to the
    item's gold, none repeated within an item. The letters are dealt at random, then conflicts
    are swapped away with random other items."""
    n = len(golds)
    pool = [g for g in golds for _ in range(k)]
    rng.shuffle(pool)
    groups = [pool[i * k : (i + 1) * k] for i in range(n)]

    def conflicts(i: int) -> int:
        g = groups[i]
        return sum(x == golds[i] for x in g) + len(g) - len(set(g))

    for _ in range(max_rounds):
        bad = [i for i in range(n) if conflicts(i)]
        if not bad:
            return groups
        for i in bad:
            for _ in range(100):
                if not conflicts(i):
                    break
                j, p, q = int(rng.integers(n)), int(rng.integers(k)), int(rng.integers(k))
                if j == i:
                    continue
                before = conflicts(i) + conflicts(j)
                groups[i][p], groups[j][q] = groups[j][q], groups[i][p]
                if conflicts(i) + conflicts(j) >= before:
                    groups[i][p], groups[j][q] = groups[j][q], groups[i][p]
    raise ValueError("could not place the distractors: one letter is gold too often (> 1/(k+1))")


def _choice_item(word, tokens, gold_text, wrong, slot, **fields) -> dict:
    choices = list(wrong)
    choices.insert(slot, gold_text)
    return {"word": word, "tokens": tokens, "choices": choices, "gold": slot, **fields}


# -- the probes ----------------------------------------------------------------------------------


def _length_groups(words: list[str], golds: list[str], keys: list, least: int = 40):
    """The indices of `words` in groups of neighbouring keys (a word's length, or what holds it
    last), each of at least `least` words (a key is never split) and with no letter gold in over
    a quarter of them (so that three distractors per item can be balanced inside the group)."""

    def dealable(group: list[int]) -> bool:
        most = max(collections.Counter(golds[i] for i in group).values())
        return len(group) >= least and 4 * most <= len(group)

    order = sorted(range(len(words)), key=lambda i: (keys[i], i))
    groups: list[list[int]] = [[]]
    for n, i in enumerate(order):
        groups[-1].append(i)
        last = n + 1 == len(order)
        if not last and keys[order[n + 1]] > keys[i] and dealable(groups[-1]):
            groups.append([])
    while len(groups) > 1 and not dealable(groups[-1]):
        groups[-2:] = [groups[-2] + groups[-1]]
    return groups


def known_tail(mask: str) -> str:
    """What a word's known letters (known_mask) show of the two places before its last ("l." of
    "tab.l.")."""
    return mask[-3:-1]


def tail_group(mask: str) -> tuple[str, int]:
    """The groups within which char_last_letter balances its distractors: the known tail and how
    many unknown letters end the word (1 to 5+): "evalu....." (5) ends in n far more often than
    "ta..." (3), and a lookup of the unknown letters found the gold in 30% of the items balanced
    within the tail alone."""
    return known_tail(mask), min(len(mask) - len(mask.rstrip(".")), 5)


def _letter_items(words, tokens, rng) -> list[dict]:
    """First-letter items whose distractors are balanced within each group of neighbouring word
    lengths: neither a letter's prior nor the word's length tells the gold."""
    golds = [w[0] for w in words]
    wrong: list = [None] * len(words)
    for group in _length_groups(words, golds, [len(w) for w in words]):
        for i, d in zip(group, balanced_distractors([golds[i] for i in group], 3, rng)):
            wrong[i] = d
    return [
        _choice_item(
            w, tokens[w], f" {g}", [f" {c}" for c in rng.permutation(d)], i % 4, letter=g, unit=i
        )
        for i, (w, g, d) in enumerate(zip(words, golds, wrong))
    ]


def _tail_units(words: list[str], known: dict, forms: dict, rng) -> list[list[str]]:
    """The words in units of four of one tail group (`tail_group`), one set of forms
    (`word_forms`) and one word class (`word_class`) with four different last letters. Each
    group's words are first trimmed to the most in which no letter is the last of over a quarter
    and whose number is a multiple of four (a letter's excess words dropped at random; a group of
    fewer than four letters is dropped whole), then dealt four at a time from the four letters
    with the most words left, which empties them exactly."""
    by = collections.defaultdict(list)
    for w in words:
        by[(tail_group(known[w]), forms[w], word_class(w))].append(w)
    units = []
    for tail in sorted(by):
        letters = collections.defaultdict(list)
        for w in sorted(by[tail]):
            letters[w[-1]].append(w)
        for held in letters.values():
            rng.shuffle(held)
        sizes = [len(v) for v in letters.values()]
        kept = {t: sum(min(s, t) for s in sizes) for t in range(1, max(sizes) + 1)}
        cap = max((t for t in kept if 4 * t <= kept[t]), key=kept.get, default=0)
        left = {c: held[:cap] for c, held in sorted(letters.items()) if cap}
        for _ in range(sum(map(len, left.values())) % 4):  # the fewest first: the most stay
            fewest = min((c for c in left if left[c]), key=lambda c: (len(left[c]), c))
            left[fewest].pop()
        while any(left.values()):
            most = sorted(left, key=lambda c: (-len(left[c]), c))[:4]
            units.append([left[c].pop() for c in most])
    return units


def _last_letter_probe(words, tokens, n: int, shots: int, rng, known: dict, forms: dict):
    """(exemplars, items) of char_last_letter: whole units of `_tail_units` in a seeded order,
    none that would take a first letter past MAX_LETTER_SHARE of n, up to n items (no last letter
    is the gold of over a quarter: the balance bounds it);
    each item's distractors the other three letters of its unit, so that within every tail group,
    set of forms and word class each letter is the gold of exactly one in four of the items that
    offer it, and no lookup of the known letters before the last, of the unknown letters that end
    the word, of the forms or of the class helps (in task version 4.0, balanced within groups of
    the letter before the last, a lookup of the tail found the gold in 41% of the items on
    Llama-3, "t.": r in 20 of 54). The exemplars: words of no chosen unit, different letters."""
    units = _tail_units(words, known, forms, rng)
    limit = max(1, int(MAX_LETTER_SHARE * n))
    first = collections.Counter()
    chosen: list[list[str]] = []
    for u in rng.permutation(len(units)):
        if 4 * (len(chosen) + 1) > n:
            break
        starts = collections.Counter(w[0] for w in units[int(u)])
        if all(first[c] + k <= limit for c, k in starts.items()):
            chosen.append(units[int(u)])
            first.update(starts)
    asked = {w for unit in chosen for w in unit}
    shot_words, seen = [], set()
    for i in rng.permutation(len(words)):
        w = words[int(i)]
        if len(shot_words) < shots and w not in asked and w[-1] not in seen:
            shot_words.append(w)
            seen.add(w[-1])
    exemplars = [
        {"word": w, "letter": w[-1], "choices": [f" {w[-1]}"], "gold": 0} for w in shot_words
    ]
    items = []
    for u, unit in enumerate(chosen):
        for w, slot in zip(unit, rng.permutation(4)):
            wrong = [f" {x[-1]}" for x in unit if x != w]
            wrong = [wrong[int(j)] for j in rng.permutation(3)]
            items.append(
                _choice_item(w, tokens[w], f" {w[-1]}", wrong, int(slot), letter=w[-1], unit=u)
            )
    return exemplars, items


def letter_token(word: str, ends: tuple[int, ...], letter: str) -> bool:
    """Whether one of the word's tokens after the first is `letter` alone ("dis" + "k" of
    " disk"): the question quotes the letter, which the tokenizers read as that same token
    ('letter "k"'), so a model that matches the two tokens finds the letter in the word without
    reading any letter (the first token holds the space, " k": another token)."""
    return any(word[s:e] == letter for s, e in zip(ends[:-1], ends[1:]))


def _copies_letter(word: str, ends: tuple[int, ...], position: int) -> bool:
    """Whether the word's first (position 0) or last (-1) token is that letter alone (" a" +
    "pple", "tabl" + "e"): the answer would be a copy of a token, not a reading of one."""
    return ends[0] == 1 if position == 0 else len(ends) > 1 and ends[-2] == len(word) - 1


def _spell_class(word: str, tokens: dict, endings: dict) -> tuple:
    """What a spelling's distractors share with it: length, first letter, token count and
    inflection ending ("" for none). The exact token count: with counts 1, 2 and 3+ alike
    (task version 4.0), the choice whose word has as many tokens as the probed word was the gold
    in 32% of the items with the embedded BPE (37% on the wordfreq list; shortcuts.py: "choice's
    word has the probed word's token count")."""
    return len(word), word[0], tokens[word], endings[word]


def _spell_items(words, tokens, endings, pool: list[str], rng) -> list[dict]:
    """Each word against the spellings of three other listed words of its length, first letter,
    token count and inflection ending, drawn uniformly from them (a reader of the
    word's grammatical form alone, knowing "-ing" or "-ed", found the gold in 43% of the items of
    task version 3.1 on Llama-3, whose distractors did not share the ending): every choice spells
    a real word, with
    the gold's letters only in the gold, and the four are a uniform draw of the class in which
    the gold is any of them alike, so nothing about the choices (their alphabetical order, their
    places among the class's words) tells which. A rule that chose the distractors to balance
    the gold's alphabetical rank (task version 3.0) placed them towards the class's ends, and a
    reader of the word list found the gold in 36% of items (shortcuts.py: "place among its
    neighbours in the word list"). A word with too few neighbours is skipped."""
    like = collections.defaultdict(list)
    for w in pool:
        like[_spell_class(w, tokens, endings)].append(w)
    items = []
    for w in words:
        others = [x for x in like[_spell_class(w, tokens, endings)] if x != w]
        if len(others) < 3:
            continue
        wrong = [others[int(i)] for i in rng.permutation(len(others))[:3]]
        spelled = [" " + " ".join(x) for x in rng.permutation(wrong)]
        gold = " " + " ".join(w)
        items.append(_choice_item(w, tokens[w], gold, spelled, len(items) % 4))
    return items


def _nearest_length(candidates: list[str], length: int, used: set) -> str | None:
    """The unused candidate closest in length (the first of them in the candidates' order)."""
    best = None
    for w in candidates:
        if w in used:
            continue
        if best is None or abs(len(w) - length) < abs(len(best) - length):
            best = w
            if len(w) == length:
                break
    return best


def count_choices(known: int) -> list[str]:
    """char_count's choices for a letter its word's known letters (known_mask) hold `known`
    times: the counts those letters leave possible, known to known + len(COUNTS) - 1."""
    return [f" {known + j}" for j in range(len(COUNTS))]


def _count_items(
    pool: list[str], tokens, ends: dict, known: dict, like, n: int, rng, reuse: int = 2
):
    """Sets per letter of words holding it each possible number of times past their known
    letters (known_mask: 2, 1 and 0 more), all holding it alike among those (0 or 1 times), of one
    first letter and lengths within one letter of each other, the nearest in token count and
    unknown letters. The choices are the counts the known letters leave possible (count_choices:
    " 1", " 2", " 3" where they hold it once), so a reader of those letters, which knows the count
    is at least theirs, is at chance (it answered 56% of task version 3.1 on Llama-3, whose
    choices were 0-3 whatever the lead held; none over MAX_LETTER_SHARE of the items has one
    first letter). No word holding the letter is one with it as a token alone (`letter_token`:
    matching that token with the question's would rule out the least count; 47 of 783 items of
    task version 4.0, embedded BPE). A word is asked about at most `reuse` times, each time with
    another letter. Words holding a letter twice past their known letters are few: a small word
    list gives fewer than n items (the cap on a first letter then applies to the items it gives)."""
    top = len(COUNTS) - 1
    by: dict = collections.defaultdict(lambda: collections.defaultdict(list))
    for w in pool:
        for letter in LETTERS:
            held = known[w].count(letter)
            extra = w.count(letter) - held
            if extra and letter_token(w, ends[w], letter):
                continue
            # choices within 0-3; every word with room past its known letters for the largest
            # count (a word with one unknown letter could never hold the top answer)
            if held + top <= 3 and extra <= top and _past(w, known) >= top:
                by[(letter, held, extra)][w[0]].append(w)
    for key in sorted(by):
        for first in sorted(by[key]):
            rng.shuffle(by[key][first])
    most = {
        letter: [
            (held, w)
            for held in range(4 - top)
            for f in sorted(by[(letter, held, top)])
            for w in by[(letter, held, top)][f]
        ]
        for letter in LETTERS
    }
    for letter in LETTERS:
        rng.shuffle(most[letter])
    order = [rng.permutation(len(LETTERS)) for _ in range(n)]  # the round robin's, fixed
    target, size = n, top + 1
    while True:
        limit = max(size, int(MAX_LETTER_SHARE * target))
        sets = _count_sets(by, most, like, n, limit, order, reuse, top)
        if len(sets) * size >= target or not sets:
            break
        target = len(sets) * size  # fewer items: the first-letter cap is a share of those
    return [
        [
            {
                "word": w,
                "tokens": tokens[w],
                "letter": letter,
                "choices": count_choices(held),
                "gold": w.count(letter) - held,
            }
            for w in words
        ]
        for letter, held, words in sets
    ]


def _count_sets(by, most, like, n: int, limit: int, order, reuse: int, top: int):
    letters = [letter for letter in LETTERS if most[letter]]
    left = {letter: list(ws) for letter, ws in most.items()}
    size = top + 1
    sets, asked, first = [], collections.Counter(), collections.Counter()
    pairs: dict[str, set] = collections.defaultdict(set)  # the words asked about each letter
    rounds = iter(order)
    while len(sets) * size < n:
        progressed = False
        for letter in [LETTERS[i] for i in next(rounds) if LETTERS[i] in letters]:
            for held, w_top in left[letter]:
                if asked[w_top] >= reuse or first[w_top[0]] + size > limit:
                    continue
                chosen = [w_top]
                for c in range(top - 1, -1, -1):
                    candidates = by[(letter, held, c)][w_top[0]]
                    taken = {w for w in candidates if asked[w] >= reuse} | pairs[letter]
                    w = _nearest(candidates, w_top, letter, taken | set(chosen), like, gap=1)
                    if w is None:
                        break
                    chosen.append(w)
                if len(chosen) == size:
                    break
            else:
                continue
            asked.update(chosen)
            pairs[letter].update(chosen)
            first[w_top[0]] += size
            left[letter].remove((held, w_top))
            sets.append((letter, held, chosen))
            progressed = True
            if len(sets) * size >= n:
                break
        if not progressed:
            break
    return sets


def _past(word: str, known: dict) -> int:
    """How many of the word's letters its token leads and ending do not give away."""
    return known[word].count(".")


def _nearest(candidates, word: str, letter: str, used: set, like, gap: int = 99):
    """The unused candidate within `gap` letters of the word's length closest to it by
    `like(w, letter)` (its token count, then how often a reader of its known letters and of
    letter pairs expects the letter at its unknown ones, then its unknown letters, then its
    length), the first of them in the candidates' order; None if there is none."""
    mark = like(word, letter)
    best, far = None, None
    for w in candidates:
        if w in used or abs(len(w) - len(word)) > gap:
            continue
        (bucket, past, expected, length), to = like(w, letter), mark
        # unknown letters and the expected count weigh alike: 1 letter as 0.2 expected
        d = (bucket != to[0], abs(past - to[1]) + abs(expected - to[2]) / 2, abs(length - to[3]))
        if far is None or d < far:
            best, far = w, d
            if not any(d):
                break
    return best


def _likeness(tokens: dict, known: dict, bigrams: dict):
    """What `_nearest` matches a word on, for a queried letter: token count (1, 2, 3+), the
    letter's expected count at the unknown letters (expected_letters, in tenths), the unknown
    letters, the length."""

    def like(w: str, letter: str) -> tuple:
        expected = round(10 * expected_letters(known[w], letter, bigrams))
        return _bucket(tokens[w], (2, 3)), _past(w, known), expected, len(w)

    return like


def _contains_items(
    pool: list[str], tokens, ends: dict, known: dict, like, n: int, rng
) -> list[list[dict]]:
    """Pairs per letter: a word that holds it only past its lead and ending, never as a token
    alone (yes: `letter_token`, whose token matched with the question's answered 58% of task
    version 4.0, embedded BPE) and one with the same first letter, within three letters of its
    length, the nearest by `like` (_nearest) that does not hold it (no; without the three
    letters, leaving out those yes words drew longer yes than no words, by 0.32-0.38 letters on
    average on the embedded BPE; within them 0.18-0.23); neither starts with the letter, so the
    word's first letter says nothing of the answer (and none is the first letter of over MAX_LETTER_SHARE of
    the items), nor do the letters of its lead and ending (a reader of those answered 80% of
    task version 3.0 on Llama-3). Letters in a seeded round robin."""
    yes = {
        c: [
            w
            for w in pool
            if c in w and w[0] != c and c not in known[w] and not letter_token(w, ends[w], c)
        ]
        for c in LETTERS
    }
    no = {c: collections.defaultdict(list) for c in LETTERS}
    for w in pool:
        for c in LETTERS:
            if c not in w:
                no[c][w[0]].append(w)
    for c in LETTERS:
        rng.shuffle(yes[c])
        for ws in no[c].values():
            rng.shuffle(ws)
    used, items, first = set(), [], collections.Counter()
    limit = max(2, int(MAX_LETTER_SHARE * n))
    while len(items) < n:
        progressed = False
        for letter in [LETTERS[i] for i in rng.permutation(26)]:
            for w_yes in yes[letter]:
                if w_yes in used or first[w_yes[0]] + 2 > limit:
                    continue
                w_no = _nearest(no[letter][w_yes[0]], w_yes, letter, used | {w_yes}, like, gap=3)
                if w_no is not None:
                    break
            else:
                continue
            first[w_yes[0]] += 2
            for w, answer in ((w_yes, 1), (w_no, 0)):
                used.add(w)
                items.append(
                    {
                        "word": w,
                        "tokens": tokens[w],
                        "letter": letter,
                        "choices": YES_NO,
                        "gold": answer,
                    }
                )
            progressed = True
            if len(items) >= n:
                break
        if not progressed:
            break
    return [items[i : i + 2] for i in range(0, len(items), 2)]


def _prefix_items(pool: list[str], tokens, ends, endings, lead, vocab: set[str], n: int, rng):
    """Pairs per prefix: a word that starts with a vocabulary token's text (2+ letters, shorter
    than the word, ending inside one of the word's tokens: yes) and a word with the same first
    letter and lead length (`lead`: leading_prefix), then token count and inflection ending
    (where there is one), and the nearest length that does not (no); the lead length matched
    because a yes word's lead is never shorter than its prefix (the lead's length and the
    prefix's answered 70% of task version 4.0 with the embedded BPE), the token count because
    the yes words, whose prefix ends inside a token, are more often single tokens, the ending
    because they are less often inflected (a lookup of the ending found 55.5% of task version
    3.0). No first letter over MAX_LETTER_SHARE of the `n` items."""
    prefixes: dict[str, list[str]] = collections.defaultdict(list)
    for w in pool:
        found = [w[:k] for k in range(2, len(w)) if f" {w[:k]}" in vocab and k not in ends[w]]
        if found:
            prefixes[found[int(rng.integers(len(found)))]].append(w)
    by_first = collections.defaultdict(list)
    for w in pool:
        by_first[w[0]].append(w)
    keys = sorted(prefixes)
    for k in keys:
        rng.shuffle(prefixes[k])
    used, items, per_letter = set(), [], collections.Counter()
    while len(items) < n:
        progressed = False
        for p in [keys[i] for i in rng.permutation(len(keys))]:
            w_yes = next((w for w in prefixes[p] if w not in used), None)
            if w_yes is None or per_letter[p[0]] + 2 > MAX_LETTER_SHARE * n:
                continue
            same = [
                w
                for w in by_first[p[0]]
                if not w.startswith(p) and len(lead[w]) == len(lead[w_yes])
            ]
            if not same:
                continue
            alike = [w for w in same if tokens[w] == tokens[w_yes]]
            others = [w for w in alike if endings[w] == endings[w_yes]] or alike or same
            w_no = _nearest_length(others, len(w_yes), used | {w_yes})
            if w_no is None:
                continue
            per_letter[p[0]] += 2
            for w, answer in ((w_yes, 1), (w_no, 0)):
                used.add(w)
                items.append(
                    {"word": w, "tokens": tokens[w], "letter": p, "choices": YES_NO, "gold": answer}
                )
            progressed = True
            if len(items) >= n:
                break
        if not progressed:
            break
    return [items[i : i + 2] for i in range(0, len(items), 2)]


def _question(task: str, item: dict, word: str) -> str:
    return QUESTIONS[task].format(w=word, l=item.get("letter", ""))


def _prompt(shots: list[str], question: str) -> str:
    return "".join(f"{s}\n\n" for s in shots) + f"{question}\nAnswer:"


def _first_letter_probe(words, tokens, n: int, shots: int, rng):
    """(exemplars, items) of char_first_letter: exemplars with different letters taken out
    first, so that the distractors are balanced over exactly the probed items."""
    shot_words, seen = [], set()
    for w in words:
        if len(shot_words) < shots and w[0] not in seen:
            shot_words.append(w)
            seen.add(w[0])
    rest = [w for w in words if w not in shot_words][:n]
    exemplars = [
        {"word": w, "letter": w[0], "choices": [f" {w[0]}"], "gold": 0} for w in shot_words
    ]
    return exemplars, _letter_items(rest, tokens, rng)


def _numbered(units: list[list[dict]]) -> list[list[dict]]:
    """The units with each item's `unit`, the index of its unit: the items a design balances
    together (a count triple, a yes/no pair, four last letters of one tail), which the shortcut
    check's lookups hold out together (a held-out item's unit-mates would otherwise teach the
    lookup its answer's opposite)."""
    return [[{**item, "unit": u} for item in unit] for u, unit in enumerate(units)]


def _split(units: list[list[dict]], shots: int) -> tuple[list[dict], list[dict]]:
    """(exemplars, items): the exemplars from the first whole units (a count set or yes/no pair
    is never split between them and the probe), the items from the rest."""
    taken, u = [], 0
    while len(taken) < shots and u < len(units):
        taken += units[u]
        u += 1
    shot_words = {i["word"] for i in taken[:shots]}  # nor in a later unit (count reuses words)
    rest = [unit for unit in units[u:] if not shot_words & {i["word"] for i in unit}]
    return taken[:shots], [i for unit in rest for i in unit]


def build_probes(
    tokenizer,
    n: int = ITEMS_PER_TASK,
    seed: int = SEED,
    shots: int = SHOTS,
    word_counts: collections.Counter | None = None,
    min_count: int = MIN_COUNT,
    source: str = "the embedded corpus",
    partial: bool = False,
) -> dict[str, list[dict]]:
    """{task: items} for the six probes and their blank twins. Each item: `query` (k-shot),
    `choices` (answers start with a space), `gold`, `word`, `tokens`, and `letter` where the
    probe asks about one. Each probe has n items but char_count, which has as many as the word
    list's words holding a letter twice past their known letters allow, up to n and at least a
    fifth of it (the embedded corpus's with Llama-3's vocabulary: about 480 of 2,000);
    `probe_shortfalls` names such a probe.
    `tokenizer`: a `tokenizers.Tokenizer` (or an object holding one as `.tokenizer`);
    `word_counts`: the word list (default: the embedded corpus's)."""
    from ..objectives.table import token_texts

    if not 0 <= shots <= MAX_SHOTS:
        raise ValueError(
            f"--probe-shots must be between 0 and {MAX_SHOTS} (the exemplar pool); got {shots}"
        )
    if n < MIN_ITEMS:
        raise ValueError(
            f"--probe-items must be >= {MIN_ITEMS} (fewer cannot be balanced); got {n}"
        )
    counts = embedded_word_counts() if word_counts is None else word_counts
    tokens = word_pool(tokenizer, counts, min_count)
    vocab = {t for t in token_texts(tokenizer) if t}
    # a stream of draws per probe: a change to one probe's items leaves the others' alone
    rng = {t: np.random.default_rng([seed, k]) for k, t in enumerate(PROBE_TASKS)}
    words = sorted(tokens)
    n_first = len({w[0] for w in words})
    if len(words) < n or n_first < MIN_LETTERS:
        raise ValueError(
            f"{source} has {len(words):,} words seen >= {min_count} times with {n_first} "
            f"first letters; the probes need at least {n:,} (the items per probe) with "
            f"{MIN_LETTERS} first letters: give a larger source or fewer items"
        )
    ends = word_tokens(tokenizer, counts, min_count)
    listed = set(words)
    lead = {w: leading_prefix(w, vocab) for w in words}
    endings = {w: inflection(w, listed) for w in words}
    forms = word_forms(listed)
    known = {w: known_mask(w, ends[w], lead[w], endings[w], vocab) for w in words}
    kind = collections.Counter(_spell_class(w, tokens, endings) for w in words)
    spellable = [w for w in words if len(w) >= 4 and kind[_spell_class(w, tokens, endings)] >= 4]
    # 10% more than the items (the first n are probed): a word without three like it is skipped
    spell = stratified(spellable, n + n // 10, rng["char_spell"], lambda w: w[0], tokens)

    def readable(position: int) -> list[str]:
        # no inflected word asks its last letter: "-ing" tells the g without reading it
        return [
            w
            for w in words
            if not _copies_letter(w, ends[w], position) and not (position and endings[w])
        ]

    firsts = stratified(readable(0), n + shots, rng["char_first_letter"], lambda w: w[0], tokens)

    spelled = _spell_items(spell, tokens, endings, words, rng["char_spell"])
    like = _likeness(tokens, known, letter_bigrams(counts))
    counted = _count_items(
        words, tokens, ends, known, like, n + len(COUNTS) * shots, rng["char_count"]
    )
    pairs = n + 2 * shots
    spell_shots, spell_items = _split(_numbered([[i] for i in spelled]), shots)
    shown = {s["choices"][s["gold"]] for s in spell_shots}  # an exemplar's answer: no distractor
    built = {
        "char_spell": (spell_shots, [i for i in spell_items if not shown & set(i["choices"])]),
        "char_first_letter": _first_letter_probe(
            firsts, tokens, n, shots, rng["char_first_letter"]
        ),
        "char_last_letter": _last_letter_probe(
            readable(-1), tokens, n, shots, rng["char_last_letter"], known, forms
        ),
        "char_count": _split(_numbered(counted), shots),
        "char_contains": _split(
            _numbered(
                _contains_items(words, tokens, ends, known, like, pairs, rng["char_contains"])
            ),
            shots,
        ),
        "char_prefix": _split(
            _numbered(
                _prefix_items(words, tokens, ends, endings, lead, vocab, pairs, rng["char_prefix"])
            ),
            shots,
        ),
    }
    out: dict[str, list[dict]] = {}
    for task, (shot_items, items) in built.items():
        probed = items[: whole_units(task, n)]
        least = fewest_items(task, n)
        if len(probed) < least and not partial:
            also = f" ({task} takes from {least:,})" if least < n else ""
            raise ValueError(
                f"{task}: {source} gives {len(probed):,} items, {n:,} wanted{also}: give a "
                "larger word source (eval --probe-words: a shard folder or a word list) or ask "
                "for fewer items (eval --probe-items)"
            )
        demo = [
            f"{_question(task, s, s['word'])}\nAnswer:{s['choices'][s['gold']]}" for s in shot_items
        ]
        order = rng[task].permutation(len(probed))
        real, blank = [], []
        for i in order:
            w = probed[int(i)]["word"]
            item = {**probed[int(i)], "lead": lead[w], "ending": endings[w], "known": known[w]}
            item["forms"] = forms[w]
            real.append({**item, "query": _prompt(demo, _question(task, item, item["word"]))})
            blank.append({**item, "query": _prompt(demo, _question(task, item, BLANK))})
        out[task], out[f"{task}_blank"] = real, blank
    return out


def whole_units(task: str, n: int) -> int:
    """The most items of `task` that n allows in whole units (UNIT_ITEMS): n rounded down to a
    multiple of the task's unit."""
    return n - n % UNIT_ITEMS.get(task, 1)


def fewest_items(task: str, n: int) -> int:
    """The fewest items build_probes accepts for `task` when n are asked for: n in whole units
    (whole_units: 30 of char_contains at n = 31), but a fifth of n
    for char_count (its items come in matched triples of words holding a letter 2, 1 and 0 times
    past their known letters: the embedded word list has enough for about 480 of 2,000 with
    Llama-3's vocabulary, whose token leads give away four letters in five) and two fifths for
    char_last_letter (a word is asked only where its group of one known tail, one set of forms and
    one word class balances: 1,032 of 2,000 from the embedded word list with its BPE, 1,328 with
    Llama-3's)."""
    if task == "char_count":
        return -(-n // 5)
    return -(-2 * n // 5) if task == "char_last_letter" else whole_units(task, n)


@functools.lru_cache(maxsize=4)
def _built(digest: str, path: str, n: int, seed: int, shots: int, words_from: str | None):
    del digest  # the cache key: the file's content, not its path
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(path)
    counts, source = word_source(words_from, tok)
    return tok, build_probes(tok, n, seed, shots, word_counts=counts, source=source), counts


def word_source(words_from: str | None, tok) -> tuple[dict, str]:
    """(word counts, how to name where they came from) of `words_from`: a word list file
    (read_word_list), a shard folder written by prepare (its words, as `tok` splits them:
    shard_word_counts), or None: the embedded corpus's. The one place the source is decided."""
    if words_from and os.path.isfile(words_from):
        return read_word_list(words_from), f"word list {words_from!r}"
    if words_from:
        return shard_word_counts(words_from, tok), f"shard folder {words_from!r}"
    return embedded_word_counts(), "the embedded corpus"


def probe_build(
    tokenizer_dir: str,
    n: int = ITEMS_PER_TASK,
    seed: int = SEED,
    words_from: str | None = None,
    shots: int = SHOTS,
) -> tuple:
    """(tokenizer, build_probes' probes, the word list) for a tokenizer folder, the words from a
    shard folder or a word list file (`words_from`: read_word_list) or the embedded corpus; built
    once per process for a tokenizer file's content (the checkpoints of a run share their
    tokenizer)."""
    path = os.path.join(tokenizer_dir, "tokenizer.json")
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return _built(digest, path, n, seed, shots, words_from)


def write_probes(
    tokenizer_dir: str,
    out_dir: str,
    n: int = ITEMS_PER_TASK,
    seed: int = SEED,
    words_from: str | None = None,
    shots: int = SHOTS,
) -> dict[str, str]:
    """Generate the probe documents (and their blank twins) for a tokenizer folder, the words
    from a shard folder or word list file (`words_from`) or the embedded corpus; returns {task:
    jsonl path}. A file a killed writer left half-written (write_atomically's `.NAME.XXXX.tmp`)
    is removed: the caller holds the folder's writer lock (evaluate), so no writer is alive."""
    import glob

    from ..runs.folder import write_atomically

    built = probe_build(tokenizer_dir, n, seed, words_from, shots)[1]
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    for task, docs in built.items():
        for left in glob.glob(os.path.join(glob.escape(out_dir), f".{task}.jsonl.*.tmp")):
            os.remove(left)
        paths[task] = os.path.join(out_dir, f"{task}.jsonl")
        write_atomically(paths[task], "".join(json.dumps(d) + "\n" for d in docs))
    return paths


def probe_shortfalls(paths: dict[str, str], n: int, limit: int | None = None) -> list[str]:
    """A line for each written probe (write_probes' paths) with fewer than n items, unless it
    holds the `limit` (an evaluation's --limit sample) that is all it is asked for."""
    out = []
    for task, path in paths.items():
        if task.endswith("_blank"):
            continue
        with open(path, encoding="utf-8") as f:
            got = sum(1 for line in f if line.strip())
        asked = n if limit is None else min(n, limit)
        if got < whole_units(task, asked):  # (a unit it cannot fill is not asked of it)
            why = SHORTFALLS.get(task, "the word list has no more words for it")
            out.append(
                f"{task}: {got:,} items of the {asked:,} asked for: {why}; a larger word source "
                "(eval --probe-words SHARD_DIR or a word list) gives more"
            )
    return out


SHORTFALLS = {
    "char_count": "the word list has no more words holding a letter twice past their known "
    "letters in matched triples",
    "char_last_letter": "the word list has no more words in units of four last letters within "
    "a tail group (the known tail and the unknown letters ending the word), set of forms and "
    "word class",
}
"""Why a probe that may have fewer items than asked for has (fewest_items)"""
