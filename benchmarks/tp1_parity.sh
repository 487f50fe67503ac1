#!/usr/bin/env bash
# One GPU call: `--tp 1` through torch's elastic launcher against a plain run of the same
# model (tp1_parity.py), on Qwen2.5-0.5B's architecture (random weights, offline) and
# float16. Run from the repository root with OUT set to a folder; the JSON and both runs'
# files land under $OUT/tp1_parity, the log in $OUT/tp1_parity-log.txt.
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
log=$OUT/tp1_parity-log.txt
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$log"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$log"
python3 benchmarks/tp1_parity.py --config benchmarks/configs/qwen2.5-0.5b.json \
    --tokens 200 --device cuda:0 --out "$OUT/tp1_parity" 2>&1 | tee -a "$log"
echo "rc=${PIPESTATUS[0]}" | tee -a "$log"
