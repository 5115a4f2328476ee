"""Target table: every objective as "uniform background b plus K sparse weights" per gold id.

For gold id y the training target is   p(v) = b[y] + sum_k w[y, k] * [v == idx[y, k]],
with idx[y, 0] == y always. One table of shape [V, K] serves every objective:

- ce:              idx = [y], w = [1],      b = 0
- label_smoothing: idx = [y], w = [1 - eps], b = eps / V       (torch's definition)
- prefix:          idx = S(y) (y first), w = softmax(score / tau) over S, b = 0     (support="prefix")
                   or the literal formula where every token outside S scores 0 and
                   keeps weight e^0: b = 1/Z, w = (e^(score/tau) - 1)/Z           (support="vocab")

S(y) = vocabulary tokens whose decoded text is a non-empty prefix of decode(y). Special tokens and
tokens whose text is not pure ASCII never join S; such a gold id gets a one-hot target.
Weights are computed in float64 log space: tau = 0.05 with a 100-character token is e^2000.

Run `python -m prefix_titan.targets --help` to print the target of one gold token.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

OBJECTIVES = ("ce", "label_smoothing", "prefix")
SUPPORTS = ("prefix", "vocab")
TAU_SWEEP = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


@dataclass
class ObjectiveSpec:
    """What the model is trained to predict: the `[prefix]` job-config section (config.py)."""

    objective: str = "prefix"
    """Training target: ce | label_smoothing | prefix"""

    tau: float = 0.5
    """Softmax temperature of the prefix scores (finite, > 0)"""

    normalize: bool = False
    """Score len(t)/len(s) instead of len(t)"""

    support: str = "prefix"
    """prefix: softmax over the prefix set only; vocab: every other token scores 0 (weight e^0)"""

    epsilon: float = 0.1
    """Label-smoothing mass for objective = label_smoothing, in [0, 1)"""

    fused_loss: bool = False
    """Run the output projection and the loss together, chunked over tokens (never the full logits)"""

    def validate(self) -> "ObjectiveSpec":
        if self.objective not in OBJECTIVES:
            raise ValueError(
                f"prefix.objective must be one of {', '.join(OBJECTIVES)}; got {self.objective!r}"
            )
        if self.support not in SUPPORTS:
            raise ValueError(
                f"prefix.support must be one of {', '.join(SUPPORTS)}; got {self.support!r}"
            )
        if isinstance(self.tau, bool) or not isinstance(self.tau, (int, float)):
            raise ValueError(f"prefix.tau must be a finite number > 0; got {self.tau!r}")
        if not math.isfinite(self.tau) or self.tau <= 0:
            raise ValueError(f"prefix.tau must be a finite number > 0; got {self.tau!r}")
        if not isinstance(self.normalize, bool):
            raise ValueError(f"prefix.normalize must be true or false; got {self.normalize!r}")
        if not isinstance(self.fused_loss, bool):
            raise ValueError(f"prefix.fused_loss must be true or false; got {self.fused_loss!r}")
        eps = self.epsilon
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (0.0 <= eps < 1.0):
            raise ValueError(f"prefix.epsilon must be a number in [0, 1); got {eps!r}")
        return self


@dataclass
class TargetTable:
    """idx [V, K] int64 (column 0 is the gold id), weight [V, K] float32, background [V] float32."""

    idx: torch.Tensor
    weight: torch.Tensor
    background: torch.Tensor
    _on_device: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def vocab_size(self) -> int:
        return self.idx.shape[0]

    def to(self, device: torch.device | str) -> "TargetTable":
        return TargetTable(self.idx.to(device), self.weight.to(device), self.background.to(device))

    def kernel_tensors(self, device: torch.device | str) -> tuple[torch.Tensor, ...]:
        """(idx, weight, background, target_at_idx) on `device`, the loss kernels' table arguments;
        made once per device."""
        device = torch.device(device)
        if device not in self._on_device:
            tensors = (self.idx, self.weight, self.background, self.target_at_idx())
            self._on_device[device] = tuple(t.to(device) for t in tensors)
        return self._on_device[device]

    def target_at_idx(self) -> torch.Tensor:
        """[V, K]: the target probability p(idx[y, k]) = b[y] + all of row y's weight on that id
        (an id may repeat in a row: padding repeats the gold id with weight 0)."""
        out = torch.empty_like(self.weight)
        for rows in torch.arange(self.vocab_size).split(2048):  # [rows, K, K] stays small
            idx, w = self.idx[rows], self.weight[rows]
            same = idx.unsqueeze(2) == idx.unsqueeze(1)
            out[rows] = self.background[rows, None] + (same * w.unsqueeze(1)).sum(2)
        return out

    def dense(self, labels: torch.Tensor) -> torch.Tensor:
        """The full [N, V] target for 1-D labels (reference and inspection only: never in training)."""
        target = self.background[labels].unsqueeze(1).expand(-1, self.vocab_size).clone()
        return target.scatter_add_(1, self.idx[labels], self.weight[labels])


def token_texts(tokenizer, vocab_size: int | None = None) -> list[str | None]:
    """Decoded text of every id, or None where the id can never be a prefix target.

    `tokenizer` is a `tokenizers.Tokenizer` (torchtitan's HuggingFaceTokenizer keeps one in
    `.tokenizer`). Ids past the tokenizer's size (model vocabulary padding) are None.
    """
    tok = getattr(tokenizer, "tokenizer", tokenizer)
    n = tok.get_vocab_size(with_added_tokens=True)
    size = n if vocab_size is None else vocab_size
    if n > size:
        raise ValueError(
            f"the tokenizer has {n} tokens but model.vocab_size is {size}: the model's "
            f"vocabulary must hold every token id (choose a flavor whose vocab_size >= {n})"
        )
    special = {i for i, t in tok.get_added_tokens_decoder().items() if t.special}
    decoded = tok.decode_batch([[i] for i in range(n)], skip_special_tokens=False)
    texts: list[str | None] = [None] * size
    for i, text in enumerate(decoded):
        if i not in special and text and text.isascii():
            texts[i] = text
    return texts


def tiktoken_texts(path: str, vocab_size: int) -> list[str | None]:
    """Token texts from a tiktoken rank file ("<base64 bytes> <id>" per line), the format of
    Meta's `original/tokenizer.model`. Ids past the file (Llama-3's 256 special tokens) are None."""
    import base64

    texts: list[str | None] = [None] * vocab_size
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            token, rank = line.split()
            if int(rank) >= vocab_size:
                raise ValueError(f"{path} has token id {rank}, past model vocab_size {vocab_size}")
            raw = base64.b64decode(token)
            if raw and raw.isascii():
                texts[int(rank)] = raw.decode("ascii")
    return texts


def prefix_sets(texts: list[str | None]) -> list[list[int]]:
    """S(y) for every id, gold first; [y] alone for ids without text."""
    by_text: dict[str, list[int]] = {}
    for i, t in enumerate(texts):
        if t is not None:
            by_text.setdefault(t, []).append(i)
    sets = []
    for y, s in enumerate(texts):
        members = [y]
        if s is not None:
            for n in range(1, len(s) + 1):
                members.extend(t for t in by_text.get(s[:n], ()) if t != y)
        sets.append(members)
    return sets


def build_target_table(texts: list[str | None], spec: ObjectiveSpec) -> TargetTable:
    """Precompute the target of every gold id (seconds for a 128K vocabulary)."""
    spec.validate()
    V = len(texts)
    if spec.objective != "prefix":
        idx = torch.arange(V).unsqueeze(1)
        keep = 1.0 - spec.epsilon if spec.objective == "label_smoothing" else 1.0
        back = spec.epsilon / V if spec.objective == "label_smoothing" else 0.0
        return TargetTable(idx, torch.full((V, 1), keep), torch.full((V,), back))

    sets = prefix_sets(texts)
    K = max(len(s) for s in sets)
    idx = np.repeat(np.arange(V, dtype=np.int64)[:, None], K, axis=1)  # padding repeats gold
    logit = np.full((V, K), -np.inf)
    has_text = np.array([t is not None for t in texts])
    logit[~has_text, 0] = 0.0  # keeps the log-space arithmetic finite; overwritten below
    for y, members in enumerate(sets):
        if texts[y] is None:
            continue
        lengths = np.array([len(texts[t]) for t in members], dtype=np.float64)
        score = lengths / len(texts[y]) if spec.normalize else lengths
        idx[y, : len(members)] = members
        logit[y, : len(members)] = score / spec.tau

    row_max = logit.max(axis=1, keepdims=True)
    log_mass = row_max[:, 0] + np.log(np.exp(logit - row_max).sum(axis=1))  # log sum over S
    if spec.support == "prefix":
        log_z = log_mass
        back = np.zeros(V)
    else:  # the V - |S| tokens outside S each keep weight e^0
        outside = np.array([V - len(s) for s in sets], dtype=np.float64)
        with np.errstate(divide="ignore"):
            log_z = np.logaddexp(log_mass, np.log(outside))
        back = np.exp(-log_z)
    weight = np.exp(logit - log_z[:, None]) - back[:, None]
    weight[np.isneginf(logit)] = 0.0
    # Gold ids without text: one-hot, whatever the support.
    weight[~has_text] = 0.0
    weight[~has_text, 0] = 1.0
    back[~has_text] = 0.0
    return TargetTable(
        torch.from_numpy(idx), torch.from_numpy(weight).float(), torch.from_numpy(back).float()
    )


def describe_target(table: TargetTable, texts: list[str | None], gold: int) -> dict:
    """Non-zero sparse entries of one gold id's target, largest first, plus the background."""
    b = float(table.background[gold])
    entries = {}
    for i, w in zip(table.idx[gold].tolist(), table.weight[gold].tolist()):
        if w != 0.0 or i == gold:
            entries[i] = entries.get(i, b) + w
    rows = [
        {"id": i, "text": texts[i], "prob": p}
        for i, p in sorted(entries.items(), key=lambda kv: -kv[1])
    ]
    others = table.vocab_size - len(rows)
    return {
        "gold_id": gold,
        "gold_text": texts[gold],
        "entries": rows,
        "background_per_token": b,
        "background_tokens": others,
        "background_mass": b * others,
        "total": sum(r["prob"] for r in rows) + b * others,
    }


def _main(argv: list[str] | None = None) -> None:
    from tokenizers import Tokenizer

    p = argparse.ArgumentParser(
        prog="python -m prefix_titan.targets",
        description="Print the training target of one gold token.",
    )
    p.add_argument("--hf-assets-path", required=True, help="folder holding tokenizer.json")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--token", help='exact text of one token, e.g. " personality"')
    which.add_argument("--token-id", type=int)
    p.add_argument("--objective", default="prefix", choices=OBJECTIVES)
    p.add_argument("--tau", type=float, default=0.5)
    p.add_argument("--normalize", action="store_true")
    p.add_argument("--support", default="prefix", choices=SUPPORTS)
    p.add_argument("--epsilon", type=float, default=0.1)
    p.add_argument("--vocab-size", type=int, default=None, help="model vocab (default: tokenizer's)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)

    spec = ObjectiveSpec(a.objective, a.tau, a.normalize, a.support, a.epsilon)
    try:
        spec.validate()
        tok = Tokenizer.from_file(f"{a.hf_assets_path}/tokenizer.json")
        texts = token_texts(tok, a.vocab_size)
    except Exception as e:  # bad settings (ValueError), a missing file; tokenizers raises Exception
        p.error(str(e))
    if a.token is not None:
        ids = [i for i, t in enumerate(texts) if t == a.token]
        if not ids:
            pieces = [tok.id_to_token(i) for i in tok.encode(a.token, add_special_tokens=False).ids]
            p.error(f"{a.token!r} is not one ASCII vocabulary token; it tokenizes as {pieces}")
        gold = ids[0]
    else:
        gold = a.token_id
        if not 0 <= gold < len(texts):
            p.error(f"--token-id must be in [0, {len(texts)}); got {gold}")
    start = time.perf_counter()
    table = build_target_table(texts, spec)
    info = describe_target(table, texts, gold)
    info["table_build_seconds"] = round(time.perf_counter() - start, 3)
    info["spec"] = spec.__dict__
    if a.json:
        print(json.dumps(info, indent=2))
        return
    print(f"gold {info['gold_id']} {info['gold_text']!r}   {spec}")
    for r in info["entries"]:
        print(f"  {r['id']:>7}  {r['prob']:.6g}  {r['text']!r}")
    print(
        f"  background: {info['background_per_token']:.6g} on each of "
        f"{info['background_tokens']} other tokens (mass {info['background_mass']:.6g})"
    )
    print(f"  total {info['total']:.6f}; table built in {info['table_build_seconds']} s")


if __name__ == "__main__":
    _main()
