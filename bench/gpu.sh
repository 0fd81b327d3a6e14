#!/usr/bin/env bash
# Every GPU number in one run, for a lent GPU box with a short time budget (the device tool: ~15 min).
# Runs unchanged on a CPU machine too (the engines pick the CPU), only slower.
#
#   bash bench/gpu.sh                # results under bench/results/ (and $OUT/ when the device tool sets it)
#
# Order: the cheapest, most wanted numbers first, each bounded by `timeout`, so a run cut short
# still returns what it measured.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
$PY -m facestream models prepare

step() {  # step SECONDS COMMAND...: run one bench, keep going when it fails or times out
  local limit=$1; shift
  echo "== $* (limit ${limit}s)"
  timeout --signal=INT "$limit" "$@" || echo "!! $1 ended with $?"
}
# the embedder: every engine and batch size
step 120 $PY bench/embed.py --engines tensorrt,torch,onnxruntime
# detection: recall by size and ms per frame for every engine (fewer scenes: time)
step 240 $PY bench/detect.py --engines tensorrt,torch,onnxruntime --scenes 2 --closeups 60
# how many 1080p30 cameras one box sustains, detection and embedding batched on the GPU, decode timed apart
step 300 $PY bench/door.py --seconds 20 --streams 1,4,8,16,32
if [ -n "${OUT:-}" ]; then cp bench/results/*.json "$OUT"/ 2>/dev/null; fi
ls -l bench/results
