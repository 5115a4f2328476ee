"""Validation that reports plain cross-entropy and perplexity whatever the training objective.

torchtitan's validator evaluates the loss it is given; the arms of a sweep train on different
objectives, so validating with the training loss would make their numbers incomparable. This
validator is torchtitan's own, given the training loss's plain-CE counterpart and our validation
datasets.
"""

from __future__ import annotations

import contextlib

import torchtitan.components.validate as titan_validate
from torchtitan.components.validate import Validator

from .datasets import build_prefix_validation_dataloader
from .refusal import refusing


@contextlib.contextmanager
def _prefix_validation_loader():
    """torchtitan 0.2.2's Validator.__init__ builds its dataloader by calling the module-level
    `build_text_validation_dataloader`, with no way to pass another builder. For that call only,
    the name points at ours, which takes the same arguments (and reads our token datasets)."""
    builtin = titan_validate.build_text_validation_dataloader
    titan_validate.build_text_validation_dataloader = refusing(build_prefix_validation_dataloader)
    try:
        yield
    finally:
        titan_validate.build_text_validation_dataloader = builtin


class PlainCEValidator(Validator):
    def __init__(self, *, loss_fn, pp_schedule=None, **kwargs):
        if not hasattr(loss_fn, "plain_ce"):
            raise TypeError(f"PlainCEValidator needs a prefix_titan loss; got {type(loss_fn)}")
        self.training_loss = loss_fn
        with _prefix_validation_loader():
            super().__init__(loss_fn=loss_fn.plain_ce(), pp_schedule=pp_schedule, **kwargs)
        # the metrics processor validates a run resumed at its final step (metrics.py, close)
        if hasattr(self.metrics_processor, "validator"):
            self.metrics_processor.validator = self

    def should_validate(self, step: int) -> bool:
        """torchtitan's steps (1 and every validation.freq) and the last one: the final model is
        validated whatever the frequency (the report's validation metrics end with it)."""
        return super().should_validate(step) or step == self.job_config.training.steps

    def validate(self, model_parts, step: int) -> None:
        # torchtitan saves a step, then validates it: the save's checksums are recorded first, so
        # that a run stopped while validating its last step resumes from that step, verified
        checks = getattr(self.metrics_processor, "step_checks", None)
        if checks is not None:
            checks.record_checksums()
        if self.pp_schedule is None:
            return super().validate(model_parts, step)
        # torchtitan 0.2.2: a pipeline schedule holds the training loss and calls it itself, so
        # during validation that loss is told to return plain CE instead (the one mode switch).
        self.training_loss.pipeline_validation = True
        try:
            super().validate(model_parts, step)
        finally:
            self.training_loss.pipeline_validation = False


def build_plain_ce_validator(**kwargs) -> PlainCEValidator:
    return PlainCEValidator(**kwargs)
