import collections

import pytest

from prefix_titan.evaluation.probes import PROBE_TASKS, build_probes


@pytest.fixture(scope="module")
def probes(bpe_texts):
    return build_probes(bpe_texts)


def test_every_task_has_500_plus_balanced_items(probes):
    assert set(probes) == set(PROBE_TASKS)
    for task, docs in probes.items():
        assert len(docs) >= 500, task
        golds = collections.Counter(d["gold"] for d in docs)
        assert max(golds.values()) - min(golds.values()) <= 1, (task, golds)
        assert all(0 <= d["gold"] < len(d["choices"]) for d in docs)
        assert all(len(set(d["choices"])) == len(d["choices"]) for d in docs), task


def test_answers_are_right(probes):
    import re

    for d in probes["char_spell"]:
        word = re.search(r'"(.+)"', d["query"]).group(1)
        assert d["choices"][d["gold"]] == " " + " ".join(word)
    for task, index in (("char_first_letter", 0), ("char_last_letter", -1)):
        for d in probes[task]:
            assert d["choices"][d["gold"]] == " " + re.search(r'"(.+)"', d["query"]).group(1)[index]
    for d in probes["char_count"]:
        letter, word = re.findall(r'"(.+?)"', d["query"])
        assert d["choices"][d["gold"]] == f" {word.count(letter)}"
    for d in probes["char_contains"]:
        word, letter = re.findall(r'"(.+?)"', d["query"])
        assert d["choices"][d["gold"]] == (" yes" if letter in word else " no")
    for d in probes["char_prefix"]:
        word, prefix = re.findall(r'"(.+?)"', d["query"])
        assert d["choices"][d["gold"]] == (" yes" if word.startswith(prefix) else " no")


def test_prefix_probe_uses_vocabulary_tokens(probes, bpe_texts):
    import re

    vocab = {t for t in bpe_texts if t}
    yes = [re.findall(r'"(.+?)"', d["query"]) for d in probes["char_prefix"] if d["gold"] == 1]
    assert all(f" {w}" in vocab and f" {p}" in vocab for w, p in yes)


def test_deterministic(bpe_texts, probes):
    assert build_probes(bpe_texts) == probes
