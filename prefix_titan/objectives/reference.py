"""Dense references of the kernels: the full [N, V] target (and logits), in plain PyTorch, for
tests and benchmarks. Never used in training."""

from __future__ import annotations

import torch

from .kernel import IGNORE_INDEX, row_weights
from .table import TargetTable


def reference_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    table: TargetTable,
    position_gamma: float | None = None,
    dtype=torch.float32,
    *,
    bos: int | None = None,
    eos: int | None = None,
):
    """(objective sum, CE sum): -sum p * log_softmax(z) with p the dense target, each row weighted
    by its position weight (labels [..., L]) when position_gamma is set, positions counted within
    each document where `bos` is given (kernel.row_weights); CE is unweighted."""
    rw = row_weights(labels, position_gamma, bos=bos, eos=eos)
    z = logits.reshape(-1, logits.shape[-1]).to(dtype)
    y = labels.reshape(-1)
    keep = y != IGNORE_INDEX
    z, y = z[keep], y[keep]
    log_p = torch.log_softmax(z, dim=-1)
    p = table.dense(y).to(dtype)
    per_row = -torch.where(p == 0, 0.0, p * log_p).sum(-1)  # 0 * log 0 = 0 (a logit of -inf)
    if rw is not None:
        per_row = per_row * rw[keep].to(dtype)
    return per_row.sum(), -log_p.gather(1, y[:, None]).sum()


def reference_fused_loss(
    h: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    table: TargetTable,
    position_gamma: float | None = None,
    *,
    bos: int | None = None,
    eos: int | None = None,
):
    """The full [N, V] logits h W^T, then the dense-target loss."""
    logits = h.reshape(-1, h.shape[-1]) @ weight.t()
    return reference_loss(logits, labels, table, position_gamma, bos=bos, eos=eos)
