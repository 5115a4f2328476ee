"""The Triton row kernels (objectives/triton_rows.py) against the PyTorch passes and the dense
reference: values and gradients, fp32 and bf16, a vocabulary of 4,099 ids, odd row counts, ignored
labels, position weighting, tau = 0.05 on the vocabulary's longest tokens, and the fused head whose
gradient overwrites its logits in place.

Without a GPU the kernels run in Triton's CPU interpreter, which Triton chooses when it is
imported: `test_kernels_in_the_triton_interpreter` runs this file again in a child pytest with
TRITON_INTERPRET=1, and the tests below it run there (or directly on a GPU, or when the suite
itself was started with TRITON_INTERPRET=1). Everywhere, the kernels are also compiled for the
H100 and the A100 with Triton's real compiler, which needs no GPU."""

import dataclasses
import os
import re
import subprocess
import sys

import pytest
import torch
from helpers import (
    FOUR_SPECS,
    HEAD_PARTS,
    assert_parts_close,
    fresh_logits,
    fused_fn,
    kernel_fn,
    plan_of,
    reference_fn,
    reference_head_fn,
    run_head,
    run_logits,
)

from prefix_titan.objectives import (
    IGNORE_INDEX,
    ObjectiveSpec,
    RowKernel,
    build_target_table,
    fused_target_loss,
    target_loss,
)
from prefix_titan.objectives.fused import build_chunk_step
from prefix_titan.objectives.triton_rows import interpreting

INTERPRETED = interpreting()
DEVICE = "cpu" if INTERPRETED or not torch.cuda.is_available() else "cuda"
needs_triton = pytest.mark.skipif(
    DEVICE == "cpu" and not INTERPRETED,
    reason="no GPU: these run in the child pytest of test_kernels_in_the_triton_interpreter",
)

SPECS = FOUR_SPECS
PYTORCH, TRITON = RowKernel.PYTORCH, RowKernel.TRITON
# bf16: both kernels round the same fp32 gradient once; the lse may differ in its last fp32 bit,
# which can move a rounding by one bf16 ulp.
TOL = {torch.float32: dict(atol=2e-5, rtol=2e-5), torch.bfloat16: dict(atol=4e-3, rtol=2e-2)}


@pytest.mark.slow
def test_kernels_in_the_triton_interpreter(embedded_tokenizer_dir):
    """Runs the kernel tests of this file in Triton's CPU interpreter (where no GPU is)."""
    if INTERPRETED or DEVICE == "cuda":
        pytest.skip("the kernel tests run directly in this process")
    env = dict(os.environ, TRITON_INTERPRET="1", PREFIX_TITAN_TEST_TOKENIZER=embedded_tokenizer_dir)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    passed = int(re.search(r"(\d+) passed", out.stdout).group(1))
    assert passed >= 20 and "failed" not in out.stdout, out.stdout[-3000:]


@pytest.fixture(scope="module")
def tables(odd_texts):
    return {name: build_target_table(odd_texts, s) for name, s in SPECS.items()}


@pytest.fixture(scope="module")
def long_ids(odd_texts):
    """The 40 longest tokens: the most prefixes, and at tau = 0.05 weights from ~1 down to e^-200."""
    lengths = torch.tensor([len(t) if t else 0 for t in odd_texts])
    return lengths.argsort(descending=True)[:40]


def fresh_batch(V, batch, seq, dtype, gold=None):
    """Logits [batch, seq, V] of std 4 on the test's device, ~15% of the labels ignored."""
    logits, labels = fresh_logits(V, batch, seq, dtype, ignored=0.15, gold=gold)
    return logits.to(DEVICE), labels.to(DEVICE)


def triton_fn(table, gamma, kernel):
    return kernel_fn(table, gamma, kernel, device=DEVICE)


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize("gamma", [None, 0.9], ids=["unweighted", "gamma0.9"])
def test_row_kernels_match_pytorch_and_reference(tables, long_ids, name, gamma, dtype, seed):
    table = tables[name]
    gold = long_ids if name.startswith("prefix") else None
    logits, labels = fresh_batch(table.vocab_size, 3, 11, dtype, gold)  # 33 rows, ragged blocks
    got = run_logits(triton_fn(table, gamma, TRITON), logits, labels)
    torch_path = run_logits(triton_fn(table, gamma, PYTORCH), logits, labels)
    ref = run_logits(reference_fn(table, gamma, device=DEVICE), logits, labels)
    assert_parts_close(got, torch_path, TOL[dtype], seed, "triton vs pytorch: ")
    assert_parts_close(got, ref, TOL[dtype], seed, "triton vs reference: ")


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", ["ce", "prefix_tau0.05", "prefix_norm_tau2_vocab"])
def test_fused_head_on_triton_matches_reference(tables, long_ids, name, dtype, seed):
    """The Triton chunk step writes each chunk's gradient over its logits: 37 tokens in chunks of
    16 (a ragged last chunk), an odd hidden size, position weighting on one objective."""
    table = tables[name]
    gamma = 0.9 if name == "ce" else None
    dim, n = 29, 37
    h = torch.randn(1, n, dim).to(dtype).to(DEVICE)
    w = (torch.randn(table.vocab_size, dim) * 4 / dim**0.5).to(dtype).to(DEVICE)
    gold = long_ids if name.startswith("prefix") else None
    _, labels = fresh_batch(table.vocab_size, 1, n, dtype, gold)
    step = build_chunk_step(TRITON)
    got = run_head(fused_fn(table, gamma, DEVICE, chunk_tokens=16, step=step), h, w, labels)
    ref = run_head(reference_head_fn(table, gamma, DEVICE), h, w, labels)
    tol = TOL[dtype] if dtype == torch.float32 else dict(atol=2e-2, rtol=3e-2)
    assert_parts_close(got, ref, tol, seed, parts=HEAD_PARTS)


@needs_triton
@pytest.mark.parametrize("V", [64, 192, 50], ids=["one-block", "three-full-blocks", "short-block"])
def test_block_edges(V, seed):
    """Vocabularies that fill their blocks exactly, or fall short of one, with blocks of 64."""
    from prefix_titan.objectives import triton_rows
    from prefix_titan.objectives.kernel import PyTorchRows

    K = 5
    idx = torch.randint(0, V, (V, K))
    idx[:, 0] = torch.arange(V)
    idx[:, -1] = idx[:, 0]  # a repeated id, as padding makes
    weight = torch.rand(V, K)
    weight[:, -1] = 0
    weight = weight / weight.sum(1, keepdim=True) * 0.8
    background = torch.full((V,), 0.2 / V)
    from prefix_titan.objectives import TargetTable

    tensors = TargetTable(idx, weight, background).tensors(DEVICE)
    z = (torch.randn(9, V) * 3).to(DEVICE)
    labels = torch.randint(0, V, (9,), device=DEVICE)
    labels[4] = IGNORE_INDEX
    keep = labels != IGNORE_INDEX
    y = torch.where(keep, labels, 0)
    got = triton_rows.row_statistics(z, y, keep, tensors, None, block=64)
    want = PyTorchRows.statistics(z, y, keep, tensors, None, 9)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=2e-5, rtol=2e-5)
    scale = keep.float() * 0.5
    g = triton_rows.row_gradient(z, y, scale, got[2], tensors, block=64)
    w = PyTorchRows.gradient(z, y, scale, want[2], tensors, 9)
    torch.testing.assert_close(g, w, atol=2e-6, rtol=2e-5)
    assert (g[4] == 0).all()  # the ignored row


@needs_triton
def test_strided_rows_and_all_ignored(tables, seed):
    """Logits whose rows are a view into a wider tensor; a batch with every label ignored."""
    table = tables["label_smoothing"]
    V = table.vocab_size
    wide = (torch.randn(13, V + 7) * 4).to(DEVICE)
    logits = wide[:, :V]
    labels = torch.randint(0, V, (13,), device=DEVICE)
    got = run_logits(triton_fn(table, None, TRITON), logits, labels)
    want = run_logits(triton_fn(table, None, PYTORCH), logits.contiguous(), labels)
    assert_parts_close(got, want, TOL[torch.float32], seed, "strided: ")
    ignored = torch.full_like(labels, IGNORE_INDEX)
    objective, ce, grad = run_logits(triton_fn(table, None, TRITON), logits, ignored)
    assert objective.item() == 0 and ce.item() == 0 and (grad == 0).all()


@needs_triton
def test_the_torchtitan_loss_and_the_fused_head_run_on_triton(tables, seed):
    """The loss plan passes objective.kernel down: the logits loss (never compiled over Triton)
    and the fused head's chunk step, each against its PyTorch twin."""
    from prefix_titan.model.transformer import FusedLMHead
    from prefix_titan.titan.loss import TargetLoss

    table = tables["prefix_tau0.05"]
    V = table.vocab_size
    logits, labels = fresh_batch(V, 2, 9, torch.float32)
    plans = [
        plan_of(table, ObjectiveSpec("prefix", tau=0.05, kernel=k.value), compile=k is TRITON)
        for k in (PYTORCH, TRITON)
    ]
    assert plans[1].kernel is TRITON
    assert not hasattr(plans[1]._target_loss, "_torchdynamo_orig_callable")  # not compiled
    sums = [TargetLoss(plan).sums(logits, labels) for plan in plans]
    torch.testing.assert_close(sums[0], sums[1], atol=2e-5, rtol=2e-5)

    heads = []
    for k in (PYTORCH, TRITON):
        torch.manual_seed(seed)
        head = FusedLMHead(23, V).to(DEVICE)
        spec = ObjectiveSpec("prefix", tau=0.05, kernel=k.value, fused_loss=True)
        head.set_plan(plan_of(table, spec, dim=23))
        heads.append(head)
    assert heads[1].plan.chunk_step.keywords["passes"].__name__ == "TritonRows"
    h = torch.randn(2, 9, 23, device=DEVICE)
    outs = []
    for head in heads:
        with head.ending_in_loss(labels):
            objective, ce = head(h)
        objective.backward()
        outs.append((objective.detach(), ce, head.weight.grad))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-5)


@needs_triton
def test_the_train_spec_loss_builder_passes_the_kernel_down(embedded_tokenizer_dir):
    from torchtitan.config import ConfigManager

    from prefix_titan.titan.loss import LossPlans, build_target_loss

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    config = ConfigManager().parse_args(
        ["--job.config_file", os.path.join(root, "train_configs", "embedded_default.toml")]
        + ["--model.hf_assets_path", embedded_tokenizer_dir, "--objective.kernel", "triton"]
        + ["--compile.enable", "--compile.components", "model,loss"]
    )
    loss = build_target_loss(config, plans=LossPlans(), meter=None)
    assert loss.plan.kernel is TRITON and loss.plan.compile
    keywords = {"kernel": TRITON, "chunk_bytes": None, "check": False}
    assert loss.plan._target_loss.keywords == keywords  # not compiled


def test_triton_kernel_is_refused_on_a_cpu_without_the_interpreter(tables, monkeypatch):
    from prefix_titan.titan.checks import check_triton_device

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    table = tables["ce"]
    logits, labels = torch.randn(4, table.vocab_size), torch.randint(0, table.vocab_size, (4,))
    with pytest.raises(RuntimeError, match="runs on a CUDA GPU, and the logits are on cpu"):
        target_loss(logits, labels, table.tensors("cpu"), kernel=TRITON)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="objective.kernel = 'pytorch'"):
            check_triton_device()


def test_auto_kernel_is_triton_on_cuda_and_pytorch_elsewhere(tables, monkeypatch):
    """objective.kernel = auto (the default) resolves by the device type, as the plan is built
    (no GPU needed to plan; a ROCm GPU, unmeasured, keeps the PyTorch rows); row_block_mib, a
    PyTorch setting, is refused where auto means Triton, and honoured where it means PyTorch."""
    from prefix_titan.objectives import build_plan

    table = tables["prefix_tau0.05"]
    assert ObjectiveSpec("prefix").kernel == "auto"
    for device_type, kernel in (("cuda", TRITON), ("cpu", PYTORCH), ("mps", PYTORCH)):
        for fused in (False, True):
            spec = ObjectiveSpec("prefix", tau=0.05, fused_loss=fused)
            plan = build_plan(spec, table, device_type=device_type, dim=32)
            assert plan.kernel is kernel, (device_type, fused)
            if fused:
                passes = plan.chunk_step.keywords["passes"].__name__
                assert passes == ("TritonRows" if kernel is TRITON else "PyTorchRows")
            if kernel is TRITON:
                assert "Triton kernels, objective.kernel = 'auto' on CUDA" in plan.describe()
    blocked = ObjectiveSpec("prefix", tau=0.05, row_block_mib=8)
    assert build_plan(blocked, table, device_type="cpu").row_block_bytes == 8 * 2**20
    with pytest.raises(ValueError, match="objective.kernel = 'auto' runs Triton kernels on cuda"):
        build_plan(blocked, table, device_type="cuda")
    monkeypatch.setattr(torch.version, "hip", "6.2")  # a ROCm torch: 'cuda', not NVIDIA
    assert (
        build_plan(ObjectiveSpec("prefix", tau=0.05), table, device_type="cuda").kernel is PYTORCH
    )
    monkeypatch.undo()
    explicit = dataclasses.replace(blocked, kernel="pytorch")
    assert build_plan(explicit, table, device_type="cuda").kernel is PYTORCH
    with pytest.raises(ValueError, match="objective.row_block_mib sets the PyTorch row passes"):
        dataclasses.replace(blocked, kernel="triton").validate()


def test_unknown_kernel_is_refused(tables):
    with pytest.raises(
        ValueError, match="objective.kernel must be one of auto, pytorch, triton; got 'cuda'"
    ):
        ObjectiveSpec("ce", kernel="cuda").validate()
    with pytest.raises(ValueError, match="objective.kernel must be one of"):
        RowKernel.parse("Triton")
    with pytest.raises(ValueError, match="objective.kernel must be one of"):
        plan_of(tables["ce"], ObjectiveSpec("ce", kernel="Triton"))


# Compiles the kernels with Triton's own compiler and ptxas (they ship in its wheel; no GPU needed)
# for one architecture, at Llama-3's vocabulary, for the arguments a launch passes: the same
# `forward_launch` / `backward_launch` as the runtime, specialised by Triton's own binder (16-byte
# aligned pointers and strides divisible by 16 become divisibility hints, which let the compiler
# vectorise the loads). Prints, per kernel, a "== kernel dtype" line, the global load widths in
# its PTX, then ptxas' resource report.
_COMPILE = """
import re, sys, torch, triton
from triton.backends.compiler import GPUTarget
from triton.backends.nvidia.compiler import CUDABackend
from triton.compiler import ASTSource
from triton.runtime.jit import create_function_from_signature
from prefix_titan.objectives import triton_rows as tr
from prefix_titan.objectives.table import TableTensors

target = GPUTarget("cuda", int(sys.argv[1]), 32)
backend = CUDABackend(target)
V, K, N = 128256, 86, 2
table = TableTensors(
    torch.empty(V, K, dtype=torch.long), torch.empty(V, K), torch.empty(V), torch.empty(V, K)
)
y, keep = torch.zeros(N, dtype=torch.long), torch.ones(N, dtype=torch.bool)
rows = [torch.empty(N) for _ in range(4)]
for dtype in (torch.bfloat16, torch.float32):
    z = torch.empty(N, V, dtype=dtype)
    launches = {
        "_forward_rows": tr.forward_launch(z, y, keep, table, rows[0], *rows[1:]),
        "_backward_rows": tr.backward_launch(z, z, y, rows[0], rows[1], table),
    }
    for fn in (tr._forward_rows, tr._backward_rows):
        args, kwargs = launches[fn.__name__]
        jit = triton.jit(fn)
        binder = create_function_from_signature(jit.signature, jit.params, backend)
        bound, specialization, options = binder(*args, **kwargs)
        options, signature, constexprs, attrs = jit._pack_args(
            backend, kwargs, bound, specialization, options
        )
        print(f"== {fn.__name__} {dtype}", flush=True)
        kernel = triton.compile(
            ASTSource(jit, signature, constexprs, attrs), target=target, options=options.__dict__
        )
        loads = sorted(set(re.findall(r"ld\\.global[.\\w]*", kernel.asm["ptx"])))
        print("loads:", " ".join(loads), flush=True)
"""


@pytest.mark.slow
@pytest.mark.skipif(INTERPRETED, reason="compiles for GPUs with Triton's compiler: the parent does")
@pytest.mark.parametrize("arch", [90, 80], ids=["sm_90-h100", "sm_80-a100"])
def test_kernels_compile_for_the_gpu_without_spills(arch, tmp_path):
    """Triton's real compiler (not the interpreter) builds both kernels, bf16 and fp32, for the
    H100 and the A100 at Llama-3's vocabulary, specialised for a launch's arguments: the row's
    loads are 16-byte vectors, ptxas spills no register, and each thread uses few enough that at
    least half of an SM's 64 warps can be resident (memory-bound row passes need many loads in
    flight)."""
    from prefix_titan.objectives.triton_rows import block_v, num_warps

    env = dict(os.environ, TRITON_CACHE_DIR=str(tmp_path), TRITON_DUMP_PTXAS_LOG="1")
    env.pop("TRITON_INTERPRET", None)
    out = subprocess.run(
        [sys.executable, "-c", _COMPILE, str(arch)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    reports = out.stdout.split("== ")[1:]
    assert len(reports) == 4, out.stdout[-3000:]
    warps = num_warps(block_v(128256))
    for report in reports:
        name = report.splitlines()[0]
        assert "ld.global.v4" in report, f"{name}: the row is not read in 16-byte vectors\n{report}"
        assert re.search(r"\b0 bytes spill stores, 0 bytes spill loads", report), report
        regs = int(re.search(r"Used (\d+) registers", report).group(1))
        per_warp = -(-regs * 32 // 256) * 256  # registers are allocated per warp, 256 at a time
        resident = min(64, 65536 // (per_warp * warps) * warps)
        assert resident >= 32, f"{name}: {regs} registers a thread, {resident} warps resident"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("fused", [False, True], ids=["unfused", "fused-head"])
def test_triton_on_gpu_at_llama3_vocabulary(fused, seed):
    """Llama-3's vocabulary size, bf16, 4,096 tokens: Triton and the PyTorch passes agree."""
    V, n, dim, K = 128256, 4096, 256, 86
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, V, (V, K), generator=g)
    idx[:, 0] = torch.arange(V)
    weight = torch.rand(V, K, generator=g)
    weight = weight / weight.sum(1, keepdim=True)
    from prefix_titan.objectives import TargetTable

    tensors = TargetTable(idx, weight, torch.zeros(V)).tensors("cuda")
    h = torch.randn(n, dim, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(V, dim, device="cuda", dtype=torch.bfloat16) * dim**-0.5 * 3
    labels = torch.randint(0, V, (n,), device="cuda")
    labels[::7] = IGNORE_INDEX
    results = []
    for kernel in (PYTORCH, TRITON):
        hh, ww = h.clone().requires_grad_(), w.clone().requires_grad_()
        if fused:
            step = build_chunk_step(kernel)
            objective, ce = fused_target_loss(hh, ww, labels, tensors, step=step)
        else:
            objective, ce = target_loss(hh @ ww.t(), labels, tensors, kernel=kernel)
        objective.backward()
        results.append([t.detach().float() for t in (objective, ce, hh.grad, ww.grad)])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=2e-2, rtol=2e-2)


@needs_triton
@pytest.mark.parametrize("support", ["prefix", "vocab"])
def test_a_masked_logit_of_minus_inf_without_target_mass_adds_nothing(support, seed):
    """A logit of -inf (a masked id) where the target has no mass: the Triton objective is finite
    and equal to the PyTorch passes' (it was NaN: 0 * -inf)."""
    texts = ["a", "ab", "abc", "b", "bc", "c", None, None]
    table = build_target_table(texts, ObjectiveSpec("prefix", tau=0.5, support=support))
    golds = [0, 1, 2, 3, 4, 5, 7] if support == "prefix" else [7]  # vocab: the one-hot row
    labels = torch.tensor(golds * 3, device=DEVICE)
    logits = (torch.randn(len(labels), len(texts)) * 2).to(DEVICE)
    logits[:, 6] = float("-inf")
    got = run_logits(triton_fn(table, None, TRITON), logits, labels)
    want = run_logits(triton_fn(table, None, PYTORCH), logits, labels)
    assert all(torch.isfinite(part).all() for part in got)
    assert_parts_close(got, want, TOL[torch.float32], seed, "masked: ")
