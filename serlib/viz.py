"""Plotly figures for the notebooks. Each function takes data and returns a Figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from .augment import warp_frequencies
from .constants import DURATION, LABEL, SPEAKER
from .progress import in_notebook

if in_notebook():
    import plotly.io as pio

    # JupyterLab draws the plotly mimetype; the "notebook" renderer adds an HTML copy with
    # plotly.js embedded (no CDN), which nbconvert's HTML and other viewers show offline.
    pio.renderers.default = "plotly_mimetype+notebook"


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def class_balance(manifest: pd.DataFrame, by: str | None = None, title: str = "Class balance") -> go.Figure:
    """Bar chart of utterances per label, optionally split by a column (speaker, subset…).

    A boolean ``improvised`` column is shown as "improvised"/"scripted"; many groups
    (speakers) are stacked with a horizontal legend below the chart instead of a
    scrolling one."""
    frame = manifest
    if by == "improvised":
        frame = manifest.assign(dialog=manifest[by].map({True: "improvised", False: "scripted"}))
        by = "dialog"
    counts = frame.groupby([LABEL] + ([by] if by else [])).size().rename("utterances").reset_index()
    order = frame[LABEL].value_counts().index.tolist()
    many = by is not None and counts[by].nunique() > 6
    fig = px.bar(counts, x=LABEL, y="utterances", color=by, barmode="stack" if many else "group", title=title,
                 category_orders={LABEL: order})
    fig.update_layout(xaxis_title="label", yaxis_title="utterances")
    if many:
        fig.update_layout(legend={"orientation": "h", "y": -0.25, "title": by}, height=480)
    return fig


def duration_histogram(manifest: pd.DataFrame, color: str | None = LABEL) -> go.Figure:
    """Utterance durations per label as box plots (overlaid histograms of many labels do not read)."""
    fig = px.box(manifest, x=color or LABEL, y=DURATION, points="outliers",
                 title="Utterance durations by label")
    return fig.update_layout(xaxis_title="label", yaxis_title="duration (s)", height=380)


def speakers_by_label(manifest: pd.DataFrame) -> pd.DataFrame:
    return pd.crosstab(manifest[SPEAKER], manifest[LABEL], margins=True, margins_name="total")


def waveform(wave, sample_rate: int, title: str = "Waveform") -> go.Figure:
    y = _np(wave)
    t = np.arange(len(y)) / sample_rate
    step = max(1, len(y) // 20000)  # keep the figure light
    fig = go.Figure(go.Scatter(x=t[::step], y=y[::step], mode="lines", line={"width": 1}))
    return fig.update_layout(title=title, xaxis_title="time (s)", yaxis_title="amplitude", height=250)


def feature_map(feat, hop_s: float | None = None, freqs: Sequence[float] | None = None,
                title: str = "", colorscale: str = "Viridis") -> go.Figure:
    """Heatmap of a ``(F, T)`` feature map (frequency or coefficient upwards)."""
    z = _np(feat)
    x = np.arange(z.shape[-1]) * hop_s if hop_s else None
    fig = go.Figure(go.Heatmap(z=z, x=x, y=freqs, colorscale=colorscale))
    return fig.update_layout(title=title, xaxis_title="time (s)" if hop_s else "frame",
                             yaxis_title="frequency (Hz)" if freqs is not None else "bin", height=320)


def warp_function(alphas: Sequence[float] = (0.9, 0.95, 1.0, 1.05, 1.1), fmax: float = 8000.0,
                  f0_ratio: float = 0.9) -> go.Figure:
    """G(f) of eq. 1 for several α."""
    f = torch.linspace(0, fmax, 400)
    fig = go.Figure()
    for a in alphas:
        fig.add_scatter(x=f.numpy(), y=warp_frequencies(f, torch.tensor(a), fmax, f0_ratio).numpy(),
                        name=f"α = {a:.2f}")
    fig.add_vline(x=f0_ratio * fmax, line_dash="dot", annotation_text="f0")
    return fig.update_layout(title="VTLP warping function G(f) (eq. 1)", xaxis_title="f (Hz)",
                             yaxis_title="G(f) (Hz)", height=400)


def spectrogram_grid(specs: Mapping[str, object], cols: int = 4, title: str = "", fmax: float | None = None,
                     hop_s: float | None = None) -> go.Figure:
    """Several ``(F, T)`` maps side by side with a shared colour scale.

    ``fmax`` (Hz): the top of a linear frequency axis, shown in kHz; ``hop_s``: the frame
    hop, for a time axis in seconds. Without them the axes count bins and frames."""
    names = list(specs)
    rows = int(np.ceil(len(names) / cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=names, horizontal_spacing=0.05,
                        vertical_spacing=0.3 / rows if rows > 1 else 0.1)
    zs = [_np(specs[n]) for n in names]
    lo, hi = min(z.min() for z in zs), max(z.max() for z in zs)
    for i, z in enumerate(zs):
        y = np.linspace(0, fmax / 1000, z.shape[0]) if fmax else None
        x = np.arange(z.shape[-1]) * hop_s if hop_s else None
        fig.add_trace(go.Heatmap(z=z, x=x, y=y, zmin=lo, zmax=hi, colorscale="Viridis", showscale=i == 0,
                                 colorbar={"title": "level"}), row=i // cols + 1, col=i % cols + 1)
    fig.update_xaxes(title_text="time (s)" if hop_s else "frame", row=rows)
    fig.update_yaxes(title_text="frequency (kHz)" if fmax else "bin", col=1)
    return fig.update_layout(title=title, height=140 + 280 * rows, margin={"t": 90})


def confusion_matrix(matrix, labels: Sequence[str], normalize: bool = True, title: str = "Confusion") -> go.Figure:
    """Rows = truth, columns = prediction; cells show recall (row-normalised) and counts."""
    m = _np(matrix).astype(float)
    z = m / np.maximum(m.sum(axis=1, keepdims=True), 1) if normalize else m
    text = [[f"{z[i, j]:.2f}<br>({int(m[i, j])})" for j in range(len(labels))] for i in range(len(labels))]
    fig = go.Figure(go.Heatmap(z=z, x=list(labels), y=list(labels), text=text, texttemplate="%{text}",
                               colorscale="Blues", zmin=0, zmax=1 if normalize else None))
    return fig.update_layout(title=title, xaxis_title="prediction", yaxis_title="truth",
                             yaxis_autorange="reversed", height=420, width=480)


def learning_curves(history: Sequence[Mapping]) -> go.Figure:
    """Training loss and validation WA/UA per epoch."""
    h = pd.DataFrame(history)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_scatter(x=h.epoch, y=h.train_loss, name="train loss", secondary_y=False)
    if "val_loss" in h:
        fig.add_scatter(x=h.epoch, y=h.val_loss, name="val loss", secondary_y=False)
    for col in ("val_wa", "val_ua"):
        if col in h:
            fig.add_scatter(x=h.epoch, y=h[col], name=col.replace("_", " ").upper(), secondary_y=True,
                            line={"dash": "dot"})
    fig.update_yaxes(title_text="loss", secondary_y=False)
    fig.update_yaxes(title_text="validation accuracy", secondary_y=True, range=[0, 1], tickmode="linear", tick0=0,
                     dtick=0.2, showgrid=False)
    return fig.update_layout(title="Learning curves: training loss and validation WA/UA", xaxis_title="epoch",
                             height=380)


def gradient_norms(records: Sequence[Mapping]) -> go.Figure:
    """Per-layer gradient L2 norms over training steps (log scale), as in Fig. 3 of
    Etienne et al. 2018."""
    df = pd.DataFrame(records)
    long = df.melt(id_vars=["step"], var_name="layer", value_name="grad_norm")
    fig = px.line(long, x="step", y="grad_norm", color="layer", log_y=True,
                  title="Per-layer gradient norms")
    return fig.update_layout(height=400)


def vtlp_explorer(spec, f0_ratio: float = 0.9, low: float = 0.8, high: float = 1.2, fmax: float | None = None,
                  hop_s: float | None = None):
    """An ipywidgets slider on α that redraws the warped spectrogram live (JupyterLab).

    Returns the widget. Nothing is drawn into its output area until the slider moves: a
    notebook shows the initial state as an ordinary (static) figure next to it, which a
    saved or converted notebook keeps, and a headless run (papermill, nbval) never has to
    capture widget output. Redraws clear the area only when the new figure is ready
    (``wait=True``), so it does not collapse while the slider moves.
    """
    import ipywidgets as widgets
    from IPython.display import display

    from .augment import vtlp_warp

    slider = widgets.FloatSlider(value=1.0, min=low, max=high, step=0.01, description="α",
                                 continuous_update=False)
    out = widgets.Output(layout={"min_height": "300px"})

    def redraw(change=None):
        warped = vtlp_warp(torch.as_tensor(spec), slider.value, f0_ratio)
        figure = spectrogram_grid({"original": spec, f"α = {slider.value:.2f}": warped}, cols=2,
                                  title=f"VTLP warp, α = {slider.value:.2f}", fmax=fmax, hop_s=hop_s)
        with out:
            out.clear_output(wait=True)
            display(figure)

    slider.observe(redraw, names="value")
    return widgets.VBox([slider, out])


def attention_grid(examples, title: str = "Attention over the input") -> go.Figure:
    """One panel per example: the (static) input map in grey with the attention weights
    overlaid in red, upsampled (nearest) from the encoder's grid to the input's."""
    cols = 2
    rows = int(np.ceil(len(examples) / cols))
    fig = make_subplots(rows=rows, cols=cols, horizontal_spacing=0.04, vertical_spacing=0.1,
                        subplot_titles=[f"{e['truth']} → {e['prediction']} ({e['utt_id']})" for e in examples])
    for i, e in enumerate(examples):
        feat = _np(e["features"])
        feat = feat[0] if feat.ndim == 3 else feat  # static channel of (3, F, T)
        alpha = torch.as_tensor(e["attention"]).float()
        alpha = alpha.reshape(-1, alpha.shape[-1])[None, None]  # (1, 1, F' or 1, T')
        up = torch.nn.functional.interpolate(alpha, size=feat.shape, mode="nearest")[0, 0].numpy()
        r, c = i // cols + 1, i % cols + 1
        fig.add_trace(go.Heatmap(z=feat, colorscale="Greys", showscale=False), row=r, col=c)
        fig.add_trace(go.Heatmap(z=up, colorscale="Reds", opacity=0.55, showscale=i == 0, zmin=0,
                                 colorbar={"title": "attention"}), row=r, col=c)
    fig.update_xaxes(title_text="frame", row=rows)
    fig.update_yaxes(title_text="feature bin", col=1)
    return fig.update_layout(title=title, height=140 + 280 * rows)


def text_attention(example: Mapping) -> go.Figure:
    """MSCNN-SPU-ATT's attention over the words of one utterance, one row per γ."""
    gammas = list(example["weights"])
    z = np.array([example["weights"][g] for g in gammas])
    fig = go.Figure(go.Heatmap(z=z, x=[f"{i}:{t}" for i, t in enumerate(example["tokens"])], y=gammas,
                               colorscale="Reds", zmin=0))
    return fig.update_layout(title=f"{example['utt_id']}: {example['truth']} → {example['prediction']}",
                             height=220, xaxis_tickangle=-45)


def paired_folds(per_fold: Mapping[str, pd.Series], metric: str = "UA") -> go.Figure:
    """One line per fold across the models (``{model: per-fold scores}``): a model that
    wins on most folds shows as lines that mostly rise towards it."""
    table = pd.DataFrame(per_fold)
    fig = go.Figure()
    for fold, row in table.iterrows():
        fig.add_trace(go.Scatter(x=list(table.columns), y=row.to_numpy(), mode="lines+markers", name=f"fold {fold}",
                                 line={"width": 1}, opacity=0.7))
    fig.add_trace(go.Scatter(x=list(table.columns), y=table.mean().to_numpy(), mode="lines+markers",
                             name="mean", line={"width": 4, "color": "black"}))
    return fig.update_layout(title=f"Per-fold {metric}, paired across models", xaxis_title="model",
                             yaxis_title=f"test {metric}", yaxis_range=[0, 1], height=420)


def forest(intervals: Sequence[Mapping], metric: str = "ua") -> go.Figure:
    """Pooled score of each result set with its speaker-bootstrap 95 % interval
    (:func:`serlib.stats.ci` rows)."""
    df = pd.DataFrame(intervals)
    fig = go.Figure(go.Scatter(
        x=df[f"{metric}_pooled"], y=df["set"], mode="markers",
        error_x={"type": "data", "symmetric": False, "array": df[f"{metric}_high"] - df[f"{metric}_pooled"],
                 "arrayminus": df[f"{metric}_pooled"] - df[f"{metric}_low"]}))
    return fig.update_layout(title=f"Pooled {metric.upper()} with 95 % speaker-bootstrap intervals",
                             xaxis_title=f"pooled test {metric.upper()}", xaxis_range=[0, 1],
                             height=140 + 40 * len(df), yaxis={"automargin": True})


def p_value_matrix(matrix: pd.DataFrame, title: str = "Holm-corrected p-values (fold-paired sign-flip test)") -> go.Figure:
    fig = go.Figure(go.Heatmap(z=matrix.to_numpy(), x=list(matrix.columns), y=list(matrix.index), zmin=0, zmax=1,
                               colorscale="RdBu", text=matrix.round(3).to_numpy(), texttemplate="%{text}",
                               colorbar={"title": "p"}))
    return fig.update_layout(title=title, height=200 + 50 * len(matrix), xaxis={"automargin": True},
                             yaxis={"automargin": True})


def class_probabilities(row: Mapping, classes: Sequence[str], title: str = "") -> go.Figure:
    """One file's class probabilities (a row of :attr:`serlib.bundle.Prediction.files`)."""
    values = [float(row[f"p_{c}"]) for c in classes]
    colors = ["crimson" if c == row["prediction"] else "steelblue" for c in classes]
    fig = go.Figure(go.Bar(x=list(classes), y=values, marker_color=colors))
    return fig.update_layout(title=title or f"prediction: {row['prediction']}", yaxis_range=[0, 1],
                             yaxis_title="probability", height=320)


def probability_timeline(windows: pd.DataFrame, classes: Sequence[str], title: str = "") -> go.Figure:
    """Class probabilities of each window over time (window centres, seconds)."""
    centre = (windows["start"] + windows["end"]) / 2
    fig = go.Figure([go.Scatter(x=centre, y=windows[f"p_{c}"], mode="lines+markers", name=c) for c in classes])
    return fig.update_layout(title=title or "Class probabilities over time", xaxis_title="time (s)",
                             yaxis_title="probability", yaxis_range=[0, 1], height=340)


def attention_over_audio(entry: Mapping, title: str = "", n_fft: int = 512) -> go.Figure:
    """The log spectrogram of a recording with the model's attention over time drawn on
    top (one line per window, each scaled to its maximum; :meth:`serlib.bundle.Bundle.predict`
    with ``attention=True`` gives ``entry``)."""
    import torchaudio

    wave, sr = torch.as_tensor(entry["wave"]), entry["sample_rate"]
    hop = n_fft // 4
    spec = torchaudio.transforms.Spectrogram(n_fft=n_fft, hop_length=hop)(wave)
    db = 10 * torch.log10(spec.clamp_min(1e-10))
    times = np.arange(db.shape[-1]) * hop / sr
    freqs = np.linspace(0, sr / 2000, db.shape[0])
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Heatmap(z=db.numpy(), x=times, y=freqs, colorscale="Greys", showscale=False,
                             zmin=float(db.max()) - 80), secondary_y=False)
    for i, (start, end, alpha) in enumerate(entry["windows"]):
        a = np.asarray(alpha, dtype=float)
        t = start + (np.arange(len(a)) + 0.5) * (end - start) / max(len(a), 1)
        fig.add_trace(go.Scatter(x=t, y=a / max(a.max(), 1e-12), mode="lines", line={"color": "crimson", "width": 2},
                                 name="attention", showlegend=i == 0, opacity=0.8), secondary_y=True)
    fig.update_yaxes(title_text="frequency (kHz)", secondary_y=False)
    fig.update_yaxes(title_text="attention (scaled)", range=[0, 1.05], secondary_y=True)
    return fig.update_layout(title=title or "Attention over the recording", xaxis_title="time (s)", height=380)


def transfer_matrix(matrix: pd.DataFrame, metric: str = "UA") -> go.Figure:
    """Train corpus (rows) × test corpus (columns); the diagonal is within-corpus LOSO."""
    fig = go.Figure(go.Heatmap(z=matrix.to_numpy(dtype=float), x=list(matrix.columns), y=list(matrix.index),
                               zmin=0, zmax=1, colorscale="Viridis", text=matrix.round(3).to_numpy(),
                               texttemplate="%{text}", colorbar={"title": metric}))
    return fig.update_layout(title=f"Cross-corpus {metric} (rows: trained on, columns: tested on)",
                             xaxis_title="test corpus", yaxis_title="training corpus", height=200 + 60 * len(matrix),
                             yaxis={"automargin": True, "autorange": "reversed"})
