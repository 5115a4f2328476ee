"""Training metrics: torchtitan's, plus the batch's plain cross-entropy beside the objective loss.

The arms of a sweep optimise different objectives, so their training losses are not comparable;
their plain CE is. The training loss feeds a `PlainCEMeter` that get_train_spec hands to both the
loss and this processor, which logs it with the same token normalisation as torchtitan's
`global_avg_loss` (global sum / global token count).
"""

from __future__ import annotations

import json
import math
import os
import sys

import torch
from torchtitan.components.metrics import MetricsProcessor
from torchtitan.distributed import utils as dist_utils
from torchtitan.tools.logging import logger

from .checkpoints import ChecksumRecorder
from .run_folder import METRICS_LOG, RUN_CONFIG, drop_torn_line, run_record, write_json


class PlainCEMeter:
    """Sums plain CE, the objective and token counts over the micro-batches of one step."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.ce_sum: torch.Tensor | None = None
        self.objective_sum: torch.Tensor | None = None
        self.tokens: torch.Tensor | None = None

    def add(self, ce_sum: torch.Tensor, tokens: torch.Tensor, objective_sum=None) -> None:
        self.ce_sum = ce_sum if self.ce_sum is None else self.ce_sum + ce_sum
        self.tokens = tokens if self.tokens is None else self.tokens + tokens
        if objective_sum is not None:
            self.objective_sum = (
                objective_sum if self.objective_sum is None else self.objective_sum + objective_sum
            )

    def check_finite(self, step: int) -> None:
        """Raise if this step's loss is NaN or infinite (one host sync per step)."""
        sums = [t for t in (self.objective_sum, self.ce_sum) if t is not None]
        if sums and not bool(torch.isfinite(torch.stack([t.float() for t in sums])).all()):
            raise FloatingPointError(
                f"step {step}: the training loss is not finite (objective sum "
                f"{_value(self.objective_sum)}, plain CE sum {_value(self.ce_sum)}). The run stops "
                f"here, before any checkpoint of this step is saved; resume from the last "
                f"checkpoint, for example with a lower optimizer.lr or training.max_norm."
            )


def _value(t) -> str:
    return "-" if t is None else f"{float(t):.6g}"


class PrefixMetricsProcessor(MetricsProcessor):
    """Also writes, on the logging rank, the job config and one JSON line per logged step into the
    dump folder: the records `python -m prefix_titan.report` reads."""

    def __init__(self, job_config, parallel_dims, meter: PlainCEMeter, tag=None):
        super().__init__(job_config, parallel_dims, tag)
        if not sys.stdout.isatty():  # colour codes only on a terminal, never in a log file
            from torchtitan.tools.utils import NoColor

            self.color = NoColor()
        self.meter = meter
        ckpt = job_config.checkpoint
        self.checksums = (
            ChecksumRecorder(
                os.path.join(job_config.job.dump_folder, ckpt.folder),
                torch.distributed.get_rank() if torch.distributed.is_initialized() else 0,
            )
            if ckpt.enable
            else None
        )
        self._record = _is_logging_rank(job_config, parallel_dims)
        if self._record:
            os.makedirs(job_config.job.dump_folder, exist_ok=True)
            write_json(os.path.join(job_config.job.dump_folder, RUN_CONFIG), run_record(job_config))
            drop_torn_line(os.path.join(job_config.job.dump_folder, METRICS_LOG))

    def _append(self, row: dict) -> None:
        if self._record:
            with open(os.path.join(self.job_config.job.dump_folder, METRICS_LOG), "a") as f:
                f.write(json.dumps(row) + "\n")

    def should_log(self, step: int) -> bool:
        # The trainer asks once per step, after the step's forward/backward: a step that is not
        # logged drops its CE so that the logged value covers exactly the logged step's batch.
        # It is also the first hook after the previous step's checkpoint save: record its checksums.
        if self.checksums is not None:
            self.checksums.record_pending()
        self.meter.check_finite(step)  # before the trainer can save this step's checkpoint
        self.check_finite_grads(step)
        should = super().should_log(step)
        if not should:
            self.meter.reset()
        return should

    def check_finite_grads(self, step: int) -> None:
        """Raise if a gradient of this step holds NaN or inf: the optimizer has already applied it,
        so the weights are no longer finite, and this step's checkpoint must not be saved. One
        norm over this rank's gradient shards."""
        grads = []
        for model in getattr(self, "model_parts", None) or []:
            for p in model.parameters():
                if p.grad is not None:
                    g = p.grad
                    grads.append(g.to_local() if hasattr(g, "to_local") else g)
        if grads and not math.isfinite(float(torch.nn.utils.get_total_norm(grads, foreach=True))):
            raise FloatingPointError(
                f"step {step}: a gradient is not finite (NaN or inf), and the optimizer has "
                f"applied it. The run stops here, before any checkpoint of this step is saved; "
                f"resume from the last checkpoint, for example with a lower optimizer.lr or "
                f"training.max_norm."
            )

    def close(self) -> None:
        if self.checksums is not None:
            self.checksums.record_pending()  # the last step's checkpoint
        super().close()

    def log(self, step, global_avg_loss, global_max_loss, grad_norm, extra_metrics=None):
        if not math.isfinite(float(grad_norm)):
            raise FloatingPointError(
                f"step {step}: the gradient norm is {float(grad_norm)}. The run stops here, "
                f"before any checkpoint of this step is saved; resume from the last checkpoint."
            )
        extra = dict(extra_metrics or {})
        meter = self.meter
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
        self._append(
            {
                "step": step,
                "loss": global_avg_loss,
                "plain_ce": extra.get("loss_metrics/plain_ce"),
                "lr": extra.get("lr"),
            }
        )
        if "loss_metrics/plain_ce" in extra:
            logger.info(f"step: {step:2}  plain_ce: {extra['loss_metrics/plain_ce']:8.5f}")

    def log_validation(self, loss: float, step: int, extra_metrics=None):
        # The validator reports plain CE (see validate.py); perplexity is its exponential.
        extra = {
            "validation_metrics/perplexity": math.exp(min(loss, 80.0)),
            **(extra_metrics or {}),
        }
        super().log_validation(loss, step, extra_metrics=extra)
        self._append({"step": step, "validation_plain_ce": loss})
        logger.info(
            f"validate step: {step:2}  plain_ce: {loss:7.4f}  perplexity: {math.exp(min(loss, 80.0)):9.3f}"
        )


def _is_logging_rank(job_config, parallel_dims) -> bool:
    """The rank torchtitan logs metrics on (rank 0, or the last pipeline stage's first rank)."""
    from torchtitan.components.metrics import _get_metrics_rank

    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    return rank == _get_metrics_rank(parallel_dims, job_config)


def build_prefix_metrics_processor(
    job_config, parallel_dims, model_args=None, tag=None, *, meter: PlainCEMeter
):
    """TrainSpec metrics builder (the meter bound by get_train_spec, shared with the loss)."""
    meter.reset()
    return PrefixMetricsProcessor(job_config, parallel_dims, meter, tag)
