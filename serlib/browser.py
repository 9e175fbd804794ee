"""The error browser's views (notebooks/13_error_browser.ipynb, ``make explore``): what
:mod:`serlib.explore` computes, displayed; ipywidgets when a person is looking, the same
views with their default choices when run headless (papermill, nbval, the HTML export).

Each ``show_*`` function displays one view into the current output; :func:`app` wires them
to widgets (result set, counts or row-normalised, confusion cell, second model)."""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from IPython.display import HTML, Audio, Markdown, display

from . import explore, viz
from .stats import ResultSet

SHOWN = ["fold", "utt_id", "speaker", "gender", "truth", "prediction", "confidence", "margin"]


def cell_options(table: pd.DataFrame, classes) -> list[tuple[str, tuple[str, str]]]:
    """The confusion cells as dropdown options, errors first (most frequent first), then the
    diagonal: ``("angry → neutral (7)", ("angry", "neutral"))``."""
    counts = explore.confusion(table, classes)
    cells = [(int(counts.loc[t, p]), t, p) for t in classes for p in classes if counts.loc[t, p] > 0]
    cells.sort(key=lambda c: (c[1] == c[2], -c[0], classes.index(c[1]), classes.index(c[2])))
    return [(f"{t} → {p} ({n})", (t, p)) for n, t, p in cells]


def show_confusion(table: pd.DataFrame, classes, title: str) -> None:
    """Counts and row-normalised confusion, side by side as two figures."""
    counts = explore.confusion(table, classes)
    display(Markdown(f"### {title}: {len(table)} test utterances"))
    viz.confusion_matrix(counts.to_numpy(), classes, normalize=False, title="Counts").show()
    viz.confusion_matrix(counts.to_numpy(), classes, normalize=True, title="Row-normalised (recall)").show()


def show_cell(table: pd.DataFrame, result_set: ResultSet, truth: str, predicted: str, bundles: str | Path,
              max_rows: int = 8) -> pd.DataFrame:
    """The utterances of one cell, most confident first: a line of facts, an audio player
    and the spectrogram with the model's attention (or its per-window posteriors) for each
    of the first ``max_rows``. Returns the cell's table."""
    rows = explore.cell(table, truth, predicted)
    kind = "right" if truth == predicted else "wrong"
    display(Markdown(f"### True **{truth}**, predicted **{predicted}**: {len(rows)} utterance(s) ({kind}), "
                     f"most confident first; the first {min(max_rows, len(rows))} with audio"))
    shown = SHOWN + (["text"] if rows.get("text") is not None and rows.text.notna().any() else [])
    display(viz.headline(rows[shown], columns=shown, digits=3))
    for row in rows.head(max_rows).itertuples():
        display(HTML(f"<b>{row.utt_id}</b> · speaker {row.speaker} · fold {row.fold} · confidence "
                     f"{row.confidence:.2f} (margin {row.margin:.2f}) · <code>{row.path}</code>"))
        if not row.path or not Path(str(row.path)).is_file():
            display(Markdown(f"*no audio: {row.path or 'the corpus is not on this machine'}*"))
            continue
        display(Audio(filename=str(row.path)))
        entry = explore.listen(explore.fold_record(result_set, row.fold), str(row.path), bundles)
        if entry["note"]:
            display(Markdown(f"*{entry['note']}*"))
        viz.attention_over_audio(entry, title=f"{row.utt_id}: spectrogram (dB)"
                                 + (", attention in red" if entry["windows"] else "")).show()
        if not entry["windows"] and not entry["timeline"].empty and len(entry["timeline"]) > 1:
            viz.probability_timeline(entry["timeline"], result_set.classes,
                                     title=f"{row.utt_id}: class probabilities per window").show()
    return rows


def show_speakers(table: pd.DataFrame, classes, n_boot: int = 500) -> pd.DataFrame:
    """Per-speaker UA with bootstrap intervals (worst first) and the worst speaker's confusion."""
    speakers = explore.speaker_ua(table, classes, n_boot=n_boot)
    display(Markdown("### Speakers, worst first (UA with a 95 % bootstrap interval over the speaker's utterances)"))
    display(speakers.round(3))
    worst = speakers.iloc[0]
    viz.confusion_matrix(explore.confusion(table[table.speaker == worst.speaker], classes).to_numpy(), classes,
                         normalize=True, title=f"Worst speaker {worst.speaker}: UA {worst.UA:.2f}").show()
    return speakers


def show_discordant(table: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Where ``a`` is right and ``b`` wrong, and the reverse (McNemar's discordant pairs)."""
    d = explore.discordant(table, a, b)
    counts = d.which.value_counts()
    display(Markdown(f"### {a} vs {b}: {counts.get(f'{a} right', 0)} utterance(s) only {a} gets right, "
                     f"{counts.get(f'{b} right', 0)} only {b} gets right (McNemar's discordant pairs)"))
    display(d.round(3))
    return d


def show_calibration(result_set: ResultSet, n_bins: int = explore.N_BINS) -> dict | None:
    """The reliability diagram before and after temperature scaling, and ECE/MCE per run."""
    per_run, scaled, skipped = explore.calibrate(result_set, n_bins)
    for message in skipped:
        display(Markdown(f"*skipped {message}*"))
    if per_run.empty:
        display(Markdown(f"**{result_set.label}: no run kept its validation outputs; no calibration.**"))
        return None
    summary = explore.calibration_summary(result_set, n_bins)
    kept = set(zip(per_run.fold, per_run.seed))
    raw = result_set.predictions[[k in kept for k in zip(result_set.predictions.fold, result_set.predictions.seed)]]
    tables = {name: explore.reliability(explore._probs(p, result_set.classes), explore._labels(p, result_set.classes),
                                        n_bins) for name, p in (("before", raw), ("after temperature scaling", scaled))}
    viz.reliability_diagram(tables, title=f"Reliability of {result_set.label} ({n_bins} bins): ECE "
                            f"{summary['ECE before']:.3f} → {summary['ECE after']:.3f}").show()
    display(Markdown(f"Pooled test ECE {summary['ECE before']:.3f} → {summary['ECE after']:.3f}, MCE "
                     f"{summary['MCE before']:.3f} → {summary['MCE after']:.3f}; UA {summary['UA before']:.3f} → "
                     f"{summary['UA after']:.3f} and WA {summary['WA before']:.3f} → {summary['WA after']:.3f}: "
                     "temperature scaling changes the confidence, never the predicted class."))
    display(per_run.round(3))
    return summary


def render(out, show, *args, **kwargs) -> None:
    """Run ``show(*args, **kwargs)`` and put what it displays and prints into the Output
    widget ``out``, replacing what ``out`` held, in one update from the kernel.

    Not ``with out:`` (and ``out.clear_output(wait=True)``): that routes every display
    through the frontend, and a headless frontend (nbclient: papermill, Voilà) mimics the
    Output widget by sending the widget's whole state back to the kernel on the shell
    channel after each display, while it waits on that same channel for the cell's
    execute_reply. jupyter_client sends on a blocking shadow of the asyncio socket, which
    can swallow the socket's wake-up for a reply that arrives then: the reply stays unread
    and the run hangs with the kernel and the client both idle (nbclient issue #312).
    Captured here, the outputs reach the frontend as one state update and nothing is sent
    back. An exception is shown in the widget, as ``with out:`` shows it. Printed text
    comes after the displays (the capture keeps them apart), so a view displays what it
    shows rather than printing it."""
    from IPython import get_ipython
    from IPython.utils.capture import capture_output

    error = None
    with capture_output() as captured:
        try:
            show(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - shown in the widget, like ``with out:``
            error = e
    outputs = [{"output_type": "display_data", "data": o.data, "metadata": o.metadata or {}}
               for o in captured.outputs]
    outputs += [{"output_type": "stream", "name": name, "text": text}
                for name, text in (("stdout", captured.stdout), ("stderr", captured.stderr)) if text]
    if error is not None:
        ip = get_ipython()
        tb = (ip.InteractiveTB.structured_traceback(type(error), error, error.__traceback__) if ip is not None
              else traceback.format_exception(type(error), error, error.__traceback__))
        outputs.append({"output_type": "error", "ename": type(error).__name__, "evalue": str(error),
                        "traceback": tb})
    out.outputs = tuple(outputs)


def app(sets: Mapping[str, ResultSet], tables: Mapping[str, pd.DataFrame], bundles: str | Path,
        max_rows: int = 8, n_boot: int = 500, n_bins: int = explore.N_BINS):
    """The interactive browser: pick a result set, counts or row-normalised, a confusion
    cell (default: the largest off-diagonal one) and a second model; each choice redraws
    its view. Returns the widget."""
    import ipywidgets as w

    names = list(sets)
    pick = w.Dropdown(options=names, value=names[0], description="result set", layout={"width": "60%"})
    other = w.Dropdown(options=names, value=names[-1], description="versus", layout={"width": "60%"})
    cell = w.Dropdown(description="cell", layout={"width": "40%"})
    out_matrix, out_cell, out_speakers, out_pair, out_cal = (w.Output() for _ in range(5))
    quiet = {"cell": False}  # set while the cell options are replaced (one redraw, not one per change)

    def redraw_cell(_=None):
        if quiet["cell"]:
            return
        def show():
            if cell.value is not None:
                show_cell(tables[pick.value], sets[pick.value], *cell.value, bundles, max_rows)
        render(out_cell, show)

    def redraw_set(_=None):
        s, t = sets[pick.value], tables[pick.value]
        render(out_matrix, show_confusion, t, s.classes, pick.value)
        options = cell_options(t, s.classes)
        default = explore.largest_off_diagonal(t, s.classes)
        quiet["cell"] = True
        cell.options = options
        cell.value = default if default else (options[0][1] if options else None)
        quiet["cell"] = False
        redraw_cell()
        render(out_speakers, show_speakers, t, s.classes, n_boot)
        render(out_cal, show_calibration, s, n_bins)
        redraw_pair()

    def redraw_pair(_=None):
        def show():
            if other.value == pick.value:
                display(Markdown("*pick a second result set to compare*"))
            else:
                both = pd.concat([tables[pick.value], tables[other.value]], ignore_index=True)
                show_discordant(both, pick.value, other.value)
        render(out_pair, show)

    pick.observe(redraw_set, "value")
    other.observe(redraw_pair, "value")
    cell.observe(redraw_cell, "value")
    redraw_set()
    return w.VBox([pick, out_matrix, cell, out_cell, w.HTML("<h3>Speakers</h3>"), out_speakers,
                   w.HTML("<h3>Two models</h3>"), other, out_pair, w.HTML("<h3>Calibration</h3>"), out_cal])
