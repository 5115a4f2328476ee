"""The loss's memory traffic and host waits, counted from the operations that run
(objectives/traffic.py): the eager passes move the bytes their comments name, the fused head
allocates no second chunk of logits and no zero-filled accumulator, and a training step never
waits for the host."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from helpers import fresh_head, plan_of
from torch.utils._python_dispatch import TorchDispatchMode

from prefix_titan.objectives import IGNORE_INDEX, ObjectiveSpec, build_target_table
from prefix_titan.objectives.fused import add_weight_grad, build_chunk_step
from prefix_titan.objectives.kernel import (
    PyTorchRows,
    compiled_chunk_statistics,
    row_scale,
    scored_rows,
)
from prefix_titan.objectives.traffic import HostSyncs, compiled_traffic, count_traffic

V = 4099
N = 300

# Bytes per bf16 logit of each eager path, pass by pass as objectives/kernel.py names them:
# statistics amax 2 + sub into fp32 6 + exp_ 8 + sum 4 (+ the row sum 2 with a uniform part);
# gradient sub 6 + exp_ 8 + one scaled write into bf16 6; the fused head's chunks write their
# gradient in the statistics' walk (6).
STATISTICS, GRADIENT, IN_WALK, ROW_SUM = 2 + 6 + 8 + 4, 6 + 8 + 6, 6, 2
UNFUSED_GOAL, FUSED_GOAL = 50, 20

SPECS = {
    "ce": ObjectiveSpec("ce"),
    "label_smoothing": ObjectiveSpec("label_smoothing", epsilon=0.1),
    "prefix_tau0.5": ObjectiveSpec("prefix", tau=0.5),
    "prefix_norm_tau2.0_vocab": ObjectiveSpec("prefix", tau=2.0, normalize=True, support="vocab"),
}


def _texts():
    letters = "abcdefghijklmnopqrstuvwxyz"
    return [letters[i % 26] + letters[(i // 26) % 26] * (i % 4) for i in range(V)]


@pytest.fixture(scope="module")
def tables():
    return {name: build_target_table(_texts(), spec) for name, spec in SPECS.items()}


def _step(plan, fused, dtype=torch.bfloat16, dim=32):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(N, dim, generator=g).to(dtype)
    w = (torch.randn(V, dim, generator=g) * dim**-0.5).to(dtype)
    labels = torch.randint(0, V, (N,), generator=g)
    labels[::7] = IGNORE_INDEX

    def run():
        hh, ww = h.detach().requires_grad_(), w.detach().requires_grad_()
        if fused:
            objective = plan.fused_loss(hh, ww, labels)[0]
        else:
            objective = plan.logits_loss(hh @ ww.t(), labels)[0]
        (objective * 0.5).backward()

    run()  # the table's tensors made once, as in a run's first step
    return run


@pytest.mark.parametrize("name", SPECS)
@pytest.mark.parametrize("fused", [False, True], ids=["unfused", "fused"])
def test_eager_passes_move_the_bytes_they_name(tables, name, fused):
    """bf16 logits: the unfused eager path moves 40 bytes per logit (42 with a uniform part),
    within the 50 of its goal; the fused head's eager chunks 26 (28). A pass added or a fp32
    copy brought back changes the count and fails here."""
    spec = dataclasses.replace(
        SPECS[name], fused_loss=fused, fused_chunk_tokens=64 if fused else None
    )
    plan = plan_of(tables[name], spec, dim=32)
    traffic = count_traffic(_step(plan, fused), V)
    background = ROW_SUM if tables[name].tensors("cpu").has_background else 0
    want = STATISTICS + background + (IN_WALK if fused else GRADIENT)
    assert traffic.per_logit(N * V) == pytest.approx(want, abs=0.01), traffic.passes()
    if not fused:
        assert traffic.per_logit(N * V) <= UNFUSED_GOAL
    # the passes: one amax, one sub into fp32 per walk, one exp_ per walk, no fp32 copy
    names = {op for op, _, _ in traffic.passes()}
    assert "_to_copy" not in names and "copy_" not in names, traffic.passes()


def test_fp32_logits_move_their_own_bytes(tables):
    """The count follows the dtype: fp32 logits read 4 bytes where bf16 read 2."""
    plan = plan_of(tables["ce"], SPECS["ce"], dim=32)
    traffic = count_traffic(_step(plan, False, torch.float32), V)
    # amax 4 + sub 8 + exp_ 8 + sum 4; sub 8 + exp_ 8 + scaled write 8
    assert traffic.per_logit(N * V) == pytest.approx(24 + 24, abs=0.01)


def test_the_eager_passes_take_their_exponentials_in_fp32(tables, seed):
    """Why the fused head's eager chunks move 26 bytes per logit and not fewer: the 16-byte order
    (amax 2, sub into fp32 6, exponentials written as bf16 into the chunk 6, their sum 2, the
    gradient's scale applied after the matmuls) rounds every term of each row's logsumexp to
    bf16. On rows whose mass sits on a few ids (p_max ~0.9, as a trained model's) that puts a
    row's logsumexp up to 5.6e-4 or more off its float64 value (the least over 200 seeds of 64
    rows); the fp32 exponentials of the eager passes (unfused, and the fused chunks' walk) keep
    every row within 1.6e-6. Held to 1e-5 here, and that order, computed from the same rows, is
    shown to miss 1e-4; the fused chunk's CE sum is held to 1e-4 of its float64 value."""
    table = tables["ce"].tensors("cpu")
    rows = 64
    x = torch.randn(rows, V) * 1.5
    top = torch.randint(0, V, (rows, 4))
    x.scatter_(1, top, torch.randn(rows, 4) * 4 + 12)
    z = x.to(torch.bfloat16)
    labels = top[:, 0]
    keep, y = scored_rows(labels, V)
    exact = z.double().logsumexp(-1)
    _, _, lse = PyTorchRows.statistics(z, y, keep, table, None, 16)  # four blocks of 16 rows
    assert (lse.double() - exact).abs().max().item() <= 1e-5, seed
    m = z.amax(-1, keepdim=True).float()
    rounded = (z.float() - m).exp().to(torch.bfloat16).sum(-1, dtype=torch.float32)
    sixteen = m[:, 0].double() + rounded.double().log()
    assert (sixteen - exact).abs().max().item() > 1e-4, seed
    _, ce, _ = build_chunk_step()(z.clone(), y, keep, table, None, True)
    gold = z.double().gather(1, labels[:, None])[:, 0]
    assert abs(ce.item() - (exact - gold).sum().item()) <= 1e-4, seed


@pytest.mark.slow
@pytest.mark.parametrize("fused", [False, True], ids=["unfused", "fused"])
def test_compiled_passes_are_counted_by_inductor(tables, fused, capfd):
    """Compiled, inductor fuses each pass: its own count of the bytes its kernels move is far
    under the eager count (unfused) and within the fused head's goal of 20 bytes per logit;
    counted without inductor's metric log lines in the output (bench_loss.py's tables)."""
    chunk = N if fused else None
    spec = dataclasses.replace(SPECS["label_smoothing"], fused_loss=fused, fused_chunk_tokens=chunk)
    plan = plan_of(tables["label_smoothing"], spec, dim=32, compile=True)
    capfd.readouterr()
    moved = compiled_traffic(_step(plan, fused))
    assert moved is not None
    assert moved / (N * V) <= FUSED_GOAL
    out, err = capfd.readouterr()
    assert "inductor_metrics" not in out + err and "Graph Metrics" not in out + err


@pytest.mark.slow
def test_compiled_chunk_step_writes_its_gradient_over_the_chunk(tables):
    """The compiled chunk step allocates no second [c, V] tensor: inductor's generated code
    allocates nothing of the chunk's shape, and the gradient is the chunk's own memory."""
    from torch._inductor.utils import run_and_get_code

    table = tables["label_smoothing"].tensors("cpu")
    step = build_chunk_step(compile=True)
    z = torch.randn(64, V).to(torch.bfloat16)
    labels = torch.randint(0, V, (64,))
    keep, y = scored_rows(labels, V)
    eager = build_chunk_step()(z.clone(), y, keep, table, None, True)
    torch._dynamo.reset()
    (objective, ce, grad), code = run_and_get_code(step, z, y, keep, table, None, True)
    allocations = [line for line in "\n".join(code).splitlines() if "empty_strided" in line]
    assert allocations and not any(f"(64, {V})" in line for line in allocations), allocations
    assert grad.data_ptr() == z.data_ptr()
    torch.testing.assert_close(objective, eager[0], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(ce, eager[1], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(grad.float(), eager[2].float(), rtol=1e-2, atol=1e-6)


def test_the_compiled_statistics_only_read_the_chunk(tables):
    """The graph that reads the chunk's logits (reductions, gathers) writes nothing over them;
    only the second graph does, each logit's gradient in its place: a write and the reads in one
    graph would leave their order to inductor (torch 2.11's CPU code got the objective and the
    CE 1-2 % wrong)."""
    table = tables["label_smoothing"].tensors("cpu")
    z = torch.randn(32, V).to(torch.bfloat16)
    labels = torch.randint(0, V, (32,))
    keep, y = scored_rows(labels, V)
    before = z.clone()
    stats = torch.compile(compiled_chunk_statistics, dynamic=False)
    objective, ce, lse, ids, exact = stats(z, y, keep, table, None, row_scale(keep, None))
    assert torch.equal(z, before)
    assert exact is not None and exact.shape == ids.shape
    torch.testing.assert_close(lse, torch.logsumexp(before.float(), -1))


class _Ops(TorchDispatchMode):
    """Every operation, with its output's shape and dtype."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor):
            self.ops.append((func._schema.name.split("::")[-1], tuple(out.shape), out.dtype))
        return out


def test_fused_weight_gradient_is_summed_without_a_zero_fill_and_scaled_in_one_pass(tables):
    """The head's weight gradient: no zero-filled [V, d] accumulator (the first chunk's product
    starts it), and backward scales and rounds it to bf16 in one operation (no fp32 pass then
    a cast)."""
    spec = dataclasses.replace(SPECS["ce"], fused_loss=True, fused_chunk_tokens=64)
    plan = plan_of(tables["ce"], spec, dim=32)
    h, w, labels = fresh_head(V, n=N, dtype=torch.bfloat16, dim=32)
    h.requires_grad_()
    w.requires_grad_()
    with _Ops() as mode:
        (plan.fused_loss(h, w, labels)[0] * 0.5).backward()
    on_w = [(op, dtype) for op, shape, dtype in mode.ops if shape == (V, 32)]
    assert not any(op in ("zeros", "zero_", "fill_", "new_zeros") for op, _ in on_w), on_w
    assert ("mul", torch.bfloat16) in on_w and ("_to_copy", torch.bfloat16) not in on_w, on_w


def test_weight_gradient_sums_chunks_in_fp32(seed):
    """add_weight_grad sums each chunk's product into fp32: bf16 chunks through the rounded
    product (CPU) agree with the fp32 sum of the exact products to bf16's rounding of each
    product; fp32 chunks accumulate in place."""
    g = [torch.randn(64, 40) for _ in range(3)]
    h = [torch.randn(64, 16) for _ in range(3)]
    exact = sum(a.t().double() @ b.double() for a, b in zip(g, h))
    acc = add_weight_grad(None, g[0], h[0], fp32_output=True)
    ptr = acc.data_ptr()
    for a, b in zip(g[1:], h[1:]):
        acc = add_weight_grad(acc, a, b, fp32_output=True)
    assert acc.data_ptr() == ptr  # summed in place
    torch.testing.assert_close(acc.double(), exact, rtol=1e-5, atol=1e-4)
    acc = None
    for a, b in zip(g, h):
        acc = add_weight_grad(acc, a.bfloat16(), b.bfloat16(), fp32_output=False)
    assert acc.dtype == torch.float32
    bf = sum(a.bfloat16().t().double() @ b.bfloat16().double() for a, b in zip(g, h))
    torch.testing.assert_close(acc.double(), bf, rtol=2e-2, atol=0.1)


@pytest.mark.xfail(
    tuple(int(x) for x in torch.__version__.split(".")[:2]) == (2, 11),
    reason="torch 2.11's meta decomposition of addmm takes out_dtype for beta (dtype * Tensor)",
    raises=TypeError,
    strict=True,
)
def test_the_fp32_accumulator_calls_of_cuda_are_well_formed():
    """The calls the CUDA path makes (bf16 chunk products into a new fp32 tensor, then into that
    one in place: `out_dtype=torch.float32`) have no CPU kernel, but torch's meta kernels check
    them: the dtypes, the shape and the in-place sum are checked on every run; the arithmetic
    only on a GPU (the test below)."""
    g = torch.empty(64, 40, dtype=torch.bfloat16, device="meta")
    h = torch.empty(64, 16, dtype=torch.bfloat16, device="meta")
    acc = add_weight_grad(None, g, h, fp32_output=True)
    assert acc.dtype == torch.float32 and acc.shape == (40, 16)
    assert add_weight_grad(acc, g, h, fp32_output=True) is acc


@pytest.mark.cuda
def test_weight_gradient_goes_straight_into_fp32_on_cuda(seed):
    """On CUDA the bf16 chunks' products are accumulated into the fp32 buffer by the matmul
    itself: the sum equals the fp32 sum of the bf16 inputs' exact products (no bf16 rounding
    per chunk), in the same buffer."""
    from prefix_titan.objectives.fused import fp32_output_matmul

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    assert fp32_output_matmul(torch.device("cuda"), torch.bfloat16)
    g = [torch.randn(256, 512, device="cuda").bfloat16() for _ in range(4)]
    h = [torch.randn(256, 64, device="cuda").bfloat16() for _ in range(4)]
    acc = add_weight_grad(None, g[0], h[0], True)
    ptr = acc.data_ptr()
    for a, b in zip(g[1:], h[1:]):
        acc = add_weight_grad(acc, a, b, True)
    assert acc.data_ptr() == ptr and acc.dtype == torch.float32
    exact = sum(a.t().double() @ b.double() for a, b in zip(g, h))
    torch.testing.assert_close(acc.double(), exact, rtol=1e-4, atol=1e-3)


# -- no host sync in a training step ---------------------------------------------------------------


def _training_parts(table, fused: bool, compile: bool = False, device="cpu"):
    """A tiny model, the TrainSpec's loss and meter, as a training step uses them."""
    from prefix_titan.model.flavors import FLAVORS
    from prefix_titan.model.transformer import FusedHeadTransformer
    from prefix_titan.titan.loss import build_target_loss
    from prefix_titan.titan.metrics import PlainCEMeter

    spec = dataclasses.replace(SPECS["prefix_tau0.5"], fused_loss=fused, position_gamma=0.9)
    args = dataclasses.replace(FLAVORS["tiny"], vocab_size=V, max_seq_len=32)
    model = FusedHeadTransformer(args).to(device)
    with torch.no_grad():
        model.init_weights()
    plan = plan_of(table, spec, dim=args.dim, compile=compile)
    plan.prepare(device)  # as parallelize_prefix_llama does
    if fused:
        model.output.set_plan(plan, defer_label_check=True)  # as parallelize_prefix_llama does
    meter = PlainCEMeter()

    class Plans:
        def for_job(self, job_config):
            return plan

    loss_fn = build_target_loss(None, plans=Plans(), meter=meter)
    return model, loss_fn, meter


def _train_step(model, loss_fn, tokens, labels, fused):
    """torchtitan's forward_backward_step, reduced: pred = model(...), loss_fn, backward."""
    pred = model(tokens, labels=labels) if fused else model(tokens)
    loss = loss_fn(pred, labels) / 64
    del pred
    loss.backward()


@pytest.mark.parametrize("fused", [False, True], ids=["unfused", "fused"])
def test_a_training_step_never_waits_for_the_host(fused):
    """Forward, loss and backward of a step, twice (two micro-batches) as the TrainSpec builds
    them, the first step of a run included (a new table, prepared on the device at start-up as
    parallelize_prefix_llama does): no .item(), bool(), .tolist() or data-dependent shape
    anywhere (the labels are counted on the device); the step checks afterwards read everything
    in one sync."""
    from prefix_titan.titan.step_checks import check_step_sums

    table = build_target_table(_texts(), SPECS["prefix_tau0.5"])
    model, loss_fn, meter = _training_parts(table, fused)
    tokens = torch.randint(0, V, (2, 32))
    labels = torch.randint(0, V, (2, 32))
    labels[0, :4] = IGNORE_INDEX
    with HostSyncs() as syncs:
        for _ in range(2):
            _train_step(model, loss_fn, tokens, labels, fused)
    assert syncs.calls == []
    with HostSyncs() as syncs:
        check_step_sums(meter, 1)
    assert syncs.calls == ["tolist"]


def test_host_sync_counter_sees_what_syncs():
    """The counter itself: .item(), bool(), float(), .tolist() and boolean-mask indexing."""
    t = torch.arange(5)
    with HostSyncs() as syncs:
        t.sum().item()
        bool(t.any())
        float(t.max())
        t.tolist()
        t[t > 2]
    assert syncs.calls[:3] == ["_local_scalar_dense"] * 3
    assert syncs.calls[3:] == ["tolist", "index (boolean mask)"]


@pytest.mark.cuda
@pytest.mark.parametrize("fused", [False, True], ids=["unfused", "fused"])
def test_a_cuda_training_step_never_synchronizes(tables, fused):
    """On a GPU, torch's own sync detector: the first two steps after start-up (the plan
    prepared on the device) under set_sync_debug_mode("error"), which raises on any
    synchronizing call."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    table = build_target_table(_texts(), SPECS["prefix_tau0.5"])
    model, loss_fn, meter = _training_parts(table, fused, device="cuda")
    tokens = torch.randint(0, V, (2, 32), device="cuda")
    labels = torch.randint(0, V, (2, 32), device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2):
            _train_step(model, loss_fn, tokens, labels, fused)
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("fused", [False, True], ids=["unfused", "fused"])
def test_the_row_block_setting_sizes_the_eager_blocks(tables, fused):
    """objective.row_block_mib = 1 walks V = 4,099 in blocks of 63 rows (1 MiB of fp32) where the
    CPU's default of 4 MiB walks 255: more blocks, the same bytes, the same values; a compiled
    loss refuses it (no block to size)."""

    def run(mib):
        spec = dataclasses.replace(
            SPECS["prefix_tau0.5"],
            fused_loss=fused,
            fused_chunk_tokens=N if fused else None,
            row_block_mib=mib,
        )
        plan = plan_of(tables["prefix_tau0.5"], spec, dim=32)
        if mib is not None:
            assert f"{mib} MiB blocks" in plan.describe()
        step = _step(plan, fused)
        return count_traffic(step, V), _objective(plan, fused)

    default, value = run(None)
    small, small_value = run(1)
    walks = 1 if fused else 2  # statistics (and gradient) walks
    assert default.calls["exp_"] == walks * -(-N // 255)
    assert small.calls["exp_"] == walks * -(-N // 63)
    assert small.total == default.total
    torch.testing.assert_close(small_value, value, rtol=1e-6, atol=1e-4)
    spec = dataclasses.replace(SPECS["ce"], row_block_mib=1)
    with pytest.raises(ValueError, match="the loss is compiled"):
        plan_of(tables["ce"], spec, compile=True)


def _objective(plan, fused):
    g = torch.Generator().manual_seed(1)
    h = torch.randn(N, 32, generator=g).bfloat16()
    w = (torch.randn(V, 32, generator=g) * 32**-0.5).bfloat16()
    labels = torch.randint(0, V, (N,), generator=g)
    if fused:
        return plan.fused_loss(h, w, labels)[0]
    return plan.logits_loss(h @ w.t(), labels)[0]


def test_a_device_named_without_an_index_is_the_current_one(monkeypatch):
    """`LossPlan.prepare("cuda")` must make what a step on cuda:N looks up: the table's tensors
    and the fp32-accumulator answer are cached by the indexed device (simulated here: naming a
    device needs no GPU)."""
    from prefix_titan.objectives.table import indexed

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    assert indexed("cuda") == torch.device("cuda", 3)
    assert indexed(torch.device("cuda")) == torch.device("cuda", 3)
    assert indexed("cuda:1") == torch.device("cuda", 1)
    assert indexed("cpu") == torch.device("cpu") and indexed("meta") == torch.device("meta")


class _LiveChunks(TorchDispatchMode):
    """At each matmul that makes a chunk's logits ([c, V] in the head's dtype), how many other
    such chunks are still alive (distinct storages of tensors made earlier, not yet freed)."""

    def __init__(self, shape, dtype):
        super().__init__()
        self.shape, self.dtype, self.made, self.alive_at_mm = shape, dtype, [], []

    def _alive(self):
        return len({t.untyped_storage().data_ptr() for r in self.made if (t := r()) is not None})

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        import weakref

        if func is torch.ops.aten.mm.default:
            before = self._alive()
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor) and (out.shape, out.dtype) == (self.shape, self.dtype):
            if func is torch.ops.aten.mm.default:
                self.alive_at_mm.append(before)
            self.made.append(weakref.ref(out))
        return out


@pytest.mark.parametrize("grads", ["h_and_w", "w_only", "none"])
def test_the_fused_head_holds_one_chunk_of_logits_at_a_time(tables, grads):
    """Each chunk's gradient is written over its logits, and freed before the next chunk's
    logits are made: when a chunk's matmul runs no earlier chunk is alive (two would double the
    head's memory per chunk token)."""
    c, dim = 16, 24
    spec = dataclasses.replace(SPECS["prefix_tau0.5"], fused_loss=True, fused_chunk_tokens=c)
    plan = plan_of(tables["prefix_tau0.5"], spec, dim=dim)
    g = torch.Generator().manual_seed(0)
    h = torch.randn(3 * c, dim, generator=g).to(torch.bfloat16)
    w = (torch.randn(V, dim, generator=g) * dim**-0.5).to(torch.bfloat16)
    h.requires_grad_(grads == "h_and_w")
    w.requires_grad_(grads != "none")
    labels = torch.randint(0, V, (3 * c,), generator=g)
    live = _LiveChunks(torch.Size([c, V]), torch.bfloat16)
    with live:
        objective = plan.fused_loss(h, w, labels)[0]
    assert live.alive_at_mm == [0, 0, 0], live.alive_at_mm
    if grads != "none":
        objective.backward()
        assert torch.isfinite(w.grad).all()
