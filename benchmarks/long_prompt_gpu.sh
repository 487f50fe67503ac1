#!/usr/bin/env bash
# Held-out long prompts on a GPU: peak allocated of `vramtui run` for prompts of 2000,
# 4000 and 8000 tokens, sdpa and eager, four families (llama-3.2-1b, qwen2.5-1.5b,
# mistral-7b-v0.3, and opt-1.3b at 2000 only: OPT has 2048 positions), batch 1, 16 new
# tokens, float16, one fresh engine per cell. From the repository root, OUT set to a
# folder (a .whl/ folder of wheels, if any, is installed under /tmp/site first):
#
#   OUT=DIR bash benchmarks/long_prompt_gpu.sh            every cell, none started after 420 s
#   OUT=DIR bash benchmarks/long_prompt_gpu.sh 12 13 14   some cells, by index (a second call)
#   BUDGET_S=300 ...                                      none started after 300 s
#
# The largest cell, mistral-7b-v0.3 eager at 8000, is predicted at 32.5 GB allocated and
# 36.6 GB of NVML process memory (`vramtui estimate`): it fits an 80 GB H100.
# Cells past the time budget are skipped and the line to run them is printed. Writes,
# under $OUT: long_prompt/MODEL-ATTN-PROMPT.json (each session's summary) and
# long_prompt_gpu-log.txt (versions, every command and exit code). Score them anywhere
# (no GPU): python benchmarks/long_prompt_accuracy.py DIR/long_prompt --out RESULTS
set -u
: "${OUT:?set OUT to a folder}"
if [ -z "${WHEELS_DONE:-}" ] && ls .whl/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
sessions=$OUT/long_prompt
mkdir -p "$sessions" /tmp/sessions
log=$OUT/long_prompt_gpu-log.txt
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$log"
python3 -c "import sys, torch, transformers; print('python', sys.version.split()[0], 'torch',
torch.__version__, 'transformers', transformers.__version__)" 2>&1 | tee -a "$log"

# model  attn  prompt: the 2000-token cells first, then 4000, then 8000
CELLS=()
for prompt in 2000 4000 8000; do
  for model in llama-3.2-1b qwen2.5-1.5b mistral-7b-v0.3 opt-1.3b; do
    [ "$model" = opt-1.3b ] && [ "$prompt" -gt 2000 ] && continue
    for attn in eager sdpa; do CELLS+=("$model $attn $prompt"); done
  done
done
if [ $# -gt 0 ]; then picked=("$@"); else picked=("${!CELLS[@]}"); fi

t0=$(date +%s)
skipped=()
for n in "${picked[@]}"; do
  read -r model attn prompt <<< "${CELLS[$n]}"
  if (( $(date +%s) - t0 > ${BUDGET_S:-420} )); then skipped+=("$n"); continue; fi
  echo "== cell $n: $model $attn prompt $prompt + 16" | tee -a "$log"
  timeout 120 python3 -m vramtui run -m "$model" --attn "$attn" --prompt-tokens "$prompt" \
    -n 16 -b 1 --device cuda:0 -q --out /tmp/sessions \
    --json "$sessions/$model-$attn-$prompt.json" >> "$log" 2>&1
  echo "rc=$? after $(( $(date +%s) - t0 )) s" | tee -a "$log"
done
if [ ${#skipped[@]} -gt 0 ]; then
  echo "skipped past ${BUDGET_S:-420} s: OUT=DIR bash benchmarks/long_prompt_gpu.sh ${skipped[*]}" | tee -a "$log"
fi
