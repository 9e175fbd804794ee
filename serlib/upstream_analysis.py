"""Looking inside trained upstream heads (notebook 11): which layers they weigh, and how
their pooled utterance embeddings group by emotion and by speaker."""

from __future__ import annotations

import pandas as pd
import torch

from .analysis import load_trained
from .constants import LABEL, SPEAKER, UTT_ID
from .weights import read_weights, weights_path


def layer_weights(records: list[dict]) -> pd.DataFrame:
    """The learned layer weights (softmax of the head's ``layers.logits``) of each run:
    one row per (fold, seed, hidden state); the weights of a run sum to 1."""
    rows = []
    for r in records:
        state = read_weights(weights_path(r["path"]))[0]
        weights = torch.softmax(state["layers.logits"].float(), 0).tolist()
        layers = list(r["config"]["upstream"]["layers"]) or list(range(len(weights)))
        rows += [{"fold": r["config"]["fold"], "seed": r["config"]["seed"], "layer": layer, "weight": w}
                 for layer, w in zip(layers, weights)]
    return pd.DataFrame(rows)


@torch.no_grad()
def embeddings(record: dict, projection: str = "pca", seed: int = 0) -> pd.DataFrame:
    """The pooled vectors the head of ``record`` classifies (layer-weighted, normalised
    with its training statistics) for every utterance of the corpus, projected to 2-D
    (``"pca"`` or ``"tsne"``, scikit-learn), with each utterance's label, speaker and
    split. ``df.attrs["silhouette"]``: silhouette scores of the full-dimensional
    embeddings grouped by label and by speaker (higher: tighter groups), which shows
    whether speakers cluster more than emotions do."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from sklearn.metrics import silhouette_score

    if projection not in ("pca", "tsne"):
        raise ValueError(f"projection must be 'pca' or 'tsne', got {projection!r}")
    run = load_trained(record)
    ids = [u for u in run.manifest[UTT_ID] if u in run.store]
    vectors = []
    for u in ids:
        x, lengths = run.inputs(u)
        vectors.append(run.model.embed(x, lengths)[0].float())
    z = torch.stack(vectors).numpy()
    if projection == "pca":
        xy = PCA(2, random_state=seed).fit_transform(z)
    else:
        xy = TSNE(2, perplexity=min(30.0, (len(z) - 1) / 3), random_state=seed, init="pca").fit_transform(z)
    meta = run.manifest.set_index(UTT_ID).loc[ids]
    split = {**{u: "train" for u in record["train_ids"]}, **{u: "test" for u in run.predictions.utt_id}}
    val_speakers = {str(s) for s in record.get("val_speakers") or []}
    out = pd.DataFrame({"utt_id": ids, "x": xy[:, 0], "y": xy[:, 1], "label": meta[LABEL].to_numpy(),
                        "speaker": meta[SPEAKER].astype(str).to_numpy(), "split": [split.get(u, "val" if str(s) in val_speakers else "other")
                                                 for u, s in zip(ids, meta[SPEAKER])]})
    out.attrs["silhouette"] = {by: float(silhouette_score(z, out[by])) if out[by].nunique() > 1 else float("nan")
                               for by in ("label", "speaker")}
    out.attrs["dimensions"] = int(z.shape[1])
    return out


__all__ = ["embeddings", "layer_weights"]
