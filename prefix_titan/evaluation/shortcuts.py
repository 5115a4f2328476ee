"""Answer-only shortcuts of the character probes: how well each probe is answered without reading
the letters of its word. Each shortcut scores the choices and picks the best; a tie gives the
gold's share of it (a random pick among the tied). A probe measures characters only if every
shortcut stays at chance (tests/test_probes.py and test_llama3.py: within 5 points; the few
residuals the designs leave, RESIDUALS, under their own bounds).

    python scripts/probe_shortcuts.py --hf-assets-path DIR   (a table, as in docs/probes.md)

Three kinds:
- the choices alone: alphabetical order, length, token counts (spaced and with the letters
  joined), English letter priors (any / first / last position, over the running words of the
  reference word list), the probe's own gold-letter prior, a letter-bigram model of the word list
  and whether the choice spells a listed word (a model's lexicon), the choices' places among
  their neighbours in the word list, a fixed position, always yes;
- what the word is besides its letters, by a lookup learned on the other items (5-fold, the
  answer most often gold for the feature's value among the items that offer it): its length, its
  token count, its frequency in the word list, its word class as its derivational ending tells it
  (probes.word_class: what a model knows from what the word means) and, for the probes that are
  not prefix-shaped, its first letter (what prefix targets teach: a reader of first letters only
  must be at chance there); the queried letter's commonness and the word's length by rank
  (yes/no and count); and every lookup held at chance together, in one logistic regression
  (JOINT): features that each tell a little add up (a lookup with a residual, or one the design
  balances below chance, is left out);
- readers of what the word gives away besides reading its letters: the letters of its leading
  vocabulary prefix (" straw" of " strawberry", what the prefix relation between tokens gives; on
  the last letter with the listed words it completes) and of its inflection ending ("-ing": what
  the grammar gives); required at chance on the probes past the lead (PAST_THE_LEAD) only;
- copies of tokens: the answer letter is a token of the word alone (" a" + "pple"), the queried
  letter is (the question's quoted letter is that same token: matching them answers whether the
  word holds it), or the queried prefix ends where one of the word's tokens does (comparing
  tokens answers it).
"""

from __future__ import annotations

import collections
import functools
import itertools
import math
import string
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .probes import (
    MIN_COUNT,
    PAST_THE_LEAD,
    PREFIX_SHAPED,
    expected_letters,
    inflection,
    known_tail,
    letter_bigrams,
    word_class,
)
from .threads import one_thread

LETTERS = string.ascii_lowercase
SHORTCUTS = (
    "alphabetically first choice",
    "alphabetically last choice",
    "shortest choice",
    "fewest tokens",
    "fewest tokens, letters joined",
    "English letters, any position",
    "English letters, first position",
    "English letters, last position",
    "the probe's gold-letter prior",
    "letter bigrams of the word list",
    "choice spells a listed word",
    "choice spells the most frequent word",
    "place among its neighbours in the word list",
    "choice's word has the probed word's token count",
    "best fixed position",
    "always yes",
    "queried letter is common (yes/no, count)",
    "word length (yes/no, count)",
    "lookup: word length",
    "lookup: word token count",
    "lookup: word frequency",
    "lookup: word first letter (not prefix-shaped probes)",
    "lookup: word inflection ending",
    "lookup: the word's forms in the word list (-s, -ed, -ing, -er, -est, -ly)",
    "lookup: the word's class by its derivational ending (-tion, -ous, -ize, ...)",
    "lookup: letters past the known ones (token leads, ending)",
    "lookup: lead length, with the asked text's",
    "lookup: last token's length (not prefix-shaped probes)",
    "lookup: known and unknown places among the last six (past-the-lead probes)",
    "lookup: known tail, two places before the last (last letter)",
    "lookup: three places before the last (last letter)",
    "lookup: letter pairs' expectation at the unknown letters (yes/no, count)",
    "lookup: the lookups held at chance, together (logistic regression)",
    "reader: letter pairs at the unknown letters (yes/no, count)",
    "reader: letters of the leading vocabulary prefix (past-the-lead probes)",
    "reader: letters of the inflection ending",
    "reader: letters of every token's leading prefix and the ending (past-the-lead probes)",
    "copy: answer letter is a token of the word",
    "copy: queried letter is a token of the word (yes/no, count)",
    "copy: prefix ends at a token boundary",
)
FOLDS = 5
TOLERANCE = 0.05
"""A probe passes when every shortcut is within this of chance (the lookups: not above it)"""
RESIDUALS = {
    ("char_last_letter", "lookup: three places before the last (last letter)"): 0.18,
    ("char_last_letter", "lookup: word length"): 0.08,
    ("char_last_letter", "lookup: last token's length (not prefix-shaped probes)"): 0.08,
    (
        "char_count",
        "lookup: known and unknown places among the last six (past-the-lead probes)",
    ): 0.13,
    ("char_count", "lookup: letters past the known ones (token leads, ending)"): 0.10,
    ("char_count", "lookup: lead length, with the asked text's"): 0.08,
    (
        "char_count",
        "lookup: letter pairs' expectation at the unknown letters (yes/no, count)",
    ): 0.10,
    (
        "char_last_letter",
        "lookup: the lookups held at chance, together (logistic regression)",
    ): 0.09,
    ("char_count", "lookup: the lookups held at chance, together (logistic regression)"): 0.10,
}
"""{(probe, shortcut): its bound above chance}: what the probes' design leaves, measured and
documented (docs/probes.md, "What is left"), each held under its own bound (a little above what
both tokenizers measure) instead of TOLERANCE, so that it cannot grow unnoticed; the table marks
its cells with *"""


@dataclass
class Reference:
    """What a shortcut may know without the probed word: a word list and what it implies."""

    counts: collections.Counter
    """The word list with its counts (the probes' source)"""
    priors: dict
    """letter_priors of it"""
    bigrams: dict
    """{(a, b): log p(b | a)} over its words ("^" starts, "$" ends), add-one"""


def token_pieces(tokenizer) -> Callable[[str], list[str]]:
    """The `pieces` shortcut_accuracies takes: a text's tokens' texts, from a
    `tokenizers.Tokenizer`. Each text is encoded once (a check asks for the same choices and
    words many times over): the list is a fresh copy of the cached pieces."""

    @functools.lru_cache(maxsize=1 << 16)
    def cached(s: str) -> tuple[str, ...]:
        return tuple(
            tokenizer.decode([i]) for i in tokenizer.encode(s, add_special_tokens=False).ids
        )

    return lambda s: list(cached(s))


def reference(word_counts: collections.Counter) -> Reference:
    """The Reference of a word list."""
    return Reference(word_counts, letter_priors(word_counts), letter_bigrams(word_counts))


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


def _bigram_log(bigrams: dict, letters: str) -> float:
    s = f"^{letters}$"
    return math.fsum(bigrams.get(pair, -30.0) for pair in zip(s, s[1:]))


def _folds(items: list[dict]) -> list[int]:
    """Each item's fold of FOLDS, whole units (an item's `unit`, where it has one) together."""
    units = [it.get("unit", i) for i, it in enumerate(items)]
    order = sorted(set(units))
    place = dict(zip(order, np.random.default_rng(0).permutation(len(order)) % FOLDS))
    return [place[u] for u in units]


def _lookup(items: list[dict], feature: Callable[[dict], object]) -> float:
    """The accuracy of a lookup from feature(item) to the answer, each item scored by a table
    of the other folds: the smoothed share of items offering a choice (by text) with that
    feature's value in which it is gold. The folds hold out whole units (an item's `unit`, where
    it has one): a design that balances the items of a unit together (a yes/no pair, a count
    triple, four last letters of one tail) would otherwise leave a held-out item's unit-mates in
    the table, offering its answer as wrong, and every lookup would fall below chance, hiding
    what a feature does tell."""
    fold = _folds(items)
    keys = [feature(it) for it in items]
    right = 0.0
    for f in range(FOLDS):
        gold, offered = collections.Counter(), collections.Counter()
        for it, key, g in zip(items, keys, fold):
            if g != f:
                offered.update((key, c) for c in it["choices"])
                gold[(key, it["choices"][it["gold"]])] += 1
        for it, key, g in zip(items, keys, fold):
            if g == f:
                k = len(it["choices"])
                scores = [(gold[(key, c)] + 1) / (offered[(key, c)] + k) for c in it["choices"]]
                right += _pick(scores, it["gold"])
    return right / len(items)


JOINT = "lookup: the lookups held at chance, together (logistic regression)"
JOINT_PENALTY = 1.0
"""The L2 penalty on the joint lookup's weights (not on a choice's bias), against the summed
log-likelihood of the training folds (about 1,600 items at 2,000 a probe, 120 at 150: the
fewer, the more the weights are held to 0); a weight moves off 0 where a few dozen items ask it
to"""
BALANCED = {("char_first_letter", "lookup: word length")}
"""{(probe, lookup)}: lookups that the probe's design balances below chance, left out of the
joint lookup, which they would pull down with them: char_first_letter's letters are balanced
within groups of word lengths (the length lookup: 0.086 on Llama-3; the joint 0.213 with it,
0.262 without). A fixed list: leaving out whichever lookups happen to score low on the items
themselves would bias the joint up"""


def _joint(items: list[dict], features: dict[str, Callable[[dict], object]]) -> float:
    """The accuracy of a conditional logistic regression of the answer on every feature of
    `features` together, each item scored by a fit on the other folds (_folds, as _lookup):
    a choice text's score is its bias plus one weight per (feature, value) the item has, softmaxed
    over the choices the item offers. It adds what each feature tells (two that each tell a little
    tell more together); it does not look for interactions (pairs of lookups: measured in
    docs/probes.md, "What is left"). A value no training item has weighs
    0 (the penalty)."""
    import torch  # (the lookups alone need no torch)

    texts = sorted({c for it in items for c in it["choices"]})
    column = {c: j for j, c in enumerate(texts)}
    index: dict = {}
    rows = [[index.setdefault((n, f(it)), len(index)) for n, f in features.items()] for it in items]
    x = torch.zeros(len(items), len(index) + 1, dtype=torch.float64)
    x[:, -1] = 1.0  # the bias
    for i, row in enumerate(rows):
        x[i, row] = 1.0
    offered = torch.full((len(items), len(texts)), -math.inf, dtype=torch.float64)
    for i, it in enumerate(items):
        offered[i, [column[c] for c in it["choices"]]] = 0.0
    y = torch.tensor([column[it["choices"][it["gold"]]] for it in items])
    fold = torch.tensor(_folds(items))
    right = 0.0
    # one thread: the fits are small (20x the time on two busy cores)
    with one_thread():
        for f in range(FOLDS):
            train, test = fold != f, fold == f
            w = _conditional_logit(x[train], offered[train], y[train])
            scores = (x[test] @ w).tolist()
            for i, s in zip(test.nonzero().flatten().tolist(), scores):
                it = items[i]
                right += _pick([s[column[c]] for c in it["choices"]], it["gold"])
    return right / len(items)


def _conditional_logit(x, offered, y):
    """The weights (features x choice texts) of a softmax over each row's offered choices (0
    where offered, -inf not) that fit y, the last feature (the bias) unpenalized."""
    import torch

    w = torch.zeros(x.shape[1], offered.shape[1], dtype=torch.float64, requires_grad=True)
    # (a gradient of 0.01 on the summed likelihood: the accuracies of a tighter fit to 0.001)
    opt = torch.optim.LBFGS([w], max_iter=200, tolerance_grad=1e-2, line_search_fn="strong_wolfe")

    def loss():
        opt.zero_grad()
        out = torch.nn.functional.cross_entropy(x @ w + offered, y, reduction="sum")
        out = out + 0.5 * JOINT_PENALTY * w[:-1].square().sum()
        out.backward()
        return out

    opt.step(loss)
    return w.detach()


def _unknown(item: dict) -> int:
    """How many of an item's letters its known letters do not give away (probes.known_mask)."""
    return item["known"].count(".")


def _neighbour_places(items: list[dict], pieces, ref: Reference) -> float | None:
    """Choices that spell listed words: the gold taken as the choice whose places (its index a
    among the m listed words of its length, first letter, token count and inflection ending: the
    class the distractors are drawn from, probes._spell_class), and its
    rank r among the k choices) make the other choices likeliest had they been drawn r from the
    a words before it and k - 1 - r from those after: the least C(a, r) C(m - 1 - a, k - 1 - r).
    A rule that balances the gold's alphabetical rank so draws its distractors (task version 3.0
    of char_spell: 0.36 here); uniform distractors leave it at chance. None where a choice is
    not a listed word of two letters or more."""
    spelled = [[_letters(c) for c in it["choices"]] for it in items]
    if not all(len(w) > 1 and w in ref.counts for ws in spelled for w in ws):
        return None
    lengths = {len(w) for ws in spelled for w in ws}
    every = {w for w, c in ref.counts.items() if c >= MIN_COUNT}
    listed = sorted(w for w in every if len(w) in lengths)
    cls = lambda w: (len(w), w[0], len(pieces(" " + w)), inflection(w, every))  # noqa: E731
    classes = collections.defaultdict(list)
    for w in listed:
        classes[cls(w)].append(w)
    place = {w: (i, len(ws)) for ws in classes.values() for i, w in enumerate(ws)}

    def log_comb(n: int, r: int) -> float:
        if r < 0 or r > n:
            return math.inf
        return math.lgamma(n + 1) - math.lgamma(r + 1) - math.lgamma(n - r + 1)

    right = 0.0
    for it, ws in zip(items, spelled):
        k, order = len(ws), sorted(ws)
        scores = []
        for w in ws:
            a, m = place[w]
            r = order.index(w)
            scores.append(-(log_comb(a, r) + log_comb(m - 1 - a, k - 1 - r)))
        right += _pick(scores, it["gold"])
    return right / len(items)


def _recorded(items: list[dict]) -> bool:
    """Whether the items record their word's lead, ending and known letters (the readers'
    and some lookups' input)."""
    return all("lead" in it and "ending" in it and "known" in it for it in items)


def _lookup_features(
    items: list[dict], pieces: Callable[[str], list[str]], ref: Reference, task: str
) -> dict[str, Callable[[dict], object] | None]:
    """{lookup: its feature of an item}, None where the lookup does not apply to this probe."""
    # lookups learn an answer per choice text: only where the items share their choices
    shared = len({c for it in items for c in it["choices"]}) <= len(LETTERS)
    lookups = {
        "lookup: word length": lambda it: len(it["word"]),
        "lookup: word token count": lambda it: min(it["tokens"], 4),
        "lookup: word frequency": lambda it: int(math.log2(ref.counts.get(it["word"], 1))),
        "lookup: word first letter (not prefix-shaped probes)": lambda it: it["word"][0],
        "lookup: word inflection ending": lambda it: it["ending"],
        "lookup: the word's forms in the word list (-s, -ed, -ing, -er, -est, -ly)": lambda it: it[
            "forms"
        ],
        "lookup: the word's class by its derivational ending (-tion, -ous, -ize, ...)": lambda it: (
            word_class(it["word"])
        ),
        "lookup: letters past the known ones (token leads, ending)": _unknown,
        "lookup: lead length, with the asked text's": lambda it: (
            len(it["lead"]),
            len(it.get("letter") or ""),
        ),
        "lookup: last token's length (not prefix-shaped probes)": lambda it: len(
            pieces(" " + it["word"])[-1].strip()
        ),
        "lookup: known and unknown places among the last six (past-the-lead probes)": lambda it: (
            "".join("." if c == "." else "x" for c in it["known"][-6:])
        ),
        "lookup: known tail, two places before the last (last letter)": lambda it: known_tail(
            it["known"]
        ),
        "lookup: three places before the last (last letter)": lambda it: it["known"][-4:-1],
    }
    recorded = _recorded(items)
    out: dict[str, Callable[[dict], object] | None] = {}
    for name, feature in lookups.items():
        # what prefix targets teach (first letter, lead) is what the prefix-shaped probes ask;
        # char_prefix's lead length is not (a yes prefix is never longer than its lead: its no
        # words are matched on it), char_first_letter's is left (docs/probes.md, "What is left")
        reads = "inflection" in name or "past the known" in name or "lead length" in name
        teaches = name.startswith("lookup: word first") or "past the known" in name
        teaches = teaches or ("lead length" in name and task == "char_first_letter")
        skip = not shared or (teaches and task in PREFIX_SHAPED) or (reads and not recorded)
        if "before the last" in name:
            skip = task != "char_last_letter" or not recorded
        if "last six" in name:
            skip = not shared or task not in PAST_THE_LEAD or not recorded
        if "last token" in name:
            skip = not shared or task in PREFIX_SHAPED
        if "forms" in name:  # (items built before the forms were recorded: not looked up)
            skip = not shared or not all("forms" in it for it in items)
        out[name] = None if skip else feature
    return out


def _held(task: str, features: dict, quintile: Callable | None) -> dict[str, Callable]:
    """The joint lookup's features: the lookups that apply (_lookup_features) and the letter
    pairs' expectation quintile, but those the design balances (BALANCED) and the documented
    residuals (RESIDUALS)."""
    every = {n: f for n, f in features.items() if f is not None and (task, n) not in BALANCED}
    if quintile is not None:
        every[EXPECTING[0]] = quintile
    return {n: f for n, f in every.items() if (task, n) not in RESIDUALS}


def pair_lookups(
    items: list[dict],
    pieces: Callable[[str], list[str]],
    ref: Reference,
    task: str,
    shuffles: int = 0,
    seed: int = 0,
) -> tuple[list[tuple[float, str, str]], list[float]]:
    """Every pair of the joint lookup's features as one lookup keyed by both (the interactions
    the joint does not look for), best first: [(accuracy, lookup, lookup)]; and the best pair's
    accuracy with each item's features dealt to another item of its unit (_dealt), `shuffles`
    times: the level the best of many pairs reaches where they tell nothing (the best of 50
    pairs at a chance of 0.5: 0.51-0.54 on 2,000 items). A measurement
    (scripts/probe_shortcuts.py --pairs, docs/probes.md), not a check."""
    _, quintile = _expecting(items, task, ref) if _recorded(items) else (None, None)
    held = _held(task, _lookup_features(items, pieces, ref, task), quintile)
    return _pairs(items, held, shuffles, seed)


def _pairs(items: list[dict], held: dict[str, Callable], shuffles: int, seed: int):
    """pair_lookups over the features `held`."""
    names = list(itertools.combinations(held, 2))
    if not names:
        return [], []
    index = {id(it): i for i, it in enumerate(items)}
    values = {name: [f(it) for it in items] for name, f in held.items()}
    rng = np.random.default_rng(seed)
    accuracies = []
    for order in [range(len(items))] + [_dealt(items, rng) for _ in range(shuffles)]:
        v = {name: [values[name][j] for j in order] for name in held}  # item i gets item order[i]'s
        accuracies.append(
            [
                _lookup(items, lambda it, a=a, b=b, v=v: (v[a][index[id(it)]], v[b][index[id(it)]]))
                for a, b in names
            ]
        )
    pairs = sorted(((acc, a, b) for acc, (a, b) in zip(accuracies[0], names)), key=lambda r: -r[0])
    return pairs, [max(found) for found in accuracies[1:]]


def _dealt(items: list[dict], rng) -> list[int]:
    """order[i]: the item whose features item i is dealt, at random among the items of its unit
    (an item's `unit`; the items without unit-mates among themselves): the design balances each
    unit's answers, so that a feature the unit's items share tells nothing by construction, and
    dealt over every item it would tell noise."""
    units = collections.Counter(it.get("unit") for it in items)
    groups = collections.defaultdict(list)
    for i, it in enumerate(items):
        unit = it.get("unit")
        groups[unit if unit is not None and units[unit] > 1 else None].append(i)
    order = list(range(len(items)))
    for members in groups.values():
        for i, j in zip(members, rng.permutation(members)):
            order[i] = int(j)
    return order


def shortcut_accuracies(
    items: list[dict], pieces: Callable[[str], list[str]], ref: Reference, task: str
) -> dict[str, float | None]:
    """{shortcut: accuracy} on one probe's items (None where the shortcut does not apply);
    `pieces(text) -> its tokens' texts`, `ref` from reference(word list), `task` the probe."""
    n = len(items)
    priors = ref.priors
    gold_letters = collections.Counter(
        ch for it in items for ch in _letters(it["choices"][it["gold"]])
    )
    total = sum(gold_letters.values()) + len(LETTERS)
    gold_prior = {c: (gold_letters[c] + 1) / total for c in LETTERS}
    scorers = {
        "alphabetically first choice": lambda c: [-ord(ch) for ch in c] + [0] * (64 - len(c)),
        "alphabetically last choice": lambda c: [ord(ch) for ch in c],
        "shortest choice": lambda c: -len(c),
        "fewest tokens": lambda c: -len(pieces(c)),
        "fewest tokens, letters joined": lambda c: -len(pieces(" " + _letters(c))),
        "English letters, any position": lambda c: _log(priors["any"], _letters(c)),
        "English letters, first position": lambda c: _log(priors["first"], _letters(c)[:1]),
        "English letters, last position": lambda c: _log(priors["last"], _letters(c)[-1:]),
        "the probe's gold-letter prior": lambda c: _log(gold_prior, _letters(c)),
        "letter bigrams of the word list": lambda c: _bigram_log(ref.bigrams, _letters(c)),
        "choice spells a listed word": lambda c: _letters(c) in ref.counts,
        "choice spells the most frequent word": lambda c: ref.counts.get(_letters(c), 0),
    }
    out: dict[str, float | None] = {}
    for name, score in scorers.items():
        out[name] = sum(_pick([score(c) for c in it["choices"]], it["gold"]) for it in items) / n
    k = len(items[0]["choices"])
    out["place among its neighbours in the word list"] = _neighbour_places(items, pieces, ref)
    spelling = "tokens" in items[0] and all(  # choices spelled letter by letter: " a p p l e"
        len(c.split()) > 1 and all(len(x) == 1 for x in c.split()) for c in items[0]["choices"]
    )
    out["choice's word has the probed word's token count"] = (
        sum(
            _pick(
                [len(pieces(" " + _letters(c))) == it["tokens"] for c in it["choices"]], it["gold"]
            )
            for it in items
        )
        / n
        if spelling
        else None
    )
    out["best fixed position"] = max(sum(it["gold"] == j for it in items) / n for j in range(k))
    yes_no = items[0]["choices"] == [" no", " yes"]
    out["always yes"] = sum(it["gold"] == 1 for it in items) / n if yes_no else None
    counting = all(c.strip().isdigit() for c in items[0]["choices"])  # " 0".." 2" or " 1".." 3"
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
    features = _lookup_features(items, pieces, ref, task)
    for name, feature in features.items():
        out[name] = None if feature is None else _lookup(items, feature)
    recorded = _recorded(items)
    out.update(_readers(items, task, ref) if recorded else dict.fromkeys(READERS))
    expecting, quintile = _expecting(items, task, ref) if recorded else (None, None)
    out.update(expecting or dict.fromkeys(EXPECTING))
    held = _held(task, features, quintile)
    out[JOINT] = _joint(items, held) if held else None
    tokens = [[t.strip() for t in pieces(" " + it["word"])] for it in items]
    if all(len(_letters(c)) == 1 for it in items for c in it["choices"]) and not yes_no:
        out["copy: answer letter is a token of the word"] = (
            sum(
                _pick([c.strip() in parts for c in it["choices"]], it["gold"])
                for it, parts in zip(items, tokens)
            )
            / n
        )
    else:
        out["copy: answer letter is a token of the word"] = None
    copied = "copy: queried letter is a token of the word (yes/no, count)"
    if (yes_no or counting) and task != "char_prefix" and all(len(q or "") == 1 for q in queried):
        # the question's quoted letter is the token the word's later tokens would match: yes
        # where one is that letter alone, else no; a count above the least the choices offer
        held = [q in parts[1:] for q, parts in zip(queried, tokens)]
        out[copied] = (
            sum(
                (g == it["gold"])
                if yes_no
                else _pick([0.0] + [float(g)] * (len(it["choices"]) - 1), it["gold"])
                for g, it in zip(held, items)
            )
            / n
        )
    else:
        out[copied] = None
    if task == "char_prefix":
        bounds = [{"".join(parts[:j]) for j in range(1, len(parts) + 1)} for parts in tokens]
        guesses = [int(it["letter"] in b) for it, b in zip(items, bounds)]
        out["copy: prefix ends at a token boundary"] = (
            sum(g == it["gold"] for g, it in zip(guesses, items)) / n
        )
    else:
        out["copy: prefix ends at a token boundary"] = None
    return out


READERS = (
    "reader: letters of the leading vocabulary prefix (past-the-lead probes)",
    "reader: letters of the inflection ending",
    "reader: letters of every token's leading prefix and the ending (past-the-lead probes)",
)
"""The readers of what a word gives away besides reading its letters; the first and the last
are required at chance on the probes past the lead only (the others credit the lead by design)"""
_BY_LEAD = (READERS[0], READERS[2])


def _fits(mask: str, text: str) -> bool:
    """Whether `text` agrees with every letter `mask` shows ("." shows none)."""
    return all(m in (".", ch) for m, ch in zip(mask, text))


def _readers(items: list[dict], task: str, ref: Reference) -> dict[str, float | None]:
    """The readers of the lead's, the ending's and the known letters (probes.known_mask): each
    scores the choices by what those letters say of them (a tie where they say nothing). On the
    last letter the lead's reader takes the word for the lead and one letter more, scored by the
    word list's letter bigrams; the known letters' reader the last letter that most listed words
    end in after the two places before it as the known letters show them (`known_tail`): letter
    statistics of English spelling (neither knows whole words' spellings: that is what the
    probes measure)."""
    n = len(items)
    ends = collections.defaultdict(collections.Counter)  # the listed words' two letters before
    for w, count in ref.counts.items():  # the last: how often each last letter follows them
        if len(w) >= 3:
            ends[w[-3:-1]][w[-1]] += count

    @functools.cache
    def tails(tail: str) -> collections.Counter:
        """The last letters of the listed words whose two letters before the last fit `tail`."""
        out = collections.Counter()
        for before, last in ends.items():
            if len(before) == len(tail) and _fits(tail, before):
                out.update(last)
        return out

    def lead(known: str, letter: str | None):
        if task == "char_spell":
            return lambda c: _letters(c).startswith(known)
        if task == "char_first_letter":
            return lambda c: c.strip() == known[:1]
        if task == "char_last_letter":
            after = known[-1:] or "^"  # the word taken as the lead and one letter more
            return lambda c: ref.bigrams[(after, c.strip())] + ref.bigrams[(c.strip(), "$")]
        if task == "char_prefix":
            return lambda c: (c == " yes") == known.startswith(letter)
        return letters(known, letter)

    def ending(known: str, letter: str | None):
        if task == "char_spell":
            return lambda c: _letters(c).endswith(known)
        if task == "char_last_letter":
            return lambda c: c.strip() == known[-1:]
        return None if task in PREFIX_SHAPED else letters(known, letter)

    def masked(mask: str, letter: str | None):
        if task in ("char_spell", "char_first_letter"):
            return lambda c: _fits(mask, _letters(c))
        if task == "char_last_letter":
            last = tails(known_tail(mask))
            return lambda c: last[c.strip()]
        if task == "char_prefix":
            return lambda c: (c == " yes") == (mask[: len(letter)] == letter)
        return letters(mask, letter)

    def letters(known: str, letter: str | None):
        """What some of a word's letters say of a count or of whether it holds a letter."""
        if task == "char_count":
            least = known.count(letter)
            return lambda c: -int(c) if int(c) >= least else -math.inf
        if task == "char_contains":
            return lambda c: (c == " yes") == (letter in known)
        return None

    out: dict[str, float | None] = {}
    for name, reader, field in zip(
        READERS, (lead, ending, masked), ("lead", "ending", "known"), strict=True
    ):
        right = 0.0
        for it in items:
            score = reader(it[field], it.get("letter"))
            if score is None:
                break
            right += _pick([score(c) for c in it["choices"]], it["gold"])
        else:
            out[name] = right / n
            continue
        out[name] = None
    return out


EXPECTING = (
    "lookup: letter pairs' expectation at the unknown letters (yes/no, count)",
    "reader: letter pairs at the unknown letters (yes/no, count)",
)


def _expecting(items: list[dict], task: str, ref: Reference) -> tuple[dict, Callable | None]:
    """What a reader of the known letters that knows English letter pairs expects of the queried
    letter at the unknown ones (probes.expected_letters): as a reader, yes above the probe's
    median expectation (char_contains) or the likeliest count of a Poisson of that mean
    (char_count); as a lookup, its quintile learned on the other folds. Returned with the
    quintile as a feature (for the joint lookup; None where neither applies)."""
    if task not in ("char_contains", "char_count"):
        return dict.fromkeys(EXPECTING), None
    expected = [expected_letters(it["known"], it["letter"], ref.bigrams) for it in items]
    if task == "char_contains":
        guesses = [int(b) for b in _above_median(expected)]
        read = sum(g == it["gold"] for g, it in zip(guesses, items)) / len(items)
    else:
        read = sum(
            _pick([mean**j / math.factorial(j) for j in range(len(it["choices"]))], it["gold"])
            for mean, it in zip(expected, items)
        ) / len(items)
    ranked = sorted(expected)
    quintile = {id(it): 5 * ranked.index(e) // len(ranked) for it, e in zip(items, expected)}
    feature = lambda it: quintile[id(it)]  # noqa: E731
    return {EXPECTING[0]: _lookup(items, feature), EXPECTING[1]: read}, feature


def off_chance(
    accuracies: dict[str, float | None],
    items: list[dict],
    task: str | None = None,
    noise: float = 0.0,
) -> dict[str, float]:
    """The shortcuts of `accuracies` further than TOLERANCE from the probe's chance: either side
    for the scorers of answers (one far below chance is one far above, reversed), above chance
    only for the lookups (one learned on the other folds of a design balanced exactly within
    groups larger than its units falls below chance by construction: a held-out item's answer
    is the one its fold has least of); a documented residual (RESIDUALS) above chance by more
    than its own bound. The reader of the lead counts on the probes past it only (`task`,
    PAST_THE_LEAD): the others credit what it knows by design (docs/probes.md). `noise` widens
    every bound to at least itself (noise_margin: a probe of few items)."""
    chance = 1 / len(items[0]["choices"])
    return {
        name: value
        for name, value in accuracies.items()
        if value is not None
        and (
            value - chance > max(RESIDUALS.get((task, name), TOLERANCE), noise)
            or (chance - value > max(TOLERANCE, noise) and "lookup" not in name)
        )
        and (name not in _BY_LEAD or task in PAST_THE_LEAD)
    }


CHECK_Z = 5.0
"""How many binomial standard errors of a probe's accuracy at chance a shortcut may stray by
before the check at build time (check_probes) calls it a leak, where that is more than the
bounds above (a probe of fewer than about 2,000 items): about 30 shortcuts a probe, either side
for the scorers, and six probes a build. With the golds of the built probes redrawn at random
(no leak), the largest of a probe's shortcuts (the joint lookup among them) strayed by 4.0
standard errors at its 99th percentile over 1,800 probes of 150 items (embedded BPE), 4.9 at
most: a bound of 4 flagged 1% of the probes, 5 none, with little to spare (an earlier
measurement, before the joint lookup and on other draws: 4.3 and 4.6 over 600 probes, 2% at 4);
tests/test_probes.py measures the rate at 5"""


def noise_margin(n: int, chance: float) -> float:
    """CHECK_Z binomial standard errors of an accuracy at `chance` over n items."""
    return CHECK_Z * math.sqrt(chance * (1 - chance) / n)


def check_probes(probes: dict[str, list[dict]], pieces, ref: Reference, tasks) -> dict:
    """Every shortcut on each probe of `tasks` as built (build_probes' output, for the word
    source and tokenizer an evaluation uses): {"table": shortcut_table's markdown, "probes":
    {task: {"items": n, "chance": its chance accuracy, "bound": how far from chance a shortcut
    without a documented residual may stray (noise_margin where it is over TOLERANCE), "off":
    off_chance's {shortcut: accuracy}}}}. An evaluation records it beside its results, and the
    report names a probe whose check found a shortcut."""
    results = {t: shortcut_accuracies(probes[t], pieces, ref, t) for t in tasks}
    out = {}
    for t in tasks:
        chance = 1 / len(probes[t][0]["choices"])
        noise = noise_margin(len(probes[t]), chance)
        out[t] = {
            "items": len(probes[t]),
            "chance": round(chance, 4),
            "bound": round(max(TOLERANCE, noise), 4),
            "off": {k: round(v, 4) for k, v in off_chance(results[t], probes[t], t, noise).items()},
        }
    return {"table": _table(results, probes, tasks), "probes": out}


def shortcut_table(probes: dict[str, list[dict]], pieces, ref: Reference, tasks) -> str:
    """A markdown table: a row per shortcut, a column per probe (its chance in the header)."""
    return _table({t: shortcut_accuracies(probes[t], pieces, ref, t) for t in tasks}, probes, tasks)


def _table(results: dict, probes: dict, tasks) -> str:
    chance = {t: 1 / len(probes[t][0]["choices"]) for t in tasks}
    head = "| shortcut | " + " | ".join(f"{t} (chance {chance[t]:.2f})" for t in tasks) + " |"
    lines = [head, "|---|" + "---:|" * len(tasks)]
    for name in SHORTCUTS:
        cells = [
            "-"
            if results[t][name] is None
            else f"{results[t][name]:.3f}" + ("*" if (t, name) in RESIDUALS else "")
            for t in tasks
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
