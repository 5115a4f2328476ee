"""Every implementation of the loss against the dense reference, on fresh random inputs."""

import pytest
import torch
import torch.nn.functional as F

from prefix_titan.loss import IGNORE_INDEX, TargetLoss, reference_loss, target_loss
from prefix_titan.targets import SUPPORTS, TAU_SWEEP, ObjectiveSpec, build_target_table

SPECS = [ObjectiveSpec("ce"), ObjectiveSpec("label_smoothing", epsilon=0.1)] + [
    ObjectiveSpec("prefix", tau, norm, support)
    for tau in TAU_SWEEP for norm in (False, True) for support in SUPPORTS
]
TOL = {torch.float32: dict(atol=2e-5, rtol=2e-5), torch.bfloat16: dict(atol=2e-3, rtol=2e-2)}


@pytest.fixture(scope="module")
def tables(bpe_texts):
    return {str(s): build_target_table(bpe_texts, s) for s in SPECS}


def fresh_batch(V, n=97, dtype=torch.float32, scale=4.0):
    """Random logits and labels (a new seed each call); ~10% ignored, many prefix-rich golds."""
    seed = torch.seed()
    logits = (torch.randn(n, V) * scale).to(dtype)
    labels = torch.randint(0, V, (n,))
    labels[torch.rand(n) < 0.1] = IGNORE_INDEX
    return logits, labels, seed


def run(fn, logits, labels):
    x = logits.clone().requires_grad_()
    objective, ce = fn(x, labels)
    (objective * 0.37).backward()  # a non-unit upstream gradient
    return objective.detach().double(), ce.double(), x.grad.float()


def check_against_reference(fn, table, dtype):
    logits, labels, seed = fresh_batch(table.vocab_size, dtype=dtype)
    args = table.kernel_tensors("cpu")
    got = run(lambda x, y: fn(x, y, *args), logits, labels)
    ref = run(lambda x, y: reference_loss(x, y, table), logits, labels)
    tol = TOL[dtype]
    for g, r, what in zip(got, ref, ("objective", "plain CE", "gradient")):
        torch.testing.assert_close(g, r, **tol, msg=lambda m: f"{what} (seed {seed}): {m}")
    assert got[2].dtype == torch.float32 and torch.isfinite(got[2]).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("spec", SPECS, ids=str)
@pytest.mark.parametrize("chunk_rows", [10, None], ids=["10-row-chunks", "default-chunks"])
def test_kernel_matches_reference(tables, spec, dtype, chunk_rows):
    table = tables[str(spec)]
    # 10-row chunks: rows split into several chunks with a ragged last one.
    chunk_bytes = None if chunk_rows is None else chunk_rows * 4 * table.vocab_size
    check_against_reference(lambda *a: target_loss(*a, chunk_bytes=chunk_bytes), table, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("spec", [SPECS[0], SPECS[1], SPECS[2], SPECS[-1]], ids=str)
def test_compiled_kernel_matches_reference(tables, spec, dtype):
    torch._dynamo.reset()
    check_against_reference(torch.compile(target_loss), tables[str(spec)], dtype)


def test_ce_equals_torch_cross_entropy(tables):
    table = tables[str(SPECS[0])]
    logits, labels, _ = fresh_batch(table.vocab_size)
    objective, ce = target_loss(logits, labels, *table.kernel_tensors("cpu"))
    expected = F.cross_entropy(logits, labels, reduction="sum", ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(objective, expected, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(ce, expected, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothing_equals_torch(bpe_texts, eps):
    table = build_target_table(bpe_texts, ObjectiveSpec("label_smoothing", epsilon=eps))
    logits, labels, _ = fresh_batch(table.vocab_size)
    x, x_ref = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    objective, _ = target_loss(x, labels, *table.kernel_tensors("cpu"))
    expected = F.cross_entropy(x_ref, labels, reduction="sum", ignore_index=IGNORE_INDEX,
                               label_smoothing=eps)
    objective.backward(), expected.backward()
    torch.testing.assert_close(objective, expected, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-4, atol=1e-6)


def test_extreme_logits_stay_finite(tables):
    table = tables[str(ObjectiveSpec("prefix", 0.05, False, "vocab"))]
    logits, labels, _ = fresh_batch(table.vocab_size, scale=1e4)
    objective, ce, grad = run(
        lambda x, y: target_loss(x, y, *table.kernel_tensors("cpu")), logits, labels)
    assert torch.isfinite(objective) and torch.isfinite(ce) and torch.isfinite(grad).all()


def test_target_loss_callable(tables):
    from prefix_titan.metrics import PlainCEMeter

    table = tables[str(SPECS[-1])]
    meter = PlainCEMeter()
    loss = TargetLoss(table, meter=meter)
    logits, labels, _ = fresh_batch(table.vocab_size, n=2 * 33)
    pred, labels = logits.view(2, 33, -1), labels.view(2, 33)
    ref_objective, ref_ce = reference_loss(pred, labels, table)
    torch.testing.assert_close(loss(pred, labels), ref_objective, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(meter.ce_sum, ref_ce, rtol=1e-5, atol=1e-3)
    assert meter.tokens == (labels != IGNORE_INDEX).sum()
    with loss.reporting_plain_ce():
        torch.testing.assert_close(loss(pred, labels), ref_ce, rtol=1e-5, atol=1e-3)
    assert meter.tokens == (labels != IGNORE_INDEX).sum()  # validation feeds no meter


@pytest.mark.parametrize("bad", [-1, -101, 4096, 10**6])
def test_labels_out_of_range_are_refused(tables, bad):
    loss = TargetLoss(tables[str(SPECS[0])])
    labels = torch.zeros(1, 8, dtype=torch.long)
    labels[0, 3] = bad
    with pytest.raises(ValueError, match=r"labels must be token ids in \[0, 4096\) or -100"):
        loss(torch.randn(1, 8, 4096), labels)


def test_logit_width_mismatch_is_refused(tables):
    with pytest.raises(ValueError, match="4000 classes but the target table has 4096"):
        TargetLoss(tables[str(SPECS[0])])(torch.randn(1, 2, 4000), torch.zeros(1, 2, dtype=torch.long))
