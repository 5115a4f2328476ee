"""The target table: every objective as "uniform background b plus K sparse weights" per gold id.

For gold id y the training target is   p(v) = b[y] + sum_k w[y, k] * [v == idx[y, k]],
with idx[y, 0] == y always. Target families (families.py) build one; the loss kernels read it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

import torch

MAX_ENTRIES = 1024
"""Most sparse entries per row (K) a family may return: the kernels gather K logits per token."""

SHOWN = 5
"""Most entries of a row a refusal of a table shows (the largest; it counts the others)"""


def indexed(device: torch.device | str) -> torch.device:
    """`device` with its index: torch.device("cuda") is the current CUDA device's cuda:N, as a
    tensor there reports it, so that what is cached by device is found again."""
    device = torch.device(device)
    if device.index is None and device.type not in ("cpu", "meta"):
        module = getattr(torch, device.type, None)
        if module is not None and hasattr(module, "current_device"):
            device = torch.device(device.type, module.current_device())
    return device


def _bytes(t: torch.Tensor, dtype: torch.dtype) -> bytes:
    """t's values as `dtype` on the host (a float's -0.0 as 0.0: equal values, equal bytes)."""
    t = t.detach().to("cpu", dtype)
    if dtype.is_floating_point:
        t = t + 0.0
    return t.contiguous().numpy().tobytes()


class TableTensors(NamedTuple):
    """A table on one device, as the loss kernels read it."""

    idx: torch.Tensor
    """[V, K] int64: the sparse ids of each gold id's target (column 0: the gold id)"""
    weight: torch.Tensor
    """[V, K] float32: their weights (the target is background + weight at each id)"""
    background: torch.Tensor
    """[V] float32: the target's mass on every id"""
    target_at_idx: torch.Tensor
    """[V, K] float32: the whole target probability at each sparse id (TargetTable.target_at_idx)"""
    has_background: bool = True
    """Some id's target has a uniform part (else the row passes skip the row sum)"""


@dataclass
class TargetTable:
    """idx [V, K] int64 (column 0 is the gold id), weight [V, K] float32, background [V] float32."""

    idx: torch.Tensor
    weight: torch.Tensor
    background: torch.Tensor
    built_by: Any = field(default=None, repr=False, compare=False)
    """The ObjectiveSpec whose family built the table (build_target_table), which a loss plan
    must be of (build_plan); None where unknown. Not part of the digest."""
    _on_device: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def vocab_size(self) -> int:
        return self.idx.shape[0]

    @cached_property
    def has_background(self) -> bool:
        """The target has a uniform part (label smoothing, prefix with vocab support): read on
        the host, once."""
        return bool((self.background != 0).any())

    @cached_property
    def sha256(self) -> str:
        """The table's digest (its shapes and the bytes of idx, weight and background): equal for
        equal tables wherever and by whatever code they were built. Computed once: a sweep's
        checks compare one table with every seed's run."""
        import hashlib

        h = hashlib.sha256()
        for t, dtype in ((self.idx, torch.int64), (self.weight, torch.float32)):
            h.update(f"{tuple(t.shape)}{dtype}".encode())
            h.update(_bytes(t, dtype))
        h.update(_bytes(self.background, torch.float32))
        return h.hexdigest()

    def to(self, device: torch.device | str) -> TargetTable:
        return TargetTable(
            self.idx.to(device), self.weight.to(device), self.background.to(device), self.built_by
        )

    def tensors(self, device: torch.device | str) -> TableTensors:
        """The table on `device`, as the loss kernels read it; made once per device."""
        device = indexed(device)
        if device not in self._on_device:
            tensors = (self.idx, self.weight, self.background, self.target_at_idx())
            self._on_device[device] = TableTensors(
                *(t.to(device) for t in tensors), has_background=self.has_background
            )
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


class TokenTextError(ValueError):
    """A tokenizer whose tokens' texts token_texts cannot read (two ids of one text, a decoder
    that rewrites the token before): `prefix_titan.train` ends the run with its message, naming
    model.hf_assets_path, status 2."""


class TableError(ValueError):
    """A target table that check_table refuses: its message names the family and what is wrong
    (a ValueError, so that every caller that refuses bad settings refuses it too)."""


def check_table(
    table, vocab_size: int, family: str, texts: list[str | None] | None = None
) -> TargetTable:
    """Refuse a table that is not a target distribution per gold id, naming the family (and a
    bad row's token, from the vocabulary's `texts`)."""

    def bad(what: str):
        return TableError(f"target family {family!r} returned a table where {what}")

    def row(y: int) -> str:
        text = texts[y] if texts is not None and y < len(texts) else None
        return f"row {y}" if text is None else f"row {y} (gold {text!r})"

    if not isinstance(table, TargetTable):
        raise bad(f"the result is a {type(table).__name__}, not a TargetTable")
    idx, w, b = table.idx, table.weight, table.background
    for name, t in (("idx", idx), ("weight", w), ("background", b)):
        if not isinstance(t, torch.Tensor):
            kind = f"{type(t).__module__}.{type(t).__name__}"
            raise bad(f"{name} is a {kind}; it must be a torch.Tensor (torch.from_numpy makes one)")
    if idx.dtype != torch.int64 or idx.dim() != 2 or idx.shape[0] != vocab_size:
        raise bad(f"idx is {tuple(idx.shape)} {idx.dtype}; it must be int64 [{vocab_size}, K]")
    K = idx.shape[1]
    if not 1 <= K <= MAX_ENTRIES:
        wider = (
            " (a wider target: keep each row's heaviest entries, or give its even part as the "
            "background; docs/objectives.md, 'Rows wider than K')"
            if K > MAX_ENTRIES
            else ""
        )
        raise bad(f"rows have {K} sparse entries; allowed: 1 to {MAX_ENTRIES}{wider}")
    convert = " (.float() converts it)" if w.is_floating_point() and w.shape == idx.shape else ""
    if w.shape != idx.shape or w.dtype != torch.float32:
        raise bad(
            f"weight is {tuple(w.shape)} {w.dtype}; it must be float32 [{vocab_size}, {K}] (the "
            f"kernels compute in float32){convert}"
        )
    convert = (
        " (.float() converts it)" if b.is_floating_point() and b.shape == (vocab_size,) else ""
    )
    if b.shape != (vocab_size,) or b.dtype != torch.float32:
        raise bad(
            f"background is {tuple(b.shape)} {b.dtype}; it must be float32 [{vocab_size}]{convert}"
        )

    def first(rows: torch.Tensor) -> int | None:
        """The first gold id whose row is bad (rows: [V] bool), or None."""
        found = rows.nonzero()
        return int(found[0, 0]) if len(found) else None

    outside = (idx < 0) | (idx >= vocab_size)
    if (y := first(outside.any(1))) is not None:
        ids = ", ".join(str(int(i)) for i in idx[y][outside[y]].unique()[:SHOWN])
        raise bad(f"idx holds ids outside [0, {vocab_size}): {row(y)} holds {ids}")

    def entries(y: int, picked: torch.Tensor | None = None, others: str = "0") -> str:
        """`id: weight` of at most SHOWN of row y's entries, those `picked` ([K] bool; default:
        the nonzero ones), the largest in size (a non-finite one) first, how many more, and what
        the rest (`others`) are."""
        values = w[y].double()
        picked = values != 0 if picked is None else picked
        ks = sorted(
            picked.nonzero()[:, 0].tolist(),
            key=lambda k: -math.inf if not math.isfinite(values[k]) else -abs(float(values[k])),
        )
        if not ks:
            return f"all {K} entries {others}"
        text = ", ".join(f"{int(idx[y, k])}: {float(values[k]):.6g}" for k in ks[:SHOWN])
        more = f", and {len(ks) - SHOWN} more" if len(ks) > SHOWN else ""
        rest = K - len(ks)
        return f"{text}{more}{f'; the other {rest} of its {K} entries {others}' if rest else ''}"

    if (y := first(idx[:, 0] != torch.arange(vocab_size))) is not None:
        raise bad(
            f"idx[y, 0] is not the gold id y in every row: {row(y)} starts with {int(idx[y, 0])}"
        )
    if (y := first(~torch.isfinite(w).all(1) | ~torch.isfinite(b))) is not None:
        finite = torch.isfinite(w[y])
        fault = (
            "weights are not all finite" if not bool(finite.all()) else "a background is not finite"
        )
        shown = entries(y, ~finite, "finite")
        raise bad(f"{fault}: {row(y)} (id: weight {shown}; background {float(b[y])})")
    if (y := first((w < 0).any(1) | (b < 0))) is not None:
        negative = w[y] < 0
        if not bool(negative.any()):
            fault, shown = "the background is negative", ""
        else:
            fault = "some weights are negative"
            if float(b[y]) < 0:
                fault = "the background and some weights are negative"
            shown = f"id: weight {entries(y, negative, '>= 0')}; "
        raise bad(
            f"{fault} (every weight and background must be >= 0): {row(y)} ({shown}background "
            f"{float(b[y]):.6g} on each of {vocab_size} ids)"
        )
    total = b.double() * vocab_size + w.double().sum(1)
    if (y := first((total - 1).abs() > SUM_TOLERANCE)) is not None:
        raise bad(
            f"{row(y)} sums to {float(total[y]):.6g}, not 1 within {SUM_TOLERANCE:g} (id: weight "
            f"{entries(y)}; background {float(b[y]):.6g} on each of {vocab_size} ids)"
        )
    return table


SUM_TOLERANCE = 1e-4
"""How far from 1 a row's sum may be (float32 rounding over a row of up to MAX_ENTRIES entries
stays far below it); the kernels take it as 1, so a row off by d moves its token's loss by d
times the log-sum-exp of its logits"""


def token_texts(tokenizer, vocab_size: int | None = None) -> list[str | None]:
    """Decoded text of every id, or None where the id can never be a prefix target.

    `tokenizer` is a `tokenizers.Tokenizer` (torchtitan's HuggingFaceTokenizer keeps one in
    `.tokenizer`). Ids past the tokenizer's size (model vocabulary padding) are None.

    A token's text is its text after another token (`anchor_id`): decode([anchor, id]) less the
    anchor's own text. Decoded alone, a SentencePiece-style token loses its word boundary
    (`▁person` would read 'person', as `person` does); after the anchor it reads ' person'. A
    byte-level BPE's texts are its tokens' bytes either way. Two ids with one text are refused:
    their prefix targets would be ambiguous.
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
    special |= byte_fallback_ids(tok)  # (no text of their own: as partial UTF-8 bytes)
    decoded = tok.decode_batch([[i] for i in range(n)], skip_special_tokens=False)
    anchor = anchor_id(decoded, special)
    if anchor is not None:
        head = decoded[anchor]
        pairs = tok.decode_batch([[anchor, i] for i in range(n)], skip_special_tokens=False)
        for i, pair in enumerate(pairs):
            if i not in special and not pair.startswith(head):
                raise TokenTextError(
                    f"the tokenizer decodes token id {anchor} ({head!r}) followed by id {i} as "
                    f"{pair!r}, which does not start with {head!r}: its decoder does not "
                    "decode a token after another as it decodes it alone, so token_texts cannot "
                    f"read its tokens' texts ({MADE_OTHERWISE})"
                )
        decoded = [pair[len(head) :] for pair in pairs]
    texts: list[str | None] = [None] * size
    for i, text in enumerate(decoded):
        if i not in special and text and text.isascii():
            texts[i] = text
    check_distinct(texts, tok)
    return texts


MADE_OTHERWISE = (
    "build_target_table takes texts made otherwise: one str or None per token id, no text twice"
)


BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")
"""How a SentencePiece-style BPE with byte fallback (Llama-2, Mistral) names its byte tokens"""


def byte_fallback_ids(tok) -> set[int]:
    """The ids of a byte-fallback BPE's byte tokens (`<0x0A>`, ...: the model's `byte_fallback`
    on), which stand in for characters its vocabulary lacks: no text of their own (an ASCII one
    would repeat the text of the vocabulary's own token for that character), as partial UTF-8
    bytes have none. Empty for any other tokenizer."""
    import json

    model = json.loads(tok.to_str()).get("model") or {}
    if not model.get("byte_fallback"):
        return set()
    return {
        i
        for token, i in tok.get_vocab(with_added_tokens=False).items()
        if BYTE_TOKEN.fullmatch(token)
    }


def anchor_id(decoded: list[str], special: set[int]) -> int | None:
    """The id that token_texts decodes every token after: the first that is no special token and
    decodes alone to ASCII letters and digits; None where none does."""
    for i, text in enumerate(decoded):
        if i not in special and text.isascii() and text.isalnum():
            return i
    return None


def check_distinct(texts: list[str | None], tok) -> None:
    """Refuse two ids of one text: a prefix target could not tell them apart."""
    seen: dict[str, int] = {}
    for i, text in enumerate(texts):
        if text is None:
            continue
        if text in seen:
            j = seen[text]
            raise TokenTextError(
                f"token ids {j} ({tok.id_to_token(j)!r}) and {i} ({tok.id_to_token(i)!r}) both "
                f"decode to {text!r}, so their prefix targets would be ambiguous: the "
                "tokenizer's decoder drops what tells them apart (an end-of-word suffix such as "
                "'</w>', or spaces it cleans up around punctuation), or it has an added token "
                f"that is not special spelled as a token of its vocabulary ({MADE_OTHERWISE})"
            )
        seen[text] = i


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
