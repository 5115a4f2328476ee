"""The flavor table: every model size `model.flavor` may name, torchtitan's Llama-3 args each."""

from __future__ import annotations

from dataclasses import replace

from torchtitan.models.llama3 import TransformerModelArgs, llama3_args
from torchtitan.models.llama3.model.args import RoPEScalingArgs

from ..data.corpus import EMBEDDED_VOCAB_SIZE

NO_ROPE_SCALING = RoPEScalingArgs(scaling_factor=1.0)  # trained from scratch at 2K: plain RoPE
LLAMA3_VOCAB_SIZE = 128256

FLAVORS: dict[str, TransformerModelArgs] = {
    # torchtitan's own Llama-3 flavors (debugmodel, 8B, ...), copied: the trainer updates its args.
    **{name: replace(args) for name, args in llama3_args.items()},
    # Llama-3 style at ~0.5B with the Llama-3 vocabulary; README states the exact count.
    "500M": TransformerModelArgs(
        dim=1024,
        n_layers=18,
        n_heads=16,
        n_kv_heads=8,
        vocab_size=LLAMA3_VOCAB_SIZE,
        ffn_dim_multiplier=1.3,
        multiple_of=256,
        rope_theta=500000,
        rope_scaling_args=NO_ROPE_SCALING,
    ),
    # The embedded default: trains on 2 CPU cores in minutes with the embedded BPE vocabulary.
    "tiny": TransformerModelArgs(
        dim=128,
        n_layers=4,
        n_heads=4,
        n_kv_heads=2,
        vocab_size=EMBEDDED_VOCAB_SIZE,
        multiple_of=64,
        rope_theta=10000,
        rope_scaling_args=NO_ROPE_SCALING,
    ),
}
# The pilot sweep's model: the 500M's rules at dim 512 x 8 layers (one (arm, seed) per GPU);
# README states its parameter counts and budget.
FLAVORS["pilot"] = replace(FLAVORS["500M"], dim=512, n_layers=8, n_heads=8, n_kv_heads=4)
# The tiny body with Llama-3's vocabulary size: quick runs with the real tokenizer, and a
# head-dominated model for benchmarking the fused loss on small machines.
FLAVORS["tiny_128k"] = replace(FLAVORS["tiny"], vocab_size=LLAMA3_VOCAB_SIZE)
# Document-masked variants (flex attention, block_causal) for `[data] document_mask = true`.
for _name in ("500M", "tiny"):
    FLAVORS[f"{_name}_flex"] = replace(
        FLAVORS[_name], attn_type="flex", attn_mask_type="block_causal"
    )


def flavor_args(flavor: str) -> TransformerModelArgs:
    """The args of `model.flavor`, or a clear error listing the flavors."""
    if flavor not in FLAVORS:
        raise ValueError(f"model.flavor must be one of {', '.join(FLAVORS)}; got {flavor!r}")
    return FLAVORS[flavor]
