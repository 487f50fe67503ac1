#!/usr/bin/env bash
# The physical check of `vramtui fit` (GPU): for each cell, fit's largest context or
# batch under an allocator cap (`--cap`, margin 0) is run with `vramtui run --cap`,
# which must complete (exit 0), and the next step up (one more batch row, or +5 %
# context) must run out of memory (exit 3). Generation only (sdpa and eager, OPT's
# exact record, the others traced with --trace: each size the search asks for is
# traced on this machine's CPU, cached); fine-tuning cells are fit_train_check.sh's.
#
#   OUT=DIR bash benchmarks/fit_check.sh            every cell
#   OUT=DIR bash benchmarks/fit_check.sh 0 1 2      some cells, by index (to split a run)
#   DEADLINE=EPOCH_S ...                           start no cell within 45 s of it
#   PREDICT_ONLY=1 ...   only fit's two rows a cell (CPU: traces); a later call finds
#                        fit-N.json and fit-N-at.json in OUT and runs at once
#
# Writes, under $OUT: fit-N.json (fit's row), fit-N-at.json (fit's row at the largest
# setting: its headroom_bytes is the margin the cell had), run-N-at.json and run-N-up.json (the two
# runs' summaries), fit_check-log.txt (every command and exit code) and fit_check.tsv (one
# line per cell: the prediction, both exit codes, and whether the cell held).
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
: "${OUT:?set OUT to a folder}"
mkdir -p "$OUT" /tmp/sessions
log=$OUT/fit_check-log.txt
tsv=$OUT/fit_check.tsv

# cap  model  attn  search  prompt  new-tokens  batch  grow
#   search "batch": fit's max_batch at this context; "context": max_context at this batch
CELLS=(
  "12GiB opt-1.3b sdpa batch 1000 48 1 tokens"
  "12GiB opt-2.7b eager context 8 16 8 prompt"
  "16GiB opt-2.7b sdpa batch 512 256 1 tokens"
  "16GiB opt-6.7b sdpa context 8 64 4 tokens"
  "24GiB opt-6.7b eager batch 1000 48 1 tokens"
  "24GiB opt-6.7b sdpa context 8 16 16 prompt"
  "12GiB llama-3.2-1b sdpa context 8 16 4 prompt"
  "16GiB qwen2.5-1.5b sdpa batch 2000 48 1 tokens"
  "24GiB mistral-7b-v0.3 sdpa context 8 16 2 prompt"
  "12GiB pythia-1b eager batch 1000 48 1 tokens"
  "16GiB gemma-2-2b eager context 8 16 16 prompt"
  "24GiB llama-3.2-3b eager context 8 16 1 prompt"
)

field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[0][sys.argv[2]])" "$@"; }

cell() {
  local n=$1 cap model attn search prompt tokens batch grow
  read -r cap model attn search prompt tokens batch grow <<< "${CELLS[$n]}"
  local fit="$OUT/fit-$n.json"
  if [ -n "${DEADLINE:-}" ] && [ $(( $(date +%s) + 45 )) -gt "$DEADLINE" ]; then
    echo "== cell $n: not started (deadline)" | tee -a "$log"; return
  fi
  echo "== cell $n: ${CELLS[$n]}" | tee -a "$log"
  if [ ! -s "$fit" ]; then
    python3 -m vramtui fit --cap "$cap" --margin 0% --model "$model" --attn "$attn" --trace \
      --prompt-tokens "$prompt" --tokens "$tokens" --batch "$batch" --grow "$grow" --json \
      > "$fit" 2>> "$log" || { echo "fit failed" | tee -a "$log"; rm -f "$fit"; return; }
  fi
  local at_prompt=$prompt at_tokens=$tokens at_batch=$batch up_prompt up_tokens up_batch
  if [ "$search" = batch ]; then
    at_batch=$(field "$fit" max_batch)
    up_prompt=$prompt up_tokens=$tokens up_batch=$((at_batch + 1))
  else
    local most up positions
    most=$(field "$fit" max_context)
    positions=$(field "$fit" positions)
    up=$(( (most * 105 + 99) / 100 ))
    if [ "$up" -gt "$positions" ]; then
      echo "skip: +5 % of $most passes the model's $positions positions" | tee -a "$log"
      printf '%s\t%s\tskipped (positions)\n' "$n" "${CELLS[$n]}" >> "$tsv"
      return
    fi
    up_batch=$batch
    if [ "$grow" = prompt ]; then
      at_prompt=$((most - tokens)); up_prompt=$((up - tokens)); up_tokens=$tokens
    else
      at_tokens=$((most - prompt)); up_tokens=$((up - prompt)); up_prompt=$prompt
    fi
  fi
  run() {  # name prompt tokens batch
    python3 -m vramtui run -m "$model" --attn "$attn" --cap "$cap" --prompt-tokens "$2" \
      -n "$3" -b "$4" -q --out /tmp/sessions --json "$OUT/run-$n-$1.json" >> "$log" 2>&1
    echo $?
  }
  # the predicted headroom at the largest setting: the margin the cell had
  [ -s "$OUT/fit-$n-at.json" ] || python3 -m vramtui fit --cap "$cap" --margin 0% \
    --model "$model" --attn "$attn" --trace --prompt-tokens "$at_prompt" \
    --tokens "$at_tokens" --batch "$at_batch" --json > "$OUT/fit-$n-at.json" 2>> "$log"
  if [ -n "${PREDICT_ONLY:-}" ]; then
    echo "predicted: $at_prompt + $at_tokens b$at_batch (up: $up_prompt + $up_tokens" \
      "b$up_batch)" | tee -a "$log"; return
  fi
  local rc_at rc_up held
  rc_at=$(run at "$at_prompt" "$at_tokens" "$at_batch")
  rc_up=$(run up "$up_prompt" "$up_tokens" "$up_batch")
  held=no
  [ "$rc_at" = 0 ] && [ "$rc_up" = 3 ] && held=yes
  echo "at: prompt $at_prompt + $at_tokens, batch $at_batch -> rc=$rc_at;" \
    "up: prompt $up_prompt + $up_tokens, batch $up_batch -> rc=$rc_up; held=$held" | tee -a "$log"
  printf '%s\t%s\t%s+%s b%s rc=%s\t%s+%s b%s rc=%s\t%s\t%s\t%s\n' "$n" "${CELLS[$n]}" \
    "$at_prompt" "$at_tokens" "$at_batch" "$rc_at" "$up_prompt" "$up_tokens" "$up_batch" \
    "$rc_up" "$(field "$OUT/fit-$n-at.json" headroom_bytes)" "$(field "$fit" basis)" \
    "$held" >> "$tsv"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$log"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$log"
[ -f "$tsv" ] || printf 'cell\tcap model attn search prompt tokens batch grow\tpredicted largest\tnext step up\tpredicted headroom at the largest (bytes)\tbasis\theld\n' > "$tsv"
if [ $# -eq 0 ]; then set -- $(seq 0 $((${#CELLS[@]} - 1))); fi
for n in "$@"; do cell "$n"; done
