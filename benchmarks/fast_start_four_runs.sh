#!/bin/sh
# The four cells of `vramtui bench -m opt-125m --tokens 10,20 --batch 1,2 --device cpu`
# as four separate `vramtui run` commands: the yardstick of results/fast_start/fast_start-cpu.md.
set -e
for spec in "-n 10 -b 1" "-n 10 -b 2" "-n 20 -b 1" "-n 20 -b 2"; do
  python -m vramtui run -m opt-125m $spec -d cpu -q >/dev/null
done
