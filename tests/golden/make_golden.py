"""Writes tests/golden/*.json: the fingerprints of every experiment's default config and one
short training run's record on the synthetic corpus, made with the code *before* the
"One house" rearrangement (commit d3e56fa). tests/test_golden.py checks that the current
code reproduces them. Run it only when a change is meant to alter records (and say so).

    python tests/golden/make_golden.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import torch

from serlib import experiments

HERE = Path(__file__).resolve().parent
# small and deterministic: one fold, two epochs, one thread
RUN = {"experiment": "light_sernet", "corpus": "synthetic", "fold": 2, "seed": 3, "epochs": 2,
       "batch_size": 16, "input_seconds": 1.0, "progress": False, "compile": False, "device": "cpu"}
FINGERPRINTS = {
    "cnn_lstm": {}, "attention_fcn": {}, "attention_fcn_1d": {}, "light_sernet": {},
    "mscnn_spu": {"subset": "all"}, "functionals": {},
    "light_sernet+modern": {"recipe": "modern"},
    "light_sernet+speaker_norm": {"recipe.speaker_norm": True, "classes": "all"},
    "cnn_lstm+cross": {"protocol": "cross:synthetic", "test_subset": "scripted"},
}


def fingerprints() -> dict:
    from serlib.manifests import resolve_values
    from serlib.records import run_fingerprint

    out = {}
    for key, values in FINGERPRINTS.items():
        config, manifest = resolve_values(key.split("+")[0], values)
        fp, identity = run_fingerprint(config, manifest)
        out[key] = {"fingerprint": fp, "identity": identity}
    return out


def run(out_dir: str) -> dict:
    from serlib.train import run_fold

    torch.set_num_threads(1)
    config = experiments.make_config(RUN["experiment"], {**RUN, "output_dir": out_dir})
    rec = run_fold(config)
    preds = pd.read_csv(rec["predictions_path"])
    keep = ("fingerprint", "identity", "metrics", "best_epoch", "best_selection_ua", "classes",
            "test_speakers", "val_speakers", "split_sizes", "train_ids", "features", "normalizer",
            "n_parameters", "n_features", "recipe", "leaky", "speaker_independent")
    return {"record": {k: rec[k] for k in keep},
            "history": [{k: v for k, v in h.items() if k != "seconds"} for h in rec["history"]],
            "record_path": str(Path(rec["path"]).relative_to(out_dir)),
            "predictions": preds.to_dict(orient="list")}


if __name__ == "__main__":
    out = sys.argv[1]
    (HERE / "fingerprints.json").write_text(json.dumps(fingerprints(), indent=1, sort_keys=True) + "\n")
    (HERE / "run.json").write_text(json.dumps(run(out), indent=1, sort_keys=True) + "\n")
