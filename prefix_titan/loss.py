"""torchtitan loss adapters over the objectives floor, and the run's target tables.

torchtitan calls the loss as loss_fn(pred, labels) and normalises the returned sum by the global
token count. `TargetLoss` takes logits; `FusedHeadLoss` takes the (objective sum, CE sum) that the
fused head already computed (model/transformer.py). Both feed the batch's plain CE to a meter for
the training log. `PlainCELoss` is validation's loss: plain, unweighted CE whatever the objective.
"""

from __future__ import annotations

import time
from functools import partial

import torch

from .model.flavors import flavor_args
from .objectives.families import build_target_table
from .objectives.fused import default_chunk_tokens
from .objectives.kernel import IGNORE_INDEX, check_labels, row_weights, target_loss
from .objectives.table import TargetTable, token_texts


class TargetTables:
    """The run's target tables, built once per process and setting (the loss and the fused head
    share one). Made by get_train_spec and handed to the builders that need it."""

    def __init__(self):
        self._tables: dict[tuple, TargetTable] = {}

    def for_job(self, job_config) -> TargetTable:
        from torchtitan.components.tokenizer import build_hf_tokenizer
        from torchtitan.tools.logging import logger

        spec = job_config.objective.validate()
        vocab_size = flavor_args(job_config.model.flavor).vocab_size
        key = (
            job_config.model.hf_assets_path,
            vocab_size,
            spec.name,
            spec.tau,
            spec.normalize,
            spec.support,
            spec.epsilon,
        )
        if key not in self._tables:
            start = time.perf_counter()
            texts = token_texts(build_hf_tokenizer(job_config), vocab_size)
            table = self._tables[key] = build_target_table(texts, spec)
            logger.info(
                f"Target table for {spec.name}: vocab {table.vocab_size}, {table.idx.shape[1]} "
                f"sparse entries per row, built in {time.perf_counter() - start:.2f}s"
            )
        return self._tables[key]


def compiles_loss(job_config) -> bool:
    """`compile.components` includes the loss (for the fused head: its chunk kernel)."""
    return job_config.compile.enable and "loss" in job_config.compile.components


class TargetLoss:
    """(logits [..., V], labels [...]) -> the objective summed over tokens (labels != -100)."""

    def __init__(
        self,
        table: TargetTable,
        *,
        position_gamma: float | None = None,
        compile: bool = False,
        backend: str = "inductor",
        kernel: str = "pytorch",
        meter=None,
    ):
        self.table = table
        self.position_gamma = position_gamma
        self.meter = meter
        # The Triton row kernels are already one kernel per pass: nothing for torch.compile to fuse.
        loss = partial(target_loss, kernel=kernel)
        self.kernel = (
            torch.compile(loss, backend=backend) if compile and kernel == "pytorch" else loss
        )
        # Set only by PlainCEValidator, and only with pipeline parallel (see validate.py).
        self.pipeline_validation = False

    def sums(self, pred: torch.Tensor, labels: torch.Tensor, weighted: bool = True):
        """(objective sum, plain CE sum) of logits `pred` for `labels`."""
        V = self.table.vocab_size
        if isinstance(pred, tuple):
            raise TypeError(
                "the model returned loss sums, not logits: it was given labels, but "
                "objective.fused_loss is false"
            )
        if pred.shape[-1] != V:
            raise ValueError(f"logits have {pred.shape[-1]} classes but the target table has {V}")
        check_labels(labels, V)
        rw = row_weights(labels, self.position_gamma) if weighted else None
        return self.kernel(
            pred.reshape(-1, V), labels.reshape(-1), *self.table.kernel_tensors(pred.device), rw
        )

    def __call__(self, pred, labels: torch.Tensor) -> torch.Tensor:
        if self.pipeline_validation:
            return self.sums(pred, labels, weighted=False)[1]
        objective, ce = self.sums(pred, labels)
        _feed(self.meter, ce, labels, objective)
        return objective

    def plain_ce(self) -> PlainCELoss:
        return PlainCELoss(self)


class FusedHeadLoss:
    """pred is the fused head's (objective sum, CE sum): -> the objective sum."""

    def __init__(self, meter=None):
        self.meter = meter

    def __call__(self, pred, labels: torch.Tensor) -> torch.Tensor:
        objective, ce = _head_sums(pred)
        _feed(self.meter, ce, labels, objective)
        return objective

    def plain_ce(self) -> PlainCELoss:
        return PlainCELoss(None)


class PlainCELoss:
    """Validation: the plain CE sum, from logits (through the training loss's kernel and table)
    or from the fused head's sums. Feeds no meter."""

    def __init__(self, logits_loss: TargetLoss | None):
        self.logits_loss = logits_loss

    def __call__(self, pred, labels: torch.Tensor) -> torch.Tensor:
        if self.logits_loss is None:
            return _head_sums(pred)[1]
        return self.logits_loss.sums(pred, labels, weighted=False)[1]


def _head_sums(pred):
    if not isinstance(pred, tuple):
        raise TypeError(
            "objective.fused_loss = true needs the model to return (objective, CE) "
            "sums from its head (labels among the model inputs)"
        )
    return pred


def _feed(meter, ce: torch.Tensor, labels: torch.Tensor, objective: torch.Tensor) -> None:
    if meter is not None:
        meter.add(ce.detach(), (labels != IGNORE_INDEX).sum(), objective.detach())


def build_target_loss(job_config, parallel_dims=None, *, tables: TargetTables, meter, **kwargs):
    """TrainSpec loss builder (tables and meter bound by get_train_spec)."""
    from torchtitan.tools.logging import logger

    del parallel_dims, kwargs  # loss parallel is refused earlier, in config.check_job_config
    spec = job_config.objective
    if spec.kernel == "triton":
        how = " (row passes: Triton kernels)"
    elif compiles_loss(job_config):
        how = " (row passes compiled with torch.compile)"
    else:
        how = ""
    if spec.fused_loss:
        from torchtitan.tools.utils import device_type

        chunk = spec.fused_chunk_tokens
        if chunk is None:
            dim = flavor_args(job_config.model.flavor).dim
            chunk = default_chunk_tokens(torch.device(device_type), dim)
            source = f"the default on {device_type}"
        else:
            source = "objective.fused_chunk_tokens"
        logger.info(
            f"Fused loss: the model's head computes the loss in chunks of {chunk} tokens "
            f"({source}){how}"
        )
        return FusedHeadLoss(meter)
    logger.info(f"Loss: {spec.name} on the model's logits{how}")
    return TargetLoss(
        tables.for_job(job_config),
        position_gamma=spec.position_gamma,
        compile=compiles_loss(job_config),
        backend=job_config.compile.backend,
        kernel=spec.kernel,
        meter=meter,
    )
