"""scripts/bench_loss.py runs every case of a mode in one process and measures each case's own
peak memory (tiny sizes on a CPU: whether it works, not how fast)."""

import json
import re
import subprocess
import sys

from conftest import ROOT


def test_bench_loss_prints_a_measured_row_per_case():
    out = subprocess.run(
        [sys.executable, "scripts/bench_loss.py", "--tokens", "512", "--dim", "64"]
        + ["--vocab", "4099", "--k", "9", "--dtype", "float32", "--repeats", "2"]
        + ["--modes", "eager", "--cases", "torchtitan_ce", "prefix_tau0.5", "fused_prefix_tau0.5"]
        + ["--chunk-tokens", "128", "512"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = {
        m.group(1): (float(m.group(2)), int(m.group(3)))
        for m in re.finditer(
            r"^\| ([\w.]+(?: @\d+)?) \| eager \| ([\d.]+) \| [^|]+ \| (\d+) \|", out.stdout, re.M
        )
    }
    fused = ["fused_prefix_tau0.5 @128", "fused_prefix_tau0.5 @512"]  # a row per chunk size
    assert set(rows) == {"torchtitan_ce", "prefix_tau0.5", *fused}, out.stdout
    assert all(ms > 0 for ms, _ in rows.values())
    logits_mib = 512 * 4099 * 4 / 2**20  # 8 MiB: the unfused cases hold at least the logits
    assert rows["torchtitan_ce"][1] >= logits_mib and rows["prefix_tau0.5"][1] >= logits_mib
    for case in fused:  # never the [N, V] logits
        assert rows[case][1] < rows["torchtitan_ce"][1], case


def test_bench_loss_triton_cases_need_a_gpu_or_the_interpreter():
    """On a CPU the triton cases are refused by name; in Triton's interpreter one mode's process
    runs them (one process, not the whole table: the interpreter is slow)."""
    import os

    import torch

    if torch.cuda.is_available():
        return  # on a GPU the cases run; the check below is the CPU's refusal
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    args = [sys.executable, "scripts/bench_loss.py", "--tokens", "16", "--dim", "8"]
    args += ["--vocab", "300", "--k", "5", "--dtype", "float32", "--repeats", "1"]
    args += ["--modes", "eager", "--cases", "triton_prefix_tau0.5", "fused_triton_prefix_tau0.5"]
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 1 and "need --device cuda" in out.stderr
    out = subprocess.run(
        args + ["--device", "cpu", "--mode-run", "eager", "time"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env | {"TRITON_INTERPRET": "1"},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert [r["case"] for r in rows] == ["triton_prefix_tau0.5", "fused_triton_prefix_tau0.5"]
    assert all(r["ms"] > 0 for r in rows)
