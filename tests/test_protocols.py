"""Folds: disjointness, numbering, determinism, the overlap error, duplicates."""

import pandas as pd
import pytest

from serlib.corpora import load_corpus
from serlib.errors import ConfigError, SplitError
from serlib.protocols import Fold, check_disjoint, folds_table, make_folds
from tests import fixtures


@pytest.fixture(scope="module")
def iemocap(iemocap_root):
    return load_corpus("iemocap", iemocap_root)


def speakers(df, ids):
    return set(df.set_index("utt_id").loc[ids, "speaker"])


def test_iemocap_loso_follows_table_2(iemocap):
    folds = make_folds(iemocap, "loso")
    assert [f.number for f in folds] == list(range(1, 11))
    assert [f.test_speakers[0] for f in folds] == [f"Ses0{s}_{g}" for s in range(1, 6) for g in "FM"]
    fold5 = folds[4]  # fold 5 tests Session3 F and validates on Session3 M
    assert fold5.test_speakers == ["Ses03_F"] and fold5.val_speakers == ["Ses03_M"]
    assert not {"Ses03_F", "Ses03_M"} & speakers(iemocap, fold5.train)
    assert len(speakers(iemocap, fold5.train)) == 8  # the four other sessions
    for f in folds:
        assert f.speaker_independent
        assert set(f.train) | set(f.val) | set(f.test) == set(iemocap.utt_id)


def test_loso_without_sessions_uses_next_speaker(tmp_path):
    fixtures.write_emodb(tmp_path, names=("03a01Fa", "08a01Wa", "09a01Na", "10a01Ta"))
    df = load_corpus("emodb", tmp_path)
    folds = make_folds(df, "loso")
    assert [(f.test_speakers, f.val_speakers) for f in folds] == [
        (["03"], ["08"]), (["08"], ["09"]), (["09"], ["10"]), (["10"], ["03"])]
    assert all(len(f.train) == 2 for f in folds)


def test_session_and_group_kfold(iemocap):
    sessions = make_folds(iemocap, "session")
    assert len(sessions) == 5 and sessions[0].val_speakers == ["Ses02_F", "Ses02_M"]
    groups = make_folds(iemocap, "group_kfold:5")
    assert [f.test_speakers for f in groups][0] == ["Ses01_F", "Ses01_M"]
    for f in sessions + groups:
        check_disjoint(f, iemocap)


def test_stratified_is_flagged_speaker_dependent(iemocap):
    folds = make_folds(iemocap, "stratified_kfold:4", seed=1)
    assert all(not f.speaker_independent for f in folds)
    assert any(speakers(iemocap, f.train) & speakers(iemocap, f.test) for f in folds)
    assert sorted(u for f in folds for u in f.test) == sorted(iemocap.utt_id)


def test_deterministic(iemocap):
    a, b = make_folds(iemocap, "stratified_kfold:4", seed=3), make_folds(iemocap, "stratified_kfold:4", seed=3)
    assert [f.test for f in a] == [f.test for f in b]
    assert [f.test for f in make_folds(iemocap, "loso")] == [f.test for f in make_folds(iemocap, "loso")]
    assert isinstance(folds_table(a), pd.DataFrame) and len(folds_table(a)) == 4


def test_overlap_raises(iemocap):
    fold = make_folds(iemocap, "loso")[0]
    leaked = Fold(1, fold.train + fold.test[:1], fold.val, fold.test[1:], fold.test_speakers,
                  fold.val_speakers, True)
    with pytest.raises(SplitError, match="speaker.*Ses01_F.*train and test"):
        check_disjoint(leaked, iemocap)
    dup = Fold(1, fold.train + fold.test[:1], fold.val, fold.test, [], [], False)
    with pytest.raises(SplitError, match="1 utterances in both train and test"):
        check_disjoint(dup, iemocap)


def test_unknown_protocol(iemocap):
    with pytest.raises(ConfigError, match="unknown protocol"):
        make_folds(iemocap, "random")
    with pytest.raises(ConfigError):
        make_folds(iemocap, "group_kfold:x")


def test_duplicate_audio_stays_on_one_side(iemocap):
    df = iemocap.copy()
    df["audio_hash"] = df.utt_id  # all distinct ...
    test_utt = make_folds(df, "loso")[0].test[0]
    train_utt = make_folds(df, "loso")[0].train[0]
    df.loc[df.utt_id == train_utt, "audio_hash"] = test_utt  # ... but one train file copies a test file
    fold = make_folds(df, "loso")[0]
    assert train_utt not in fold.train and test_utt in fold.test
    assert fold.notes == ["removed duplicate audio: 0 from val, 1 from train"]


def test_missing_speakers_are_an_error(iemocap):
    df = iemocap.copy()
    df.loc[0, "speaker"] = None
    with pytest.raises(SplitError, match="without a speaker"):
        make_folds(df, "loso")
