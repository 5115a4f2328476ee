"""Launcher: `python -m prefix_titan.train --job.config_file FILE [torchtitan CLI overrides]`.

Runs torchtitan's own `train` main unchanged. On a machine with a GPU this is exactly
`python -m torchtitan.train`; without one it first adapts torchtitan's device layer to the CPU
(see cpu.py). Works alone (one process) or under `torchrun --nproc_per_node=N`.
"""

from __future__ import annotations

import os
import socket
import sys


def _single_process_env() -> None:
    """torchtitan reads torchrun's variables; supply a world of one when started directly."""
    if "RANK" in os.environ:
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


def local_command(*args: str, nproc: int = 1) -> list[str]:
    """The command that runs this launcher with `args` on this machine, under torchrun (one
    rendezvous on a free local port) when nproc > 1: for scripts and tests that start runs."""
    torchrun = ["-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
                "--rdzv-backend=c10d", "--rdzv-endpoint=127.0.0.1:0"] if nproc > 1 else []
    return [sys.executable, *torchrun, "-m", "prefix_titan.train", *args]


def main() -> None:
    from .cpu import has_accelerator, use_cpu

    _single_process_env()
    if not has_accelerator():
        use_cpu()
    import prefix_titan  # noqa: F401  (registers the TrainSpec and datasets)
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
    from .export import checkpoint_steps

    folder = os.path.abspath(os.path.join(config.job.dump_folder, config.checkpoint.folder))
    steps = checkpoint_steps(folder)
    if steps:
        print(f"DCP checkpoint written to {steps[-1]}", flush=True)
    else:
        print(f"no checkpoint was written under {folder}", flush=True)


if __name__ == "__main__":
    main()
