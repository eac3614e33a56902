#!/usr/bin/env bash
# Before (f1c9568) and after (e17c928) the one-line header rule, alternating, both with
# e17c928's typing replay (write-through runs widened to whole statements): writing 8
# consecutive lines of 2 Python files as new code with the 0.5B on this machine.
# BEFORE: a worktree of f1c9568 with benchmarks/typing_replay.py copied from e17c928.
set -euo pipefail
AFTER=${AFTER:-/work/main}
BEFORE=${BEFORE:-/work/wt/before}
OUT=$AFTER/results/real-model/one-line-header
PY=$AFTER/.venv/bin/python
for round in 1 2; do
  for side in before after; do
    tree=$([ $side = before ] && echo "$BEFORE" || echo "$AFTER")
    (cd "$tree" && PYTHONPATH="$tree" $PY benchmarks/bench_embedded.py --lsp-only --n 1 \
      --languages python --files 2 --lines 8 --write-through \
      --server-cmd "$PY -m fim_server --stdio --model qwen2.5-coder-0.5b" \
      --out "$OUT/$side-$round.json" > "$OUT/$side-$round.txt" 2>&1)
    grep "typing replay (" "$OUT/$side-$round.txt"
  done
done
