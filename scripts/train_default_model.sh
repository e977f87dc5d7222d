#!/usr/bin/env bash
# Reproduce the bundled default model (omgclip/weights/default.pt) from ../shared/data.
#   scripts/train_default_model.sh [WORKDIR]        (default WORKDIR: runs/default)
# 1. held-out run: MEAD person W009 and 20 CK+ subjects go to split 'test'; train picks its
#    validation people from the rest; `omgclip evaluate --split test` gives the model card's
#    numbers (people never seen in training or model selection);
# 2. shipped run: the same recipe on all people; its best.pt becomes the bundled weights.
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-runs/default}
EPOCHS=${EPOCHS:-40}
BUILD_ARGS=(--workers 2 --no-progress --stride 4)
TRAIN_ARGS=(--epochs "$EPOCHS" --patience 12 --seed 0 --no-progress)
omg=.venv/bin/omgclip
mkdir -p "$W"
.venv/bin/python scripts/make_shared_manifests.py --out "$W/manifests_holdout" --holdout-mead W009 --holdout-ck-count 20
.venv/bin/python scripts/make_shared_manifests.py --out "$W/manifests_all"
for v in holdout all; do
  $omg build-dataset "${BUILD_ARGS[@]}" --out "$W/data_$v" \
    --manifest "$W/manifests_$v/mead.csv" --manifest "$W/manifests_$v/cremad.csv" --manifest "$W/manifests_$v/ckplus.csv"
done
$omg train --data "$W/data_holdout" --out "$W" --run-name holdout "${TRAIN_ARGS[@]}"
$omg evaluate --checkpoint "$W/holdout/best.pt" --data "$W/data_holdout" --split test \
  --out "$W/holdout_eval.json" --confusion-png "$W/holdout_confusion.png"
$omg train --data "$W/data_all" --out "$W" --run-name all "${TRAIN_ARGS[@]}"
cp "$W/all/best.pt" omgclip/weights/default.pt
echo "bundled weights updated from $W/all/best.pt; held-out metrics in $W/holdout_eval.json"
