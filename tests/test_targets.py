import math

import pytest
import torch
from helpers import sweep_specs

from prefix_titan.objectives import (
    SUPPORTS,
    TAU_SWEEP,
    ObjectiveSpec,
    build_target_table,
    describe_target,
    prefix_sets,
    token_texts,
)

ALL_SPECS = sweep_specs()

# A hand-made vocabulary: index -> text (None = special token).
HAND = [" p", " per", " person", " personal", " personality", "x", None, "y"]
GOLD = 4  # " personality"
PREFIXES = [4, 0, 1, 2, 3]  # " personality" first, then " p", " per", " person", " personal"


def test_prefix_sets_hand_checked():
    assert prefix_sets(HAND)[GOLD] == PREFIXES
    assert prefix_sets(HAND)[2] == [2, 0, 1]  # " person" <- " p", " per"
    assert prefix_sets(HAND)[6] == [6]  # special: itself only


@pytest.mark.parametrize("normalize", [False, True])
def test_personality_hand_checked(normalize):
    tau = 0.5
    lengths = {0: 2, 1: 4, 2: 7, 3: 9, 4: 12}
    score = {i: (n / 12 if normalize else n) / tau for i, n in lengths.items()}
    z = sum(math.exp(s) for s in score.values())
    table = build_target_table(HAND, ObjectiveSpec("prefix", tau, normalize, "prefix"))
    target = table.dense(torch.tensor([GOLD]))[0].double()
    for i in range(len(HAND)):
        expected = math.exp(score[i]) / z if i in score else 0.0
        assert target[i].item() == pytest.approx(expected, rel=1e-6, abs=1e-12)
    assert target[2] > 0  # gold " personality" puts mass on " person"


def test_personality_vocab_support_hand_checked():
    tau, V = 1.0, len(HAND)
    score = {i: n / tau for i, n in {0: 2, 1: 4, 2: 7, 3: 9, 4: 12}.items()}
    z = sum(math.exp(s) for s in score.values()) + (V - len(score))  # e^0 for the others
    target = (
        build_target_table(HAND, ObjectiveSpec("prefix", tau, False, "vocab"))
        .dense(torch.tensor([GOLD]))[0]
        .double()
    )
    for i in range(V):
        assert target[i].item() == pytest.approx(math.exp(score.get(i, 0.0)) / z, rel=1e-6)


@pytest.mark.parametrize("spec", ALL_SPECS, ids=ObjectiveSpec.arm_name)
def test_rows_sum_to_one_on_real_bpe(bpe_texts, spec):
    table = build_target_table(bpe_texts, spec)
    dense = table.dense(torch.arange(table.vocab_size)).double()
    assert torch.isfinite(dense).all()
    assert (dense >= 0).all()
    torch.testing.assert_close(
        dense.sum(1), torch.ones(table.vocab_size, dtype=torch.float64), atol=2e-6, rtol=0
    )
    assert (table.idx[:, 0] == torch.arange(table.vocab_size)).all()  # gold in column 0


@pytest.mark.parametrize("support", SUPPORTS)
@pytest.mark.parametrize("normalize", [False, True])
def test_small_tau_is_one_hot(bpe_texts, support, normalize):
    table = build_target_table(
        bpe_texts, ObjectiveSpec("prefix", tau=1e-3, normalize=normalize, support=support)
    )
    golds = torch.tensor([i for i, t in enumerate(bpe_texts) if t is not None])
    dense = table.dense(golds)
    torch.testing.assert_close(
        dense, torch.nn.functional.one_hot(golds, table.vocab_size).float(), atol=1e-6, rtol=0
    )


def test_prefix_objective_spreads_mass(bpe_texts):
    # Gold with a prefix one character shorter: at tau = 1 that prefix gets e^-1 of the gold's
    # weight, so the gold keeps at most 1 / (1 + e^-1).
    table = build_target_table(bpe_texts, ObjectiveSpec("prefix", tau=1.0))
    sets = prefix_sets(bpe_texts)
    near = [
        y
        for y, s in enumerate(sets)
        if any(len(bpe_texts[t]) == len(bpe_texts[y]) - 1 for t in s[1:])
    ]
    assert len(near) > 1000  # most BPE tokens extend a token by one character
    gold_mass = table.dense(torch.tensor(near)).gather(1, torch.tensor(near)[:, None])
    assert (gold_mass <= 1 / (1 + math.exp(-1)) + 1e-6).all() and (gold_mass > 0).all()


@pytest.mark.parametrize("spec", ALL_SPECS[2:], ids=ObjectiveSpec.arm_name)
def test_tokens_without_text_get_one_hot(bpe_texts, spec):
    table = build_target_table(bpe_texts, spec)
    no_text = torch.tensor([i for i, t in enumerate(bpe_texts) if t is None])
    assert len(no_text) >= 2  # BOS/EOS at least, plus partial UTF-8 bytes
    torch.testing.assert_close(
        table.dense(no_text), torch.nn.functional.one_hot(no_text, table.vocab_size).float()
    )


@pytest.mark.parametrize("tau", TAU_SWEEP)
@pytest.mark.parametrize("support", SUPPORTS)
def test_long_tokens_do_not_overflow(tau, support):
    # "a" * 1 .. "a" * 120: e^(120 / 0.05) overflows any float, the log-space build must not.
    texts = ["a" * n for n in range(1, 121)] + [None]
    for normalize in (False, True):
        dense = build_target_table(texts, ObjectiveSpec("prefix", tau, normalize, support)).dense(
            torch.arange(len(texts))
        )
        assert torch.isfinite(dense).all()
        torch.testing.assert_close(
            dense.double().sum(1), torch.ones(len(texts), dtype=torch.float64), atol=2e-6, rtol=0
        )


def test_label_smoothing_row():
    table = build_target_table(["a", "b", "c", "d"], ObjectiveSpec("label_smoothing", epsilon=0.2))
    torch.testing.assert_close(
        table.dense(torch.tensor([1]))[0], torch.tensor([0.05, 0.85, 0.05, 0.05])
    )


@pytest.mark.parametrize(
    "field,value,allowed",
    [
        ("name", "", "ce, label_smoothing, prefix"),
        ("name", None, "every run names its objective"),
        ("support", "all", "prefix, vocab"),
        ("tau", 0.0, ">= 0.001"),
        ("tau", -1.0, ">= 0.001"),
        ("tau", float("inf"), ">= 0.001"),
        ("tau", float("nan"), ">= 0.001"),
        ("tau", "0.5", "got '0.5', a string (in a TOML file, write it without quotes)"),
        ("epsilon", 1.0, "[0, 1)"),
        ("epsilon", -0.1, "[0, 1)"),
        ("normalize", "yes", "true or false"),
        ("fused_loss", 1, "true or false"),
        ("fused_chunk_tokens", 0, "integer >= 1"),
        ("fused_chunk_tokens", 512.0, "integer >= 1"),
        ("fused_chunk_tokens", True, "integer >= 1"),
        ("fused_chunk_tokens", 512, "objective.fused_loss = true"),
        ("position_gamma", 0.0, "(0, 1]"),
        ("position_gamma", 1.5, "(0, 1]"),
        ("position_gamma", float("nan"), "(0, 1]"),
        ("position_gamma", True, "(0, 1]"),
    ],
)
def test_bad_settings_name_the_setting(field, value, allowed):
    with pytest.raises(ValueError) as e:
        ObjectiveSpec(**{"name": "prefix", field: value}).validate()
    assert f"objective.{field}" in str(e.value) and allowed in str(e.value)


def test_tokenizer_larger_than_model_vocab(embedded_tokenizer_dir):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(f"{embedded_tokenizer_dir}/tokenizer.json")
    with pytest.raises(ValueError, match="model.vocab_size"):
        token_texts(tok, vocab_size=100)
    padded = token_texts(tok, vocab_size=tok.get_vocab_size() + 8)
    assert padded[-8:] == [None] * 8  # padding ids never join a prefix set


def test_describe_target_totals_one(bpe_texts):
    gold = max((i for i, t in enumerate(bpe_texts) if t), key=lambda i: len(bpe_texts[i]))
    info = describe_target(
        build_target_table(
            bpe_texts, ObjectiveSpec("prefix", tau=0.5, normalize=True, support="vocab")
        ),
        bpe_texts,
        gold,
    )
    assert info["total"] == pytest.approx(1.0, abs=1e-5)
    assert info["entries"][0]["id"] == gold and len(info["entries"]) > 1


@pytest.mark.parametrize(
    "spec", [ALL_SPECS[0], ALL_SPECS[1], ALL_SPECS[-1]], ids=ObjectiveSpec.arm_name
)
def test_target_at_idx_is_the_dense_target_there(bpe_texts, spec):
    table = build_target_table(bpe_texts, spec)
    dense = table.dense(torch.arange(table.vocab_size))
    torch.testing.assert_close(table.target_at_idx(), dense.gather(1, table.idx))


def _targets_cli(*args):
    import subprocess
    import sys

    from helpers import ROOT

    return subprocess.run(
        [sys.executable, "-m", "prefix_titan.targets", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_the_cli_works_with_the_embedded_tokenizer_and_prints_no_warning(
    embedded_tokenizer_dir, bpe_texts
):
    word = next(t for t in bpe_texts if t and t.startswith(" ") and len(t) >= 5 and t[1:].isalpha())
    out = _targets_cli("--hf-assets-path", embedded_tokenizer_dir, "--token", word, "--tau", "0.5")
    assert out.returncode == 0, out.stderr
    assert "Warning" not in out.stderr  # no runpy RuntimeWarning, nothing else
    assert out.stdout.startswith(f"gold {bpe_texts.index(word)} {word!r}")
    assert f"{word[:2]!r}" in out.stdout  # its one-letter prefix gets mass


@pytest.mark.slow
def test_a_text_that_is_not_one_token_is_shown_as_its_tokens(embedded_tokenizer_dir, bpe_texts):
    out = _targets_cli("--hf-assets-path", embedded_tokenizer_dir, "--token", " personality!?")
    assert out.returncode == 2
    assert "' personality!?' is not one ASCII vocabulary token; it tokenizes as ' " in out.stderr
    assert "(id " in out.stderr and "Ġ" not in out.stderr and "--token-id" in out.stderr
    # a special token's name: said so (it was shown as the text '' with "pass one of those",
    # which then refused the empty text), and its row by id says what it is
    special = "<|begin_of_text|>"
    out = _targets_cli("--hf-assets-path", embedded_tokenizer_dir, "--token", special)
    assert out.returncode == 2 and f"{special!r} is a special token (id " in out.stderr, out.stderr
    sid = out.stderr.split("(id ")[1].split(")")[0]
    out = _targets_cli("--hf-assets-path", embedded_tokenizer_dir, "--token-id", sid)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"gold {sid} {special!r} (special, or not ASCII"), out.stdout


@pytest.mark.slow
def test_the_cli_refuses_a_family_module_that_raises_on_import(embedded_tokenizer_dir, tmp_path):
    """A family named by import path whose module raises as it is imported: a one-line refusal,
    status 2, naming the module, the exception and its file:line (not a traceback)."""
    import os
    import subprocess
    import sys

    from helpers import ROOT

    (tmp_path / "broken_cli_lab.py").write_text("raise RuntimeError('no GPU here')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    out = subprocess.run(
        [sys.executable, "-m", "prefix_titan.targets", "--hf-assets-path"]
        + [embedded_tokenizer_dir, "--token", "ing", "--objective", "broken_cli_lab:f"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    assert "importing 'broken_cli_lab' raised RuntimeError: no GPU here (at " in out.stderr
    assert "broken_cli_lab.py:1)" in out.stderr, out.stderr


@pytest.mark.parametrize("spec", [ObjectiveSpec("ce"), ObjectiveSpec("prefix")], ids=str)
def test_empty_texts_are_refused(spec):
    with pytest.raises(ValueError, match="build_target_table: texts is empty; it holds one entry"):
        build_target_table([], spec)


@pytest.mark.parametrize(
    "spec", [ObjectiveSpec("ce"), ObjectiveSpec("prefix", tau=0.5, support="vocab")], ids=str
)
@pytest.mark.parametrize("odd", ["\u00e9", "caf\u00e9", "", b"ab", 3])
def test_a_text_that_is_not_ascii_is_refused(spec, odd):
    """A direct caller's non-ASCII (or empty, or not a str) text was taken as a text, so a gold
    \u00e9 under support vocab got a smoothed row, where docs/objectives.md says one-hot (token_texts
    gives such a token None)."""
    with pytest.raises(ValueError, match=r"build_target_table: texts\[1\] = .*non-empty ASCII str"):
        build_target_table(["a", odd, "ab", None], spec)


def test_a_plan_takes_only_its_own_specs_table():
    """A plan of one objective over a table built for another is refused, naming the settings
    that differ; its execution settings may differ, and a table made by hand records no spec."""
    from prefix_titan.objectives import TargetTable, build_plan

    spec = ObjectiveSpec("prefix", tau=2.0)
    table = build_target_table(HAND, spec)
    with pytest.raises(ValueError) as e:
        build_plan(ObjectiveSpec("ce"), table)
    assert str(e.value).startswith(
        "build_plan: the target table was built for objective.name = 'prefix', objective.tau = "
        "2.0, and the plan's spec has objective.name = 'ce', objective.tau = 0.5: a plan trains "
        "towards its table"
    )
    with pytest.raises(ValueError, match="objective.normalize = True, and the plan's spec has "):
        build_plan(
            ObjectiveSpec("prefix", tau=2.0),
            build_target_table(HAND, ObjectiveSpec("prefix", tau=2.0, normalize=True)),
        )
    execution = ObjectiveSpec("prefix", tau=2.0, fused_loss=True, position_gamma=0.9)
    assert build_plan(execution, table, dim=8).spec is execution
    assert build_plan(spec, table.to("cpu")).table.built_by == spec
    # The spec it records is a copy, and no part of the digest.
    spec.tau = 1.0
    assert table.built_by.tau == 2.0
    by_hand = TargetTable(table.idx, table.weight, table.background)
    assert by_hand.built_by is None and by_hand.sha256 == table.sha256
    assert build_plan(ObjectiveSpec("ce"), by_hand).spec.name == "ce"
