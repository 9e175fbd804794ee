"""Extraction throughput of pretrained upstreams (seconds of audio per second).

    python benchmarks/upstream.py --kind wavlm --size tiny [--corpus emodb --root ../shared/data/emodb-2s]
    python benchmarks/upstream.py --kind wav2vec2 --size base --limit 100

Builds a randomly initialised encoder (``size=base``: the default config of ``kind``,
i.e. the architecture and cost of the released base model; no download) into
``outputs/upstreams/`` and times :func:`serlib.upstream.extract_states` on the corpus
into a fresh temporary cache (decoding, resampling, the encoder, pooling), then the
cached re-read. Prints seconds and ratios; no thresholds. Random weights: the speed is
the real one, the states carry no emotion.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from serlib.audio import InputChecks
from serlib.corpora import prepare_manifest
from serlib.experiments import make_config
from serlib.paths import outputs_dir
from serlib.upstream import describe, disk_cost, extract_states, store_paths, write_random_encoder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kind", default="wavlm")
    p.add_argument("--size", default="tiny", choices=("tiny", "base"))
    p.add_argument("--corpus", default="emodb")
    p.add_argument("--root", default="../shared/data/emodb-2s")
    p.add_argument("--limit", type=int, default=None, help="first N files only")
    p.add_argument("--frames", action="store_true", help="also keep frame-level states (fp16)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--keep", action="store_true",
                   help="extract into outputs/cache (what `sweep --experiment pretrained` then reads) instead of a "
                        "temporary folder; an existing entry there is replaced")
    args = p.parse_args()

    folder = outputs_dir() / "upstreams" / f"{args.kind}-{args.size}-random"
    if not (folder / "config.json").is_file():
        write_random_encoder(folder, args.kind, args.size)
    checkpoint = describe(folder)
    manifest = prepare_manifest(args.corpus, args.root, None, None, {})
    if args.limit:
        manifest = manifest.head(args.limit)
    params = sum(t.numel() for t in load_file(str(folder / "model.safetensors")).values())
    print(f"{args.kind} {args.size} (random init): {checkpoint.n_states} hidden states × {checkpoint.hidden_size}, "
          f"{params / 1e6:.2f} M parameters in the checkpoint; torch threads {torch.get_num_threads()}, "
          f"device {args.device}")
    checks = InputChecks.from_config(make_config("pretrained"))  # the experiment's defaults: same cache key
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = outputs_dir() / "cache" if args.keep else Path(tmp)
        for entry in store_paths(manifest, checkpoint, 20.0, checks, cache_dir).values():
            entry[2].unlink(missing_ok=True)  # time a fresh extraction
        start = time.perf_counter()
        store = extract_states(manifest, checkpoint, frames=args.frames, checks=checks, device=args.device,
                               batch_size=args.batch_size, cache_dir=cache_dir, progress=False)
        fresh = time.perf_counter() - start
        start = time.perf_counter()
        extract_states(manifest, checkpoint, frames=args.frames, checks=checks, cache_dir=cache_dir, progress=False)
        cached = time.perf_counter() - start
    audio = float(manifest["duration"].sum())
    print(f"{len(store)} files, {audio:.0f} s of audio: extraction {fresh:.1f} s = {audio / fresh:.1f} s of audio per "
          f"second; cached re-read {cached:.2f} s ({fresh / max(cached, 1e-9):.0f}× faster)")
    print(f"cache size: pooled {disk_cost(audio, len(manifest), checkpoint, False) / 2**20:.1f} MiB, "
          f"with frames {disk_cost(audio, len(manifest), checkpoint, True) / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
