import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def dry_run(*args):
    out = subprocess.run(
        [sys.executable, "scripts/launch_sweep.py", "--dry-run", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return out.returncode, out.stdout.splitlines(), out.stderr


def test_dry_run_lists_every_arm_baselines_first():
    rc, lines, _ = dry_run()
    assert rc == 0 and len(lines) == 14
    assert lines[0].endswith("train_configs/ce.toml") and lines[1].endswith("label_smoothing.toml")
    assert all(
        line.startswith(
            "torchrun --nproc_per_node=8 --nnodes=1 --local-ranks-filter=0 -m torchtitan.train"
        )
        for line in lines
    )
    assert sum("prefix_norm_tau" in line for line in lines) == 6


def test_multi_node_keeps_the_global_batch():
    rc, lines, _ = dry_run(
        "--nnodes",
        "4",
        "--node-rank",
        "2",
        "--rdzv-endpoint",
        "head:29500",
        "--arms",
        "ce",
        "--",
        "--metrics.log_freq",
        "1",
    )
    assert rc == 0 and len(lines) == 1
    assert "--node_rank=2 --rdzv_backend=c10d --rdzv_endpoint=head:29500" in lines[0]
    # 32 GPUs x 16 > 256: local batch 8 keeps 256 x 2048 tokens per step.
    assert lines[0].endswith("--training.local_batch_size 8 --metrics.log_freq 1")


def test_bad_launch_settings_are_refused():
    rc, _, err = dry_run("--nnodes", "2")
    assert rc == 2 and "--rdzv-endpoint" in err
    rc, _, err = dry_run("--nnodes", "2", "--node-rank", "2", "--rdzv-endpoint", "h:1")
    assert rc == 2 and "--node-rank must be in [0, 2)" in err
    rc, _, err = dry_run("--arms", "prefix_tau3.0")
    assert rc == 2 and "invalid choice" in err
