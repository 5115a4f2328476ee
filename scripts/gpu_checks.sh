#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one run: the cuda-marked tests (values and gradients of the
# loss paths, the fp32 weight-gradient accumulation, no host sync in a training step), the rest of
# the Triton row kernels' tests, compiled for the GPU, then the loss benchmark at the 500M
# flavor's head size with the three chunk sizes the fused head's default is chosen from (2,048,
# 4,096: the GPU default since 2026-12-04, and 8,192), the eager PyTorch row passes in the GPU's
# default fp32 block (256 MiB; 32, 64 and 1,024 MiB were measured slower or larger on an H200,
# docs/benchmarks.md). Writes everything under OUT_DIR (default gpu-checks/): pytest's report,
# the benchmark's table and its JSON rows per mode, and with both modes bench_loss_both.md: the
# two modes' rows as one table, where the eager fused rows meet the compiled CE they are held to.
#
#     bash scripts/gpu_checks.sh [OUT_DIR] [PARTS]
#
# PARTS, a comma-separated list of tests, eager, compiled, train and determinism (default: the
# first three), runs only those steps: the tests, the benchmark's eager rows, its compiled rows,
# training the 500M sweep config (train_configs/prefix_tau0.5.toml, compiled, bf16, local batch
# 16) for 30 steps through torchtitan's trainer three ways: the default loss (objective.kernel =
# auto), the PyTorch row passes, and the fused head; and `determinism`: 20 steps of that config
# under torch's deterministic algorithms (--debug.deterministic, no warn_only; seed 0), twice, then
# stopped at step 10 and resumed, then with the PyTorch rows and with the fused head, compared step
# by step with the first (scripts/compare_runs.py, into determinism.md): whether a GPU run repeats
# itself and a resume follows it bit for bit (with warn_only, on an H200, two such runs differed
# by up to 1.3e-4 through step 13 and parted from step 14, cuDNN's attention backward keeping its
# non-deterministic algorithm: docs/benchmarks.md), and how far the row paths are apart; six
# launches of the 500M, estimated at about 5 minutes on an H200 from the train part's (not yet
# run there).
# `train` and `determinism` need the Llama-3 tokenizer and token shards in TRAIN_ASSETS (default
# .gpu_train/, which git ignores; 8 MB), made beforehand where the package is installed:
#     python -c "from prefix_titan.data.tokenizers import convert_llama3_tokenizer as c; \
#         c('.gpu_train/tokenizer')"
#     python -m prefix_titan.prepare --source embedded --tokenizer .gpu_train/tokenizer \
#         --out .gpu_train/shards --tokens 1e6 --val-every 4
# Calls of a few minutes each (tests,eager then compiled) leave room to react between them.
# PYTEST_WORKERS=N runs the tests in N processes (pytest-xdist, where installed; without it, in
# one): most of their time is compiling kernels.
#
# Needs torch with CUDA, Triton, pytest, and torchtitan with what it imports. This package is
# read from the checkout (PYTHONPATH), so it needs no install. On a machine that has the first
# three but no package index, fetch the rest beforehand where there is one
# (`bash scripts/gpu_wheels.sh`, into .whl/) and bring that folder along: when .whl/ (or
# $WHEEL_DIR) holds wheels, they are installed into a folder of their own first, without
# dependencies. The tests run are those of the files with cuda-marked tests, so the evaluation
# extras (lm-eval) are not needed. Each step writes its report under OUT_DIR as it goes, so a run
# stopped by a time limit keeps what it finished. On an H200, all four parts in one call: 24 s
# to install the wheels and read the versions, tests 127 s (PYTEST_WORKERS=8), eager 27 s,
# compiled 50 s, train 135 s; 363 s in all.
# On a lent device machine, with .whl/ fetched here first:
#     run(command="bash scripts/gpu_checks.sh $OUT", carry=[".whl"], timeout_s=540)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-checks}"
allowed="tests, eager, compiled, train, determinism (comma-separated, no spaces)"
IFS=, read -ra asked <<<"${2:-tests,eager,compiled}"
[[ ${#asked[@]} -gt 0 ]] || { echo "PARTS: none given; allowed: $allowed" >&2; exit 2; }
for part in "${asked[@]}"; do
    case $part in
        tests | eager | compiled | train | determinism) ;;
        *) echo "PARTS: unknown part '$part'; allowed: $allowed" >&2; exit 2 ;;
    esac
done
parts=",${2:-tests,eager,compiled},"
assets="${TRAIN_ASSETS:-.gpu_train}"
if [[ $parts == *,train,* || $parts == *,determinism,* ]] \
    && [[ ! -f $assets/tokenizer/tokenizer.json || ! -d $assets/shards ]]; then
    echo "train, determinism: $assets/tokenizer/tokenizer.json and $assets/shards are needed" \
        "(see the top)" >&2
    exit 2
fi
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
status=0
if [[ $parts == *,tests,* ]]; then
    workers=()
    if [[ -n ${PYTEST_WORKERS:-} ]] && "$py" -c "import xdist" 2>/dev/null; then
        workers=(-n "$PYTEST_WORKERS" --dist load)  # test by test: a few files hold them all
    fi
    mapfile -t cuda_files < <(grep -l "pytest.mark.cuda" tests/test_*.py)
    "$py" -m pytest -q -m cuda -rs "${workers[@]}" "${cuda_files[@]}" 2>&1 \
        | tee "$out/pytest_cuda.txt" || status=1
    "$py" -m pytest -q -rs -m "not cuda" "${workers[@]}" tests/test_triton_rows.py 2>&1 \
        | tee "$out/pytest_triton.txt" || status=1
fi
# One objective per row kernel (they cost the same per logit; compiling every case of the full
# table takes over 20 minutes on an H100), three chunk sizes, the default eager row block.
for mode in eager compiled; do
    [[ $parts == *,$mode,* ]] || continue
    rm -f "$out/bench_loss_$mode.json"  # never an earlier call's rows in bench_loss_both.md
    "$py" scripts/bench_loss.py --tokens 16384 --dim 1024 --chunk-tokens 2048 4096 8192 \
        --row-block-mib 256 --modes "$mode" \
        --cases torchtitan_ce head_matmuls prefix_tau0.5 triton_prefix_tau0.5 fused_prefix_tau0.5 \
        fused_triton_prefix_tau0.5 --json "$out/bench_loss_$mode.json" 2>&1 \
        | tee "$out/bench_loss_$mode.md" || status=1
done
# The fused head's eager rows are held to the compiled CE, so with both modes run here their
# goals and the chunk choice are read from both calls' rows together.
if [[ $parts == *,eager,* && $parts == *,compiled,* && -f $out/bench_loss_eager.json \
    && -f $out/bench_loss_compiled.json ]]; then
    "$py" scripts/bench_loss.py --rows "$out/bench_loss_eager.json" \
        "$out/bench_loss_compiled.json" > "$out/bench_loss_both.md" || status=1
fi
# The 500M sweep config through torchtitan's trainer, as the train and determinism parts run it
train_500m=("$py" -m prefix_titan.train --job.config_file train_configs/prefix_tau0.5.toml
    --model.hf_assets_path "$assets/tokenizer" --training.dataset_path "$assets/shards"
    --validation.no-enable --metrics.no-enable-tensorboard --training.global_batch_size -1)
if [[ $parts == *,train,* ]]; then
    for run in default:--objective.kernel=auto pytorch:--objective.kernel=pytorch \
        fused:--objective.fused_loss; do
        name=${run%%:*}
        dump="${TMPDIR:-/tmp}/prefix_titan_train_$name"
        rm -rf "$dump"  # a fresh run each time, never a resume of the last one
        "${train_500m[@]}" --checkpoint.no-enable --training.steps 30 --metrics.log_freq 10 \
            --job.dump_folder "$dump" "${run#*:}" 2>&1 \
            | tee "$out/train_$name.log" | grep -E "step: +[0-9]+ +loss|Loss:|Fused loss:|Error" \
            || status=1
    done
fi
if [[ $parts == *,determinism,* ]]; then
    det="${TMPDIR:-/tmp}/prefix_titan_determinism"
    rm -rf "$det" "$out"/determinism*  # fresh runs and logs, never the last call's
    # name:steps:options (split at spaces); the resumed run is stopped at step 10, where it
    # saves its checkpoint, then resumed; the others save none
    off=--checkpoint.no-enable
    for run in "first:20:$off" "again:20:$off" resumed:10:--checkpoint.enable \
        resumed:20:--checkpoint.enable "pytorch:20:$off --objective.kernel=pytorch" \
        "fused:20:$off --objective.fused_loss"; do
        IFS=: read -r name steps options <<<"$run"
        if [[ $name:$steps == resumed:20 && ! -d $det/resumed/checkpoint/step-10 ]]; then
            echo "determinism: the resumed run saved no step-10 checkpoint; not resumed" \
                | tee -a "$out/determinism_resumed.log"
            status=1
            continue
        fi
        "${train_500m[@]}" --training.steps "$steps" --lr_scheduler.total_steps 20 \
            --metrics.log_freq 1 --checkpoint.interval 10 --debug.deterministic --debug.seed 0 \
            --job.dump_folder "$det/$name" $options >>"$out/determinism_$name.log" 2>&1 \
            || { status=1; tail -5 "$out/determinism_$name.log"; }
    done
    rm -rf "$det/resumed/checkpoint"  # 12 GB of the 500M's weights and optimizer state
    "$py" scripts/compare_runs.py "$det/first" "$det/again" "$det/resumed" "$det/pytorch" \
        "$det/fused" 2>&1 | tee "$out/determinism.md" || status=1
fi
exit $status
