"""Comparisons you can publish (issue 20): like with like, the comparator chosen before the
test, the code version in every row. One test (or more) per defect; each failed before
its fix. Records are written by hand with the record writer (no training) unless a test
needs the engine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from serlib import experiments, metrics, protocols, records, results, stats
from serlib.errors import DataError, SplitError
from serlib.fields import runtime_fields
from serlib.train import TrainingError, run_fold
from tests.fixtures import tiny_config, write_csv_corpus

CLASSES = ["angry", "happy", "neutral", "sad"]
SPEAKERS = [f"s{k}" for k in range(1, 11)]  # LOSO: fold k tests s_k, validates on s_{k+1}


def fake_run(root: Path, experiment: str, name: str, fold: int, right: int, *, seed: int = 1, val_ua: float = 0.5,
             speaker_norm: bool = False, commit: str = "a" * 40, fingerprint: str | None = None, n: int = 8,
             probabilities: np.ndarray | None = None, protocol: str = "loso", extra: dict | None = None) -> dict:
    """Write one record + predictions the way the engine does (records.write): fold k's
    test speaker is s_k, its validation speaker s_{k+1}; the first ``right`` of ``n``
    utterances are predicted right, the rest as the next class. ``extra``: record fields
    to set (``config`` entries merged into the config)."""
    truth = [CLASSES[i % 4] for i in range(n)]
    pred = [t if i < right else CLASSES[(i + 1) % 4] for i, t in enumerate(truth)]
    speaker, val_speaker = SPEAKERS[(fold - 1) % 10], SPEAKERS[fold % 10]
    preds = pd.DataFrame({"utt_id": [f"{speaker}-u{i}" for i in range(n)], "speaker": speaker, "truth": truth,
                          "prediction": pred})
    if probabilities is None:
        probabilities = np.array([[0.7 if c == p else 0.1 for c in CLASSES] for p in pred])
    for j, c in enumerate(CLASSES):
        preds[f"p_{c}"] = probabilities[:, j]
    fp = fingerprint or (("b" if speaker_norm else "a") * 32 + name.encode().hex()[:32].ljust(32, "0"))
    config = {"experiment": experiment, "name": name, "protocol": protocol, "fold": fold, "seed": seed,
              "selection": "val", "recipe": {"speaker_norm": speaker_norm}}
    record = {"config": config, "fingerprint": fp, "corpus_label": "emodb", "classes": CLASSES,
              "leaky": False, "speaker_independent": True, "uses_test_speaker_audio": speaker_norm,
              "metrics": {"wa": metrics.weighted_accuracy(truth, pred, CLASSES),
                          "ua": metrics.unweighted_accuracy(truth, pred, CLASSES),
                          "macro_f1": metrics.macro_f1(truth, pred, CLASSES), "labels": CLASSES, "n": n,
                          "recall": metrics.per_class_recall(truth, pred, CLASSES),
                          "confusion": metrics.confusion(truth, pred, CLASSES).tolist()},
              "best_epoch": 1, "best_selection_ua": val_ua, "history": [{"epoch": 1, "val_ua": val_ua}],
              "test_speakers": [speaker], "val_speakers": [val_speaker],
              "timing": {"total_seconds": 1.0, "seconds_per_epoch": 1.0}, "device": "cpu",
              "provenance": {"git_commit": commit, "git_dirty": False}}
    extra = dict(extra or {})
    config.update(extra.pop("config", {}))
    record.update(extra)
    stem = records.record_stem(root / "results", experiment, records.record_name(record), record["corpus_label"],
                               protocol, fp, fold, seed)
    return {"path": str(records.write(record, preds, stem))}


def read_all(root: Path) -> list[dict]:
    return records.load_records(root / "results")


def table_of(root: Path, **kw) -> dict[str, pd.DataFrame]:
    runs = read_all(root)
    return results.summarise(results.collect(runs), runs, **kw)


# -- 1. per-speaker normalisation is visible and a key of every comparison ------------------
def test_speaker_norm_is_in_the_name_a_column_and_a_key_of_the_baseline(tmp_path):
    for fold in (1, 2, 3, 4):
        fake_run(tmp_path, "light_sernet", "modern", fold, 6)
        fake_run(tmp_path, "light_sernet", "modern", fold, 8, speaker_norm=True)
        # the normalised baseline is better on validation AND test: it must still never be
        # the comparator of the plain rows
        fake_run(tmp_path, "functionals", "compare-svm", fold, 5, val_ua=0.6)
        fake_run(tmp_path, "functionals", "compare-svm", fold, 7, val_ua=0.9, speaker_norm=True)
    runs = read_all(tmp_path)
    tables = results.summarise(results.collect(runs), runs)
    mean = tables["mean"]
    assert "uses_test_speaker_audio" in tables["per_fold"] and "uses_test_speaker_audio" in mean
    names = set(mean[mean.experiment == "light_sernet"].name)
    assert names == {"modern", "modern+speaker-norm"}
    assert (mean.uses_test_speaker_audio == mean.name.str.endswith("+speaker-norm")).all()
    out = stats.baseline_columns(mean, runs).set_index("name")
    assert out.loc["modern", "baseline"].startswith("functionals/compare-svm [")
    assert "+speaker-norm" not in out.loc["modern", "baseline"]
    assert out.loc["modern+speaker-norm", "baseline"].startswith("functionals/compare-svm+speaker-norm [")
    # ResultSets say so in their label, and a plain compare of the two kinds is refused
    plain = stats.load_set(records=runs, experiment="light_sernet", name="modern", fingerprint="a")
    normed = stats.load_set(records=runs, name="modern+speaker-norm")
    assert normed.label.startswith("light_sernet/modern+speaker-norm") and normed.uses_test_speaker_audio
    with pytest.raises(SplitError, match="uses the test speakers' audio"):
        stats.compare(normed, plain)
    assert not stats.compare(normed, plain, mixed_test_audio=True)["like_with_like"]
    with pytest.raises(SplitError, match="like with like"):
        stats.pairwise([normed, plain])
    assert stats.pairwise([normed, plain], mixed_test_audio=True).shape == (2, 2)
    # beside the papers, the label says it
    beside = results.compare_with_papers(mean)
    row = beside[(beside.source == "measured") & beside.variant.str.startswith("modern+speaker-norm")].iloc[0]
    assert row.uses_test_speaker_audio and "uses the test speakers' audio" in row.label


def test_exported_card_keeps_the_speaker_norm_suffix(tmp_path):
    from serlib import bundle

    corpus = write_csv_corpus(tmp_path / "c")
    rec = run_fold(tiny_config(corpus, tmp_path / "out", **{"recipe.speaker_norm": "true", "name": "sn"}))
    card = json.loads((bundle.export(rec["path"], tmp_path / "bundle") / "card.json").read_text())
    assert card["name"] == "sn+speaker-norm" and card["uses_test_speaker_audio"] is True


# -- 2. two code versions are never averaged into one row; no silent resume across code ------
def test_a_table_from_two_commits_shows_the_split_not_a_mean(tmp_path):
    for fold in range(1, 11):  # nine folds at one commit, one fold re-run after a change
        fake_run(tmp_path, "functionals", "compare-svm", fold, 4 if fold == 1 else 6,
                 commit=("c" if fold == 1 else "a") * 40)
    mean = table_of(tmp_path)["mean"]
    assert len(mean) == 2 and set(mean.code_version) == {"a" * 10, "c" * 10}
    assert mean.set_index("code_version").n_folds.to_dict() == {"a" * 10: 9, "c" * 10: 1}
    assert mean.versions_note.str.contains("spans 2 code versions").all()
    merged = table_of(tmp_path, versions="merge")["mean"]
    assert len(merged) == 1 and merged.versions_note[0].startswith("MIXES 2 code versions")
    assert merged.n_folds[0] == 10
    # the comparisons refuse to pool them silently as well
    runs = read_all(tmp_path)
    with pytest.raises(SplitError, match="2 code versions"):
        stats.load_set(records=runs, name="compare-svm")
    assert stats.load_set(records=runs, name="compare-svm", code_version="a" * 10).folds == list(range(2, 11))
    assert "MIXES code" in stats.load_set(records=runs, name="compare-svm", mixed_versions=True).label
    # the mean table still gets its baseline columns, one version per row
    out = stats.baseline_columns(mean, runs)
    assert len(out) == 2


def test_code_version_tells_dirty_trees_apart():
    clean = {"git_commit": "0123456789abcdef", "git_dirty": False}
    assert records.code_version(clean) == "0123456789"
    assert records.code_version({**clean, "git_dirty": True, "git_diff_sha256": "ab" * 32}) == "0123456789+abababab"
    assert records.code_version(None) == records.code_version({"git_commit": None}) == "unknown"
    assert "git_diff_sha256" in records.provenance()


def test_a_checkpoint_of_other_code_is_refused_unless_asked(tmp_path, monkeypatch):
    from serlib.train import Trainer

    corpus = write_csv_corpus(tmp_path / "c")
    config = tiny_config(corpus, tmp_path / "out", epochs="2", name="guard")
    original = Trainer.save_checkpoint

    def save_then_stop(self):
        original(self)
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(Trainer, "save_checkpoint", save_then_stop)
        with pytest.raises(KeyboardInterrupt):
            run_fold(config)
    checkpoint = next((tmp_path / "out").rglob("guard/**/checkpoint.pt"))
    blob = torch.load(checkpoint, weights_only=True)
    assert blob["code_version"] == records.code_version(records.provenance())
    blob["code_version"] = "0" * 10  # as if written before a commit that changed the code
    torch.save(blob, checkpoint)
    resume = {"epochs": "2", "name": "guard", "resume": "true"}
    with pytest.raises(TrainingError, match="written by code version 0000000000"):
        run_fold(tiny_config(corpus, tmp_path / "out", **resume))
    rec = run_fold(tiny_config(corpus, tmp_path / "out", **resume, resume_other_code="true"))
    assert rec["resumed_from_code"] == "0" * 10
    assert results.collect([records.read_record(rec["path"])]).code_version[0].endswith("(resumed from 0000000000)")
    # asking to resume is a run-time switch: it never changes the fingerprint
    assert "resume_other_code" in runtime_fields(tiny_config(corpus, tmp_path / "out"))
    assert rec["fingerprint"] == records.read_record(rec["path"])["fingerprint"]
    plain = records.run_fingerprint(tiny_config(corpus, tmp_path / "out"), pd.read_csv(corpus).assign(
        utt_id=lambda d: d.path, audio_hash=lambda d: d.path))[0]
    asked = records.run_fingerprint(tiny_config(corpus, tmp_path / "out", resume_other_code="true"),
                                    pd.read_csv(corpus).assign(utt_id=lambda d: d.path, audio_hash=lambda d: d.path))[0]
    assert plain == asked


# -- 3. the comparator is chosen on validation (or named); p-values of a table Holm-corrected --
def test_the_baseline_is_chosen_on_validation_and_the_table_is_holm_corrected(tmp_path):
    for fold in range(1, 7):
        # "lucky" wins on test but loses on validation: choosing on test would pick it
        fake_run(tmp_path, "functionals", "lucky", fold, 7, val_ua=0.4)
        fake_run(tmp_path, "functionals", "steady", fold, 5, val_ua=0.8)
        fake_run(tmp_path, "light_sernet", "deep-a", fold, 6)
        fake_run(tmp_path, "light_sernet", "deep-b", fold, 4 if fold % 2 else 5)
    runs = read_all(tmp_path)
    out = stats.baseline_columns(table_of(tmp_path)["mean"], runs).set_index("name")
    assert out.loc["steady", "baseline"] == "(this is the baseline)"
    assert out.loc["deep-a", "baseline"].startswith("functionals/steady [")
    assert (out.baseline_chosen_on == "validation UA").all()
    tested = out.p_raw_vs_baseline.notna()
    assert tested.sum() == 3 and "p_vs_baseline" not in out
    assert out.p_holm_vs_baseline[tested].tolist() == stats.holm(out.p_raw_vs_baseline[tested].tolist())
    # named by the user instead
    named = stats.baseline_columns(table_of(tmp_path)["mean"], runs, baseline="lucky").set_index("name")
    assert named.loc["deep-a", "baseline"].startswith("functionals/lucky [")
    assert named.loc["deep-a", "baseline_chosen_on"] == "named by the user"
    # for the notebooks: the same choice and a Holm-corrected table of comparisons
    sets = {n: stats.load_set(records=runs, name=n) for n in ("lucky", "steady", "deep-a", "deep-b")}
    chosen = stats.choose_baseline([sets["lucky"], sets["steady"]])
    assert chosen is sets["steady"]
    table = stats.versus(sets, chosen)
    assert len(table) == 3 and table.p_perm_ua_holm.tolist() == stats.holm(table.p_perm_ua.tolist())


# -- 4. the Monte Carlo sign-flip p-value is never 0 ------------------------------------------
def test_sign_flip_beyond_16_folds_is_never_zero():
    p = stats.sign_flip_test(np.full(24, 0.1), n_random=20000)  # RAVDESS LOAO: 24 folds, all won
    assert p == pytest.approx(1 / 20001)
    assert stats.sign_flip_test(np.full(16, 0.1)) == pytest.approx(2 / 2**16)  # exact branch unchanged


# -- 5. McNemar counts each utterance once ---------------------------------------------------
def test_mcnemar_uses_one_prediction_per_utterance(tmp_path):
    rng = np.random.default_rng(0)
    for fold in (1, 2, 3):
        for seed in (1, 2, 3):
            fake_run(tmp_path, "light_sernet", "seeds", fold, 5 + seed % 2, seed=seed,
                     probabilities=rng.dirichlet(np.ones(4), size=8))
            fake_run(tmp_path, "light_sernet", "other", fold, 4, seed=seed)
    runs = read_all(tmp_path)
    a, b = stats.load_set(records=runs, name="seeds"), stats.load_set(records=runs, name="other")
    result = stats.compare(a, b)
    assert result["mcnemar_n"] == 3 * 8  # utterances, not utterances × seeds (72)
    assert result["only_a_right"] + result["only_b_right"] <= 24
    assert "seed ensemble" in result["mcnemar_on"]
    ensemble, how = stats.one_prediction_per_utterance(a)
    expected = stats.seed_ensemble(a).predictions.sort_values(["fold", "utt_id"]).prediction.tolist()
    assert ensemble.sort_values(["fold", "utt_id"]).prediction.tolist() == expected


# -- 6. one std: over folds of the seed means; the seed std apart -----------------------------
def test_std_is_over_folds_of_seed_means_and_the_seed_std_is_separate(tmp_path):
    # fold 1: seeds give UA 0.25 and 0.75 (mean 0.5); fold 2: 0.5 and 0.5
    for fold, rights in ((1, (2, 6)), (2, (4, 4))):
        for seed, right in enumerate(rights, start=1):
            fake_run(tmp_path, "light_sernet", "x", fold, right, seed=seed)
    row = table_of(tmp_path)["mean"].iloc[0]
    assert row.ua_mean == pytest.approx(0.5) and row.ua_std == pytest.approx(0.0)  # fold means 0.5, 0.5
    assert row.ua_seed_std == pytest.approx(0.125)  # (0.25 + 0) / 2
    interval = stats.ci(stats.load_set(records=read_all(tmp_path), name="x"))
    assert interval["ua_std"] == pytest.approx(row.ua_std) and interval["ua_seed_std"] == pytest.approx(0.125)


# -- 7. every reference row carries its real protocol, class count and metric ------------------
def test_reference_rows_are_labelled_and_never_unlabelled_beside_ours(tmp_path):
    table = experiments.reference_table()
    emobox = table[table.paper.str.startswith("EmoBox")]
    emodb, ravdess = emobox[emobox.corpus == "emodb"], emobox[emobox.corpus == "ravdess"]
    assert not emodb.speaker_independent.any() and (emodb.n_classes == 7).all()
    assert emodb.protocol.str.contains("speaker-DEPENDENT").all() and not emodb.protocol.str.contains("loso").any()
    assert (ravdess.n_classes == 8).all() and ravdess.protocol.str.contains("shuffled").all()
    assert emobox.metric.str.contains("leaderboard").sum() == 6
    assert table.n_classes.notna().all() and table.metric.str.len().gt(0).all()
    for fold in (1, 2, 3):
        fake_run(tmp_path, "functionals", "compare-svm", fold, 6)
    beside = results.compare_with_papers(table_of(tmp_path)["mean"])
    assert set(beside.source) == {"measured", "paper"} and beside.label.str.len().gt(0).all()
    peers = beside[beside.paper.str.startswith("EmoBox")]
    assert len(peers) == 3 and peers.label.str.startswith("SPEAKER-DEPENDENT").all()
    ours = beside[beside.source == "measured"].iloc[0]
    assert ours.label == "speaker-independent · loso · 4 classes · WA and UA (mean over folds)"


# -- 8. a chosen preset's gain on speakers that took no part in the choice; a nested choice -----
def test_gain_on_unseen_folds_and_the_nested_choice(tmp_path):
    for fold in range(1, 11):
        fake_run(tmp_path, "light_sernet", "paper", fold, 4, val_ua=0.6)
        # "modern" wins on validation in folds 1-5 only; its test UA is better on 2-6
        fake_run(tmp_path, "light_sernet", "modern", fold, 6 if 2 <= fold <= 6 else 5,
                 val_ua=0.7 if fold <= 5 else 0.5)
    runs = read_all(tmp_path)
    paper, modern = stats.load_set(records=runs, name="paper"), stats.load_set(records=runs, name="modern")
    choice = [paper.restrict(range(1, 6)), modern.restrict(range(1, 6))]  # the choice saw folds 1-5
    assert stats.unseen_folds(choice, modern) == [1, 7, 8, 9, 10]  # validation speakers s2-s6 = test of 2-6
    gain = stats.gain_on_unseen(modern, paper, choice)
    assert gain["folds_used"] == [1, 7, 8, 9, 10] and gain["n_folds"] == 5
    assert gain["ua_diff_mean"] == pytest.approx(0.125)  # 5 vs 4 of 8, not the 0.25 of folds 2-6
    nested, table = stats.nested_choice({"paper": paper, "modern": modern})
    assert table.chosen.tolist() == ["modern"] * 5 + ["paper"] * 5
    assert nested.folds == list(range(1, 11))
    assert stats.compare(nested, paper)["folds_won"] == 5


# -- a protocol for official splits -----------------------------------------------------------
def test_folds_file_by_utterance_and_by_speaker(tmp_path):
    manifest = pd.DataFrame({"utt_id": [f"{s}-{i}" for s in ("a", "b", "c") for i in range(4)],
                             "speaker": [s for s in ("a", "b", "c") for _ in range(4)],
                             "label": ["happy", "sad"] * 6})
    by_speaker = tmp_path / "folds.jsonl"
    by_speaker.write_text("\n".join(json.dumps({"speaker": s, "fold": f, "role": r}) for f, roles in
                                    ((1, {"a": "train", "b": "valid", "c": "test"}),
                                     (2, {"c": "train", "a": "dev", "b": "test"})) for s, r in roles.items()))
    folds = protocols.make_folds(manifest, f"folds_file:{by_speaker}")
    assert [f.test_speakers for f in folds] == [["c"], ["b"]] and all(f.speaker_independent for f in folds)
    assert not any(f.leaky for f in folds) and folds[0].val == ["b-0", "b-1", "b-2", "b-3"]
    # EmoBox-style: utterances of every speaker on every side — flagged, not refused
    rows = [(u, 1, "test" if u.endswith("-0") else "val" if u.endswith("-1") else "train") for u in manifest.utt_id]
    by_utt = tmp_path / "folds.csv"
    pd.DataFrame(rows + [("gone-9", 1, "train")], columns=["utt_id", "fold", "role"]).to_csv(by_utt, index=False)
    (fold,) = protocols.make_folds(manifest, f"folds_file:{by_utt}")
    assert not fold.speaker_independent and fold.leaky and fold.test_speakers == ["a", "b", "c"]
    assert any("speaker-dependent" in n for n in fold.notes) and any("not in the manifest" in n for n in fold.notes)
    # an utterance on two sides of one fold is an error in the file, named
    pd.DataFrame(rows + [("a-0", 1, "train")], columns=["utt_id", "fold", "role"]).to_csv(by_utt, index=False)
    with pytest.raises(DataError, match="folds.csv.*'a-0' has 2 roles in fold 1"):
        protocols.make_folds(manifest, f"folds_file:{by_utt}")
    bad = tmp_path / "bad.csv"
    bad.write_text("utt_id,fold,role\na-0,1,holdout\n")
    with pytest.raises(DataError, match="role 'holdout'"):
        protocols.make_folds(manifest, f"folds_file:{bad}")


def test_a_run_on_a_folds_file_is_flagged_and_fingerprinted_by_its_content(tmp_path):
    corpus = write_csv_corpus(tmp_path / "c")
    table = pd.read_csv(corpus)
    # speaker-dependent by design: one file of each speaker tested, the rest trains or validates
    roles = ["test" if p.endswith("0.wav") and ("neutral" in p or "angry" in p)
             else "val" if p.endswith("1.wav") and ("happy" in p or "sad" in p) else "train" for p in table.path]
    folds_file = tmp_path / "official.csv"
    ids = [Path(p).stem for p in table.path]  # the csv corpus's utterance ids
    pd.DataFrame({"utt_id": ids, "fold": 1, "role": roles}).to_csv(folds_file, index=False)
    rec = run_fold(tiny_config(corpus, tmp_path / "out", protocol=f"folds_file:{folds_file}"))
    assert rec["leaky"] and not rec["speaker_independent"]
    assert rec["identity"]["settings"]["folds_file_sha256"]
    first = rec["fingerprint"]
    pd.DataFrame({"utt_id": ids, "fold": 1, "role": roles[::-1]}).to_csv(folds_file, index=False)
    config = tiny_config(corpus, tmp_path / "out", protocol=f"folds_file:{folds_file}")
    from serlib.manifests import run_manifest

    assert records.run_fingerprint(config, run_manifest(config))[0] != first
