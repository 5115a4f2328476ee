"""What a validation pass measures besides plain CE: how the model treats the prefixes of its
gold tokens (the direct signature of a prefix target), where the plain-CE cost falls, and how
calibrated it is. Plain PyTorch.

Per validation token (label != -100), from its logits z and gold y:
- plain CE, split by the gold token's length in characters (1, 2-3, 4-6, 7+, and tokens without
  ASCII text), by the size of its prefix set |S(y)|, gold included (1, 2-3, 4+), and by the
  target's position k in its window (1-16, 17-64, 65-256, 257-1024, 1025+: where position
  weighting moves the cost);
- prefix mass: the model's probability on the gold's strict prefixes, sum over S(y) \\ {y} of p(t);
- top-1 accuracy, the Brier score sum_v (p_v - [v = y])^2, and the expected calibration error of
  the top-1 confidence over ECE_BINS equal-mass bins;
- the objective's own loss (weighted as in training) where a target table is given, and what the
  target itself puts on the gold token: its mass there (`target_gold_mass`) and the plain CE a
  model matching the target exactly would have, -log of that mass (`implied_ce`): the part of a
  difference in plain CE that is there by construction.

Everything is a sum, kept in one float64 vector (`LAYOUT`), so a pass over several batches, ranks
and fused-head chunks adds vectors and gives the same metrics as one pass over all tokens. The
equal-mass bins are cut from a HISTOGRAM-bin histogram of the confidences (sums too), so they are
exact to 1/HISTOGRAM in confidence. One read of each row block of logits computes it all.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .kernel import check_labels, chunk_rows, mass_times, scored_rows, sparse_term
from .table import TableTensors

LENGTHS = ("1", "2-3", "4-6", "7+", "no text")
PREFIX_SETS = ("1", "2-3", "4+")
POSITIONS = ("1-16", "17-64", "65-256", "257-1024", "1025+")
"""The buckets of a target's position k in its window (1: the first target)"""
_POSITION_EDGES = (16, 64, 256, 1024)
ECE_BINS = 15
HISTOGRAM = 4096
CPU_BLOCK_BYTES = 32 * 2**20
"""fp32 working set of one row block on a CPU: larger than the loss kernel's, since this pass
does a dozen small operations per block besides its reads of the block"""
_SCALARS = (
    "tokens",
    "ce",
    "objective",
    "top1",
    "brier",
    "prefix_mass",
    "target_gold_mass",
    "implied_ce",
    "support_mass",
)


def _layout() -> dict[str, slice]:
    sizes = {
        **{s: 1 for s in _SCALARS},
        "length_tokens": len(LENGTHS),
        "length_ce": len(LENGTHS),
        "set_tokens": len(PREFIX_SETS),
        "set_ce": len(PREFIX_SETS),
        "position_tokens": len(POSITIONS),
        "position_ce": len(POSITIONS),
        "conf_tokens": HISTOGRAM,
        "conf_sum": HISTOGRAM,
        "conf_correct": HISTOGRAM,
    }
    out, start = {}, 0
    for name, size in sizes.items():
        out[name] = slice(start, start + size)
        start += size
    return out


LAYOUT = _layout()
SIZE = max(s.stop for s in LAYOUT.values())


class MechanismTables(NamedTuple):
    """Per gold id: its length bucket, its prefix-set bucket, and its strict prefixes."""

    length_bucket: torch.Tensor
    """[V] int64: index into LENGTHS"""
    set_bucket: torch.Tensor
    """[V] int64: index into PREFIX_SETS"""
    prefixes: torch.Tensor
    """[V, P] int64: the strict prefixes' ids (rows padded with the gold id)"""
    is_prefix: torch.Tensor
    """[V, P] bool: a real strict prefix (not padding)"""

    def to(self, device) -> MechanismTables:
        return MechanismTables(*(t.to(device) for t in self))


def mechanism_tables(texts: list[str | None]) -> MechanismTables:
    """The tables of a vocabulary (`texts` as objectives.table.token_texts gives them)."""
    from .families import prefix_sets

    sets = prefix_sets(texts)
    V = len(texts)
    P = max(1, max(len(s) - 1 for s in sets))
    prefixes = torch.arange(V).unsqueeze(1).repeat(1, P)
    is_prefix = torch.zeros(V, P, dtype=torch.bool)
    length, size = torch.empty(V, dtype=torch.int64), torch.empty(V, dtype=torch.int64)
    for y, members in enumerate(sets):
        strict = members[1:]
        if strict:
            prefixes[y, : len(strict)] = torch.tensor(strict)
            is_prefix[y, : len(strict)] = True
        n = len(texts[y]) if texts[y] is not None else 0
        length[y] = 4 if n == 0 else 0 if n == 1 else 1 if n <= 3 else 2 if n <= 6 else 3
        k = len(members)
        size[y] = 0 if k == 1 else 1 if k <= 3 else 2
    return MechanismTables(length, size, prefixes, is_prefix)


def position_buckets(labels: torch.Tensor) -> torch.Tensor:
    """[N] int64, the POSITIONS bucket of each target of labels [..., L] flattened to N rows: its
    position k in its window (k - 1 its index along the last dimension)."""
    k = torch.arange(1, labels.shape[-1] + 1, device=labels.device)
    edges = torch.tensor(_POSITION_EDGES, device=labels.device)
    return torch.bucketize(k, edges).expand(labels.shape).reshape(-1)


def _block_sums(z, y, keep, mt: MechanismTables, table, row_weight, background, positions, out):
    zf = z.float()
    m = zf.amax(dim=-1)  # (a max with indices costs several times more on a CPU)
    e = (zf - m[:, None]).exp_()
    s1 = e.sum(-1)
    s2 = torch.linalg.vector_norm(e, dim=-1).square()  # one read, no [rows, V] temporary
    del e
    lse = m + torch.log(s1)
    z_gold = zf.gather(1, y[:, None])[:, 0]
    # an ignored row (its label set to id 0) may be inf there (a masked logit): 0, not 0 * inf
    ce = torch.where(keep, lse - z_gold, 0.0)
    p_gold = torch.exp(-ce)
    k = keep.double()
    out[LAYOUT["tokens"]] += k.sum()
    out[LAYOUT["ce"]] += (ce.double() * k).sum()
    # top-1: the gold holds the largest logit; tied there with others (bf16 logits are coarse
    # near the top), it counts as the share a random tie-break gives it
    tied = (zf == m[:, None]).sum(-1)
    correct = torch.where(z_gold >= m, 1.0 / tied.double(), 0.0) * k
    out[LAYOUT["top1"]] += correct.sum()
    brier = s2 / (s1 * s1) - 2 * p_gold + 1
    out[LAYOUT["brier"]] += (brier.double() * k).sum()
    pre = torch.exp(zf.gather(1, mt.prefixes[y]) - lse[:, None]) * mt.is_prefix[y]
    out[LAYOUT["prefix_mass"]] += (pre.sum(-1).double() * k).sum()
    if table is not None:
        # (a target mass of 0 on a logit of -inf adds 0, as in the training loss: mass_times)
        objective = lse - sparse_term(table, y, zf.gather(1, table.idx[y]))
        if background:  # the uniform part's row sum: one more read, only where there is one
            objective = objective - mass_times(table.background[y], zf.sum(-1))
        if row_weight is not None:
            objective = objective * row_weight
        objective = torch.where(keep, objective, 0.0)  # (as ce above)
        out[LAYOUT["objective"]] += (objective.double() * k).sum()
        # the model's probability on the target's other sparse entries (the family's own
        # support: a prefix family's strict prefixes, a suffix family's suffixes, ...)
        others = (table.idx[y] != y[:, None]) & (table.weight[y] > 0)
        own = torch.exp(zf.gather(1, table.idx[y]) - lse[:, None]) * others
        out[LAYOUT["support_mass"]] += (own.sum(-1).double() * k).sum()
        gold_mass = table.target_at_idx[y, 0].double()  # column 0 holds the gold id
        out[LAYOUT["target_gold_mass"]] += (gold_mass * k).sum()
        out[LAYOUT["implied_ce"]] += (-torch.log(gold_mass.clamp_min(1e-300)) * k).sum()
    buckets = [
        ("length", mt.length_bucket[y], len(LENGTHS)),
        ("set", mt.set_bucket[y], len(PREFIX_SETS)),
    ]
    if positions is not None:
        buckets.append(("position", positions, len(POSITIONS)))
    for name, bucket, n in buckets:
        out[LAYOUT[f"{name}_tokens"]] += torch.bincount(bucket, weights=k, minlength=n)
        out[LAYOUT[f"{name}_ce"]] += torch.bincount(bucket, weights=ce.double() * k, minlength=n)
    conf = 1.0 / s1  # the top-1 probability: exp(m - lse)
    bins = (conf * HISTOGRAM).long().clamp_(0, HISTOGRAM - 1)
    out[LAYOUT["conf_tokens"]] += torch.bincount(bins, weights=k, minlength=HISTOGRAM)
    out[LAYOUT["conf_sum"]] += torch.bincount(bins, weights=conf.double() * k, minlength=HISTOGRAM)
    out[LAYOUT["conf_correct"]] += torch.bincount(bins, weights=correct, minlength=HISTOGRAM)


@torch.no_grad()
def chunk_sums(
    z, y, keep, mt: MechanismTables, table=None, row_weight=None, background=True, positions=None
) -> torch.Tensor:
    """The LAYOUT vector of logits [N, V] for gold ids y [N] where `keep` (cache-sized row
    blocks); `table` adds the objective's loss (times `row_weight`, [N], where given), whose
    uniform part is left out when `background` is false (a table without one); `positions`
    ([N], position_buckets) adds the CE by position (left at 0 where None)."""
    out = torch.zeros(SIZE, dtype=torch.float64, device=z.device)
    rows = chunk_rows(z, CPU_BLOCK_BYTES if z.device.type == "cpu" else None)
    for i in range(0, z.shape[0], rows):
        r = slice(i, i + rows)
        rw = None if row_weight is None else row_weight[r]
        pos = None if positions is None else positions[r]
        _block_sums(z[r], y[r], keep[r], mt, table, rw, background, pos, out)
    return out


def mechanism_sums(
    logits: torch.Tensor,
    labels: torch.Tensor,
    mt: MechanismTables,
    table: TableTensors | None = None,
    row_weight: torch.Tensor | None = None,
    background: bool = True,
    positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """The LAYOUT vector of logits [N, V] for labels [N] (-100: ignored; anything else outside
    [0, V) is refused); `positions` as for chunk_sums."""
    check_labels(labels, logits.shape[-1])
    keep, y = scored_rows(labels, logits.shape[-1])
    return chunk_sums(logits, y, keep, mt, table, row_weight, background, positions)


def observing_step(
    sink: torch.Tensor,
    mt: MechanismTables,
    background: bool = True,
    positions: torch.Tensor | None = None,
):
    """A fused-head chunk step for passes without gradients (validation) that adds each chunk's
    LAYOUT vector to `sink` and returns its (objective sum, CE sum) from the same pass.
    `positions` ([N] of the whole pass, position_buckets): each chunk's own rows, the chunks
    taken in order (as the fused head's loop takes them)."""
    done = [0]  # the rows of the pass taken by earlier chunks

    def step(z, y, keep, table, row_weight, want_grad):
        if want_grad:
            raise RuntimeError("the observing chunk step computes no gradient: validation only")
        r = slice(done[0], done[0] + z.shape[0])
        done[0] = r.stop
        pos = None if positions is None else positions[r]
        stats = chunk_sums(z, y, keep, mt, table, row_weight, background, pos)
        sink.add_(stats)
        return stats[LAYOUT["objective"]][0].float(), stats[LAYOUT["ce"]][0].float(), None

    return step


def ece(counts: torch.Tensor, conf: torch.Tensor, correct: torch.Tensor, bins: int) -> float:
    """Expected calibration error over `bins` equal-mass bins cut from a histogram (counts, sum of
    confidences and of correct answers per histogram bin): sum over bins of |conf - acc| x share."""
    total = float(counts.sum())
    if total == 0:
        return float("nan")
    cum = torch.cumsum(counts, 0)
    group = torch.clamp((cum - counts / 2) * bins / total, max=bins - 1).long()
    n = torch.zeros(bins, dtype=torch.float64).index_add_(0, group, counts)
    c = torch.zeros(bins, dtype=torch.float64).index_add_(0, group, conf)
    a = torch.zeros(bins, dtype=torch.float64).index_add_(0, group, correct)
    filled = n > 0
    return float(((c[filled] - a[filled]).abs()).sum() / total)


def mechanism_metrics(stats: torch.Tensor, objective: bool = True) -> dict[str, float]:
    """Means of a LAYOUT vector: {"ce", "ce_len_<bucket>", "ce_set_<bucket>", "ce_pos_<bucket>",
    "prefix_mass",
    "top1", "brier", "ece", and "objective", "target_gold_mass", "implied_ce", "support_mass"
    where a table was given}."""
    s = stats.double().cpu()
    n = float(s[LAYOUT["tokens"]])
    if n == 0:
        return {}

    def mean(name: str) -> float:
        return float(s[LAYOUT[name]]) / n

    out = {k: mean(k) for k in ("ce", "prefix_mass", "top1", "brier")}
    if objective:
        out.update(
            {k: mean(k) for k in ("objective", "target_gold_mass", "implied_ce", "support_mass")}
        )
    for name, labels in (("len", LENGTHS), ("set", PREFIX_SETS), ("pos", POSITIONS)):
        key = {"len": "length", "set": "set", "pos": "position"}[name]
        tokens, ce = s[LAYOUT[f"{key}_tokens"]], s[LAYOUT[f"{key}_ce"]]
        for label, t, c in zip(labels, tokens.tolist(), ce.tolist()):
            if t > 0:
                out[f"ce_{name}_{label.replace(' ', '_')}"] = c / t
    out["ece"] = ece(
        s[LAYOUT["conf_tokens"]], s[LAYOUT["conf_sum"]], s[LAYOUT["conf_correct"]], ECE_BINS
    )
    return out
