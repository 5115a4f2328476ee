"""torchtitan's Llama-3 Transformer whose LM head can end in the fused loss.

`FusedLMHead` is an nn.Linear (same parameter, same checkpoint key) that, while its model's
forward was given labels, returns (objective sum, CE sum) through `fused_target_loss` instead of
logits. The loss runs inside the head module's own forward, so FSDP2 gathers the sharded weight
and reduce-scatters its gradient exactly as for a plain nn.Linear. Without labels (export,
evaluation) the model returns logits as usual.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchtitan.models.llama3 import Transformer

from ..objectives.fused import build_chunk_step, fused_target_loss
from ..objectives.kernel import check_labels, row_weights
from ..objectives.table import TargetTable


@dataclass
class HeadObjective:
    """What the fused head computes: the run's target table and position weighting."""

    table: TargetTable
    position_gamma: float | None = None
    compile: bool = False
    """Compile the chunk's element-wise passes with torch.compile"""
    backend: str = "inductor"
    kernel: str = "pytorch"
    """The chunk's row passes: pytorch or triton (objectives.kernel.KERNELS)"""
    chunk_tokens: int | None = None
    """Tokens per chunk of logits; None: the device's default (fused.default_chunk_tokens)"""


class FusedLMHead(nn.Linear):
    """nn.Linear that ends in the target loss during a forward its model was given labels for."""

    def __init__(self, dim: int, vocab_size: int):
        super().__init__(dim, vocab_size, bias=False)
        # Plain attributes: no state-dict entries, untouched by FSDP and to_empty.
        self.objective: HeadObjective | None = None
        self._step = None
        self._labels: torch.Tensor | None = None

    def set_objective(self, objective: HeadObjective) -> None:
        self.objective = objective
        self._step = build_chunk_step(objective.compile, objective.backend, objective.kernel)

    @contextlib.contextmanager
    def ending_in_loss(self, labels: torch.Tensor):
        """Within this block the head's forward returns loss sums for `labels`: the model's
        forward is torchtitan's own and calls the head with the hidden states alone."""
        if self.objective is None:
            raise RuntimeError(
                "this model's head has no objective: labels reach the model only "
                "with objective.fused_loss = true, which gives it one"
            )
        self._labels = labels
        try:
            yield
        finally:
            self._labels = None

    def forward(self, h: torch.Tensor):
        labels = self._labels
        if labels is None:
            return F.linear(h, self.weight)
        check_labels(labels, self.out_features)
        objective = self.objective
        return fused_target_loss(
            h.reshape(-1, h.shape[-1]),
            self.weight,
            labels.reshape(-1),
            *objective.table.kernel_tensors(h.device),
            row_weights(labels, objective.position_gamma),
            chunk_tokens=objective.chunk_tokens,
            step=self._step,
        )


class FusedHeadTransformer(Transformer):
    """torchtitan's Llama-3 Transformer; forward(..., labels=...) ends in the fused head loss."""

    def __init__(self, model_args):
        super().__init__(model_args)
        self.output = FusedLMHead(model_args.dim, model_args.vocab_size)

    def forward(self, tokens, attention_masks=None, positions=None, labels=None):
        if labels is None:
            return super().forward(tokens, attention_masks=attention_masks, positions=positions)
        with self.output.ending_in_loss(labels):
            return super().forward(tokens, attention_masks=attention_masks, positions=positions)
