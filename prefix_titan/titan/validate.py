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

    validated_step: int | None = None
    """The step validated before its save (validate_before_save), which torchtitan's own call
    after the save then skips"""

    def due(self, step: int) -> bool:
        """torchtitan's steps (1 and every validation.freq) and the last one: the final model is
        validated whatever the frequency (the report's validation metrics end with it)."""
        return super().should_validate(step) or step == self.job_config.training.steps

    def validate_before_save(self, model_parts, step: int) -> None:
        """Validate a step that is due between its optimizer update and its save (the metrics
        processor's hook there: step_checks.py). torchtitan saves a step, then validates it: a
        run stopped in between left that step's checkpoint without its validation row, and its
        resume, starting at the next step, never wrote it (one run short of a row that the others
        have, a sweep's report left validation out for every arm). Validated first, a saved step
        has its row; a run stopped while validating resumes from the step saved before and
        trains this one again."""
        if self.due(step):
            self.validate(model_parts, step)
            _reshard(model_parts)
            self.validated_step = step

    def should_validate(self, step: int) -> bool:
        """torchtitan's question after the step's save: no, the step was validated before it."""
        return self.due(step) and step != self.validated_step

    def validate(self, model_parts, step: int) -> None:
        if self.pp_schedule is None:
            return super().validate(model_parts, step)
        # torchtitan 0.2.2: a pipeline schedule holds the training loss and calls it itself, so
        # during validation that loss is told to return plain CE instead (the one mode switch).
        self.training_loss.pipeline_validation = True
        try:
            super().validate(model_parts, step)
        finally:
            self.training_loss.pipeline_validation = False


def _reshard(model_parts) -> None:
    """Shard again the FSDP2 modules that a forward without backward leaves gathered (torchtitan
    does not reshard the last blocks after forward, as backward gathers them at once): the save
    that follows reads the sharded parameters the optimizer holds."""
    from torch.distributed.fsdp import FSDPModule

    for part in model_parts:
        for module in part.modules():
            if isinstance(module, FSDPModule):
                module.reshard()


def build_plain_ce_validator(**kwargs) -> PlainCEValidator:
    return PlainCEValidator(**kwargs)
