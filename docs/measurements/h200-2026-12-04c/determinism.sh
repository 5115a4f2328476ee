#!/usr/bin/env bash
# Determinism, row-path agreement and resume of the 500M config on one GPU (one call, 2026-12-04).
set -uo pipefail
out=$1; mkdir -p /tmp/det
site=/tmp/prefix_titan_site
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $site .whl/*.whl || exit 1
export PYTHONPATH="$PWD:$site" PYTHONUNBUFFERED=1
python3 - <<'PY' 2>&1 | tee /tmp/det/softmax.txt
import torch
x = torch.randn(4, 10, device="cuda")
for dt in (torch.bfloat16, torch.float16):
    try:
        print(torch.__version__, dt, "->", torch._softmax(x.to(dt), -1, True).dtype)
    except Exception as e:
        print(torch.__version__, dt, "refused:", str(e).splitlines()[0])
PY
a=.gpu_train
base=(--job.config_file train_configs/prefix_tau0.5.toml --model.hf_assets_path $a/tokenizer
  --training.dataset_path $a/shards --validation.no-enable --metrics.no-enable-tensorboard
  --training.global_batch_size -1 --metrics.log_freq 1 --lr_scheduler.total_steps 20
  --debug.deterministic --debug.deterministic_warn_only --debug.seed 0)
run() { local name=$1; shift
  python3 -m prefix_titan.train "${base[@]}" "$@" > /tmp/det/$name.log 2>&1
  echo "== $name rc=$?"; grep -E "step: +[0-9]+ +loss" /tmp/det/$name.log | sed -E 's/.*step: +([0-9]+) +loss: +([0-9.]+).*/\1 \2/' | tr '\n' ' '; echo
  grep -iE "error|Traceback|resum|warn.*determin" /tmp/det/$name.log | head -5; }
run A --training.steps 20 --checkpoint.no-enable --job.dump_folder /tmp/dA
run B --training.steps 20 --checkpoint.no-enable --job.dump_folder /tmp/dB
run E1 --training.steps 10 --checkpoint.enable --checkpoint.interval 10 --job.dump_folder /tmp/dE
run E2 --training.steps 20 --checkpoint.enable --checkpoint.interval 10 --job.dump_folder /tmp/dE
run C --training.steps 20 --checkpoint.no-enable --job.dump_folder /tmp/dC --objective.kernel=pytorch
run D --training.steps 20 --checkpoint.no-enable --job.dump_folder /tmp/dD --objective.fused_loss
tar czf $out/det.tgz -C /tmp det
