#!/usr/bin/env bash
# The recipe ablation of docs/recipe.md: EMO-DB-2s, 7 classes,
# LOSO, seed 1; the paper recipe, each switch added alone, and the presets.
# Usage: SERLIB_OUTPUTS=/somewhere benchmarks/recipe_ablation.sh /path/to/emodb-2s [stage]
#   stage: light_sernet | fcn1d | baseline | all (default)
#   SWITCH_FOLDS=1,2,3,4,5 (the run docs/recipe.md reports) or all: the folds of the single-switch runs
# Records land in $SERLIB_OUTPUTS/results; `python -m serlib collect` and notebook 10 read them.
set -euo pipefail
ROOT=${1:?path to emodb-2s}
STAGE=${2:-all}
SWITCH_FOLDS=${SWITCH_FOLDS:-1,2,3,4,5}
PY=${PYTHON:-.venv/bin/python}
run() {  # run EXPERIMENT FOLDS NAME KEY=VALUE...
  local exp=$1 folds=$2 name=$3; shift 3
  nice "$PY" -m serlib sweep --experiment "$exp" --corpus emodb --root "$ROOT" --classes all --folds "$folds" \
    --jobs 2 --threads 1 --set name="$name" progress=false "$@" 2>&1 | grep -E "^sweep|FAILED|error" || true
}
SWITCHES=(
  "cosine-lr10 recipe.schedule=cosine recipe.lr_scale=10"
  "speaker_norm recipe.speaker_norm=true"
  "mixup recipe.mixup=0.2"
  "ema recipe.ema=0.99"
  "masks recipe.time_masks=2 recipe.freq_masks=2 recipe.freq_mask_width=0.1"
  "label_smoothing recipe.label_smoothing=0.1"
)
if [[ $STAGE == all || $STAGE == light_sernet ]]; then
  LS=(epochs=20 input_seconds=2)
  run light_sernet all ls20-paper "${LS[@]}"
  for s in "${SWITCHES[@]}"; do set -- $s; n=$1; shift; run light_sernet "$SWITCH_FOLDS" "ls20-$n" "${LS[@]}" "$@"; done
  run light_sernet all ls20-modern "${LS[@]}" recipe=modern
  run light_sernet all ls20-modern-speaker_norm "${LS[@]}" recipe=modern recipe.speaker_norm=true
fi
if [[ $STAGE == all || $STAGE == fcn1d ]]; then
  run attention_fcn_1d all fcn1d-paper subset=none
  for s in "${SWITCHES[@]}"; do set -- $s; n=$1; shift; run attention_fcn_1d all "fcn1d-$n" subset=none "$@"; done
  run attention_fcn_1d all fcn1d-modern subset=none recipe=modern
fi
if [[ $STAGE == all || $STAGE == baseline ]]; then
  run functionals all compare-svm_linear feature_set=compare classifier=svm_linear
  run functionals all compare-svm_linear-speaker_norm feature_set=compare classifier=svm_linear recipe.speaker_norm=true
fi
