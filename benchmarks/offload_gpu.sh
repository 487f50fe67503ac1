#!/usr/bin/env bash
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit;
# The GPU check of placement: opt-13b placed by transformers' device map on
# GPU 0 (12 GiB for weights) and the CPU, generated for real, each device measured; and
# `vramtui estimate` of the same placement, compared device by device. Run from the
# repository root with OUT set to a folder; at most ~150 s.
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
log=$OUT/offload_gpu-log.txt
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $log
python3 -c "import accelerate, psutil; print('accelerate', accelerate.__version__)" 2>&1 | tee -a $log
PLACE=(--model opt-13b --device-map auto --max-memory 0=12GiB,cpu=64GiB --tokens 20)
t0=$(date +%s)
# the estimate needs no GPU: it runs beside the run (its child processes place the
# model on the meta device, a few times while it looks for room for generation)
( timeout 100 python3 -m vramtui estimate "${PLACE[@]}" --json > $OUT/estimate.json \
    2>> $OUT/estimate.err; echo "estimate rc $? at $(( $(date +%s) - t0 )) s" >> $log ) &
timeout 110 python3 -m vramtui run "${PLACE[@]}" \
  --json $OUT/offload.json --csv $OUT/offload.csv 2>&1 | tail -n 45 | tee -a $log
echo "run rc ${PIPESTATUS[0]} at $(( $(date +%s) - t0 )) s" | tee -a $log
wait
python3 -m vramtui show $OUT/offload.csv 2>&1 | tail -n 4 | tee -a $log
python3 benchmarks/offload_compare.py $OUT/estimate.json $OUT/offload.json \
  $OUT/offload_compare-h200.json 2>&1 | tee -a $log
echo "done at $(( $(date +%s) - t0 )) s" | tee -a $log
