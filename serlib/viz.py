"""Plotly figures for the notebooks. Each function takes data and returns a Figure."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from . import protocols
from .augment import warp_frequencies
from .constants import DURATION, LABEL, SPEAKER
from .progress import in_notebook

#: Largest heatmap a figure carries (rows, columns): bigger maps are averaged down to it,
#: so that a notebook with a dozen spectrograms stays a few MB when saved.
MAX_MAP = (160, 400)


def notebook_renderer() -> str:
    """The plotly renderer of this kernel: one copy of each figure where a person works.

    In a notebook that a Jupyter server opened (JupyterLab, Notebook 7: the server sets
    ``JPY_SESSION_NAME`` in the kernel's environment), the plotly mimetype alone: JupyterLab
    draws it with its own plotly.js, also in an untrusted notebook, and a saved working copy
    keeps the figure's JSON (and the PNG preview JupyterLab adds), not an HTML copy and
    plotly.js besides. A headless run (papermill, nbval, nbconvert) or a Voilà page writes a
    report that is read anywhere: the mimetype for JupyterLab plus an HTML copy without the
    library (``"notebook"``), which nbconvert's HTML draws with the one copy of plotly.js
    that :func:`setup_notebook` embeds."""
    return "plotly_mimetype" if os.environ.get("JPY_SESSION_NAME") else "plotly_mimetype+notebook"


def setup_notebook() -> None:
    """Choose the renderer (:func:`notebook_renderer`); for a report, embed plotly.js (about
    4.7 MB) once, in the output of the cell that calls this.

    Call it in a notebook's first code cell: re-running that cell embeds it again, so a
    saved report always holds exactly one copy (plotly itself would embed it only at the
    first figure of the kernel's life, which a re-run figure cell then loses)."""
    import plotly.io as pio

    pio.renderers.default = notebook_renderer()
    pio.renderers._activate_pending_renderers()  # displays plotly.js now, not at the first figure


if in_notebook():
    import plotly.io as pio

    pio.renderers.default = notebook_renderer()


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _shrink(z: np.ndarray, max_shape: tuple[int, int] = MAX_MAP) -> tuple[np.ndarray, int, int]:
    """``z`` (F, T) averaged over blocks of rows/columns down to at most ``max_shape``, as
    float32 (a figure stores every value twice: plotly JSON and HTML); returns the map and
    the row and column steps."""
    z = np.asarray(z, dtype=np.float32)
    fs, ts = max(1, -(-z.shape[0] // max_shape[0])), max(1, -(-z.shape[1] // max_shape[1]))
    if fs > 1 or ts > 1:
        f, t = z.shape[0] // fs * fs, z.shape[1] // ts * ts
        z = z[:f, :t].reshape(f // fs, fs, t // ts, ts).mean(axis=(1, 3))
    return np.round(z, 2), fs, ts


#: The columns a reader needs first, in this order (those a table has): what was run (``run``:
#: experiment/name, corpus and, for a transfer, its direction, protocol), WA, UA, pooled UA
#: with its interval, the difference from the baseline and its Holm-corrected p-value; the
#: flags and the code version after them.
HEADLINE = ["run", "model", "variant", "set", "fold", "n_folds", "wa", "ua", "wa_mean", "ua_mean", "ua_std",
            "ua_pooled", "ua_pooled_low", "ua_pooled_high", "ua_low", "ua_high", "ua_vs_baseline",
            "p_holm_vs_baseline", "a", "b", "ua_diff_mean", "p_perm_ua", "p_perm_ua_holm", "ua_diff_pooled",
            "ua_diff_low", "ua_diff_high", "mcnemar_p", "ua_seed_std", "leaky", "uses_test_speaker_audio",
            "code_version", "code_versions", "experiment", "name", "corpus", "protocol"]
#: The per-fold table's columns, in this order: the run, the fold and seed, its scores, the
#: flags, then the test speakers (a cross-corpus fold lists a whole corpus).
PER_FOLD = ["run", "fold", "seed", "wa", "ua", "macro_f1", "val_ua", "n_classes", "leaky", "uses_test_speaker_audio",
            "fingerprint", "code_version", "test_speakers", "experiment", "name", "corpus", "protocol"]
#: The papers table's columns, in this order: whose number, on what, the number, then how it
#: was measured (long text, last).
BESIDE_PAPERS = ["source", "paper", "experiment", "corpus", "n_classes", "wa", "ua", "variant", "label", "note"]
#: What a result over one fold cannot have: a spread, a speaker interval, a paired test.
ONE_FOLD_BLANK = ("ua_std", "ua_seed_std", "ua_pooled_low", "ua_pooled_high", "ua_low", "ua_high",
                  "ua_vs_baseline", "p_holm_vs_baseline", "p_raw_vs_baseline")


def run_names(table: pd.DataFrame) -> pd.Series:
    """``experiment/name · corpus · protocol`` per row; a transfer is ``experiment/name ·
    corpus → test corpus`` (the arrow says what ``cross:…`` would): rows that differ in
    corpus or direction never read alike. The test corpus is the row's ``test_corpus``, or,
    where a table has none (or the cell is empty), the one its ``cross:`` protocol names."""
    tested = table["test_corpus"] if "test_corpus" in table else pd.Series(None, index=table.index, dtype=object)
    names = []
    for e, n, c, t, p in zip(table["experiment"], table["name"], table["corpus"], tested, table["protocol"]):
        cross = protocols.is_cross(str(p))
        if not (isinstance(t, str) and t):
            t = protocols.test_corpus(str(p)) if cross else c
        names.append(f"{e}/{n} · {c} → {t}" if cross or t != c else f"{e}/{n} · {c} · {p}")
    return pd.Series(names, index=table.index)


def headline(table: pd.DataFrame, columns: Sequence[str] = HEADLINE, digits: int = 3) -> pd.DataFrame:
    """``table`` with the columns of ``columns`` it has, in that order, rounded; the others
    are left out (``table`` keeps them). A handful of columns, so pandas never hides one
    behind "…" however wide the table is. With experiment, name, corpus and protocol they
    become one ``run`` column (:func:`run_names`). A row over one fold shows no spread,
    interval or test (blank), and an empty cell is blank, not "NaN"."""
    table = table.copy()
    parts = {"experiment", "name", "corpus", "protocol"}
    if "run" in columns and parts <= set(table.columns):
        table["run"] = run_names(table)
        columns = [c for c in columns if c not in parts]
    keep = [c for c in columns if c in table.columns]
    out = table[keep].round(digits)
    if "n_folds" in out:
        one = out["n_folds"] == 1
        out.loc[one, [c for c in ONE_FOLD_BLANK if c in out]] = np.nan
    return out.astype(object).where(out.notna(), "")


def beside_papers(comparison: pd.DataFrame, columns: Sequence[str] = BESIDE_PAPERS):
    """The papers table (:func:`serlib.results.compare_with_papers`) as one line per row:
    the numbers first, the long labels and notes after them, no wrapping (a wrapped label
    made each row five lines high); a Styler, shown as HTML."""
    keep = [c for c in columns if c in comparison.columns]
    return (comparison[keep].style.hide(axis="index").format(precision=1, na_rep="")
            .set_properties(**{"white-space": "nowrap", "text-align": "left"}))


def feature_unit(config) -> str:
    """What a front end's values are (a colour bar's title), from its ``log`` and ``power``."""
    what = "power" if getattr(config, "power", 2.0) == 2.0 else "magnitude"
    return {"db": f"{what} (dB)", "log": f"ln({what} + {config.eps:g})"}.get(config.log, what)


def show_all(table: pd.DataFrame, digits: int = 3) -> None:
    """Display every row and column of ``table`` (pandas elides both by default)."""
    from IPython.display import display

    with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", None):
        display(table.round(digits))


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
    order = label_order(manifest)
    many = by is not None and counts[by].nunique() > 6
    fig = px.bar(counts, x=LABEL, y="utterances", color=by, barmode="stack" if many else "group", title=title,
                 category_orders={LABEL: order})
    fig.update_layout(xaxis_title="label", yaxis_title="utterances")
    if many:
        fig.update_layout(legend={"orientation": "h", "y": -0.25, "title": by}, height=480)
    return fig


def label_order(manifest: pd.DataFrame) -> list[str]:
    """Labels from the most to the least frequent: the order of every per-label figure."""
    return manifest[LABEL].value_counts().index.tolist()


def duration_histogram(manifest: pd.DataFrame, color: str | None = LABEL) -> go.Figure:
    """Utterance durations per label as box plots (overlaid histograms of many labels do not
    read), labels in :func:`label_order` like the class-balance bars."""
    fig = px.box(manifest, x=color or LABEL, y=DURATION, points="outliers",
                 title="Utterance durations by label (box: quartiles, whiskers: 1.5 IQR, dots: outliers)",
                 category_orders={color or LABEL: label_order(manifest)})
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
    z, fs, ts = _shrink(_np(feat))
    x = np.arange(z.shape[-1]) * ts * hop_s if hop_s else np.arange(z.shape[-1]) * ts
    y = np.asarray(freqs)[::fs][:z.shape[0]] if freqs is not None else np.arange(z.shape[0]) * fs
    fig = go.Figure(go.Heatmap(z=z, x=x, y=y, colorscale=colorscale))
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


def spectrogram_grid(specs: Mapping[str, object], cols: int = 3, title: str = "", fmax: float | None = None,
                     hop_s: float | None = None, unit: str = "log power (dB)") -> go.Figure:
    """Several ``(F, T)`` maps with a shared colour scale, at most ``cols`` (3) per row so
    that each panel is wide enough to see a warp (11 maps: 4 rows).

    ``fmax`` (Hz): the top of a linear frequency axis, shown in kHz; ``hop_s``: the frame
    hop, for a time axis in seconds. Without them the axes count bins and frames.
    ``unit``: what the colours are (the front end's log power in dB by default)."""
    names = list(specs)
    cols = max(1, min(cols, len(names)))
    rows = int(np.ceil(len(names) / cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=names, horizontal_spacing=0.06,
                        vertical_spacing=min(0.12, 0.3 / rows))
    zs = [_np(specs[n]) for n in names]
    lo, hi = float(min(z.min() for z in zs)), float(max(z.max() for z in zs))
    for i, full in enumerate(zs):
        z, fs, ts = _shrink(full)
        y = np.linspace(0, fmax / 1000, full.shape[0])[::fs][:z.shape[0]] if fmax else np.arange(z.shape[0]) * fs
        x = (np.arange(z.shape[-1]) * ts * hop_s) if hop_s else np.arange(z.shape[-1]) * ts
        fig.add_trace(go.Heatmap(z=z, x=x, y=y, zmin=lo, zmax=hi, colorscale="Viridis", showscale=i == 0,
                                 colorbar={"title": unit, "len": min(1.0, 0.5 + 0.5 / rows)}),
                      row=i // cols + 1, col=i % cols + 1)
    fig.update_xaxes(title_text="time (s)" if hop_s else "frame", row=rows)
    fig.update_yaxes(title_text="frequency (kHz)" if fmax else "bin", col=1)
    return fig.update_layout(title=title, height=160 + 300 * rows, margin={"t": 100})


def confusion_matrix(matrix, labels: Sequence[str], normalize: bool = True, title: str = "Confusion") -> go.Figure:
    """Rows = truth, columns = prediction; cells show recall (row-normalised) and counts."""
    m = _np(matrix).astype(float)
    z = m / np.maximum(m.sum(axis=1, keepdims=True), 1) if normalize else m
    text = [[f"{z[i, j]:.2f}<br>({int(m[i, j])})" if normalize else str(int(m[i, j])) for j in range(len(labels))]
            for i in range(len(labels))]
    fig = go.Figure(go.Heatmap(z=z, x=list(labels), y=list(labels), text=text, texttemplate="%{text}",
                               colorscale="Blues", zmin=0, zmax=1 if normalize else None,
                               colorbar={"title": "share of the true class" if normalize else "utterances"}))
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
                  title="Per-layer gradient L2 norm per training step (log scale)")
    fig.update_yaxes(title_text="gradient L2 norm", dtick=1, exponentformat="power", showexponent="all")
    return fig.update_layout(xaxis_title="training step", height=400)


def gradient_notes(records: Sequence[Mapping]) -> str:
    """Which layer had the largest median gradient norm, conv layers against the LSTM (the
    comparison of Fig. 3 of Etienne et al. 2018, where the conv layers' were larger)."""
    df = pd.DataFrame(records).drop(columns="step")
    median = df.median().sort_values(ascending=False)
    conv = median[[c for c in median.index if c.startswith("conv")]]
    lstm = median[[c for c in median.index if "lstm" in c]]
    text = f"largest median gradient norm: {median.index[0]} ({median.iloc[0]:.3g})"
    if len(conv) and len(lstm):
        bigger = "conv layers" if conv.max() > lstm.max() else "LSTM"
        text += (f"; conv layers' largest median {conv.max():.3g}, LSTM's {lstm.max():.3g}: here the {bigger} "
                 + ("had larger gradients, as in the paper's Fig. 3" if bigger == "conv layers"
                    else "had larger gradients, the opposite of the paper's Fig. 3"))
    return text


def curve_notes(history: Sequence[Mapping], best_epoch: int) -> str:
    """What the learning curves show: where validation loss was lowest, whether it rose
    after that, and whether the selected (best validation UA) epoch is the last one."""
    h = pd.DataFrame(history)
    notes = []
    if "val_loss" in h and len(h) > 1:
        low = int(h.epoch[h.val_loss.idxmin()])
        notes.append(f"validation loss is lowest at epoch {low}" +
                     (f" and rises after it (to {h.val_loss.iloc[-1]:.3f} at epoch {int(h.epoch.iloc[-1])})"
                      if low < int(h.epoch.iloc[-1]) else ", the last epoch"))
    last = int(h.epoch.iloc[-1])
    notes.append(f"the selected epoch ({best_epoch}, best validation UA) is "
                 + ("the last one: more epochs may still help" if best_epoch == last else f"{last - best_epoch} before the last"))
    return "; ".join(notes)


def vtlp_explorer(spec, f0_ratio: float = 0.9, low: float = 0.9, high: float = 1.1, fmax: float | None = None,
                  hop_s: float | None = None, unit: str = "log power (dB)"):
    """An ipywidgets slider on α that redraws the warped spectrogram live (JupyterLab).
    The slider spans the training range of α (0.9–1.1) by default; ``unit`` titles the
    colour bar as the static figures do (:func:`feature_unit`).

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
                                  title=f"VTLP warp, α = {slider.value:.2f}", fmax=fmax, hop_s=hop_s, unit=unit)
        with out:
            out.clear_output(wait=True)
            display(figure)

    slider.observe(redraw, names="value")
    return widgets.VBox([slider, out])


def attention_grid(examples, hop_s: float, title: str = "Attention over the input") -> go.Figure:
    """One panel per example (title: truth → prediction), time in seconds (``hop_s``: the
    input's frame hop).

    A 1-D input (one value per frame, e.g. the frequency-averaged log-mel series of
    "Emotion in Motion") is drawn as a grey line (left axis, dB) with the attention weight
    of each encoder position as a red step line (right axis, the weights sum to 1 over the
    utterance). A 2-D input is a grey map (frequency bins upwards) with the attention in
    red on top, each panel's attention divided by its own maximum (the colour bar says so)."""
    cols = 2
    rows = int(np.ceil(len(examples) / cols))
    one_d = all(_np(e["features"]).squeeze().ndim == 1 for e in examples)
    fig = make_subplots(rows=rows, cols=cols, horizontal_spacing=0.12 if one_d else 0.05, vertical_spacing=0.12,
                        subplot_titles=[f"{e['truth']} → {e['prediction']} ({'right' if e['correct'] else 'wrong'})"
                                        for e in examples],
                        specs=[[{"secondary_y": one_d}] * cols for _ in range(rows)])
    for i, e in enumerate(examples):
        feat = _np(e["features"])
        r, c = i // cols + 1, i % cols + 1
        alpha = _np(e["attention"]).astype(float)
        if one_d:
            series = feat.reshape(-1)
            t = np.arange(len(series)) * hop_s
            a = alpha.reshape(-1)
            edges = np.linspace(0, t[-1] + hop_s, len(a) + 1)  # encoder positions spread over the input
            fig.add_trace(go.Scatter(x=t, y=series, mode="lines", line={"color": "grey", "width": 1},
                                     name="input (mean log-mel, dB)", showlegend=i == 0, legendgroup="input"),
                          row=r, col=c, secondary_y=False)
            fig.add_trace(go.Scatter(x=np.repeat(edges, 2)[1:-1], y=np.repeat(a, 2), mode="lines",
                                     line={"color": "crimson", "width": 2}, name="attention weight",
                                     showlegend=i == 0, legendgroup="attention"), row=r, col=c, secondary_y=True)
        else:
            feat = feat[0] if feat.ndim == 3 else feat  # static channel of (3, F, T)
            grid = torch.as_tensor(alpha).float()
            grid = grid.reshape(-1, grid.shape[-1])[None, None]  # (1, 1, F' or 1, T')
            up = torch.nn.functional.interpolate(grid, size=feat.shape, mode="nearest")[0, 0].numpy()
            up = up / max(float(up.max()), 1e-12)
            z, fs, ts = _shrink(feat)
            upz, _, _ = _shrink(up)
            x = np.arange(z.shape[1]) * ts * hop_s
            y = np.arange(z.shape[0]) * fs
            fig.add_trace(go.Heatmap(z=z, x=x, y=y, colorscale="Greys", showscale=False), row=r, col=c)
            fig.add_trace(go.Heatmap(z=upz, x=x, y=y, colorscale="Reds", opacity=0.55, showscale=i == 0, zmin=0,
                                     zmax=1, colorbar={"title": "attention /<br>its maximum"}), row=r, col=c)
    fig.update_xaxes(title_text="time (s)", row=rows)
    if one_d:
        fig.update_yaxes(title_text="input (dB)", secondary_y=False, col=1)
        fig.update_yaxes(title_text="attention", secondary_y=True, col=cols, rangemode="tozero")
        fig.update_layout(legend={"orientation": "h", "y": -0.12})
    else:
        fig.update_yaxes(title_text="frequency bin", col=1)
    return fig.update_layout(title=title, height=160 + 280 * rows)


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
    """Pooled score of each result set with its 95 % speaker t-interval
    (:func:`serlib.stats.ci` rows)."""
    df = pd.DataFrame(intervals)
    fig = go.Figure(go.Scatter(
        x=df[f"{metric}_pooled"], y=df["model" if "model" in df else "set"], mode="markers",
        error_x={"type": "data", "symmetric": False, "array": df[f"{metric}_high"] - df[f"{metric}_pooled"],
                 "arrayminus": df[f"{metric}_pooled"] - df[f"{metric}_low"]}))
    return fig.update_layout(title=f"Pooled {metric.upper()} with 95 % speaker t-intervals (chance: 1 / classes)",
                             xaxis_title=f"pooled test {metric.upper()}", xaxis_range=[0, 1],
                             height=140 + 40 * len(df), yaxis={"automargin": True})


def p_value_matrix(matrix: pd.DataFrame, smallest_p: float | None = None,
                   title: str = "Holm-corrected p-values, fold-paired sign-flip test on UA") -> go.Figure:
    """Pairwise p-values (:func:`serlib.stats.pairwise`); the diagonal (a model against
    itself) is left blank. ``smallest_p``: the smallest p the test can give with this many
    folds, shown in the title (below it no difference can be significant)."""
    z = matrix.to_numpy(dtype=float).copy()
    np.fill_diagonal(z, np.nan)
    text = [["" if i == j else f"{z[i, j]:.3f}" for j in range(z.shape[1])] for i in range(z.shape[0])]
    if smallest_p is not None:
        title += f"<br><sup>smallest attainable p with these folds: {smallest_p:.4g} (before Holm's correction)</sup>"
    fig = go.Figure(go.Heatmap(z=z, x=list(matrix.columns), y=list(matrix.index), zmin=0, zmax=1,
                               colorscale="RdBu", text=text, texttemplate="%{text}", colorbar={"title": "p"}))
    return fig.update_layout(title=title, height=260 + 60 * len(matrix), xaxis={"automargin": True, "title": "model"},
                             yaxis={"automargin": True, "title": "model", "autorange": "reversed"})


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
    z, fs, ts = _shrink(db.numpy())
    times = np.arange(z.shape[-1]) * ts * hop / sr
    freqs = np.linspace(0, sr / 2000, db.shape[0])[::fs][:z.shape[0]]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Heatmap(z=z, x=times, y=freqs, colorscale="Greys", showscale=False,
                             zmin=float(db.max()) - 80), secondary_y=False)
    # windows overlap: each instant gets the mean of the (per-window maximum-scaled) weights
    # of the windows that cover it, one line instead of one per window
    grid = np.linspace(0, len(wave) / sr, 400)
    total, count = np.zeros_like(grid), np.zeros_like(grid)
    for start, end, alpha in entry["windows"]:
        a = np.asarray(alpha, dtype=float)
        a = a / max(a.max(), 1e-12)
        inside = (grid >= start) & (grid < end)
        pos = np.minimum(((grid[inside] - start) / max(end - start, 1e-9) * len(a)).astype(int), len(a) - 1)
        total[inside] += a[pos]
        count[inside] += 1
    covered = count > 0
    fig.add_trace(go.Scatter(x=grid[covered], y=total[covered] / count[covered], mode="lines",
                             line={"color": "crimson", "width": 2}, name=f"attention ({len(entry['windows'])} windows)"),
                  secondary_y=True)
    fig.update_yaxes(title_text="frequency (kHz)", secondary_y=False)
    fig.update_yaxes(title_text="attention / window maximum", range=[0, 1.05], tickvals=[0, 0.25, 0.5, 0.75, 1],
                     secondary_y=True)
    return fig.update_layout(title=title or "Attention over the recording (grey: spectrogram, dB)",
                             xaxis_title="time (s)", height=380, legend={"orientation": "h", "y": -0.2})


def transfer_matrix(matrix: pd.DataFrame, metric: str = "UA") -> go.Figure:
    """Train corpus (rows) × test corpus (columns); the diagonal is within-corpus LOSO."""
    fig = go.Figure(go.Heatmap(z=matrix.to_numpy(dtype=float), x=list(matrix.columns), y=list(matrix.index),
                               zmin=0, zmax=1, colorscale="Viridis", text=matrix.round(3).to_numpy(),
                               texttemplate="%{text}", colorbar={"title": metric}))
    return fig.update_layout(title=f"Cross-corpus {metric} (rows: trained on, columns: tested on)",
                             xaxis_title="test corpus", yaxis_title="training corpus", height=200 + 60 * len(matrix),
                             yaxis={"automargin": True, "autorange": "reversed"})


def reliability_diagram(tables: Mapping[str, pd.DataFrame], title: str = "Reliability") -> go.Figure:
    """Accuracy against mean confidence per confidence bin (:func:`serlib.explore.reliability`),
    one line per table (e.g. before and after temperature scaling); marker size follows the
    bin's utterance count; the diagonal is perfect calibration."""
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "grey"},
                               name="perfect calibration"))
    for name, t in tables.items():
        size = 6 + 24 * np.sqrt(t["n"] / max(t["n"].max(), 1))
        fig.add_trace(go.Scatter(x=t["confidence"], y=t["accuracy"], mode="lines+markers", name=name,
                                 marker={"size": size}, customdata=t[["n", "low", "high"]].to_numpy(),
                                 hovertemplate="confidence %{customdata[1]:.2f}–%{customdata[2]:.2f}: "
                                               "%{customdata[0]} utterances, accuracy %{y:.2f}<extra></extra>"))
    return fig.update_layout(title=title, xaxis_title="confidence (largest class probability)",
                             yaxis_title="accuracy (share right)", xaxis_range=[0, 1], yaxis_range=[0, 1.02],
                             height=420, width=520)


def predicted_vs_true(predictions: pd.DataFrame, dims: Sequence[str], title: str = "") -> go.Figure:
    """Predicted against true value per dimension (one panel each, one colour per
    experiment), with the identity line: points on it are perfect agreement (CCC 1)."""
    fig = make_subplots(rows=1, cols=len(dims), subplot_titles=list(dims))
    colours = px.colors.qualitative.Plotly
    for j, d in enumerate(dims, start=1):
        lo = float(min(predictions[f"true_{d}"].min(), predictions[f"pred_{d}"].min()))
        hi = float(max(predictions[f"true_{d}"].max(), predictions[f"pred_{d}"].max()))
        for k, (name, g) in enumerate(predictions.groupby("experiment")):
            fig.add_trace(go.Scattergl(x=g[f"true_{d}"], y=g[f"pred_{d}"], mode="markers", name=name,
                                       legendgroup=name, showlegend=j == 1, opacity=0.5,
                                       marker={"size": 4, "color": colours[k % len(colours)]}), row=1, col=j)
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line={"dash": "dash", "color": "grey"},
                                 name="identity", showlegend=j == 1), row=1, col=j)
        fig.update_xaxes(title_text="true", row=1, col=j)
        fig.update_yaxes(title_text="predicted", row=1, col=j)
    fig.update_layout(title=title or "Predicted against true (test splits)", height=380)
    return fig


def ccc_by_speaker(per_speaker: pd.DataFrame, title: str = "") -> go.Figure:
    """CCC per test speaker and dimension (:func:`serlib.dimensional.per_speaker`)."""
    return px.bar(per_speaker, x="speaker", y="ccc", color="experiment", barmode="group", facet_row="dimension",
                  title=title or "CCC per test speaker", height=220 * per_speaker.dimension.nunique())


def arousal_valence_plane(manifest: pd.DataFrame, title: str = "") -> go.Figure:
    """Where the categories fall in the arousal-valence plane (each utterance's ratings,
    the corpus's scale; the category means as large markers)."""
    fig = px.scatter(manifest, x="valence", y="arousal", color=LABEL, opacity=0.35,
                     category_orders={LABEL: label_order(manifest)},
                     title=title or "Categories in the arousal-valence plane")
    means = manifest.groupby(LABEL)[["valence", "arousal"]].mean().reset_index()
    fig.add_trace(go.Scatter(x=means.valence, y=means.arousal, mode="markers+text", text=means[LABEL],
                             textposition="top center", marker={"size": 14, "symbol": "x", "color": "black"},
                             name="category mean"))
    return fig
