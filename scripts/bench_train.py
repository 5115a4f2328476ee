"""End to end: tokens/s and peak memory of training, fused vs unfused loss, over local batch sizes.

    python scripts/bench_train.py [--config train_configs/embedded_default.toml] [--flavor tiny_128k]
                                  [--seq-len 512] [--batches 1 2 4 8 16 32] [--steps 6]
                                  [--budget-gib G] [--nproc 1] [-- torchtitan overrides ...]

Each (loss, local batch) is a fresh run of torchtitan's main through prefix_titan's launcher.
Reported: median tokens/s per rank over the steps after the first two (compilation, warm-up), its
spread over those timed steps (slowest-fastest) and how many there were (fewer than 3: a note says
so), and the peak memory torchtitan logs (GPU: the allocator's reserved peak; CPU: the process's
peak resident set). Batches double until a run fails (GPU: out of memory) or its peak exceeds
--budget-gib; the table marks the largest batch that fit. On the 500M flavor with a GPU, e.g.:

    python scripts/bench_train.py --config train_configs/prefix_tau0.5.toml --flavor 500M \
        --seq-len 2048 --batches 4 8 16 32 64 -- --training.dataset_path DIR
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile

from prefix_titan.train import local_command

ROOT = pathlib.Path(__file__).resolve().parent.parent

STEP = re.compile(r"step:\s*(\d+)\s+loss:.*?memory:\s*([\d.]+)GiB.*?tps:\s*([\d,]+)")


def run(a, fused: bool, batch: int, tmp: str) -> dict:
    args = local_command(
        "--job.config_file",
        a.config,
        "--job.dump_folder",
        os.path.join(tmp, f"{'fused' if fused else 'unfused'}_{batch}"),
        "--model.flavor",
        a.flavor,
        "--training.seq_len",
        str(a.seq_len),
        "--training.local_batch_size",
        str(batch),
        "--training.global_batch_size",
        "-1",
        "--training.steps",
        str(a.steps),
        "--metrics.log_freq",
        "1",
        "--metrics.disable_color_printing",
        "--validation.no-enable",
        "--checkpoint.no-enable",
        *(["--objective.fused_loss"] if fused else []),
        *a.overrides,
        nproc=a.nproc,
    )
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    log = out.stdout + out.stderr
    steps = {int(s): (float(m), int(t.replace(",", ""))) for s, m, t in STEP.findall(log)}
    if out.returncode != 0 or len(steps) < a.steps:
        oom = "out of memory" in log.lower()
        return {"ok": False, "why": "out of memory" if oom else log.strip().splitlines()[-1][:200]}
    tps = [t for s, (_, t) in steps.items() if s > 2]
    peak = max(m for m, _ in steps.values())
    fits = a.budget_gib is None or peak <= a.budget_gib
    return {
        "ok": fits,
        "why": "" if fits else f"peak {peak:.2f} GiB > budget",
        "tps": statistics.median(tps),
        "tps_min": min(tps),
        "tps_max": max(tps),
        "timed": len(tps),
        "peak_gib": peak,
    }


FEW_STEPS = 3
"""Fewer timed steps than this: the table says its medians are from that few."""


def _spread(r: dict) -> str:
    return f"{r['tps_min']:,.0f}-{r['tps_max']:,.0f}"


def few_steps_note(rows: list[dict]) -> str:
    """A note where the rows' tokens/s are medians of fewer than FEW_STEPS timed steps ("" where
    none are): so few steps are not told apart from load noise."""
    timed = sorted({r["timed"] for r in rows if "timed" in r and r["timed"] < FEW_STEPS})
    if not timed:
        return ""
    n = " or ".join(map(str, timed))
    return (
        f"note: tokens/s from {n} timed step(s) per run (--steps minus the two warm-up steps): "
        f"too few to tell load noise apart; time at least {FEW_STEPS} (--steps "
        f"{FEW_STEPS + 2} or more)\n"
    )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", default="train_configs/embedded_default.toml")
    p.add_argument("--flavor", default="tiny_128k")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    p.add_argument(
        "--steps",
        type=int,
        default=6,
        help="steps per run, at least 3: the throughput is the median over the steps after the "
        "first two (warm-up and compilation)",
    )
    p.add_argument(
        "--budget-gib",
        type=float,
        default=None,
        help="count a batch as fitting only below this peak (CPU has no OOM to hit)",
    )
    p.add_argument("--nproc", type=int, default=1)
    p.add_argument("overrides", nargs="*", help="after --: more torchtitan settings")
    a = p.parse_args()
    if a.steps < 3:
        p.error(f"--steps must be >= 3 (the first two are warm-up, not measured); got {a.steps}")
    if any(b < 1 for b in a.batches):
        p.error(f"--batches must be whole numbers >= 1; got {a.batches}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fused in (False, True):
            for batch in a.batches:
                r = {
                    "loss": "fused" if fused else "unfused",
                    "batch": batch,
                    **run(a, fused, batch, tmp),
                }
                rows.append(r)
                print(
                    f"  {r['loss']:8s} batch {batch:4d}: "
                    + (
                        f"{r['tps']:>10,.0f} tok/s ({_spread(r)} over {r['timed']} timed steps)"
                        f"  {r['peak_gib']:6.2f} GiB  {r['why']}"
                        if "tps" in r
                        else r["why"]
                    ),
                    file=sys.stderr,
                    flush=True,
                )
                if not r["ok"]:
                    break
    print(
        f"\n{a.flavor}, seq_len {a.seq_len}, {a.nproc} rank(s), config {a.config}"
        + (f", budget {a.budget_gib} GiB" if a.budget_gib else "")
        + "\n"
    )
    print(
        "| loss | local batch | tokens/s per rank | spread tokens/s (slowest-fastest step) "
        "| timed steps | peak GiB | fits |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        tps = f"{r['tps']:,.0f} | {_spread(r)} | {r['timed']}" if "tps" in r else "- | - | -"
        peak = f"{r['peak_gib']:.2f}" if "peak_gib" in r else "-"
        print(
            f"| {r['loss']} | {r['batch']} | {tps} | {peak} | {'yes' if r['ok'] else 'no: ' + r['why']} |"
        )
    note = few_steps_note(rows)
    if note:
        print("\n" + note, end="")
    for loss in ("unfused", "fused"):
        fit = [r["batch"] for r in rows if r["loss"] == loss and r["ok"]]
        tried = sorted(r["batch"] for r in rows if r["loss"] == loss)
        which = f"{max(fit)} (of {', '.join(map(str, tried))} tried)" if fit else "none tried"
        print(f"\nlargest local batch that fits, {loss}: {which}", end="")
    print()


if __name__ == "__main__":
    main()
