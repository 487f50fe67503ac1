#!/usr/bin/env bash
# The physical check of `vramtui fit --workload lora|qlora|full` (GPU): for each cell,
# fit's largest micro-batch or sequence under an allocator cap (`--cap`, margin 0) is
# trained with `vramtui train --cap` (the same recipe), which must complete (exit 0),
# and the next step up (one more sequence a micro-batch, or +5 % sequence) must run out
# of memory (exit 3). fit traces each model on this machine's CPU first (a child process
# a traced size; cached).
#
#   OUT=DIR bash benchmarks/fit_train_check.sh          every cell
#   OUT=DIR bash benchmarks/fit_train_check.sh 0 2      some cells, by index
#   PREDICT_ONLY=1 ...    only fit's two rows a cell (CPU: traces; cells may run in
#                         parallel, each with its own OUT); a later call finds
#                         fit-N.json and fit-N-at.json in OUT and trains at once
#   DEADLINE=EPOCH_S ...  start no cell within 90 s of it
#
# Writes, under $OUT: fit-N.json (fit's row), fit-N-at.json (fit's row at the largest
# setting: its headroom_bytes is the margin the cell had), train-N-at.json and
# train-N-up.json (the two runs' summaries), fit_train_check-log.txt and
# fit_train_check.tsv (one line per cell: the prediction, both exit codes, held or not).
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
: "${OUT:?set OUT to a folder}"
mkdir -p "$OUT"
log=$OUT/fit_train_check-log.txt
tsv=$OUT/fit_train_check.tsv

# cap  model  workload  search  seq  micro-batch
#   search "batch": fit's max_batch at this sequence; "context": max_context at this batch
CELLS=(
  "12GiB llama-3.2-1b lora batch 1024 1"
  "16GiB qwen2.5-1.5b lora context 1024 2"
  "24GiB llama-3.2-3b lora batch 2048 1"
  "12GiB llama-3.1-8b qlora context 512 1"
  "16GiB qwen2.5-7b qlora context 1024 1"
  "24GiB llama-3.1-8b qlora context 2048 1"
  "16GiB qwen2.5-0.5b full batch 1024 1"
)

field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[0][sys.argv[2]])" "$@"; }

train() {  # n name model workload seq batch cap
  python3 -m vramtui train -m "$3" --method "$4" --seq "$5" -b "$6" --cap "$7" \
    --json "$OUT/train-$1-$2.json" >> "$log" 2>&1
  echo $?
}

cell() {
  local n=$1 cap model workload search seq batch
  read -r cap model workload search seq batch <<< "${CELLS[$n]}"
  local fit="$OUT/fit-$n.json" flags
  flags=(--cap "$cap" --margin 0% --model "$model" --workload "$workload" --json)
  if [ -n "${DEADLINE:-}" ] && [ $(( $(date +%s) + 90 )) -gt "$DEADLINE" ]; then
    echo "== cell $n: not started (deadline)" | tee -a "$log"; return
  fi
  echo "== cell $n: ${CELLS[$n]}" | tee -a "$log"
  if [ ! -s "$fit" ]; then
    python3 -m vramtui fit "${flags[@]}" --context "$seq" --batch "$batch" > "$fit" \
      2>> "$log" || { echo "fit failed" | tee -a "$log"; rm -f "$fit"; return; }
  fi
  local at_seq=$seq at_batch=$batch up_seq=$seq up_batch=$batch
  if [ "$search" = batch ]; then
    at_batch=$(field "$fit" max_batch); up_batch=$((at_batch + 1))
  else
    at_seq=$(field "$fit" max_context); up_seq=$(( (at_seq * 105 + 99) / 100 ))
    if [ "$up_seq" -gt "$(field "$fit" positions)" ]; then
      printf '%s\t%s\tskipped (positions)\n' "$n" "${CELLS[$n]}" >> "$tsv"; return
    fi
  fi
  [ -s "$OUT/fit-$n-at.json" ] || python3 -m vramtui fit "${flags[@]}" --context "$at_seq" \
    --batch "$at_batch" > "$OUT/fit-$n-at.json" 2>> "$log"
  if [ -n "${PREDICT_ONLY:-}" ]; then
    echo "predicted: seq $at_seq b$at_batch (up: seq $up_seq b$up_batch)" | tee -a "$log"; return
  fi
  local rc_at rc_up held=no
  rc_at=$(train "$n" at "$model" "$workload" "$at_seq" "$at_batch" "$cap")
  rc_up=$(train "$n" up "$model" "$workload" "$up_seq" "$up_batch" "$cap")
  [ "$rc_at" = 0 ] && [ "$rc_up" = 3 ] && held=yes
  echo "at: seq $at_seq b$at_batch rc=$rc_at; up: seq $up_seq b$up_batch rc=$rc_up; held=$held" \
    | tee -a "$log"
  printf '%s\t%s\tseq %s b%s rc=%s\tseq %s b%s rc=%s\t%s\t%s\n' "$n" "${CELLS[$n]}" \
    "$at_seq" "$at_batch" "$rc_at" "$up_seq" "$up_batch" "$rc_up" \
    "$(field "$OUT/fit-$n-at.json" headroom_bytes)" "$held" >> "$tsv"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$log"
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)" | tee -a "$log"
[ -f "$tsv" ] || printf 'cell\tcap model workload search seq batch\tpredicted largest\tnext step up\tpredicted headroom at the largest (bytes)\theld\n' > "$tsv"
if [ $# -eq 0 ]; then set -- $(seq 0 $((${#CELLS[@]} - 1))); fi
for n in "$@"; do cell "$n"; done
