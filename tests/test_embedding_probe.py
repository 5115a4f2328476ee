"""The embedding probe finds letters where they are encoded and nothing where they are not: a
vocabulary whose vectors carry a planted letter code, against noise and the controls; vectors
that know only which word (or stem) a token is, shared by its case/space variants, are not
credited with its letters."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from prefix_titan.evaluation import embedding_probe as ep
from prefix_titan.evaluation.probes import inflection


def vocabulary(n=1500, seed=0):
    rng = np.random.default_rng(seed)
    letters = list("abcdefghijklmnopqrstuvwxyz")
    texts = [None, "<|end|>", "123", " x-y", "é"]  # not word-like: never probed
    while len(texts) < n:
        k = int(rng.integers(1, 12))
        word = "".join(rng.choice(letters, k))
        texts.append(
            (" " if rng.random() < 0.5 else "") + (word.title() if rng.random() < 0.1 else word)
        )
    return texts


def variant_vocabulary(forms=200, seed=0):
    """Word-like texts in families, in a random order: each form in one to four case/space variants
    ("apple", " apple", "Apple", " Apple"), a third of the forms of 4+ letters with one or two
    derived forms of the same stem ("apples", "appleing"), each in its own variants."""
    rng = np.random.default_rng(seed)
    words: set[str] = set()
    while len(words) < forms:
        words.add("".join(rng.choice(list(ep.LETTERS), int(rng.integers(2, 10)))))
    texts = []
    for word in sorted(words):
        family = [word] + [word + s for s in ("s", "ing") if len(word) >= 4 and rng.random() < 0.3]
        for form in family:
            for v in rng.choice(4, size=int(rng.integers(1, 5)), replace=False):
                texts.append((form, " " + form, form.title(), " " + form.title())[v])
    return [None, "<|end|>"] + [texts[i] for i in rng.permutation(len(texts))]


def test_the_printed_results_of_the_embedding_probe_alone_have_no_empty_table():
    from prefix_titan.evaluation.harness import table

    probe = {
        "input_letters,none": 0.61,
        "input_letters_predictions_permuted,none": 0.12,
        "input_letters_predictions_permuted_within_id_rank,none": 0.13,
        "input_letters_fresh_init,none": 0.1,
        "input_letters_shuffled_labels,none": 0.11,
        "majority_letters": 0.5,
    }
    line = table({"results": {"embedding_probe": probe}})
    assert line.startswith("embedding_probe (trained vectors; in brackets its controls: the ")
    assert line.endswith(": input_letters 0.6100 (0.1200 / 0.1300 / 0.1000)")  # trained alone
    both = table({"results": {"piqa": {"acc,none": 0.5}, "embedding_probe": probe}})
    assert both.splitlines()[0].startswith("| task | acc |") and "| piqa | 0.5000 |" in both


def test_word_like_tokens_and_their_labels():
    labels = ep.word_like_tokens([None, " Apple", "ing", "x1", " ", "zzzzzzzzzzzzz", "a b"])
    assert labels.ids.tolist() == [1, 2, 5]
    assert labels.first.tolist() == [0, 8, 25]  # a, i, z (lower-cased)
    assert labels.length.tolist() == [4, 2, 9]  # 5 letters, 3 letters, 10+
    assert labels.letters[0].nonzero()[0].tolist() == [0, 4, 11, 15]  # a e l p
    assert labels.group.tolist() == [0, 1, 2]  # appl, ing, zzzz
    with pytest.raises(ValueError, match="no word-like tokens"):
        ep.word_like_tokens([None, "123"])
    texts = [" Apple", "apple", " apples", "app", " App", "ing"]
    assert ep.word_like_tokens(texts).group.tolist() == [
        1,
        1,
        1,
        0,
        0,
        2,
    ]  # by stem: appl, app, ing
    assert ep.word_like_tokens(texts, stem=None).group.tolist() == [1, 1, 2, 0, 0, 3]  # by form


def test_no_form_and_no_stem_is_split_between_folds(seed):
    texts = variant_vocabulary(400, seed)
    labels = ep.word_like_tokens(texts)
    words = [texts[i].strip().lower() for i in labels.ids]
    assert len(set(words)) < len(words)  # case/space variants present
    fold = ep.group_folds(labels.group, ep.FOLDS, seed)
    for keys in (words, [w[: ep.STEM] for w in words]):  # a form, a stem: one group, one fold
        seen: dict = {}
        for key, group, k in zip(keys, labels.group, fold):
            assert seen.setdefault(key, (group, k)) == (group, k), key
    assert labels.group.max() + 1 == len({w[: ep.STEM] for w in words})  # one group per stem
    # Balanced in tokens (within the largest group), seeded, and every fold used.
    largest = np.bincount(labels.group).max()
    assert np.all(np.abs(np.bincount(fold, minlength=ep.FOLDS) - len(words) / ep.FOLDS) <= largest)
    assert np.array_equal(fold, ep.group_folds(labels.group, ep.FOLDS, seed))
    assert not np.array_equal(fold, ep.group_folds(labels.group, ep.FOLDS, seed + 1))
    with pytest.raises(ValueError, match="2 groups: too few to fill 3 folds"):
        ep.group_folds(np.array([0, 0, 1, 1]), 3, seed)


@pytest.mark.slow
@pytest.mark.parametrize("shared_by", ["form", "stem"])
def test_knowing_which_word_a_token_is_is_not_credited_as_its_letters(seed, shared_by):
    """Vectors with no letter code: one random vector per lower-cased form (or per stem, its first
    four letters), shared by its case/space variants (and derived forms), plus noise at half its
    scale. With folds over tokens a probe read a test token's letters off its variants in the
    training folds (letters F1 about 0.55 against the controls' 0.24)."""
    texts = variant_vocabulary(300, seed)
    labels = ep.word_like_tokens(texts)
    words = [texts[i].strip().lower() for i in labels.ids]
    keys = words if shared_by == "form" else [w[:4] for w in words]
    index = {key: j for j, key in enumerate(sorted(set(keys)))}
    gen = torch.Generator().manual_seed(seed)
    d = 256
    identity = torch.randn(len(index), d, generator=gen)
    matrix = torch.randn(len(texts), d, generator=gen)
    matrix[torch.from_numpy(labels.ids)] = identity[torch.tensor([index[k] for k in keys])]
    matrix[torch.from_numpy(labels.ids)] += 0.5 * torch.randn(len(keys), d, generator=gen)
    result = ep.probe_matrices({"input": matrix}, texts, resamples=200)["input"]
    trained = result["trained"]
    for task in ep.TASKS:  # the intervals meet (per-token folds: 0.2 to 0.8 apart)
        control = max(result["shuffled labels"][task][2], result["fresh init"][task][2])
        assert trained[task][1] <= control + 0.05, (task, trained[task], control)
    # the letters' own chance level: the same predictions dealt to the tokens at random
    permuted = result["predictions permuted"]["letters"]
    assert trained["letters"][1] <= permuted[2], (trained["letters"], permuted)


@pytest.mark.slow
def test_the_letters_a_token_shares_with_its_leading_forms_are_not_credited(seed):
    """A vocabulary of words and their 1-3 letter beginnings (" a", " ap", " app" beside
    " apple"), with vectors that hold no letter code: each form's own random vector plus those of
    the shorter forms that begin it (what a prefix target ties together), plus noise. Scored on
    every letter, a probe read letters off those ties across the folds both ways (a word's
    leading letters off its beginnings, a beginning's letters off the words it begins: letters F1
    0.3 above its controls); past the lead it stays at the controls, and a planted letter code is
    still found there."""
    rng = np.random.default_rng(seed)
    words = sorted(
        {"".join(rng.choice(list(ep.LETTERS), int(rng.integers(4, 10)))) for _ in range(500)}
    )
    forms = sorted({w[:k] for w in words for k in (1, 2, 3)} | set(words))
    texts = [None] + [" " + f for f in forms]
    labels = ep.word_like_tokens(texts)
    short = np.array([len(f) for f in forms]) < ep.STEM
    assert labels.lead[~short].sum(1).min() >= 1  # " apple": the letters of " app" not scored
    assert (labels.lead[short] == labels.letters[short]).all()  # " ap" begins others: none scored
    gen = torch.Generator().manual_seed(seed)
    d = 128
    own = torch.randn(len(forms), d, generator=gen)
    index = {f: j for j, f in enumerate(forms)}
    matrix = torch.zeros(len(texts), d)
    for j, f in enumerate(forms):
        matrix[j + 1] = own[j] + sum(
            own[index[f[:k]]] for k in range(1, min(len(f), 4)) if k < len(f)
        )
    matrix[1:] += 0.5 * torch.randn(len(forms), d, generator=gen)
    result = ep.probe_matrices({"input": matrix}, texts, resamples=200)["input"]
    trained, permuted = result["trained"]["letters"], result["predictions permuted"]["letters"]
    control = max(permuted[2], result["shuffled labels"]["letters"][2])
    assert trained[1] <= control + 0.02, (trained, result)
    everything = replace(labels, lead=None)  # every letter scored: the relatives' letters read
    pred = ep.out_of_fold(matrix, everything, ep.FOLDS, ep.SEED, l2=ep.L2, iterations=ep.ITERATIONS)
    assert ep.scores(pred, everything, 100)["letters"][0] > trained[0] + 0.15
    code = torch.randn(26, d, generator=gen)  # letters encoded: found past the lead too
    matrix[torch.from_numpy(labels.ids)] += 2 * torch.from_numpy(labels.letters) @ code
    found = ep.probe_matrices({"input": matrix}, texts, resamples=100)["input"]["trained"]
    assert found["letters"][1] > control + 0.3, found


def test_vectors_that_know_only_a_tokens_length_are_not_credited_with_its_letters(seed):
    """Longer tokens hold more letters, and a lead leaves a short token that begins others only
    letters it lacks to score: a probe that reads only the length class beat the control dealt
    within endings (+0.06 letters F1 on the embedded BPE); dealt within ending and length class
    it does not. Perfect predictions score 1 with an interval of 1 (a letter that no scored
    token holds would have pulled the average down: the macro-F1 keeps the letters held
    MIN_POSITIVES times)."""
    rng = np.random.default_rng(seed)
    words = sorted(
        {"".join(rng.choice(list(ep.LETTERS), int(rng.integers(4, 12)))) for _ in range(600)}
    )
    texts = [None] + [" " + f for f in sorted({w[:k] for w in words for k in (1, 2)} | set(words))]
    labels = ep.word_like_tokens(texts)
    gen = torch.Generator().manual_seed(seed)
    d = 64
    matrix = 0.5 * torch.randn(len(texts), d, generator=gen)
    rows = torch.from_numpy(labels.ids)
    matrix[rows] += 3 * torch.randn(ep.LENGTHS, d, generator=gen)[torch.from_numpy(labels.length)]
    result = ep.probe_matrices({"input": matrix}, texts, resamples=200)["input"]
    trained, control = result["trained"]["letters"], result["predictions permuted"]["letters"]
    assert trained[1] <= control[2], (trained, control)
    perfect = {"letters": labels.letters, "first": labels.first, "length": labels.length}
    assert ep.scores(perfect, labels, 50)["letters"] == (1.0, 1.0, 1.0)
    rare = replace(labels, lead=labels.lead.copy())
    rare.lead[:, ep.LETTERS.index("q")] = 1  # q never scored: left out, not counted as 0
    assert not ep.letters_scored(rare)[ep.LETTERS.index("q")]
    assert ep.scores(perfect, rare, 50)["letters"] == (1.0, 1.0, 1.0)


def test_a_planted_letter_code_is_found_and_noise_is_not(seed):
    texts = vocabulary()
    labels = ep.word_like_tokens(texts)
    gen = torch.Generator().manual_seed(seed)
    d = 48
    code = torch.randn(26, d, generator=gen)
    planted = torch.randn(len(texts), d, generator=gen)
    planted[torch.from_numpy(labels.ids)] += 2 * torch.from_numpy(labels.letters) @ code
    noise = torch.randn(len(texts), d, generator=gen)
    result = ep.probe_matrices({"input": planted, "output": noise}, texts, resamples=200)
    assert result["tokens"] == len(labels.ids) == len(texts) - 5
    found = result["input"]["trained"]
    for control in ("shuffled labels", "fresh init", "predictions permuted"):
        assert result["input"][control]["letters"][2] < found["letters"][1] - 0.3, control
        assert result["output"][control]["letters"][2] > 0  # intervals are computed
    assert found["letters"][0] > 0.9 and found["letters"][1] <= found["letters"][0]
    # dealt within length classes, the permuted predictions score the length as the trained do
    assert result["input"]["predictions permuted"]["length"][0] == found["length"][0]
    # Noise: the trained probe is no better than its controls (overlapping intervals).
    trained, shuffled = result["output"]["trained"], result["output"]["shuffled labels"]
    for task in ep.TASKS:
        assert trained[task][1] <= shuffled[task][2] + 0.02, task
    table = ep.table(result)
    assert "| input | trained |" in table and "| majority |" in table


@pytest.mark.slow
def test_the_first_letter_and_the_length_are_read_when_encoded(seed):
    texts = vocabulary(1200, seed=1)
    labels = ep.word_like_tokens(texts)
    matrix = torch.randn(len(texts), 40) * 0.1
    idx = torch.from_numpy(labels.ids)
    matrix[idx, torch.from_numpy(labels.first)] += 3.0  # the first letter, one-hot
    matrix[idx, 26 + torch.from_numpy(labels.length)] += 3.0  # the length class, one-hot
    result = ep.probe_matrices({"input": matrix}, texts, resamples=100)
    s = result["input"]["trained"]
    assert s["first"][0] > 0.95 and s["length"][0] > 0.95
    chance = result["chance"]
    assert result["input"]["shuffled labels"]["first"][0] < chance["first"] + 0.05


@pytest.mark.slow
def test_vectors_that_know_only_a_tokens_frequency_are_read_against_the_id_rank_control(seed):
    """A BPE numbers its tokens commonest first, so a token's id rank (its frequency) tells its
    length; vectors holding only their id-rank class beat the shuffled labels, the fresh init and
    the majority on the length, and only the control that deals the predictions within id-rank
    classes shows that they know nothing more. Vectors that encode the length beat it too."""
    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list(ep.LETTERS), int(k))) for k in rng.integers(1, 12, 400)]
    # ids in the order of a noisy length: short tokens first, as a BPE merges them
    texts = [words[i] for i in np.argsort([len(w) + rng.normal(0, 2) for w in words])]
    labels = ep.word_like_tokens(texts)
    gen = torch.Generator().manual_seed(seed)
    rank = torch.zeros(len(texts), dtype=torch.long)
    rank[torch.from_numpy(labels.ids)] = torch.from_numpy(labels.rank_class())
    frequency = torch.nn.functional.one_hot(rank, ep.RANK_BINS).float()
    frequency += 0.01 * torch.randn(frequency.shape, generator=gen)
    length = torch.randn(len(texts), 16, generator=gen)
    onehot = torch.nn.functional.one_hot(torch.from_numpy(labels.length), 16).float()
    length[torch.from_numpy(labels.ids)] += 3 * onehot
    matrices = {"input": frequency, "output": length}
    result = ep.probe_matrices(matrices, texts, iterations=10, resamples=100)
    found, controls = result["input"]["trained"]["length"], result["input"]
    assert found[1] > controls["shuffled labels"]["length"][2] + 0.02
    assert found[1] > controls["fresh init"]["length"][2] + 0.02
    assert found[0] > result["chance"]["length"] + 0.03
    ranked = controls["predictions permuted within id rank"]["length"]
    assert found[0] <= ranked[2]  # frequency is all these vectors tell
    planted = result["output"]
    assert (
        planted["trained"]["length"][1]
        > planted["predictions permuted within id rank"]["length"][2] + 0.2
    )
    assert "predictions permuted within id rank" in ep.table(result)
    flat = ep.flat_results(result)
    assert "input_length_predictions_permuted_within_id_rank,none" in flat


def test_the_bootstrap_resamples_groups_not_tokens(seed):
    """Every token four times over, a group per original token: the same evidence, so the same
    interval; resampled as tokens, the copies would pass for four times the evidence."""
    rng = np.random.default_rng(seed)
    n, copies = 400, 4
    gold = (rng.random((n, 26)) < 0.3).astype(np.float32)
    first, length = rng.integers(0, 26, n), rng.integers(0, ep.LENGTHS, n)
    right = rng.random(n) < 0.5  # half the first letters and lengths predicted right
    pred = {
        "letters": np.where(rng.random((n, 26)) < 0.8, gold, 1 - gold),
        "first": np.where(right, first, (first + 1) % 26),
        "length": np.where(right, length, (length + 1) % ep.LENGTHS),
    }
    labels = ep.Labels(np.arange(n), gold, first, length, np.arange(n))
    tiled = ep.Labels(
        np.arange(n * copies),
        np.tile(gold, (copies, 1)),
        np.tile(first, copies),
        np.tile(length, copies),
        np.tile(np.arange(n), copies),  # a token and its copies: one group
    )
    tiled_pred = {t: np.tile(p, (copies, 1) if p.ndim == 2 else copies) for t, p in pred.items()}
    single = ep.scores(pred, labels, 400)
    grouped = ep.scores(tiled_pred, tiled, 400)
    as_tokens = ep.scores(tiled_pred, replace(tiled, group=np.arange(n * copies)), 400)
    for task in ep.TASKS:
        width = single[task][2] - single[task][1]
        assert grouped[task][0] == pytest.approx(single[task][0])
        assert 0.75 < (grouped[task][2] - grouped[task][1]) / width < 1.33, task
        assert (as_tokens[task][2] - as_tokens[task][1]) / width < 0.65, task


def test_flat_results_name_every_score(seed):
    texts = vocabulary(400)
    result = ep.probe_matrices({"input": torch.randn(len(texts), 8)}, texts, resamples=50)
    flat = ep.flat_results(result)
    assert flat["input_letters,none"] == result["input"]["trained"]["letters"][0]
    assert "input_first_shuffled_labels,none" in flat and "input_length_fresh_init_high" in flat
    assert "input_letters_predictions_permuted,none" in flat
    assert set(k for k in flat if k.startswith("majority_")) == {f"majority_{t}" for t in ep.TASKS}
    # eval's table gives the trained vectors' scores beside their controls, not a row of "-"
    from prefix_titan.evaluation.harness import table

    line = table({"results": {"piqa": {"acc,none": 0.5}, "embedding_probe": flat}}).splitlines()[-1]
    for t in ep.TASKS:
        permuted, by_rank, fresh = (
            flat[f"input_{t}_predictions_permuted,none"],
            flat[f"input_{t}_predictions_permuted_within_id_rank,none"],
            flat[f"input_{t}_fresh_init,none"],
        )
        # the length's permuted control scores what the probe does (each token given a
        # prediction made for another of its length): not shown as a chance level
        assert t != "length" or permuted == flat[f"input_{t},none"]
        controls = f"{'-' if t == 'length' else f'{permuted:.4f}'} / {by_rank:.4f} / {fresh:.4f}"
        want = f"input_{t} {flat[f'input_{t},none']:.4f} ({controls})"
        assert want in line, (want, line)
    assert "but the length's (-: each token given a prediction made for another" in line


def test_the_fresh_init_spans_its_draws_none_of_them_the_probes_seed(seed, monkeypatch):
    """The fresh-init control is FRESH_DRAWS untrained matrices, none drawn from the probe's own
    seed (torchtitan's first draw for a run of that seed: the run's initial embedding); its score
    is their mean and its interval spans each draw's (one draw's interval over the groups left
    out the spread between draws)."""
    texts = vocabulary(600)
    labels = ep.word_like_tokens(texts)
    made, scored = [], []
    randn, score = torch.randn, ep.scores

    def recorded_randn(*args, **kwargs):
        made.append(randn(*args, **kwargs))
        return made[-1]

    def recorded_scores(*args, **kwargs):
        scored.append(score(*args, **kwargs))
        return scored[-1]

    monkeypatch.setattr(ep.torch, "randn", recorded_randn)
    monkeypatch.setattr(ep, "scores", recorded_scores)
    fit = dict(l2=ep.L2, iterations=10)
    fresh = ep.fresh_init((len(texts), 16), labels, 3, seed, fit, 100)
    assert len(made) == len(scored) == ep.FRESH_DRAWS == 3
    own = randn((len(texts), 16), generator=torch.Generator().manual_seed(seed))
    assert not any(torch.equal(m, own) for m in made)
    assert not torch.equal(made[0], made[1]) and not torch.equal(made[1], made[2])
    for t in ep.TASKS:
        assert fresh[t][0] == pytest.approx(np.mean([s[t][0] for s in scored]))
        assert fresh[t][1] == min(s[t][1] for s in scored)
        assert fresh[t][2] == max(s[t][2] for s in scored)
    assert fresh == ep.fresh_init((len(texts), 16), labels, 3, seed, fit, 100)  # seeded


def test_bad_settings_and_folders_are_refused(tmp_path):
    with pytest.raises(ValueError, match="--folds 1: the embedding probe needs at least 2"):
        ep.probe_matrices({"input": torch.randn(10, 4)}, vocabulary(10), folds=1)
    with pytest.raises(ValueError, match="holds no \\*.safetensors"):
        ep.hf_matrices(str(tmp_path))
    from safetensors.torch import save_file

    save_file({"model.embed_tokens.weight": torch.zeros(4, 2)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="has no lm_head.weight"):
        ep.hf_matrices(str(tmp_path))


@pytest.mark.slow
def test_vectors_that_know_a_tokens_inflection_are_not_credited_with_its_letters(seed):
    """Vectors with no letter code but a token's form and its inflection ending ("-ing" words
    apart from "-s" words, as a trained embedding clusters them): a probe reads the ending's
    letters off the class, which a model knows from the grammatical form, not from spelling. The
    control deals the probe's predictions within each ending (version 3), so the class alone
    scores no more than the control; dealt over all tokens (version 2), it passed for letters."""
    texts = variant_vocabulary(600, seed)
    labels = ep.word_like_tokens(texts)
    words = [texts[i].strip().lower() for i in labels.ids]
    found = {inflection(w, set(words)) for w in words} - {""}
    assert "ing" in found and found & {"s", "es"}, found
    index = {w: j for j, w in enumerate(sorted(set(words)))}
    gen = torch.Generator().manual_seed(seed)
    d = 128
    identity = torch.randn(len(index), d, generator=gen)
    grammar = 2.0 * torch.randn(int(labels.ending.max()) + 1, d, generator=gen)
    grammar[0] = 0.0  # no ending: no class vector
    matrix = torch.randn(len(texts), d, generator=gen)
    rows = torch.from_numpy(labels.ids)
    matrix[rows] = identity[torch.tensor([index[w] for w in words])]
    matrix[rows] += grammar[torch.from_numpy(labels.ending)]
    result = ep.probe_matrices({"input": matrix}, texts, resamples=200)["input"]
    trained, control = result["trained"]["letters"], result["predictions permuted"]["letters"]
    assert trained[1] <= control[2], (trained, control)
    pred = ep.out_of_fold(matrix, labels, ep.FOLDS, ep.SEED, l2=ep.L2, iterations=ep.ITERATIONS)
    everywhere = np.random.default_rng(seed).permutation(len(labels.ids))
    old = ep.scores({t: p[everywhere] for t, p in pred.items()}, labels, 200)["letters"]
    assert trained[1] > old[2], (trained, old)


@pytest.mark.slow
def test_vectors_that_know_a_tokens_derivational_ending_are_not_credited_with_its_letters(seed):
    """Vectors with no letter code but a token's form and a class per derivational ending ("-tion"
    nouns apart from "-ness" nouns): dealt within inflection endings alone, the probe's own
    predictions scored below it (the class read as letters); dealt within inflection and
    derivational endings (version 4), the class alone scores no more than the control."""
    rng = np.random.default_rng(seed)
    endings = ("tion", "ness", "ment", "able", "ous", "ity", "ful", "ive")
    words = set()
    while len(words) < 1200:
        stem = "".join(rng.choice(list(ep.LETTERS), int(rng.integers(3, 7))))
        words.add(stem + (endings[int(rng.integers(len(endings)))] if rng.random() < 0.6 else ""))
    texts = [None] + [" " + w for w in sorted(words)]
    labels = ep.word_like_tokens(texts)
    classes = [ep.derivation(texts[i].strip()) for i in labels.ids]
    assert set(endings) <= set(classes)
    gen = torch.Generator().manual_seed(seed)
    d = 128
    kind = {c: 2.0 * torch.randn(d, generator=gen) for c in sorted(set(classes) - {""})}
    matrix = torch.zeros(len(texts), d)
    for i, c in zip(labels.ids, classes):
        matrix[i] = torch.randn(d, generator=gen) + (kind[c] if c else 0.0)
    result = ep.probe_matrices({"input": matrix}, texts, resamples=200)["input"]
    trained, control = result["trained"]["letters"], result["predictions permuted"]["letters"]
    assert trained[1] <= control[2], (trained, control)
    pred = ep.out_of_fold(matrix, labels, ep.FOLDS, ep.SEED, l2=ep.L2, iterations=ep.ITERATIONS)
    forms = {texts[i].strip() for i in labels.ids}
    inflected = [inflection(texts[i].strip(), forms) for i in labels.ids]
    inflected = np.unique(np.array(inflected), return_inverse=True)[1].reshape(-1)
    order = ep.within_classes(inflected, len(labels.ids), np.random.default_rng(seed))
    old = ep.scores({t: p[order] for t, p in pred.items()}, labels, 200)["letters"]
    assert trained[1] > old[2], (trained, old)


def test_a_checkpoint_that_does_not_exist_is_named_with_the_steps_nearby(tmp_path, capsys):
    import json

    from prefix_titan.embedding_probe import main

    run = tmp_path / "run"
    (run / "checkpoint" / "step-40").mkdir(parents=True)
    record = {"checkpoint": {"folder": "checkpoint"}, "model": {"flavor": "debugmodel"}}
    (run / "run_config.json").write_text(json.dumps(record))
    missing = run / "checkpoint" / "step-99"
    with pytest.raises(SystemExit) as e:
        main([str(run), "--checkpoint", str(missing)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"--checkpoint {missing} does not exist; step folders nearby: " in err, err
    assert str(run / "checkpoint" / "step-40") in err and "damaged" not in err, err
    assert not (run / "evals").exists()


def test_a_models_too_large_tokenizer_is_told_of_its_own_vocab_size_not_a_flavor(tmp_path, capsys):
    from helpers import tiny_hf_model

    from prefix_titan.embedding_probe import main

    model = tiny_hf_model(tmp_path / "m", vocab_size=48, tokens=64)
    with pytest.raises(SystemExit) as e:
        main([str(model)])
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert "64 ids" in err and f"{model / 'config.json'} has vocab_size 48" in err, err
    assert "flavor" not in err and not (model / "embedding_probe.json").exists(), err


def test_one_thread_sets_one_and_restores_the_count_also_on_an_error():
    """The fits' one-thread block: torch on one thread inside, the earlier count after, whether
    the block ends or raises; `when=False` leaves the count alone."""
    from prefix_titan.evaluation.threads import one_thread

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with one_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError, match="inside"):
            with one_thread():
                raise RuntimeError("inside")
        assert torch.get_num_threads() == 2
        with one_thread(when=False):
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
