"""Forward+backward time and peak memory of every objective vs torchtitan's cross_entropy_loss.

    python scripts/bench_loss.py [--tokens 2048] [--dim 1024] [--vocab 128256] [--dtype bfloat16]
                                 [--vocab-file tokenizer.model | --hf-assets-path DIR]
                                 [--modes eager compiled] [--repeats 5] [--cases ...]
                                 [--chunk-tokens 1024 2048 4096] [--row-block-mib 32 64 256]

With --dim D > 0 (the default) each case is the LM head plus the loss: hidden states h [N, D] and
the head weight W [V, D] in, gradients of both out. Unfused cases build the [N, V] logits with
F.linear (torchtitan's head) and apply the loss; `fused_*` cases run prefix_titan's fused head
(objectives/fused.py); `*triton_*` cases run the row passes as Triton kernels (objective.kernel =
"triton": a GPU, left out without one); `torch_linear_ce` is torch's own chunked
linear_cross_entropy (plain CE only), where the installed torch has it. With --dim 0 the cases
start from the logits (loss alone).
Same inputs for every row. The cases of one mode run in one process, its peak memory reset before
each case: on CUDA the allocator's peak (torch.cuda.reset_peak_memory_stats), measured in the same
runs as the time; on CPU the peak resident set (Linux's VmHWM, reset through /proc/self/clear_refs)
in a second process whose malloc returns large blocks to the system (which would distort the
timings of the first). Both are reported above the memory live when the case starts. Without a
vocabulary file, prefix tables are synthetic with --k entries per row (the kernel's cost depends
on V and K, not on the texts; Llama-3 has K = 86). Several --chunk-tokens values give each fused
case a row per chunk size (`fused_ce @2048`): how the fused head's chunk size is chosen for a device.
Several --row-block-mib values give each eager PyTorch case (unfused and fused) a row per size of the
fp32 block its row passes walk the logits through (`prefix_tau0.5 /64MiB`): the same bytes, in
cache or not, in more or fewer kernel launches. A block that walks the same rows as a smaller one
(both as large as the chunk, or as all the tokens) is the same computation and is left out. The
fastest block of the unfused rows is the device's `objective.row_block_mib` for unfused runs; the
fused head's chunk size and block are chosen together, as the fastest measured pair.
`head_matmuls` is the floor: the head's three matmuls alone, no loss.

Each row also gives the spread of its time over the repeats (fastest-slowest), the peak memory's
spread, and on CUDA the allocator's reserved memory beside the peak (what the process holds from
the GPU, cached blocks included); and the bytes its row work moves per logit
(objectives/traffic.py): eager cases counted from the operations that run (reads and writes of
vocabulary-wide tensors, matmuls apart), compiled cases from inductor's own count of its kernels,
the Triton kernels by construction (forward reads each logit once, backward reads and writes it
once).

After the table come the goals, each loss row held to torchtitan's CE measured in the same run:
unfused eager <= 1.0x eager CE time at <= 0.4x its memory; the fused head, eager and compiled,
<= 1.05x compiled CE time at <= 0.25x its memory; and each row's ratio to the floor (stretch:
<= 1.2x). With several --chunk-tokens (or --row-block-mib), the fastest chunk size (and block)
within the memory goal, per row kernel: the value for `objective.fused_chunk_tokens` (and
`objective.row_block_mib`) on this device. A choice whose fastest-slowest spread (its rows' in
total) overlaps another option's says so on its line: the timings do not tell the two apart. A row
faster than the floor says so too: only noisy timings give that.

    python scripts/bench_loss.py --rows eager.json compiled.json [--json both.json]

measures nothing: it prints the table, goals and choices of rows saved with --json, several files
as one table. The fused head's eager goal is held to torchtitan's compiled CE, so rows measured
in an eager call and a compiled call (as `scripts/gpu_checks.sh` makes them) are judged, and the
chunk size chosen within the memory goal, only together. Files whose recorded setups (sizes,
dtype, device) differ, and a row in two files, are refused; rows saved before rows recorded their
setup are taken as they are, and the table says so.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import platform
import re
import statistics
import subprocess
import sys
import time

from prefix_titan.runs.cli import Parser

ROOT = pathlib.Path(__file__).resolve().parent.parent

OBJECTIVES = {
    "ce": dict(name="ce"),
    "label_smoothing": dict(name="label_smoothing", epsilon=0.1),
    "prefix_tau0.5": dict(name="prefix", tau=0.5),
    "prefix_norm_tau2.0_vocab": dict(name="prefix", tau=2.0, normalize=True, support="vocab"),
}
TRITON = [f"triton_{name}" for name in OBJECTIVES]
HEAD_ONLY = [
    "head_matmuls",
    "torch_linear_ce",
    *(f"fused_{name}" for name in OBJECTIVES),
    *(f"fused_{name}" for name in TRITON),
]
CASES = ["torchtitan_ce", *OBJECTIVES, *TRITON, *HEAD_ONLY]
LEAST = {
    "--tokens": 1,
    "--dim": 0,  # 0: the loss alone, on logits
    "--vocab": 1,
    "--k": 1,
    "--repeats": 1,
    "--chunk-tokens": 1,
    "--row-block-mib": 1,
}
"""The smallest value of each numeric option"""


def _split(name: str) -> tuple[bool, str, str]:
    """(fused head?, row kernel, objective) of a case name such as fused_triton_prefix_tau0.5."""
    fused = name.startswith("fused_")
    rest = name[len("fused_") :] if fused else name
    if rest.startswith("triton_"):
        return fused, "triton", rest[len("triton_") :]
    return fused, "pytorch", rest


def _texts(a) -> list | None:
    """The token texts of --vocab-file or --hf-assets-path (None: neither, a synthetic table)."""
    if a.vocab_file:
        from prefix_titan.objectives import tiktoken_texts

        return tiktoken_texts(a.vocab_file, a.vocab)
    if a.hf_assets_path:
        from tokenizers import Tokenizer

        from prefix_titan.objectives import token_texts

        return token_texts(Tokenizer.from_file(f"{a.hf_assets_path}/tokenizer.json"), a.vocab)
    return None


def _table(spec_kwargs, a):
    import torch

    from prefix_titan.objectives import ObjectiveSpec, TargetTable, build_target_table

    spec = ObjectiveSpec(**spec_kwargs)
    if a.vocab_file or a.hf_assets_path:
        return build_target_table(_texts(a), spec)
    if spec.name != "prefix":
        return build_target_table([None] * a.vocab, spec)
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, a.vocab, (a.vocab, a.k), generator=g)
    idx[:, 0] = torch.arange(a.vocab)
    w = torch.rand(a.vocab, a.k, generator=g)
    back = torch.full((a.vocab,), 0.5 / a.vocab if spec.support == "vocab" else 0.0)
    w = w / w.sum(1, keepdim=True) * (1 - back * a.vocab)[:, None]
    return TargetTable(idx, w, back)


def _loss_fn(name: str, mode: str, a, device, chunk_tokens=None, row_block_mib=None):
    """loss(h, W, labels) for head mode, or loss(logits, labels) for --dim 0."""
    import torch
    import torch.nn.functional as F
    from torchtitan.components.loss import cross_entropy_loss

    from prefix_titan.objectives import ObjectiveSpec, build_plan

    compiled = mode == "compiled"
    if name == "head_matmuls":
        return _head_matmuls(a, device)
    if name == "torch_linear_ce":
        options = torch.nn.LinearCrossEntropyOptions()
        return lambda h, w, y: F.linear_cross_entropy(
            h, w, y.reshape(-1), reduction="sum", options=options
        )
    fused, kernel, objective = _split(name)
    if name == "torchtitan_ce":
        loss = torch.compile(cross_entropy_loss) if compiled else cross_entropy_loss
    else:  # the run's loss plan: with the Triton kernel nothing is compiled (single kernels);
        # labels left unchecked on the host, as in a training step (the meter counts them)
        spec = ObjectiveSpec(
            **OBJECTIVES[objective],
            kernel=kernel,
            fused_loss=fused,
            fused_chunk_tokens=chunk_tokens if fused else None,
            row_block_mib=row_block_mib,
        )
        device_type = torch.device(device).type
        table = _table(OBJECTIVES[objective], a).to(device)
        plan = build_plan(spec, table, device_type=device_type, dim=a.dim, compile=compiled)
        if fused:
            return lambda h, w, y: plan.fused_loss(h, w, y.reshape(-1), check=False)[0]

        def loss(logits, labels):
            return plan.logits_loss(logits, labels, check=False)[0]

    if a.dim == 0:
        return loss
    return lambda h, w, y: loss(F.linear(h, w).unsqueeze(0), y.unsqueeze(0))


def _head_matmuls(a, device):
    """The floor: the head's three matmuls alone (z = h W^T; then g W and g^T h for a fixed
    gradient g of z, made once), no loss. Same in both modes: nothing to compile."""
    import torch

    g = torch.randn(a.tokens, a.vocab, device=device, dtype=getattr(torch, a.dtype))

    class HeadMatmuls(torch.autograd.Function):
        @staticmethod
        def forward(ctx, h, w):
            ctx.save_for_backward(h, w)
            z = h @ w.t()
            return z[0, 0].to(torch.float32, copy=True)  # z itself is freed here

        @staticmethod
        def backward(ctx, _):
            h, w = ctx.saved_tensors
            return g @ w, g.t() @ h

    return lambda h, w, y: HeadMatmuls.apply(h, w)


def bytes_per_logit(name: str, mode: str, step, a, chunk_tokens=None) -> float | None:
    """Bytes per logit moved by one forward+backward of a case's row work (see the docstring);
    None where there is no row work (head_matmuls), where it is one operation the counter cannot
    see into (torch_linear_ce) or where inductor does not count."""
    from prefix_titan.objectives.traffic import compiled_traffic, count_traffic

    if name in ("head_matmuls", "torch_linear_ce"):  # no row work; one opaque operation
        return None
    logits = a.tokens * a.vocab
    kernel_bytes = 0.0
    if _split(name)[1] == "triton":  # the kernels' own loads and stores of the logits
        kernel_bytes = 3 * (2 if a.dtype == "bfloat16" else 4)
    if mode == "compiled" and _split(name)[1] != "triton":
        moved = compiled_traffic(step)
        if _split(name)[0]:  # each chunk shape's graph is counted once, however often it runs
            from prefix_titan.objectives.fused import default_chunk_tokens

            chunk = chunk_tokens or default_chunk_tokens(a.device.split(":")[0], a.dim)
            rows = min(chunk, a.tokens) + (a.tokens % chunk if a.tokens > chunk else 0)
            logits = rows * a.vocab
        return None if moved is None else moved / logits
    return count_traffic(step, a.vocab).per_logit(logits) + kernel_bytes


def run_case(name: str, mode: str, measure: str, a, chunk_tokens=None, row_block_mib=None) -> dict:
    import torch

    device = torch.device(a.device)
    dtype = getattr(torch, a.dtype)
    fn = _loss_fn(name, mode, a, device, chunk_tokens, row_block_mib)
    g = torch.Generator(device=device).manual_seed(1)
    labels = torch.randint(0, a.vocab, (a.tokens,), device=device, generator=g)
    if a.dim == 0:
        inputs = [torch.randn(1, a.tokens, a.vocab, device=device, dtype=dtype, generator=g)]
        labels = labels.unsqueeze(0)
    else:
        inputs = [
            torch.randn(a.tokens, a.dim, device=device, dtype=dtype, generator=g),
            torch.randn(a.vocab, a.dim, device=device, dtype=dtype, generator=g) * a.dim**-0.5,
        ]

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step():
        xs = [x.detach().requires_grad_() for x in inputs]
        fn(*xs, labels).backward()
        return xs

    traffic = None
    if measure != "memory":
        traffic = bytes_per_logit(name, mode, step, a, chunk_tokens)
    for _ in range(2):  # warm-up (and compilation)
        step()
    sync()
    times, peaks, reserved = [], [], []
    for _ in range(a.repeats):
        if device.type == "cuda":
            torch.cuda.empty_cache()
            base, base_reserved = torch.cuda.memory_allocated(), torch.cuda.memory_reserved()
            torch.cuda.reset_peak_memory_stats()
        else:
            base = _rss_now()
            _reset_peak_rss()
        start = time.perf_counter()
        xs = step()
        sync()
        times.append(time.perf_counter() - start)
        del xs
        if device.type == "cuda":
            peaks.append(torch.cuda.max_memory_allocated() - base)
            reserved.append(torch.cuda.max_memory_reserved() - base_reserved)
        else:
            peaks.append(_peak_rss() - base)
    return {
        "case": name,
        "chunk_tokens": chunk_tokens,
        "row_block_mib": row_block_mib,
        "mode": mode,
        "ms": 1e3 * statistics.median(times),
        "ms_min": 1e3 * min(times),
        "ms_max": 1e3 * max(times),
        "peak_bytes": statistics.median(peaks),
        "peak_min": min(peaks),
        "peak_max": max(peaks),
        "reserved_bytes": max(reserved) if reserved else None,
        "bytes_per_logit": traffic,
    }


# The targets against torchtitan's cross_entropy_loss in the same run: (which rows, the mode of
# the torchtitan row they are held to, time bound, peak-memory bound).
FUSED_MEMORY_BOUND = 0.25
GOALS = (
    ("unfused", "eager", "eager", 1.0, 0.4),
    ("fused", "eager", "compiled", 1.05, FUSED_MEMORY_BOUND),
    ("fused", "compiled", "compiled", 1.05, FUSED_MEMORY_BOUND),
)
FLOOR_BOUND = 1.2  # stretch: head + loss within 1.2x the head's matmuls alone
# Bytes per bf16 logit the row work may move: (fused head?, row kernel, mode or None for both).
BYTES_GOALS = (
    (False, "pytorch", "eager", 50.0),
    (True, "pytorch", None, 20.0),
    (True, "triton", None, 6.0),
)


def traffic_goals(rows: list[dict]) -> list[dict]:
    """Each row with a byte count held to its path's bound (BYTES_GOALS, bf16 logits)."""
    out = []
    for r in rows:
        fused, kernel, objective = _split(r["case"])
        moved = r.get("bytes_per_logit")
        if moved is None or objective not in OBJECTIVES:
            continue
        for g_fused, g_kernel, g_mode, bound in BYTES_GOALS:
            if (fused, kernel) == (g_fused, g_kernel) and g_mode in (None, r["mode"]):
                out.append({"row": r, "bound": bound, "met": moved <= bound})
    return out


def _row_of(rows: list[dict], case: str, mode: str) -> dict | None:
    return next((r for r in rows if r["case"] == case and r["mode"] == mode), None)


def goal_rows(rows: list[dict]) -> list[dict]:
    """Each measured loss row held to its goal: time and memory ratios to torchtitan's CE (the
    reference mode's row), the ratio to the matmul floor of its own mode, and whether it meets
    both bounds. Rows without a torchtitan row to compare with are left out."""
    out = []
    for kind, mode, ref_mode, t_bound, m_bound in GOALS:
        base = _row_of(rows, "torchtitan_ce", ref_mode)
        if base is None:
            continue
        for r in rows:
            fused, _, objective = _split(r["case"])
            if r["mode"] != mode or objective not in OBJECTIVES or fused != (kind == "fused"):
                continue
            t = r["ms"] / base["ms"]
            m = r["peak_bytes"] / base["peak_bytes"] if base["peak_bytes"] > 0 else float("inf")
            f = _row_of(rows, "head_matmuls", mode)
            out.append(
                {
                    "row": r,
                    "goal": f"<= {t_bound:.2f}x {ref_mode} CE time, <= {m_bound:.2f}x its memory",
                    "time": t,
                    "memory": m,
                    "floor": r["ms"] / f["ms"] if f else None,
                    "met": t <= t_bound and m <= m_bound,
                }
            )
    return out


def _spread(members: list[dict]) -> tuple[float, float, float]:
    """(median, fastest, slowest) ms of rows timed together, each summed over the rows (a row
    without a spread counts at its median)."""
    return (
        sum(r["ms"] for r in members),
        sum(r.get("ms_min", r["ms"]) for r in members),
        sum(r.get("ms_max", r["ms"]) for r in members),
    )


def chunk_totals(rows: list[dict]) -> dict[str, dict[tuple[int, int | None], tuple]]:
    """Per row kernel measured at several chunk sizes or row blocks: each (chunk tokens, row
    block MiB) pair whose fused rows (every objective, both modes: a compiled row counts at its
    chunk size whatever the block, it has none) meet the memory goal, with the (median, fastest,
    slowest) ms of those rows in total (`_spread`); empty where no pair meets it. The block is
    None where the kernel's rows have none."""
    ref = _row_of(rows, "torchtitan_ce", "compiled")
    bound = None if ref is None else FUSED_MEMORY_BOUND * ref["peak_bytes"]
    by_kernel: dict[str, list[dict]] = {}
    for r in rows:
        fused, kernel, _ = _split(r["case"])
        if fused and r["chunk_tokens"] is not None:
            by_kernel.setdefault(kernel, []).append(r)
    totals = {}
    for kernel, rs in by_kernel.items():
        pairs = {(r["chunk_tokens"], r.get("row_block_mib")) for r in rs}
        # where eager rows have blocks, their pairs carry the unblocked (compiled) rows too
        candidates = {p for p in pairs if p[1] is not None} or pairs
        if len(candidates) < 2:
            continue  # one pair measured: nothing to choose
        fits = {}
        for chunk, block in candidates:
            members = [
                r
                for r in rs
                if r["chunk_tokens"] == chunk and r.get("row_block_mib") in (block, None)
            ]
            if bound is None or all(r["peak_bytes"] <= bound for r in members):
                fits[chunk, block] = _spread(members)
        totals[kernel] = fits
    return totals


def chunk_choice(rows: list[dict]) -> dict[str, tuple[int, int | None] | None]:
    """Per row kernel measured at several chunk sizes or row blocks: the (chunk tokens, row
    block MiB) pair of `chunk_totals` that takes the least time in total (the medians'); None if
    no pair meets the memory goal."""
    return {
        kernel: min(fits, key=lambda p: fits[p][0]) if fits else None
        for kernel, fits in chunk_totals(rows).items()
    }


def block_totals(rows: list[dict]) -> dict[int, tuple[float, float, float]]:
    """The unfused eager PyTorch rows per row block (MiB): the (median, fastest, slowest) ms of
    the block's rows (every objective) in total (`_spread`)."""
    members: dict[int, list[dict]] = {}
    for r in rows:
        fused, kernel, _ = _split(r["case"])
        block = r.get("row_block_mib")
        if block is not None and not fused and kernel == "pytorch" and r["mode"] == "eager":
            members.setdefault(block, []).append(r)
    return {block: _spread(rs) for block, rs in members.items()}


def block_choice(rows: list[dict]) -> int | None:
    """The unfused eager PyTorch rows measured at several row blocks: the block (MiB) whose rows
    (every objective) take the least time in total; None if fewer than two blocks were measured
    (the fused head's block is chosen with its chunk size: `chunk_choice`)."""
    totals = block_totals(rows)
    return min(totals, key=lambda b: totals[b][0]) if len(totals) > 1 else None


def overlapping(totals: dict, chosen) -> list:
    """The options of `totals` (option: (median, fastest, slowest)) other than `chosen` whose
    fastest-slowest spread overlaps the chosen one's: not told apart from it by these timings;
    fastest median first."""
    _, lo, hi = totals[chosen]
    return sorted(
        (o for o, (_, o_lo, o_hi) in totals.items() if o != chosen and o_lo <= hi and lo <= o_hi),
        key=lambda o: totals[o][0],
    )


def below_floor(rows: list[dict]) -> list[tuple[dict, float]]:
    """(row, its time over the floor's) of each row faster than its mode's floor (head_matmuls,
    which every other row's head runs too): not possible but through noisy timings."""
    out = []
    for r in rows:
        f = _row_of(rows, "head_matmuls", r["mode"])
        if f is not None and r["case"] != "head_matmuls" and r["ms"] < f["ms"]:
            out.append((r, r["ms"] / f["ms"]))
    return out


def _not_told_apart(totals: dict, chosen, name, repeats: int | None) -> str:
    """The rest of a choice's line ("; but ...") for a chosen option whose spread overlaps others'
    (`overlapping`); "" where none does."""
    rivals = overlapping(totals, chosen)
    if not rivals:
        return ""
    _, lo, hi = totals[chosen]
    others = " and ".join(f"{name(o)} ({totals[o][1]:.1f}-{totals[o][2]:.1f} ms)" for o in rivals)
    at = f"--repeats {repeats}" if repeats else "these repeats"
    return (
        f"; but its spread ({lo:.1f}-{hi:.1f} ms in total) overlaps that of {others}: not told "
        f"apart at {at}; measure again with more repeats on a quiet machine"
    )


def print_traffic_goals(rows: list[dict], dtype: str) -> None:
    held = traffic_goals(rows)
    if not held:
        return
    if dtype != "bfloat16":
        print(
            f"\nBytes per logit: the goals are for bf16 logits; these are {dtype} (no verdict: "
            "the B/logit column above gives the counts)"
        )
        return
    print("\nBytes per logit of the row work, against its path's goal (stated for bf16 logits)\n")
    print("| objective | mode | B/logit | goal (bf16) | met |")
    print("|---|---|---:|---:|---|")
    for g in held:
        r = g["row"]
        met = "yes" if g["met"] else "no"
        print(f"| {_label(r)} | {r['mode']} | {_bytes(r)} | <= {g['bound']:.0f} | {met} |")


def print_goals(
    rows: list[dict],
    measured: str = "in this run",
    on: str = "on this device",
    repeats: int | None = None,
) -> None:
    """The goals table, rows below their floor, then the chunk and block choices, each said to be
    not told apart from the options whose time spreads overlap its own (`repeats`: the repeats
    the rows were timed over, None where not known)."""
    held = goal_rows(rows)
    if held:
        print(
            f"\nGoals, against torchtitan's CE {measured} (floor: the head's matmuls alone; "
            f"stretch goal <= {FLOOR_BOUND}x)\n"
        )
        print("| objective | mode | goal | time | memory | vs floor | met |")
        print("|---|---|---|---:|---:|---:|---|")
        for g in held:
            floor = "-" if g["floor"] is None else f"{g['floor']:.2f}x"
            print(
                f"| {_label(g['row'])} | {g['row']['mode']} | {g['goal']} | {g['time']:.2f}x | "
                f"{g['memory']:.2f}x | {floor} | {'yes' if g['met'] else 'no'} |"
            )
    for r, ratio in below_floor(rows):
        print(
            f"\n{_label(r)} ({r['mode']}) takes {ratio:.2f}x the time of head_matmuls, below its "
            "floor: the timings are noisy; measure again with more repeats on a quiet machine"
        )
    held_to = (
        "within the memory goal"
        if _row_of(rows, "torchtitan_ce", "compiled")
        else "(memory not held to the goal: no compiled torchtitan_ce row)"
    )
    totals = chunk_totals(rows)
    for kernel, pair in sorted(chunk_choice(rows).items()):
        if pair is None:
            print(
                f"\nFused head, {kernel} row passes: no measured chunk size meets the memory goal"
            )
            continue
        chunk, block = pair
        if block is None:
            line = (
                f"\nFused head, {kernel} row passes: {chunk} tokens per chunk is the fastest "
                f"measured chunk size {held_to} {on} "
                f"(objective.fused_chunk_tokens = {chunk})"
            )
        else:
            line = (
                f"\nFused head, {kernel} row passes: {chunk} tokens per chunk in {block} MiB row "
                f"blocks is the fastest measured pair {held_to} {on} "
                f"(objective.fused_chunk_tokens = {chunk}; eager: objective.row_block_mib = "
                f"{block})"
            )
        print(line + _not_told_apart(totals[kernel], pair, _pair_name, repeats))
    block = block_choice(rows)
    if block is not None:
        print(
            f"\nUnfused eager PyTorch row passes: {block} MiB blocks are the fastest measured {on} "
            f"(objective.row_block_mib = {block})"
            + _not_told_apart(block_totals(rows), block, lambda b: f"{b} MiB blocks", repeats)
        )


def _pair_name(pair: tuple[int, int | None]) -> str:
    chunk, block = pair
    return f"{chunk} tokens per chunk" + ("" if block is None else f" in {block} MiB row blocks")


def run_mode(mode: str, measure: str, a) -> None:
    """Every case of one mode in this process: one JSON line each on stdout."""
    import torch

    for name, chunk_tokens, block in _rows(a, mode):
        print(json.dumps(run_case(name, mode, measure, a, chunk_tokens, block)), flush=True)
        if mode == "compiled":
            torch._dynamo.reset()  # each case compiles afresh, as in its own process


def _rows(a, mode: str, left_out: list | None = None) -> list[tuple[str, int | None, int | None]]:
    """(case, chunk tokens, row block MiB): each fused case once per --chunk-tokens value, each
    eager PyTorch loss case once per --row-block-mib value, except a block that walks the same
    rows as an earlier one (blocks as large as the chunk, or as all the tokens, are one and the
    same computation): those go to `left_out`."""
    out = []
    for name in a.cases:
        for chunk in a.chunk_tokens if _split(name)[0] else [None]:
            if not _has_row_blocks(name, mode):
                out.append((name, chunk, None))
                continue
            walked = set()
            for block in a.row_block_mib:
                rows = _block_rows(a, name, chunk, block)
                if rows in walked:
                    if left_out is not None:
                        left_out.append((name, chunk, block))
                    continue
                walked.add(rows)
                out.append((name, chunk, block))
    return out


def _block_rows(a, name: str, chunk: int | None, block: int | None) -> int:
    """Rows per block the eager passes of a case walk: `block` MiB of fp32 (None: the device's
    default, objectives/kernel.py), at most a chunk's rows (fused) or all the tokens."""
    from prefix_titan.objectives.fused import default_chunk_tokens
    from prefix_titan.objectives.kernel import rows_per_block

    device_type = a.device.split(":")[0]
    most = a.tokens
    if _split(name)[0]:
        most = min(most, chunk or default_chunk_tokens(device_type, a.dim))
    nbytes = None if block is None else block * 2**20
    return min(rows_per_block(a.vocab, device_type, nbytes), most)


def _has_row_blocks(name: str, mode: str) -> bool:
    """The case's loss runs the eager PyTorch row passes (the only ones walked in blocks)."""
    return mode == "eager" and _split(name)[1] == "pytorch" and _split(name)[2] in OBJECTIVES


def merge_measure(row: dict, measured: dict, measure: str) -> None:
    """Add one process's measurement of a case to its row: "time" and "both" (CUDA: time and
    memory from the same runs) give everything; "memory" (CPU, a second process run after the
    timed one) replaces the peaks."""
    if measure == "memory":
        for k in ("peak_bytes", "peak_min", "peak_max"):
            row[k] = measured[k]
    else:
        row.update(measured)


def _bytes(row: dict) -> str:
    b = row.get("bytes_per_logit")
    return "-" if b is None else f"{b:.1f}"


def _label(row: dict) -> str:
    chunk, block = row.get("chunk_tokens"), row.get("row_block_mib")
    label = row["case"] if chunk is None else f"{row['case']} @{chunk}"
    return label if block is None else f"{label} /{block}MiB"


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:  # "5": reset the peak resident set (Linux)
        f.write("5")


def _peak_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no VmHWM: peak memory needs Linux")


def _rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=2048)
    p.add_argument("--dim", type=int, default=1024, help="hidden size; 0: loss alone on logits")
    p.add_argument(
        "--chunk-tokens",
        type=int,
        nargs="+",
        default=[None],
        help="fused head chunk sizes to try, a row each (default: the per-device default)",
    )
    p.add_argument(
        "--row-block-mib",
        type=int,
        nargs="+",
        default=[None],
        help="eager PyTorch row blocks to try (MiB of fp32), a row each (default: the device's)",
    )
    p.add_argument("--vocab", type=int, default=128256)
    p.add_argument("--k", type=int, default=86, help="entries per row of synthetic prefix tables")
    p.add_argument(
        "--dtype", default=None, choices=["bfloat16", "float32"], help="logits' (default bfloat16)"
    )
    p.add_argument(
        "--device", default=None, choices=["cpu", "cuda"], help="default: cuda if available"
    )
    p.add_argument("--vocab-file", default=None, help="tiktoken rank file (Meta's tokenizer.model)")
    p.add_argument("--hf-assets-path", default=None)
    p.add_argument(
        "--modes", nargs="+", default=["eager", "compiled"], choices=["eager", "compiled"]
    )
    p.add_argument("--cases", nargs="+", default=None, choices=CASES)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", default=None, help="also write the rows here")
    p.add_argument(
        "--rows",
        nargs="+",
        action="extend",
        default=None,
        metavar="JSON",
        help="measure nothing: print the table, goals and choices of rows saved with --json "
        "(several files: one table, e.g. the eager and the compiled rows of two calls)",
    )
    p.add_argument("--mode-run", nargs=2, metavar=("MODE", "MEASURE"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.rows:
        p.set_defaults(**dict.fromkeys(MEASURING, _UNSET))  # what is given is then not _UNSET
        given = [name for name in MEASURING if getattr(p.parse_args(), name) is not _UNSET]
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            p.error(f"--rows prints saved rows and measures nothing: {flags} cannot go with it")
        try:
            rows, setup, dtype = read_rows(a.rows, a.dtype)
        except ValueError as e:
            p.refuse(str(e))
        repeats = re.search(r"median of (\d+)", setup)  # the setup line records the repeats
        print_report(rows, setup, dtype, saved=True, repeats=repeats and int(repeats.group(1)))
        if a.json:
            pathlib.Path(a.json).write_text(json.dumps(rows, indent=2))
        return
    a.dtype = a.dtype or "bfloat16"
    for flag, least in LEAST.items():
        value = getattr(a, flag[2:].replace("-", "_"))
        for v in value if isinstance(value, list) else [value]:  # nargs="+": each value
            if v is not None and v < least:
                what = " (0: the loss alone, on logits)" if flag == "--dim" else ""
                p.error(f"{flag} must be a whole number >= {least}{what}; got {v}")
    if not a.mode_run:  # the vocabulary read once here, so that a bad one is said before any run
        try:
            _texts(a)
        except Exception as e:  # a missing file, a bad line; tokenizers raises a bare Exception
            where = a.vocab_file and f"--vocab-file {a.vocab_file}"
            p.error(
                f"{where or f'--hf-assets-path {a.hf_assets_path}'} with --vocab {a.vocab}: {e}"
            )
    import torch

    if a.device is None:
        a.device = "cuda" if torch.cuda.is_available() else "cpu"
    if a.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: this torch sees no CUDA device (a CPU build, or no GPU); use cpu")
    from prefix_titan.objectives.triton_rows import interpreting

    triton_here = a.device == "cuda" or interpreting()
    if a.cases is None:
        import torch

        a.cases = [c for c in CASES if a.dim > 0 or c not in HEAD_ONLY]
        if a.dim > 0 and not hasattr(torch.nn.functional, "linear_cross_entropy"):
            a.cases.remove("torch_linear_ce")  # torch < 2.13
        if not triton_here:
            a.cases = [c for c in a.cases if _split(c)[1] != "triton"]
            print("no GPU: the Triton cases are left out", file=sys.stderr)
    elif a.dim == 0 and set(a.cases) & set(HEAD_ONLY):
        sys.exit(f"--dim 0 (loss alone) cannot run {sorted(set(a.cases) & set(HEAD_ONLY))}")
    elif not triton_here and any(_split(c)[1] == "triton" for c in a.cases):
        sys.exit(
            "the triton_* cases run Triton kernels, which need --device cuda "
            "(or TRITON_INTERPRET=1: Triton's CPU interpreter, slow, for checking only)"
        )

    if a.mode_run:
        run_mode(*a.mode_run, a)
        return

    rows = []
    for mode in a.modes:
        # CUDA: time and memory from the same runs; CPU: memory in a second process (see above).
        measures = ["both"] if a.device == "cuda" else ["time", "memory"]
        left_out: list = []
        found: dict[tuple, dict] = {row: {} for row in _rows(a, mode, left_out)}
        for name, chunk, block in left_out:
            where = name if chunk is None else f"{name} @{chunk}"
            print(
                f"  {where} /{block}MiB left out: the same rows per block as a smaller block",
                file=sys.stderr,
            )
        for measure in measures:
            env = dict(os.environ)
            if measure == "memory":  # malloc hands large blocks back: RSS tracks live tensors
                env["MALLOC_MMAP_THRESHOLD_"] = "65536"
            cmd = [
                sys.executable,
                __file__,
                *sys.argv[1:],
                "--device",
                a.device,
                "--cases",
                *a.cases,
                "--mode-run",
                mode,
                measure,
            ]
            what = {"both": "time and memory"}.get(measure, measure)
            print(f"{mode}: measuring the {what} of {len(found)} rows", file=sys.stderr, flush=True)
            with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) as proc:
                done = 0
                for line in proc.stdout:  # a row as soon as it is measured: progress, not silence
                    if line.startswith("{"):
                        r = json.loads(line)
                        key = (r["case"], r["chunk_tokens"], r["row_block_mib"])
                        merge_measure(found[key], r, measure)
                        done += 1
                        print(
                            f"  {done}/{len(found)} {_label(found[key])}",
                            file=sys.stderr,
                            flush=True,
                        )
            if proc.returncode != 0:
                sys.exit(f"{mode} ({measure}) failed with exit status {proc.returncode}")
        for row in found.values():
            rows.append(row)
            print(
                f"  {_label(row):32s} {mode:8s} {row['ms']:9.1f} ms "
                f"{row['peak_bytes'] / 2**20:8.0f} MiB {_bytes(row):>6s} B/logit",
                file=sys.stderr,
                flush=True,
            )

    import torch

    where = (
        torch.cuda.get_device_name()
        if a.device == "cuda"
        else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    )
    logits_mb = a.tokens * a.vocab * (2 if a.dtype == "bfloat16" else 4) / 2**20
    source = a.vocab_file or a.hf_assets_path or f"synthetic, K={a.k}"
    what = f"LM head (d={a.dim}) + loss" if a.dim else "loss alone"
    setup = (
        f"{what}, N={a.tokens} V={a.vocab} {a.dtype} logits ({logits_mb:.0f} MiB) on {where}; "
        f"prefix tables: {source}; median of {a.repeats}"
    )
    rows = [{**r, "dtype": a.dtype, "setup": setup} for r in rows]
    print_report(rows, setup, a.dtype, repeats=a.repeats)
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(rows, indent=2))


def print_report(
    rows: list[dict], setup: str, dtype: str, saved: bool = False, repeats: int | None = None
) -> None:
    """The table of `rows` (each mode's rows held to its torchtitan_ce row, where measured), then
    the goals, the chunk and block choices and the bytes per logit against their goals; `saved`:
    rows read back from files (--rows), not measured by this run; `repeats`: the repeats each row
    was timed over (None: not known)."""
    print(
        f"\n{setup} (spread: fastest-slowest, least-most); reserved: the allocator's reserved "
        "memory above the case's start (CUDA); B/logit: bytes the row work moves per logit\n"
    )
    print(
        "| objective | mode | fwd+bwd ms | spread ms | vs torchtitan CE | peak extra MiB "
        "| spread MiB | reserved MiB | vs torchtitan CE | B/logit |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for mode in dict.fromkeys(r["mode"] for r in rows):  # in the rows' order
        ref = _row_of(rows, "torchtitan_ce", mode)
        for r in (r for r in rows if r["mode"] == mode):
            t_ratio = f"{r['ms'] / ref['ms']:.2f}x" if ref else "-"
            m_ratio = (
                f"{r['peak_bytes'] / ref['peak_bytes']:.2f}x"
                if ref and ref["peak_bytes"] > 0
                else "-"
            )
            reserved = r.get("reserved_bytes")
            print(
                f"| {_label(r)} | {mode} | {r['ms']:.1f} | {r['ms_min']:.1f}-{r['ms_max']:.1f} | "
                f"{t_ratio} | {r['peak_bytes'] / 2**20:.0f} | "
                f"{r['peak_min'] / 2**20:.0f}-{r['peak_max'] / 2**20:.0f} | "
                f"{'-' if reserved is None else f'{reserved / 2**20:.0f}'} | {m_ratio} | "
                f"{_bytes(r)} |"
            )
    if saved:
        print_goals(rows, "in these rows", "on the device that measured them", repeats)
    else:
        print_goals(rows, repeats=repeats)
    print_traffic_goals(rows, dtype)


ROW_KEYS = ("case", "mode", "chunk_tokens", "ms", "ms_min", "ms_max", "peak_bytes", "peak_min")
NUMBERS = ("ms", "ms_min", "ms_max", "peak_bytes", "peak_min", "peak_max")
OPTIONAL = ("reserved_bytes", "bytes_per_logit")  # None where not measured
WHOLE = ("chunk_tokens", "row_block_mib")  # None where not the row's setting
_UNSET = object()


def _number(v) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


# What --rows cannot be given with: the options that say what to measure.
MEASURING = (
    "tokens", "dim", "chunk_tokens", "row_block_mib", "vocab", "k", "device", "vocab_file",
    "hf_assets_path", "modes", "cases", "repeats",
)  # fmt: skip


def read_rows(paths: list[str], dtype: str | None = None) -> tuple[list[dict], str, str]:
    """(rows, setup line, dtype) of the rows that earlier runs wrote with --json, in the files'
    order: one table, e.g. of the eager and the compiled rows of two calls. Refuses files that
    hold no such rows, rows of different setups or dtypes (their ratios would compare different
    problems), a row measured twice, and `dtype` (--dtype, None where not given) other than the
    rows' own. Rows written before rows kept their setup and dtype take `dtype` (else bfloat16)
    and an unrecorded setup."""
    rows, seen, setups, dtypes = [], {}, {}, {}
    for path in paths:
        try:
            got = json.loads(pathlib.Path(path).read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"--rows {path}: {e}") from None
        if not isinstance(got, list) or not got:
            raise ValueError(f"--rows {path}: holds no rows (a JSON list written by --json)")
        for r in got:
            missing = [k for k in ROW_KEYS if not isinstance(r, dict) or k not in r]
            if missing:
                raise ValueError(
                    f"--rows {path}: a row without {', '.join(missing)}: not rows written by --json"
                )
            r = {"row_block_mib": None, "peak_max": r["peak_min"], **r}
            wrong = [f"{k} not a finite number" for k in NUMBERS if not _number(r[k])]
            wrong += [
                f"{k} neither null nor a finite number"
                for k in OPTIONAL
                if r.get(k) is not None and not _number(r[k])
            ]
            wrong += [
                f"{k} neither null nor a whole number"
                for k in WHOLE
                if r[k] is not None and type(r[k]) is not int
            ]
            if not wrong and r["ms"] <= 0:
                wrong = ["ms not above 0"]
            if r["case"] not in CASES or r["mode"] not in ("eager", "compiled") or wrong:
                raise ValueError(
                    f"--rows {path}: a row of case {r['case']!r}, mode {r['mode']!r}"
                    + (f", with {', '.join(wrong)}" if wrong else "")
                    + f": not a row written by --json (cases: {', '.join(CASES)}; modes: eager, "
                    "compiled)"
                )
            key = (r["case"], r["mode"], r["chunk_tokens"], r["row_block_mib"])
            if key in seen:
                raise ValueError(
                    f"--rows: {_label(r)} ({r['mode']}) is in both {seen[key]} and {path}; "
                    "give one measurement of each row"
                )
            seen[key] = path
            if dtype is not None and r.get("dtype", dtype) != dtype:
                raise ValueError(
                    f"--dtype {dtype}, but {path} holds rows measured with {r['dtype']} logits"
                )
            setups.setdefault(r.get("setup"), path)
            dtypes.setdefault(r.get("dtype", dtype or "bfloat16"), path)
            rows.append(r)
    known = {s: f for s, f in setups.items() if s is not None}
    for what, found in (("setups", known), ("logits' dtypes", dtypes)):
        if len(found) > 1:
            (one, a), (other, b) = list(found.items())[:2]
            raise ValueError(
                f"--rows: the files' {what} differ ({a}: {one}; {b}: {other}); "
                "one table holds rows of one setup"
                + (
                    " (rows saved without a recorded dtype are taken as --dtype, default bfloat16)"
                    if what != "setups"
                    else ""
                )
            )
    setup = next(iter(known), "setup not recorded in the rows")
    if None in setups and known:
        setup += " (some rows without a recorded setup)"
    return rows, f"{setup}; rows from {', '.join(paths)}", next(iter(dtypes))


if __name__ == "__main__":
    main()
