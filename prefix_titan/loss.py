"""One loss for every objective: loss = logsumexp(z) - b * sum_v z_v - sum_k w_k * z[idx_k].

With p = b + scatter(w) the table's target (it sums to 1), this equals -sum_v p_v log softmax(z)_v
without ever building p as an [N, V] tensor; its gradient is softmax(z) - p.

Three implementations of the same formula:
- `reference_loss`: materialises the dense target (tests only).
- `_ChunkedTargetLoss`: the eager fast path. Walks row chunks in fp32, saves only the per-row
  logsumexp, and writes the gradient straight into one tensor of the logits' dtype: less memory
  than torch's cross-entropy, which keeps an fp32 copy and an fp32 log-softmax of the logits.
- `target_loss_formula`: the same terms as plain torch ops, for `torch.compile` (inductor fuses
  the row reductions and the backward into single passes over the logits).
Each returns (objective sum, plain cross-entropy sum) over labels != -100, like torchtitan's
`cross_entropy_loss` (reduction="sum"), so torchtitan's global token normalisation still applies.
"""

from __future__ import annotations

import contextlib
import time

import torch

from .targets import TargetTable

IGNORE_INDEX = -100
CHUNK_BYTES = 256 * 2**20  # fp32 working set per chunk in the eager path


def reference_loss(logits: torch.Tensor, labels: torch.Tensor, table: TargetTable):
    """Plain PyTorch reference: -sum p * log_softmax(z) with p the dense [N, V] target."""
    z = logits.reshape(-1, logits.shape[-1]).float()
    y = labels.reshape(-1)
    keep = y != IGNORE_INDEX
    z, y = z[keep], y[keep]
    log_p = torch.log_softmax(z, dim=-1)
    target = table.dense(y)
    return -(target * log_p).sum(), -log_p.gather(1, y[:, None]).sum()


def _row_terms(z, y, idx, weight, background):
    """Per-row objective and CE for fp32 logits z [n, V] and in-range labels y [n]."""
    lse = torch.logsumexp(z, dim=-1)
    gathered = z.gather(1, idx[y])
    objective = lse - background[y] * z.sum(-1) - (weight[y] * gathered).sum(-1)
    return objective, lse - gathered[:, 0], lse


def target_loss_formula(logits, labels, idx, weight, background):
    """The formula in plain ops over [N, V] logits and [N] labels (the compiled path)."""
    keep = labels != IGNORE_INDEX
    y = torch.where(keep, labels, 0)
    objective, ce, _ = _row_terms(logits.float(), y, idx, weight, background)
    zero = objective.new_zeros(())
    return torch.where(keep, objective, zero).sum(), torch.where(keep, ce, zero).sum().detach()


class _ChunkedTargetLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, labels, idx, weight, background, chunk_rows: int):
        keep = labels != IGNORE_INDEX
        y = torch.where(keep, labels, 0)
        lse = torch.empty(logits.shape[0], device=logits.device, dtype=torch.float32)
        objective_sum = torch.zeros((), device=logits.device, dtype=torch.float32)
        ce_sum = torch.zeros_like(objective_sum)
        for start in range(0, logits.shape[0], chunk_rows):
            rows = slice(start, start + chunk_rows)
            objective, ce, lse[rows] = _row_terms(
                logits[rows].float(), y[rows], idx, weight, background
            )
            objective_sum += torch.where(keep[rows], objective, 0.0).sum()
            ce_sum += torch.where(keep[rows], ce, 0.0).sum()
        ctx.save_for_backward(logits, y, keep, lse, idx, weight, background)
        ctx.chunk_rows = chunk_rows
        ctx.mark_non_differentiable(ce_sum)
        return objective_sum, ce_sum

    @staticmethod
    def backward(ctx, grad_objective, _grad_ce):
        logits, y, keep, lse, idx, weight, background = ctx.saved_tensors
        grad = torch.empty_like(logits)
        for start in range(0, logits.shape[0], ctx.chunk_rows):
            rows = slice(start, start + ctx.chunk_rows)
            yr = y[rows]
            # d/dz = softmax(z) - b - scatter(w), scaled by the upstream gradient; 0 on ignored rows.
            g = torch.exp(logits[rows].float() - lse[rows, None])
            g.sub_(background[yr, None])
            g.scatter_add_(1, idx[yr], -weight[yr])
            g.mul_(torch.where(keep[rows], grad_objective, 0.0)[:, None])
            grad[rows] = g
        return grad, None, None, None, None, None


def chunked_target_loss(logits, labels, idx, weight, background, chunk_bytes: int = CHUNK_BYTES):
    """The eager fast path over [N, V] logits and [N] labels."""
    chunk_rows = max(1, chunk_bytes // (4 * logits.shape[-1]))
    return _ChunkedTargetLoss.apply(logits, labels, idx, weight, background, chunk_rows)


class TargetLoss:
    """torchtitan loss function: (pred [..., V], labels [...]) -> objective summed over tokens.

    `meter`, when given, receives the batch's plain cross-entropy sum and token count so that
    training logs report CE beside the objective.
    """

    def __init__(self, table: TargetTable, *, compile: bool = False, backend: str = "inductor",
                 meter=None):
        self.table = table
        self.meter = meter
        self.plain_ce = False  # validation switches the returned value to plain cross-entropy
        self._kernel = (
            torch.compile(target_loss_formula, backend=backend) if compile else chunked_target_loss
        )

    def _table_on(self, device: torch.device) -> TargetTable:
        if self.table.idx.device != device:
            self.table = self.table.to(device)
        return self.table

    def check_labels(self, labels: torch.Tensor) -> None:
        V = self.table.vocab_size
        bad = ((labels < 0) & (labels != IGNORE_INDEX)) | (labels >= V)
        if bool(bad.any()):
            found = labels[bad].unique()[:8].tolist()
            raise ValueError(
                f"labels must be token ids in [0, {V}) or {IGNORE_INDEX} (ignored); found {found}"
            )

    @contextlib.contextmanager
    def reporting_plain_ce(self):
        """Return plain CE sums (and feed no meter) inside this context, e.g. for validation."""
        self.plain_ce = True
        try:
            yield
        finally:
            self.plain_ce = False

    def __call__(self, pred: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        V = self.table.vocab_size
        if pred.shape[-1] != V:
            raise ValueError(f"logits have {pred.shape[-1]} classes but the target table has {V}")
        self.check_labels(labels)
        t = self._table_on(pred.device)
        objective, ce = self._kernel(
            pred.reshape(-1, V), labels.reshape(-1), t.idx, t.weight, t.background
        )
        if self.plain_ce:
            return ce
        if self.meter is not None:
            self.meter.add(ce.detach(), (labels != IGNORE_INDEX).sum())
        return objective


def build_target_loss(job_config, parallel_dims=None, **kwargs) -> TargetLoss:
    """TrainSpec loss builder: the `[prefix]` objective over the run's tokenizer vocabulary."""
    from torchtitan.tools.logging import logger

    from .metrics import TRAIN_CE_METER
    from .targets import build_target_table, token_texts
    from .tokenizer import build_tokenizer
    from .train_spec import model_vocab_size

    del parallel_dims, kwargs  # loss parallel is refused earlier, in config.check_job_config
    spec = job_config.prefix.spec().validate()
    start = time.perf_counter()
    texts = token_texts(build_tokenizer(job_config), model_vocab_size(job_config))
    table = build_target_table(texts, spec)
    logger.info(
        f"Target table for {spec}: vocab {table.vocab_size}, {table.idx.shape[1]} sparse entries "
        f"per row, built in {time.perf_counter() - start:.2f}s"
    )
    compile_loss = job_config.compile.enable and "loss" in job_config.compile.components
    return TargetLoss(table, compile=compile_loss, backend=job_config.compile.backend,
                      meter=TRAIN_CE_METER)
