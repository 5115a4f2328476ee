"""torchtitan loss adapters over the objectives floor, and the run's loss plan.

torchtitan calls the loss as loss_fn(pred, labels) and normalises the returned sum by the global
token count. Both read the run's LossPlan (objectives/plan.py), built once by `LossPlans`.
`TargetLoss` takes logits; `FusedHeadLoss` takes the (objective sum, CE sum) that the
fused head already computed (model/transformer.py). Both feed the batch's plain CE to a meter for
the training log, and with it the count of bad labels, made on the device: a training step never
waits for the host (the meter's count is refused after the step, titan/step_checks.py).
`PlainCELoss` is validation's loss: plain, unweighted CE whatever the objective.
"""

from __future__ import annotations

import time

import torch

from ..model.flavors import flavor_args
from ..objectives.families import build_target_table, describe_objective
from ..objectives.kernel import IGNORE_INDEX, check_labels
from ..objectives.mechanism import LAYOUT, MechanismTables, mechanism_tables
from ..objectives.plan import LossPlan, build_plan
from ..objectives.table import TargetTable, token_texts


class LossPlans:
    """The run's loss plan, built once per process and setting (the loss and the fused head
    share one) with its target table (built once per table setting: `ObjectiveSpec.target_key`).
    Made by get_train_spec and handed to the hooks that need it."""

    def __init__(self):
        self._texts: dict[tuple, list] = {}
        self._tables: dict[tuple, TargetTable] = {}
        self._mechanism: dict[tuple, MechanismTables] = {}
        self._plans: dict[tuple, LossPlan] = {}
        self._tokenizers: dict[str, object] = {}

    def _tokenizer_for(self, job_config):
        """The job's tokenizer (model.hf_assets_path), built once."""
        from torchtitan.components.tokenizer import build_hf_tokenizer

        key = job_config.model.hf_assets_path
        if key not in self._tokenizers:
            self._tokenizers[key] = build_hf_tokenizer(job_config)
        return self._tokenizers[key]

    def texts_for(self, job_config) -> list[str | None]:
        """The token texts of the job's tokenizer in its model's vocabulary (read once)."""
        vocab_size = flavor_args(job_config.model.flavor).vocab_size
        key = (job_config.model.hf_assets_path, vocab_size)
        if key not in self._texts:
            self._texts[key] = token_texts(self._tokenizer_for(job_config), vocab_size)
        return self._texts[key]

    def document_ids_for(self, job_config) -> tuple[int | None, int | None]:
        """(BOS id, EOS id) of the job's tokenizer, None where it has none: what the loader
        puts around each document."""
        tokenizer = self._tokenizer_for(job_config)
        return tokenizer.bos_id, tokenizer.eos_id

    def mechanism_for(self, job_config) -> MechanismTables:
        """The vocabulary's tables for the validation metrics (objectives/mechanism.py)."""
        key = (job_config.model.hf_assets_path, flavor_args(job_config.model.flavor).vocab_size)
        if key not in self._mechanism:
            self._mechanism[key] = mechanism_tables(self.texts_for(job_config))
        return self._mechanism[key]

    def table_for(self, job_config) -> TargetTable:
        from torchtitan.tools.logging import logger

        spec = job_config.objective.validate()
        vocab_size = flavor_args(job_config.model.flavor).vocab_size
        key = (job_config.model.hf_assets_path, vocab_size, spec.target_key())
        if key not in self._tables:
            start = time.perf_counter()
            texts = self.texts_for(job_config)
            table = self._tables[key] = build_target_table(texts, spec)
            logger.info(
                f"Target table for {describe_objective(spec)}: vocab {table.vocab_size}, "
                f"{table.idx.shape[1]} sparse entries per row, built in "
                f"{time.perf_counter() - start:.2f}s"
            )
        return self._tables[key]

    def for_job(self, job_config) -> LossPlan:
        """The plan of the job's [objective] on torchtitan's device; logged when first built."""
        from torchtitan.tools.logging import logger
        from torchtitan.tools.utils import device_type

        spec = job_config.objective.validate()
        dim = flavor_args(job_config.model.flavor).dim
        key = (
            job_config.model.hf_assets_path,
            job_config.model.flavor,
            tuple(vars(spec).items()),
            compiles_loss(job_config),
            job_config.compile.backend,
            device_type,
            job_config.parallelism.context_parallel_degree,
        )
        if key not in self._plans:
            bos, eos = (None, None)
            if spec.position_start == "document":
                bos, eos = self.document_ids_for(job_config)
            plan = build_plan(
                spec,
                self.table_for(job_config),
                device_type=device_type,
                dim=dim,
                compile=compiles_loss(job_config),
                backend=job_config.compile.backend,
                mechanism=self.mechanism_for(job_config),
                bos_id=bos,
                eos_id=eos,
                window_positions=job_config.parallelism.context_parallel_degree <= 1,
            )
            self._plans[key] = plan
            logger.info(plan.describe())
        return self._plans[key]


def compiles_loss(job_config) -> bool:
    """`compile.components` includes the loss (for the fused head: its chunk kernel)."""
    return job_config.compile.enable and "loss" in job_config.compile.components


class TargetLoss:
    """(logits [..., V], labels [...]) -> the objective summed over tokens (labels != -100)."""

    def __init__(self, plan: LossPlan, meter=None, validation_meter=None):
        self.plan = plan
        self.meter = meter
        self.validation_meter = validation_meter
        # Set only by PlainCEValidator, and only with pipeline parallel (see validate.py).
        self.pipeline_validation = False

    def sums(self, pred: torch.Tensor, labels: torch.Tensor, weighted: bool = True):
        """(objective sum, plain CE sum) of logits `pred` for `labels`."""
        if isinstance(pred, tuple):
            raise TypeError(
                "the model returned loss sums, not logits: it was given labels, but "
                "objective.fused_loss is false"
            )
        # A training step with a meter leaves the labels to the meter's deferred check.
        check = self.meter is None or not weighted
        return self.plan.logits_loss(pred, labels, weighted, check=check)

    def __call__(self, pred, labels: torch.Tensor) -> torch.Tensor:
        if self.pipeline_validation:
            return self.sums(pred, labels, weighted=False)[1]
        objective, ce = self.sums(pred, labels)
        _feed(self.meter, ce, labels, objective, self.plan.vocab_size)
        return objective

    def plain_ce(self) -> PlainCELoss:
        return PlainCELoss(self.plan, self.validation_meter)


class FusedHeadLoss:
    """pred is the fused head's (objective sum, CE sum) for labels of ids in [0, vocab_size):
    -> the objective sum."""

    def __init__(self, vocab_size: int, meter=None):
        self.vocab_size = vocab_size
        self.meter = meter

    def __call__(self, pred, labels: torch.Tensor) -> torch.Tensor:
        objective, ce = _head_sums(pred)
        if self.meter is None:  # no deferred count: refuse bad labels here
            check_labels(labels, self.vocab_size)
        _feed(self.meter, ce, labels, objective, self.vocab_size)
        return objective

    def plain_ce(self) -> PlainCELoss:
        # the head records the validation metrics, and checks the labels, itself (no gradients)
        return PlainCELoss(None)


class PlainCELoss:
    """Validation's loss: the plain CE sum whatever the objective, from the logits or from the
    fused head's sums. With a ValidationMeter the same pass over the logits also gives the
    validation metrics' sums (objectives/mechanism.py), which go to the meter."""

    def __init__(self, plan: LossPlan | None, meter=None):
        self.plan = plan
        self.meter = meter

    def __call__(self, pred, labels: torch.Tensor) -> torch.Tensor:
        if self.plan is None:
            return _head_sums(pred)[1]
        if isinstance(pred, tuple):
            raise TypeError(
                "validation got the head's loss sums, but objective.fused_loss is false"
            )
        if self.meter is None or self.plan.mechanism is None:
            return self.plan.logits_loss(pred, labels, weighted=False)[1]
        stats = self.plan.validation_sums(pred, labels)
        self.meter.add(stats)
        return stats[LAYOUT["ce"]][0].float()


def _head_sums(pred):
    if not isinstance(pred, tuple):
        raise TypeError(
            "objective.fused_loss = true needs the model to return (objective, CE) "
            "sums from its head (labels among the model inputs)"
        )
    return pred


def _feed(meter, ce, labels: torch.Tensor, objective, vocab_size: int) -> None:
    if meter is not None:
        tokens = (labels != IGNORE_INDEX).sum()
        meter.add(ce.detach(), tokens, objective.detach(), (labels, vocab_size))


def build_target_loss(
    job_config, parallel_dims=None, *, plans: LossPlans, meter, validation_meter=None, **kwargs
):
    """TrainSpec loss builder (the plans and the meters bound by get_train_spec)."""
    del parallel_dims, kwargs  # loss parallel is refused earlier, in checks.check_job_config
    plan = plans.for_job(job_config)
    if plan.fused:
        return FusedHeadLoss(plan.vocab_size, meter)
    return TargetLoss(plan, meter, validation_meter)
