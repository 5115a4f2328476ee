"""What a trained model is measured on: export to a Hugging Face folder (export.py), lm-eval-harness
with our tasks (harness.py, tasks/) and the character probes (probes.py)."""
