"""The fused LM head + loss against the plain reference (full logits), on fresh random inputs."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from prefix_titan.head import (FusedHeadTransformer, FusedLMHead, build_chunk_step,
                               chunk_statistics, default_chunk_tokens, fused_target_loss,
                               reference_fused_loss)
from prefix_titan.loss import IGNORE_INDEX, reference_loss
from prefix_titan.targets import SUPPORTS, TAU_SWEEP, ObjectiveSpec, build_target_table

SPECS = [ObjectiveSpec("ce"), ObjectiveSpec("label_smoothing", epsilon=0.1)] + [
    ObjectiveSpec("prefix", tau, norm, support)
    for tau in (TAU_SWEEP[0], 0.5, TAU_SWEEP[-1]) for norm in (False, True) for support in SUPPORTS
]
# bf16: the reference rounds the logits' gradient and then W's gradient once each, the fused
# head rounds its per-chunk gradient and sums W's gradient in fp32: a few bf16 ulps apart.
TOL = {torch.float32: dict(atol=3e-5, rtol=3e-5), torch.bfloat16: dict(atol=1e-2, rtol=2e-2)}
DIM = 48


@pytest.fixture(scope="module")
def tables(bpe_texts):
    return {str(s): build_target_table(bpe_texts, s) for s in SPECS}


def fresh_inputs(V, n=150, dtype=torch.float32, dim=DIM):
    """Hidden states, head weight and labels from a new seed each call; ~10% ignored."""
    seed = torch.seed()
    h = torch.randn(n, dim).to(dtype)
    w = (torch.randn(V, dim) * 3.5 / dim**0.5).to(dtype)  # logits of std ~3.5: peaked softmaxes too
    labels = torch.randint(0, V, (n,))
    labels[torch.rand(n) < 0.1] = IGNORE_INDEX
    return h, w, labels, seed


def run(fn, h, w, labels):
    h, w = h.clone().requires_grad_(), w.clone().requires_grad_()
    objective, ce = fn(h, w, labels)
    (objective * 0.37).backward()  # a non-unit upstream gradient
    assert h.grad.dtype == h.dtype and w.grad.dtype == w.dtype
    return objective.detach().double(), ce.double(), h.grad.float(), w.grad.float()


def check(fn, table, dtype, **shape):
    h, w, labels, seed = fresh_inputs(table.vocab_size, dtype=dtype, **shape)
    got = run(fn, h, w, labels)
    ref = run(lambda *x: reference_fused_loss(*x, table), h, w, labels)
    for g, r, what in zip(got, ref, ("objective", "plain CE", "grad h", "grad W")):
        torch.testing.assert_close(g, r, **TOL[dtype], msg=lambda m: f"{what} (seed {seed}): {m}")
        assert torch.isfinite(g).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("spec", SPECS, ids=str)
@pytest.mark.parametrize("chunk", [32, None], ids=["32-token-chunks", "default-chunks"])
def test_fused_matches_reference(tables, spec, dtype, chunk):
    table = tables[str(spec)]
    args = table.kernel_tensors("cpu")
    # 32-token chunks: 150 rows in 5 chunks, the last one ragged.
    check(lambda h, w, y: fused_target_loss(h, w, y, *args, chunk_tokens=chunk), table, dtype)


def test_default_chunks_at_a_wide_head(tables):
    # On CPU a head of width >= 512 walks 512-token chunks: 1100 rows are 3 chunks, one ragged.
    assert default_chunk_tokens(torch.device("cpu"), 512) == 512
    table = tables[str(SPECS[-1])]
    args = table.kernel_tensors("cpu")
    check(lambda h, w, y: fused_target_loss(h, w, y, *args), table, torch.float32, n=1100, dim=512)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("spec", [SPECS[0], SPECS[1], SPECS[-1]], ids=str)
def test_compiled_chunk_step_matches_reference(tables, spec, dtype):
    table = tables[str(spec)]
    args = table.kernel_tensors("cpu")
    step = build_chunk_step(compile=True)
    check(lambda h, w, y: fused_target_loss(h, w, y, *args, chunk_tokens=64, step=step), table,
          dtype)


def test_no_grad_gives_the_same_sums_and_no_gradient_work(tables):
    table = tables[str(SPECS[-1])]
    h, w, labels, _ = fresh_inputs(table.vocab_size)
    calls = []

    def step(*a):
        calls.append(a[-1])  # want_grad
        return chunk_statistics(*a)

    with torch.no_grad():
        got = fused_target_loss(h, w, labels, *table.kernel_tensors("cpu"), chunk_tokens=64,
                                step=step)
    ref = reference_fused_loss(h, w, labels, table)
    assert calls == [False, False, False]
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, atol=1e-3, rtol=1e-5)


def test_frozen_head_weight_gets_no_gradient(tables):
    table = tables[str(SPECS[2])]
    h, w, labels, _ = fresh_inputs(table.vocab_size)
    h.requires_grad_()
    objective, _ = fused_target_loss(h, w, labels, *table.kernel_tensors("cpu"), chunk_tokens=64)
    objective.backward()
    ref_h = h.detach().clone().requires_grad_()
    reference_fused_loss(ref_h, w, labels, table)[0].backward()
    assert w.grad is None
    torch.testing.assert_close(h.grad, ref_h.grad, atol=3e-5, rtol=3e-5)


def test_second_backward_is_refused(tables):
    table = tables[str(SPECS[0])]
    h, w, labels, _ = fresh_inputs(table.vocab_size)
    h.requires_grad_()
    objective, _ = fused_target_loss(h, w, labels, *table.kernel_tensors("cpu"))
    objective.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="differentiated twice"):
        objective.backward()


def test_autocast_head_matches_the_unfused_autocast_path(tables):
    """fp32 weights under bf16 autocast: the fused head multiplies in bf16 like F.linear would,
    and returns gradients in the parameters' fp32."""
    table = tables[str(SPECS[-1])]
    h, w, labels, _ = fresh_inputs(table.vocab_size)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = run(lambda *x: fused_target_loss(*x, *table.kernel_tensors("cpu")), h, w, labels)
        ref = run(lambda a, b, y: reference_fused_loss(a, b, y, table), h, w, labels)
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, **TOL[torch.bfloat16])


def test_head_module_is_a_linear_until_given_labels(tables):
    table = tables[str(SPECS[-1])]
    head = FusedLMHead(DIM, table.vocab_size, table)
    h, _, labels, _ = fresh_inputs(table.vocab_size)
    assert list(head.state_dict()) == ["weight"]  # same checkpoint key as nn.Linear
    torch.testing.assert_close(head(h), F.linear(h, head.weight))
    got = head(h.view(3, 50, DIM), labels.view(3, 50))
    ref = reference_fused_loss(h, head.weight, labels, table)
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, atol=1e-3, rtol=1e-5)
    with pytest.raises(ValueError, match=r"labels must be token ids in \[0, "):
        head(h[:2], torch.tensor([0, table.vocab_size]))
    with pytest.raises(RuntimeError, match="fused_loss = true"):
        FusedLMHead(DIM, table.vocab_size)(h, labels)


def test_model_with_labels_returns_the_loss_of_its_own_logits(tables):
    from prefix_titan.train_spec import prefix_llama3_args

    table = tables[str(SPECS[-1])]
    args = prefix_llama3_args["tiny"]
    args = dataclasses.replace(args, vocab_size=table.vocab_size, max_seq_len=32)
    args.fused_targets = table
    torch.manual_seed(0)
    model = FusedHeadTransformer(args)
    with torch.no_grad():
        model.init_weights()
    tokens = torch.randint(0, table.vocab_size, (2, 32))
    labels = torch.randint(0, table.vocab_size, (2, 32))
    labels[0, :5] = IGNORE_INDEX
    logits = model(tokens)
    assert logits.shape == (2, 32, table.vocab_size)
    objective, ce = model(tokens, labels=labels)
    ref_objective, ref_ce = reference_loss(logits, labels, table)
    torch.testing.assert_close(objective, ref_objective, atol=1e-3, rtol=1e-5)
    torch.testing.assert_close(ce, ref_ce, atol=1e-3, rtol=1e-5)


def test_loss_function_refuses_a_mismatched_model_output(tables):
    from prefix_titan.loss import TargetLoss

    table = tables[str(SPECS[0])]
    labels = torch.zeros(1, 4, dtype=torch.long)
    logits = torch.zeros(1, 4, table.vocab_size)
    sums = (torch.tensor(1.0), torch.tensor(1.0))
    with pytest.raises(TypeError, match="fused_loss = true needs the model to return"):
        TargetLoss(table, fused=True)(logits, labels)
    with pytest.raises(TypeError, match="fused_loss is false"):
        TargetLoss(table)(sums, labels)
    assert TargetLoss(table, fused=True)(sums, labels) is sums[0]
