"""What the model is trained to predict: the settings of one objective (the `[objective]` section)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .kernel import check_kernel

SUPPORTS = ("prefix", "vocab")
TAU_SWEEP = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


def _is_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


@dataclass
class ObjectiveSpec:
    """One objective: a target family and its options. Read by the families (families.py), the
    loss kernels (position weighting) and the torchtitan adapters (fused_loss)."""

    name: str | None = None
    """Target family: ce | label_smoothing | prefix | an import path "package.module:function"
    (see docs/objectives.md, "Add a target family"); required: every run names its objective"""

    tau: float = 0.5
    """prefix: softmax temperature of the prefix scores (finite, > 0)"""

    normalize: bool = False
    """prefix: score len(t)/len(s) instead of len(t)"""

    support: str = "prefix"
    """prefix: `prefix` spreads mass over the prefix set only; `vocab` lets every other token score 0
    (weight e^0)"""

    epsilon: float = 0.1
    """label_smoothing: the smoothing mass, in [0, 1)"""

    fused_loss: bool = False
    """Run the output projection and the loss together, chunked over tokens (never the full logits)"""

    fused_chunk_tokens: int | None = None
    """fused_loss: tokens per chunk of logits (an integer >= 1; unset = the device's default, see
    objectives/fused.py). `scripts/bench_loss.py --chunk-tokens ...` measures the choices on a
    device. Not part of the objective: arms of a sweep share it"""

    kernel: str = "pytorch"
    """How the loss's row passes run: `pytorch` (the default) or `triton` (Triton kernels, a CUDA
    GPU; opt-in: see docs/fused_loss.md). Not part of the objective: arms of a sweep share it"""

    position_gamma: float | None = None
    """Discounted position weighting: the target at position k of its sequence weighs
    (1 - gamma^k)/(1 - gamma) (gamma = 1: k), rescaled to average 1 over the sequence;
    0 < gamma <= 1, unset = every position weighs 1"""

    def validate(self) -> ObjectiveSpec:
        """Check every option's type and range (not the family's import: families.resolve_family)."""
        if self.name is None:
            raise ValueError(
                "objective.name is not set: every run names its objective in its TOML's "
                "[objective] section (or --objective.name): ce, label_smoothing, prefix or an "
                'import path "package.module:function"'
            )
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(
                "objective.name must be ce, label_smoothing, prefix or an import path "
                f'"package.module:function"; got {self.name!r}'
            )
        if self.support not in SUPPORTS:
            raise ValueError(
                f"objective.support must be one of {', '.join(SUPPORTS)}; got {self.support!r}"
            )
        if not _is_number(self.tau) or not math.isfinite(self.tau) or self.tau <= 0:
            raise ValueError(f"objective.tau must be a finite number > 0; got {self.tau!r}")
        if not isinstance(self.normalize, bool):
            raise ValueError(f"objective.normalize must be true or false; got {self.normalize!r}")
        if not isinstance(self.fused_loss, bool):
            raise ValueError(f"objective.fused_loss must be true or false; got {self.fused_loss!r}")
        chunk = self.fused_chunk_tokens
        if chunk is not None:
            if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
                raise ValueError(
                    "objective.fused_chunk_tokens must be an integer >= 1 (unset: the device's "
                    f"default); got {chunk!r}"
                )
            if not self.fused_loss:
                raise ValueError(
                    "objective.fused_chunk_tokens sets the fused head's chunk size, and "
                    "objective.fused_loss is false: set objective.fused_loss = true, or leave "
                    "objective.fused_chunk_tokens unset"
                )
        check_kernel(self.kernel)
        eps = self.epsilon
        if not _is_number(eps) or not (0.0 <= eps < 1.0):
            raise ValueError(f"objective.epsilon must be a number in [0, 1); got {eps!r}")
        gamma = self.position_gamma
        if gamma is not None and (not _is_number(gamma) or not (0.0 < gamma <= 1.0)):
            raise ValueError(
                f"objective.position_gamma must be a number in (0, 1] (unset: no position "
                f"weighting); got {gamma!r}"
            )
        return self
