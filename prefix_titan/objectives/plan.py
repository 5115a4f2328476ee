"""One loss plan per run: every decision about how the objective is computed, made once.

`build_plan(spec, table, ...)` turns an ObjectiveSpec and its target table into a `LossPlan`: the
table (its tensors per device), the position weighting, fused or not with the chunk size resolved
(and where it came from), the row implementation (`RowKernel`, dispatched once to its passes),
torch.compile or not, and the line the run logs at start-up. The logits loss (`logits_loss`) and
the fused head (`fused_loss`) take the same plan. Plain PyTorch: the torchtitan adapters build it
from a job config (titan/loss.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, partial

import torch

from .fused import build_chunk_step, default_chunk_tokens, fused_target_loss, prepare_device
from .kernel import AUTO_KERNEL, RowKernel, check_labels, check_width, row_weights, target_loss
from .mechanism import MechanismTables, mechanism_sums, observing_step, position_buckets
from .spec import ObjectiveSpec
from .table import TableTensors, TargetTable, indexed


@dataclass(frozen=True)
class LossPlan:
    """How one run computes its objective (build it with `build_plan`)."""

    spec: ObjectiveSpec
    """The objective (validated)"""
    table: TargetTable
    """Its target table"""
    kernel: RowKernel
    """The row passes' implementation"""
    compile: bool = False
    """The row passes run under torch.compile (PyTorch passes only: the Triton ones are kernels)"""
    backend: str = "inductor"
    """torch.compile's backend"""
    chunk_tokens: int | None = None
    """Fused head: tokens per chunk of logits, resolved; None: the loss takes the logits"""
    chunk_source: str = ""
    """Where chunk_tokens came from (the setting, or the device's default)"""
    mechanism: MechanismTables | None = None
    """The vocabulary's tables for the validation metrics (mechanism.py); None: plain CE only"""
    bos_id: int | None = None
    """The tokenizer's BOS id (objective.position_start = 'document': where documents start)"""
    eos_id: int | None = None
    """The tokenizer's EOS id (document starts where data.document_mask ignored the BOS)"""
    window_positions: bool = True
    """Whether a validation batch's labels hold whole windows, so that a target's index is its
    position (validation CE by position); False under context parallelism, which hands each
    rank chunks of the window"""

    @property
    def fused(self) -> bool:
        return self.chunk_tokens is not None

    @property
    def row_block_bytes(self) -> int | None:
        """The eager PyTorch row passes' fp32 block (objective.row_block_mib); None: the
        device's default."""
        mib = self.spec.row_block_mib
        return None if mib is None else mib * 2**20

    @property
    def vocab_size(self) -> int:
        return self.table.vocab_size

    def tensors(self, device) -> TableTensors:
        return self.table.tensors(device)

    @property
    def has_background(self) -> bool:
        """The target has a uniform part (label smoothing, prefix with vocab support)."""
        return self.table.has_background

    @cached_property
    def _mechanism_on(self) -> dict:
        return {}

    def mechanism_on(self, device) -> MechanismTables:
        if self.mechanism is None:
            raise RuntimeError("this loss plan has no mechanism tables (built without texts)")
        device = indexed(device)
        if device not in self._mechanism_on:
            self._mechanism_on[device] = self.mechanism.to(device)
        return self._mechanism_on[device]

    def prepare(self, device) -> None:
        """Make on `device`, at start-up, what a training step would otherwise make in its first
        call: the target table's tensors and (fused head) the answer to whether its weight
        gradient can be summed straight into fp32; both read values on the host once."""
        device = indexed(device)
        self.tensors(device)
        if self.fused:
            prepare_device(device)

    def validation_sums(self, logits, labels) -> torch.Tensor:
        """The validation metrics' sums (mechanism.LAYOUT) of logits [..., V] for labels [...]:
        plain CE and its breakdowns (by position where labels are [batch, seq]), prefix mass,
        top-1, Brier, calibration, and the objective (weighted as in training)."""
        V = self.vocab_size
        return mechanism_sums(  # refuses bad labels
            logits.reshape(-1, V),
            labels.reshape(-1),
            self.mechanism_on(logits.device),
            self.tensors(logits.device),
            self.row_weights(labels),
            self.has_background,
            self._positions(labels),
        )

    def _positions(self, labels: torch.Tensor) -> torch.Tensor | None:
        """The position buckets of labels [batch, seq] (mechanism.position_buckets), or None
        where their index is not their position (other shapes, context parallelism)."""
        if labels.dim() < 2 or not self.window_positions:
            return None
        return position_buckets(labels)

    def row_weights(self, labels: torch.Tensor) -> torch.Tensor | None:
        """Per-row weights of labels [batch, seq] (position weighting), or None: k counted from
        each window's start, or with objective.position_start = 'document' from each
        document's (kernel.document_positions)."""
        if self.spec.position_start != "document":
            return row_weights(labels, self.spec.position_gamma)
        return row_weights(labels, self.spec.position_gamma, bos=self.bos_id, eos=self.eos_id)

    @cached_property
    def _target_loss(self):
        loss = partial(  # labels checked by logits_loss
            target_loss, kernel=self.kernel, chunk_bytes=self.row_block_bytes, check=False
        )
        if self.compile and self.kernel.compiles:
            return torch.compile(loss, backend=self.backend)
        return loss

    @cached_property
    def chunk_step(self):
        """The fused head's per-chunk step (compiled when the plan compiles)."""
        return build_chunk_step(self.kernel, self.compile, self.backend, self.row_block_bytes)

    def logits_loss(self, logits, labels, weighted: bool = True, *, check: bool = True):
        """(objective sum, plain CE sum) of logits [..., V] for labels [...]; `weighted=False`
        leaves the position weighting out (it never touches the plain CE). `check=False` leaves
        the labels' check to the caller (a training step counts bad labels on the device,
        `kernel.bad_labels`, and refuses them after the step: no host sync here); rows with a
        bad label are not scored meanwhile."""
        V = self.vocab_size
        check_width(logits.shape[-1], self.table, "logits have {} classes")
        if check:
            check_labels(labels, V)
        rw = self.row_weights(labels) if weighted else None
        return self._target_loss(
            logits.reshape(-1, V), labels.reshape(-1), self.tensors(logits.device), rw
        )

    def fused_loss(
        self, h, head_weight, labels, sink: torch.Tensor | None = None, *, check: bool = True
    ):
        """(objective sum, plain CE sum) of hidden states h [..., d] through the head's weight
        [V, d], chunk_tokens rows of logits at a time. With `sink` (a mechanism.LAYOUT vector;
        passes without gradients only) each chunk's validation sums are added to it, from the
        same pass over the chunk. `check` as for `logits_loss`."""
        if not self.fused:
            raise RuntimeError("this loss plan is not fused (objective.fused_loss = false)")
        if check:
            check_labels(labels, head_weight.shape[0])
        step = self.chunk_step
        if sink is not None:
            positions = self._positions(labels)
            step = observing_step(sink, self.mechanism_on(h.device), self.has_background, positions)
        return fused_target_loss(
            h.reshape(-1, h.shape[-1]),
            head_weight,
            labels.reshape(-1),
            self.tensors(h.device),
            self.row_weights(labels),
            chunk_tokens=self.chunk_tokens,
            step=step,
            check=False,  # checked above, or by the caller
        )

    def describe(self) -> str:
        """The line a run logs at start-up: what computes the loss, and how."""
        if self.kernel is RowKernel.TRITON:
            auto = ", objective.kernel = 'auto' on CUDA" if self.spec.kernel == AUTO_KERNEL else ""
            how = f" (row passes: Triton kernels{auto})"
        elif self.compile:
            how = " (row passes compiled with torch.compile)"
        elif self.spec.row_block_mib is not None:
            how = f" (row passes through {self.spec.row_block_mib} MiB blocks)"
        else:
            how = ""
        gamma = self.spec.position_gamma
        if gamma is not None:
            how += (
                f", each target weighted by its position (objective.position_gamma = {gamma}: "
                "later targets weigh more, mean 1 over the window; positions counted from "
                + (
                    "each document's first target, objective.position_start = 'document')"
                    if self.spec.position_start == "document"
                    else "the window's first target, across documents)"
                )
            )
        if self.fused:
            return (
                f"Fused loss: {self.spec.name} computed by the model's head in chunks of "
                f"{self.chunk_tokens} tokens ({self.chunk_source}){how}"
            )
        return f"Loss: {self.spec.name} on the model's logits{how}"


def check_row_block(
    spec: ObjectiveSpec, compile: bool, kernel: RowKernel, device_type: str
) -> None:
    """Refuse objective.row_block_mib where no PyTorch row pass walks blocks: the loss compiled
    (torch.compile fuses the passes), or `auto` choosing Triton on this device (an explicit
    `triton` is refused by ObjectiveSpec.validate)."""
    if compile and spec.row_block_mib is not None:
        raise ValueError(
            "objective.row_block_mib sets the eager row passes' block, and the loss is compiled "
            "(torch.compile fuses the passes: no block): leave objective.row_block_mib unset, "
            "or take 'loss' out of compile.components"
        )
    if spec.row_block_mib is not None and kernel is RowKernel.TRITON:
        raise ValueError(
            f"objective.row_block_mib sets the PyTorch row passes' block, and objective.kernel = "
            f"{spec.kernel!r} runs Triton kernels on {device_type} (one kernel per row, no "
            f"block): set objective.kernel = 'pytorch' to walk the blocks, or leave "
            f"objective.row_block_mib unset"
        )


def build_plan(
    spec: ObjectiveSpec,
    table: TargetTable,
    *,
    device_type: str = "cpu",
    dim: int | None = None,
    compile: bool = False,
    backend: str = "inductor",
    mechanism: MechanismTables | None = None,
    bos_id: int | None = None,
    eos_id: int | None = None,
    window_positions: bool = True,
) -> LossPlan:
    """The plan of `spec` over `table` on a device type ("cpu", "cuda") for a model of width
    `dim` (needed for the fused head's default chunk size); `mechanism` (mechanism_tables of the
    vocabulary) enables the validation metrics; `bos_id` and `eos_id`, the tokenizer's (None
    where it has none), mark where documents start for objective.position_start = 'document',
    which is refused without a BOS. `table` must be `spec`'s: one that build_target_table built
    for other target settings is refused (a table made otherwise records no spec, and is taken
    as it is)."""
    spec.validate()
    check_table_spec(spec, table)
    if spec.position_start == "document" and bos_id is None:
        raise ValueError(
            "objective.position_start = 'document' counts each target's position from its "
            "document's first target, the one after the target BOS, and the tokenizer has no "
            "BOS token (build_plan's bos_id is None): leave objective.position_start unset "
            "(positions counted from the window's start), or use a tokenizer with a BOS"
        )
    kernel = RowKernel.resolve(spec.kernel, device_type)
    check_row_block(spec, compile, kernel, device_type)
    chunk, source = resolve_chunk(spec, device_type, dim)
    return LossPlan(
        spec,
        table,
        kernel,
        compile,
        backend,
        chunk,
        source,
        mechanism,
        bos_id,
        eos_id,
        window_positions,
    )


def check_table_spec(spec: ObjectiveSpec, table: TargetTable) -> None:
    """Refuse a table that build_target_table built for other target settings than `spec`'s:
    the plan would train towards one objective while naming another."""
    built = getattr(table, "built_by", None)
    if not isinstance(built, ObjectiveSpec) or built.target_key() == spec.target_key():
        return
    ours, theirs = dict(spec.target_key()), dict(built.target_key())
    differ = [k for k in ours if ours[k] != theirs.get(k)]

    def shown(settings: dict) -> str:
        return ", ".join(f"objective.{k} = {settings.get(k)!r}" for k in differ)

    raise ValueError(
        f"build_plan: the target table was built for {shown(theirs)}, and the plan's spec has "
        f"{shown(ours)}: a plan trains towards its table, so it would train one objective and "
        "name another; build the table with build_target_table(texts, spec) of the plan's spec"
    )


def resolve_chunk(spec: ObjectiveSpec, device_type: str, dim: int | None) -> tuple[int | None, str]:
    """(the fused head's tokens per chunk, where the number came from); (None, "") unfused."""
    if not spec.fused_loss:
        return None, ""
    if spec.fused_chunk_tokens is not None:
        return spec.fused_chunk_tokens, "objective.fused_chunk_tokens"
    if dim is None:
        raise ValueError("the fused head's default chunk size needs the model's width")
    return default_chunk_tokens(device_type, dim), f"the default on {device_type}"


def resolved_execution(spec: ObjectiveSpec, device_type: str, dim: int | None) -> dict:
    """What a device makes of the execution settings whose defaults depend on it: the row
    kernel that runs and the fused head's chunk size (None unfused). A run's record keeps it:
    resuming a run, or comparing the arms of a sweep, compares these, not the settings."""
    return {
        "kernel": RowKernel.resolve(spec.kernel, device_type).value,
        "fused_chunk_tokens": resolve_chunk(spec, device_type, dim)[0],
    }


GPU_CHUNK_BEFORE_4096 = 2048
"""The GPU's default chunk size for runs recorded before records kept `resolved_execution`"""


def recorded_execution(
    objective: dict, resolved: dict | None, device_type: str | None = None, dim: int | None = None
) -> dict:
    """`resolved_execution` of a run's record: the one it keeps, or for a run recorded before
    records kept it, what its settings resolved to then (no kernel setting: PyTorch, the only
    kernel; an unset chunk size: the defaults of then on `device_type` for a model of width
    `dim`, where both are given; else the settings as recorded)."""
    if resolved is not None:
        return dict(resolved)
    kernel = objective.get("kernel", RowKernel.PYTORCH.value)
    if device_type is not None and kernel in RowKernel.choices():
        kernel = RowKernel.resolve(kernel, device_type).value
    chunk = objective.get("fused_chunk_tokens")
    if chunk is None and objective.get("fused_loss") and device_type is not None and dim:
        cpu = device_type == "cpu"
        chunk = default_chunk_tokens(device_type, dim) if cpu else GPU_CHUNK_BEFORE_4096
    return {"kernel": kernel, "fused_chunk_tokens": chunk}


__all__ = [
    "LossPlan",
    "build_plan",
    "check_row_block",
    "check_table_spec",
    "recorded_execution",
    "resolve_chunk",
    "resolved_execution",
]
