set -e
PY=${AFTER:-/work/main}/.venv/bin/python
for suite in humaneval-multi humaneval-random; do
  for side in before after; do
    tree=$([ $side = before ] && echo ${BEFORE:-/work/wt/before} || echo ${AFTER:-/work/main})
    (cd $tree && PYTHONPATH=$tree $PY -m fim_server eval --model qwen2.5-coder-0.5b --suite $suite --limit 20 --out ${AFTER:-/work/main}/results/real-model/one-line-header/$side-$suite.json > ${AFTER:-/work/main}/results/real-model/one-line-header/$side-$suite.txt 2>&1)
    tail -3 ${AFTER:-/work/main}/results/real-model/one-line-header/$side-$suite.txt
  done
done
