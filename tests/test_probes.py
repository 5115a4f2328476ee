"""The character probes measure characters: every answer is right, every design rule that removes
a shortcut holds exactly, and the answer-only shortcuts stay within 5 points of chance (here on
the embedded BPE; test_llama3.py on the real Llama-3 vocabulary)."""

import collections
import os
import re

import pytest
from tokenizers import Tokenizer

from prefix_titan.evaluation.probes import (
    BLANK,
    BLANK_TASKS,
    COUNTS,
    MAX_LETTER_SHARE,
    MIN_LETTERS,
    PROBE_TASKS,
    SHOTS,
    build_probes,
    embedded_word_counts,
    shard_word_counts,
)
from prefix_titan.evaluation.shortcuts import SHORTCUTS, letter_priors, shortcut_accuracies

N = 2000


@pytest.fixture(scope="module")
def tok(embedded_tokenizer_dir):
    return Tokenizer.from_file(os.path.join(embedded_tokenizer_dir, "tokenizer.json"))


@pytest.fixture(scope="module")
def probes(tok):
    return build_probes(tok)


def gold(item):
    return item["choices"][item["gold"]]


def test_every_probe_and_its_blank_twin_has_its_items(probes):
    assert set(probes) == set(PROBE_TASKS) | set(BLANK_TASKS)
    for task in PROBE_TASKS:
        real, blank = probes[task], probes[f"{task}_blank"]
        assert len(real) == len(blank) == N, task
        for r, b in zip(real, blank):
            assert {k: v for k, v in r.items() if k != "query"} == {
                k: v for k, v in b.items() if k != "query"
            }
            demo, question = r["query"].rsplit("\n\n", 1)
            assert f'the word "{r["word"]}"' in question
            blanked = question.replace(f'the word "{r["word"]}"', f'the word "{BLANK}"')
            assert b["query"] == f"{demo}\n\n{blanked}", task
            assert len(set(r["choices"])) == len(r["choices"]) and 0 <= r["gold"] < len(
                r["choices"]
            )


def test_words_are_stratified_over_letters_and_token_counts(probes):
    for task in PROBE_TASKS:
        items = probes[task]
        first = collections.Counter(i["word"][0] for i in items)
        assert len(first) >= MIN_LETTERS, task
        assert max(first.values()) <= MAX_LETTER_SHARE * len(items) + 1, (task, first)
        tokens = collections.Counter(min(i["tokens"], 3) for i in items)
        assert tokens[1] > 0.05 * N and tokens[2] + tokens[3] > 0.05 * N, (task, tokens)


def test_answers_are_right(probes):
    for i in probes["char_spell"]:
        assert gold(i) == " " + " ".join(i["word"])
    for task, index in (("char_first_letter", 0), ("char_last_letter", -1)):
        for i in probes[task]:
            assert gold(i) == " " + i["word"][index] == " " + i["letter"]
    for i in probes["char_count"]:
        assert i["choices"] == COUNTS and gold(i) == f" {i['word'].count(i['letter'])}"
    for i in probes["char_contains"]:
        assert gold(i) == (" yes" if i["letter"] in i["word"] else " no")
    for i in probes["char_prefix"]:
        assert gold(i) == (" yes" if i["word"].startswith(i["letter"]) else " no")
        assert len(i["letter"]) >= 2


def test_each_letter_is_gold_in_one_of_four_of_the_items_that_offer_it(probes):
    for task in ("char_first_letter", "char_last_letter"):
        offered, golds = collections.Counter(), collections.Counter()
        for i in probes[task]:
            offered.update(i["choices"])
            golds[gold(i)] += 1
        assert offered == collections.Counter({c: 4 * n for c, n in golds.items()}), task


def test_yes_and_no_ask_about_the_same_letters_and_prefixes(probes, tok):
    for task in ("char_contains", "char_prefix"):
        by = {a: collections.Counter() for a in (0, 1)}
        lengths = {a: [] for a in (0, 1)}
        for i in probes[task]:
            by[i["gold"]][i["letter"]] += 1
            lengths[i["gold"]].append(len(i["word"]))
        assert by[0] == by[1], task
        mean = {a: sum(v) / len(v) for a, v in lengths.items()}
        assert abs(mean[0] - mean[1]) < 0.3, (task, mean)
    texts = {tok.decode([i]) for i in range(tok.get_vocab_size())}  # yes prefixes are tokens
    assert all(f" {i['letter']}" in texts for i in probes["char_prefix"] if i["gold"] == 1)


def test_counts_are_balanced_per_letter_and_in_length(probes):
    per = collections.defaultdict(collections.Counter)
    lengths = collections.defaultdict(list)
    for i in probes["char_count"]:
        per[i["letter"]][i["gold"]] += 1
        lengths[i["gold"]].append(len(i["word"]))
    unbalanced = {c: n for c, n in per.items() if len(set(n.values())) > 1 or len(n) != 4}
    assert len(unbalanced) <= 1, unbalanced  # the item budget may cut the last letter's quadruples
    means = [sum(v) / len(v) for v in lengths.values()]
    assert max(means) - min(means) < 0.5, means


def test_spellings_differ_only_in_the_order_of_letters_after_the_first(probes):
    ranks = collections.Counter()
    for i in probes["char_spell"]:
        g = gold(i)
        for c in i["choices"]:
            assert len(c) == len(g) and sorted(c) == sorted(g) and c[:2] == g[:2]
        ranks[sorted(i["choices"]).index(g)] += 1
    assert max(ranks.values()) - min(ranks.values()) <= 4, ranks  # the gold's alphabetical rank


def test_gold_positions_are_balanced_and_the_order_is_shuffled(probes):
    for task in PROBE_TASKS:
        positions = collections.Counter(i["gold"] for i in probes[task])
        k = len(probes[task][0]["choices"])
        assert max(positions.values()) - min(positions.values()) <= max(2, N // 100), task
        assert len(positions) == k
    first_letters = [i["word"][0] for i in probes["char_first_letter"][:40]]
    assert first_letters != sorted(first_letters)


def test_the_exemplars_are_never_probed(probes):
    for task in PROBE_TASKS:
        query = probes[task][0]["query"]
        demo = query[: query.rindex("\n\n")]  # the exemplars, answered, before the question
        assert demo.count("\nAnswer: ") == SHOTS, task
        assert all(i["query"].startswith(demo + "\n\n") for i in probes[task])
        shown = set(re.findall(r'the word "([a-z]+)"', demo))
        assert len(shown) == SHOTS and not shown & {i["word"] for i in probes[task]}, task


def test_answer_only_shortcuts_stay_at_chance(probes, tok):
    priors = letter_priors(embedded_word_counts())
    encode = lambda s: tok.encode(s, add_special_tokens=False).ids  # noqa: E731
    for task in PROBE_TASKS:
        chance = 1 / len(probes[task][0]["choices"])
        accuracies = shortcut_accuracies(probes[task], encode, priors)
        assert set(accuracies) == set(SHORTCUTS)
        off = {k: v for k, v in accuracies.items() if v is not None and abs(v - chance) > 0.05}
        assert not off, (task, off)


def test_a_shortcut_that_works_is_caught():
    """The shortcut check itself: letter items whose distractors are rare letters are answered
    by the English letter prior, far above chance."""
    items = [
        {"word": w, "choices": [f" {w[0]}", " q", " x", " z"], "gold": 0, "letter": w[0]}
        for w in ("apple", "table", "stone", "river", "mouse", "house")
    ]
    priors = letter_priors(embedded_word_counts())
    accuracies = shortcut_accuracies(items, lambda s: [0], priors)
    assert accuracies["English letters, any position"] == 1.0
    assert accuracies["best fixed position"] == 1.0


def test_probes_are_deterministic_and_the_seed_overridable(probes, tok):
    again = build_probes(tok, n=300)
    assert again["char_count"] == build_probes(tok, n=300)["char_count"]
    other = build_probes(tok, n=300, seed=7)
    assert {i["word"] for i in other["char_first_letter"]} != {
        i["word"] for i in again["char_first_letter"]
    }


def test_words_from_a_shard_folder(tmp_path, tok, embedded_tokenizer_dir):
    from prefix_titan.data.prepare import prepare

    def shards(name, tokens):
        out = str(tmp_path / name)
        prepare("embedded", embedded_tokenizer_dir, out, tokens, 10**4, progress=False)
        return out

    full = shards("full", 10**7)
    counts = shard_word_counts(full, tok)
    assert counts["function"] > 100 and len(counts) > 4000
    built = build_probes(tok, n=400, word_counts=counts, source="shards")
    assert all(len(built[t]) == 400 for t in PROBE_TASKS)
    small = shards("small", 3000)
    with pytest.raises(ValueError, match="shard folder 'x' has .* words .* give a larger source"):
        build_probes(
            tok, n=400, word_counts=shard_word_counts(small, tok), source="shard folder 'x'"
        )


def test_bad_probe_settings_are_refused(tok):
    with pytest.raises(ValueError, match="--probe-shots must be between 0 and 8"):
        build_probes(tok, n=100, shots=9)
    with pytest.raises(ValueError, match="--probe-items must be >= 1"):
        build_probes(tok, n=0)
    zero_shot = build_probes(tok, n=100, shots=0)
    assert all(
        "\nAnswer:" == i["query"][-8:] and i["query"].count("Answer:") == 1
        for i in zero_shot["char_count"]
    )


def test_the_word_list_does_not_depend_on_the_running_python(monkeypatch):
    """The probes' default words are the shipped list, not the running Python's documentation
    (whose text differs between versions): another corpus changes nothing."""
    from prefix_titan.data import corpus
    from prefix_titan.evaluation import probes

    shipped = probes.embedded_word_counts()
    assert len(shipped) > 4000 and min(shipped.values()) >= 1
    monkeypatch.setattr(corpus, "embedded_documents", lambda: ("other words entirely",))
    assert probes.corpus_word_counts() == {"other": 1, "words": 1, "entirely": 1}
    assert probes.embedded_word_counts() == shipped
