#!/usr/bin/env bash
# The caching allocator's own trace (GPU) for the cells where the predicted reserved
# memory is furthest from the measured one: `vramtui run --snapshot` records the
# allocator's history (torch.cuda.memory._record_memory_history) and keeps a snapshot
# at the run's peak; allocator_trace.py writes its actions as compact JSON. Replay them
# on any machine with allocator_trace_replay.py. From the repository root:
#
#   OUT=DIR bash benchmarks/allocator_trace_gpu.sh                    every cell
#   OUT=DIR bash benchmarks/allocator_trace_gpu.sh llama-eager-8000   some, by name
#   DEADLINE=EPOCH_S ...                                             none started within 40 s of it
#
# Writes, under $OUT: CELL.json (the session's summary), CELL-trace.json.gz (the
# allocator's actions to the snapshot's moment, and its segments), and
# allocator_trace-log.txt (versions, every command and exit code).
set -u
: "${OUT:?set OUT to a folder}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
mkdir -p "$OUT" /tmp/sessions
log=$OUT/allocator_trace-log.txt
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$log"
python3 -c "import sys, torch, transformers; print('python', sys.version.split()[0], 'torch',
torch.__version__, 'transformers', transformers.__version__)" 2>&1 | tee -a "$log"

# name  model  attn  prompt  new-tokens  batch  cap ("-": none)
CELLS=(
  "llama-eager-8000 llama-3.2-1b eager 8000 4 1 -"
  "qwen-eager-8000 qwen2.5-1.5b eager 8000 4 1 -"
  "qwen-sdpa-2000-b67 qwen2.5-1.5b sdpa 2000 4 67 -"
  "opt-sdpa-1000-b36-cap12 opt-1.3b sdpa 1000 48 36 12GiB"
  "opt27-eager-1252-b8-cap12 opt-2.7b eager 1252 16 8 12GiB"
)
for cell in "${CELLS[@]}"; do
  read -r name model attn prompt tokens batch cap <<< "$cell"
  if [ $# -gt 0 ] && [[ " $* " != *" $name "* ]]; then continue; fi
  if [ -n "${DEADLINE:-}" ] && [ $(( $(date +%s) + 40 )) -gt "$DEADLINE" ]; then
    echo "== $name: not started (deadline)" | tee -a "$log"; continue
  fi
  capped=()
  [ "$cap" != - ] && capped=(--cap "$cap")
  echo "== $cell" | tee -a "$log"
  timeout 150 python3 -m vramtui run -m "$model" --attn "$attn" --prompt-tokens "$prompt" \
    -n "$tokens" -b "$batch" "${capped[@]}" --device cuda:0 -q --out /tmp/sessions --snapshot \
    --json "$OUT/$name.json" >> "$log" 2>&1
  echo "rc=$?" | tee -a "$log"
  for snap in "$OUT/$name".*pickle*; do
    [ -f "$snap" ] || continue
    # the pickle goes only once its actions are kept (a failed extraction keeps it)
    if python3 benchmarks/allocator_trace.py "$snap" --out "$OUT/$name-trace.json.gz" \
      >> "$log" 2>&1; then rm -f "$snap"; fi
  done
done
