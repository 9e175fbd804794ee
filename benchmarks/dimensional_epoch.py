"""Time per epoch of dimensional against categorical training, in one process.

    python benchmarks/dimensional_epoch.py [--experiment light_sernet] [--corpus synthetic] [--root DIR]
                                          [--fold 1] [--epochs 1] [--rounds 2]

Trains the same fold with ``task=categorical`` and ``task=dimensional`` in alternation
(``--rounds`` times each, into a temporary output folder; the feature cache is shared, so
only training differs) and prints each run's mean ``seconds_per_epoch`` (epoch = training
plus the validation pass) and the ratio dimensional / categorical of their means. A corpus
without dimensional labels (EMO-DB, RAVDESS…) is said so and skipped. No thresholds.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np

from serlib.errors import DataError
from serlib.experiments import make_config
from serlib.train import run_fold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="light_sernet")
    parser.add_argument("--corpus", default="synthetic")
    parser.add_argument("--root", default=None)
    parser.add_argument("--classes", default="neutral,happy,sad,angry")
    parser.add_argument("--fold", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    seconds = {"categorical": [], "dimensional": []}
    with tempfile.TemporaryDirectory() as out:
        for r in range(args.rounds):
            for task in seconds:
                values = {"corpus": args.corpus, "data_root": args.root, "classes": tuple(args.classes.split(",")),
                          "fold": args.fold, "epochs": args.epochs, "task": task, "progress": False,
                          "output_dir": f"{out}/{task}{r}"}
                try:
                    rec = run_fold(make_config(args.experiment, values))
                except DataError as e:
                    print(f"{task}: skipped: {e}")
                    continue
                seconds[task].append(rec["timing"]["seconds_per_epoch"])
                print(f"round {r + 1} {task}: {rec['timing']['seconds_per_epoch']:.1f} s per epoch "
                      f"({rec['split_sizes']['train']} training utterances)", flush=True)
    if seconds["categorical"] and seconds["dimensional"]:
        cat, dim = np.mean(seconds["categorical"]), np.mean(seconds["dimensional"])
        print(f"{args.experiment} on {args.corpus} fold {args.fold}: categorical {cat:.1f} s/epoch, dimensional "
              f"{dim:.1f} s/epoch, ratio dimensional/categorical {dim / cat:.2f}")
    elif not seconds["dimensional"]:
        print(f"{args.corpus} has no dimensional labels: no ratio")


if __name__ == "__main__":
    main()
