"""Fused LM head + target loss: the [N, V] logits exist one chunk of tokens at a time.

Per token:  loss = lse(z) - b * sum_v z_v - sum_k w_k * z[idx_k],   z = h W^T.
Each chunk of c tokens computes z_c = h_c W^T ([c, V], the head's dtype), the row statistics of
the unfused kernel (kernel.py), and, when gradients are wanted, the gradient g = softmax(z_c) - p
right away: grad_h[c] = g W and grad_W += g^T h_c (fp32 accumulator). Backward then only scales
both by the incoming gradient, so the vocabulary is walked once and the head's matmuls cost 6NdV
as unfused. Memory: one chunk of logits and its working set, grad_h and an fp32 [V, d] accumulator.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import torch

from .kernel import IGNORE_INDEX, PyTorchRows, RowKernel, chunk_rows, row_scale
from .table import TableTensors


def default_chunk_tokens(device_type: str, dim: int) -> int:
    """Tokens per chunk on a device type ("cpu", "cuda", ...) for a head of width `dim`. GPU: 2048
    rows keep the chunk's matmuls efficient while its logits stay small next to the unfused
    [N, V] tensors. CPU (fp32, measured with scripts/bench_loss.py): once d >= 512 the three
    matmuls with W need 512 rows to run at full speed; below that, 128 rows are as fast with a
    quarter of the memory."""
    if device_type != "cpu":
        return 2048
    return 512 if dim >= 512 else 128


def chunk_statistics(
    z, y, keep, table: TableTensors, row_weight, want_grad: bool, passes=PyTorchRows
):
    """(objective sum, CE sum, gradient of the objective w.r.t. z or None) of one chunk: the
    unfused kernel's two passes, in its cache-sized row blocks when eager. The chunk's logits
    are not needed afterwards: the gradient is written over them (Triton, and eager PyTorch
    passes over several blocks), so a chunk holds one [c, V] tensor, not two."""
    rows = chunk_rows(z)
    objective, ce, lse = passes.statistics(z, y, keep, table, row_weight, rows)
    if not want_grad:
        return objective, ce, None
    scale = row_scale(keep, row_weight)
    grad = passes.gradient(z, y, scale, lse, table, rows, may_overwrite=True)
    return objective, ce, grad


def build_chunk_step(
    kernel: RowKernel = RowKernel.PYTORCH, compile: bool = False, backend: str = "inductor"
):
    """`chunk_statistics` on `kernel`'s row passes, compiled (element-wise passes fused; the
    matmuls stay eager) or not; the Triton passes are the same in both modes: they are single
    kernels already."""
    step = partial(chunk_statistics, passes=kernel.passes())
    if not (compile and kernel.compiles):
        return step
    return torch.compile(step, backend=backend, dynamic=False)


class FusedHead(NamedTuple):
    """What the fused autograd function needs besides its tensors: the table, the tokens per
    chunk and the chunk step (`build_chunk_step`)."""

    table: TableTensors
    chunk_tokens: int
    step: object


def _fused_pass(h, head_weight, labels, row_weight, head: FusedHead, grad_h_wanted, grad_w_wanted):
    """(objective sum, CE sum, grad h or None, fp32 grad W or None): the chunk loop."""
    keep = labels != IGNORE_INDEX
    y = torch.where(keep, labels, 0)
    want_grad = grad_h_wanted or grad_w_wanted
    grad_h = torch.empty_like(h) if grad_h_wanted else None
    grad_w = (
        torch.zeros(head_weight.shape, dtype=torch.float32, device=h.device)
        if grad_w_wanted
        else None
    )
    objective = h.new_zeros((), dtype=torch.float32)
    ce = h.new_zeros((), dtype=torch.float32)
    for i in range(0, h.shape[0], head.chunk_tokens):
        r = slice(i, i + head.chunk_tokens)
        z = h[r] @ head_weight.t()
        rw = None if row_weight is None else row_weight[r]
        o, c, g = head.step(z, y[r], keep[r], head.table, rw, want_grad)
        objective += o
        ce += c
        del z
        if grad_h is not None:
            grad_h[r] = g @ head_weight
        if grad_w is not None:
            if g.dtype == grad_w.dtype:
                grad_w.addmm_(g.t(), h[r])
            else:  # low-precision head: sum chunks in fp32, round once at the end
                grad_w += g.t() @ h[r]
    return objective, ce, grad_h, grad_w


class _FusedHeadLossFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, head_weight, labels, row_weight, head: FusedHead):
        grad_h_wanted, grad_w_wanted = ctx.needs_input_grad[:2]
        objective, ce, grad_h, grad_w = _fused_pass(
            h, head_weight, labels, row_weight, head, grad_h_wanted, grad_w_wanted
        )
        ctx.grads, ctx.weight_dtype = (grad_h, grad_w), head_weight.dtype
        ctx.mark_non_differentiable(ce)
        return objective, ce

    @staticmethod
    def backward(ctx, grad_objective, _grad_ce):
        if ctx.grads is None:
            raise RuntimeError(
                "the fused head's loss was differentiated twice: its gradients are "
                "computed in forward and consumed by the first backward"
            )
        grad_h, grad_w = ctx.grads
        ctx.grads = None
        scale = grad_objective.float()
        if grad_h is not None:
            grad_h = grad_h.mul_(scale.to(grad_h.dtype))
        if grad_w is not None:
            grad_w = grad_w.mul_(scale).to(ctx.weight_dtype)
        return grad_h, grad_w, None, None, None


def fused_target_loss(
    h,
    head_weight,
    labels,
    table: TableTensors,
    row_weight=None,
    *,
    chunk_tokens: int | None = None,
    step=None,
):
    """(objective sum, CE sum) of hidden states h [N, d] through head_weight [V, d], never
    holding more than `chunk_tokens` rows of logits (None: `default_chunk_tokens` for h's device
    and width; a run's LossPlan always names it); `table` and `row_weight` as for
    `kernel.target_loss`; `step` from `build_chunk_step` (None: the eager PyTorch passes)."""
    if chunk_tokens is None:
        chunk_tokens = default_chunk_tokens(h.device.type, h.shape[-1])
    if h.dtype != head_weight.dtype:  # e.g. fp32 weights under autocast: what F.linear would do
        dtype = (
            torch.get_autocast_dtype(h.device.type)
            if torch.is_autocast_enabled(h.device.type)
            else torch.promote_types(h.dtype, head_weight.dtype)
        )
        h, head_weight = h.to(dtype), head_weight.to(dtype)
    head = FusedHead(table, chunk_tokens, step or build_chunk_step())
    if not torch.is_grad_enabled():  # no gradient wanted (validation): no gradient work
        return _fused_pass(h, head_weight, labels, row_weight, head, False, False)[:2]
    return _FusedHeadLossFunction.apply(h, head_weight, labels, row_weight, head)
