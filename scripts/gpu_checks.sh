#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one run: the cuda-marked tests (values and gradients of the
# loss paths, the fp32 weight-gradient accumulation, no host sync in a training step), the Triton
# row kernels compiled for the GPU, then the loss benchmark at the 500M flavor's head size with
# two chunk sizes the fused head's default is chosen from, and three sizes of the eager PyTorch
# row passes' fp32 block (32 MiB fits an H100's 50 MB L2 cache, 64 MiB does not, 256 MiB is
# today's GPU default). Writes everything under OUT_DIR
# (default gpu-checks/): pytest's report, the benchmark's table and its JSON rows.
#
#     bash scripts/gpu_checks.sh [OUT_DIR]
#
# Needs torch with CUDA, Triton, torchtitan and this package installed (pip install -e ".[test]").
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-checks}"
mkdir -p "$out"
python -c "import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.get_device_name())" \
    | tee "$out/versions.txt"
status=0
python -m pytest -q -m cuda -rs tests/ 2>&1 | tee "$out/pytest_cuda.txt" || status=1
python -m pytest -q -rs tests/test_triton_rows.py tests/test_traffic.py 2>&1 \
    | tee "$out/pytest_triton_traffic.txt" || status=1
# One objective per row kernel (they cost the same per logit; compiling every case of the full
# table takes over 20 minutes on an H100), two chunk sizes, three eager row blocks.
python scripts/bench_loss.py --tokens 16384 --dim 1024 --chunk-tokens 2048 4096 \
    --row-block-mib 32 64 256 \
    --cases torchtitan_ce head_matmuls prefix_tau0.5 triton_prefix_tau0.5 fused_prefix_tau0.5 \
    fused_triton_prefix_tau0.5 --json "$out/bench_loss.json" 2>&1 | tee "$out/bench_loss.md" \
    || status=1
exit $status
