#!/usr/bin/env bash
# Fetch, on a machine with the package index, the wheels that a GPU machine with CUDA torch,
# Triton, numpy, tokenizers, safetensors, pytest, pandas, pyarrow and huggingface_hub already
# installed lacks for scripts/gpu_checks.sh: torchtitan and what it imports. They are saved into
# WHEEL_DIR (default .whl/, which git ignores) for Python PY_VERSION (default 3.12) on x86-64
# Linux; gpu_checks.sh installs them (no index, no dependencies) when it finds that folder.
#
#     bash scripts/gpu_wheels.sh [WHEEL_DIR]
#
# The versions are the ones CI installs today (pip resolving ".[test]"); tomli's and multiprocess's
# wheels are made for one Python version, the others are pure Python.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-.whl}"
py="${PY_VERSION:-3.12}"
mkdir -p "$dir"
wheels=(
    torchtitan==0.2.2 torchdata==0.11.0 tyro==1.0.17 docstring-parser==0.18.0 typeguard==4.6.1
    tomli==2.5.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
)
platforms=()
for n in 2_28 2_27 2_17 2014 1; do
    case $n in
        2014 | 1) platforms+=(--platform "manylinux${n}_x86_64") ;;
        *) platforms+=(--platform "manylinux_${n}_x86_64") ;;
    esac
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" \
    --implementation cp "${platforms[@]}" -d "$dir" "${wheels[@]}"
ls -1 "$dir"
du -sh "$dir"
