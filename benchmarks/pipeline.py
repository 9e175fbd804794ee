"""Data-path overhead: a training epoch through the engine vs the bare optimiser steps.

    python benchmarks/pipeline.py [--corpus emodb --root DIR --classes all] [--models light_sernet,cnn_lstm]

For each model, one fold is set up (features from the cache) and timed three ways in one
process, after one warm-up epoch:

* engine, DataLoader: ``Trainer.train_epoch`` with batches collated on the host;
* engine, ``features_on_device=True``: batches gathered on the device;
* bare: the same batches (already on the device, normalised and masked) through
  forward, loss, backward and optimiser step only — the time no data path can beat.

Prints seconds per epoch and the overhead ratio engine / bare for both modes (the
engine includes augmentation such as VTLP, which bare steps leave out). No thresholds.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from serlib.device import resolve_device
from serlib.experiments import make_config
from serlib.fold_setup import make_loaders, setup_fold
from serlib.manifests import resolve_values
from serlib.train import Trainer


def epoch_seconds(setup, config, device, on_device: bool) -> tuple[float, Trainer]:
    config = make_config(config.experiment, {**config.to_dict(), "features_on_device": on_device})
    generator = torch.Generator().manual_seed(config.seed)
    loaders = make_loaders(setup, config, generator, device)
    trainer = Trainer(replace(setup, config=config), loaders, generator, setup.stem.parent / "bench.run")
    trainer.train_epoch(0, None)  # warm-up
    start = time.perf_counter()
    trainer.train_epoch(1, None)
    return time.perf_counter() - start, trainer


def bare_seconds(trainer: Trainer) -> float:
    """The same epoch's batches, prepared in advance, through the optimiser steps only."""
    batches = []
    for batch in trainer.loaders["train"]:
        batch = batch.to(trainer.device)
        batches.append((trainer.prepare(batch.x, batch.lengths), batch.lengths, batch.y))
    trainer.model.train()
    optimizer, loss_fn = trainer.optimizer, trainer.loss_fn
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for x, lengths, y in batches:
        with trainer.autocast():
            loss = loss_fn(trainer.forward_model(x, lengths).float(), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="synthetic")
    parser.add_argument("--root", default=None)
    parser.add_argument("--classes", default="neutral,happy,sad,angry")
    parser.add_argument("--models", default="light_sernet,cnn_lstm,attention_fcn_1d")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--fold", type=int, default=1)
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(f"{args.corpus}, fold {args.fold}, {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'model':<18}{'DataLoader s':>13}{'on device s':>12}{'bare s':>8}{'ratio off':>10}{'ratio on':>9}")
    for name in args.models.split(","):
        values = {"corpus": args.corpus, "data_root": args.root, "fold": args.fold, "progress": False,
                  "device": args.device}
        if args.corpus not in ("iemocap", "synthetic"):
            values["subset"] = None
        if args.classes != "all":
            values["classes"] = tuple(args.classes.split(","))
        else:

            values["classes"] = resolve_values(name, {**values, "classes": "all"})[0].classes
        config = make_config(name, values)
        setup = setup_fold(config)
        off, _ = epoch_seconds(setup, config, device, False)
        on, trainer = epoch_seconds(setup, config, device, True)
        bare = bare_seconds(trainer)
        print(f"{name:<18}{off:>13.2f}{on:>12.2f}{bare:>8.2f}{off / bare:>9.2f}×{on / bare:>8.2f}×")


if __name__ == "__main__":
    main()
