#!/usr/bin/env bash
# The GPU check of `vramtui train`, from the repository root with OUT set to a folder
# (about 6 minutes on an H100). Cells, 3 steps each at sequence 512, micro-batch 4,
# bfloat16: llama-3.2-1b full, lora and qlora; llama-3.2-1b full with bitsandbytes'
# AdamW8bit; qwen2.5-0.5b full with gradient checkpointing. Then: the same recipe as a
# plain PyTorch/peft loop (benchmarks/train_plain.py) for one cell per method, to the
# byte; step time ABBA (plain, vramtui, vramtui, plain; 20 steps each, the median of
# steps 2 on) on llama-3.2-1b lora; an out-of-memory raised by the test hook in step 2's
# backward; a real one under --cap. ONLY=abba runs the ABBA runs alone (about 2 minutes).
# Writes train_gpu-log.txt, train_gpu.json (every cell's figures, train_gpu_summary.py)
# and one session JSON per cell under OUT/train_gpu/.
set -u
if [[ -z ${WHEELS_DONE:-} ]] && ls .whl/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
work=$OUT/train_gpu
mkdir -p "$work"
log=$OUT/train_gpu-log.txt
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$log"
python3 -c "import torch, transformers, peft, bitsandbytes as b; print('torch', torch.__version__,
'transformers', transformers.__version__, 'peft', peft.__version__, 'bitsandbytes', b.__version__)" \
  2>&1 | tee -a "$log"
t0=$(date +%s)
late() { (( $(date +%s) - t0 > ${1:-500} )); }
cell() {  # cell NAME [flags...]: a `vramtui train` session as $work/NAME.json
  local name=$1
  shift
  if late; then echo "$name skipped: past 500 s" | tee -a "$log"; return; fi
  timeout 150 python3 -m vramtui train -q --device cuda:0 --seq 512 --batch 4 --steps 3 \
    --json "$work/$name.json" --out /tmp/sessions "$@" > "$work/$name.txt" 2>&1
  echo "$name rc $? at $(( $(date +%s) - t0 )) s" | tee -a "$log"
}
plain() {  # plain NAME [flags...]: train_plain.py as $work/NAME.json
  local name=$1
  shift
  if late; then echo "$name skipped: past 500 s" | tee -a "$log"; return; fi
  timeout 150 python3 benchmarks/train_plain.py --seq 512 --batch 4 --steps 3 \
    --json "$work/$name.json" "$@" > "$work/$name.txt" 2>&1
  echo "$name rc $? at $(( $(date +%s) - t0 )) s" | tee -a "$log"
}
if [[ ${ONLY:-} != abba ]]; then
  cell llama1b-full -m llama-3.2-1b --method full
  cell llama1b-lora -m llama-3.2-1b --method lora
  cell llama1b-qlora -m llama-3.2-1b --method qlora
  cell llama1b-full-adamw8bit -m llama-3.2-1b --method full --optim adamw-8bit
  cell qwen05b-full-gc -m qwen2.5-0.5b --method full --grad-checkpointing
  plain plain-llama1b-full --model llama-3.2-1b --method full
  plain plain-llama1b-qlora --model llama-3.2-1b --method qlora
fi
plain plain-llama1b-lora-A1 --model llama-3.2-1b --method lora --steps 20  # ABBA: A
cell abba-llama1b-lora-B1 -m llama-3.2-1b --method lora --steps 20
cell abba-llama1b-lora-B2 -m llama-3.2-1b --method lora --steps 20
plain plain-llama1b-lora-A2 --model llama-3.2-1b --method lora --steps 20
# the plain loop again with vramtui's NVML reads for training (20 a second, from another process):
# the poller's share of the ABBA gap, apart from the engine's sampling
plain plain-llama1b-lora-nvml --model llama-3.2-1b --method lora --steps 20 --nvml-hz 20
if [[ ${ONLY:-} != abba ]]; then
  VRAMTUI_TEST_OOM_AT_TOKEN=2 cell hook-oom -m qwen2.5-0.5b --method lora
  cell cap-oom -m llama-3.2-1b --method full --cap 8GiB
fi
for name in llama1b-full llama1b-qlora hook-oom cap-oom; do
  [[ -f $work/$name.txt ]] || continue
  echo "--- vramtui train $name (stdout and stderr)" >> "$log"
  tail -n 45 "$work/$name.txt" >> "$log"
done
python3 benchmarks/train_gpu_summary.py "$work" "$OUT/train_gpu.json" 2>&1 | tee -a "$log"
echo "done at $(( $(date +%s) - t0 )) s" | tee -a "$log"
