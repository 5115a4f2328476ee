"""Validation that reports plain cross-entropy and perplexity whatever the training objective.

torchtitan's validator evaluates the training loss function; the arms of a sweep train on
different objectives, so that would make their validation numbers incomparable. This validator
switches the training loss into plain-CE mode (which also covers pipeline-parallel schedules,
where the loss lives inside the schedule) and reads our validation datasets.
"""

from __future__ import annotations

from torchtitan.components.validate import Validator
from torchtitan.tools.logging import logger

from .data import build_prefix_validation_dataloader
from .loss import TargetLoss


class PlainCEValidator(Validator):
    def __init__(self, job_config, dp_world_size, dp_rank, tokenizer, parallel_dims, loss_fn,
                 validation_context, maybe_enable_amp, metrics_processor, pp_schedule=None,
                 pp_has_first_stage=None, pp_has_last_stage=None):
        if not isinstance(loss_fn, TargetLoss):
            raise TypeError(f"PlainCEValidator needs the prefix_titan TargetLoss; got {type(loss_fn)}")
        # Same attributes as torchtitan's Validator, but our dataloader (the parent's would build
        # torchtitan's own text loader).
        self.job_config = job_config
        self.tokenizer = tokenizer
        self.parallel_dims = parallel_dims
        self.loss_fn = loss_fn
        self.validation_dataloader = build_prefix_validation_dataloader(
            dp_world_size, dp_rank, tokenizer, job_config,
            infinite=job_config.validation.steps != -1,
        )
        self.validation_context = validation_context
        self.maybe_enable_amp = maybe_enable_amp
        self.metrics_processor = metrics_processor
        self.pp_schedule = pp_schedule
        self.pp_has_first_stage = pp_has_first_stage
        self.pp_has_last_stage = pp_has_last_stage
        if job_config.validation.steps == -1:
            logger.warning("validation.steps = -1 reads the whole validation set at every validation")

    def validate(self, model_parts, step: int) -> None:
        with self.loss_fn.reporting_plain_ce():
            super().validate(model_parts, step)


def build_plain_ce_validator(**kwargs) -> PlainCEValidator:
    return PlainCEValidator(**kwargs)
