"""TrainSpec `prefix_llama3`: torchtitan's Llama-3 with our loss, data, validator and metrics.

Importing this module registers the TrainSpec and our datasets with torchtitan, which is how an
out-of-tree TrainSpec reaches torchtitan 0.2.x (`[experimental] custom_import =
"prefix_titan.train_spec"`). Nothing in the package imports it.

Everything else (model, FSDP2/TP/PP parallelisation, torch.compile, activation checkpointing,
optimizers, LR schedules, distributed checkpointing, HF state-dict adapter) is torchtitan's own.
The hooks that share run data get it bound here: one `LossPlans` (the loss and the fused head
use the same plan and table), one `PlainCEMeter` (the loss fills it, the metrics processor logs
it) and one `ValidationMeter` (validation's loss or the fused head fills it at each validation;
the metrics processor sums it over ranks and logs it).
"""

from __future__ import annotations

from .titan.version import torchtitan_problem

if _problem := torchtitan_problem():  # before torchtitan's: another fails on them unexplained
    raise ImportError(_problem)

from functools import partial  # noqa: E402

from torchtitan.components.lr_scheduler import build_lr_schedulers
from torchtitan.components.optimizer import build_optimizers
from torchtitan.distributed.pipeline_parallel import pipeline_llm
from torchtitan.models.llama3 import parallelize_llama
from torchtitan.models.llama3.model.state_dict_adapter import Llama3StateDictAdapter
from torchtitan.protocols.train_spec import TrainSpec, register_train_spec

from .model.flavors import FLAVORS
from .model.transformer import FusedHeadTransformer
from .runs.lock import FolderBusy
from .titan.checks import (
    check_checkpoint_to_load,
    check_job_config,
    check_paths,
    hold_run_folder,
)
from .titan.cpu import has_accelerator, use_sum_reductions
from .titan.datasets import build_prefix_dataloader, register_datasets
from .titan.logs import quiet_logs
from .titan.loss import LossPlans, build_target_loss
from .titan.metrics import PlainCEMeter, ValidationMeter, build_prefix_metrics_processor
from .titan.refusal import refuse, refusing
from .titan.tokenizer import build_tokenizer
from .titan.validate import build_plain_ce_validator

TRAIN_SPEC_NAME = "prefix_llama3"


def check_config_then_build_tokenizer(job_config):
    """The tokenizer hook is the first one torchtitan calls: rank 0 takes the run folder's
    writer's lock, and the config checks and the checksum check of the checkpoint to resume run
    here, before any work (a refusal is one message and exit status 2), then torchtitan's HF
    tokenizer is built."""
    import torch.distributed as dist

    quiet_logs(cpu=not has_accelerator())
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    lock = None
    try:
        if rank == 0:
            lock = hold_run_folder(job_config)
        check_job_config(job_config, world=world)
        check_paths(job_config)
        check_checkpoint_to_load(job_config, rank, world)
        return build_tokenizer(job_config)
    except (ValueError, FolderBusy) as e:
        refuse(job_config, e, rank, lock)


def parallelize_prefix_llama(
    model, parallel_dims, job_config, *, plans: LossPlans, validation_meter=None
):
    """torchtitan's parallelize_llama, after giving a fused head the run's loss plan (and the
    validation meter); on CPU (gloo) FSDP2 is told to reduce with plain sums."""
    from torchtitan.tools import utils

    plan = plans.for_job(job_config)
    plan.prepare(utils.device_type)  # this rank's device: the current one of its type
    if plan.fused:
        model.output.set_plan(plan, validation_meter, defer_label_check=True)
    model = parallelize_llama(model, parallel_dims, job_config)
    if utils.device_type == "cpu":
        use_sum_reductions(model)
    return model


def get_train_spec() -> TrainSpec:
    plans, meter, validation = LossPlans(), PlainCEMeter(), ValidationMeter()
    return TrainSpec(
        model_cls=FusedHeadTransformer,
        model_args=FLAVORS,
        parallelize_fn=partial(parallelize_prefix_llama, plans=plans, validation_meter=validation),
        pipelining_fn=pipeline_llm,
        build_optimizers_fn=build_optimizers,
        build_lr_schedulers_fn=build_lr_schedulers,
        build_dataloader_fn=refusing(build_prefix_dataloader),
        build_tokenizer_fn=check_config_then_build_tokenizer,
        build_loss_fn=partial(
            build_target_loss, plans=plans, meter=meter, validation_meter=validation
        ),
        build_validator_fn=build_plain_ce_validator,
        build_metrics_processor_fn=partial(
            build_prefix_metrics_processor, meter=meter, plans=plans, validation_meter=validation
        ),
        state_dict_adapter=Llama3StateDictAdapter,
    )


register_datasets()
register_train_spec(TRAIN_SPEC_NAME, get_train_spec())
