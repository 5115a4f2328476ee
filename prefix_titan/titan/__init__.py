"""The torchtitan adapters: the job config's checks (checks.py), the loss objects over the run's
loss plan (loss.py), datasets and dataloaders (datasets.py), the tokenizer hook (tokenizer.py),
validation (validate.py), metrics and the step checks (metrics.py, step_checks.py), the CPU device
layer (cpu.py) and log filters (logs.py). train_spec.py assembles them into the TrainSpec."""
