#!/usr/bin/env bash
# The whole detect-then-retrieve pipeline on the embedded synthetic dataset: the
# paper's four single models (Tri/mAP x DB F/C) and four ensembles, ending with
# Table 1. Every stage reuses its artifacts when rerun, so an interrupted run resumes.
#
#   bash tools/synth_pipeline.sh [OUT]        (default OUT: runs/synth)
set -euo pipefail
OUT="${1:-runs/synth}"
repo_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
detret() { "${DETRET:-$repo_dir/.venv/bin/detret}" "$@"; }
D=(--config "$OUT/detret.yaml")

detret data synth --out "$OUT"
detret "${D[@]}" train-detector
detret "${D[@]}" detect --split shop
detret "${D[@]}" detect --split street --no-run-detector
for loss in triplet ap; do
  for crops in full detected; do
    detret "${D[@]}" train-retrieval --loss "$loss" --shop-crops "$crops"
  done
done
detret "${D[@]}" embed -m tri-full --gallery-crops full
detret "${D[@]}" embed -m tri-crops --gallery-crops detected
detret "${D[@]}" embed -m ap-full --gallery-crops full
detret "${D[@]}" embed -m ap-crops --gallery-crops detected
detret "${D[@]}" embed --combine tri-full --combine tri-crops --name Tris
detret "${D[@]}" embed --combine ap-full --combine ap-crops --name mAPs
detret "${D[@]}" embed --combine tri-full --combine ap-full --name Fulls
detret "${D[@]}" embed --combine tri-crops --combine ap-crops --name Crops
for run in tri-full tri-crops ap-full ap-crops Tris mAPs Fulls Crops; do
  detret "${D[@]}" search "$run" --k 20
done
detret "${D[@]}" eval tri-full tri-crops ap-full ap-crops Tris mAPs Fulls Crops --per-category
echo "Table: $OUT/runs/eval/table.md"
