#!/usr/bin/env bash
# Stage 3's main runs on one machine, seed by seed (docs/reach-the-target.md, "Stage 3 main
# design"): all 12 configurations of a seed, then the next seed, into one grid folder.
# Resumable: a finished run is skipped, an unfinished one is trained again.
# Usage: bash docs/reach/run_stage3.sh WORK [FIRST LAST [JOBS]]
# WORK holds data/train and data/test (made here if missing, the study's data) and stage3/.
# Run it with one version of the code for all seeds on a machine (a pinned checkout).
set -euo pipefail
work=${1:?WORK}; first=${2:-100}; last=${3:-119}; jobs=${4:-2}
cd "$work"
[ -f data/train/meta.json ] || dfct simulate data/train --specimens 12 --size 128 --seed 0 --preset benchmark
[ -f data/test/meta.json ] || dfct simulate data/test --specimens 16 --size 128 --seed 1000 --preset benchmark
export OMP_NUM_THREADS=1
for seed in $(seq "$first" "$last"); do
  echo "::: seed $seed $(date -Is)"
  dfct grid stage3 --train data/train --test data/test --preset small --epochs 40 \
    --patience 20 --batch-size 8 --patch 64 --patches-per-slice 32 --weight-decay 0 \
    --configs l2,l2+s-nonlinear,l2+f+s-nonlinear,l2+f-nonlinear-spectral,l2+d-nonlinear,l2+s+d-nonlinear,l2+d+s-nonlinear \
    --controls --seeds "$seed" --jobs "$jobs"
done
echo "::: done $(date -Is)"
