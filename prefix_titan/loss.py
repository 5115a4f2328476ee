"""One loss for every objective: loss = logsumexp(z) - b * sum_v z_v - sum_k w_k * z[idx_k].

With p = b + scatter(w) the table's target (it sums to 1), this equals -sum_v p_v log softmax(z)_v
without ever building p as an [N, V] tensor; its gradient is softmax(z) - p, which is
softmax(z) - b everywhere except at the K sparse ids, where it is softmax(z) - p(idx).

`_TargetLossFunction` is the kernel. Forward reads the logits once per row (logsumexp, row sum,
K gathers) and saves only the per-row logsumexp; backward writes softmax(z) - b in one pass, in the
logits' dtype, then overwrites the K sparse entries with their exact values (one rounding each).
Eagerly it walks cache-sized row chunks in fp32; under torch.compile it is one chunk and inductor
fuses each pass into single kernels. Nothing [N, V]-sized is kept beyond the gradient itself,
while torch's cross-entropy also keeps fp32 copies. `reference_loss` builds the dense target, for tests.
Both return (objective sum, plain cross-entropy sum) over labels != -100, like torchtitan's
`cross_entropy_loss` (reduction="sum"), so torchtitan's global token normalisation still applies.
"""

from __future__ import annotations

import contextlib
import time

import torch

from .targets import TargetTable

IGNORE_INDEX = -100
# fp32 working set per eager chunk: on CPU a cache-sized chunk is fastest (measured with
# scripts/bench_loss.py); on GPU larger chunks mean fewer kernel launches.
CHUNK_BYTES = {"cpu": 4 * 2**20}
DEFAULT_CHUNK_BYTES = 256 * 2**20


def reference_loss(logits: torch.Tensor, labels: torch.Tensor, table: TargetTable):
    """Plain PyTorch reference: -sum p * log_softmax(z) with p the dense [N, V] target."""
    z = logits.reshape(-1, logits.shape[-1]).float()
    y = labels.reshape(-1)
    keep = y != IGNORE_INDEX
    z, y = z[keep], y[keep]
    log_p = torch.log_softmax(z, dim=-1)
    target = table.dense(y)
    return -(target * log_p).sum(), -log_p.gather(1, y[:, None]).sum()


def _forward_rows(logits, y, keep, idx, weight, background):
    """(objective sum, CE sum, per-row logsumexp) of a block of rows."""
    z = logits.float()
    lse = torch.logsumexp(z, dim=-1)
    gathered = z.gather(1, idx[y])
    objective = lse - background[y] * z.sum(-1) - (weight[y] * gathered).sum(-1)
    ce = lse - gathered[:, 0]
    return torch.where(keep, objective, 0.0).sum(), torch.where(keep, ce, 0.0).sum(), lse


def _backward_rows(logits, y, scale, lse, idx, background, target_at_idx):
    """Gradient of a block of rows, in the logits' dtype; `scale` is 0 on ignored rows."""
    z = logits.float()
    grad = ((torch.exp(z - lse[:, None]) - background[y, None]) * scale[:, None]).to(logits.dtype)
    ids = idx[y]
    exact = (torch.exp(z.gather(1, ids) - lse[:, None]) - target_at_idx[y]) * scale[:, None]
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


def row_statistics(logits, y, keep, idx, weight, background, rows: int):
    """(objective sum, CE sum, per-row logsumexp) of [N, V] logits, `rows` rows at a time."""
    parts = [_forward_rows(logits[r], y[r], keep[r], idx, weight, background)
             for r in _blocks(logits.shape[0], rows)]
    if len(parts) == 1:
        return parts[0]
    return (torch.stack([p[0] for p in parts]).sum(), torch.stack([p[1] for p in parts]).sum(),
            torch.cat([p[2] for p in parts]))


def row_gradient(logits, y, scale, lse, idx, background, target_at_idx, rows: int):
    """d(objective)/d(logits) times `scale` per row, in the logits' dtype, `rows` rows at a time."""
    if rows >= logits.shape[0]:
        return _backward_rows(logits, y, scale, lse, idx, background, target_at_idx)
    grad = torch.empty_like(logits)
    for r in _blocks(logits.shape[0], rows):
        grad[r] = _backward_rows(logits[r], y[r], scale[r], lse[r], idx, background, target_at_idx)
    return grad


class _TargetLossFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, labels, idx, weight, background, target_at_idx, rows: int):
        keep = labels != IGNORE_INDEX
        y = torch.where(keep, labels, 0)
        objective, ce, lse = row_statistics(logits, y, keep, idx, weight, background, rows)
        ctx.save_for_backward(logits, y, keep, lse, idx, background, target_at_idx)
        ctx.rows = rows
        ctx.mark_non_differentiable(ce)
        return objective, ce

    @staticmethod
    def backward(ctx, grad_objective, _grad_ce):
        logits, y, keep, lse, idx, background, target_at_idx = ctx.saved_tensors
        scale = torch.where(keep, grad_objective, 0.0)
        grad = row_gradient(logits, y, scale, lse, idx, background, target_at_idx, ctx.rows)
        return grad, None, None, None, None, None, None


def target_loss(logits, labels, idx, weight, background, target_at_idx,
                chunk_bytes: int | None = None):
    """(objective sum, CE sum) for [N, V] logits and [N] labels; tensors from a TargetTable."""
    rows = chunk_rows(logits, chunk_bytes)
    return _TargetLossFunction.apply(logits, labels, idx, weight, background, target_at_idx, rows)


def check_labels(labels: torch.Tensor, vocab_size: int) -> None:
    bad = ((labels < 0) & (labels != IGNORE_INDEX)) | (labels >= vocab_size)
    if bool(bad.any()):
        found = labels[bad].unique()[:8].tolist()
        raise ValueError(
            f"labels must be token ids in [0, {vocab_size}) or {IGNORE_INDEX} (ignored); found {found}"
        )


class TargetLoss:
    """torchtitan loss function: (pred [..., V], labels [...]) -> objective summed over tokens.

    `meter`, when given, receives the batch's plain cross-entropy sum and token count so that
    training logs report CE beside the objective. With `fused=True` the model's head has already
    computed both sums (head.py): pred is that (objective sum, CE sum) pair.
    """

    def __init__(self, table: TargetTable, *, compile: bool = False, backend: str = "inductor",
                 meter=None, fused: bool = False):
        self.table = table
        self.meter = meter
        self.fused = fused
        self.plain_ce = False  # validation switches the returned value to plain cross-entropy
        self._kernel = torch.compile(target_loss, backend=backend) if compile else target_loss

    @contextlib.contextmanager
    def reporting_plain_ce(self):
        """Return plain CE sums (and feed no meter) inside this context, e.g. for validation."""
        self.plain_ce = True
        try:
            yield
        finally:
            self.plain_ce = False

    def __call__(self, pred, labels: torch.Tensor) -> torch.Tensor:
        if self.fused != isinstance(pred, tuple):
            raise TypeError(
                "[prefix] fused_loss = true needs the model to return (objective, CE) sums from its "
                "head (labels among the model inputs)" if self.fused else
                "the model returned loss sums, not logits: it was given labels, but "
                "[prefix] fused_loss is false"
            )
        if self.fused:
            objective, ce = pred
        else:
            V = self.table.vocab_size
            if pred.shape[-1] != V:
                raise ValueError(f"logits have {pred.shape[-1]} classes but the target table has {V}")
            check_labels(labels, V)
            objective, ce = self._kernel(
                pred.reshape(-1, V), labels.reshape(-1), *self.table.kernel_tensors(pred.device)
            )
        if self.plain_ce:
            return ce
        if self.meter is not None:
            self.meter.add(ce.detach(), (labels != IGNORE_INDEX).sum())
        return objective


_TABLES: dict[tuple, TargetTable] = {}


def load_target_table(job_config) -> TargetTable:
    """The `[prefix]` objective's table over the run's vocabulary, built once per process (the loss
    and, with fused_loss, the model's head share it)."""
    from torchtitan.components.tokenizer import build_hf_tokenizer
    from torchtitan.tools.logging import logger

    from .targets import build_target_table, token_texts
    from .train_spec import model_vocab_size

    spec = job_config.prefix.validate()
    key = (job_config.model.hf_assets_path, model_vocab_size(job_config), spec.objective, spec.tau,
           spec.normalize, spec.support, spec.epsilon)
    if key not in _TABLES:
        start = time.perf_counter()
        # The TrainSpec's tokenizer hook has run (and checked the config): just load the tokenizer.
        texts = token_texts(build_hf_tokenizer(job_config), key[1])
        table = _TABLES[key] = build_target_table(texts, spec)
        logger.info(
            f"Target table for {spec}: vocab {table.vocab_size}, {table.idx.shape[1]} sparse "
            f"entries per row, built in {time.perf_counter() - start:.2f}s"
        )
    return _TABLES[key]


def compiles_loss(job_config) -> bool:
    """`compile.components` includes the loss (for the fused head: its chunk kernel)."""
    return job_config.compile.enable and "loss" in job_config.compile.components


def build_target_loss(job_config, parallel_dims=None, **kwargs) -> TargetLoss:
    """TrainSpec loss builder: the `[prefix]` objective over the run's tokenizer vocabulary."""
    from torchtitan.tools.logging import logger

    from .metrics import TRAIN_CE_METER

    del parallel_dims, kwargs  # loss parallel is refused earlier, in config.check_job_config
    table = load_target_table(job_config)
    compile_loss = compiles_loss(job_config)
    if job_config.prefix.fused_loss:
        logger.info("Fused loss: the model's head computes the loss, chunked over tokens"
                    + (" (chunk kernel compiled with torch.compile)" if compile_loss else ""))
        return TargetLoss(table, meter=TRAIN_CE_METER, fused=True)
    if compile_loss:
        logger.info("Compiling the loss function with torch.compile")
    return TargetLoss(table, compile=compile_loss, backend=job_config.compile.backend,
                      meter=TRAIN_CE_METER)
