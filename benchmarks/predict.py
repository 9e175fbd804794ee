"""Predict with an exported bundle: time per second of audio, and the round trip.

    python benchmarks/predict.py BUNDLE FILE_OR_FOLDER... [--record RECORD.json]

Prints the seconds of wall time per second of audio for one fold's model and for the
ensemble of all folds (same files, one run), the predictions, and with ``--record`` the
largest difference between the bundle's probabilities and that record's for the
utterances both have (the record's fold model is used).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from serlib.bundle import load_model, seconds_per_audio_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle")
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--record", default=None, help="a record of the bundle: compare its probabilities")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    one = load_model(args.bundle, fold=1)
    ensemble = load_model(args.bundle)
    one.predict(args.inputs[:1])  # warm-up (allocations, resampler kernels)
    for label, model in (("one fold", one), (f"ensemble of {len(ensemble.members)}", ensemble)):
        pred, cost = seconds_per_audio_second(model, args.inputs)
        audio = pred.files.seconds.sum()
        print(f"{label}: {len(pred.files)} files, {audio:.1f} s of audio, {cost * 1000:.1f} ms per second of audio")
        print(pred.files[["path", "seconds", "windows", "prediction"]].assign(
            path=pred.files.path.map(lambda p: Path(p).name)).to_string(index=False))
    if args.record:
        record = json.loads(Path(args.record).read_text())
        fold_model = load_model(args.bundle, fold=record["config"]["fold"])
        truth = pd.read_csv(Path(args.record).with_name(record["predictions"]))
        pred = fold_model.predict(args.inputs).files
        pred["utt_id"] = pred.path.map(lambda p: Path(p).stem)
        both = truth.merge(pred, on="utt_id", suffixes=("_record", "_bundle"))
        diff = max(float(np.abs(both[f"p_{c}_record"] - both[f"p_{c}_bundle"]).max()) for c in record["classes"])
        same = float((both.prediction_record == both.prediction_bundle).mean())
        print(f"round trip on {len(both)} utterances of fold {record['config']['fold']}: largest probability "
              f"difference {diff:.1e}, same label for {same:.0%}")


if __name__ == "__main__":
    main()
