#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one run: the cuda-marked tests (values and gradients of the
# loss paths, the fp32 weight-gradient accumulation, no host sync in a training step), the rest of
# the Triton row kernels' tests, compiled for the GPU, then the loss benchmark at the 500M
# flavor's head size with two chunk sizes the fused head's default is chosen from, and three
# sizes of the eager PyTorch row passes' fp32 block (32 MiB fits an H100's 50 MB L2 cache,
# 64 MiB does not, 256 MiB is today's GPU default). Writes everything under OUT_DIR (default
# gpu-checks/): pytest's report, the benchmark's table and its JSON rows.
#
#     bash scripts/gpu_checks.sh [OUT_DIR]
#
# Needs torch with CUDA, Triton, pytest, and torchtitan with what it imports. This package is
# read from the checkout (PYTHONPATH), so it needs no install. On a machine that has the first
# three but no package index, fetch the rest beforehand where there is one
# (`bash scripts/gpu_wheels.sh`, into .whl/) and bring that folder along: when .whl/ (or
# $WHEEL_DIR) holds wheels, they are installed into a folder of their own first, without
# dependencies. The tests run are those of the files with cuda-marked tests, so the evaluation
# extras (lm-eval) are not needed. Each step writes its report under OUT_DIR as it goes, so a run
# stopped by a time limit keeps what it finished; the whole has not been timed on a GPU yet.
# On a lent device machine, with .whl/ fetched here first:
#     run(command="bash scripts/gpu_checks.sh $OUT", carry=[".whl"], timeout_s=540)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-checks}"
mkdir -p "$out"
py="${PYTHON:-python3}"
wheels="${WHEEL_DIR:-.whl}"
site="${TMPDIR:-/tmp}/prefix_titan_site"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G "$wheels/*.whl" >/dev/null; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" "$wheels"/*.whl || exit 1
    export PYTHONPATH="$PYTHONPATH:$site"
fi
"$py" -c "import torch, triton, torchtitan; print(torch.__version__, triton.__version__, \
getattr(torchtitan, '__version__', ''), torch.cuda.get_device_name())" \
    | tee "$out/versions.txt" || exit 1
mapfile -t cuda_files < <(grep -l "pytest.mark.cuda" tests/test_*.py)
status=0
"$py" -m pytest -q -m cuda -rs "${cuda_files[@]}" 2>&1 | tee "$out/pytest_cuda.txt" || status=1
"$py" -m pytest -q -rs -m "not cuda" tests/test_triton_rows.py 2>&1 \
    | tee "$out/pytest_triton.txt" || status=1
# One objective per row kernel (they cost the same per logit; compiling every case of the full
# table takes over 20 minutes on an H100), two chunk sizes, three eager row blocks.
"$py" scripts/bench_loss.py --tokens 16384 --dim 1024 --chunk-tokens 2048 4096 \
    --row-block-mib 32 64 256 \
    --cases torchtitan_ce head_matmuls prefix_tau0.5 triton_prefix_tau0.5 fused_prefix_tau0.5 \
    fused_triton_prefix_tau0.5 --json "$out/bench_loss.json" 2>&1 | tee "$out/bench_loss.md" \
    || status=1
exit $status
