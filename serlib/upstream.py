"""Pretrained speech encoders as upstreams: wav2vec 2.0, HuBERT, WavLM and Whisper's
encoder, loaded from a local Hugging Face checkpoint folder, and a cache of their hidden
states.

Nothing is ever downloaded: :func:`load` passes ``local_files_only=True`` to
``transformers`` (which also honours ``HF_HUB_OFFLINE``), and a missing or incomplete
folder is an :class:`UpstreamError` that lists the files needed and how to get them on
a machine with internet.

The frozen encoder's states are the same for every fold and seed, so they are computed
once per corpus and checkpoint (:func:`extract_states`) and cached under
``outputs/cache/``, keyed by the manifest's files (path, size, modification time), the
input checks, the chunk length and the checkpoint's own hash (:attr:`Checkpoint.hash`:
its config, feature-extractor settings and weights files), so another checkpoint in the
same folder never reuses stale states. Two stores:

* pooled per-layer statistics, always: ``(2, L, H, 1)`` float32 per utterance (mean and
  standard deviation over frames of each of the ``L`` hidden states);
* frame-level states on request: ``(L, H, T)`` float16 per utterance. These are large:
  ``L · H · frame rate · 2`` bytes per second of audio (a base encoder, 13 × 768 at 50
  frames/s: 1.0 MB/s, 3.6 GB per hour of audio; a large one, 25 × 1024: 2.6 MB/s, 9.2 GB
  per hour). The cost is logged before extraction and refused when the disk lacks it.

Audio goes through the same path as every front end (:class:`serlib.cache.InputChecks`:
decoded, mono, resampled to the encoder's rate, too short / silent files rejected, files
longer than ``max_seconds`` centre-cropped). Files longer than the upstream's
``chunk_seconds`` are cut into equal chunks that overlap nothing; each chunk goes through
the encoder alone and their states are joined along time. Chunks are batched only with
chunks of the same length, so no state ever depends on padding (wav2vec 2.0 base
normalises over the whole input).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from . import cache
from .audio import RATES, InputChecks, WaveCrop
from .cache import FeatureStore, audio_hashes, cache_key
from .constants import PATH
from .device import bf16_supported
from .errors import DataError, SerlibError
from .paths import outputs_dir
from .progress import bar as progress_bar
from .progress import line as progress_line

log = logging.getLogger(__name__)

KINDS = ("wav2vec2", "hubert", "wavlm", "whisper")
CONFIG_FILES = ("config.json", "preprocessor_config.json")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
HOW_TO_GET = (
    "Get a checkpoint on a machine with internet, e.g. `huggingface-cli download microsoft/wavlm-base-plus "
    "--local-dir DIR` (or facebook/wav2vec2-base, facebook/hubert-base-ls960, openai/whisper-base), or in Python "
    "`AutoModel.from_pretrained(NAME).save_pretrained(DIR)` and `AutoFeatureExtractor.from_pretrained(NAME)"
    ".save_pretrained(DIR)`; then copy DIR to this machine and pass upstream.path=DIR. serlib never downloads.")


class UpstreamError(DataError):
    """A checkpoint folder that cannot be used: names the folder and the reason."""


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint folder holds, read from its files without loading the weights.

    ``n_states`` is the number of hidden states the encoder returns (its input
    embedding + one per transformer layer); ``frame_rate`` in frames per second.
    """

    path: str
    kind: str
    name: str
    hash: str
    sample_rate: int
    n_states: int
    hidden_size: int
    frame_rate: float
    files: tuple[str, ...]


# weights a released checkpoint may hold that the bare encoder does not use (pre-training and
# task heads: wav2vec 2.0's quantizer, HuBERT's projections, a CTC head, Whisper's output layer)
UNUSED_WEIGHTS = ("quantizer.", "project_q.", "project_hid.", "lm_head.", "proj_out.", "final_proj.",
                  "label_embs_concat", "classifier.", "projector.")
UNTRAINED_OK = ("masked_spec_embed",)  # only used to mask inputs during pre-training


def _read_json(path: Path) -> dict:
    """A checkpoint's JSON file as an object whose keys are settings (no ``__dunder__``
    keys, which transformers would set as Python attributes)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as e:  # ValueError: bad JSON or bytes that are not UTF-8
        raise UpstreamError(path, f"unreadable JSON ({e}). {HOW_TO_GET}") from e
    if not isinstance(value, dict):
        raise UpstreamError(path, f"expected a JSON object of settings, got a {type(value).__name__}. {HOW_TO_GET}")
    odd = [k for k in value if k.startswith("__")]
    if odd:
        raise UpstreamError(path, f"key(s) {odd} are not settings (a tampered file?); remove them")
    return value


def _shards(index: Path) -> list[str]:
    """The shard files a sharded checkpoint's index names: plain file names in its folder
    (checked before any of them is read)."""
    weight_map = _read_json(index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map or \
            not all(isinstance(v, str) for v in weight_map.values()):
        raise UpstreamError(index, "weight_map must be a non-empty object of weight names to shard file names, "
                                   f"got {type(weight_map).__name__}")
    shards = sorted(set(weight_map.values()))
    outside = [s for s in shards if s in ("", ".", "..") or Path(s).name != s or "\\" in s]
    if outside:
        raise UpstreamError(index, f"shard file names must be files of the checkpoint folder, got {outside[:3]}")
    return shards


def checkpoint_files(path: str | Path) -> list[Path]:
    """The files that determine a checkpoint's output: its config, its feature
    extractor's settings and its weights (every shard of a sharded checkpoint).

    Raises:
        UpstreamError: the folder or one of these files is missing.
    """
    root = Path(path)
    if not root.is_dir():
        raise UpstreamError(root, f"no such checkpoint folder; it needs {', '.join(CONFIG_FILES)} and "
                                  f"{' or '.join(WEIGHT_FILES)} (or a sharded index). {HOW_TO_GET}")
    missing = [name for name in CONFIG_FILES if not (root / name).is_file()]
    weights = [root / name for name in WEIGHT_FILES if (root / name).is_file()]
    if not weights:
        for index in INDEX_FILES:
            if (root / index).is_file():
                shards = _shards(root / index)
                weights = [root / index] + [root / s for s in shards]
                missing += [s for s in shards if not (root / s).is_file()]
                break
        else:
            missing.append(" or ".join(WEIGHT_FILES))
    if missing:
        present = sorted(p.name for p in root.iterdir())
        raise UpstreamError(root, f"incomplete checkpoint: missing {missing} (present: {present}); a checkpoint "
                                  f"needs {', '.join(CONFIG_FILES)} and {' or '.join(WEIGHT_FILES)}. {HOW_TO_GET}")
    return [root / name for name in CONFIG_FILES] + weights


def checkpoint_hash(files: list[Path], cache_dir: str | Path | None = None) -> str:
    """SHA-256 over the files' names and contents: a checkpoint is identified by what it
    holds. Each file's SHA-1 is cached by path, size, modification time, inode and change
    time (:func:`serlib.cache.audio_hashes` with ``exact=True``): a weights file is read
    once (1.0 GB takes 1.7 s to hash here), and one replaced by another of the same size
    and modification time is hashed again."""
    contents = audio_hashes(pd.DataFrame({PATH: [str(f) for f in files]}), cache_dir, exact=True)
    h = hashlib.sha256()
    for f, content in zip(files, contents):
        h.update(f"{f.name}\0{content}\n".encode())
    return h.hexdigest()


def describe(path: str | Path, kind: str = "auto", cache_dir: str | Path | None = None) -> Checkpoint:
    """Read a checkpoint folder's description and hash (cheap: the weights are not loaded).

    Raises:
        UpstreamError: a missing or incomplete folder, a checkpoint that is not one of the
            supported speech encoders (:data:`KINDS`), or a ``kind`` that contradicts it.
    """
    files = checkpoint_files(path)
    root = Path(path)
    config = _read_json(root / "config.json")
    model_type = config.get("model_type")
    if model_type not in KINDS:
        raise UpstreamError(root, f"config.json has model_type {model_type!r}: not a supported speech encoder "
                                  f"(supported: {', '.join(KINDS)})")
    if kind not in ("auto", model_type):
        raise UpstreamError(root, f"upstream.kind={kind!r} but config.json says model_type {model_type!r}; "
                                  "use upstream.kind=auto")
    pre = _read_json(root / "preprocessor_config.json")
    rate = pre.get("sampling_rate")
    if not isinstance(rate, int) or isinstance(rate, bool) or not RATES[0] <= rate <= RATES[1]:
        raise UpstreamError(root / "preprocessor_config.json", f"sampling_rate must be an integer from {RATES[0]} to "
                                                               f"{RATES[1]} Hz, got {rate!r}")
    def number(source: dict, key: str, default=None, where: str = "config.json") -> int:
        value = source.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UpstreamError(root / where, f"{key} must be a positive integer, got {value!r}"
                                              + (" (missing)" if key not in source and default is None else ""))
        return value

    if model_type == "whisper":
        n_states, hidden = number(config, "encoder_layers") + 1, number(config, "d_model")
        frame_rate = rate / (number(pre, "hop_length", 160, "preprocessor_config.json") * 2)  # mel frames, stride 2
    else:
        n_states, hidden = number(config, "num_hidden_layers") + 1, number(config, "hidden_size")
        stride = config.get("conv_stride", (5, 2, 2, 2, 2, 2, 2))
        if not isinstance(stride, (list, tuple)) or not stride or \
                not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in stride):
            raise UpstreamError(root / "config.json", f"conv_stride must be a list of positive integers, got {stride!r}")
        frame_rate = rate / math.prod(stride)
    name = config.get("_name_or_path") or root.resolve().name
    return Checkpoint(str(root), model_type, str(name), checkpoint_hash(files, cache_dir), rate, n_states, hidden,
                      frame_rate, tuple(f.name for f in files))


def _transformers():
    try:
        import transformers
    except ImportError as e:  # the optional extra
        raise SerlibError("pretrained upstreams need the transformers package: pip install 'serlib[pretrained]'") from e
    transformers.utils.logging.disable_progress_bar()
    return transformers


class Upstream(nn.Module):
    """A frozen encoder: a mono waveform at its rate → all hidden states ``(L, H, T)``.

    Long inputs are cut into equal chunks of at most ``chunk_seconds`` (no overlap)
    whose states are joined along time (:meth:`states`).
    """

    def __init__(self, checkpoint: Checkpoint, chunk_seconds: float = 20.0):
        super().__init__()
        t = _transformers()
        self.checkpoint = checkpoint
        root = checkpoint.path
        # from_pretrained first initialises the weights at random (then overwrites them): under a
        # forked RNG, so that a run draws the same numbers whether or not its states were cached
        with torch.random.fork_rng(devices=[]):
            try:
                model, info = t.AutoModel.from_pretrained(root, local_files_only=True, output_loading_info=True)
                self.extractor = t.AutoFeatureExtractor.from_pretrained(root, local_files_only=True)
            except Exception as e:  # transformers, safetensors and torch raise many kinds for a broken folder
                raise _load_error(root, e) from None
        _check_loading_info(root, info)
        self.whisper = checkpoint.kind == "whisper"
        self.encoder = model.get_encoder() if self.whisper else model  # Whisper: the encoder only
        self.encoder.eval().requires_grad_(False)
        limit = self.extractor.chunk_length if self.whisper else None  # Whisper's input is 30 s, padded
        if limit is not None and chunk_seconds > limit:
            raise UpstreamError(root, f"upstream.max_seconds={chunk_seconds:g} is longer than Whisper's input "
                                      f"({limit} s); use {limit} or less")
        self.chunk_seconds = chunk_seconds

    @property
    def sample_rate(self) -> int:
        return self.checkpoint.sample_rate

    def chunks(self, n_samples: int) -> list[tuple[int, int]]:
        """``(start, end)`` of equal chunks of at most ``chunk_seconds`` covering the input
        without overlap (equal sizes: no tiny last chunk)."""
        limit = int(self.chunk_seconds * self.sample_rate)
        count = max(1, math.ceil(n_samples / limit))
        size = math.ceil(n_samples / count)
        return [(s, min(s + size, n_samples)) for s in range(0, n_samples, size)]

    @torch.no_grad()
    def encode(self, waves: list[torch.Tensor], sample_rate: int | None = None) -> list[torch.Tensor]:
        """Hidden states ``(L, H, T_i)`` float32 of waveforms of equal length (one pass,
        no chunking); Whisper's inputs may differ in length (each is padded to 30 s, as
        in its training, and keeps its own frames)."""
        if sample_rate is not None and sample_rate != self.sample_rate:
            raise _rate_error(self.checkpoint.path, sample_rate, self.sample_rate)
        device = next(self.encoder.parameters()).device
        arrays = [w.detach().float().cpu().numpy() for w in waves]
        # on CUDA the frozen encoder runs under autocast (bf16 where native, else fp16); its
        # states are cached in fp16 anyway. The CPU computes in fp32, as before.
        autocast = torch.autocast("cuda", dtype=torch.bfloat16 if bf16_supported(device) else torch.float16,
                                  enabled=device.type == "cuda")
        if self.whisper:
            inputs = self.extractor(arrays, sampling_rate=self.sample_rate, return_tensors="pt")
            with autocast:
                out = self.encoder(inputs["input_features"].to(device), output_hidden_states=True)
            valid = [min(math.ceil(len(a) * self.checkpoint.frame_rate / self.sample_rate), out.hidden_states[0].shape[1])
                     for a in arrays]
        else:
            if len({len(a) for a in arrays}) > 1:
                raise ValueError("encode() batches waveforms of one length only (padding would change the states)")
            inputs = self.extractor(arrays, sampling_rate=self.sample_rate, return_tensors="pt")
            with autocast:
                out = self.encoder(inputs["input_values"].to(device), output_hidden_states=True)
            valid = [out.hidden_states[0].shape[1]] * len(arrays)
        states = torch.stack(out.hidden_states, dim=1)  # (B, L, T, H)
        return [s[:, :t].transpose(1, 2).float().cpu() for s, t in zip(states, valid)]

    def states(self, wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """All hidden states ``(L, H, T)`` of one mono waveform ``(time,)`` at the
        encoder's rate, chunk by chunk.

        Raises:
            UpstreamError: ``sample_rate`` is not the encoder's (resample first).
        """
        if sample_rate != self.sample_rate:
            raise _rate_error(self.checkpoint.path, sample_rate, self.sample_rate)
        if wave.dim() != 1:
            raise ValueError(f"states() takes a mono waveform (time,), got shape {tuple(wave.shape)}")
        return torch.cat([self.encode([wave[s:e]])[0] for s, e in self.chunks(wave.numel())], dim=-1)

    def batch_states(self, waves: list[torch.Tensor], batch_size: int = 8) -> list[torch.Tensor]:
        """:meth:`states` of many waveforms, chunks of equal length batched together."""
        pieces = [(i, j, w[s:e]) for i, w in enumerate(waves) for j, (s, e) in enumerate(self.chunks(w.numel()))]
        by_length: dict[int, list] = {}
        for piece in pieces:
            by_length.setdefault(0 if self.whisper else piece[2].numel(), []).append(piece)
        done: dict[tuple[int, int], torch.Tensor] = {}
        for group in by_length.values():
            for k in range(0, len(group), batch_size):
                part = group[k:k + batch_size]
                for (i, j, _), s in zip(part, self.encode([p[2] for p in part])):
                    done[i, j] = s
        counts = [len(self.chunks(w.numel())) for w in waves]
        return [torch.cat([done[i, j] for j in range(n)], dim=-1) for i, n in enumerate(counts)]


def _load_error(root: str, e: Exception) -> UpstreamError:
    text = str(e).split("\n")[0][:300]
    if "weights_only" in str(e) or "Weights only load failed" in str(e):
        return UpstreamError(root, "pytorch_model.bin holds pickled Python objects besides tensors: refused, since "
                                   "unpickling can run code. Convert it to model.safetensors on a machine and from a "
                                   f"source you trust (save_pretrained(DIR, safe_serialization=True)). {HOW_TO_GET}")
    if "ignore_mismatched_sizes" in text:
        return UpstreamError(root, "the weights have other shapes than config.json describes (hidden_size or a "
                                   "layer's size edited?): a config and weights of different checkpoints")
    return UpstreamError(root, f"transformers cannot load this checkpoint ({type(e).__name__}: {text}); a "
                               f"truncated or edited weights file, or a config that does not match its weights? "
                               f"{HOW_TO_GET}")


def _check_loading_info(root: str, info: dict) -> None:
    """Missing, unexpected or mismatched weights are an error (transformers would leave
    the missing ones at random and go on): the config does not describe these weights."""
    missing = sorted(k for k in info.get("missing_keys", ()) if not k.endswith(UNTRAINED_OK))
    unexpected = sorted(k for k in info.get("unexpected_keys", ()) if not k.startswith(UNUSED_WEIGHTS))
    mismatched = sorted(str(k) for k in info.get("mismatched_keys", ()))
    problems = [f"{len(keys)} {what} ({', '.join(map(str, keys[:3]))}{', …' if len(keys) > 3 else ''})"
                for what, keys in (("weights the config needs are missing", missing),
                                   ("weights are not in the config's model", unexpected),
                                   ("weights have another shape", mismatched)) if keys]
    if problems:
        raise UpstreamError(root, "the weights do not match config.json: " + "; ".join(problems)
                                  + ". A config and weights of different checkpoints? Use the folder as released.")


def _rate_error(path, got: int, want: int) -> UpstreamError:
    return UpstreamError(path, f"waveform at {got} Hz but this encoder takes {want} Hz: resample it first "
                               "(serlib's loaders and predict do)")


def load(path: str | Path, kind: str = "auto", chunk_seconds: float = 20.0, device: str | torch.device = "cpu") -> Upstream:
    """The frozen encoder of a local checkpoint folder (:func:`describe` checks it first)."""
    return Upstream(describe(path, kind), chunk_seconds).to(device)


# -- the state cache ------------------------------------------------------------------------
@dataclass(frozen=True)
class UpstreamFeatures:
    """The "front-end settings" of an upstream store: part of its cache key, and what a
    record shows under ``features``. ``level``: ``pooled`` or ``frames``."""

    kind: str
    sample_rate: int
    checkpoint: str        # the checkpoint's name
    checkpoint_hash: str
    chunk_seconds: float
    level: str = "pooled"

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def disk_cost(seconds: float, n_utterances: int, checkpoint: Checkpoint, frames: bool) -> int:
    """Bytes of the stores for ``seconds`` of audio in ``n_utterances`` files: pooled
    statistics (``2 · L · H`` float32 per file), plus fp16 frames (``L · H`` per frame)."""
    per_state = checkpoint.n_states * checkpoint.hidden_size
    pooled = n_utterances * 2 * per_state * 4
    return pooled + (int(seconds * checkpoint.frame_rate) * per_state * 2 if frames else 0)


def _size(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def pooled_statistics(states: torch.Tensor) -> torch.Tensor:
    """``(L, H, T) -> (2, L, H, 1)``: mean and (population) standard deviation over frames."""
    return torch.stack([states.mean(-1), states.std(-1, unbiased=False)])[..., None]


def store_paths(manifest: pd.DataFrame, checkpoint: Checkpoint, chunk_seconds: float, checks: InputChecks,
                cache_dir: Path) -> dict[str, tuple[UpstreamFeatures, str, Path]]:
    """``(settings, key, file)`` of both levels' caches for this manifest, checkpoint
    and settings."""
    out = {}
    for level in ("pooled", "frames"):
        settings = UpstreamFeatures(f"upstream-{checkpoint.kind}", checkpoint.sample_rate, checkpoint.name,
                                    checkpoint.hash, float(chunk_seconds), level)
        key = cache_key(manifest, settings, WaveCrop(), checks)
        out[level] = (settings, key, cache.store_path(cache_dir, f"{settings.kind}-{level}", key))
    return out


def extract_states(manifest: pd.DataFrame, checkpoint: Checkpoint, chunk_seconds: float = 20.0, frames: bool = False,
                   checks: InputChecks | None = None, on_error: str = "raise", device: str | torch.device = "cpu",
                   workers: int = 4, batch_size: int = 8, progress: bool = True,
                   cache_dir: str | Path | None = None) -> FeatureStore:
    """The encoder's states for every utterance of ``manifest``: pooled per-layer
    statistics ``(2, L, H, 1)``, or with ``frames=True`` the frame-level states
    ``(L, H, T)`` in float16; from the cache when possible (module docstring).

    Raises:
        AudioError: a file that cannot be used (unless ``on_error="skip"``, which counts it
            in ``store.skipped``).
        DataError: the frame-level store would not fit on the disk.
    """
    checks = checks or InputChecks()
    cache_dir = Path(cache_dir) if cache_dir is not None else outputs_dir() / "cache"
    paths = store_paths(manifest, checkpoint, chunk_seconds, checks, cache_dir)
    level = "frames" if frames else "pooled"
    settings, key, path = paths[level]
    if path.is_file():
        store = cache.read_store(path, settings, key)
        if store is not None:
            return store

    seconds_audio = float(manifest["duration"].clip(upper=checks.max_seconds).sum()) if "duration" in manifest \
        else 0.0
    cost = disk_cost(seconds_audio, len(manifest), checkpoint, frames)
    plan = (f"upstream {checkpoint.name} ({checkpoint.kind}, {checkpoint.n_states} states × {checkpoint.hidden_size}): "
            f"{len(manifest)} files, {seconds_audio / 3600:.2f} h of audio; cache {_size(cost)} ({level}) in {cache_dir}")
    log.info(plan)
    progress_line(plan, progress)
    cache_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(cache_dir).free
    if frames and cost > free:
        raise DataError(cache_dir, f"frame-level states need about {_size(cost)} but the disk has {_size(free)} free; "
                                   "free space, or use upstream.frames=false (pooled statistics)")
    start = time.perf_counter()
    upstream = Upstream(checkpoint, chunk_seconds).to(device)
    sr = checkpoint.sample_rate

    decoded, skipped, warnings = cache.map_files(manifest, lambda wav_path: checks.load(wav_path, sr), workers,
                                                 on_error, progress=False)
    good = sorted(decoded.items(), key=lambda item: item[1].numel())
    pooled, framed = {}, {}
    bar = progress_bar(None, progress, total=len(good), desc=f"upstream {checkpoint.kind}", leave=False)
    step = max(batch_size, 1) * 4  # files per call: equal-length chunks of these are batched
    for k in range(0, len(good), step):
        part = good[k:k + step]
        for (utt, _), states in zip(part, upstream.batch_states([w for _, w in part], batch_size)):
            pooled[utt] = pooled_statistics(states)
            if frames:
                framed[utt] = states.half()
        bar.update(len(part))
    bar.close()
    seconds = time.perf_counter() - start
    audio_seconds = sum(w.numel() for _, w in good) / sr
    done = (f"upstream {checkpoint.kind}: {len(good)} files ({audio_seconds:.0f} s of audio) in {seconds:.1f} s, "
            f"{audio_seconds / max(seconds, 1e-9):.1f} s of audio per second"
            + (f", {len(skipped)} skipped" if skipped else ""))
    log.info(done)
    progress_line(done, progress)
    if skipped:
        log.warning("upstream extraction skipped %d files: %s", len(skipped), [s[1:] for s in skipped[:3]])
    for _, wav_path, note in warnings:
        log.warning("%s: %s", wav_path, note)
    out = None
    for name, features in (("pooled", pooled), ("frames", framed)):
        if name == "frames" and not frames:
            continue
        s, k, p = paths[name]
        store = FeatureStore(features, s, k, p, skipped, seconds, False, warnings)
        cache.write_store(store)
        if name == level:
            out = store
    return out


def write_random_encoder(path: str | Path, kind: str = "wavlm", size: str = "tiny", seed: int = 0) -> Path:
    """Save a randomly initialised encoder (and its feature extractor) as a checkpoint
    folder: ``size="tiny"`` (2 layers, hidden size 32: tests and demos on a fresh
    machine) or ``"base"`` (the default config of ``kind``: the architecture and cost of
    the released base models, with random weights). Its states carry no emotion: it
    exercises the pipeline, it measures speed, nothing else."""
    t = _transformers()
    if kind not in KINDS:
        raise SerlibError(f"kind must be one of {KINDS}, got {kind!r}")
    if size not in ("tiny", "base"):
        raise SerlibError(f"size must be 'tiny' or 'base', got {size!r}")
    tiny = size == "tiny"
    if kind == "whisper":
        extra = dict(d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                     encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=100, pad_token_id=1, bos_token_id=2,
                     eos_token_id=3, decoder_start_token_id=2, max_target_positions=32) if tiny else {}
        config = t.WhisperConfig(**extra)
        extractor = t.WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    else:
        extra = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4) if tiny else {}
        config = {"wav2vec2": t.Wav2Vec2Config, "hubert": t.HubertConfig, "wavlm": t.WavLMConfig}[kind](**extra)
        extractor = t.Wav2Vec2FeatureExtractor(return_attention_mask=kind != "wav2vec2")
    torch.manual_seed(seed)
    model = t.AutoModel.from_config(config)
    path = Path(path)
    model.save_pretrained(path)
    extractor.save_pretrained(path)
    return path


def demo_checkpoint(kind: str = "wavlm") -> Path:
    """A tiny random encoder in ``outputs/upstreams/`` (written once): what notebook 11
    and the demo use on a machine without a real checkpoint."""
    path = outputs_dir() / "upstreams" / f"{kind}-tiny-random"
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        write_random_encoder(path, kind, "tiny")
    return path


__all__ = ["Checkpoint", "KINDS", "Upstream", "UpstreamError", "UpstreamFeatures", "checkpoint_files", "demo_checkpoint", "describe",
           "disk_cost", "extract_states", "load", "pooled_statistics", "write_random_encoder"]
