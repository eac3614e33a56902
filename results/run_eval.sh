#!/usr/bin/env bash
# The standard evaluation behind results/README.md:
#   results/run_eval.sh NAME [fim-server eval options, e.g. --model runs/ckpt]
# writes results/NAME-{single,multi,random,safim}.json and .md: every HumanEval
# single-line (1,033) and random-span-light (164) task, 500 evenly spread multi-line
# tasks (of 5,815), every SAFIM Python block (805), control (750) and api (181) task.
# About 8 minutes per model on 2 CPU cores.
set -euo pipefail
name=$1; shift
here=$(cd "$(dirname "$0")" && pwd)
options=("$@")

run() {  # run PART [eval options]: one results file pair
    local part=$1; shift
    "${FIM_SERVER:-fim-server}" eval "$@" "${options[@]}" \
        --out "$here/$name-$part.json" --markdown "$here/$name-$part.md"
}

run single --suite humaneval-single
run multi --suite humaneval-multi --limit 500
run random --suite humaneval-random
run safim --suite safim-block --suite safim-control --suite safim-api
