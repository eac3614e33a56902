#!/bin/sh
# write-through replay, blockMs 1500 (then the default) vs 700, alternating twice
cd "$(dirname "$0")/../../.."
OUT=results/real-model/block-ms
mkdir -p $OUT
for round in 1 2; do
  for ms in 1500 700; do
    .venv/bin/python benchmarks/bench_embedded.py --lsp-only --n 6 --languages python --files 2 --lines 8 --write-through \
      --setting blockMs=$ms --server-cmd ".venv/bin/python -m fim_server --stdio --model qwen2.5-coder-0.5b" \
      --out $OUT/block-$ms-$round.json > $OUT/block-$ms-$round.txt 2>&1
  done
done
# Then 400 against both, interleaved: 400, 1500, 400, 700 (round 3 of each of the others).
for step in 400:1 1500:3 400:2 700:3; do
  ms=${step%%:*}; round=${step##*:}
  .venv/bin/python benchmarks/bench_embedded.py --lsp-only --n 6 --languages python --files 2 --lines 8 --write-through \
    --setting blockMs=$ms --server-cmd ".venv/bin/python -m fim_server --stdio --model qwen2.5-coder-0.5b" \
    --out $OUT/block-$ms-$round.json > $OUT/block-$ms-$round.txt 2>&1
done
