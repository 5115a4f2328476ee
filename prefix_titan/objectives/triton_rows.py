"""Triton kernels for the loss's two row passes (`objective.kernel = "triton"`, and `auto` on CUDA).

The same arithmetic as `kernel.PyTorchRows` (its `_forward_rows` / `_backward_rows`), one program
per row, chosen by `kernel.RowKernel.TRITON`:

- forward: one read of the row's logits, keeping a running max and sum of exponentials
  (logsumexp) and the row sum, then K gathers: per row the objective
  lse - b * sum_v z_v - sum_k w_k * z[idx_k] (times the row weight), the plain CE lse - z[y], and
  the lse kept for backward;
- backward: one read and one write, (softmax(z) - b) * scale in the gradient's dtype, then the K
  sparse entries overwritten with (softmax(z)[idx_k] - p(idx_k)) * scale. The K logits are read
  before the row is written (a barrier between), so the gradient may overwrite the logits in
  place (the fused head's chunks do: `TritonRows.statistics_and_gradient`).

Sums over rows are taken afterwards in PyTorch, in a fixed order. Nothing [N, V] is allocated in
fp32. On a CUDA GPU the kernels are compiled by Triton; on a CPU they run only in Triton's
interpreter (TRITON_INTERPRET=1), which is how the tests check them on every machine.
"""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl

from .table import TableTensors

BLOCK_V = 4096
"""Logits per row read at a time (a vocabulary of 4,099 ids takes two blocks, the second ragged)."""


def _forward_rows(
    z_ptr,
    z_row_stride,
    keep_ptr,
    y_ptr,
    idx_ptr,
    weight_ptr,
    background_ptr,
    row_weight_ptr,
    objective_ptr,
    ce_ptr,
    lse_ptr,
    V,
    K,
    HAS_ROW_WEIGHT: tl.constexpr,
    BLOCK: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    z_row = z_ptr + row * z_row_stride
    cols = tl.arange(0, BLOCK)
    # The first block always holds a column, so the running max is finite from then on and a
    # masked lane (-inf) adds exp(-inf) = 0.
    m = tl.max(tl.load(z_row + cols, mask=cols < V, other=float("-inf")).to(tl.float32), 0)
    s = tl.zeros([], dtype=tl.float32)
    total = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, V, BLOCK):
        mask = start + cols < V
        z = tl.load(z_row + start + cols, mask=mask, other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m, tl.max(z, 0))
        s = s * tl.exp(m - m_new) + tl.sum(tl.exp(z - m_new), 0)
        m = m_new
        total += tl.where(mask, z, 0.0)
    lse = m + tl.log(s)

    keep = tl.load(keep_ptr + row) != 0
    y = tl.load(y_ptr + row)
    ks = tl.arange(0, BLOCK_K)
    kmask = ks < K
    ids = tl.load(idx_ptr + y * K + ks, mask=kmask, other=0)
    w = tl.load(weight_ptr + y * K + ks, mask=kmask, other=0.0)
    gathered = tl.load(z_row + ids, mask=kmask, other=0.0).to(tl.float32)
    b = tl.load(background_ptr + y)
    # A target mass of 0 on a logit of -inf (a masked id) adds 0, not 0 * -inf = NaN
    uniform = tl.where(b == 0.0, 0.0, b * tl.sum(total, 0))
    objective = lse - uniform - tl.sum(tl.where(w == 0.0, 0.0, w * gathered), 0)
    if HAS_ROW_WEIGHT:
        objective = objective * tl.load(row_weight_ptr + row)
    ce = lse - tl.load(z_row + y).to(tl.float32)
    tl.store(objective_ptr + row, tl.where(keep, objective, 0.0))
    tl.store(ce_ptr + row, tl.where(keep, ce, 0.0))
    tl.store(lse_ptr + row, lse)


def _backward_rows(
    z_ptr,
    z_row_stride,
    g_ptr,
    g_row_stride,
    y_ptr,
    scale_ptr,
    lse_ptr,
    idx_ptr,
    background_ptr,
    target_ptr,
    V,
    K,
    BLOCK: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    z_row = z_ptr + row * z_row_stride
    g_row = g_ptr + row * g_row_stride
    y = tl.load(y_ptr + row)
    scale = tl.load(scale_ptr + row)
    lse = tl.load(lse_ptr + row)
    b = tl.load(background_ptr + y)
    ks = tl.arange(0, BLOCK_K)
    kmask = ks < K
    ids = tl.load(idx_ptr + y * K + ks, mask=kmask, other=0)
    target = tl.load(target_ptr + y * K + ks, mask=kmask, other=0.0)
    z_k = tl.load(z_row + ids, mask=kmask, other=0.0).to(tl.float32)
    exact = (tl.exp(z_k - lse) - target) * scale
    # In place (g is z), one thread's gather may read a logit that another thread's dense loop
    # writes: every gather completes before any write.
    tl.debug_barrier()
    cols = tl.arange(0, BLOCK)
    for start in range(0, V, BLOCK):
        mask = start + cols < V
        z = tl.load(z_row + start + cols, mask=mask, other=0.0).to(tl.float32)
        grad = (tl.exp(z - lse) - b) * scale
        tl.store(g_row + start + cols, grad.to(g_ptr.dtype.element_ty), mask=mask)
    tl.debug_barrier()  # the row's dense writes land before the sparse ones replace theirs
    tl.store(g_row + ids, exact.to(g_ptr.dtype.element_ty), mask=kmask)


def interpreting() -> bool:
    """Triton's CPU interpreter is on (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


@functools.cache
def _kernels(interpret: bool):
    if interpret:
        from triton.runtime.interpreter import InterpretedFunction

        return InterpretedFunction(_forward_rows), InterpretedFunction(_backward_rows)
    return triton.jit(_forward_rows), triton.jit(_backward_rows)


def check_device(t: torch.Tensor) -> None:
    """The Triton kernels run on a CUDA GPU, or anywhere in Triton's CPU interpreter."""
    if t.device.type != "cuda" and not interpreting():
        raise RuntimeError(
            f"objective.kernel = 'triton' runs on a CUDA GPU, and the logits are on "
            f"{t.device.type}: use objective.kernel = 'pytorch' there (TRITON_INTERPRET=1 runs the "
            f"Triton kernels in Triton's CPU interpreter, for testing)"
        )


def block_v(vocab_size: int, block: int | None = None) -> int:
    """Logits per row read at a time: `block` (default BLOCK_V), never more than the vocabulary
    needs."""
    return min(block or BLOCK_V, triton.next_power_of_2(vocab_size))


def num_warps(block: int) -> int:
    """Warps per program for rows read `block` logits at a time: one per 256 logits, 4 to 16.
    Fewer warps hold more logits per thread, and at 4,096 logits Triton's default of 4 needs so
    many registers that few programs fit on an SM (docs/fused_loss.md has ptxas' counts)."""
    return max(4, min(16, block // 256))


def _rows_ready(logits: torch.Tensor) -> torch.Tensor:
    if logits.dim() != 2:
        raise ValueError(f"the row kernels take [N, V] logits; got {tuple(logits.shape)}")
    return logits if logits.stride(1) == 1 else logits.contiguous()


def _sizes(logits, table: TableTensors, block):
    """(V, K, the launch options both kernels take) for [N, V] logits."""
    V = logits.shape[1]
    K = table.idx.shape[1]
    b = block_v(V, block)
    return V, K, dict(BLOCK=b, BLOCK_K=triton.next_power_of_2(K), num_warps=num_warps(b))


def forward_launch(
    logits, y, keep, table: TableTensors, row_weight, objective, ce, lse, block=None
):
    """(arguments, keyword arguments) of the forward kernel's launch over [N, V] logits, writing
    `objective`, `ce` and `lse` [N]. The one place they are made: the register test compiles the
    kernels for what a launch passes (Triton specialises on the arguments' alignment)."""
    V, K, options = _sizes(logits, table, block)
    args = (
        logits,
        logits.stride(0),
        keep,
        y,
        table.idx,
        table.weight,
        table.background,
        row_weight if row_weight is not None else objective,
        objective,
        ce,
        lse,
        V,
        K,
    )
    return args, dict(HAS_ROW_WEIGHT=row_weight is not None, **options)


def backward_launch(logits, out, y, scale, lse, table: TableTensors, block=None):
    """(arguments, keyword arguments) of the backward kernel's launch: the gradient of [N, V]
    logits times `scale` [N] (fp32, contiguous) into `out`."""
    V, K, options = _sizes(logits, table, block)
    args = (
        logits,
        logits.stride(0),
        out,
        out.stride(0),
        y,
        scale,
        lse,
        table.idx,
        table.background,
        table.target_at_idx,
        V,
        K,
    )
    return args, options


def row_statistics(logits, y, keep, table: TableTensors, row_weight=None, block=None):
    """(objective sum, CE sum, per-row logsumexp) of [N, V] logits: `PyTorchRows.statistics`."""
    check_device(logits)
    logits = _rows_ready(logits)
    N = logits.shape[0]
    objective = torch.empty(N, dtype=torch.float32, device=logits.device)
    ce = torch.empty_like(objective)
    lse = torch.empty_like(objective)
    if N:
        forward, _ = _kernels(interpreting())
        args, kwargs = forward_launch(logits, y, keep, table, row_weight, objective, ce, lse, block)
        forward[(N,)](*args, **kwargs)
    return objective.sum(), ce.sum(), lse


def row_gradient(logits, y, scale, lse, table: TableTensors, out=None, block=None):
    """d(objective)/d(logits) times `scale` per row, in the logits' dtype:
    `PyTorchRows.gradient`. `out` receives it (it may be `logits` itself); by default a new
    tensor."""
    check_device(logits)
    logits = _rows_ready(logits)
    N, V = logits.shape
    if out is None:
        out = torch.empty_like(logits)
    elif out.shape != logits.shape or out.stride(1) != 1:
        raise ValueError("row_gradient's out must have the logits' shape and contiguous rows")
    if N:
        _, backward = _kernels(interpreting())
        scale = scale.float().contiguous()
        args, kwargs = backward_launch(logits, out, y, scale, lse, table, block)
        backward[(N,)](*args, **kwargs)
    return out


class TritonRows:
    """The row passes as Triton kernels (`objective.kernel = "triton"`): one program per row, so
    the rows per block are not used; the gradient overwrites the logits when they are not needed
    afterwards."""

    @staticmethod
    def statistics(logits, y, keep, table: TableTensors, row_weight, rows: int):
        del rows
        return row_statistics(logits, y, keep, table, row_weight)

    @staticmethod
    def gradient(logits, y, scale, lse, table: TableTensors, rows: int):
        del rows
        return row_gradient(logits, y, scale, lse, table)

    @staticmethod
    def statistics_and_gradient(logits, y, keep, table: TableTensors, row_weight, scale, rows):
        """The two kernels on logits not needed afterwards: the gradient overwrites them."""
        del rows
        objective, ce, lse = row_statistics(logits, y, keep, table, row_weight)
        return objective, ce, row_gradient(logits, y, scale, lse, table, out=logits)


__all__ = ["TritonRows", "interpreting", "num_warps", "row_gradient", "row_statistics"]
