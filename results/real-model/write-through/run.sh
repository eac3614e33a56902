#!/bin/sh
# The 0.5B over LSP, writing 8 consecutive lines of 2 Python files as new code
# (typing_replay --write-through), before and after the middle-written-so-far layout,
# alternating twice. BEFORE: a checkout of the commit before it (b335afa), which also
# lacks the suffix cut from the text's indentation (context/window.py).
set -e
cd "$(dirname "$0")/../../.."
BEFORE=${BEFORE:-/work/wt/before}
OUT=results/real-model/write-through
for round in 1 2; do
  for tree in before after; do
    # `python -m` imports from its working directory first: the tree to measure.
    if [ $tree = before ]; then dir=$BEFORE; else dir=$PWD; fi
    nice -n 0 .venv/bin/python benchmarks/bench_embedded.py --lsp-only --n 6 --languages python \
      --files 2 --lines 8 --write-through \
      --server-cmd "sh -c 'cd $dir && exec $PWD/.venv/bin/python -m fim_server --stdio --model qwen2.5-coder-0.5b'" \
      --out $OUT/$tree-$round.json > $OUT/$tree-$round.txt 2>&1
  done
done
