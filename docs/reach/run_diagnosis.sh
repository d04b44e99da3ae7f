#!/usr/bin/env bash
# Stages 1 and 2 of docs/reach-the-target.md: the L2 baseline under one changed factor per
# arm, seeds 0-2 (SEEDS to change), on the study's data (simulated again: see the doc). Resumable: each arm is a
# `dfct grid` folder, and a finished run is skipped when this script runs again.
# Usage: bash docs/reach/run_diagnosis.sh WORKDIR [ARM ...]   (one torch thread: taskset)
set -euo pipefail
work=${1:?WORKDIR}; shift || true
cd "$work"
[ -f data/train/meta.json ] || dfct simulate data/train --specimens 12 --size 128 --seed 0 --preset benchmark
[ -f data/test/meta.json ] || dfct simulate data/test --specimens 16 --size 128 --seed 1000 --preset benchmark
# stage 2: larger training sets and a separate validation set
[ -f data/train48/meta.json ] || dfct simulate data/train48 --specimens 48 --size 128 --seed 0 --preset benchmark
[ -f data/train192/meta.json ] || dfct simulate data/train192 --specimens 192 --size 128 --seed 0 --preset benchmark
[ -f data/val8/meta.json ] || dfct simulate data/val8 --specimens 8 --size 128 --seed 500 --preset benchmark
COMMON=(--train data/train --test data/test --configs l2 --preset small --epochs 40
        --patience 20 --batch-size 8 --patch 64 --patches-per-slice 8 --jobs 1 --quiet)
declare -A ARM=(
  [x1]=""
  [x4]="--patches-per-slice 32"
  [x16]="--patches-per-slice 128"
  [wd0.03]="--weight-decay 0.03"
  [wd0.01]="--weight-decay 0.01"
  [wd0]="--weight-decay 0"
  [adamw0.1]="--optimizer adamw --weight-decay 0.1"
  [adamw0.01]="--optimizer adamw --weight-decay 0.01"
  [base32]="--base-channels 32"
  [base64]="--base-channels 64"
  [val8-12]="--val data/val8"
  [val8-48]="--train data/train48 --val data/val8 --patches-per-slice 2"
  [val8-192]="--train data/train192 --val data/val8 --patches-per-slice 1"
  # stage 2: one more change from wd0 (no coupled weight decay)
  [wd0-val8-12]="--weight-decay 0 --val data/val8"
  [wd0-x4]="--weight-decay 0 --patches-per-slice 32"
  [wd0-val8-48]="--weight-decay 0 --train data/train48 --val data/val8 --patches-per-slice 2"
  [wd0-val8-192]="--weight-decay 0 --train data/train192 --val data/val8 --patches-per-slice 1"
  [wd0-base32]="--weight-decay 0 --base-channels 32"
  # stage 2 follow-up: the x16 step budget and the paper preset's 64 base channels
  [wd0-x16]="--weight-decay 0 --patches-per-slice 128"
  [wd0-base64]="--weight-decay 0 --base-channels 64"
)
arms=("$@")
[ ${#arms[@]} -gt 0 ] || arms=(x1 wd0 adamw0.01 x4 wd0.01 adamw0.1 wd0.03 base32)
for arm in "${arms[@]}"; do
  # shellcheck disable=SC2086
  taskset -c "${CORE:-1}" dfct grid "diag/$arm" "${COMMON[@]}" ${ARM[$arm]} --seeds "${SEEDS:-0-2}" \
    || echo "arm $arm failed: $?"
  echo "$(date +%H:%M:%S) arm $arm done"
done
