#!/usr/bin/env bash
# The recipe ablation of the README ("A modern training recipe"): EMO-DB-2s, 7 classes,
# 10-fold LOSO, seed 1; the paper recipe, each switch added alone, and presets.
# Usage: SERLIB_OUTPUTS=/somewhere benchmarks/recipe_ablation.sh /path/to/emodb-2s [stage]
# Records land in $SERLIB_OUTPUTS/results; `python -m serlib collect` and notebook 10 read them.
set -euo pipefail
ROOT=${1:?path to emodb-2s}
STAGE=${2:-all}
PY=${PYTHON:-.venv/bin/python}
run() {  # run EXPERIMENT NAME KEY=VALUE...
  local exp=$1 name=$2; shift 2
  nice "$PY" -m serlib sweep --experiment "$exp" --corpus emodb --root "$ROOT" --classes all \
    --jobs 2 --threads 1 --set name="$name" progress=false "$@" 2>&1 | grep -E "^sweep|FAILED|error" || true
}
SWITCHES=(
  "speaker_norm recipe.speaker_norm=true"
  "cosine-lr10 recipe.schedule=cosine recipe.lr_scale=10"
  "mixup recipe.mixup=0.2"
  "masks recipe.time_masks=2 recipe.freq_masks=2 recipe.freq_mask_width=0.1"
  "label_smoothing recipe.label_smoothing=0.1"
  "ema recipe.ema=0.99"
)
if [[ $STAGE == all || $STAGE == light_sernet ]]; then
  run light_sernet ls20-paper epochs=20 input_seconds=2
  for s in "${SWITCHES[@]}"; do set -- $s; n=$1; shift; run light_sernet "ls20-$n" epochs=20 input_seconds=2 "$@"; done
fi
if [[ $STAGE == all || $STAGE == fcn1d ]]; then
  run attention_fcn_1d fcn1d-paper subset=none
  for s in "${SWITCHES[@]}"; do set -- $s; n=$1; shift; run attention_fcn_1d "fcn1d-$n" subset=none "$@"; done
  run attention_fcn_1d fcn1d-modern subset=none recipe=modern
fi
if [[ $STAGE == all || $STAGE == baseline ]]; then
  run functionals compare-svm_linear-speaker_norm feature_set=compare classifier=svm_linear recipe.speaker_norm=true
fi
