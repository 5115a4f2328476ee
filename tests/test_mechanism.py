"""The validation metrics (objectives/mechanism.py) against a dense reference: each computed from
the full softmax of every token, over a real BPE vocabulary padded to 4,099 ids."""

import numpy as np
import pytest
import torch
from helpers import fresh_head, fresh_logits

from prefix_titan.objectives import IGNORE_INDEX, ObjectiveSpec, build_plan, build_target_table
from prefix_titan.objectives.families import prefix_sets
from prefix_titan.objectives.kernel import row_weights
from prefix_titan.objectives.mechanism import (
    ECE_BINS,
    LAYOUT,
    mechanism_metrics,
    mechanism_sums,
    mechanism_tables,
    position_buckets,
)
from prefix_titan.objectives.reference import reference_loss

SPECS = [
    ObjectiveSpec("prefix", tau=0.5, normalize=True),
    ObjectiveSpec("label_smoothing", epsilon=0.1, position_gamma=0.9),
]


@pytest.fixture(scope="module")
def mt(odd_texts):
    return mechanism_tables(odd_texts)


def reference(logits, labels, texts, table, gamma):
    """Every metric from the dense softmax, token by token."""
    z = logits.reshape(-1, logits.shape[-1]).double()
    y = labels.reshape(-1)
    keep = y != IGNORE_INDEX
    p = torch.softmax(z[keep], -1)
    y = y[keep]
    n = len(y)
    ce = -torch.log(p[torch.arange(n), y])
    sets = prefix_sets(texts)
    strict = torch.tensor([sum(p[i, t] for t in sets[g][1:]) for i, g in enumerate(y.tolist())])
    conf, top = p.max(-1)
    correct = (top == y).double()
    brier = ((p - torch.nn.functional.one_hot(y, p.shape[1]).double()) ** 2).sum(-1)
    order = np.argsort(conf.numpy(), kind="stable")
    ece = sum(
        abs(conf.numpy()[g].sum() - correct.numpy()[g].sum()) / n
        for g in np.array_split(order, ECE_BINS)
    )
    objective, _ = reference_loss(logits, labels, table, gamma, dtype=torch.float64)
    gold_mass = table.dense(y).double()[torch.arange(n), y]
    support = [  # the target's other sparse entries: ids of positive weight besides the gold
        {int(v) for v, w in zip(table.idx[g], table.weight[g]) if w > 0 and int(v) != g}
        for g in y.tolist()
    ]
    out = {
        "support_mass": float(
            torch.tensor([float(sum((p[i, v] for v in s), 0.0)) for i, s in enumerate(support)])
            .double()
            .mean()
        ),
        "target_gold_mass": float(gold_mass.mean()),
        "implied_ce": float(-torch.log(gold_mass).mean()),
        "ce": float(ce.mean()),
        "prefix_mass": float(strict.mean()),
        "top1": float(correct.mean()),
        "brier": float(brier.mean()),
        "ece": float(ece),
        "objective": float(objective) / n,
    }
    lengths = [len(texts[g]) if texts[g] else 0 for g in y.tolist()]
    for name, lo, hi in (
        ("1", 1, 1),
        ("2-3", 2, 3),
        ("4-6", 4, 6),
        ("7+", 7, 99),
        ("no_text", 0, 0),
    ):
        sel = torch.tensor([lo <= n_ <= hi for n_ in lengths])
        if sel.any():
            out[f"ce_len_{name}"] = float(ce[sel].mean())
    sizes = [len(sets[g]) for g in y.tolist()]
    for name, lo, hi in (("1", 1, 1), ("2-3", 2, 3), ("4+", 4, 10**6)):
        sel = torch.tensor([lo <= k <= hi for k in sizes])
        if sel.any():
            out[f"ce_set_{name}"] = float(ce[sel].mean())
    # the target's position k in its window: 1 for the first
    k = torch.arange(1, labels.shape[-1] + 1).expand(labels.shape).reshape(-1)[keep]
    for name, lo, hi in (
        ("1-16", 1, 16),
        ("17-64", 17, 64),
        ("65-256", 65, 256),
        ("257-1024", 257, 1024),
        ("1025+", 1025, 10**9),
    ):
        sel = (k >= lo) & (k <= hi)
        if sel.any():
            out[f"ce_pos_{name}"] = float(ce[sel].mean())
    return out


@pytest.mark.parametrize("spec", SPECS, ids=ObjectiveSpec.arm_name)
def test_every_metric_matches_the_dense_reference(odd_texts, mt, spec, seed):
    table = build_target_table(odd_texts, spec)
    gamma = spec.position_gamma
    # Gold ids drawn so that every length and prefix-set bucket is filled.
    # (a window of 70: three position buckets)
    logits, labels = fresh_logits(table.vocab_size, batch=4, seq=70, scale=3.0)
    labels[0, :8] = torch.tensor([4098, 0, 1, 2, 3, 4, 5, 6])  # padding (no text) among them
    rw = row_weights(labels, gamma)
    stats = mechanism_sums(
        logits.reshape(-1, table.vocab_size),
        labels.reshape(-1),
        mt,
        table.tensors("cpu"),
        rw,
        positions=position_buckets(labels),
    )
    got = mechanism_metrics(stats)
    want = reference(logits, labels, odd_texts, table, gamma)
    assert {"ce_pos_1-16", "ce_pos_17-64", "ce_pos_65-256"} <= set(want)
    assert set(want) <= set(got), set(want) - set(got)
    for key, value in want.items():
        tol = 2e-3 if key == "ece" else 1e-5  # the ECE's bins are cut from a histogram
        assert got[key] == pytest.approx(value, abs=tol, rel=1e-5), (key, seed)


def test_a_gold_tied_at_the_top_counts_as_its_share_of_a_random_tie_break(odd_texts, mt):
    """bf16 logits are coarse near the top: a gold tied there with another token is right half
    the time, not always."""
    table = build_target_table(odd_texts, SPECS[0])
    z = torch.zeros(3, table.vocab_size, dtype=torch.bfloat16)
    y = torch.tensor([5, 6, 7])
    z[0, 5] = 2.0  # the gold alone at the top: right
    z[1, 6] = z[1, 9] = 2.0  # tied with one other: half
    z[2, 3] = 2.0  # another token on top: wrong
    got = mechanism_metrics(mechanism_sums(z, y, mt, table.tensors("cpu")))
    assert got["top1"] == pytest.approx((1 + 0.5 + 0) / 3)


def test_the_sums_add_over_batches_and_ignore_ignored_tokens(odd_texts, mt):
    table = build_target_table(odd_texts, SPECS[0])
    logits, labels = fresh_logits(table.vocab_size, batch=50, seq=1, ignored=0.2)
    z, y = logits[:, 0], labels[:, 0]
    whole = mechanism_sums(z, y, mt, table.tensors("cpu"))
    parts = sum(
        mechanism_sums(z[s], y[s], mt, table.tensors("cpu")) for s in (slice(0, 17), slice(17, 50))
    )
    torch.testing.assert_close(whole, parts, rtol=1e-12, atol=1e-9)
    assert int(whole[LAYOUT["tokens"]]) == int((y != IGNORE_INDEX).sum())
    flipped = y.clone()
    flipped[y == IGNORE_INDEX] = 0  # had the ignored ones counted, the sums would change
    assert not torch.equal(mechanism_sums(z, flipped, mt, table.tensors("cpu")), whole)


@pytest.mark.parametrize("bad", [-1, 4099])
def test_the_sums_refuse_a_label_that_is_no_token_id(odd_texts, mt, bad):
    table = build_target_table(odd_texts, SPECS[0])
    logits, labels = fresh_logits(table.vocab_size, batch=8, seq=1)
    labels[3, 0] = bad
    with pytest.raises(ValueError, match=str(bad)):
        mechanism_sums(logits[:, 0], labels[:, 0], mt, table.tensors("cpu"))


def test_the_fused_head_records_the_same_metrics_in_validation_only(odd_texts, mt, seed):
    from prefix_titan.model.transformer import FusedLMHead
    from prefix_titan.titan.metrics import ValidationMeter

    spec = ObjectiveSpec(
        "prefix", tau=0.5, fused_loss=True, fused_chunk_tokens=32, position_gamma=0.9
    )
    table = build_target_table(odd_texts, spec)
    plan = build_plan(spec, table, dim=47, mechanism=mt)
    head = FusedLMHead(47, table.vocab_size)
    meter = ValidationMeter()
    head.set_plan(plan, meter)
    h, w, labels = fresh_head(table.vocab_size, n=150, dim=47)
    labels = labels.view(3, 50)
    with torch.no_grad():
        head.weight.copy_(w)
    with head.ending_in_loss(labels):
        trained, _ = head(h)
    trained.backward()  # a training pass records nothing
    assert meter.sums is None
    with torch.no_grad(), head.ending_in_loss(labels):
        objective, ce = head(h)
    logits = h @ w.t()
    want = mechanism_sums(  # (chunks of 32 rows cut across the windows of 50: positions follow)
        logits,
        labels.reshape(-1),
        mt,
        table.tensors("cpu"),
        row_weights(labels, 0.9),
        positions=position_buckets(labels),
    )
    assert float(want[LAYOUT["position_tokens"]][1]) > 0
    torch.testing.assert_close(meter.sums, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ce.double(), want[LAYOUT["ce"]][0], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(
        objective.double(), want[LAYOUT["objective"]][0], rtol=1e-5, atol=1e-4
    )
    metrics = meter.take()
    kept = int((labels != IGNORE_INDEX).sum())
    assert meter.sums is None and metrics["ce"] == pytest.approx(float(ce) / kept, rel=1e-5)


def test_validation_loss_feeds_the_meter_from_the_same_pass(odd_texts, mt):
    from prefix_titan.titan.loss import TargetLoss
    from prefix_titan.titan.metrics import ValidationMeter

    spec = SPECS[1]
    table = build_target_table(odd_texts, spec)
    plan = build_plan(spec, table, mechanism=mt)
    meter = ValidationMeter()
    validation = TargetLoss(plan, validation_meter=meter).plain_ce()
    logits, labels = fresh_logits(table.vocab_size, batch=3, seq=20)
    ce = validation(logits, labels)
    _, ref_ce = reference_loss(logits, labels, table)
    torch.testing.assert_close(ce.double(), ref_ce.double(), rtol=1e-5, atol=1e-3)
    validation(logits, labels)
    metrics = meter.take()
    assert metrics["ce"] == pytest.approx(
        float(ref_ce) / (labels != IGNORE_INDEX).sum().item(), rel=1e-5
    )
    # by position in the window of 20: targets 1-16 and 17-20, from the same pass
    assert {k for k in metrics if k.startswith("ce_pos_")} == {"ce_pos_1-16", "ce_pos_17-64"}
    late = reference_loss(logits[:, 16:], labels[:, 16:], table)[1]
    assert metrics["ce_pos_17-64"] == pytest.approx(
        float(late) / (labels[:, 16:] != IGNORE_INDEX).sum().item(), rel=1e-5
    )
    assert meter.take() == {}  # taken: the next validation starts afresh


def test_no_positions_where_the_labels_are_not_whole_windows(odd_texts, mt):
    """Under context parallelism a rank's labels are chunks of the window: their index is not
    their position, so no CE by position is measured (it was, under the wrong buckets)."""
    spec = SPECS[0]
    table = build_target_table(odd_texts, spec)
    logits, labels = fresh_logits(table.vocab_size, batch=2, seq=20)
    whole = build_plan(spec, table, mechanism=mt).validation_sums(logits, labels)
    sharded = build_plan(spec, table, mechanism=mt, window_positions=False)
    stats = sharded.validation_sums(logits, labels)
    assert float(whole[LAYOUT["position_tokens"]].sum()) == int((labels != IGNORE_INDEX).sum())
    assert float(stats[LAYOUT["position_tokens"]].sum()) == 0
    assert not any(k.startswith("ce_pos_") for k in mechanism_metrics(stats))
    torch.testing.assert_close(stats[LAYOUT["ce"]], whole[LAYOUT["ce"]])
