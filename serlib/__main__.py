"""Command line: ``python -m serlib {demo,summary,baseline} ...``."""

from __future__ import annotations

import argparse
import logging
import sys

from .constants import FOUR_CLASSES


def _add_corpus_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", default="synthetic", help="corpus name (default: synthetic)")
    p.add_argument("--root", default=None, help="corpus folder as distributed")
    p.add_argument("--subset", default=None, help="IEMOCAP/synthetic: improvised|scripted|all")
    p.add_argument("--classes", default=",".join(FOUR_CLASSES),
                   help="comma-separated classes to keep ('all' keeps every label)")
    p.add_argument("--merge", default="", help="label merges, e.g. excited=happy")
    p.add_argument("--protocol", default="loso", help="loso | session | group_kfold:K | stratified_kfold:K")


def _manifest(args):
    from .corpora import prepare_manifest

    merge = dict(m.split("=") for m in args.merge.split(",") if m)
    classes = "all" if args.classes == "all" else args.classes.split(",")
    return prepare_manifest(args.corpus, args.root, args.subset, classes, merge)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serlib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("demo", "the main job on the synthetic corpus"),
                            ("summary", "manifest and folds of a corpus"),
                            ("baseline", "logistic regression on mean MFCCs, per fold")):
        p = sub.add_parser(name, help=help_text)
        _add_corpus_args(p)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

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
