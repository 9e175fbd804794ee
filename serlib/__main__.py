"""Command line.

    python -m serlib demo                                   # corpus summary + folds (synthetic)
    python -m serlib summary --corpus emodb --root DIR --classes all
    python -m serlib baseline --corpus emodb --root DIR --classes all
    python -m serlib run --experiment cnn_lstm --corpus synthetic --fold 5 [--set key=value ...]
    python -m serlib sweep --experiment cnn_lstm --corpus emodb --root DIR --folds all --seeds 1 --jobs 2
    python -m serlib collect                                # results table (mean ± std, pooled)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed

from .constants import FOUR_CLASSES
from .errors import SerlibError


def _add_corpus_args(p: argparse.ArgumentParser, classes_default: str | None = ",".join(FOUR_CLASSES)) -> None:
    p.add_argument("--corpus", default="synthetic", help="corpus name (default: synthetic)")
    p.add_argument("--root", default=None, help="corpus folder as distributed")
    p.add_argument("--subset", default=None, help="IEMOCAP/synthetic: improvised|scripted|all")
    p.add_argument("--classes", default=classes_default,
                   help="comma-separated classes to keep ('all' keeps every label)")
    p.add_argument("--merge", default="", help="label merges, e.g. excited=happy")
    p.add_argument("--protocol", default="loso", help="loso | session | group_kfold:K | stratified_kfold:K")


def _manifest(args):
    from .corpora import prepare_manifest

    merge = dict(m.split("=") for m in args.merge.split(",") if m)
    classes = "all" if args.classes == "all" else args.classes.split(",")
    return prepare_manifest(args.corpus, args.root, args.subset, classes, merge)


def _run_values(args, fold: int, seed: int) -> dict:
    """Config values from the command line (``--set`` wins)."""
    from .config import parse_overrides

    values = {"corpus": args.corpus, "data_root": args.root, "protocol": args.protocol, "fold": fold, "seed": seed}
    if args.subset is not None:
        values["subset"] = args.subset
    else:
        from .corpora import name_has_subsets

        if not name_has_subsets(args.corpus):
            values["subset"] = None  # the experiment's IEMOCAP subset does not apply
    if args.classes is not None:
        values["classes"] = args.classes
    if args.merge:
        values["merge"] = dict(m.split("=") for m in args.merge.split(","))
    values.update(parse_overrides(args.set))
    return values


def _config(args, fold: int, seed: int):
    from .corpora import prepare_manifest
    from .experiments import make_config

    values = _run_values(args, fold, seed)
    if values.get("classes") == "all":  # every label of the corpus
        values["classes"] = tuple(sorted(prepare_manifest(args.corpus, args.root, values.get("subset"), "all")
                                         .label.unique()))
    return make_config(args.experiment, values)


def _report(fold: int, seed: int, wa: float, ua: float, path: str) -> str:
    return f"fold {fold} seed {seed}: WA {wa:.3f} UA {ua:.3f} -> {path}"


def _run_one(config, threads: int | None) -> tuple[int, int, float, float, str]:
    import torch

    from .train import run_fold

    if threads:
        torch.set_num_threads(threads)
    rec = run_fold(config)
    return config.fold, config.seed, rec["metrics"]["wa"], rec["metrics"]["ua"], rec["path"]


def _sweep(args) -> int:
    from .corpora import prepare_manifest
    from .protocols import make_folds
    from .train import record_stem

    first = _config(args, 1, 1)
    manifest = prepare_manifest(first.corpus, first.data_root, first.subset, first.classes, first.merge)
    n_folds = len(make_folds(manifest, first.protocol))
    folds = range(1, n_folds + 1) if args.folds == "all" else [int(f) for f in args.folds.split(",")]
    seeds = range(1, args.seeds + 1)
    todo, done = [], 0
    for seed in seeds:
        for fold in folds:
            config = _config(args, fold, seed)
            config.progress = args.jobs == 1 and config.progress
            config.resume = True  # an interrupted fold continues from its checkpoint
            if not args.force and record_stem(config).with_suffix(".json").is_file():
                done += 1
                continue
            todo.append(config)
    print(f"sweep {first.experiment} on {first.corpus}: {len(todo)} runs to do, {done} already recorded")
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
    failures = 0
    if args.jobs == 1:
        for config in todo:
            print(_report(*_run_one(config, None)), flush=True)
    else:
        import multiprocessing as mp

        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(_run_one, c, threads): c for c in todo}
            for fut in as_completed(futures):
                c = futures[fut]
                try:
                    print(_report(*fut.result()), flush=True)
                except Exception as e:  # report and go on: the other folds still run
                    failures += 1
                    print(f"fold {c.fold} seed {c.seed} FAILED: {e}", file=sys.stderr, flush=True)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serlib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("demo", "corpus summary and folds on the synthetic corpus"),
                            ("summary", "manifest and folds of a corpus"),
                            ("baseline", "logistic regression on mean MFCCs, per fold")):
        _add_corpus_args(sub.add_parser(name, help=help_text))
    for name, help_text in (("run", "train and test one fold"), ("sweep", "all folds × seeds, resumable")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--experiment", required=True)
        _add_corpus_args(p, classes_default=None)
        p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
        if name == "run":
            p.add_argument("--fold", type=int, default=1)
            p.add_argument("--seed", type=int, default=1)
        else:
            p.add_argument("--folds", default="all", help="'all' or a list such as 1,2,3")
            p.add_argument("--seeds", type=int, default=1, help="seeds 1..N per fold")
            p.add_argument("--jobs", type=int, default=1, help="parallel runs (processes)")
            p.add_argument("--force", action="store_true", help="re-run folds that have a record")
    p = sub.add_parser("collect", help="results table of outputs/results")
    p.add_argument("--path", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _dispatch(args)
    except SerlibError as e:  # bad input or settings: the message names the file and the reason
        print(f"error: {e}", file=sys.stderr)
        return 2


def _dispatch(args) -> int:
    if args.command == "run":
        from .train import run_fold

        rec = run_fold(_config(args, args.fold, args.seed))
        print(f"fold {args.fold}: test speakers {rec['test_speakers']}, WA {rec['metrics']['wa']:.3f}, "
              f"UA {rec['metrics']['ua']:.3f}, best epoch {rec['best_epoch']} -> {rec['path']}")
        return 0
    if args.command == "sweep":
        return _sweep(args)
    if args.command == "collect":
        from .results import collect, summarise

        table = summarise(collect(args.path))["mean"]
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}") if len(table) else "no records")
        return 0

    from .protocols import make_folds
    from .summary import describe

    df = _manifest(args)
    if args.command in ("demo", "summary"):
        print(describe(df, make_folds(df, args.protocol)))
    elif args.command == "baseline":
        from .baselines import logreg_mfcc

        table = logreg_mfcc(df, args.protocol)
        print(table.to_string(index=False))
        print(f"mean over folds: WA {table.wa.mean():.3f} ± {table.wa.std():.3f}, "
              f"UA {table.ua.mean():.3f} ± {table.ua.std():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
