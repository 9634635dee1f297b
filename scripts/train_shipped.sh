#!/usr/bin/env bash
# Train the shipped models one after another on the shared Oxford-IIIT Pet subset, each into
# runs/<id> with a log in runs/<id>.log. Re-running resumes an interrupted model from its last
# checkpoint and skips finished ones (those with a card.json). Copy a finished run into
# weights/<id>/ (without its checkpoint/ folder) only when its test mIoU beats the shipped one.
#   nohup bash scripts/train_shipped.sh [ID...] > runs/train_shipped.log 2>&1 &
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DATA=${SEGDEMO_DATA:-../shared/data/oxford-pets}
MNV2=../shared/pretrained/mobilenet_v2_1.0_224_imagenet_no_top.weights.h5

declare -A ARGS=(
  [unet_mobilenetv2]="--img-size 160 --epochs 40 --batch-size 8 --lr 1e-3 --encoder-weights $MNV2 --freeze-encoder-epochs 3"
  [deeplabv3plus_mobilenetv2]="--img-size 224 --epochs 30 --batch-size 8 --lr 1e-3 --encoder-weights $MNV2 --freeze-encoder-epochs 2"
  [unet]="--img-size 160 --epochs 80 --batch-size 8 --lr 1e-3 --option base_filters=16"
  [fcn8s_vgg16]="--img-size 224 --epochs 60 --batch-size 8 --lr 3e-4"
  [deeplabv3plus_xception]="--img-size 224 --epochs 60 --batch-size 8 --lr 1e-3"
)
ORDER=(unet_mobilenetv2 deeplabv3plus_mobilenetv2 unet fcn8s_vgg16 deeplabv3plus_xception)
mkdir -p runs
for id in "${@:-${ORDER[@]}}"; do
  out=runs/$id
  if [ -f "$out/card.json" ]; then echo "$id: finished earlier, skipped"; continue; fi
  resume=""
  [ -f "$out/checkpoint/state.json" ] && resume="--resume"
  echo "$(date -Is) $id: training $resume"
  # shellcheck disable=SC2086
  $PY -m segdemo train --arch "$id" --data "$DATA" --format oxford ${ARGS[$id]} --out "$out" $resume \
    >> "runs/$id.log" 2>&1
  echo "$(date -Is) $id: exit $?"
done
