#!/usr/bin/env bash
# The GPU check of `vramtui profile` and `vramtui.track()` (every GPU path run once;
# profile_cuda_nvml.py fails unless a CUDA program's NVML series is recorded),
# and the overhead benchmark. Run from the repository root with OUT set to a folder.
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
mkdir -p /tmp/sessions
log=$OUT/profile_gpu-log.txt
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $log
t0=$(date +%s)
python3 -m vramtui profile --json $OUT/two_generations.json --csv $OUT/two_generations.csv \
  --out /tmp/sessions examples/two_generations.py 2>&1 | tee -a $log
echo "two_generations rc ${PIPESTATUS[0]} at $(( $(date +%s) - t0 )) s" | tee -a $log
python3 -m vramtui profile --json $OUT/oom.json --out /tmp/sessions examples/out_of_memory.py \
  > $OUT/oom.txt 2>&1
echo "out_of_memory rc $? at $(( $(date +%s) - t0 )) s; GPU processes after it:" >> $OUT/oom.txt
nvidia-smi --query-compute-apps=pid,used_memory --format=csv >> $OUT/oom.txt
python3 benchmarks/profile_cuda_nvml.py --out $OUT 2>&1 | tee -a $log
echo "profile_cuda_nvml rc ${PIPESTATUS[0]} at $(( $(date +%s) - t0 )) s" | tee -a $log
python3 examples/track_block.py $OUT/track.json >> $log 2>&1
python3 -m vramtui show $OUT/track.json >> $log 2>&1
echo "track at $(( $(date +%s) - t0 )) s" | tee -a $log
python3 benchmarks/profile_overhead.py --model opt-125m --tokens 200 --calls 3 --rounds 4 \
  --out $OUT/profile_overhead-h200 2>&1 | tee -a $log
echo "overhead at $(( $(date +%s) - t0 )) s" | tee -a $log
