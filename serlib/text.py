"""The text pipeline of MSCNN-SPU-ATT: tokenizer, vocabulary, GloVe loading, SWEM.

Tokenizer (documented so results are reproducible):

* lower-case;
* IEMOCAP's bracketed markers (``[LAUGHTER]``, ``[BREATHING]``, ``[GARBAGE]`` …) become
  one token each, ``<laughter>``, ``<breathing>`` … — laughter is an emotion cue, so the
  markers are kept rather than deleted;
* words keep inner apostrophes (``don't``); every other punctuation mark is its own token.

>>> tokenize("[LAUGHTER] Oh, I don't KNOW!")
['<laughter>', 'oh', ',', 'i', "don't", 'know', '!']
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from .constants import UTT_ID
from .errors import DataError
from .features import lengths_to_mask

log = logging.getLogger(__name__)

PAD, UNK = "<pad>", "<unk>"
_TOKEN = re.compile(r"\[([a-z]+)\]|[a-z0-9]+(?:'[a-z]+)*|[^\sa-z0-9]")


def tokenize(text: str | None) -> list[str]:
    if text is None:
        return []
    out = []
    for m in _TOKEN.finditer(str(text).lower()):
        out.append(f"<{m.group(1)}>" if m.group(1) else m.group(0))
    return out


class Vocabulary:
    """Token ↔ id; id 0 is padding, id 1 unknown. Build it from the training split only."""

    def __init__(self, tokens: Sequence[str]):
        self.itos = [PAD, UNK] + [t for t in tokens if t not in (PAD, UNK)]
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def build(cls, texts: Iterable[str | None], min_count: int = 1) -> Vocabulary:
        counts = Counter(t for text in texts for t in tokenize(text))
        return cls(sorted(t for t, c in counts.items() if c >= min_count))

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str | None) -> torch.Tensor:
        """Token ids ``(L,)``; an empty text gives one unknown token (so lengths ≥ 1)."""
        ids = [self.stoi.get(t, 1) for t in tokenize(text)] or [1]
        return torch.tensor(ids, dtype=torch.long)


def load_glove(path: str | Path, vocab: Vocabulary, dim: int | None = None,
               seed: int = 0) -> tuple[torch.Tensor, dict]:
    """An embedding matrix ``(len(vocab), dim)`` from a GloVe text file.

    The file (``word v1 … vD`` per line) is streamed, so a multi-GB file never has to fit
    in memory; only vocabulary words are kept. Words the file lacks get small random
    vectors, padding gets zeros.

    Returns:
        The matrix and a coverage report ``{"found", "vocabulary", "coverage", "dim"}``.

    Raises:
        DataError: a missing file, or a malformed line (named ``path:line`` with the reason).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "GloVe file not found")
    found: dict[int, np.ndarray] = {}
    with path.open(encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if len(parts) < 2:
                if not line.strip():
                    continue
                raise DataError(f"{path}:{number}", "malformed GloVe line (no vector)")
            if dim is None:
                dim = len(parts) - 1
            if len(parts) - 1 != dim:
                raise DataError(f"{path}:{number}", f"malformed GloVe line: {len(parts) - 1} values, expected {dim}")
            index = vocab.stoi.get(parts[0])
            if index is None:
                continue
            try:
                found[index] = np.asarray(parts[1:], dtype=np.float32)
            except ValueError as e:
                raise DataError(f"{path}:{number}", f"malformed GloVe line: {e}") from e
    if dim is None:
        raise DataError(path, "empty GloVe file")
    rng = np.random.default_rng(seed)
    matrix = rng.normal(0, 0.1, (len(vocab), dim)).astype(np.float32)
    matrix[0] = 0.0
    for index, vector in found.items():
        matrix[index] = vector
    words = len(vocab) - 2
    report = {"found": len(found), "vocabulary": words, "coverage": len(found) / max(words, 1), "dim": dim}
    log.info("GloVe %s: %d of %d vocabulary words (%.1f%%)", path.name, len(found), words, 100 * report["coverage"])
    return torch.from_numpy(matrix), report


def swem(embeddings: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """SWEM-max and SWEM-avg (Shen et al. 2018) over valid tokens:
    ``(B, L, d) -> (B, 2d)``."""
    m = lengths_to_mask(lengths, embeddings.shape[1])[..., None]
    maximum = embeddings.masked_fill(~m, float("-inf")).amax(1)
    average = (embeddings * m).sum(1) / m.sum(1).clamp_min(1)
    return torch.cat([maximum, average], dim=-1)


def read_utterance_embeddings(path: str | Path) -> dict[str, torch.Tensor]:
    """Utterance-level embeddings (e.g. x-vectors) keyed by utt_id, from an ``.npz``
    (one array per utt_id) or a ``.csv`` (``utt_id`` then one column per dimension)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "utterance embedding file not found")
    if path.suffix == ".npz":
        with np.load(path) as data:
            return {k: torch.tensor(data[k], dtype=torch.float32).flatten() for k in data.files}
    if path.suffix == ".csv":
        import pandas as pd

        table = pd.read_csv(path)
        if UTT_ID not in table.columns:
            raise DataError(path, f"needs a '{UTT_ID}' column")
        values = table.drop(columns=UTT_ID).to_numpy(dtype=np.float32)
        return {u: torch.from_numpy(v) for u, v in zip(table[UTT_ID].astype(str), values)}
    raise DataError(path, "utterance embeddings must be .npz or .csv")
