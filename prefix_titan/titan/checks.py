"""The job config's checks: every refusal of a setting, before any work (train_spec.py runs them
from the first TrainSpec hook torchtitan calls), and the resume checks (settings recorded by the
run, checksums of the step to load)."""

import json
import os

from ..model.flavors import FLAVORS, flavor_args
from ..objectives.families import resolve_family
from ..objectives.kernel import RowKernel
from ..runs.checkpoints import complete_steps, verify_step
from ..runs.folder import (
    RESUME_MAY_CHANGE,
    RUN_CONFIG,
    checkpoint_steps,
    resume_conflicts,
    run_record,
)
from .datasets import TOKEN_DATASETS, check_dataset_name


def check_triton_device() -> None:
    """objective.kernel = "triton" needs a CUDA GPU (or Triton's CPU interpreter, for tests)."""
    import torch

    from ..objectives.triton_rows import interpreting

    if not torch.cuda.is_available() and not interpreting():
        raise ValueError(
            "objective.kernel = 'triton' runs the loss's row passes as Triton kernels on a CUDA "
            "GPU, and none is visible: use objective.kernel = 'pytorch' (the default) on this "
            "machine (TRITON_INTERPRET=1 runs the Triton kernels in Triton's CPU interpreter, "
            "for tests only: it is slow)"
        )


def check_job_config(job_config) -> None:
    """Refuse bad settings, naming the setting and what is allowed, and a resume of a checkpoint
    written with other settings (check_resume)."""
    if not hasattr(job_config, "objective"):
        raise ValueError(
            'the [objective] section is missing: set [job] custom_config_module = "prefix_titan.config"'
        )
    spec = job_config.objective.validate()
    resolve_family(spec.name)
    flavor = flavor_args(job_config.model.flavor)
    p = job_config.parallelism
    if spec.fused_loss:
        for name, degree, why in (
            (
                "tensor_parallel_degree",
                p.tensor_parallel_degree,
                "tensor parallel would give each rank's head a slice of the vocabulary",
            ),
            (
                "pipeline_parallel_degree",
                p.pipeline_parallel_degree,
                "labels reach only the first pipeline stage",
            ),
            (
                "context_parallel_degree",
                p.context_parallel_degree,
                "context parallel shards the sequence but not the labels the head receives",
            ),
        ):
            if degree > 1:
                raise ValueError(
                    f"objective.fused_loss = true computes the loss in the model's head over the "
                    f"whole vocabulary, and {why}: set parallelism.{name} = 1, or "
                    f"objective.fused_loss = false (the unfused loss)"
                )
    if RowKernel.parse(spec.kernel) is RowKernel.TRITON:
        check_triton_device()
    if spec.position_gamma is not None and p.context_parallel_degree > 1:
        raise ValueError(
            "objective.position_gamma weights each target by its position in the sequence, but "
            "context parallel shards the sequence: set parallelism.context_parallel_degree = 1"
        )
    if p.tensor_parallel_degree > 1 and not p.disable_loss_parallel:
        raise ValueError(
            "prefix_titan's loss needs whole-vocabulary logits, but tensor parallel with loss "
            "parallel shards them over the vocabulary: set parallelism.disable_loss_parallel = true"
        )
    check_dataset_name(job_config.training.dataset, "training.dataset")
    if job_config.data.document_mask:
        if flavor.attn_mask_type != "block_causal":
            block = [n for n, a in FLAVORS.items() if a.attn_mask_type == "block_causal"]
            raise ValueError(
                f"data.document_mask = true needs a block_causal flavor ({', '.join(block)}); "
                f"model.flavor {job_config.model.flavor!r} attends across documents"
            )
        if job_config.training.dataset not in TOKEN_DATASETS:
            raise ValueError(
                f"data.document_mask works with the token datasets "
                f"({', '.join(TOKEN_DATASETS)}); training.dataset is "
                f"{job_config.training.dataset!r}"
            )
        if p.pipeline_parallel_degree > 1:
            raise ValueError(
                "data.document_mask passes positions to the first pipeline stage only: "
                "set parallelism.pipeline_parallel_degree = 1"
            )
    if job_config.validation.enable:
        check_dataset_name(job_config.validation.dataset, "validation.dataset")
        if job_config.validation.seq_len > job_config.training.seq_len:
            raise ValueError(
                f"validation.seq_len ({job_config.validation.seq_len}) must be <= training.seq_len "
                f"({job_config.training.seq_len}): the model's RoPE table is sized by training.seq_len"
            )
    ckpt = job_config.checkpoint
    if ckpt.enable and ckpt.keep_latest_k == 1:
        raise ValueError(
            "checkpoint.keep_latest_k must be 0 (keep every step) or >= 2 (torchtitan keeps the "
            "step being saved besides the newest finished one); got 1"
        )
    check_resume(job_config)


def check_resume(job_config) -> None:
    """Refuse to resume a checkpoint in job.dump_folder that a run with other settings wrote
    (a re-run with another objective would relabel the finished run)."""
    folder = job_config.job.dump_folder
    record = os.path.join(folder, RUN_CONFIG)
    steps = checkpoint_steps(os.path.join(folder, job_config.checkpoint.folder))
    if not (job_config.checkpoint.enable and steps and os.path.exists(record)):
        return
    with open(record) as f:
        recorded = json.load(f)
    # A setting added to the package after the run was recorded, left at its default, is no
    # conflict: the run trained with what that default does.
    defaults = run_record(type(job_config)())
    conflicts = resume_conflicts(recorded, run_record(job_config), defaults)
    if conflicts:
        raise ValueError(
            f"{folder} holds a checkpoint ({os.path.basename(steps[-1])}) of a run with other "
            f"settings, and resuming it would train (and record) them as this run's:\n  "
            + "\n  ".join(conflicts)
            + f"\nA resumed run may change only: {', '.join(RESUME_MAY_CHANGE)}. To start a fresh "
            f"run, give it another job.dump_folder (or remove {os.path.dirname(steps[-1])})."
        )


def check_checkpoint_to_load(job_config, rank: int = 0, world: int = 1) -> None:
    """Verify the checkpoint step torchtitan is about to resume (checkpoint.load_step, or the
    newest finished step) against the checksums recorded when it was saved; raise naming the
    damaged file and the newest intact earlier step. The ranks share the hashing."""
    ckpt = job_config.checkpoint
    folder = os.path.join(job_config.job.dump_folder, ckpt.folder)
    if not (ckpt.enable and os.path.isdir(folder)):
        return
    if ckpt.load_step == -1:
        steps = complete_steps(folder)
        if not steps:
            return
        step_dir = steps[-1]
    else:
        step_dir = os.path.join(folder, f"step-{ckpt.load_step}")
        if not os.path.isdir(step_dir):
            found = ", ".join(os.path.basename(d) for d in checkpoint_steps(folder)) or "none"
            raise ValueError(
                f"checkpoint.load_step = {ckpt.load_step}, but {step_dir} does not exist "
                f"(steps in {folder}: {found})"
            )
    unverified = verify_step(step_dir, rank, world)
    if unverified and rank == 0:
        from torchtitan.tools.logging import logger

        logger.warning(
            f"{step_dir}: {', '.join(unverified)} has no recorded checksum (the run that saved it "
            f"stopped before recording one); its size matches the checkpoint metadata, but its "
            f"content is unverified"
        )
