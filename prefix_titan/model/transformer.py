"""torchtitan's Llama-3 Transformer whose LM head can end in the fused loss.

`FusedLMHead` is an nn.Linear (same parameter, same checkpoint key) that, while its model's
forward was given labels, returns (objective sum, CE sum) through the run's loss plan
(`LossPlan.fused_loss`, objectives/plan.py) instead of logits. The loss runs inside the head
module's own forward, so FSDP2 gathers the sharded weight and reduce-scatters its gradient exactly
as for a plain nn.Linear. Without labels (export,
evaluation) the model returns logits as usual.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchtitan.models.llama3 import Transformer

from ..objectives.plan import LossPlan


class FusedLMHead(nn.Linear):
    """nn.Linear that ends in the target loss during a forward its model was given labels for."""

    def __init__(self, dim: int, vocab_size: int):
        super().__init__(dim, vocab_size, bias=False)
        # Plain attributes: no state-dict entries, untouched by FSDP and to_empty.
        self.plan: LossPlan | None = None
        self.validation_meter = None
        self.defer_label_check = False
        self._labels: torch.Tensor | None = None

    def set_plan(self, plan: LossPlan, validation_meter=None, defer_label_check=False) -> None:
        """The run's loss plan (fused): what the head computes when it ends in the loss. With a
        validation meter (titan.metrics.ValidationMeter), a pass without gradients (validation)
        also adds the validation metrics' sums of its chunks to it. `defer_label_check`: in a
        pass with gradients (a training step) the labels are not checked here, with a host
        sync, but by the loss's meter on the device, and refused after the step."""
        if not plan.fused:
            raise ValueError("the fused head takes a fused loss plan (objective.fused_loss = true)")
        self.validation_meter = validation_meter
        self.defer_label_check = defer_label_check
        self.plan = plan

    @contextlib.contextmanager
    def ending_in_loss(self, labels: torch.Tensor):
        """Within this block the head's forward returns loss sums for `labels`: the model's
        forward is torchtitan's own and calls the head with the hidden states alone."""
        if self.plan is None:
            raise RuntimeError(
                "this model's head has no loss plan: labels reach the model only "
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
        sink = None
        training = torch.is_grad_enabled()
        if self.validation_meter is not None and not training:
            if self.plan.mechanism is not None:
                sink = self.validation_meter.sink(h.device)
        check = not (self.defer_label_check and training)
        return self.plan.fused_loss(h, self.weight, labels, sink=sink, check=check)


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
