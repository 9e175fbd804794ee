"""A sanity baseline: logistic regression on per-utterance mean MFCCs.

Used to check that a corpus (the synthetic one above all) is learnable but not trivial,
under a speaker-independent protocol. Standardisation is fitted on each fold's training
split only (a scikit-learn pipeline).
"""

from __future__ import annotations

import librosa
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from . import audio, metrics
from .constants import LABEL, PATH, UTT_ID
from .protocols import make_folds


def mean_mfcc(path: str, sample_rate: int = 16000, n_mfcc: int = 20) -> np.ndarray:
    """Mean and standard deviation over time of ``n_mfcc`` MFCCs: ``(2 * n_mfcc,)``."""
    wav = audio.load(path, sample_rate).numpy()
    mfcc = librosa.feature.mfcc(y=wav, sr=sample_rate, n_mfcc=n_mfcc)
    return np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)])


def logreg_mfcc(manifest: pd.DataFrame, protocol: str = "loso", labels=None) -> pd.DataFrame:
    """Per-fold WA/UA of the baseline; train on train+val (no model selection needed)."""
    labels = list(labels or sorted(manifest[LABEL].unique()))
    feats = {u: mean_mfcc(p) for u, p in tqdm(zip(manifest[UTT_ID], manifest[PATH]),
                                              total=len(manifest), desc="mfcc", leave=False)}
    label_of = dict(zip(manifest[UTT_ID], manifest[LABEL]))
    rows = []
    for fold in make_folds(manifest, protocol):
        train = fold.train + fold.val
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.5))
        model.fit(np.stack([feats[u] for u in train]), [label_of[u] for u in train])
        pred = model.predict(np.stack([feats[u] for u in fold.test]))
        truth = [label_of[u] for u in fold.test]
        rows.append({"fold": fold.number, "test_speakers": ",".join(fold.test_speakers),
                     "wa": metrics.weighted_accuracy(truth, pred, labels),
                     "ua": metrics.unweighted_accuracy(truth, pred, labels)})
    return pd.DataFrame(rows)
