"""Fused LM head + target loss: the [N, V] logits exist one chunk of tokens at a time.

Per token:  loss = lse(z) - b * sum_v z_v - sum_k w_k * z[idx_k],   z = h W^T.
Each chunk of c tokens computes z_c = h_c W^T ([c, V], the head's dtype), the row statistics of
the unfused kernel (kernel.py), and, when gradients are wanted, the gradient g = softmax(z_c) - p
right away: grad_h[c] = g W and grad_W += g^T h_c, summed in fp32 (`add_weight_grad`). Backward
then only scales both by the incoming gradient, so the vocabulary is walked once and the head's
matmuls cost 6NdV as unfused. Memory: one chunk of logits and its working set, grad_h and an fp32
[V, d] accumulator.
"""

from __future__ import annotations

import functools
import warnings
from functools import partial
from typing import NamedTuple

import torch

from .kernel import (
    PyTorchRows,
    RowKernel,
    check_labels,
    check_rows,
    check_width,
    chunk_rows,
    compiled_chunk_statistics,
    compiled_gradient_write,
    row_scale,
    scored_rows,
)
from .table import TableTensors, indexed


def default_chunk_tokens(device_type: str, dim: int) -> int:
    """Tokens per chunk on a device type ("cpu", "cuda", ...) for a head of width `dim`. GPU: 4096
    rows keep the chunk's matmuls efficient while its logits stay small next to the unfused
    [N, V] tensors (measured on an H200, docs/fused_loss.md: the fastest size within the fused
    head's memory goal, for both row kernels, eager and compiled). CPU (fp32, measured with
    scripts/bench_loss.py): once d >= 512 the three matmuls with W need 512 rows to run at full
    speed; below that, 128 rows are as fast with a quarter of the memory."""
    if device_type != "cpu":
        return 4096
    return 512 if dim >= 512 else 128


def chunk_statistics(
    z,
    y,
    keep,
    table: TableTensors,
    row_weight,
    want_grad: bool,
    passes=PyTorchRows,
    chunk_bytes: int | None = None,
):
    """(objective sum, CE sum, gradient of the objective w.r.t. z or None) of one chunk: the
    unfused kernel's passes, in its cache-sized row blocks when eager. The chunk's logits are not
    needed afterwards: the gradient is written over them (Triton, and the eager PyTorch passes,
    which compute it in the statistics' walk over each block), so a chunk holds one [c, V]
    tensor, not two. `chunk_bytes`: the eager row blocks' fp32 size (None: the device's
    default)."""
    rows = chunk_rows(z, chunk_bytes)
    if not want_grad:
        return passes.statistics(z, y, keep, table, row_weight, rows)[:2] + (None,)
    scale = row_scale(keep, row_weight)
    return passes.statistics_and_gradient(z, y, keep, table, row_weight, scale, rows)


def build_chunk_step(
    kernel: RowKernel = RowKernel.PYTORCH,
    compile: bool = False,
    backend: str = "inductor",
    chunk_bytes: int | None = None,
):
    """`chunk_statistics` on `kernel`'s row passes (eager PyTorch ones through `chunk_bytes`
    fp32 blocks, None: the device's default), or compiled (`compiled_chunk_step`: the
    element-wise passes fused, the matmuls eager); the Triton passes are the same in both modes:
    they are single kernels already."""
    if not (compile and kernel.compiles):
        return partial(chunk_statistics, passes=kernel.passes(), chunk_bytes=chunk_bytes)
    statistics, write = (
        torch.compile(fn, backend=backend, dynamic=False)
        for fn in (compiled_chunk_statistics, compiled_gradient_write)
    )
    return partial(compiled_chunk_step, statistics, write)


def compiled_chunk_step(
    statistics, write, z, y, keep, table: TableTensors, row_weight, want_grad: bool
):
    """`chunk_statistics` through the two compiled graphs of kernel.py: `statistics` reads the
    chunk's logits, `write` puts the dense gradient over them, and the K sparse entries per row
    are put in here, so a chunk holds one [c, V] tensor."""
    scale = row_scale(keep, row_weight) if want_grad else None
    objective, ce, lse, ids, exact = statistics(z, y, keep, table, row_weight, scale)
    if exact is None:
        return objective, ce, None
    write(z, lse, table.background[y], scale)
    return objective, ce, z.scatter_(1, ids, exact)


class FusedHead(NamedTuple):
    """What the fused autograd function needs besides its tensors: the table, the tokens per
    chunk and the chunk step (`build_chunk_step`)."""

    table: TableTensors
    chunk_tokens: int
    step: object


def fp32_output_matmul(device: torch.device, dtype: torch.dtype) -> bool:
    """torch multiplies `dtype` matrices on `device` straight into an fp32 output and adds to an
    fp32 one (`torch.addmm(..., out_dtype=torch.float32)`): CUDA with a torch that takes an fp32
    accumulator (checked once, on a 1 x 1 product). Elsewhere, a low-precision chunk's product
    is rounded to its dtype before the fp32 sum (no CPU kernel has an fp32 output)."""
    if dtype == torch.float32:
        return True
    if device.type != "cuda":
        return False
    return _cuda_addmm_fp32(indexed(device), dtype)


def prepare_device(device: torch.device) -> None:
    """Ask `fp32_output_matmul` on `device` for every low-precision dtype now, at start-up: its
    CUDA probe reads a result back (a host sync), which then never happens in a training step."""
    for dtype in (torch.bfloat16, torch.float16):
        fp32_output_matmul(device, dtype)


@functools.cache
def _cuda_addmm_fp32(device: torch.device, dtype: torch.dtype) -> bool:
    a = torch.ones(1, 1, device=device, dtype=dtype)
    acc = torch.ones(1, 1, device=device, dtype=torch.float32)
    try:
        torch.mm(a, a, out_dtype=torch.float32)
        torch.addmm(acc, a, a, out_dtype=torch.float32, out=acc)
    except (RuntimeError, TypeError) as e:
        warnings.warn(
            f"torch {torch.__version__} has no {dtype} matmul into an fp32 accumulator on "
            f"{device} ({e}): the fused head sums its weight gradient from {dtype} chunk "
            "products, rounded once per chunk",
            stacklevel=2,
        )
        return False
    if acc.item() != 2.0:  # once per process and device
        raise RuntimeError(f"torch.addmm(..., out_dtype=torch.float32) on {device} gave {acc}")
    return True


def add_weight_grad(acc, g, h, fp32_output: bool):
    """acc + g^T h in fp32, acc None for the first chunk (no zero-filled accumulator). With
    `fp32_output` the product goes straight into the fp32 accumulator; otherwise a
    low-precision product is made in g's dtype and added (one [V, d] temporary, rounded)."""
    if g.dtype == torch.float32:
        return torch.mm(g.t(), h) if acc is None else acc.addmm_(g.t(), h)
    if fp32_output:
        if acc is None:
            return torch.mm(g.t(), h, out_dtype=torch.float32)
        return torch.addmm(acc, g.t(), h, out_dtype=torch.float32, out=acc)
    product = g.t() @ h
    return product.float() if acc is None else acc.add_(product)


def _fused_pass(h, head_weight, labels, row_weight, head: FusedHead, grad_h_wanted, grad_w_wanted):
    """(objective sum, CE sum, grad h or None, fp32 grad W or None): the chunk loop."""
    keep, y = scored_rows(labels, head_weight.shape[0])
    want_grad = grad_h_wanted or grad_w_wanted
    grad_h = torch.empty_like(h) if grad_h_wanted else None
    grad_w = None
    fp32_output = grad_w_wanted and fp32_output_matmul(h.device, h.dtype)
    objective = ce = None
    for i in range(0, h.shape[0], head.chunk_tokens):
        r = slice(i, i + head.chunk_tokens)
        z = h[r] @ head_weight.t()
        rw = None if row_weight is None else row_weight[r]
        o, c, g = head.step(z, y[r], keep[r], head.table, rw, want_grad)
        objective, ce = (o, c) if objective is None else (objective + o, ce + c)
        del z
        if grad_h is not None:
            torch.mm(g, head_weight, out=grad_h[r])
        if grad_w_wanted:
            grad_w = add_weight_grad(grad_w, g, h[r], fp32_output)
        # The gradient (written over the chunk's logits) is freed before the next chunk's logits
        # are made: one [c, V] tensor at a time, not two.
        del g
    if objective is None:  # no tokens
        objective = h.new_zeros((), dtype=torch.float32)
        ce = torch.zeros_like(objective)  # its own tensor: ce is marked non-differentiable
        if grad_w_wanted:
            grad_w = torch.zeros(head_weight.shape, dtype=torch.float32, device=h.device)
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
        if grad_h is not None:  # scaled in fp32 (a 1-element tensor takes part in the dtype),
            # rounded once in place
            grad_h = torch.mul(grad_h, scale.reshape(1), out=grad_h)
        if grad_w is not None:  # one pass: scaled in fp32, rounded once into the weight's dtype
            out = (
                grad_w
                if ctx.weight_dtype == grad_w.dtype
                else torch.empty(grad_w.shape, dtype=ctx.weight_dtype, device=grad_w.device)
            )
            grad_w = torch.mul(grad_w, scale, out=out)
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
    check: bool = True,
):
    """(objective sum, CE sum) of hidden states h [N, d] through head_weight [V, d], never
    holding more than `chunk_tokens` rows of logits (None: `default_chunk_tokens` for h's device
    and width; a run's LossPlan always names it); `table` and `row_weight` as for
    `kernel.target_loss`; `step` from `build_chunk_step` (None: the eager PyTorch passes);
    `check` as for `kernel.target_loss`."""
    check_rows(h, labels, row_weight, "h")
    if head_weight.dim() != 2 or head_weight.shape[1] != h.shape[1]:
        raise ValueError(
            f"head_weight must be [V, d] with d = {h.shape[1]}, h's width; got shape "
            f"{tuple(head_weight.shape)}"
        )
    check_width(head_weight.shape[0], table, "the head has {} rows")
    if chunk_tokens is not None and (
        isinstance(chunk_tokens, bool) or not isinstance(chunk_tokens, int) or chunk_tokens < 1
    ):
        raise ValueError(
            f"chunk_tokens must be a whole number of tokens >= 1, or None (the device's "
            f"default); got {chunk_tokens!r}"
        )
    if check:
        check_labels(labels, head_weight.shape[0])
    if chunk_tokens is None:
        chunk_tokens = default_chunk_tokens(h.device.type, h.shape[-1])
    autocast = torch.is_autocast_enabled(h.device.type)
    if autocast or h.dtype != head_weight.dtype:  # what F.linear would do (autocast casts both)
        dtype = (
            torch.get_autocast_dtype(h.device.type)
            if autocast
            else torch.promote_types(h.dtype, head_weight.dtype)
        )
        h, head_weight = h.to(dtype), head_weight.to(dtype)
    head = FusedHead(table, chunk_tokens, step or build_chunk_step())
    if not torch.is_grad_enabled():  # no gradient wanted (validation): no gradient work
        return _fused_pass(h, head_weight, labels, row_weight, head, False, False)[:2]
    return _FusedHeadLossFunction.apply(h, head_weight, labels, row_weight, head)
