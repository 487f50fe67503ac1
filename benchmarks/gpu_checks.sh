#!/usr/bin/env bash
# One GPU call that runs every GPU path the headless commands have, once: `vramtui
# profile` of a CUDA program with NVML (profile_cuda_nvml.py), the example of two
# generate() calls, a plain `vramtui run`, and `--cap` (a cap that fits, one that does
# not, one larger than the card). Run from the repository root with OUT set to a folder.
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
log=$OUT/gpu_checks-log.txt
mkdir -p /tmp/sessions
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$log"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$log"
step() { echo "== $*" | tee -a "$log"; "$@" >> "$log" 2>&1; echo "rc=$?" | tee -a "$log"; }
step python3 benchmarks/profile_cuda_nvml.py --out "$OUT"
step python3 -m vramtui profile --json "$OUT/two_generations.json" --out /tmp/sessions examples/two_generations.py
step python3 -m vramtui run -m opt-125m -n 50 -q --out /tmp/sessions --json "$OUT/run-opt-125m.json"
step python3 -m vramtui run -m opt-1.3b -n 50 -q --cap 3GiB --out /tmp/sessions --json "$OUT/cap-3gib.json"
step python3 -m vramtui run -m opt-1.3b -n 50 -q --cap 2GiB --out /tmp/sessions --json "$OUT/cap-2gib.json"
step python3 -m vramtui run -m opt-1.3b -n 50 -q --cap 500GiB
ls /tmp/sessions | tee -a "$log"
