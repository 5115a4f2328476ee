"""The files of a run's dump folder (job.dump_folder), written during training and evaluation and
read by the report: their names live here and nowhere else."""

from __future__ import annotations

import glob
import os

RUN_CONFIG = "run_config.json"
"""The run's whole job config, written when training starts"""
METRICS_LOG = "prefix_metrics.jsonl"
"""One JSON line per logged step (loss, plain CE, lr) and per validation (plain CE)"""
EVAL_RESULTS = "eval_results.json"
"""lm-eval results, written beside each evaluated model folder"""
EVAL_CURVE = "eval_curve.json"
"""{step: results} of every checkpoint (eval --all-checkpoints)"""
EXPORTS = "hf"
"""Sub-folder of the run where eval --all-checkpoints exports each step-N"""


def checkpoint_steps(folder: str) -> list[str]:
    """The `step-N` checkpoint folders under `folder`, oldest first (none if it does not exist)."""
    steps = [d for d in glob.glob(os.path.join(folder, "step-*")) if os.path.isdir(d)]
    return sorted(steps, key=lambda d: int(d.rsplit("-", 1)[1]))
