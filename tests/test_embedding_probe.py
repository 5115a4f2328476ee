"""The embedding probe finds letters where they are encoded and nothing where they are not: a
vocabulary whose vectors carry a planted letter code, against noise and the controls."""

import numpy as np
import pytest
import torch

from prefix_titan.evaluation import embedding_probe as ep


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


def test_word_like_tokens_and_their_labels():
    labels = ep.word_like_tokens([None, " Apple", "ing", "x1", " ", "zzzzzzzzzzzzz", "a b"])
    assert labels.ids.tolist() == [1, 2, 5]
    assert labels.first.tolist() == [0, 8, 25]  # a, i, z (lower-cased)
    assert labels.length.tolist() == [4, 2, 9]  # 5 letters, 3 letters, 10+
    assert labels.letters[0].nonzero()[0].tolist() == [0, 4, 11, 15]  # a e l p
    with pytest.raises(ValueError, match="no word-like tokens"):
        ep.word_like_tokens([None, "123"])


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
    for control in ("shuffled labels", "fresh init"):
        assert result["input"][control]["letters"][2] < found["letters"][1] - 0.3, control
        assert result["output"][control]["letters"][2] > 0  # intervals are computed
    assert found["letters"][0] > 0.9 and found["letters"][1] <= found["letters"][0]
    # Noise: the trained probe is no better than its controls (overlapping intervals).
    trained, shuffled = result["output"]["trained"], result["output"]["shuffled labels"]
    for task in ep.TASKS:
        assert trained[task][1] <= shuffled[task][2] + 0.02, task
    table = ep.table(result)
    assert "| input | trained |" in table and "| majority |" in table


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


def test_flat_results_name_every_score(seed):
    texts = vocabulary(400)
    result = ep.probe_matrices({"input": torch.randn(len(texts), 8)}, texts, resamples=50)
    flat = ep.flat_results(result)
    assert flat["input_letters,none"] == result["input"]["trained"]["letters"][0]
    assert "input_first_shuffled_labels,none" in flat and "input_length_fresh_init_high" in flat
    assert set(k for k in flat if k.startswith("majority_")) == {f"majority_{t}" for t in ep.TASKS}


def test_bad_settings_and_folders_are_refused(tmp_path):
    with pytest.raises(ValueError, match="at least 2 folds"):
        ep.probe_matrices({"input": torch.randn(10, 4)}, vocabulary(10), folds=1)
    with pytest.raises(ValueError, match="holds no \\*.safetensors"):
        ep.hf_matrices(str(tmp_path))
    from safetensors.torch import save_file

    save_file({"model.embed_tokens.weight": torch.zeros(4, 2)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="has no lm_head.weight"):
        ep.hf_matrices(str(tmp_path))
