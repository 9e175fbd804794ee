"""Training-step speed: eager vs channels_last vs torch.compile, per model.

    python benchmarks/train_step.py [--models light_sernet,attention_fcn] [--seconds 3] [--steps 10]

For each model, one process times optimiser steps (forward + backward + Adam) on a
random batch shaped like the model's real features (`serlib.features.FrontEnd` on
``--seconds`` of audio), in three modes: eager, channels_last (models with Conv2d) and
torch.compile. Compilation and warm-up steps are excluded from the step time and the
compile time is printed on its own. Prints utterances/s and ratios against eager in the
same run; no thresholds.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from serlib.experiments import create, make_config
from serlib.features import FrontEnd


def batch_for(experiment, config, seconds: float, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Features of ``batch_size`` random utterances of ``seconds`` through the model's front end."""
    feature_config = experiment.features()[0]
    samples = int(seconds * feature_config.sample_rate)
    wave = 0.1 * torch.randn(batch_size, samples, generator=torch.Generator().manual_seed(0))
    x, lengths = FrontEnd(feature_config)(wave, torch.full((batch_size,), samples))
    return x, lengths, x.shape[-2]


def time_steps(model: nn.Module, x: torch.Tensor, lengths: torch.Tensor, y: torch.Tensor, steps: int,
               warmup: int) -> tuple[float, float]:
    """(seconds of the first ``warmup`` steps, seconds per step after them)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x, lengths), y).backward()
        optimizer.step()

    start = time.perf_counter()
    for _ in range(warmup):
        step()
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return first, (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="light_sernet,attention_fcn,cnn_lstm")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"{args.seconds:g} s utterances, {args.steps} timed steps")
    print(f"{'model':<16}{'mode':<15}{'utt/s':>8}{'vs eager':>10}{'warm-up s':>11}")
    for name in args.models.split(","):
        config = make_config(name, {"classes": ("angry", "happy", "neutral", "sad")})
        experiment = create(config)
        x, lengths, n_features = batch_for(experiment, config, args.seconds, args.batch_size)
        y = torch.arange(args.batch_size) % 4
        eager = None
        for mode in ("eager", "channels_last", "compile"):
            torch.manual_seed(0)
            model = experiment.model(n_features, 4)
            if mode == "channels_last" and not any(isinstance(m, nn.Conv2d) for m in model.modules()):
                continue
            xm = x
            if mode == "channels_last":  # as the Trainer does: weights always, inputs when 4-D
                model = model.to(memory_format=torch.channels_last)
                xm = x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
            if mode == "compile":
                model = torch.compile(model)
            first, per_step = time_steps(model, xm, lengths, y, args.steps, args.warmup)
            rate = args.batch_size / per_step
            eager = eager or rate
            print(f"{name:<16}{mode:<15}{rate:>8.1f}{rate / eager:>9.2f}×{first:>11.1f}")


if __name__ == "__main__":
    main()
