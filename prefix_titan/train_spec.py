"""TrainSpec `prefix_llama3`: torchtitan's Llama-3 with our loss, data, validator and metrics.

The model class is torchtitan's Transformer with a head that can also compute the loss
(`[prefix] fused_loss`, head.py); its parameters and checkpoints are the same.

Everything else (model, FSDP2/TP/PP parallelisation, torch.compile, activation checkpointing,
optimizers, LR schedules, distributed checkpointing, HF state-dict adapter) is torchtitan's own.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from torchtitan.components.lr_scheduler import build_lr_schedulers
from torchtitan.components.optimizer import build_optimizers
from torchtitan.distributed.pipeline_parallel import pipeline_llm
from torchtitan.models.llama3 import TransformerModelArgs, llama3_args, parallelize_llama
from torchtitan.models.llama3.model.args import RoPEScalingArgs
from torchtitan.models.llama3.model.state_dict_adapter import Llama3StateDictAdapter
from torchtitan.protocols.train_spec import TrainSpec, register_train_spec

from .data import build_prefix_dataloader
from .head import FusedHeadTransformer
from .loss import build_target_loss, compiles_loss, load_target_table
from .metrics import build_prefix_metrics_processor
from .targets import TargetTable
from .tokenizer import EMBEDDED_VOCAB_SIZE, build_tokenizer
from .validate import build_plain_ce_validator

TRAIN_SPEC_NAME = "prefix_llama3"
NO_ROPE_SCALING = RoPEScalingArgs(scaling_factor=1.0)  # trained from scratch at 2K: plain RoPE



@dataclass
class PrefixModelArgs(TransformerModelArgs):
    """Llama-3 args; with `[prefix] fused_loss` the head also gets the target table (head.py)."""

    fused_compile: bool = False
    fused_compile_backend: str = "inductor"

    def __post_init__(self) -> None:
        # A plain attribute, not a field: the args are logged as JSON.
        self.fused_targets: TargetTable | None = None

    def update_from_config(self, job_config, **kwargs) -> None:
        super().update_from_config(job_config, **kwargs)
        self.fused_compile = compiles_loss(job_config)
        self.fused_compile_backend = job_config.compile.backend
        if job_config.prefix.fused_loss:
            self.fused_targets = load_target_table(job_config)


def _prefix_args(args: TransformerModelArgs) -> PrefixModelArgs:
    return PrefixModelArgs(**{f.name: getattr(args, f.name) for f in fields(args)})


prefix_llama3_args: dict[str, PrefixModelArgs] = {
    **{name: _prefix_args(args) for name, args in llama3_args.items()},
    # Llama-3 style at ~0.5B with the Llama-3 vocabulary; README states the exact count.
    "500M": PrefixModelArgs(
        dim=1024, n_layers=18, n_heads=16, n_kv_heads=8, vocab_size=128256,
        ffn_dim_multiplier=1.3, multiple_of=256, rope_theta=500000,
        rope_scaling_args=NO_ROPE_SCALING,
    ),
    # The embedded default: trains on 2 CPU cores in minutes with the embedded BPE vocabulary.
    "tiny": PrefixModelArgs(
        dim=128, n_layers=4, n_heads=4, n_kv_heads=2, vocab_size=EMBEDDED_VOCAB_SIZE,
        multiple_of=64, rope_theta=10000, rope_scaling_args=NO_ROPE_SCALING,
    ),
}
# The tiny body with Llama-3's vocabulary size: quick runs with the real tokenizer, and a
# head-dominated model for benchmarking the fused loss on small machines.
prefix_llama3_args["tiny_128k"] = replace(prefix_llama3_args["tiny"], vocab_size=128256)
# Document-masked variants (flex attention, block_causal) for `[data] document_mask = true`.
for _name in ("500M", "tiny"):
    prefix_llama3_args[f"{_name}_flex"] = replace(
        prefix_llama3_args[_name], attn_type="flex", attn_mask_type="block_causal"
    )


def model_vocab_size(job_config) -> int:
    flavor = job_config.model.flavor
    if flavor not in prefix_llama3_args:
        raise ValueError(
            f"model.flavor must be one of {', '.join(prefix_llama3_args)} for {TRAIN_SPEC_NAME}; "
            f"got {flavor!r}"
        )
    return prefix_llama3_args[flavor].vocab_size


def parallelize_prefix_llama(model, parallel_dims, job_config):
    """torchtitan's parallelize_llama; on CPU (gloo) FSDP2 is told to reduce with plain sums."""
    from torchtitan.tools import utils

    from .cpu import use_sum_reductions

    model = parallelize_llama(model, parallel_dims, job_config)
    if utils.device_type == "cpu":
        use_sum_reductions(model)
    return model


def get_train_spec() -> TrainSpec:
    return TrainSpec(
        model_cls=FusedHeadTransformer,
        model_args=prefix_llama3_args,
        parallelize_fn=parallelize_prefix_llama,
        pipelining_fn=pipeline_llm,
        build_optimizers_fn=build_optimizers,
        build_lr_schedulers_fn=build_lr_schedulers,
        build_dataloader_fn=build_prefix_dataloader,
        build_tokenizer_fn=build_tokenizer,
        build_loss_fn=build_target_loss,
        build_validator_fn=build_plain_ce_validator,
        build_metrics_processor_fn=build_prefix_metrics_processor,
        state_dict_adapter=Llama3StateDictAdapter,
    )


def register() -> None:
    register_train_spec(TRAIN_SPEC_NAME, get_train_spec())
