"""Command line.

    python -m serlib demo                                   # corpus overview + folds (synthetic)
    python -m serlib describe --corpus emodb --root DIR --classes all
    python -m serlib baseline --corpus emodb --root DIR --classes all [--feature-set compare --classifier svm_linear]
    python -m serlib run --experiment cnn_lstm --corpus synthetic --fold 5 [--set key=value ...]
    python -m serlib sweep --experiment cnn_lstm --corpus emodb --root DIR --folds all --seeds 1 --jobs 2
    python -m serlib sweep --experiment cnn_lstm --corpus crema_d+savee --root DIR1+DIR2 --protocol cross:tess --test-root DIR3
    python -m serlib collect                                # results table (mean ± std, pooled)
    python -m serlib export RESULT_SET BUNDLE_DIR [--onnx --int8] ; python -m serlib predict BUNDLE_DIR FILES... [--runtime onnx]

The commands import what they need when they run (torch, the corpora, the trainer), so
that ``--help`` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from .constants import FOUR_CLASSES
from .errors import SerlibError


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _merge(text: str) -> dict[str, str]:
    """``excited=happy,calm=neutral`` -> a dict (the labels are checked by the config)."""
    out = {}
    for item in filter(None, text.split(",")):
        source, sep, target = item.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise argparse.ArgumentTypeError(f"expected FROM=TO pairs such as excited=happy, got {item!r}")
        out[source.strip()] = target.strip()
    return out


def _add_corpus_args(p: argparse.ArgumentParser, classes_default: str | None = ",".join(FOUR_CLASSES)) -> None:
    p.add_argument("--corpus", default="synthetic",
                   help="corpus name (default: synthetic); several trained together: crema_d+savee")
    p.add_argument("--root", default=None,
                   help="corpus folder as distributed; several corpora: one per corpus joined by '+' (empty for synthetic)")
    p.add_argument("--subset", default=None, choices=("improvised", "scripted", "all"),
                   help="IEMOCAP/synthetic subset")
    p.add_argument("--classes", default=classes_default,
                   help="comma-separated classes to keep ('all' keeps every label)")
    p.add_argument("--merge", default={}, type=_merge, help="label merges, e.g. excited=happy")
    p.add_argument("--protocol", default="loso",
                   help="loso | session | group_kfold:K | stratified_kfold:K | cross:TEST_CORPUS | folds_file:PATH | partition")
    p.add_argument("--test-root", default=None, help="cross:TEST_CORPUS: the test corpus's folder (csv: its file)")
    p.add_argument("--test-subset", default=None, choices=("improvised", "scripted", "all"),
                   help="cross:TEST_CORPUS: the test corpus's IEMOCAP/synthetic subset")
    p.add_argument("--label-map", default=None, metavar="FILE",
                   help='JSON {"label": "class"} applied to both corpora (like --merge)')


def _manifest(args, **options):
    from .corpora import prepare_manifest

    classes = "all" if args.classes == "all" else args.classes.split(",")
    return prepare_manifest(args.corpus, args.root, args.subset, classes, args.merge, **options)


def _values(args) -> dict:
    """Config values from the command line (``--set`` wins)."""
    from .fields import parse_overrides

    values = {"corpus": args.corpus, "data_root": args.root, "protocol": args.protocol}
    if args.subset is not None:
        values["subset"] = args.subset
    else:
        from .corpora import name_has_subsets

        if not name_has_subsets(args.corpus):
            values["subset"] = None  # the experiment's IEMOCAP subset does not apply
    if args.classes is not None:
        values["classes"] = "all" if args.classes == "all" else tuple(c for c in args.classes.split(",") if c)
    if args.merge:
        values["merge"] = args.merge
    if args.label_map:
        from .corpora.cross import read_label_map

        values["merge"] = {**read_label_map(args.label_map), **args.merge}
    if args.test_root is not None:
        values["test_data_root"] = args.test_root
    if args.test_subset is not None:
        values["test_subset"] = args.test_subset
    values.update(parse_overrides(getattr(args, "set", [])))
    return values


def _sweep(args) -> int:
    from .sweep import RayOptions, sweep

    values = _values(args)  # a bad setting fails before the thread choice is printed
    threads = args.threads if args.backend == "ray" else _choose_threads(args.threads, args.jobs)
    table = sweep(args.experiment, values, folds=args.folds, seeds=args.seeds, jobs=args.jobs,
                  threads=threads, force=args.force, backend=args.backend,
                  ray_options=RayOptions(args.address, args.cpus_per_run, args.gpus_per_run, args.max_retries))
    if len(table):
        scores = [c for c in ("wa", "ua", "ccc") if table[c].notna().any()] or ["wa", "ua"]
        print(table[["fold", "seed", "status", *scores, "seconds", "reason"]].to_string(
            index=False, float_format=lambda v: f"{v:.3f}", max_colwidth=80))
    return 1 if table.attrs["failed"] else 0


def _collect(args) -> int:
    """The results table, one table per comparability group (rows of one group may be
    compared; rows of two groups never are): each headed by what its rows share, how it
    differs from the other groups, and with the class count and the baseline in every row."""
    from . import dimensional
    from .records import (
        comparability_key,
        describe_key,
        key_diff,
        key_id,
        load_records,
        record_task,
    )
    from .results import collect, summarise
    from .stats import baseline_columns

    damaged = []
    runs = load_records(args.path, damaged)
    rated = dimensional.table(runs)  # task=dimensional/multitask: tables of their own, below
    runs = [r for r in runs if record_task(r) == "categorical"]
    table = summarise(collect(runs), runs)["mean"]
    table = baseline_columns(table, runs) if len(table) else table
    columns = ["experiment", "name", "fingerprint", "n_classes", "leaky", "n_folds", "n_seeds", "wa_mean", "wa_std",
               "ua_mean", "ua_std", "ua_seed_std", "val_ua_mean", "ua_pooled", "ua_pooled_low", "ua_pooled_high",
               "baseline", "baseline_chosen_on", "ua_vs_baseline", "p_raw_vs_baseline", "p_holm_vs_baseline"]
    if not len(table) and not len(rated):
        print("no records")
    keys = {key_id(comparability_key(r)): comparability_key(r) for r in runs}
    groups = list(table.groupby("comparable", sort=False)) if len(table) else []
    for gid, g in groups:
        key = keys.get(gid)
        print(f"\n== group {gid} ({len(g)} row(s)): {describe_key(key) if key else 'a set mixing records of two keys'}")
        for other, _ in groups:
            if other != gid and gid in keys and other in keys:
                print(f"   not compared with group {other}: differs in {'; '.join(key_diff(key, keys[other]))}")
        print(g[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}", max_colwidth=60))
        for row in g.itertuples():
            if row.baseline_note:
                print(f"   note on {row.experiment}/{row.name} [{row.fingerprint}]: {row.baseline_note}")
    if len(groups) > 1:
        print(f"\n{len(groups)} groups of rows that may not be compared with one another (see each group's head)")
    for gid, g in (rated.groupby("comparable", sort=False) if len(rated) else []):
        print(f"\n== dimensional group {gid} ({len(g)} row(s)): {g['key'].iloc[0]}\n   CCC per dimension (std over "
              "folds); pooled CCC with a speaker-bootstrap 95% interval; paired sign-flip test across folds against "
              "the baseline chosen on validation CCC, Holm")
        print(dimensional.shown(g).to_string(index=False, float_format=lambda v: f"{v:.3f}", max_colwidth=60))
    for note in (table["versions_note"] if "versions_note" in table else []):
        if note:
            print(f"code versions: {note}", file=sys.stderr)
    for path, reason in damaged:
        print(f"damaged record skipped: {path}: {reason}", file=sys.stderr)
    if damaged:
        print(f"{len(damaged)} record(s) skipped; a sweep with the same settings runs their folds again",
              file=sys.stderr)
    return 0


def _choose_threads(asked: int | None, jobs: int = 1) -> int:
    """The torch threads of each run: ``--threads``, else ``$SERLIB_THREADS``, else the free
    cores shared by the ``jobs`` parallel runs — the notebooks' choice (:mod:`serlib.threads`:
    on a busy machine, more threads than free cores spin-wait). Printed; runs record it."""
    import os

    from .threads import free_cores, use_free_cores

    if asked or os.environ.get("SERLIB_THREADS") or jobs == 1:
        return use_free_cores(asked)
    chosen = use_free_cores(max(1, free_cores() // jobs), echo=False)
    print(f"torch threads: {chosen} per run ({jobs} parallel runs share the free cores: {os.cpu_count()} cores, "
          f"1-min load {os.getloadavg()[0]:.1f}; --threads overrides; serlib.threads says why it matters)")
    return chosen


def _predict(args) -> int:
    """Exit 0 when every input was scored, 1 when some failed (listed; the rest written)."""
    from . import atomic
    from .predictor import prediction_paths, write_prediction

    if args.out:  # before any scoring: a destination that cannot take the table fails now
        for target in prediction_paths(args.out):
            _check_destination(target, "--out")
    if args.attention:
        _check_destination(Path(args.attention) / "x.attention.html", "--attention")
    if args.runtime == "torch":
        from .bundle import load_model

        bundle = load_model(args.bundle, fold=args.fold, device=args.device, calibrated=args.calibrated)
    else:  # onnxruntime, and no torch in the process (serlib.onnx_predict)
        from .errors import ConfigError
        from .onnx_predict import load_onnx

        if args.attention or args.device != "cpu" or args.calibrated:
            raise ConfigError(f"--runtime {args.runtime} scores on the CPU without attention overlays: "
                              "(and uncalibrated): use --runtime torch for --attention, --device or --calibrated")
        bundle = load_onnx(args.bundle, fold=args.fold, runtime=args.runtime)
    out = bundle.predict(args.inputs, window=args.window, hop=args.hop, per_file=args.per_file,
                         attention=bool(args.attention), speaker_norm=args.speaker_norm)
    if args.out:
        write_prediction(args.out, out)
        print(f"{len(out.files) - len(out.failures)} file(s) scored -> {args.out}")
    else:
        scored = "prediction" if "prediction" in out.files else bundle.dims[0]  # dimensional: the values only
        print(out.files.drop(columns=["error", "warning"]).dropna(subset=[scored]).to_string(
            index=False, float_format=lambda v: f"{v:.3f}"))
    if args.attention:
        from . import viz

        if not bundle.has_attention:
            print(f"{bundle.config.experiment} has no attention weights to draw", file=sys.stderr)
        for name, entry in out.attention.items():
            fig = viz.attention_over_audio(entry, title=Path(name).name)
            target = Path(args.attention) / (Path(name).stem + ".attention.html")
            atomic.atomic_write(target, lambda tmp, f=fig: f.write_html(tmp, include_plotlyjs=True))
            print(f"attention -> {target}")
    for row in out.files.dropna(subset=["warning"]).itertuples():
        print(f"warning {row.path}: {row.warning}", file=sys.stderr)
    for row in out.failures.itertuples():
        print(f"failed {row.path}: {row.error}", file=sys.stderr)
    return 1 if len(out.failures) else 0


def _check_destination(target: Path, flag: str) -> None:
    """A file that can be written: not a folder, and its folder (the first one that
    exists, when the rest is made) writable."""
    import os

    from .atomic import check_target
    from .errors import DataError

    if target.is_dir() and not target.is_symlink():
        raise DataError(target, f"{flag}: is a folder; give a file name such as {target / 'predictions.csv'}")
    try:
        check_target(target)
    except DataError as e:
        raise DataError(target, f"{flag}: {e.reason}") from None
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise DataError(folder, f"{flag}: is not a folder, so {target} cannot be written")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DataError(folder, f"{flag}: folder is not writable, so {target} cannot be written")


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser (the docs' commands are checked against it)."""
    parser = argparse.ArgumentParser(prog="python -m serlib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_corpus_args(sub.add_parser("demo", help="the data and folds the demo notebook trains on (make demo)"))
    _add_corpus_args(sub.add_parser("describe", help="a corpus as read: files, hours, speakers, labels × speakers, "
                                                     "sample rates, channels, skipped files, folds"),
                     classes_default="all")
    p = sub.add_parser("baseline", help="the baseline experiment on every fold (records like any sweep)")
    _add_corpus_args(p)
    p.add_argument("--feature-set", default="mfcc_stats", help="mfcc_stats | egemaps | compare")
    p.add_argument("--classifier", default="logreg", help="logreg | svm_linear | svm_rbf")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    for name, help_text in (("run", "train and test one fold"), ("sweep", "all folds × seeds, resumable")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--experiment", required=True)
        _add_corpus_args(p, classes_default=None)
        p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
        p.add_argument("--threads", type=_positive_int, default=None,
                       help="torch threads per run (recorded; fix it to reproduce a run exactly)")
        if name == "run":
            p.add_argument("--fold", type=_positive_int, default=1)
            p.add_argument("--seed", type=int, default=1)
        else:
            p.add_argument("--folds", default="all", help="'all' or a list such as 1,2,3")
            p.add_argument("--seeds", type=_positive_int, default=1, help="seeds 1..N per fold")
            p.add_argument("--jobs", type=_positive_int, default=1, help="parallel runs (processes)")
            p.add_argument("--force", action="store_true",
                           help="re-run (from scratch) runs that have a matching record")
            p.add_argument("--backend", default="local", choices=("local", "ray"),
                           help="local processes (--jobs) or Ray tasks (pip install -e '.[ray]')")
            p.add_argument("--address", default=None, help="Ray: 'auto' or HOST:PORT of a cluster (default: local)")
            p.add_argument("--cpus-per-run", type=float, default=1.0, help="Ray: CPUs per run (= torch threads)")
            p.add_argument("--gpus-per-run", type=float, default=None,
                           help="Ray: GPUs per run; fractions share a GPU (default: 1 when the cluster has GPUs "
                                "and device is auto or cuda, else 0)")
            p.add_argument("--max-retries", type=int, default=2, help="Ray: retries of a run whose worker died")
    p = sub.add_parser("export", help="a result set's fold models as a self-contained bundle")
    p.add_argument("result_set", help="a record (.json) or a result-set folder: results/EXPERIMENT/NAME/CORPUS/"
                                      "PROTOCOL[/FINGERPRINT], absolute or under outputs/results")
    p.add_argument("out_dir", help="the bundle folder to write")
    p.add_argument("--onnx", action="store_true", help="also one ONNX graph per fold model, front end included, "
                                                       "checked against PyTorch on the run's test audio")
    p.add_argument("--int8", action="store_true", help="with --onnx: also int8 graphs (calibrated on the training split), "
                                                       "with their accuracy cost on the test folds")
    p = sub.add_parser("predict", help="class probabilities of recordings, with an exported bundle")
    p.add_argument("bundle", help="a folder written by 'export'")
    p.add_argument("inputs", nargs="+", help="audio files, folders (searched recursively) or a CSV with a 'path' column")
    p.add_argument("--out", default=None, help="per-file CSV (default: print it); the windows go to OUT.windows.csv")
    p.add_argument("--window", type=float, default=None, help="timeline window in s (default: the model's crop or 3)")
    p.add_argument("--hop", type=float, default=None, help="timeline hop in s (default: 1, or the window when shorter)")
    p.add_argument("--per-file", default="model", choices=("model", "windows"),
                   help="a file's result: the model's own input rule on the whole file, or the windows' mean")
    p.add_argument("--fold", type=_positive_int, default=None, help="use one fold's model (default: all, averaged)")
    p.add_argument("--attention", default=None, metavar="DIR",
                   help="attention models: write an HTML figure per file (attention over the spectrogram)")
    p.add_argument("--speaker-norm", action="store_true",
                   help="models trained with per-speaker normalisation: standardise all inputs together (one speaker)")
    p.add_argument("--calibrated", action="store_true",
                   help="scale each fold model's probabilities by the temperature fitted on its validation split")
    p.add_argument("--device", default="cpu")
    p.add_argument("--runtime", default="torch", choices=("torch", "onnx", "onnx-int8"),
                   help="PyTorch, or the bundle's ONNX graphs through onnxruntime (export --onnx; no torch imported)")
    p = sub.add_parser("calibration", help="ECE/MCE of a result set before and after temperature scaling "
                                          "(fitted on each run's validation split)")
    p.add_argument("result_set", help="a result-set folder (or one below outputs/results), as for export")
    p.add_argument("--bins", type=_positive_int, default=15, help="equal-width confidence bins (default 15)")
    p = sub.add_parser("collect", help="results table of outputs/results")
    p.add_argument("--path", default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _dispatch(args)
    except SerlibError as e:  # bad input or settings: the message names the file and the reason
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the file system refused (read-only, full, no permission): name the file, no traceback
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: what was written is whole (atomic writes); no traceback
        print(f"interrupted: {args.command} stopped (Ctrl-C)", file=sys.stderr)
        return 130


def _dispatch(args) -> int:
    if args.command == "run":
        from .manifests import resolve_values
        from .planning import plan_run
        from .train import run_fold

        values = _values(args)
        _choose_threads(args.threads)
        first, manifest = resolve_values(args.experiment, values)
        config = dataclasses.replace(first, fold=args.fold, seed=args.seed)
        rec = run_fold(config, plan_run(config, manifest))
        print(f"fold {args.fold}: test speakers {rec['test_speakers']}, WA {rec['metrics']['wa']:.3f}, "
              f"UA {rec['metrics']['ua']:.3f}, best epoch {rec['best_epoch']} -> {rec['path']}")
        for skip in rec["skipped_inputs"]:
            print(f"skipped {skip['path']}: {skip['reason']}")
        return 0
    if args.command == "sweep":
        return _sweep(args)
    if args.command == "baseline":
        from .experiments import declared
        from .sweep import sweep

        values = {**_values(args), "feature_set": args.feature_set, "classifier": args.classifier}
        table = sweep(declared("is_baseline"), values, echo=None)
        print(table[["fold", "seed", "status", "wa", "ua", "reason"]].to_string(index=False))
        done = table[table.status != "failed"]
        if done.empty:
            print(f"no fold finished: all {len(table)} failed (reasons above)", file=sys.stderr)
            return 1
        from .metrics import fold_stats

        (wa, wa_std, _), (ua, ua_std, _) = (fold_stats(done.fold.tolist(), done[m].tolist()) for m in ("wa", "ua"))
        print(f"mean over folds: WA {wa:.3f} ± {wa_std:.3f}, UA {ua:.3f} ± {ua_std:.3f}  "
              f"(records: {table.path.dropna().iloc[0].rsplit('/', 1)[0]})")
        return 1 if table.attrs["failed"] else 0
    if args.command == "export":
        from .bundle import export
        from .paths import outputs_dir

        source = Path(args.result_set)
        if not source.exists() and (outputs_dir() / "results" / source).exists():
            source = outputs_dir() / "results" / source
        out = export(source, args.out_dir)
        card = json.loads((out / "card.json").read_text())
        scores = card["test_scores"]
        score = f"test UA {scores['ua_mean']:.3f}" if "ua_mean" in scores else f"test mean CCC {scores['ccc_mean']:.3f}"
        print(f"exported {len(card['members'])} fold model(s) of {card['experiment']}/{card['name']} on "
              f"{card['corpus']} ({card['protocol']}; {score}) -> {out}")
        if args.onnx or args.int8:
            from .onnx_export import export_onnx, report_lines

            print("\n".join(report_lines(export_onnx(out, source, int8=args.int8), out)))
        return 0
    if args.command == "calibration":
        return _calibration(args)
    if args.command == "predict":
        return _predict(args)
    if args.command == "collect":
        return _collect(args)

    from .overview import describe
    from .protocols import make_folds

    if args.command == "demo":  # the data and folds the demo notebook (`make demo`) trains on, with its settings
        from .experiments import declared
        from .manifests import resolve_values

        name = declared("is_demo")
        config, df = resolve_values(name, _values(args))
        print(f"the demo's data (experiment {name}): subset {config.subset}, classes {', '.join(config.classes)}")
        print(describe(df, make_folds(df, config.protocol, seed=config.seed)))
        return 0
    from .errors import SplitError

    df = _manifest(args, on_error="skip")  # describe reports bad files instead of stopping at the first
    try:
        folds = make_folds(df, args.protocol)
    except SplitError as e:
        folds = None
        print(describe(df))
        print(f"\nfolds ({args.protocol}): {e}")
        return 0
    print(describe(df, folds))
    return 0


def _calibration(args) -> int:
    from .explore import calibrate, calibration_summary
    from .paths import outputs_dir
    from .stats import load_set

    source = Path(args.result_set)
    if not source.exists() and (outputs_dir() / "results" / source).exists():
        source = outputs_dir() / "results" / source
    result_set = load_set(source)
    per_run, _, skipped = calibrate(result_set, args.bins)
    for message in skipped:
        print(f"skipped {message}", file=sys.stderr)
    if per_run.empty:
        print(f"error: {result_set.label}: no run has validation outputs to fit a temperature on", file=sys.stderr)
        return 2
    columns = ["fold", "seed", "temperature", "n_val", "n_test", "ECE before", "ECE after", "MCE before", "MCE after",
               "UA before", "UA after"]
    print(per_run[columns].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    s = calibration_summary(result_set, args.bins)
    print(f"{s['set']}: pooled test ECE {s['ECE before']:.4f} -> {s['ECE after']:.4f}, MCE {s['MCE before']:.4f} -> "
          f"{s['MCE after']:.4f}, NLL {s['NLL before']:.4f} -> {s['NLL after']:.4f} nats ({args.bins} bins, "
          f"{s['runs']} run(s), {s['n_test']} test utterances, {s['skipped']} skipped); UA {s['UA before']:.4f} -> "
          f"{s['UA after']:.4f} (temperature scaling keeps every prediction)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
