"""One loss kernel for every objective: loss = logsumexp(z) - b * sum_v z_v - sum_k w_k * z[idx_k].

With p = b + scatter(w) the table's target (it sums to 1), this equals -sum_v p_v log softmax(z)_v
without ever building p as an [N, V] tensor; its gradient is softmax(z) - p, which is
softmax(z) - b everywhere except at the K sparse ids, where it is softmax(z) - p(idx).

`_TargetLossFunction` reads the logits once per row in forward (logsumexp, row sum, K gathers) and
saves only the per-row logsumexp; backward writes softmax(z) - b in one pass, in the logits' dtype,
then overwrites the K sparse entries with their exact values (one rounding each). Eagerly it walks
cache-sized row chunks in fp32; under torch.compile it is one chunk and inductor fuses each pass.

An optional per-row weight (position weighting, `position_weights`) scales each row's objective
and gradient. Both kernels return (objective sum, plain cross-entropy sum) over labels != -100;
the plain CE is never weighted.

The two row passes have two implementations, chosen once by `RowKernel` (objective.kernel):
`PyTorchRows` here, the default and the reference, and `TritonRows` (triton_rows.py: one program
per row, no fp32 copy of the logits at all).
"""

from __future__ import annotations

import enum
import math
from typing import NamedTuple

import torch

from .table import TableTensors

IGNORE_INDEX = -100
# fp32 working set per eager chunk: on CPU a cache-sized chunk is fastest (measured with
# scripts/bench_loss.py); on GPU larger chunks mean fewer kernel launches.
CHUNK_BYTES = {"cpu": 4 * 2**20}
DEFAULT_CHUNK_BYTES = 256 * 2**20


def position_weights(seq_len: int, gamma: float | None, device=None) -> torch.Tensor | None:
    """[seq_len] weights w_k = (1 - gamma^k)/(1 - gamma) for k = 1..seq_len (gamma = 1: k),
    divided by their mean so that they average 1; None when gamma is None (no weighting).
    Computed in float64 on `device` (no host-to-device copy per batch)."""
    if gamma is None:
        return None
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"position_gamma must be in (0, 1]; got {gamma!r}")
    k = torch.arange(1, seq_len + 1, dtype=torch.float64, device=device)
    w = k if gamma == 1.0 else -torch.expm1(k * math.log(gamma)) / (1.0 - gamma)
    return (w / w.mean()).float()


def row_weights(labels: torch.Tensor, gamma: float | None) -> torch.Tensor | None:
    """Per-row weights [N] for labels [..., L] flattened to N rows: each sequence's positions
    weighted by `position_weights(L, gamma)`."""
    if gamma is None:
        return None
    if labels.dim() < 2:
        raise ValueError("position weighting needs labels of shape [batch, seq_len]")
    w = position_weights(labels.shape[-1], gamma, labels.device)
    return w.expand(labels.shape).reshape(-1)


class RowKernel(enum.StrEnum):
    """How the loss's row passes run (`objective.kernel`)."""

    PYTORCH = "pytorch"
    TRITON = "triton"

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(k.value for k in cls)

    @classmethod
    def parse(cls, value) -> RowKernel:
        """The kernel `objective.kernel` names; a clear error for any other value."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(
                f"objective.kernel must be one of {', '.join(cls.names())}; got {value!r}"
            ) from None

    def passes(self):
        """The implementation of the two row passes (PyTorchRows or TritonRows): the one place
        the choice is dispatched. Triton is imported only when chosen."""
        if self is RowKernel.TRITON:
            from .triton_rows import TritonRows

            return TritonRows
        return PyTorchRows

    @property
    def compiles(self) -> bool:
        """torch.compile can fuse these passes (the Triton kernels are one kernel per pass
        already: nothing for it to fuse)."""
        return self is RowKernel.PYTORCH


def check_labels(labels: torch.Tensor, vocab_size: int) -> None:
    bad = ((labels < 0) & (labels != IGNORE_INDEX)) | (labels >= vocab_size)
    if bool(bad.any()):
        found = labels[bad].unique()[:8].tolist()
        raise ValueError(
            f"labels must be token ids in [0, {vocab_size}) or {IGNORE_INDEX} (ignored); found {found}"
        )


def _forward_rows(logits, y, keep, table: TableTensors, row_weight):
    """(objective sum, CE sum, per-row logsumexp) of a block of rows."""
    z = logits.float()
    lse = torch.logsumexp(z, dim=-1)
    gathered = z.gather(1, table.idx[y])
    objective = lse - table.background[y] * z.sum(-1) - (table.weight[y] * gathered).sum(-1)
    if row_weight is not None:
        objective = objective * row_weight
    ce = lse - gathered[:, 0]
    return torch.where(keep, objective, 0.0).sum(), torch.where(keep, ce, 0.0).sum(), lse


def _backward_rows(logits, y, scale, lse, table: TableTensors):
    """Gradient of a block of rows, in the logits' dtype; `scale` is 0 on ignored rows."""
    z = logits.float()
    grad = ((torch.exp(z - lse[:, None]) - table.background[y, None]) * scale[:, None]).to(
        logits.dtype
    )
    ids = table.idx[y]
    exact = (torch.exp(z.gather(1, ids) - lse[:, None]) - table.target_at_idx[y]) * scale[:, None]
    return grad.scatter_(1, ids, exact.to(logits.dtype))


def chunk_rows(logits: torch.Tensor, chunk_bytes: int | None = None) -> int:
    """Rows per block of the element-wise passes: a bounded fp32 working set when eager."""
    if torch.compiler.is_compiling():
        return logits.shape[0]  # inductor fuses the passes: no fp32 intermediate to bound
    if chunk_bytes is None:
        chunk_bytes = CHUNK_BYTES.get(logits.device.type, DEFAULT_CHUNK_BYTES)
    return max(1, chunk_bytes // (4 * logits.shape[-1]))


def _blocks(n: int, rows: int):
    return (slice(i, i + rows) for i in range(0, n, rows))


def _part(t, r):
    return None if t is None else t[r]


class PyTorchRows:
    """The row passes in plain PyTorch, `rows` rows at a time (cache-sized fp32 blocks when
    eager, one block under torch.compile, where inductor fuses each pass)."""

    @staticmethod
    def statistics(logits, y, keep, table: TableTensors, row_weight, rows: int):
        """(objective sum, CE sum, per-row logsumexp) of [N, V] logits."""
        parts = [
            _forward_rows(logits[r], y[r], keep[r], table, _part(row_weight, r))
            for r in _blocks(logits.shape[0], rows)
        ]
        if len(parts) == 1:
            return parts[0]
        return (
            torch.stack([p[0] for p in parts]).sum(),
            torch.stack([p[1] for p in parts]).sum(),
            torch.cat([p[2] for p in parts]),
        )

    @staticmethod
    def gradient(logits, y, scale, lse, table: TableTensors, rows: int, may_overwrite=False):
        """d(objective)/d(logits) times `scale` per row, in the logits' dtype. `may_overwrite`:
        the logits are not needed afterwards, so over several blocks each block's gradient,
        computed out of place, replaces that block; a single block (as under torch.compile)
        writes a new tensor."""
        if rows >= logits.shape[0]:
            return _backward_rows(logits, y, scale, lse, table)
        grad = logits if may_overwrite else torch.empty_like(logits)
        for r in _blocks(logits.shape[0], rows):
            grad[r] = _backward_rows(logits[r], y[r], scale[r], lse[r], table)
        return grad


def row_scale(keep: torch.Tensor, row_weight: torch.Tensor | None) -> torch.Tensor:
    """Each row's share of the objective: 0 on ignored rows, else its weight (1 unweighted)."""
    scale = keep.float()
    return scale if row_weight is None else scale * row_weight


class RowPasses(NamedTuple):
    """What the autograd function needs besides its tensors: the table, the implementation
    (`RowKernel.passes()`) and the rows per block."""

    table: TableTensors
    passes: type
    rows: int


class _TargetLossFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, labels, row_weight, how: RowPasses):
        keep = labels != IGNORE_INDEX
        y = torch.where(keep, labels, 0)
        objective, ce, lse = how.passes.statistics(logits, y, keep, how.table, row_weight, how.rows)
        ctx.save_for_backward(logits, y, row_scale(keep, row_weight), lse)
        ctx.how = how
        ctx.mark_non_differentiable(ce)
        return objective, ce

    @staticmethod
    def backward(ctx, grad_objective, _grad_ce):
        logits, y, scale, lse = ctx.saved_tensors
        how = ctx.how
        grad = how.passes.gradient(logits, y, scale * grad_objective, lse, how.table, how.rows)
        return grad, None, None, None


def target_loss(
    logits,
    labels,
    table: TableTensors,
    row_weight=None,
    *,
    chunk_bytes: int | None = None,
    kernel: RowKernel = RowKernel.PYTORCH,
):
    """(objective sum, CE sum) for [N, V] logits and [N] labels; `table` from
    `TargetTable.tensors`, `row_weight` [N] or None (every row weighs 1)."""
    how = RowPasses(table, kernel.passes(), chunk_rows(logits, chunk_bytes))
    return _TargetLossFunction.apply(logits, labels, row_weight, how)
