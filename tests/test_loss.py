"""The loss kernel and its torchtitan adapters against the dense reference, on seeded random inputs
over a vocabulary of 4,099 ids (not a power of two)."""

import pytest
import torch
import torch.nn.functional as F
from helpers import (
    assert_parts_close,
    fresh_logits,
    kernel_fn,
    plan_of,
    reference_fn,
    run_logits,
    sweep_specs,
)

from prefix_titan.objectives import IGNORE_INDEX, ObjectiveSpec, build_target_table, target_loss
from prefix_titan.objectives.kernel import position_weights
from prefix_titan.objectives.reference import reference_loss

SPECS = sweep_specs()
TOL = {torch.float32: dict(atol=2e-5, rtol=2e-5), torch.bfloat16: dict(atol=2e-3, rtol=2e-2)}


@pytest.fixture(scope="module")
def tables(odd_texts):
    return {str(s): build_target_table(odd_texts, s) for s in SPECS}


def check_against_reference(fn, table, dtype, seed, gamma=None, seq=1):
    batch = 97 if seq == 1 else 5
    logits, labels = fresh_logits(table.vocab_size, batch=batch, seq=seq, dtype=dtype)
    got = run_logits(fn, logits, labels)
    ref = run_logits(reference_fn(table, gamma), logits, labels)
    assert_parts_close(got, ref, TOL[dtype], seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("spec", SPECS, ids=ObjectiveSpec.arm_name)
@pytest.mark.parametrize("chunk_rows", [10, None], ids=["10-row-chunks", "default-chunks"])
def test_kernel_matches_reference(tables, spec, dtype, chunk_rows, seed):
    table = tables[str(spec)]
    # 10-row chunks: rows split into several chunks with a ragged last one.
    chunk_bytes = None if chunk_rows is None else chunk_rows * 4 * table.vocab_size
    check_against_reference(kernel_fn(table, chunk_bytes=chunk_bytes), table, dtype, seed)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize(
    "spec",
    [SPECS[0], SPECS[1], SPECS[2], SPECS[-1]],
    ids=ObjectiveSpec.arm_name,
)
def test_compiled_kernel_matches_reference(tables, spec, dtype, seed):
    torch._dynamo.reset()
    table = tables[str(spec)]
    fn = kernel_fn(table, loss=torch.compile(target_loss))
    check_against_reference(fn, table, dtype, seed)


@pytest.mark.parametrize("gamma", [0.5, 0.9, 1.0], ids=lambda g: f"gamma{g}")
@pytest.mark.parametrize("spec", [SPECS[0], SPECS[1], SPECS[-1]], ids=ObjectiveSpec.arm_name)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_position_weighted_kernel_matches_reference(tables, spec, gamma, dtype, seed):
    table = tables[str(spec)]
    chunk_bytes = 7 * 4 * table.vocab_size  # 7-row chunks: sequences of 23 cross chunk borders
    check_against_reference(
        kernel_fn(table, gamma, chunk_bytes=chunk_bytes), table, dtype, seed, gamma, seq=23
    )


@pytest.mark.slow
@pytest.mark.parametrize("gamma", [0.9, 1.0], ids=lambda g: f"gamma{g}")
def test_compiled_position_weighted_kernel_matches_reference(tables, gamma, seed):
    torch._dynamo.reset()
    table = tables[str(SPECS[-1])]
    fn = kernel_fn(table, gamma, loss=torch.compile(target_loss))
    check_against_reference(fn, table, torch.float32, seed, gamma, seq=23)


def test_position_weights_hand_checked():
    # gamma = 0.5, L = 3: w = 1, 1.5, 1.75 (mean 17/12); gamma = 1: w = k.
    torch.testing.assert_close(
        position_weights(3, 0.5), torch.tensor([1.0, 1.5, 1.75]) / (4.25 / 3)
    )
    torch.testing.assert_close(position_weights(4, 1.0), torch.tensor([1.0, 2, 3, 4]) / 2.5)
    assert position_weights(5, None) is None
    for gamma in (1e-3, 0.5, 0.999, 1.0):
        w = position_weights(2048, gamma)
        assert w.mean().item() == pytest.approx(1.0, abs=1e-5) and (w > 0).all()
        assert (w[1:] >= w[:-1]).all()  # later positions never weigh less
    with pytest.raises(ValueError, match=r"position_gamma must be in \(0, 1\]"):
        position_weights(8, 0.0)


def test_ce_equals_torch_cross_entropy(tables):
    table = tables[str(SPECS[0])]
    logits, labels = fresh_logits(table.vocab_size)
    logits, labels = logits[:, 0], labels[:, 0]
    objective, ce = target_loss(logits, labels, table.tensors("cpu"))
    expected = F.cross_entropy(logits, labels, reduction="sum", ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(objective, expected, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(ce, expected, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothing_equals_torch(odd_texts, eps):
    table = build_target_table(odd_texts, ObjectiveSpec("label_smoothing", epsilon=eps))
    logits, labels = fresh_logits(table.vocab_size)
    logits, labels = logits[:, 0], labels[:, 0]
    x, x_ref = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    objective, _ = target_loss(x, labels, table.tensors("cpu"))
    expected = F.cross_entropy(
        x_ref, labels, reduction="sum", ignore_index=IGNORE_INDEX, label_smoothing=eps
    )
    objective.backward(), expected.backward()
    torch.testing.assert_close(objective, expected, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "spec", [SPECS[1], ObjectiveSpec("prefix", tau=0.05, support="vocab"), SPECS[-1]], ids=str
)
@pytest.mark.parametrize("scale", [1e2, 1e4])
def test_extreme_logits_match_an_fp64_reference(tables, spec, scale, seed):
    """Logits spread over +-1e4: every softmax is one-hot, log-probabilities reach -1e4. The fp32
    kernel must agree with a float64 reference, not just stay finite."""
    table = tables[str(spec)]
    logits, labels = fresh_logits(table.vocab_size, scale=scale)
    got = run_logits(kernel_fn(table), logits, labels)
    ref = run_logits(reference_fn(table, dtype=torch.float64), logits.double(), labels)
    # fp32 logits of size ~4 * scale carry an ulp of ~scale * 5e-7; the sums add ~90 rows; the
    # gradient's probabilities are exp(z - lse) with z - lse exact only to that ulp.
    atols = (scale * 1e-5, scale * 1e-5, 3e-5 + scale * 1e-7)
    for g, r, atol, what in zip(got, ref, atols, ("objective", "plain CE", "gradient")):
        torch.testing.assert_close(
            g,
            r.to(g.dtype),
            rtol=1e-6,
            atol=atol,
            msg=lambda m, what=what: f"{what} (seed {seed}, scale {scale}): {m}",
        )


# The torchtitan adapters.


def test_target_loss_feeds_the_meter_and_plain_ce_is_unweighted(tables):
    from prefix_titan.titan.loss import TargetLoss
    from prefix_titan.titan.metrics import PlainCEMeter

    spec = SPECS[-1]
    table = tables[str(spec)]
    meter = PlainCEMeter()
    spec = ObjectiveSpec(**{**vars(spec), "position_gamma": 0.9})
    loss = TargetLoss(plan_of(table, spec), meter=meter)
    pred, labels = fresh_logits(table.vocab_size, batch=2, seq=33)
    ref_objective, ref_ce = reference_loss(pred, labels, table, 0.9)
    torch.testing.assert_close(loss(pred, labels), ref_objective, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(meter.ce_sum, ref_ce, rtol=1e-5, atol=1e-3)
    assert meter.tokens == (labels != IGNORE_INDEX).sum()
    validation = loss.plain_ce()
    torch.testing.assert_close(validation(pred, labels), ref_ce, rtol=1e-5, atol=1e-3)
    assert meter.tokens == (labels != IGNORE_INDEX).sum()  # validation feeds no meter
    unweighted, _ = reference_loss(pred, labels, table)
    assert not torch.allclose(ref_objective, unweighted)  # the weighting did change the objective


def test_fused_head_loss_reads_the_heads_sums():
    from prefix_titan.titan.loss import FusedHeadLoss
    from prefix_titan.titan.metrics import PlainCEMeter

    meter = PlainCEMeter()
    labels = torch.tensor([[1, 2, IGNORE_INDEX]])
    sums = (torch.tensor(3.0), torch.tensor(2.0))
    loss = FusedHeadLoss(8, meter)
    assert loss(sums, labels) is sums[0]
    assert meter.ce_sum == 2.0 and meter.tokens == 2
    assert loss.plain_ce()(sums, labels) is sums[1]
    with pytest.raises(TypeError, match="fused_loss = true needs the model to return"):
        loss(torch.zeros(1, 3, 8), labels)


def test_logits_loss_refuses_the_heads_sums(tables):
    from prefix_titan.titan.loss import TargetLoss

    with pytest.raises(TypeError, match="fused_loss is false"):
        TargetLoss(plan_of(tables[str(SPECS[0])], SPECS[0]))(
            (torch.tensor(1.0), torch.tensor(1.0)), torch.zeros(1, 4, dtype=torch.long)
        )


@pytest.mark.parametrize("bad", [-1, -101, 4099, 10**6])
def test_labels_out_of_range_are_refused(tables, bad):
    from prefix_titan.titan.loss import TargetLoss

    loss = TargetLoss(plan_of(tables[str(SPECS[0])], SPECS[0]))
    labels = torch.zeros(1, 8, dtype=torch.long)
    labels[0, 3] = bad
    with pytest.raises(ValueError, match=r"labels must be token ids in \[0, 4099\) or -100"):
        loss(torch.randn(1, 8, 4099), labels)


@pytest.mark.parametrize("fused", [False, True], ids=["logits", "fused-head"])
def test_bad_labels_in_a_training_step_are_counted_on_the_device_and_refused_after_it(
    tables, fused
):
    """With a meter (a training step) the loss does not check the labels on the host: it scores
    bad rows as ignored, the meter counts them on the device, and the step checks refuse them,
    naming the count, the smallest and the largest and the allowed range."""
    from prefix_titan.titan.loss import build_target_loss
    from prefix_titan.titan.metrics import PlainCEMeter
    from prefix_titan.titan.step_checks import check_step_sums

    spec = ObjectiveSpec(**{**vars(SPECS[2]), "fused_loss": fused})
    table = tables[str(SPECS[2])]
    plan = plan_of(table, spec)
    meter = PlainCEMeter()

    class Plans:
        def for_job(self, job_config):
            return plan

    loss = build_target_loss(None, plans=Plans(), meter=meter)
    labels = torch.randint(0, 4099, (2, 8))
    good = labels.clone()
    labels[0, 3], labels[1, 5] = 4099, -7
    good[0, 3] = good[1, 5] = IGNORE_INDEX
    if fused:  # the TrainSpec's head: it defers the check in a pass with gradients
        from prefix_titan.model.transformer import FusedLMHead

        head = FusedLMHead(24, 4099)
        head.set_plan(plan, defer_label_check=True)
        h = torch.randn(16, 24)
        with head.ending_in_loss(labels.reshape(-1)):
            got = loss(head(h), labels)
        want = plan.fused_loss(h, head.weight, good)[0]
        with torch.no_grad(), head.ending_in_loss(labels.reshape(-1)):  # validation: refused
            with pytest.raises(ValueError, match=r"labels must be token ids in \[0, 4099\)"):
                head(h)
    else:
        logits = torch.randn(2, 8, 4099)
        got = loss(logits, labels)
        want = plan.logits_loss(logits, good)[0]
    torch.testing.assert_close(got, want)  # bad rows scored as ignored: finite, no index error
    assert meter.bad_labels.tolist() == [2, -7, 4099]
    with pytest.raises(
        ValueError,
        match=r"step 5: 2 label\(s\) .* smallest -7, largest 4099\. Labels must be token ids in "
        r"\[0, 4099\) or -100",
    ):
        check_step_sums(meter, 5)
    meter.reset()
    loss(plan.fused_loss(h, head.weight, good) if fused else logits, good)
    check_step_sums(meter, 6)  # good labels: nothing to refuse


def test_without_a_meter_the_losses_check_labels_on_the_host(tables):
    """No meter, no deferred count: the training losses refuse a bad label themselves."""
    from prefix_titan.titan.loss import FusedHeadLoss

    labels = torch.tensor([[1, 2, 8]])
    with pytest.raises(ValueError, match=r"labels must be token ids in \[0, 8\) or -100"):
        FusedHeadLoss(8)((torch.tensor(1.0), torch.tensor(1.0)), labels)


def _bad_label_on_one_rank(rank, world, path):
    from prefix_titan.titan.metrics import PlainCEMeter
    from prefix_titan.titan.step_checks import check_step_sums

    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{path}", rank=rank, world_size=world
    )
    try:
        meter = PlainCEMeter()
        labels = torch.tensor([3, 4, 5]) if rank == 0 else torch.tensor([3, 9, -2])
        meter.add(torch.tensor(1.0), torch.tensor(3), torch.tensor(1.0), (labels, 8))
        with pytest.raises(ValueError, match=r"step 4: 2 label\(s\) .* smallest -2, largest 9"):
            check_step_sums(meter, 4)
        meter.reset()  # a rank that fed no labels at all still joins, and nothing is refused
        if rank == 1:
            meter.add(torch.tensor(1.0), torch.tensor(3), torch.tensor(1.0), (labels[:1], 8))
        check_step_sums(meter, 5)
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_a_bad_label_on_one_rank_stops_every_rank(tmp_path):
    """Two gloo ranks, the bad labels on rank 1 only: both ranks raise (else rank 0 would go on
    into the checkpoint's collectives and wait there)."""
    import torch.multiprocessing as mp

    mp.spawn(_bad_label_on_one_rank, args=(2, str(tmp_path / "store")), nprocs=2, join=True)


def test_logit_width_mismatch_is_refused(tables):
    from prefix_titan.titan.loss import TargetLoss

    with pytest.raises(ValueError, match="4000 classes but the target table has 4099"):
        TargetLoss(plan_of(tables[str(SPECS[0])], SPECS[0]))(
            torch.randn(1, 2, 4000), torch.zeros(1, 2, dtype=torch.long)
        )


def test_a_non_finite_step_is_refused():
    from prefix_titan.titan.metrics import PlainCEMeter
    from prefix_titan.titan.step_checks import check_finite_update
    from prefix_titan.titan.step_checks import check_step_sums as check_finite_loss

    meter = PlainCEMeter()
    meter.add(torch.tensor(2.0), torch.tensor(3), torch.tensor(2.5))
    check_finite_loss(meter, 7)
    meter.add(torch.tensor(1.0), torch.tensor(3), torch.tensor(float("nan")))
    with pytest.raises(
        FloatingPointError,
        match=r"step 8: the training loss is not finite \(objective sum nan, plain CE sum 3\)",
    ):
        check_finite_loss(meter, 8)
    meter.reset()
    check_finite_loss(meter, 9)  # nothing measured: nothing to refuse
    model = torch.nn.Linear(3, 2)
    model.weight.grad = torch.ones(2, 3)
    check_finite_update([model], 10)
    model.weight.grad[1, 2] = float("inf")
    with pytest.raises(FloatingPointError, match="step 11: a gradient is not finite") as e:
        check_finite_update([model], 11)
    # the advice a resume would take: another lr is another run (a resume refuses it)
    assert "lower optimizer.lr or training.max_norm, other data), start a run in a fresh" in str(
        e.value
    )
    # finite gradients, a weight the update made infinite (optimizer.lr inf did): stopped too
    model.weight.grad = torch.ones(2, 3)
    with torch.no_grad():
        model.weight.fill_(3e38)  # huge but finite: not stopped (a sum of squares overflowed)
    check_finite_update([model], 12)
    with torch.no_grad():
        model.bias[0] = float("nan")
    with pytest.raises(FloatingPointError, match="step 13: a weight is not finite .* optimizer.lr"):
        check_finite_update([model], 13)


def _one_rank_has_a_bad_weight(rank, world, path):
    from prefix_titan.titan.step_checks import check_finite_update, on_any_rank

    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{path}", rank=rank, world_size=world
    )
    try:
        model = torch.nn.Linear(3, 2)
        model.weight.grad = torch.ones(2, 3)
        check_finite_update([model], 1)
        if rank == 1:  # this rank's shard alone
            with torch.no_grad():
                model.weight[0, 0] = float("nan")
        with pytest.raises(FloatingPointError, match="step 2: a weight is not finite"):
            check_finite_update([model], 2)  # on every rank: none waits in the save
        assert on_any_rank(rank == 0) and not on_any_rank(False)
        # a loss only one rank has (a pipeline's last stage; rank 0 measures none), not finite
        from prefix_titan.titan.metrics import PlainCEMeter
        from prefix_titan.titan.step_checks import check_step_sums

        meter = PlainCEMeter()
        if rank == 1:
            meter.add(torch.tensor(float("nan")), torch.tensor(3), torch.tensor(1.0))
        with pytest.raises(FloatingPointError, match="step 3: the training loss is not finite"):
            check_step_sums(meter, 3)
        meter.reset()
        meter.add(torch.tensor(1.0), torch.tensor(3), torch.tensor(1.0))
        check_step_sums(meter, 4)
        # an empty shard (more ranks than a parameter's rows): no largest magnitude, no failure
        empty = torch.nn.Linear(3, 2)
        empty.weight = torch.nn.Parameter(torch.empty(0, 3) if rank == 1 else torch.ones(2, 3))
        check_finite_update([empty], 5)
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_a_non_finite_weight_on_one_rank_stops_every_rank(tmp_path):
    """Each rank sees its own weight shards; what one finds stops all of them (a rank stopping
    alone left the others waiting in the checkpoint's collectives). The same for a validation
    loss that only a pipeline's last stage has."""
    import torch.multiprocessing as mp

    mp.spawn(_one_rank_has_a_bad_weight, args=(2, str(tmp_path / "store")), nprocs=2, join=True)
