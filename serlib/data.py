"""Datasets over cached features and the padding collate (lengths + masks)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from .cache import FeatureStore


@dataclass
class Batch:
    """A padded batch: ``x`` is ``(B, ..., F, T_max)``, ``lengths`` the valid frames."""

    x: torch.Tensor
    lengths: torch.Tensor
    y: torch.Tensor
    ids: list[str]
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # e.g. text ids, text_lengths

    def to(self, device, non_blocking: bool = True) -> Batch:
        move = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        return Batch(move(self.x), move(self.lengths), move(self.y), self.ids,
                     {k: move(v) for k, v in self.extras.items()})

    def pin_memory(self) -> Batch:
        return Batch(self.x.pin_memory(), self.lengths.pin_memory(), self.y.pin_memory(), self.ids,
                     {k: v.pin_memory() for k, v in self.extras.items()})


class FeatureDataset(Dataset):
    """Items ``(features, class index, utt_id)`` of one split.

    Args:
        store: the cached features.
        ids: the split's utterance ids (a fold's train, val or test list).
        labels: their labels, same order.
        classes: the class names, in output order.
        index: optional positions into ``ids`` (e.g. an oversampled training index);
            it can only repeat items of this split, never add others.
        extras: optional per-utterance tensors by name (``{"text": {utt_id: ids}}``);
            1-D long tensors are padded in batches with a ``<name>_lengths`` tensor,
            float vectors are stacked.
    """

    def __init__(self, store: FeatureStore, ids: Sequence[str], labels: Sequence[str],
                 classes: Sequence[str], index: np.ndarray | None = None,
                 extras: Mapping[str, Mapping[str, torch.Tensor]] | None = None):
        missing = [u for u in ids if u not in store]
        if missing:
            raise KeyError(f"{len(missing)} utterances have no features (skipped?): {missing[:3]}")
        unknown = sorted(set(labels) - set(classes))
        if unknown:
            raise ValueError(f"labels {unknown} are not among the classes {list(classes)}")
        self.store, self.ids, self.classes = store, list(ids), list(classes)
        self.targets = [self.classes.index(y) for y in labels]
        self.index = np.arange(len(self.ids)) if index is None else np.asarray(index)
        self.extras = dict(extras or {})
        for name, table in self.extras.items():
            missing = [u for u in self.ids if u not in table]
            if missing:
                raise KeyError(f"{len(missing)} utterances have no {name!r}: {missing[:3]}")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        j = int(self.index[i])
        utt = self.ids[j]
        return self.store[utt], self.targets[j], utt, {k: v[utt] for k, v in self.extras.items()}


def collate(items) -> Batch:
    """Zero-pad the last (time) axis to the longest item; pad or stack the extras."""
    feats, targets, ids, extras = zip(*items)
    lengths = torch.tensor([f.shape[-1] for f in feats])
    t_max = int(lengths.max())
    x = torch.stack([torch.nn.functional.pad(f, (0, t_max - f.shape[-1])) for f in feats])
    batched = {}
    for name in extras[0]:
        values = [e[name] for e in extras]
        if values[0].dtype == torch.long:  # token ids: pad with 0 and keep the lengths
            batched[name] = torch.nn.utils.rnn.pad_sequence(values, batch_first=True)
            batched[f"{name}_lengths"] = torch.tensor([len(v) for v in values])
        else:
            batched[name] = torch.stack(values)
    return Batch(x, lengths, torch.tensor(targets), list(ids), batched)


class BucketBatchSampler(torch.utils.data.Sampler):
    """Batches of similar length, to pad less.

    Training (``shuffle=True``): shuffle, sort pools of ``pool`` batches by length, cut
    them into batches, shuffle the batches. Evaluation: batches in length order, each
    holding at most ``batch_size`` items and at most ``batch_size`` × the median length
    in padded frames, so a few very long utterances are scored in small batches instead
    of padding a whole batch to their length.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, shuffle: bool,
                 generator: torch.Generator | None = None, pool: int = 50):
        self.lengths, self.batch_size, self.shuffle = list(lengths), batch_size, shuffle
        self.generator, self.pool = generator, pool

    def _batches(self) -> list[list[int]]:
        n = len(self.lengths)
        if not self.shuffle:
            order = sorted(range(n), key=lambda i: self.lengths[i])
            budget = self.batch_size * float(np.median(self.lengths)) if n else 0.0
            batches, current = [], []
            for i in order:  # ascending: item i is the longest of its batch
                if current and (len(current) == self.batch_size or (len(current) + 1) * self.lengths[i] > budget):
                    batches.append(current)
                    current = []
                current.append(i)
            return batches + ([current] if current else [])
        order = torch.randperm(n, generator=self.generator).tolist()
        size = self.batch_size * self.pool
        batches = []
        for start in range(0, n, size):
            chunk = sorted(order[start : start + size], key=lambda i: self.lengths[i])
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        perm = torch.randperm(len(batches), generator=self.generator).tolist()
        return [batches[p] for p in perm]

    def __iter__(self):
        yield from self._batches()

    def __len__(self) -> int:
        if not self.shuffle:
            return len(self._batches())
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size


def item_lengths(dataset: FeatureDataset) -> list[int]:
    """Frames of each item of a dataset (oversampled repeats included)."""
    return [dataset.store[dataset.ids[int(j)]].shape[-1] for j in dataset.index]


class DeviceBatches:
    """A fold split's batches formed on the device, from features placed there once.

    All items are concatenated along time into one tensor on ``device``; a batch is one
    gather (offsets + frame index) and a mask that zeroes the padding, so no per-batch
    host work or host-to-device copy remains. Batches are exactly those of a
    ``DataLoader`` over the same dataset and ``sampler`` (same items, order, padding),
    and no random numbers are drawn besides the sampler's, so results are identical.
    Datasets with per-utterance extras (text) are not supported: use the DataLoader.
    """

    def __init__(self, dataset: FeatureDataset, sampler: BucketBatchSampler, device):
        if dataset.extras:
            raise ValueError("DeviceBatches does not handle per-utterance extras (text); use the DataLoader")
        feats = [dataset.store[u] for u in dataset.ids]
        self.ids, self.sampler, self.device = dataset.ids, sampler, torch.device(device)
        self.index = np.asarray(dataset.index, dtype=np.int64)
        lengths = torch.tensor([f.shape[-1] for f in feats])
        self.host_lengths = lengths.numpy()  # a batch's longest item is read here, not from the device
        self.lengths = lengths.to(device)
        self.offsets = (torch.cumsum(lengths, 0) - lengths).to(device)
        self.flat = torch.cat(feats, dim=-1).to(device)  # (..., F, total frames)
        self.targets = torch.tensor(dataset.targets).to(device)

    @property
    def nbytes(self) -> int:
        return self.flat.numel() * self.flat.element_size()

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        for positions in self.sampler:
            held = self.index[positions]                             # items of this batch (host)
            j = torch.from_numpy(held).to(self.device, non_blocking=True)
            lengths = self.lengths[j]
            frames = torch.arange(int(self.host_lengths[held].max()), device=self.device)
            mask = frames[None, :] < lengths[:, None]                # (B, T)
            where = (self.offsets[j, None] + frames[None, :]).clamp(max=self.flat.shape[-1] - 1)
            x = self.flat[..., where].movedim(-2, 0).contiguous()    # (B, ..., F, T), as collate lays it out
            x = x * mask.view(mask.shape[0], *([1] * (x.dim() - 2)), mask.shape[1]).to(x.dtype)
            yield Batch(x, lengths, self.targets[j], [self.ids[k] for k in held.tolist()], {})
