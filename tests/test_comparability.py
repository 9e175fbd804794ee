"""One comparability rule (issue 27): every table and comparison compares like with like by
construction. One test (or more) per defect of the audit; each failed on the code before
the fix. Records are written by hand with the record writer (tests/test_comparisons.py's
``fake_run``) unless a test needs the engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serlib import records, results, stats
from serlib.errors import SplitError
from serlib.train import run_fold
from tests.fixtures import tiny_config, write_csv_corpus
from tests.test_comparisons import CLASSES, fake_run, read_all, table_of

REPO = Path(__file__).resolve().parents[1]
SEVEN = CLASSES + ["boredom"]  # a class with no test utterance here: UA leaves it out


def data(tag: str) -> dict:
    """A record's identity with the manifest hash ``tag`` (the data it ran on)."""
    return {"identity": {"settings": {}, "classes": [], "manifest": {"n": 8, "sha256": tag * 64, "audio": "audio_hash"}}}


def collect_cli(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "serlib", "collect", "--path", str(root / "results")],
                          capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)


# -- 1. a 6-class set is never the baseline of 7-class rows; collect shows classes and baseline --
def write_merge_scenario(root: Path) -> None:
    for fold in range(1, 6):
        fake_run(root, "light_sernet", "deep", fold, 6, val_ua=0.8, extra={"classes": SEVEN, **data("a")})
        fake_run(root, "functionals", "mfcc-svm", fold, 5, val_ua=0.6, fingerprint="7" * 64,
                 extra={"classes": SEVEN, **data("a")})
        # --merge boredom=neutral: one class fewer, better on validation, the same name
        fake_run(root, "functionals", "mfcc-svm", fold, 7, val_ua=0.9, fingerprint="6" * 64,
                 extra={"classes": CLASSES, "config": {"merge": {"boredom": "neutral"}}, **data("b")})


def test_a_merged_class_set_is_never_the_baseline_of_the_full_one(tmp_path):
    write_merge_scenario(tmp_path)
    runs = read_all(tmp_path)
    out = stats.baseline_columns(table_of(tmp_path)["mean"], runs).set_index("fingerprint")
    deep = out[out.experiment == "light_sernet"].iloc[0]
    assert deep.baseline.startswith("functionals/mfcc-svm [7777777777]")
    assert out.loc["6666666666", "comparable"] != deep.comparable == out.loc["7777777777", "comparable"]
    # the two mfcc-svm sets are never compared with each other either
    six = stats.load_set(records=runs, fingerprint="6666")
    seven = stats.load_set(records=runs, fingerprint="7777")
    with pytest.raises(SplitError, match="not comparable: they differ in .*classes.*label_map"):
        stats.compare(six, seven)
    with pytest.raises(SplitError, match="not comparable"):
        stats.choose_baseline([six, seven])
    assert stats.choose_baseline([six, seven], like=stats.load_set(records=runs, name="deep")) is not six


@pytest.mark.slow
def test_collect_prints_separate_groups_with_classes_and_the_baseline(tmp_path):
    write_merge_scenario(tmp_path)
    done = collect_cli(tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.count("== group ") == 2 and out.count("not compared with group") == 2
    assert "differs in data" in out and "; classes ((" in out and "; label_map ((" in out
    assert "n_classes" in out and "baseline" in out
    assert "5 classes" in out and "4 classes" in out and "merged {'boredom': 'neutral'}" in out
    deep_line = next(line for line in out.splitlines() if line.strip().startswith("light_sernet"))
    assert "functionals/mfcc-svm [7777777777]" in deep_line
    # the rest of the audit: the same set on audio cut short, and a test-selected twin
    for fold in range(1, 6):
        fake_run(tmp_path, "functionals", "mfcc-svm", fold, 3, val_ua=0.95, fingerprint="3" * 64,
                 extra={"classes": SEVEN, **data("c")})
        fake_run(tmp_path, "light_sernet", "deep", fold, 8, val_ua=0.8, fingerprint="4" * 64,
                 extra={"classes": SEVEN, "config": {"selection": "test"}, "leaky": True, **data("a")})
    out = collect_cli(tmp_path).stdout
    assert out.count("== group ") == 4 and "4 groups of rows that may not be compared" in out
    assert "differs in leaky (True vs False); selection (test vs val)" in out
    assert "differs in data (cccccccccc vs aaaaaaaaaa)" in out
    deep_line = next(line for line in out.splitlines()
                     if line.strip().startswith("light_sernet") and "aaaaaaaaaa  " in line)  # the clean deep set
    assert "functionals/mfcc-svm [7777777777]" in deep_line  # still the 7-class baseline on the same audio


# -- 2. different audio under the same name is never compared --------------------------------------
def test_different_audio_under_one_name_is_two_groups_and_refused(tmp_path):
    for fold in range(1, 6):
        fake_run(tmp_path, "functionals", "mfcc-lr", fold, 6, val_ua=0.7, fingerprint="1" * 64, extra=data("a"))
        # the same corpus with its audio cut to 0.5 s: other content hashes, the same ids
        fake_run(tmp_path, "functionals", "mfcc-lr", fold, 4, val_ua=0.5, fingerprint="2" * 64, extra=data("c"))
    runs = read_all(tmp_path)
    out = stats.baseline_columns(table_of(tmp_path)["mean"], runs)
    assert out.comparable.nunique() == 2 and out.ua_vs_baseline.isna().all()
    assert (out.baseline == "(this is the baseline)").all()
    full, cut = stats.load_set(records=runs, fingerprint="1111"), stats.load_set(records=runs, fingerprint="2222")
    with pytest.raises(SplitError, match=r"differ in data \(cccccccccc vs aaaaaaaaaa\)"):
        stats.compare(cut, full)
    with pytest.raises(SplitError, match="differ in data"):
        stats.versus([cut], full)
    with pytest.raises(SplitError, match="differ in data"):
        stats.pairwise([cut, full])


# -- 3. compare/versus never ignore leakiness or test-set selection -----------------------------
def test_a_test_selected_or_leaky_set_is_refused_or_flagged(tmp_path):
    for fold in range(1, 11):
        fake_run(tmp_path, "light_sernet", "clean", fold, 5)
        fake_run(tmp_path, "light_sernet", "clean", fold, 8, fingerprint="5" * 64,
                 extra={"config": {"selection": "test"}, "leaky": True})
        # one result set whose folds file made 3 of its 10 folds leaky
        fake_run(tmp_path, "light_sernet", "official", fold, 6, extra={"leaky": fold <= 3})
    runs = read_all(tmp_path)
    clean = stats.load_set(records=runs, name="clean", fingerprint="a")
    selected = stats.load_set(records=runs, name="clean+test-selection")
    with pytest.raises(SplitError, match="leaky.*selection"):
        stats.compare(selected, clean)
    with pytest.raises(SplitError, match="leaky"):
        stats.versus([selected], clean)
    allowed = stats.compare(selected, clean, allow=("leaky", "selection"))
    assert allowed["flags_a"] == "leaky, epoch selected on test" and not allowed["like_with_like"]
    assert "selection" in allowed["differs_in"]
    mixed = stats.load_set(records=runs, name="official")
    assert mixed.flags == ["mixed leaky"]
    with pytest.raises(SplitError, match=r"leaky \(\('mixed', False, True\) vs False\)"):
        stats.compare(mixed, clean)
    # the table splits the mixed set into a leaky and a clean row, each with its own interval
    mean = stats.baseline_columns(table_of(tmp_path)["mean"], runs)
    official = mean[mean.name == "official"].set_index("leaky")
    assert official.loc[True, "n_folds"] == 3 and official.loc[False, "n_folds"] == 7
    assert official.loc[True, "comparable"] != official.loc[False, "comparable"]


# -- 3b. the leak check never depends on `dedup` ----------------------------------------------
@pytest.mark.parametrize("dedup", ["true", "false"])
def test_byte_identical_copies_across_sides_are_reported_without_dedup(tmp_path, dedup):
    import shutil

    root = tmp_path / "c"
    corpus = write_csv_corpus(root, extra_rows=[("s2/copy_of_s1.wav", "neutral", "s2")])
    shutil.copyfile(root / "s1" / "s1_neutral0.wav", root / "s2" / "copy_of_s1.wav")  # val holds a test file
    folds_file = tmp_path / "split.csv"
    pd.DataFrame({"speaker": ["s1", "s2", "s3", "s4"], "fold": 1, "role": ["test", "val", "train", "train"]}).to_csv(
        folds_file, index=False)
    rec = run_fold(tiny_config(corpus, tmp_path / "out", protocol=f"folds_file:{folds_file}", dedup=dedup))
    assert rec["leaky"] and rec["speaker_independent"]
    assert any("1 byte-identical file(s) in both val and test" in n for n in rec["fold_notes"]), rec["fold_notes"]


def test_loso_without_dedup_keeps_and_reports_the_copies():
    from serlib import protocols

    manifest = pd.DataFrame({"utt_id": [f"{s}-{i}" for s in "abc" for i in range(2)],
                             "speaker": [s for s in "abc" for _ in range(2)], "label": ["happy", "sad"] * 3,
                             "session": None, "audio_hash": ["h0", "h1", "h2", "h3", "h4", "h0"]})  # c-1 copies a-0
    kept = protocols.make_folds(manifest, "loso", dedup=False)[0]  # tests a, validates on b, trains on c
    assert "c-1" in kept.train and kept.leaky and "1 byte-identical file(s) in both train and test" in kept.notes[0]
    dropped = protocols.make_folds(manifest, "loso")[0]
    assert "c-1" not in dropped.train and not dropped.leaky


# -- 4. a set split by `leaky` takes its interval from its own rows -----------------------------
def test_each_row_of_a_split_set_has_its_own_interval(tmp_path):
    for fold in range(1, 11):  # leaky folds score perfectly, the clean ones poorly
        fake_run(tmp_path, "functionals", "official", fold, 8 if fold <= 3 else 2, extra={"leaky": fold <= 3})
    runs = read_all(tmp_path)
    mean = stats.baseline_columns(table_of(tmp_path)["mean"], runs).set_index("leaky")
    for leaky in (True, False):
        row = mean.loc[leaky]
        assert row.ua_pooled_low <= row.ua_pooled <= row.ua_pooled_high
        own = stats.ci(stats.load_set(records=runs, leaky=leaky))
        assert (row.ua_pooled_low, row.ua_pooled_high) == pytest.approx((own["ua_low"], own["ua_high"]))


# -- 5. a failed fold that demotes the best-validated baseline says so ---------------------------
def test_a_baseline_skipped_for_a_failed_fold_is_named_with_the_reason(tmp_path):
    for fold in range(1, 6):
        fake_run(tmp_path, "light_sernet", "deep", fold, 6)
        fake_run(tmp_path, "functionals", "steady", fold, 5, val_ua=0.6)
        if fold != 3:  # its fold 3 failed
            fake_run(tmp_path, "functionals", "best-on-val", fold, 5, val_ua=0.9)
    out = stats.baseline_columns(table_of(tmp_path)["mean"], read_all(tmp_path)).set_index("name")
    assert out.loc["deep", "baseline"].startswith("functionals/steady")
    note = out.loc["deep", "baseline_note"]
    assert "functionals/best-on-val" in note and "lacks fold(s) [3] (failed or not run)" in note
    assert "val UA 0.900" in note


# -- 6. load_set(fingerprint=…) never mixes two names -----------------------------------------
def test_a_fingerprint_shared_by_two_names_is_two_sets(tmp_path):
    for fold in range(1, 6):
        fake_run(tmp_path, "functionals", "first", fold, 5, fingerprint="f" * 64)
    for fold in range(1, 7):
        fake_run(tmp_path, "functionals", "second", fold, 5, fingerprint="f" * 64)
    runs = read_all(tmp_path)
    with pytest.raises(SplitError, match="matches 2 result sets"):
        stats.load_set(records=runs, fingerprint="ffff")
    assert len(stats.load_set(records=runs, fingerprint="ffff", name="second").records) == 6


# -- 7. a CSV corpus is named by its manifest ----------------------------------------------------
def test_two_csv_corpora_are_two_corpora(tmp_path):
    for name in ("savee", "emovo"):
        corpus = write_csv_corpus(tmp_path / name)
        corpus = corpus.rename(corpus.with_name(f"{name}.csv"))
        rec = run_fold(tiny_config(corpus, tmp_path / "out", name="egemaps-svm"))
        assert rec["corpus_label"] == f"csv-{name}" and f"/csv-{name}/" in rec["path"]
    mean = results.summarise(results.collect(tmp_path / "out" / "results"))["mean"]
    assert sorted(mean.corpus) == ["csv-emovo", "csv-savee"] and mean.comparable.nunique() == 2


# -- 8. labels beside the papers: cross-corpus rows and test-selected LOSO rows ---------------------
def test_cross_corpus_rows_bring_no_references_and_test_selection_is_not_speaker_dependence(tmp_path):
    for fold in (1, 2, 3):
        fake_run(tmp_path, "functionals", "to-ravdess", fold, 2, protocol="cross:ravdess",
                 extra={"test_corpus": "ravdess", "cross_corpus": True})
    beside = results.compare_with_papers(table_of(tmp_path)["mean"])
    assert (beside.source == "measured").sum() == 1
    assert not beside.paper.str.startswith("EmoBox").any()  # no EMO-DB (or RAVDESS) peer rows
    assert "trained on emodb, tested on ravdess" in beside[beside.source == "measured"].label.iloc[0]
    for fold in (1, 2, 3):
        fake_run(tmp_path / "sel", "functionals", "loso-picked", fold, 7, fingerprint="9" * 64,
                 extra={"config": {"selection": "test"}, "leaky": True, "speaker_independent": True})
    ours = results.compare_with_papers(table_of(tmp_path / "sel")["mean"])
    label = ours[ours.source == "measured"].label.iloc[0]
    assert label.startswith("speaker-independent · loso") and "EPOCH SELECTED ON TEST" in label


# -- 9. the code version sees untracked files under the package ------------------------------
def test_an_untracked_module_makes_the_code_version_dirty(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "serlib").mkdir()
    (tmp_path / "serlib" / "__init__.py").write_text("")
    (tmp_path / "pyproject.toml").write_text("")
    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "x", "--allow-empty")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "code")
    commit, dirty, diff = records.read_git_state(tmp_path)
    assert commit and dirty is False and diff is None
    (tmp_path / "serlib" / "new_module.py").write_text("X = 1\n")
    commit2, dirty, first = records.read_git_state(tmp_path)
    assert commit2 == commit and dirty is True and first
    assert records.code_version({"git_commit": commit, "git_dirty": dirty, "git_diff_sha256": first}).startswith(
        commit[:10] + "+")
    (tmp_path / "serlib" / "new_module.py").write_text("X = 2\n")
    assert records.read_git_state(tmp_path)[2] != first  # other untracked content: another version
    (tmp_path / "notes.txt").write_text("outside the package")
    (tmp_path / "serlib" / "new_module.py").unlink()
    assert records.read_git_state(tmp_path)[1] is False


# -- 10. one definition of the fold statistics -------------------------------------------------
def test_the_bundle_card_std_is_the_tables_std(tmp_path):
    from serlib import bundle

    corpus = write_csv_corpus(tmp_path / "c")
    for fold in (1, 2):
        for seed in (1, 2):
            run_fold(tiny_config(corpus, tmp_path / "out", fold=fold, seed=seed, name="two"))
    runs = records.load_records(tmp_path / "out" / "results")
    row = results.summarise(results.collect(runs), runs)["mean"].iloc[0]
    folder = Path(runs[0]["path"]).parent
    card = json.loads((bundle.export(folder, tmp_path / "bundle") / "card.json").read_text())
    scores = card["test_scores"]
    assert scores["ua_mean"] == pytest.approx(row.ua_mean) and scores["ua_std"] == pytest.approx(row.ua_std)
    assert scores["wa_std"] == pytest.approx(row.wa_std)
    assert scores["ua_seed_std"] == pytest.approx(row.ua_seed_std) if not np.isnan(row.ua_seed_std) else True
    per_fold = pd.DataFrame([{"fold": r["config"]["fold"], "ua": r["metrics"]["ua"]} for r in runs])
    assert scores["ua_std"] == pytest.approx(per_fold.groupby("fold").ua.mean().std(ddof=0))


# -- 11. an interval that keeps its promise ---------------------------------------------------
def simulated_set(rng, n_speakers: int, difficulty: np.ndarray, spread: float) -> stats.ResultSet:
    """One LOSO-like result set with known truth: per speaker a random ability (normal,
    sd ``spread`` on the logit scale) shifts every class's recall; 1 + Poisson(6) test
    utterances per speaker and class, drawn independently of the recall."""
    ability = rng.normal(0, spread, n_speakers)
    rows = []
    for s in range(n_speakers):
        for c, cls in enumerate(CLASSES):
            p = 1 / (1 + np.exp(-(difficulty[c] + ability[s])))
            for u in range(1 + rng.poisson(6)):
                right = rng.random() < p
                rows.append((s + 1, f"spk{s}", f"spk{s}-{cls}{u}", cls, cls if right else CLASSES[(c + 1) % 4]))
    p = pd.DataFrame(rows, columns=["fold", "speaker", "utt_id", "truth", "prediction"]).assign(seed=1)
    recs = [{"config": {"fold": f, "seed": 1}, "metrics": {"ua": 0.0, "wa": 0.0}} for f in range(1, n_speakers + 1)]
    return stats.ResultSet("sim", recs, p, CLASSES)


def true_ua(difficulty: np.ndarray, spread: float) -> float:
    """The population's pooled UA: per class, E[correct] / E[total] = E[recall] (counts
    drawn independently of the recall), by Gauss–Hermite quadrature over the ability."""
    x, w = np.polynomial.hermite_e.hermegauss(80)
    w = w / w.sum()
    return float(np.mean([np.sum(w / (1 + np.exp(-(d + spread * x)))) for d in difficulty]))


@pytest.mark.slow
@pytest.mark.parametrize("n_speakers", [10, 24])
def test_the_speaker_interval_covers_at_its_nominal_level(n_speakers):
    difficulty, spread, runs = np.array([0.2, 0.5, 1.0, 1.5]), 0.6, 1000
    truth = true_ua(difficulty, spread)
    rng = np.random.default_rng(27)
    covered = 0
    for _ in range(runs):
        interval = stats.ci(simulated_set(rng, n_speakers, difficulty, spread))
        covered += interval["ua_low"] <= truth <= interval["ua_high"]
    coverage = covered / runs
    print(f"coverage of the 95 % speaker t-interval, {n_speakers} speakers, {runs} runs: {coverage:.3f}")
    assert abs(coverage - 0.95) <= 0.025


# -- 12. a typed record: read-only, no hidden keys, predictions on request ------------------------
def test_a_record_is_typed_read_only_and_holds_only_its_file(tmp_path):
    written = Path(fake_run(tmp_path, "functionals", "x", 1, 6)["path"])
    (rec,) = read_all(tmp_path)
    assert isinstance(rec, records.Record) and rec.path == str(written)
    on_disk = json.loads(written.read_text())
    assert set(rec) == set(on_disk) | {"path", "predictions_path"}  # no hidden keys
    assert rec.to_dict() == on_disk
    with pytest.raises(TypeError):
        rec["leaky"] = True  # read-only
    first = rec.load_predictions()
    assert len(first) == 8 and set(rec) == set(on_disk) | {"path", "predictions_path"}  # nothing cached inside
    first.loc[0, "prediction"] = "changed"
    assert rec.load_predictions().loc[0, "prediction"] != "changed"
    # a record of the layout before the task field is categorical; the key, name and version are its own
    assert "task" not in on_disk and rec.key["task"] == "categorical"
    assert rec.name == "x" and rec.code_version == "a" * 10 and rec.key == records.comparability_key(rec)
