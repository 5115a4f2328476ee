"""What the loss kernels take from a library user's own loop: masked logits of -inf (the objective
stays finite wherever torch's cross-entropy is, eager and compiled), and the shapes and dtypes
they refuse naming the input (a shift mistake that cut labels trained on misaligned targets)."""

import pytest
import torch
import torch.nn.functional as F
from helpers import reference_fn, run_logits

from prefix_titan.objectives import (
    IGNORE_INDEX,
    ObjectiveSpec,
    build_target_table,
    fused_target_loss,
    target_loss,
)

# Ids 0-5 hold texts (prefixes of one another), id 6 none (a padded id, masked to -inf), id 7 none
TEXTS = ["a", "ab", "abc", "b", "bc", "c", None, None]
MASKED = 6


def masked_logits(n, seed_offset=0):
    g = torch.Generator().manual_seed(1000 + seed_offset)
    z = torch.randn(n, len(TEXTS), generator=g) * 2
    z[:, MASKED] = float("-inf")
    return z


CASES = {
    "ce": (ObjectiveSpec("ce"), [0, 1, 2, 3, 4, 5, 7]),
    "prefix_tau0.5": (ObjectiveSpec("prefix", tau=0.5), [0, 1, 2, 3, 4, 5, 7]),
    # support vocab spreads mass over every id, the masked one too, but a gold without text
    # (id 7) gets a one-hot row: finite, as torch's cross-entropy is
    "prefix_vocab_gold_without_text": (ObjectiveSpec("prefix", tau=0.5, support="vocab"), [7]),
}


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_masked_logit_of_minus_inf_without_target_mass_adds_nothing(case, compiled, seed):
    spec, golds = CASES[case]
    table = build_target_table(TEXTS, spec)
    labels = torch.tensor(golds * 3 + [IGNORE_INDEX])
    logits = masked_logits(len(labels))
    # check=False: a compiled loop refuses bad labels itself; the rest compiles as one graph
    loss = torch.compile(target_loss, fullgraph=True) if compiled else target_loss
    tensors = table.tensors("cpu")
    got = run_logits(lambda x, y: loss(x, y, tensors, check=False), logits, labels)
    want = run_logits(reference_fn(table), logits, labels)
    for part, g, w in zip(("objective", "CE", "gradient"), got, want):
        assert torch.isfinite(g).all(), (case, part, g)
        torch.testing.assert_close(g.double(), w.double(), atol=2e-5, rtol=2e-5)
    torch.testing.assert_close(
        got[1], F.cross_entropy(logits, labels, reduction="sum").double(), atol=2e-5, rtol=2e-5
    )
    if spec.name == "ce":
        torch.testing.assert_close(got[0], got[1])


def test_label_smoothing_toward_a_masked_logit_is_infinite_as_torch_says(seed):
    """Uniform smoothing puts mass on the masked id: the objective is +inf (torch's
    label_smoothing says the same), never NaN."""
    table = build_target_table(TEXTS, ObjectiveSpec("label_smoothing", epsilon=0.1))
    labels = torch.tensor([0, 3, 5])
    logits = masked_logits(3)
    objective, ce = target_loss(logits, labels, table.tensors("cpu"))
    torch_ls = F.cross_entropy(logits, labels, label_smoothing=0.1, reduction="sum")
    assert objective.item() == float("inf") and torch_ls.item() == float("inf")
    assert torch.isfinite(ce)


V, D = len(TEXTS), 5


@pytest.fixture(scope="module")
def ce_table():
    return build_target_table(TEXTS, ObjectiveSpec("ce")).tensors("cpu")


@pytest.mark.parametrize(
    "logits, labels, row_weight, message",
    [
        (torch.randn(3, 7, V), torch.zeros(3, 7, dtype=torch.long), None, r"logits must be 2-D"),
        (
            torch.randn(4, V),
            torch.zeros(5, dtype=torch.long),
            None,
            r"labels must be \[N\].*4 rows.*\(5,\)",
        ),
        (torch.randn(4, V), torch.zeros(3, dtype=torch.long), None, r"labels must be \[N\]"),
        (torch.randn(4, V), torch.zeros(4, 1, dtype=torch.long), None, r"labels must be \[N\]"),
        (torch.randn(4, V), torch.zeros(4), None, r"labels must be token ids.*torch\.float32"),
        (torch.randn(4, V), torch.zeros(4, dtype=torch.uint8), None, r"torch\.uint8"),
        (torch.randn(4, V), torch.zeros(4, dtype=torch.bool), None, r"torch\.bool"),
        (torch.randn(4, V), torch.zeros(4, dtype=torch.int16), None, r"torch\.int16"),
        (
            torch.zeros(4, V, dtype=torch.long),
            torch.zeros(4, dtype=torch.long),
            None,
            r"floating point; got torch\.int64",
        ),
        (
            torch.randn(4, V),
            torch.zeros(4, dtype=torch.long),
            torch.ones(5),
            r"row_weight must be None or \[N\].*\(5,\)",
        ),
        (
            torch.randn(4, V),
            torch.zeros(4, dtype=torch.long),
            torch.ones(4, dtype=torch.long),
            r"row_weight.*torch\.int64",
        ),
    ],
    ids=[
        "3-D",
        "longer",
        "shorter",
        "2-D-labels",
        "float",
        "uint8",
        "bool",
        "int16",
        "int-logits",
        "weight-length",
        "weight-dtype",
    ],
)
def test_target_loss_refuses_inputs_it_would_misread(ce_table, logits, labels, row_weight, message):
    with pytest.raises(ValueError, match=message):
        target_loss(logits, labels, ce_table, row_weight)


def test_int32_labels_are_token_ids_as_int64_are(ce_table, seed):
    logits = torch.randn(5, V)
    labels = torch.tensor([0, 2, 7, IGNORE_INDEX, 5])
    want = target_loss(logits, labels, ce_table)
    got = target_loss(logits, labels.int(), ce_table)
    torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match=r"labels must be token ids in \[0, 8\).*found \[9\]"):
        target_loss(logits, torch.tensor([0, 9, 1, 1, 1], dtype=torch.int32), ce_table)


@pytest.mark.parametrize(
    "h, w, labels, kw, message",
    [
        (
            torch.randn(2, 3, D),
            torch.randn(V, D),
            torch.zeros(2, 3, dtype=torch.long),
            {},
            r"h must be 2-D",
        ),
        (
            torch.randn(21, D),
            torch.randn(V, D),
            torch.zeros(30, dtype=torch.long),
            {},
            r"labels must be \[N\], one per row of h \(21 rows\)",
        ),
        (
            torch.randn(4, D),
            torch.randn(V, D + 1),
            torch.zeros(4, dtype=torch.long),
            {},
            r"head_weight must be \[V, d\] with d = 5",
        ),
    ],
    ids=[
        "3-D",
        "longer-labels",
        "head-width",
    ],
)
def test_fused_target_loss_refuses_inputs_it_would_misread(ce_table, h, w, labels, kw, message):
    with pytest.raises(ValueError, match=message):
        fused_target_loss(h, w, labels, ce_table, **kw)


@pytest.mark.parametrize("chunk", [0, -1, 2.5, True], ids=str)
def test_fused_target_loss_refuses_a_chunk_below_one_token(ce_table, chunk):
    """-1 returned (0, 0) and a zero gradient, 0 a bare range() error."""
    h, w, labels = torch.randn(4, D), torch.randn(V, D), torch.zeros(4, dtype=torch.long)
    with pytest.raises(
        ValueError, match=rf"chunk_tokens must be a whole number of tokens >= 1.*got {chunk}$"
    ):
        fused_target_loss(h, w, labels, ce_table, chunk_tokens=chunk)


@pytest.mark.parametrize("case", list(CASES))
def test_the_validation_objective_of_a_masked_logit_is_the_training_ones(case, seed):
    """The validation metrics' objective (LossPlan.validation_sums) takes a target mass of 0 on a
    logit of -inf as the training loss does (it gave NaN where training gave a number)."""
    from prefix_titan.objectives import build_plan
    from prefix_titan.objectives.mechanism import LAYOUT, mechanism_tables

    spec, golds = CASES[case]
    table = build_target_table(TEXTS, spec)
    plan = build_plan(spec, table, mechanism=mechanism_tables(TEXTS))
    labels = torch.tensor(golds * 3 + [IGNORE_INDEX])
    logits = masked_logits(len(labels), seed_offset=1)
    sums = plan.validation_sums(logits[None], labels[None])
    objective = plan.logits_loss(logits, labels)[0]
    assert torch.isfinite(sums[LAYOUT["objective"]]).all(), sums
    torch.testing.assert_close(
        sums[LAYOUT["objective"]].sum().float(), objective.float(), atol=2e-5, rtol=2e-5
    )
