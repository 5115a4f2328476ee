"""Fused LM head + target loss: the [N, V] logits exist one chunk of tokens at a time.

Per token:  loss = lse(z) - b * sum_v z_v - sum_k w_k * z[idx_k],   z = h W^T.
Each chunk of c tokens computes z_c = h_c W^T ([c, V], the head's dtype), the row statistics of
loss.py's kernel, and, when gradients are wanted, the gradient g = softmax(z_c) - p right away:
grad_h[c] = g W and grad_W += g^T h_c (fp32 accumulator). Backward then only scales both by the
incoming gradient, so the vocabulary is walked once and the head's matmuls cost 6NdV as unfused.
Memory: one chunk of logits and its working set, grad_h and an fp32 [V, d] accumulator.

`FusedHeadTransformer` is torchtitan's Llama-3 whose `output` head runs this when the forward gets
`labels` (our dataloaders add them to the inputs when `[prefix] fused_loss = true`): the loss runs
inside the head module's own forward, so FSDP2 gathers the sharded weight and reduce-scatters its
gradient exactly as for a plain nn.Linear. Without labels the model returns logits as usual.
`reference_fused_loss` is the plain PyTorch reference (full logits), for tests.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchtitan.models.llama3 import Transformer

from .loss import (IGNORE_INDEX, check_labels, chunk_rows, reference_loss, row_gradient,
                   row_statistics)
from .targets import TargetTable


def default_chunk_tokens(device: torch.device, dim: int) -> int:
    """Tokens per chunk. GPU: 2048 rows keep the chunk's matmuls efficient while its logits
    (0.5 GiB bf16 at V = 128256) stay small next to the unfused [N, V] tensors. CPU (fp32,
    scripts/bench_loss.py): once d >= 512 the three matmuls with W need 512 rows to run at full
    speed (d = 1024: 6.0 ms per token at 512 rows, 8.1 at 128); below that, 128 rows are as fast
    with a quarter of the memory."""
    if device.type != "cpu":
        return 2048
    return 512 if dim >= 512 else 128


def reference_fused_loss(h: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                         table: TargetTable):
    """Plain PyTorch reference: the full [N, V] logits, then the dense-target loss."""
    return reference_loss(h.reshape(-1, h.shape[-1]) @ weight.t(), labels, table)


def chunk_statistics(z, y, keep, idx, weight, background, target_at_idx, want_grad: bool):
    """(objective sum, CE sum, gradient of the objective w.r.t. z or None) of one chunk: the
    unfused kernel's two passes (loss.py), in its cache-sized row blocks when eager."""
    rows = chunk_rows(z)
    objective, ce, lse = row_statistics(z, y, keep, idx, weight, background, rows)
    if not want_grad:
        return objective, ce, None
    return objective, ce, row_gradient(z, y, keep.float(), lse, idx, background, target_at_idx,
                                       rows)


def build_chunk_step(compile: bool, backend: str = "inductor"):
    """`chunk_statistics`, compiled (element-wise passes fused; the matmuls stay eager) or not."""
    if not compile:
        return chunk_statistics
    return torch.compile(chunk_statistics, backend=backend, dynamic=False)


class _FusedHeadLossFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, head_weight, labels, idx, weight, background, target_at_idx,
                chunk_tokens: int, step):
        keep = labels != IGNORE_INDEX
        y = torch.where(keep, labels, 0)
        grad_h_wanted, grad_w_wanted = ctx.needs_input_grad[:2]
        want_grad = grad_h_wanted or grad_w_wanted
        grad_h = torch.empty_like(h) if grad_h_wanted else None
        grad_w = (torch.zeros(head_weight.shape, dtype=torch.float32, device=h.device)
                  if grad_w_wanted else None)
        objective = h.new_zeros((), dtype=torch.float32)
        ce = h.new_zeros((), dtype=torch.float32)
        for i in range(0, h.shape[0], chunk_tokens):
            r = slice(i, i + chunk_tokens)
            z = h[r] @ head_weight.t()
            o, c, g = step(z, y[r], keep[r], idx, weight, background, target_at_idx, want_grad)
            objective += o
            ce += c
            del z
            if grad_h is not None:
                grad_h[r] = g @ head_weight
            if grad_w is not None:
                if g.dtype == grad_w.dtype:
                    grad_w.addmm_(g.t(), h[r])
                else:  # low-precision head: sum chunks in fp32, round once at the end
                    grad_w += g.t() @ h[r]
        ctx.grads, ctx.weight_dtype = (grad_h, grad_w), head_weight.dtype
        ctx.mark_non_differentiable(ce)
        return objective, ce

    @staticmethod
    def backward(ctx, grad_objective, _grad_ce):
        if ctx.grads is None:
            raise RuntimeError("the fused head's loss was differentiated twice: its gradients are "
                               "computed in forward and consumed by the first backward")
        grad_h, grad_w = ctx.grads
        ctx.grads = None
        scale = grad_objective.float()
        if grad_h is not None:
            grad_h = grad_h.mul_(scale.to(grad_h.dtype))
        if grad_w is not None:
            grad_w = grad_w.mul_(scale).to(ctx.weight_dtype)
        return grad_h, grad_w, None, None, None, None, None, None, None


def fused_target_loss(h, head_weight, labels, idx, weight, background, target_at_idx,
                      chunk_tokens: int | None = None, step=chunk_statistics):
    """(objective sum, CE sum) of hidden states h [N, d] through head_weight [V, d], never
    holding more than `chunk_tokens` rows of logits; table tensors as for `loss.target_loss`."""
    if chunk_tokens is None:
        chunk_tokens = default_chunk_tokens(h.device, h.shape[-1])
    if h.dtype != head_weight.dtype:  # e.g. fp32 weights under autocast: what F.linear would do
        dtype = torch.get_autocast_dtype(h.device.type) if torch.is_autocast_enabled(
            h.device.type) else torch.promote_types(h.dtype, head_weight.dtype)
        h, head_weight = h.to(dtype), head_weight.to(dtype)
    return _FusedHeadLossFunction.apply(h, head_weight, labels, idx, weight, background,
                                        target_at_idx, chunk_tokens, step)


class FusedLMHead(nn.Linear):
    """nn.Linear (same parameter, same checkpoint key) that ends in the target loss when given
    labels: head(h) -> logits; head(h, labels) -> (objective sum, CE sum)."""

    def __init__(self, dim: int, vocab_size: int, table: TargetTable | None = None,
                 compile: bool = False, backend: str = "inductor"):
        super().__init__(dim, vocab_size, bias=False)
        self.table = table  # a plain attribute: no state dict entry, untouched by FSDP/to_empty
        self._step = build_chunk_step(compile, backend)

    def forward(self, h: torch.Tensor, labels: torch.Tensor | None = None):
        if labels is None:
            return F.linear(h, self.weight)
        if self.table is None:
            raise RuntimeError("this model's head has no target table: labels reach the model only "
                               "with [prefix] fused_loss = true, which gives it one")
        check_labels(labels, self.out_features)
        return fused_target_loss(h.reshape(-1, h.shape[-1]), self.weight, labels.reshape(-1),
                                 *self.table.kernel_tensors(h.device), step=self._step)


class FusedHeadTransformer(Transformer):
    """torchtitan's Llama-3 Transformer; forward(..., labels=...) ends in the fused head loss."""

    def __init__(self, model_args):
        super().__init__(model_args)
        self.output = FusedLMHead(model_args.dim, model_args.vocab_size, model_args.fused_targets,
                                  model_args.fused_compile, model_args.fused_compile_backend)

    def forward(self, tokens, attention_masks=None, positions=None, labels=None):
        if labels is None:
            return super().forward(tokens, attention_masks=attention_masks, positions=positions)
        # Transformer.forward up to the head, which then takes the labels.
        h = self.tok_embeddings(tokens) if self.tok_embeddings is not None else tokens
        for layer in self.layers.values():
            h = layer(h, self.freqs_cis, attention_masks=attention_masks, positions=positions)
        h = self.norm(h) if self.norm is not None else h
        return self.output(h, labels)
