"""One loss kernel for every objective: loss = logsumexp(z) - b * sum_v z_v - sum_k w_k * z[idx_k].

With p = b + scatter(w) the table's target (it sums to 1), this equals -sum_v p_v log softmax(z)_v
without ever building p as an [N, V] tensor; its gradient is softmax(z) - p, which is
softmax(z) - b everywhere except at the K sparse ids, where it is softmax(z) - p(idx).

`_TargetLossFunction` computes the per-row logsumexp, row sum and K gathers in forward and
saves only the logsumexp; backward writes softmax(z) - b, in the logits' dtype, then overwrites
the K sparse entries with their exact values (one rounding each). Under torch.compile each of the
two is one block that inductor fuses; the fused head's chunks compile two of their own
(`compiled_chunk_statistics`, `compiled_gradient_write`). Eagerly they are the fewest
element-wise passes that keep fp32 arithmetic (`_eager_statistics`, `_eager_gradient`: each pass
is named with its traffic per logit), over cache-sized row blocks of one reused fp32 buffer; the
fused head's chunks compute their gradient in the statistics' pass (`statistics_and_gradient`).

An optional per-row weight (position weighting, `position_weights`) scales each row's objective
and gradient. Both kernels return (objective sum, plain cross-entropy sum) over the rows whose
label is a token id in [0, V) (-100 marks a row ignored; any other label is refused, on the host
or, in a training step, after it: `bad_labels`); the plain CE is never weighted.

The two row passes have two implementations, chosen once by `RowKernel` (objective.kernel):
`PyTorchRows` here, the reference and the default off CUDA, and `TritonRows` (triton_rows.py: one
program per row, no fp32 copy of the logits at all), the default on a CUDA GPU (`auto`).
"""

from __future__ import annotations

import enum
import math
from typing import NamedTuple

import torch

from .table import TableTensors, TargetTable

IGNORE_INDEX = -100
# fp32 working set per eager chunk: on CPU a cache-sized chunk is fastest (measured with
# scripts/bench_loss.py); on GPU larger chunks mean fewer kernel launches.
CHUNK_BYTES = {"cpu": 4 * 2**20}
DEFAULT_CHUNK_BYTES = 256 * 2**20


def _discounted(k: torch.Tensor, gamma: float) -> torch.Tensor:
    """(1 - gamma^k)/(1 - gamma) of float64 positions k (gamma = 1: k)."""
    return k if gamma == 1.0 else -torch.expm1(k * math.log(gamma)) / (1.0 - gamma)


def _check_gamma(gamma: float) -> None:
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"position_gamma must be in (0, 1]; got {gamma!r}")


def position_weights(seq_len: int, gamma: float | None, device=None) -> torch.Tensor | None:
    """[seq_len] weights w_k = (1 - gamma^k)/(1 - gamma) for k = 1..seq_len (gamma = 1: k),
    divided by their mean so that they average 1; None when gamma is None (no weighting).
    Computed in float64 on `device` (no host-to-device copy per batch)."""
    if gamma is None:
        return None
    _check_gamma(gamma)
    w = _discounted(torch.arange(1, seq_len + 1, dtype=torch.float64, device=device), gamma)
    return (w / w.mean()).float()


def document_positions(labels: torch.Tensor, bos: int, eos: int | None = None) -> torch.Tensor:
    """[..., L] int64 k of each target within its document (1 for its first target), for
    labels [..., L] cut from a stream of BOS + document + EOS: a target equal to `bos` at t (the
    one before a document) makes t + 1 its document's first target; with `eos`, so does an
    ignored target at t right after an `eos` target (data.document_mask ignores the target BOS
    after each EOS), t + 1, and an ignored target at 0 (the window's first input an EOS, whose
    target BOS the mask ignored: only the mask ignores targets here) makes 1 the start. The
    targets before the window's first such start continue a document begun before the window
    and count from the window's start. Vectorised (one cummax), no host sync."""
    pos = torch.arange(labels.shape[-1], device=labels.device)
    before = labels.roll(1, dims=-1)  # the target before each (at 0: none)
    starts = (before == bos) & (pos >= 1)
    if eos is not None and eos != bos:
        starts |= (labels.roll(2, dims=-1) == eos) & (before == IGNORE_INDEX) & (pos >= 2)
        starts |= (before == IGNORE_INDEX) & (pos == 1)
    first = torch.where(starts, pos, 0).cummax(dim=-1).values
    return pos - first + 1


def row_weights(
    labels: torch.Tensor, gamma: float | None, *, bos: int | None = None, eos: int | None = None
) -> torch.Tensor | None:
    """Per-row weights [N] for labels [..., L] flattened to N rows; None when gamma is None.
    Without `bos`, each sequence's positions weighted by `position_weights(L, gamma)` (k counted
    from the window's start); with it, k counted within each document (`document_positions`),
    then each sequence's weights divided by their mean over its L positions (they average 1 as
    the window's do)."""
    if gamma is None:
        return None
    if labels.dim() < 2:
        raise ValueError("position weighting needs labels of shape [batch, seq_len]")
    if bos is None:
        w = position_weights(labels.shape[-1], gamma, labels.device)
        return w.expand(labels.shape).reshape(-1)
    _check_gamma(gamma)
    w = _discounted(document_positions(labels, bos, eos).to(torch.float64), gamma)
    return (w / w.mean(dim=-1, keepdim=True)).float().reshape(-1)


AUTO_KERNEL = "auto"


class RowKernel(enum.StrEnum):
    """How the loss's row passes run (`objective.kernel`)."""

    PYTORCH = "pytorch"
    TRITON = "triton"

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(k.value for k in cls)

    @classmethod
    def choices(cls) -> tuple[str, ...]:
        """The values objective.kernel takes: `auto` (the device's default) or a kernel."""
        return (AUTO_KERNEL, *cls.names())

    @classmethod
    def parse(cls, value) -> RowKernel | None:
        """The kernel `objective.kernel` names, None for `auto` (decided by the device: see
        `resolve`); a clear error for any other value."""
        if value == AUTO_KERNEL:
            return None
        try:
            return cls(value)
        except ValueError:
            raise ValueError(
                f"objective.kernel must be one of {', '.join(cls.choices())}; got {value!r}"
            ) from None

    @classmethod
    def resolve(cls, value, device_type: str) -> RowKernel:
        """objective.kernel on a device type: `auto` is Triton on an NVIDIA CUDA GPU, where its
        two passes read the logits once and write them once (the unfused loss at half
        torchtitan's eager CE time, docs/fused_loss.md), and PyTorch elsewhere: Triton needs a
        GPU, and the kernels are measured on NVIDIA's alone (a ROCm torch also says "cuda";
        `triton` asks for them there)."""
        kernel = cls.parse(value)
        if kernel is not None:
            return kernel
        nvidia = device_type == "cuda" and torch.version.hip is None
        return cls.TRITON if nvidia else cls.PYTORCH

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


def bad_labels(labels: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Where labels are neither a token id in [0, vocab_size) nor IGNORE_INDEX (no host sync)."""
    return ((labels < 0) & (labels != IGNORE_INDEX)) | (labels >= vocab_size)


class LabelError(ValueError):
    """Labels that are neither token ids of the model's vocabulary nor IGNORE_INDEX (a dataset
    made with another tokenizer): `prefix_titan.train` ends the run with its message, status 2."""


def label_error(labels: torch.Tensor, vocab_size: int) -> LabelError:
    """The error that names the bad labels among `labels` (reads them on the host)."""
    found = labels[bad_labels(labels, vocab_size)].unique()[:8].tolist()
    return LabelError(
        f"labels must be token ids in [0, {vocab_size}) or {IGNORE_INDEX} (ignored); found {found}"
    )


def check_labels(labels: torch.Tensor, vocab_size: int) -> None:
    """Refuse labels outside [0, vocab_size) other than IGNORE_INDEX: one host sync. Training
    steps count them on the device instead (`bad_labels`), and refuse them after the step."""
    if bool(bad_labels(labels, vocab_size).any()):
        raise label_error(labels, vocab_size)


def scored_rows(labels: torch.Tensor, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(keep, y): the rows that are scored (a label in [0, vocab_size)) and the labels with every
    other row set to 0, a valid index. A label that is neither an id nor IGNORE_INDEX is not scored
    either: the caller refuses it (check_labels, or the deferred count of `bad_labels`)."""
    keep = (labels >= 0) & (labels < vocab_size)
    return keep, torch.where(keep, labels, 0)


def _forward_rows(logits, y, keep, table: TableTensors, row_weight):
    """(objective sum, CE sum, per-row logsumexp) of a block of rows: the form torch.compile
    fuses (one block, no bound on its fp32 intermediates)."""
    z = logits.float()
    lse = torch.logsumexp(z, dim=-1)
    gathered = z.gather(1, table.idx[y])
    objective = lse - mass_times(table.background[y], z.sum(-1)) - sparse_term(table, y, gathered)
    if row_weight is not None:
        objective = objective * row_weight
    ce = lse - gathered[:, 0]
    return torch.where(keep, objective, 0.0).sum(), torch.where(keep, ce, 0.0).sum(), lse


def mass_times(mass, z):
    """mass * z, 0 where the mass is 0: a logit of -inf (a masked id) with no target on it adds
    nothing to -sum p log softmax, as 0 * log 0 = 0 (0 * -inf would be NaN)."""
    return torch.where(mass == 0, 0.0, mass * z)


def sparse_term(table: TableTensors, y, gathered):
    """sum_k w_k * z[idx_k] per row, fp32 gathered logits [rows, K] (mass_times)."""
    return mass_times(table.weight[y], gathered).sum(-1)


def _dense_gradient(z, lse, background, scale):
    """(softmax(z) - b) * scale of fp32 rows z, b and scale per row."""
    return (torch.exp(z - lse[:, None]) - background[:, None]) * scale[:, None]


def _exact_gradient(z, ids, lse, table: TableTensors, y, scale):
    """(softmax(z) - p) * scale at the K sparse ids of each row: [rows, K], fp32."""
    return (torch.exp(z.gather(1, ids) - lse[:, None]) - table.target_at_idx[y]) * scale[:, None]


def _backward_rows(logits, y, scale, lse, table: TableTensors):
    """Gradient of a block of rows, in the logits' dtype (a new tensor); `scale` is 0 on ignored
    rows: the form torch.compile fuses."""
    z = logits.float()
    grad = _dense_gradient(z, lse, table.background[y], scale).to(logits.dtype)
    ids = table.idx[y]
    return grad.scatter_(1, ids, _exact_gradient(z, ids, lse, table, y, scale).to(logits.dtype))


# The fused head's chunk under torch.compile: two graphs, so that its gradient can be written over
# its logits. In one graph that both reads the logits (reductions, gathers) and writes over them,
# inductor must order every read before the write; torch 2.11's CPU code did not (objective and
# CE off by 1-2 %). Split, the first graph only reads and the second reads each logit only to
# write its own gradient in its place: correct in any order.


def compiled_chunk_statistics(logits, y, keep, table: TableTensors, row_weight, scale):
    """The first graph, reads only: (objective sum, CE sum, per-row logsumexp, sparse ids
    [c, K], their exact gradient [c, K] in the logits' dtype, or None without `scale`)."""
    objective, ce, lse = _forward_rows(logits, y, keep, table, row_weight)
    ids = table.idx[y]
    if scale is None:
        return objective, ce, lse, ids, None
    exact = _exact_gradient(logits.float(), ids, lse, table, y, scale)
    return objective, ce, lse, ids, exact.to(logits.dtype)


def compiled_gradient_write(logits, lse, background, scale):
    """The second graph: (softmax - b) * scale written over the logits, element by element
    (inductor writes it straight into their memory; a scatter in the same graph would make it
    materialise the gradient as a second [c, V] tensor first: the caller puts the K exact entries
    in after). `background`: b of each row."""
    logits.copy_(_dense_gradient(logits.float(), lse, background, scale))


# The eager passes. Traffic per logit is given for bf16 logits (2 B) and the fp32 block `buf`
# (4 B): reads + writes of [rows, V] tensors; per-row vectors and the K gathers are negligible.
# `objectives/traffic.py` counts the same from the operations that actually run.


def _eager_statistics(logits, y, keep, table: TableTensors, row_weight, buf, grad_scale=None):
    """(objective sum, CE sum, per-row logsumexp) of a block of rows, eagerly, through the fp32
    block `buf` ([rows, V]); with `grad_scale` ([rows]) the gradient times grad_scale is also
    written over `logits`, in the same pass (the fused head's chunks, whose logits are not needed
    afterwards)."""
    ids = table.idx[y]
    gathered = logits.gather(1, ids).float()  # before any write over the logits
    m = logits.amax(-1, keepdim=True).float()  # pass 1: read 2 B
    e = torch.sub(logits, m, out=buf)  # pass 2: read 2, write 4: 6 B (fp32 from here)
    e.exp_()  # pass 3: read 4, write 4: 8 B
    s = e.sum(-1, keepdim=True)  # pass 4: read 4 B
    lse = m.squeeze(1) + s.squeeze(1).log()
    objective = lse - sparse_term(table, y, gathered)
    if table.has_background:  # pass 5 (a uniform part only): read 2 B
        row_sum = logits.sum(-1, dtype=torch.float32)
        objective = objective - mass_times(table.background[y], row_sum)
    if row_weight is not None:
        objective = objective * row_weight
    ce = lse - gathered[:, 0]
    if grad_scale is not None:  # pass 6: read 4, write 2: 6 B
        _write_gradient(logits, e, grad_scale, 1.0 / s, ids, gathered, lse, y, table)
    return torch.where(keep, objective, 0.0).sum(), torch.where(keep, ce, 0.0).sum(), lse


def _eager_gradient(logits, y, scale, lse, table: TableTensors, buf, out):
    """Write the gradient of a block of rows times `scale` into `out` (the logits' dtype; it may
    be `logits` itself), eagerly, through the fp32 block `buf`."""
    ids = table.idx[y]
    gathered = logits.gather(1, ids).float()  # before any write over the logits
    e = torch.sub(logits, lse[:, None], out=buf)  # pass 1: read 2, write 4: 6 B
    e.exp_()  # pass 2: read 4, write 4: 8 B
    _write_gradient(out, e, scale, None, ids, gathered, lse, y, table)  # pass 3: 6 B


def _write_gradient(out, e, scale, inv_sum, ids, gathered, lse, y, table: TableTensors):
    """out = (e * inv_sum - b) * scale, rounded once to out's dtype (one pass: read e's 4 B,
    write 2), where e * inv_sum is softmax(z) (inv_sum None: e already is); then the K sparse
    entries (softmax - p) * scale from the logits gathered beforehand."""
    scale = scale[:, None]
    factor = scale if inv_sum is None else scale * inv_sum
    if table.has_background:
        torch.addcmul(-table.background[y, None] * scale, e, factor, out=out)
    else:
        torch.mul(e, factor, out=out)
    exact = (torch.exp(gathered - lse[:, None]) - table.target_at_idx[y]) * scale
    out.scatter_(1, ids, exact.to(out.dtype))


def chunk_rows(logits: torch.Tensor, chunk_bytes: int | None = None) -> int:
    """Rows per block of the element-wise passes: a bounded fp32 working set when eager."""
    if torch.compiler.is_compiling():
        return logits.shape[0]  # inductor fuses the passes: no fp32 intermediate to bound
    return rows_per_block(logits.shape[-1], logits.device.type, chunk_bytes)


def rows_per_block(vocab_size: int, device_type: str, chunk_bytes: int | None = None) -> int:
    """Rows of `vocab_size` logits in an fp32 block of `chunk_bytes` (None: the device type's
    default, CHUNK_BYTES), at least one."""
    if chunk_bytes is None:
        chunk_bytes = CHUNK_BYTES.get(device_type, DEFAULT_CHUNK_BYTES)
    return max(1, chunk_bytes // (4 * vocab_size))


def check_width(width: int, table: TableTensors | TargetTable, what: str) -> None:
    """Refuse logits (or a head) whose vocabulary is not the table's: labels between the two
    widths would be neither scored nor refused. `what` names the width: "logits have {} classes"."""
    if width != table.idx.shape[0]:
        raise ValueError(f"{what.format(width)} but the target table has {table.idx.shape[0]}")


LABEL_DTYPES = (torch.int64, torch.int32)
"""The dtypes labels may have (token ids; a smaller integer type would wrap large ids)"""


def check_rows(x: torch.Tensor, labels: torch.Tensor, row_weight, what: str) -> None:
    """Refuse inputs the row passes would misread (no host sync): `x` ([N, V] logits or [N, d]
    hidden states, as `what` names them) must be floating point and 2-D, `labels` [N] integer
    token ids, `row_weight` None or [N] floating point. Labels of another length were cut or
    broadcast: a shift mistake (labels [B, T + 1] for logits [B, T, V]) trained on misaligned
    targets."""
    flatten = f"(flatten a batch: {what}.reshape(-1, {what}.shape[-1]), labels.reshape(-1))"
    if x.dim() != 2:
        raise ValueError(
            f"{what} must be 2-D, one row per token; got shape {tuple(x.shape)} {flatten}"
        )
    if not x.is_floating_point():
        raise ValueError(f"{what} must be floating point; got {x.dtype}")
    if labels.dtype not in LABEL_DTYPES:
        raise ValueError(
            f"labels must be token ids of dtype torch.int64 or torch.int32; got {labels.dtype}"
        )
    if labels.shape != x.shape[:1]:
        raise ValueError(
            f"labels must be [N], one per row of {what} ({x.shape[0]} rows); got shape "
            f"{tuple(labels.shape)} {flatten}"
        )
    if row_weight is not None and (
        row_weight.shape != x.shape[:1] or not row_weight.is_floating_point()
    ):
        raise ValueError(
            f"row_weight must be None or [N] floating point, one weight per row of {what} "
            f"({x.shape[0]} rows); got shape {tuple(row_weight.shape)} {row_weight.dtype}"
        )


def _blocks(n: int, rows: int):
    return (slice(i, min(i + rows, n)) for i in range(0, n, rows))


def _part(t, r):
    return None if t is None else t[r]


def _buffer(logits, rows: int) -> torch.Tensor:
    """The eager passes' fp32 block, reused by every block of rows."""
    return torch.empty(
        (min(rows, logits.shape[0]), logits.shape[1]), dtype=torch.float32, device=logits.device
    )


def _eager_walk(logits, y, keep, table: TableTensors, row_weight, rows: int, scale=None):
    """(objective sum, CE sum, per-row logsumexp) of [N, V] logits, `rows` rows at a time
    through one fp32 block; with `scale` each block's gradient is written over it as well."""
    if logits.shape[0] == 0:  # no rows: sums of nothing
        zero = logits.new_zeros((), dtype=torch.float32)
        return zero, zero.clone(), logits.new_empty((0,), dtype=torch.float32)
    buf = _buffer(logits, rows)
    parts = [
        _eager_statistics(
            logits[r],
            y[r],
            keep[r],
            table,
            _part(row_weight, r),
            buf[: r.stop - r.start],
            grad_scale=_part(scale, r),
        )
        for r in _blocks(logits.shape[0], rows)
    ]
    if len(parts) == 1:
        return parts[0]
    return (
        torch.stack([p[0] for p in parts]).sum(),
        torch.stack([p[1] for p in parts]).sum(),
        torch.cat([p[2] for p in parts]),
    )


class PyTorchRows:
    """The row passes in plain PyTorch: eagerly, `rows` rows at a time through one fp32 block
    (`_eager_statistics`, `_eager_gradient`); under torch.compile one block in the form inductor
    fuses (`_forward_rows`, `_backward_rows`)."""

    @staticmethod
    def statistics(logits, y, keep, table: TableTensors, row_weight, rows: int):
        """(objective sum, CE sum, per-row logsumexp) of [N, V] logits."""
        if torch.compiler.is_compiling():
            return _forward_rows(logits, y, keep, table, row_weight)
        return _eager_walk(logits, y, keep, table, row_weight, rows)

    @staticmethod
    def gradient(logits, y, scale, lse, table: TableTensors, rows: int):
        """d(objective)/d(logits) times `scale` per row, in the logits' dtype (a new tensor)."""
        if torch.compiler.is_compiling():
            return _backward_rows(logits, y, scale, lse, table)
        grad = torch.empty_like(logits)
        buf = _buffer(logits, rows)
        for r in _blocks(logits.shape[0], rows):
            n = r.stop - r.start
            _eager_gradient(logits[r], y[r], scale[r], lse[r], table, buf[:n], grad[r])
        return grad

    @staticmethod
    def statistics_and_gradient(logits, y, keep, table: TableTensors, row_weight, scale, rows):
        """(objective sum, CE sum, gradient times `scale`) of [N, V] logits that are not needed
        afterwards (the fused head's chunk): eagerly one walk over the rows, the gradient written
        over the logits block by block. Traced into a larger graph (a head compiled whole; the
        fused head's own compiled step is `compiled_chunk_statistics` then
        `compiled_gradient_write`, two graphs) the gradient is a new tensor: a write over the
        logits inside a graph that also reads them is left to inductor's ordering."""
        if torch.compiler.is_compiling():
            objective, ce, lse = _forward_rows(logits, y, keep, table, row_weight)
            return objective, ce, _backward_rows(logits, y, scale, lse, table)
        objective, ce, _ = _eager_walk(logits, y, keep, table, row_weight, rows, scale)
        return objective, ce, logits


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
        keep, y = scored_rows(labels, how.table.idx.shape[0])
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
    check: bool = True,
):
    """(objective sum, CE sum) for [N, V] logits and [N] labels; `table` from
    `TargetTable.tensors`, `row_weight` [N] or None (every row weighs 1). `check`: refuse labels
    outside [0, V) other than IGNORE_INDEX (one host sync); with False the caller refuses them
    (rows with such a label are not scored)."""
    check_rows(logits, labels, row_weight, "logits")
    check_width(logits.shape[-1], table, "logits have {} classes")
    if check:
        check_labels(labels, logits.shape[-1])
    how = RowPasses(table, kernel.passes(), chunk_rows(logits, chunk_bytes))
    return _TargetLossFunction.apply(logits, labels, row_weight, how)
