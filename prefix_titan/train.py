"""Launcher: `python -m prefix_titan.train --job.config_file FILE [torchtitan CLI overrides]`.

Runs torchtitan's own `train` main unchanged. On a machine with a GPU this is exactly
`python -m torchtitan.train`; without one it first adapts torchtitan's device layer to the CPU
(see cpu.py). Works alone (one process) or under `torchrun --nproc_per_node=N`.
"""

from __future__ import annotations

import os
import sys


def local_command(*args: str, nproc: int = 1) -> list[str]:
    """The command that runs this launcher with `args` on this machine: `nproc` ranks under
    torchrun's standalone mode (one rendezvous on a free local port)."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "prefix_titan.train",
        *args,
    ]


def main() -> None:
    from .cpu import has_accelerator, use_cpu

    if "RANK" not in os.environ:  # started directly: a world of one, through torchrun
        command = local_command(*sys.argv[1:])
        os.execv(command[0], command)
    if not has_accelerator():
        use_cpu()
    from torchtitan.train import Trainer
    from torchtitan.train import main as torchtitan_main

    torchtitan_main(Trainer)
    _report_checkpoint()


def _report_checkpoint() -> None:
    """Say where the run's distributed checkpoint went (torchtitan only logs the folder)."""
    from torchtitan.config import ConfigManager

    if os.environ.get("RANK", "0") != "0":
        return
    config = ConfigManager().parse_args(sys.argv[1:])
    if not config.checkpoint.enable:
        return
    from .run_folder import checkpoint_steps

    folder = os.path.abspath(os.path.join(config.job.dump_folder, config.checkpoint.folder))
    steps = checkpoint_steps(folder)
    if steps:
        print(f"DCP checkpoint written to {steps[-1]}", flush=True)
    else:
        print(f"no checkpoint was written under {folder}", flush=True)


if __name__ == "__main__":
    main()
