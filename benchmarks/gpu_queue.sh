#!/usr/bin/env bash
# One device call that works through a queue of GPU jobs within a time limit, then packs
# everything it wrote into one archive ($OUT/run.tgz: the device returns few files a call).
# From the repository root, a .whl/ folder of py3.12 wheels beside it (installed under
# /tmp/site first):
#
#   OUT=DIR LIMIT_S=520 bash benchmarks/gpu_queue.sh JOB...
#
# Jobs, run in order; none is started when less than its usual time is left, and each
# job left is listed in $OUT/queue.txt as "skipped" (run it in the next call):
#   tp1                tp1_parity.sh (`--tp 1` through the launcher against a plain run)
#   fit:N,N,...        fit_check.sh cells (generation under --cap)
#   trainfit:N,N,...   fit_train_check.sh predictions only, every cell in parallel in the
#                      background (CPU traces): $OUT/trainfit-N/ has fit-N.json, fit-N-at.json
#   train:N,N,...      fit_train_check.sh cells; predictions made by this call's trainfit
#                      (waited for), else read from benchmarks/results/fit_check/trainfit-N/
#   long:N,N,...       long_prompt_gpu.sh cells
#   quant:PART         quant_table.py --part PART (parity, short, long-opt, ..., kv)
#   abba               train_gpu.sh with ONLY=abba (step time, plain loop against `train`)
#   trainer            `vramtui profile` of examples/hf_trainer.py (an HF Trainer, 20 steps)
#   traintable:F,F     train_table.py run --only F,F (the fine-tuning table; empty: all)
#   caps:gN,tN,...     cap_lanes.py: fit_check.sh (gN) and fit_train_check.sh (tN) cells,
#                      several at a time under their caps (44 GiB of caps at once), beside
#                      the fine-tuning table's cells listed in
#                      benchmarks/results/train_table/todo.txt, if any (30 GiB at once)
# Background jobs still running at the limit are stopped; what they finished is kept.
set -u
set -m  # each background job in a process group of its own (stopped whole at the limit)
: "${OUT:?set OUT to a folder}"
LIMIT_S=${LIMIT_S:-520}
mkdir -p "$OUT"
queue=$OUT/queue.txt
t0=$(date +%s)
export DEADLINE=$((t0 + LIMIT_S))
if ls .whl/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl 2>&1 | tail -3
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 WHEELS_DONE=1
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import sys, torch, transformers; print('python', sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__)"
  echo "queue: $*"; } 2>&1 | tee -a "$queue"

left() { echo $((DEADLINE - $(date +%s))); }
cells() { tr ',' ' ' <<< "$1"; }

run_job() {  # run_job KIND ARG: one job of the queue
  local kind=$1 arg=$2
  case $kind in
    tp1) bash benchmarks/tp1_parity.sh > /dev/null 2>&1 ;;
    fit) OUT=$OUT/fit_check bash benchmarks/fit_check.sh $(cells "$arg") > /dev/null 2>&1 ;;
    trainfit)
      for n in $(cells "$arg"); do
        PREDICT_ONLY=1 DEADLINE= OUT=$OUT/trainfit-$n setsid bash benchmarks/fit_train_check.sh \
          "$n" > /dev/null 2>&1 &
        background+=($!)
        predicting[$n]=$!
      done ;;
    train)
      mkdir -p "$OUT/fit_train_check"
      for n in $(cells "$arg"); do  # this call's predictions, else the committed ones
        pid=${predicting[$n]:-}
        while [ -n "$pid" ] && kill -0 "$pid" 2> /dev/null && [ "$(left)" -gt "$need" ]; do
          sleep 2; done
        if ls "$OUT/trainfit-$n/fit-$n"*.json > /dev/null 2>&1; then
          cp "$OUT/trainfit-$n/fit-$n"*.json "$OUT/fit_train_check/"
        else
          cp benchmarks/results/fit_check/trainfit-"$n"/fit-"$n"*.json "$OUT/fit_train_check/" \
            2>/dev/null
        fi
      done
      OUT=$OUT/fit_train_check bash benchmarks/fit_train_check.sh $(cells "$arg") > /dev/null 2>&1 ;;
    long) BUDGET_S=$(( $(left) - 40 )) bash benchmarks/long_prompt_gpu.sh $(cells "$arg") \
      > /dev/null 2>&1 ;;
    quant) python3 benchmarks/quant_table.py --part "$arg" --out "$OUT/quant" \
      --budget-s $(( $(left) - 30 )) > "$OUT/quant-$arg-log.txt" 2>&1 ;;
    caps) if [ -s benchmarks/results/train_table/todo.txt ]; then  # the table's cells left
        python3 benchmarks/train_table.py run --out "$OUT/train_table" --lanes 2 \
          --memory-gib 30 --beside "cap checks" --only "$(paste -sd, benchmarks/results/train_table/todo.txt)" \
          --budget-s $(( $(left) - 40 )) > "$OUT/train_table-log.txt" 2>&1 &
        table=$!
      fi
      python3 benchmarks/cap_lanes.py --out "$OUT" --budget-gib 44 $(cells "$arg") \
        > "$OUT/caps-log.txt" 2>&1
      [ -n "${table:-}" ] && wait "$table" ;;
    abba) ONLY=abba OUT=$OUT/abba bash benchmarks/train_gpu.sh > /dev/null 2>&1 ;;
    trainer) mkdir -p "$OUT/trainer"
      python3 -m vramtui profile --json "$OUT/trainer/hf_trainer.json" \
        --csv "$OUT/trainer/hf_trainer.csv" --out /tmp/sessions examples/hf_trainer.py \
        --steps 20 > "$OUT/trainer/hf_trainer.txt" 2>&1 ;;
    traintable) [[ $arg == traintable ]] && arg=
      python3 benchmarks/train_table.py run --out "$OUT/train_table" --only "$arg" \
        --budget-s $(( $(left) - 30 )) > "$OUT/train_table-log.txt" 2>&1 ;;
  esac
}

background=()
declare -A predicting  # trainfit cell -> the pid of its predictions, for `train` to wait on
for job in "$@"; do
  kind=${job%%:*} arg=${job#*:}
  case $kind in tp1) need=90 ;; fit) need=60 ;; train) need=100 ;; long) need=40 ;;
    quant) need=150 ;; trainfit) need=0 ;; abba) need=150 ;; trainer) need=60 ;;
    traintable) need=90 ;; caps) need=120 ;; *) echo "unknown job $job" | tee -a "$queue"; continue ;;
  esac
  if [ "$(left)" -lt "$need" ]; then echo "skipped $job" | tee -a "$queue"; continue; fi
  echo "start $job at $(( $(date +%s) - t0 )) s" | tee -a "$queue"
  if [ "$kind" = trainfit ]; then
    run_job "$kind" "$arg"
  else  # in a process group of its own, stopped at the limit so the archive is always made
    run_job "$kind" "$arg" &
    pid=$!
    while kill -0 "$pid" 2> /dev/null && [ "$(left)" -gt 15 ]; do sleep 2; done
    if kill -0 "$pid" 2> /dev/null; then
      kill -- -"$pid" 2> /dev/null
      echo "stopped $job at the limit" | tee -a "$queue"
    fi
    wait "$pid"
  fi
  echo "done $job rc=$? at $(( $(date +%s) - t0 )) s" | tee -a "$queue"
done
for pid in "${background[@]}"; do
  while kill -0 "$pid" 2> /dev/null && [ "$(left)" -gt 15 ]; do sleep 2; done
  kill -- -"$pid" 2> /dev/null && echo "stopped background $pid at the limit" | tee -a "$queue"
done
echo "finished at $(( $(date +%s) - t0 )) s" | tee -a "$queue"
tar czf /tmp/run.tgz -C "$OUT" . && rm -rf "${OUT:?}"/* && mv /tmp/run.tgz "$OUT/run.tgz"
