"""prefix_titan: soft-target training objectives (prefix-aware label smoothing) for torchtitan.

Importing the package does nothing: `prefix_titan.objectives` is plain PyTorch, usable without
torchtitan. Runs import `prefix_titan.train_spec` (`[experimental] custom_import`), which
registers the `prefix_llama3` TrainSpec and our datasets with torchtitan.
"""
