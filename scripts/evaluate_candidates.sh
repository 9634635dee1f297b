#!/usr/bin/env bash
# Score every finished candidate run (runs/<name>/card.json) on the probe split (the minor breeds
# the candidates never saw; the test split's scores come with training, in metrics.json), then
# print the probe table for runs/ beside the shipped models':
#   bash scripts/evaluate_candidates.sh
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DATA=${SEGDEMO_DATA:-../shared/data/oxford-pets}
for run in runs/*/; do
  run=${run%/}
  [ -f "$run/card.json" ] || continue
  [ -f "$run/probe.json" ] && continue
  echo "$(date -Is) $run: probe"
  $PY -m segdemo evaluate --model "$run" --data "$DATA" --split probe --json "$run/probe.json" \
    > "$run/probe.log" 2>&1 || echo "$run: evaluation failed, see $run/probe.log"
done
echo "== candidates (runs/)"
$PY -m segdemo results --probe --weights runs
echo "== shipped (weights/)"
$PY -m segdemo results --probe --weights weights
