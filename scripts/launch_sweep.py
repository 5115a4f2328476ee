"""Run every arm of the sweep with torchrun, one after another (or print the commands).

    python scripts/launch_sweep.py --dry-run
    python scripts/launch_sweep.py [--arms ce label_smoothing prefix_tau0.5 ...] [--nproc-per-node 8]
        [--nnodes 4 --node-rank R --rdzv-endpoint HOST:29500] [-- extra torchtitan overrides]

Arms are the generated train_configs/ files (see make_configs.py): CE and label smoothing first,
then the prefix arms. Every node of a multi-node job runs this same command with its own
--node-rank (scripts/sweep.sbatch does that under Slurm). A failed arm stops the sweep unless
--keep-going; a finished arm (its dump folder holds the final step's checkpoint) is skipped, so the
same command resumes an interrupted sweep. With more GPUs than global batch / local batch, the
local batch is lowered so that every run keeps the same global batch (tokens per step).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shlex
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from scripts.make_configs import arms  # noqa: E402


def batch_override(arm: str, world: int) -> list[str]:
    """Keep the global batch (tokens per step) when more GPUs would overshoot it."""
    import tomllib

    t = tomllib.loads((ROOT / "train_configs" / f"{arm}.toml").read_text())["training"]
    local, global_ = t["local_batch_size"], t["global_batch_size"]
    if local * world <= global_:
        return []
    if global_ % world:
        raise SystemExit(
            f"{world} GPUs cannot split the global batch of {global_} sequences evenly"
        )
    return ["--training.local_batch_size", str(global_ // world)]


def command(arm: str, a, extra: list[str]) -> list[str]:
    extra = batch_override(arm, a.nnodes * a.nproc_per_node) + extra
    cmd = ["torchrun", f"--nproc_per_node={a.nproc_per_node}", f"--nnodes={a.nnodes}"]
    ranks = os.environ.get(
        "LOG_RANK", "0"
    )  # each node prints local rank 0's log; "all": every rank
    if ranks != "all":
        cmd.append(f"--local-ranks-filter={ranks}")
    if a.nnodes > 1:
        cmd += [
            f"--node_rank={a.node_rank}",
            "--rdzv_backend=c10d",
            f"--rdzv_endpoint={a.rdzv_endpoint}",
            f"--rdzv_id=prefix_titan_{arm}",
        ]
    return cmd + [
        "-m",
        "torchtitan.train",
        "--job.config_file",
        f"train_configs/{arm}.toml",
        *extra,
    ]


def finished(arm: str) -> bool:
    import tomllib

    config = tomllib.loads((ROOT / "train_configs" / f"{arm}.toml").read_text())
    folder = ROOT / config["job"]["dump_folder"] / config["checkpoint"]["folder"]
    return (folder / f"step-{config['training']['steps']}").is_dir()


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--arms", nargs="+", default=list(arms()), choices=list(arms()), metavar="ARM")
    p.add_argument("--nproc-per-node", type=int, default=8)
    p.add_argument("--nnodes", type=int, default=1)
    p.add_argument("--node-rank", type=int, default=0)
    p.add_argument("--rdzv-endpoint", default=None, help="HOST:PORT of node 0 (multi-node)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--keep-going", action="store_true", help="continue after a failed arm")
    a, extra = p.parse_known_args()
    extra = [x for x in extra if x != "--"]
    if a.nnodes > 1 and not a.rdzv_endpoint:
        p.error("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (node 0's address)")
    if not 0 <= a.node_rank < a.nnodes:
        p.error(f"--node-rank must be in [0, {a.nnodes}); got {a.node_rank}")
    failed = []
    for arm in a.arms:
        cmd = command(arm, a, extra)
        if a.dry_run:
            print(shlex.join(cmd))
            continue
        if finished(arm):
            print(f"[sweep] {arm}: finished already, skipped", flush=True)
            continue
        print(f"[sweep] {arm}: {shlex.join(cmd)}", flush=True)
        if subprocess.run(cmd, cwd=ROOT).returncode != 0:
            failed.append(arm)
            if not a.keep_going:
                break
    if failed:
        print(f"[sweep] failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
