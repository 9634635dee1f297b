#!/usr/bin/env bash
# Score every finished candidate run (runs/<name>/card.json) on the probe split (the minor breeds
# the candidates never saw; the test split's scores come with training, in metrics.json) and, for
# a run trained with --holdout-breed, on that breed (its 'unseen' split), then print the probe
# table for runs/ beside the shipped models':
#   bash scripts/evaluate_candidates.sh
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DATA=${SEGDEMO_DATA:-../shared/data/oxford-pets}
for run in runs/*/; do
  run=${run%/}
  [ -f "$run/card.json" ] || continue
  if [ ! -f "$run/probe.json" ]; then
    echo "$(date -Is) $run: probe"
    $PY -m segdemo evaluate --model "$run" --data "$DATA" --split probe --json "$run/probe.json" \
      > "$run/probe.log" 2>&1 || echo "$run: evaluation failed, see $run/probe.log"
  fi
  # a run trained with --holdout-breed: the held-out breed's photos (its 'unseen' split)
  if [ ! -f "$run/unseen.json" ] && $PY -c 'import json, sys
sys.exit(not json.load(open(sys.argv[1])).get("config", {}).get("holdout_breeds"))' "$run/card.json"
  then
    echo "$(date -Is) $run: unseen"
    $PY -m segdemo evaluate --model "$run" --data "$DATA" --split unseen --json "$run/unseen.json" \
      > "$run/unseen.log" 2>&1 || echo "$run: evaluation failed, see $run/unseen.log"
  fi
done
echo "== candidates (runs/)"
$PY -m segdemo results --probe --weights runs
echo "== shipped (weights/)"
$PY -m segdemo results --probe --weights weights
