python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit
# The GPU check of `vramtui run --snapshot`, from the repository root with OUT
# set: opt-1.3b x 300 tokens twice without and twice with --snapshot (the cost, in decode
# tok/s), an out-of-memory raised by the test hook at token 150, and a real one (eager
# attention's score matrix at batch 1024 x prompt 2000, in the prefill). Under 120 s.
# Writes 4 files: snapshot_gpu-log.txt, snapshot_summary.json, snapshot_gpu-opt-1.3b.json
# (a session with its snapshot), and allocator-snapshot-h200.json.gz (a real snapshot trimmed into a test fixture).
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
work=/tmp/snapshot-gpu
rm -rf $work && mkdir -p $work
log=$OUT/snapshot_gpu-log.txt
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $log
t0=$(date +%s)
one() {  # one() NAME [flags...]: a headless run, its session and snapshot in $work
  local name=$1
  shift
  if (( $(date +%s) - t0 > 80 )); then echo "$name skipped: past 80 s" | tee -a $log; return; fi
  timeout 40 python3 -m vramtui run -q -m opt-1.3b --device cuda:0 \
    --json $work/$name.json "$@" > $work/$name.txt 2>&1
  echo "$name rc $? at $(( $(date +%s) - t0 )) s" | tee -a $log
}
one plain1 -n 300
one snap1 -n 300 --snapshot
one plain2 -n 300
one snap2 -n 300 --snapshot
VRAMTUI_TEST_OOM_AT_TOKEN=150 one hook_oom -n 300 --snapshot
one real_oom -n 4 --attn eager --prompt-tokens 2000 --batch 1024 --snapshot
for name in snap1 real_oom; do
  echo "--- vramtui run $name (stdout and stderr)" >> $log
  tail -n 40 $work/$name.txt >> $log
done
ls -l $work >> $log
cp $work/snap1.json $OUT/snapshot_gpu-opt-1.3b.json 2>> $log
python3 benchmarks/snapshot_summary.py $work $OUT 2>&1 | tee -a $log
echo "done at $(( $(date +%s) - t0 )) s" | tee -a $log
