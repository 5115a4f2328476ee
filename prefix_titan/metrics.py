"""Training metrics: torchtitan's, plus the batch's plain cross-entropy beside the objective loss.

The arms of a sweep optimise different objectives, so their training losses are not comparable;
their plain CE is. The loss function feeds `TRAIN_CE_METER`; the processor logs it with the same
token normalisation as torchtitan's `global_avg_loss` (global sum / global token count).
"""

from __future__ import annotations

import math

import torch
from torchtitan.components.metrics import MetricsProcessor
from torchtitan.distributed import utils as dist_utils
from torchtitan.tools.logging import logger


class PlainCEMeter:
    """Sums plain CE and token counts over the micro-batches of one optimizer step."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.ce_sum: torch.Tensor | None = None
        self.tokens: torch.Tensor | None = None

    def add(self, ce_sum: torch.Tensor, tokens: torch.Tensor) -> None:
        self.ce_sum = ce_sum if self.ce_sum is None else self.ce_sum + ce_sum
        self.tokens = tokens if self.tokens is None else self.tokens + tokens


# One trainer per process: the training loss writes here, the metrics processor reads.
TRAIN_CE_METER = PlainCEMeter()


class PrefixMetricsProcessor(MetricsProcessor):
    def should_log(self, step: int) -> bool:
        # The trainer asks once per step, after the step's forward/backward: a step that is not
        # logged drops its CE so that the logged value covers exactly the logged step's batch.
        should = super().should_log(step)
        if not should:
            TRAIN_CE_METER.reset()
        return should

    def log(self, step, global_avg_loss, global_max_loss, grad_norm, extra_metrics=None):
        extra = dict(extra_metrics or {})
        meter = TRAIN_CE_METER
        if meter.ce_sum is not None:
            mesh = self.parallel_dims.get_optional_mesh("loss")
            mesh = mesh if self.parallel_dims.dp_cp_enabled else None
            ce_sum = dist_utils.dist_sum(meter.ce_sum.float(), mesh)
            tokens = dist_utils.dist_sum(meter.tokens.float(), mesh)
            if tokens > 0:
                extra["loss_metrics/plain_ce"] = ce_sum / tokens
                extra["loss_metrics/plain_ppl"] = math.exp(min(ce_sum / tokens, 80.0))
        meter.reset()
        super().log(step, global_avg_loss, global_max_loss, grad_norm, extra_metrics=extra)
        if "loss_metrics/plain_ce" in extra:
            logger.info(f"step: {step:2}  plain_ce: {extra['loss_metrics/plain_ce']:8.5f}")

    def log_validation(self, loss: float, step: int, extra_metrics=None):
        # The validator reports plain CE (see validate.py); perplexity is its exponential.
        extra = {"validation_metrics/perplexity": math.exp(min(loss, 80.0)), **(extra_metrics or {})}
        super().log_validation(loss, step, extra_metrics=extra)
        logger.info(f"validate step: {step:2}  plain_ce: {loss:7.4f}  perplexity: {math.exp(min(loss, 80.0)):9.3f}")


def build_prefix_metrics_processor(job_config, parallel_dims, model_args=None, tag=None):
    TRAIN_CE_METER.reset()
    return PrefixMetricsProcessor(job_config, parallel_dims, tag)
