#!/usr/bin/env bash
# The standard evaluation behind model/results/README.md:
#   model/results/run_eval.sh NAME [fim-server eval options, e.g. --model runs/ckpt]
# writes model/results/NAME-{single,humaneval,safim}.json and .md: every HumanEval
# single-line (1,033) and random-span-light (164) task, 500 evenly spread multi-line
# tasks (of 5,815), every SAFIM Python block (805), control (750) and api (181) task.
# About 8 minutes per model on 2 CPU cores.
set -euo pipefail
name=$1; shift
here=$(cd "$(dirname "$0")" && pwd)
fim=${FIM_SERVER:-fim-server}
"$fim" eval --suite humaneval-single \
    --out "$here/$name-single.json" --markdown "$here/$name-single.md" "$@"
"$fim" eval --suite humaneval-multi --limit 500 \
    --out "$here/$name-multi.json" --markdown "$here/$name-multi.md" "$@"
"$fim" eval --suite humaneval-random \
    --out "$here/$name-random.json" --markdown "$here/$name-random.md" "$@"
"$fim" eval --suite safim-block --suite safim-control --suite safim-api \
    --out "$here/$name-safim.json" --markdown "$here/$name-safim.md" "$@"
