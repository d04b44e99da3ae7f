#!/usr/bin/env bash
# Copy each finished run's small files (metrics.json, config.json, history.csv) and each
# arm's grid.json from WORK/diag into docs/data/reach/runs/ (models and predictions stay).
# Usage: bash docs/reach/copy_runs.sh WORK [DEST]
set -euo pipefail
work=${1:?WORK}; dest=${2:-docs/data/reach/runs}
for arm_dir in "$work"/diag/*/; do
  arm=$(basename "$arm_dir")
  mkdir -p "$dest/$arm"
  cp "$arm_dir/grid.json" "$dest/$arm/"
  for run in "$arm_dir"/runs/*/seed-*; do
    [ -f "$run/metrics.json" ] || continue
    rel=${run#"$arm_dir"}
    mkdir -p "$dest/$arm/$rel"
    cp "$run/metrics.json" "$dest/$arm/$rel/"
    cp "$run/model/config.json" "$run/model/history.csv" "$dest/$arm/$rel/" 2>/dev/null || true
  done
done
