#!/bin/bash
# Alternating: /infill layout (old) vs typed-after-FIM-middle (new), typing replay, python, gate 0.
cd /work/main
for round in 1 2; do
  for layout in old new; do
    if [ $layout = old ]; then cmd=".venv/bin/python benchmarks/server_infill_layout.py --stdio --model qwen2.5-coder-0.5b"; else cmd=".venv/bin/python -m fim_server --stdio --model qwen2.5-coder-0.5b"; fi
    echo "== round $round $layout $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
    timeout 1500 .venv/bin/python benchmarks/typing_replay.py --languages python --files 2 --lines 3 --gates 0 --server-cmd "$cmd" --out /work/build/layout/$layout-$round 2>&1 | tail -25
  done
done
echo "== done $(date +%T)"
