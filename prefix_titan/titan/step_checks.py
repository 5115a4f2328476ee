"""The checks between a training step's optimizer update and torchtitan's save of that step.

torchtitan 0.2.2's trainer runs, per step: forward/backward, the optimizer update, then
`metrics_processor.should_log(step)`, then the checkpoint save. That call is the only hook after
the update and before the save, so the metrics processor hands it to `StepChecks.after_update`,
which:

1. records the checksums of the checkpoint step saved since the last call (checkpoints.py), and
2. stops the run, before any checkpoint of that step is saved, when the step's batch held a
   label that is neither a token id nor ignored (ValueError naming them: the loss counts them
   on the device, so the step itself never waits for the host, and scores those rows as
   ignored) or when its loss, a gradient or an updated weight is not finite (FloatingPointError
   naming the step), in two host syncs: the step's sums, then the gradients' and weights' norms.
"""

from __future__ import annotations

import math
import os

import torch
from torchtitan.tools.logging import logger

from ..objectives.kernel import LabelError
from ..objectives.table import indexed
from ..runs.checkpoints import ChecksumRecorder, purge_older_steps

RESUME_ADVICE = (
    "The run stops here, before any checkpoint of this step is saved: the steps saved before it "
    "are intact. A resume keeps the run's settings (its record refuses others) and repeats the "
    "same batches; to train with others (a lower optimizer.lr or training.max_norm, other data), "
    "start a run in a fresh job.dump_folder."
)


class StepChecks:
    """One rank's checks after each optimizer update (run state: made by the metrics builder)."""

    def __init__(self, job_config, meter):
        ckpt = job_config.checkpoint
        self.rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        self.folder = os.path.join(job_config.job.dump_folder, ckpt.folder)
        self.checksums = ChecksumRecorder(self.folder, self.rank) if ckpt.enable else None
        self.keep = ckpt.keep_latest_k if ckpt.enable else 0
        self.meter = meter

    def after_update(self, step: int, model_parts) -> None:
        """Record the previous save's checksums, then refuse bad labels, a non-finite loss, a
        non-finite gradient or a non-finite updated weight."""
        self.record_checksums()
        check_step_sums(self.meter, step)
        check_finite_update(model_parts, step)

    def record_checksums(self) -> None:
        """Checksums of every checkpoint step saved since the last call (and, at the end of the
        run, of the last one)."""
        if self.checksums is not None:
            self.checksums.record_pending()

    def finish(self) -> None:
        """At the end of the run (after torchtitan's checkpointer has closed): the last step's
        checksums, then, on rank 0, the older steps beyond `checkpoint.keep_latest_k` deleted,
        which torchtitan leaves one too many (it purges after every save but the last)."""
        self.record_checksums()
        if self.keep > 0 and self.rank == 0:
            for step_dir in purge_older_steps(self.folder, self.keep):
                logger.info(
                    f"Deleted {step_dir}: checkpoint.keep_latest_k = {self.keep} keeps the newest "
                    f"{self.keep} steps"
                )


def _value(t) -> str:
    return "-" if t is None else f"{float(t):.6g}"


def check_step_sums(meter, step: int) -> None:
    """Raise if this step's batch held bad labels (the meter's device-side count, summed over
    the ranks so that every rank stops) or its objective or plain CE sum is NaN or infinite on
    any rank (likewise joined): one host sync per step, for both."""
    sums = [t for t in (meter.objective_sum, meter.ce_sum) if t is not None]
    bad = bad_labels_of_all_ranks(getattr(meter, "bad_labels", None), sums)
    loss = loss_not_finite_on_any_rank(sums)
    parts = [t.double().reshape(1) for t in sums] + ([] if bad is None else [bad.double()])
    parts += [] if loss is None else [loss.double()]
    if not parts:
        return
    values = torch.cat(parts).tolist()  # the one host sync
    if bad is not None and values[len(sums)] > 0:
        count, low, high = (int(v) for v in values[len(sums) : len(sums) + 3])
        raise LabelError(
            f"step {step}: {count} label(s) of the batch were neither a token id of the model's "
            f"vocabulary nor -100 (ignored): smallest {low}, largest {high}. Labels must be token "
            f"ids in [0, {getattr(meter, 'vocab_size', None) or 'vocab_size'}) or -100: check the "
            f"dataset's tokenizer against the model's vocab_size. {RESUME_ADVICE}"
        )
    here = not all(math.isfinite(v) for v in values[: len(sums)])
    if here or (loss is not None and values[-1] > 0):  # (another rank's: every rank stops)
        raise FloatingPointError(
            f"step {step}: the training loss is not finite (objective sum "
            f"{_value(meter.objective_sum)}, plain CE sum {_value(meter.ce_sum)}). {RESUME_ADVICE}"
        )


FAR = torch.iinfo(torch.int64).max  # beyond any label: the smallest and largest of none


def _device(like: list) -> torch.device:
    return like[0].device if like else indexed("cuda" if torch.cuda.is_available() else "cpu")


def joined(flags: torch.Tensor) -> torch.Tensor:
    """`flags` at their largest over every rank, in place (each rank calls this at the same
    point: a collective); themselves without torch.distributed."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    return flags


def on_any_rank(found: bool) -> bool:
    """Whether `found` holds on any rank (a collective, as `joined`)."""
    return bool(joined(torch.tensor([int(found)], device=_device([]))).item())


def loss_not_finite_on_any_rank(sums: list) -> torch.Tensor | None:
    """1 where a rank's loss sums hold NaN or inf, on every rank (each calls this once per step;
    a pipeline's first stages have no loss and join with 0), so that all stop together; None
    without torch.distributed (the sums themselves are read)."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return None
    flag = torch.zeros(1, dtype=torch.int64, device=_device(sums))
    for t in sums:
        flag = torch.maximum(flag, (~torch.isfinite(t.reshape(1))).long())
    return joined(flag)


def bad_labels_of_all_ranks(bad, like: list) -> torch.Tensor | None:
    """The meter's [count, smallest, largest] of bad labels over every rank (each calls this
    once per step; one that saw none, or no labels at all, joins with zeros), so that a bad label
    on one rank stops every rank, not one while the others wait in the checkpoint's collectives.
    Without torch.distributed: `bad` itself."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return bad
    if bad is None:
        bad = torch.tensor([0, FAR, -FAR], device=_device(like))
    count = bad[:1].clone()
    extremes = torch.stack([-bad[1], bad[2]])
    dist.all_reduce(count)
    dist.all_reduce(extremes, op=dist.ReduceOp.MAX)
    return torch.cat([count, torch.stack([-extremes[0], extremes[1]])])


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if hasattr(t, "to_local") else t


def check_finite_update(model_parts, step: int) -> None:
    """Raise if a gradient of this step holds NaN or inf (the optimizer has already applied it),
    or, with finite gradients, an updated weight does (the update itself made it: an lr far out
    of range): either way this step's checkpoint must not be saved. The largest magnitude of
    this rank's gradient and weight shards (a max: no sum of squares to overflow on large finite
    weights), each rank's findings joined over every rank (so that all stop together, none left
    waiting in the save's collectives), read in one host sync."""
    grads, weights = [], []
    for model in model_parts or []:
        for p in model.parameters():
            weights.append(_local(p.detach()))
            if p.grad is not None:
                grads.append(_local(p.grad))
    device = _device(weights)  # (a rank without weights still joins)
    # an empty shard (FSDP2 over more ranks than a parameter has rows) has no largest magnitude
    grads, weights = ([t for t in x if t.numel()] for x in (grads, weights))
    flags = [
        ~torch.isfinite(torch.nn.utils.get_total_norm(x, math.inf, foreach=True)).reshape(1)
        if x
        else torch.zeros(1, dtype=torch.bool, device=device)
        for x in (grads, weights)
    ]
    bad_grad, bad_weight = joined(torch.cat(flags).to(torch.int32)).tolist()  # the one host sync
    if bad_grad:
        raise FloatingPointError(
            f"step {step}: a gradient is not finite (NaN or inf), and the optimizer has applied "
            f"it. {RESUME_ADVICE}"
        )
    if bad_weight:
        raise FloatingPointError(
            f"step {step}: a weight is not finite (NaN or inf) after the optimizer's update, "
            "though the loss and the gradients were: the update made it (optimizer.lr out of "
            f"range). {RESUME_ADVICE}"
        )
