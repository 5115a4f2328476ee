"""What the loss's row passes move through memory, and where they wait for the host: counted from
the operations that actually run.

`count_traffic(fn, vocab_size)` runs `fn()` (a forward and backward, say) under a dispatch mode
that sees every ATen operation, eager ones and those autograd runs in backward, and adds for each
the bytes it reads and writes of vocabulary-wide tensors (last dimension `vocab_size`: logits,
their fp32 blocks, gradients). Per-row vectors and the K sparse entries are left out (their
traffic scales with K, not V), views move nothing, and matmuls are counted apart (the head's
matmuls are not row work). The model of an operation's traffic:

- an element-wise operation or reduction reads each wide input once and writes each wide output
  once (an in-place one reads and writes its tensor: `exp_` on fp32 is 8 bytes per element);
- `copy_` reads its source and writes its destination; an `out=` tensor is written, not read;
- gathers and scatters (`gather`, `scatter_`, `index_put_`, `nll_loss_forward`, ...) touch K
  entries per row: 0; `nll_loss_backward` writes its whole output and reads none;
- allocations (`empty*`) move nothing; `zeros`/`fill_`/`zero_` write.

A broadcast input (stride 0) counts its distinct elements. This is the traffic of an ideal
implementation of each operation (one read of each input): a kernel that reads its input more
than once (as a GPU softmax does) moves more. Inductor's fused kernels are not seen by the mode:
`compiled_traffic` asks inductor's scheduler for its own count of a compiled function.

`HostSyncs` counts the operations that make the host wait for the device: `.item()`, `bool()`,
`float()` and `int()` of a tensor (all `aten._local_scalar_dense`), `.tolist()`, and operations
whose output size depends on the data (`nonzero`, boolean-mask indexing, `unique`,
`masked_select`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

MATMULS = {"mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "_scaled_mm", "addmm_"}
SPARSE = {
    "gather",
    "scatter",
    "scatter_",
    "scatter_add",
    "scatter_add_",
    "scatter_reduce",
    "scatter_reduce_",
    "index",
    "index_put",
    "index_put_",
    "_index_put_impl_",
    "take_along_dim",
    "index_select",
    "embedding",
    "nll_loss_forward",
    "nll_loss2d_forward",
}
ALLOCATIONS = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided"}
WRITE_ONLY = {
    "zero_",
    "fill_",
    "zeros",
    "zeros_like",
    "new_zeros",
    "full",
    "full_like",
    "nll_loss_backward",  # reads the K = 1 target entries, writes the whole gradient
}
SYNCING = {"_local_scalar_dense", "nonzero", "masked_select", "_unique2", "unique_dim"}
SYNCING_PREFIXES = ("unique_consecutive", "_unique")


def _distinct_bytes(t: torch.Tensor) -> int:
    """Bytes of t's distinct elements (a broadcast dimension, stride 0, counts once)."""
    n = math.prod(s for s, st in zip(t.shape, t.stride()) if st != 0) if t.dim() else 1
    return n * t.element_size()


@dataclass
class Traffic:
    """Bytes read and written of vocabulary-wide tensors, per operation name, over one run."""

    vocab_size: int
    rows: dict[str, int] = field(default_factory=dict)
    """Bytes moved by each operation (name: total)"""
    calls: dict[str, int] = field(default_factory=dict)
    """How often each operation that moved wide tensors ran"""
    matmul_bytes: int = 0
    """Bytes of wide operands and results of matmuls (not row work)"""

    @property
    def total(self) -> int:
        return sum(self.rows.values())

    def per_logit(self, logits: int) -> float:
        """Bytes moved per logit, for `logits` = rows x V logits in all."""
        return self.total / logits

    def passes(self) -> list[tuple[str, int, int]]:
        """(operation, calls, bytes) by bytes moved, largest first."""
        return sorted(((k, self.calls[k], v) for k, v in self.rows.items()), key=lambda r: -r[2])


class _TrafficMode(TorchDispatchMode):
    def __init__(self, traffic: Traffic):
        super().__init__()
        self.traffic = traffic

    def _wide(self, x) -> bool:
        return (
            isinstance(x, torch.Tensor) and x.dim() >= 2 and x.shape[-1] == self.traffic.vocab_size
        )

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func._schema.name.split("::")[-1]
        if func.is_view or name in ALLOCATIONS or name in SPARSE:
            return out
        inputs = tree_flatten(list(args) + [v for k, v in kwargs.items() if k != "out"])[0]
        if name == "copy_":
            inputs = inputs[1:]  # the destination is written, not read
        elif name in WRITE_ONLY:
            inputs = []
        read = sum(_distinct_bytes(x) for x in inputs if self._wide(x))
        written = sum(_distinct_bytes(x) for x in tree_flatten(out)[0] if self._wide(x))
        moved = read + written
        if moved:
            t = self.traffic
            if name in MATMULS:
                t.matmul_bytes += moved
            else:
                t.rows[name] = t.rows.get(name, 0) + moved
                t.calls[name] = t.calls.get(name, 0) + 1
        return out


def count_traffic(fn, vocab_size: int) -> Traffic:
    """The wide-tensor traffic of running `fn()` eagerly (see the module's docstring)."""
    traffic = Traffic(vocab_size)
    with _TrafficMode(traffic):
        fn()
    return traffic


INDUCTOR_METRICS_LOG = "torch._inductor.compile_fx.__inductor_metrics"
"""The logger of inductor's per-graph metrics (torch._logging's `inductor_metrics` artifact)"""


def _drop(record) -> bool:
    return False


def compiled_traffic(fn) -> int | None:
    """Inductor's own count of the bytes its kernels read and write (its scheduler's buffer
    sizes, summed over the graphs `fn()` compiles: each graph counted once, however often it
    runs), with dynamo and the graph cache reset so that everything compiles afresh (torch's log
    settings are reset afterwards); None when this torch does not report it. Inductor counts
    where its metrics log is on; the log's lines themselves are dropped, not printed."""
    import logging

    from torch._inductor import config, metrics

    torch._dynamo.reset()
    metrics.reset()
    log = logging.getLogger(INDUCTOR_METRICS_LOG)
    log.addFilter(_drop)
    try:
        torch._logging.set_logs(inductor_metrics=True)  # what makes inductor count
        with config.patch(fx_graph_cache=False):
            fn()
    finally:
        torch._logging.set_logs()
        log.removeFilter(_drop)
    torch._dynamo.reset()
    return metrics.num_bytes_accessed or None


@dataclass
class HostSyncs:
    """The operations in a block that made the host wait for the device (see the module's
    docstring): `with HostSyncs() as s: ...; s.calls` lists them in order."""

    calls: list[str] = field(default_factory=list)

    def __enter__(self):
        self._mode = _SyncMode(self.calls)
        self._tolist = torch.Tensor.tolist
        calls, tolist = self.calls, self._tolist

        def counted_tolist(t):
            calls.append("tolist")
            return tolist(t)

        torch.Tensor.tolist = counted_tolist
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        self._mode.__exit__(*exc)
        torch.Tensor.tolist = self._tolist
        return False


class _SyncMode(TorchDispatchMode):
    def __init__(self, calls: list[str]):
        super().__init__()
        self.calls = calls

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name.split("::")[-1]
        if name in SYNCING or name.startswith(SYNCING_PREFIXES):
            self.calls.append(name)
        elif name in ("index", "index_put", "index_put_") and _has_mask(args):
            self.calls.append(f"{name} (boolean mask)")
        return func(*args, **(kwargs or {}))


def _has_mask(args) -> bool:
    """An indexing operation with a boolean mask: its output size depends on the data."""
    indices = args[1] if len(args) > 1 else []
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices or [])


__all__ = ["HostSyncs", "Traffic", "compiled_traffic", "count_traffic"]
