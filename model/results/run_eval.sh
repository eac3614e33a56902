#!/usr/bin/env bash
# The standard evaluation behind model/results/README.md:
#   model/results/run_eval.sh NAME [fim-server eval options, e.g. --model runs/ckpt]
# writes model/results/NAME-{single,humaneval,safim}.json and .md. Evenly spread subsets:
# HumanEval single-line 200 tasks, multi-line and random-span 100, SAFIM 50 per suite.
set -euo pipefail
name=$1; shift
here=$(cd "$(dirname "$0")" && pwd)
fim=${FIM_SERVER:-fim-server}
"$fim" eval --suite humaneval-single --limit 200 \
    --out "$here/$name-single.json" --markdown "$here/$name-single.md" "$@"
"$fim" eval --suite humaneval-multi --suite humaneval-random --limit 100 \
    --out "$here/$name-humaneval.json" --markdown "$here/$name-humaneval.md" "$@"
"$fim" eval --suite safim-block --suite safim-control --suite safim-api --limit 50 \
    --out "$here/$name-safim.json" --markdown "$here/$name-safim.md" "$@"
