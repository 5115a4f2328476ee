"""Training metrics: torchtitan's, plus the batch's plain cross-entropy beside the objective loss,
and at every validation the validation metrics of objectives/mechanism.py.

The arms of a sweep optimise different objectives, so their training losses are not comparable;
their plain CE is. The training loss feeds a `PlainCEMeter` that get_train_spec hands to both the
loss and this processor, which logs it with the same token normalisation as torchtitan's
`global_avg_loss` (global sum / global token count). Validation's loss (or the fused head) feeds a
`ValidationMeter`; the processor sums it over the data-parallel ranks when torchtitan logs the
validation, and writes its metrics to the metrics log and TensorBoard.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

import torch
from torchtitan.components.metrics import MetricsProcessor
from torchtitan.distributed import utils as dist_utils
from torchtitan.tools.logging import logger

from ..objectives.families import family_source
from ..objectives.kernel import bad_labels
from ..objectives.mechanism import SIZE, mechanism_metrics
from ..runs.checkpoints import complete_steps
from ..runs.folder import (
    DATA_FILES,
    LAUNCH_PLAN_ENV,
    METRICS_LOG,
    PLACEMENT,
    RESOLVED,
    RUN_CONFIG,
    STARTS,
    TARGET_TABLE,
    append_line,
    drop_torn_line,
    read_log,
    run_record,
    step_number,
    validated,
    write_json,
)
from .checks import check_table_unchanged, data_files, run_execution
from .refusal import refuse
from .step_checks import FAR, RESUME_ADVICE, StepChecks, on_any_rank


class PlainCEMeter:
    """Sums plain CE, the objective and token counts over the micro-batches of one step, and
    keeps, on the device, how many labels were neither a token id nor ignored (with the
    smallest and largest of them) for the step checks to refuse."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.ce_sum: torch.Tensor | None = None
        self.objective_sum: torch.Tensor | None = None
        self.tokens: torch.Tensor | None = None
        self.bad_labels: torch.Tensor | None = None
        """int64 [3] on the device: count, smallest and largest bad label (None: none fed)"""
        self.vocab_size: int | None = None

    def add(self, ce_sum: torch.Tensor, tokens: torch.Tensor, objective_sum=None, labels=None):
        """Add a micro-batch's sums; `labels` = (labels, vocab_size) adds its labels that are
        neither an id in [0, vocab_size) nor -100 to the bad-label count (no host sync)."""
        self.ce_sum = ce_sum if self.ce_sum is None else self.ce_sum + ce_sum
        self.tokens = tokens if self.tokens is None else self.tokens + tokens
        if objective_sum is not None:
            self.objective_sum = (
                objective_sum if self.objective_sum is None else self.objective_sum + objective_sum
            )
        if labels is not None:
            self._add_bad(*labels)

    def _add_bad(self, labels: torch.Tensor, vocab_size: int) -> None:
        self.vocab_size = vocab_size
        if labels.numel() == 0:
            return
        bad = bad_labels(labels, vocab_size)
        found = torch.stack(
            [
                bad.sum(),
                torch.where(bad, labels.long(), FAR).min(),
                torch.where(bad, labels.long(), -FAR).max(),
            ]
        )
        if self.bad_labels is not None:
            old = self.bad_labels
            found = torch.stack(
                [
                    old[0] + found[0],
                    torch.minimum(old[1], found[1]),
                    torch.maximum(old[2], found[2]),
                ]
            )
        self.bad_labels = found


class ValidationMeter:
    """Sums the validation metrics (objectives/mechanism.py LAYOUT vectors) over the batches of
    one validation pass on one rank."""

    def __init__(self):
        self.sums: torch.Tensor | None = None

    def add(self, stats: torch.Tensor) -> None:
        self.sums = stats.clone() if self.sums is None else self.sums + stats

    def sink(self, device) -> torch.Tensor:
        """The running sums, for a fused head to add into in place."""
        if self.sums is None:
            self.sums = torch.zeros(SIZE, dtype=torch.float64, device=device)
        return self.sums

    def take(self, mesh=None, objective: bool = True) -> dict[str, float]:
        """The pass's metrics, its sums added over `mesh` (a collective: every rank calls it);
        then starts afresh. Empty when nothing was measured."""
        sums, self.sums = self.sums, None
        if mesh is None:
            return {} if sums is None else mechanism_metrics(sums, objective)
        if sums is None:  # a rank that measured nothing still joins the sum
            from torchtitan.tools.utils import device_type

            sums = torch.zeros(SIZE, dtype=torch.float64, device=device_type)
        from torch.distributed import _functional_collectives as funcol

        return mechanism_metrics(funcol.all_reduce(sums, reduceOp="sum", group=mesh), objective)


def saved_steps(folder: str, checkpoint) -> list[str]:
    """The complete checkpoint steps a run starting in `folder` finds (`checkpoint`: the job's
    [checkpoint]; none where checkpoints are off), oldest first."""
    return complete_steps(os.path.join(folder, checkpoint.folder)) if checkpoint.enable else []


def start_record(
    folder: str, checkpoint, saved: list[str], family: dict | None = None
) -> list[dict]:
    """The run's starts (STARTS) with this one added: those its record in `folder` holds (none
    where it has no record, or one without them), then this start's time (UTC), host, newest
    complete checkpoint of `saved` (saved_steps: what a resume loads unless
    checkpoint.load_step names another, also kept), the versions of Python, torch,
    torchtitan and this package it runs, for a family named by import path, `family`
    (families.family_source: its source file and that file's sha256), and for a start by a
    sweep launch, the sha256 of the plan it registered (LAUNCH_PLAN_ENV)."""
    import datetime
    import platform
    import socket
    from importlib.metadata import PackageNotFoundError, version

    earlier = _earlier_record(folder).get(STARTS)
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("torchtitan", "prefix_titan"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:  # (run from a checkout without installing it)
            versions[name] = None
    this = {
        "at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "newest_checkpoint": step_number(saved[-1]) if saved else None,
        "load_step": checkpoint.load_step if checkpoint.load_step >= 0 else None,
        **versions,
    }
    if family is not None:
        this["family_source"] = family
    if plan := os.environ.get(LAUNCH_PLAN_ENV):  # started by a sweep launch, under this plan
        this["plan_sha256"] = plan
    return [*(earlier if isinstance(earlier, list) else []), this]


def _earlier_record(folder: str) -> dict:
    """The run record (RUN_CONFIG) in `folder` before this start rewrites it: {} where there is
    none, or it is damaged (check_resume says so)."""
    try:
        with open(os.path.join(folder, RUN_CONFIG)) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _recorded_log_freq(folder: str) -> int:
    """The metrics.log_freq the run's record in `folder` was trained with (a resume may change
    it), 1 where there is none."""
    freq = (_earlier_record(folder).get("metrics") or {}).get("log_freq")
    return freq if isinstance(freq, int) and freq > 0 else 1


def lost_log(folder: str, saved: list[str], log_freq: int = 1) -> str | None:
    """What a run starting in `folder` says where its metrics log is gone but checkpoints are
    there (`saved`: saved_steps): the steps before its resume are not logged; or where the log
    ends before the newest checkpoint's step (cut short, or an older copy put back: each step
    logged, every `log_freq`-th, appends its row before that step is saved). None where nothing
    is lost."""
    log = os.path.join(folder, METRICS_LOG)
    # (step-0: a seed checkpoint, --checkpoint.create_seed_checkpoint, which trained nothing)
    saved = [s for s in saved if step_number(s) != 0]
    if not saved:
        return None
    if os.path.exists(log):
        newest = step_number(saved[-1])
        due = max(newest - newest % max(log_freq, 1), 1)  # the last step logged by then
        try:
            logged = [r["step"] for r in read_log(log) if isinstance(r.get("step"), int)]
        except (OSError, ValueError):  # (damage in the middle: the report names the line)
            return None
        if logged and max(logged) >= due:
            return None
        ends = f"ends at step {max(logged)}" if logged else "holds no row"
        return (
            f"{log} {ends}, but checkpoints go to {os.path.basename(saved[-1])}, whose row (step "
            f"{due}) every run logs before saving it: the rows after that are gone (the log cut "
            "short, or an older copy put back). The run goes on and appends from the step it "
            "resumes at; restore the file from a copy to keep them (the report reads its "
            "validation rows)"
        )
    return (
        f"{log} is not there, but checkpoints are ({os.path.basename(saved[-1])} the newest): "
        "the metrics of the steps trained before this resume are gone, and the log holds those "
        "from the step it resumes at on (restore the file from a copy to keep them; the report "
        "reads its validation rows)"
    )


class PrefixMetricsProcessor(MetricsProcessor):
    """Also writes, on the logging rank, the job config and one JSON line per logged step into the
    dump folder: the records `python -m prefix_titan.report` reads."""

    def __init__(
        self,
        job_config,
        parallel_dims,
        meter: PlainCEMeter,
        tag=None,
        validation_meter=None,
        table_sha256: str | None = None,
    ):
        """`table_sha256`: the digest of the run's target table, recorded (TARGET_TABLE)."""
        super().__init__(job_config, parallel_dims, tag)
        self.validation_meter = validation_meter
        self.validator = None
        """The run's validator where validation is on (set by it: validate.py)"""
        self.trained = False
        """Whether this process trained a step"""
        if not sys.stdout.isatty():  # colour codes only on a terminal, never in a log file
            from torchtitan.tools.utils import NoColor

            self.color = NoColor()
        self.meter = meter
        self.step_checks = StepChecks(job_config, meter)
        self._record = _is_logging_rank(job_config, parallel_dims)
        if self._record:
            os.makedirs(job_config.job.dump_folder, exist_ok=True)
            record = run_record(job_config)
            # the ranks and degrees torchtitan resolved: they decide the initial weights drawn
            # for a seed, so the report pairs only runs placed alike (runs.unplaced)
            record[PLACEMENT] = {
                "ranks": parallel_dims.world_size,
                **{
                    d: getattr(parallel_dims, d)
                    for d in ("dp_replicate", "dp_shard", "cp", "tp", "pp")
                },
            }
            record[DATA_FILES] = data_files(job_config)
            record[RESOLVED] = run_execution(job_config)
            if table_sha256 is not None:
                record[TARGET_TABLE] = table_sha256
            folder, checkpoint = job_config.job.dump_folder, job_config.checkpoint
            saved = saved_steps(folder, checkpoint)
            family = family_source(job_config.objective.name)
            freq = max(job_config.metrics.log_freq, _recorded_log_freq(folder))
            record[STARTS] = start_record(folder, checkpoint, saved, family)
            write_json(os.path.join(folder, RUN_CONFIG), record)
            if said := lost_log(folder, saved, freq):
                logger.warning(said)
            drop_torn_line(os.path.join(job_config.job.dump_folder, METRICS_LOG))

    def _append(self, row: dict) -> None:
        if self._record:
            append_line(os.path.join(self.job_config.job.dump_folder, METRICS_LOG), json.dumps(row))

    def should_log(self, step: int) -> bool:
        # torchtitan asks once per step, after the optimizer update and before the step's save:
        # the step checks run here (step_checks.py), then the step's validation where one is due
        # (validate.py: before the save). A step that is not logged drops its CE so
        # that the logged value covers exactly the logged step's batch.
        self.trained = True
        model_parts = getattr(self, "model_parts", None)
        self.step_checks.after_update(step, model_parts)
        if self.validator is not None:  # (set where validation is on)
            self._validate_apart(model_parts, step)
        should = super().should_log(step)
        if not should:
            self.meter.reset()
        return should

    def _validate_apart(self, model_parts, step: int) -> None:
        """The step's validation (validate_before_save), counted and timed apart from training.
        torchtitan's log_validation divides the tokens counted since the last log by the time
        since it, then starts both again: run before the step's training log, it gave validation
        the training tokens and left that log none (tps 0 on every validated step). Validation
        now sees its own tokens and time, and the training log its own, validation's time left
        out of it."""
        tokens, since = self.ntokens_since_last_log, self.time_last_log
        start = time.perf_counter()
        self.ntokens_since_last_log, self.time_last_log = 0, start
        try:
            self.validator.validate_before_save(model_parts, step)
        finally:
            self.ntokens_since_last_log = tokens
            self.time_last_log = since + (time.perf_counter() - start)

    def close(self) -> None:
        if sys.exc_info()[0] is None:  # torchtitan closes the trainer after a failure too
            self._validate_final_resume()
        self.step_checks.finish()  # the last step's checkpoint: checksums, then keep_latest_k
        super().close()

    def _validate_final_resume(self) -> None:
        """A run resumed at its final step trains nothing, so torchtitan validates nothing: the
        final step is validated here where the metrics log holds no validation row of it (a run
        saved, then stopped while validating its last step, as runs were before a step was
        validated before its save, gets its row; a finished run started again, by hand or by a
        second launch of its sweep, adds none)."""
        job = self.job_config
        if self.trained or self.validator is None or not job.validation.enable:
            return
        if not job.checkpoint.enable or job.checkpoint.load_step != -1:
            return
        done = complete_steps(os.path.join(job.job.dump_folder, job.checkpoint.folder))
        if done and step_number(done[-1]) == job.training.steps:
            # (every rank reads the log, as it reads the checkpoint steps beside it)
            if validated(job.job.dump_folder, job.training.steps):
                logger.info(f"the final step {job.training.steps} is validated already")
                return
            logger.info(f"resumed at the final step {job.training.steps}: validating it")
            self.validator.validate(self.model_parts, job.training.steps)

    def log(self, step, global_avg_loss, global_max_loss, grad_norm, extra_metrics=None):
        if not math.isfinite(float(grad_norm)):
            raise FloatingPointError(
                f"step {step}: the gradient norm is {float(grad_norm)}. {RESUME_ADVICE}"
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
        if on_any_rank(not math.isfinite(loss)):  # (a pipeline's first stages have no loss)
            job = self.job_config
            folder = os.path.join(job.job.dump_folder, job.checkpoint.folder, f"step-{step}")
            raise FloatingPointError(
                f"step {step}: the validation loss (plain CE) is not finite"
                + (f" ({loss})" if not math.isfinite(loss) else "")  # (the last stage's value)
                + ": the weights of this step "
                "are finite but give non-finite logits (an optimizer.lr far too high makes such "
                f"weights; it is {job.optimizer.lr:g}). No validation row is written"
                + (
                    f"; {folder}, saved before the validation, holds these weights: do not "
                    "export or resume from it"
                    if job.checkpoint.enable and os.path.isdir(folder)
                    else " and the step is not saved"
                )
                + ". Train with other settings in a fresh job.dump_folder."
            )
        measured = {}
        if self.validation_meter is not None:
            mesh = self.parallel_dims.get_optional_mesh("loss")
            mesh = mesh if self.parallel_dims.dp_cp_enabled else None
            measured = self.validation_meter.take(mesh)
        extra = {
            "validation_metrics/perplexity": math.exp(min(loss, 80.0)),
            **{f"validation_metrics/{k}": v for k, v in measured.items() if k != "ce"},
            **(extra_metrics or {}),
        }
        super().log_validation(loss, step, extra_metrics=extra)
        row = {"step": step, "validation_plain_ce": loss}
        row.update({f"validation_{k}": v for k, v in measured.items() if k != "ce"})
        self._append(row)
        logger.info(
            f"validate step: {step:2}  plain_ce: {loss:7.4f}  perplexity: {math.exp(min(loss, 80.0)):9.3f}"
        )


def _is_logging_rank(job_config, parallel_dims) -> bool:
    """The rank torchtitan logs metrics on (rank 0, or the last pipeline stage's first rank)."""
    from torchtitan.components.metrics import _get_metrics_rank

    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    return rank == _get_metrics_rank(parallel_dims, job_config)


def _one_table(sha256: str) -> str:
    """The digest of the run's target table, the same on every rank (each builds its own): a
    family that builds another table on another rank is refused on all of them."""
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return sha256
    digests: list = [None] * dist.get_world_size()
    dist.all_gather_object(digests, sha256)
    if len(set(digests)) > 1:
        shown = ", ".join(f"rank {r}: {d[:12]}..." for r, d in enumerate(digests))
        raise ValueError(
            f"the ranks built different target tables ({shown}): the family must build the same "
            "table in every process (a reduction whose result depends on the thread count, say)"
        )
    return sha256


def build_prefix_metrics_processor(
    job_config,
    parallel_dims,
    model_args=None,
    tag=None,
    *,
    meter: PlainCEMeter,
    plans,
    validation_meter: ValidationMeter | None = None,
):
    """TrainSpec metrics builder (the meters and the loss plans bound by get_train_spec, shared
    with the losses). It writes the run's record: with it the digest of the run's target table
    (built here, once for the loss too), after refusing a resume whose table is not the one the
    run started with."""
    meter.reset()
    table_sha256 = plans.table_for(job_config).sha256  # (a refused table: train.py says it)
    try:
        check_table_unchanged(job_config, _one_table(table_sha256))  # every rank refuses alike
    except ValueError as e:
        refuse(job_config, e)
    return PrefixMetricsProcessor(
        job_config, parallel_dims, meter, tag, validation_meter, table_sha256
    )
