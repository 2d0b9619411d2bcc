#!/usr/bin/env bash
# Every GPU check, one after another, on one GPU: about 3 minutes on an H200 (a 5-minute slot
# holds a rerun). Needs CUDA PyTorch, and megatron-core and Mooncake importable (their wheels
# fit in a small upload); vLLM's CUDA build is not needed: bench/gpu_start_order.py stands in
# for its memory. Never run in CI. Results: runs/bench-gpu/*.json and the log on stdout.
#   bench/gpu_all.sh [python]        (make bench-gpu PY=python3)
set -uo pipefail
PY=${1:-python3}
cd "$(dirname "$0")/.."
OUT=${BENCH_GPU_OUT:-runs/bench-gpu}
mkdir -p "$OUT"
export PYTHONPATH="bench${PYTHONPATH:+:$PYTHONPATH}"
failed=0
for check in "gpu_megatron_parity --steps 3" "gpu_ipc_handoff" "gpu_offload" "gpu_cycles --cycles 50" "gpu_start_order"; do
  name=${check%% *}
  started=$(date +%s)
  echo "== $check"
  if timeout 240 "$PY" bench/$name.py ${check#"$name"} --json "$OUT/$name.json"; then
    echo "== $name: ok in $(( $(date +%s) - started ))s"
  else
    echo "== $name: FAILED (rc $?) after $(( $(date +%s) - started ))s"
    failed=1
  fi
done
exit $failed
