"""prefix_titan: soft-target training objectives (prefix-aware label smoothing) for torchtitan.

Importing the package registers the `prefix_llama3` TrainSpec and our datasets with torchtitan
(`[experimental] custom_import = "prefix_titan"`).
"""

from .data import register_datasets
from .train_spec import TRAIN_SPEC_NAME, register

register_datasets()
register()

__all__ = ["TRAIN_SPEC_NAME"]
