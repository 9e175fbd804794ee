"""Corpus adapters on fixture trees written in the real layouts."""

from pathlib import Path

import pandas as pd
import pytest

from serlib.constants import MANIFEST_COLUMNS
from serlib.corpora import load_corpus, select_classes
from serlib.errors import AudioError, ConfigError, DataError, LabelError
from tests import fixtures


def check_manifest(df: pd.DataFrame):
    assert list(df.columns[: len(MANIFEST_COLUMNS)]) == list(MANIFEST_COLUMNS)
    assert df["utt_id"].is_unique
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in df["path"])
    assert (df["duration"] > 0).all()


# --- IEMOCAP -----------------------------------------------------------------------

def test_iemocap_counts_speakers_and_genders(iemocap_root):
    df = load_corpus("iemocap", iemocap_root)
    check_manifest(df)
    # per session: 9 labelled turns, one xxx dropped -> 8; five sessions
    assert len(df) == 40
    assert df.attrs["dropped"] == {"xxx (no majority)": 5}
    # the speaker is the gender letter of the LAST field, not the dialog's "Ses01F"
    row = df.set_index("utt_id").loc["Ses01F_impro01_M000"]
    assert (row.speaker, row.gender, row.session, row.label) == ("Ses01_M", "M", "Session1", "angry")
    row = df.set_index("utt_id").loc["Ses01M_script01_1_F000"]
    assert (row.speaker, row.gender, row.label) == ("Ses01_F", "F", "sad")
    assert sorted(df.speaker.unique()) == [f"Ses0{s}_{g}" for s in range(1, 6) for g in "FM"]
    assert df.groupby("speaker").size().to_dict()["Ses03_F"] == 5
    assert df.set_index("utt_id").loc["Ses02F_impro01_F001", "text"] == "Text of Ses02F_impro01_F001."
    assert set(df.label) == {"neutral", "angry", "happy", "excited", "sad", "frustrated"}


def test_iemocap_subsets_and_xxx(iemocap_root):
    impro = load_corpus("iemocap", iemocap_root, subset="improvised")
    script = load_corpus("iemocap", iemocap_root, subset="scripted")
    assert impro.improvised.all() and not script.improvised.any()
    assert len(impro) + len(script) == 40
    assert impro.label.value_counts().to_dict() == {"neutral": 5, "angry": 5, "happy": 5, "excited": 5}
    kept = load_corpus("iemocap", iemocap_root.parent, keep_no_majority=True)  # parent folder works too
    assert (kept.label == "other").sum() == 5


def test_iemocap_quirks_are_ignored(iemocap_root):
    df = load_corpus("iemocap", iemocap_root)
    assert not any("._" in p for p in df.path)
    assert not df.utt_id.str.contains("XX").any()  # unlabelled transcript turns


def test_iemocap_unknown_code_raises_or_skips(tmp_path):
    root = fixtures.write_iemocap(tmp_path, extra_code="zzz")
    with pytest.raises(LabelError, match="unknown label code 'zzz'.*Ses01F_impro01_F000"):
        load_corpus("iemocap", root)
    df = load_corpus("iemocap", root, on_error="skip")
    assert len(df) == 39 and len(df.attrs["skipped"]) == 1
    assert "Ses01F_impro01.txt" in df.attrs["skipped"][0][0]


def test_iemocap_missing_and_corrupt_wav(tmp_path):
    root = fixtures.write_iemocap(tmp_path, sessions=(1,))
    wav_dir = root / "Session1" / "sentences" / "wav" / "Ses01F_impro01"
    (wav_dir / "Ses01F_impro01_F000.wav").unlink()
    (wav_dir / "Ses01F_impro01_M000.wav").write_bytes(b"RIFF garbage")
    with pytest.raises(AudioError, match="Ses01F_impro01_F000.wav: file not found"):
        load_corpus("iemocap", root)
    df = load_corpus("iemocap", root, on_error="skip")
    assert len(df) == 6
    assert df.attrs["skipped_by_reason"] == {"file not found": 1, "unreadable audio header": 1}


def test_errors_name_the_path(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_corpus("iemocap", tmp_path / "nope")
    with pytest.raises(DataError, match="no Session1..Session5"):
        load_corpus("iemocap", tmp_path)
    with pytest.raises(DataError, match="needs root"):
        load_corpus("emodb")
    with pytest.raises(ConfigError, match="unknown corpus"):
        load_corpus("imeocap", tmp_path)
    with pytest.raises(ConfigError, match="unknown option.*subsett"):
        load_corpus("iemocap", tmp_path, subsett="improvised")


# --- RAVDESS, EMO-DB, ASVP-ESD ---------------------------------------------------------

def test_ravdess_fields(tmp_path):
    fixtures.write_ravdess(tmp_path, stereo_actor=2)
    df = load_corpus("ravdess", tmp_path)
    check_manifest(df)
    assert len(df) == 4 * 10  # speech only: 2 neutral + 4 happy + 4 angry per actor
    assert df.groupby("speaker").gender.first().to_dict() == {
        "Actor_01": "M", "Actor_02": "F", "Actor_03": "M", "Actor_04": "F"}
    row = df.set_index("utt_id").loc["03-01-05-02-01-01-03"]
    assert (row.label, row.intensity, row.statement, row.repetition) == (
        "angry", "strong", "Kids are talking by the door", 1)
    assert df.text.isna().all()  # fixed statements are not transcripts
    assert set(load_corpus("ravdess", tmp_path, vocal_channel="song").label) == {"happy"}
    assert len(load_corpus("ravdess", tmp_path, vocal_channel="all")) == 44


def test_ravdess_unknown_emotion(tmp_path):
    fixtures.write_ravdess(tmp_path, actors=(1, 2))
    fixtures.write_wav(tmp_path / "Actor_01" / "03-01-09-01-01-01-01.wav")
    with pytest.raises(LabelError, match="03-01-09-01-01-01-01.wav: unknown emotion code '09'"):
        load_corpus("ravdess", tmp_path)
    assert load_corpus("ravdess", tmp_path, on_error="skip").attrs["skipped_by_reason"] == {
        "unknown emotion code '09'": 1}


def test_emodb(tmp_path):
    fixtures.write_emodb(tmp_path)
    df = load_corpus("emodb", tmp_path)
    check_manifest(df)
    by_id = df.set_index("utt_id")
    assert by_id.loc["03a01Fa", ["speaker", "gender", "label", "text_code", "version"]].tolist() == [
        "03", "M", "happy", "a01", "a"]
    assert by_id.loc["16b10Lb", ["gender", "label"]].tolist() == ["F", "boredom"]
    assert df.text.isna().all() and by_id.loc["03a01Fa", "prompt_text"] == "Der Lappen liegt auf dem Eisschrank."
    assert set(df.label) == {"happy", "angry", "neutral", "sad", "boredom", "disgust", "fear"}
    fixtures.write_wav(tmp_path / "wav" / "03a01Xa.wav")
    with pytest.raises(LabelError, match="03a01Xa.wav: unknown emotion letter 'X'"):
        load_corpus("emodb", tmp_path)


def test_asvp_esd_tolerates_missing_fields(tmp_path):
    fixtures.write_asvp(tmp_path)
    df = load_corpus("asvp_esd", tmp_path)
    check_manifest(df)
    assert len(df) == 4
    by_label = df.set_index("label")
    assert by_label.loc["fear", ["gender", "age", "language"]].tolist() == ["M", "20-64", "01"]  # a 10th trailing field is ignored
    assert pd.isna(by_label.loc["happy", "language"])
    assert by_label.loc["other", ["emotion_name", "vocal_channel", "gender"]].tolist() == [
        "breath", "non-speech", "F"]
    assert len(load_corpus("asvp_esd", tmp_path, vocal_channel="speech")) == 3


# --- folder and csv -------------------------------------------------------------------

def test_folder_corpus(tmp_path):
    for label in ("anger", "Neutral"):
        for spk in ("s1", "s2", "s3"):
            fixtures.write_wav(tmp_path / label / f"{spk}_x.wav")
    df = load_corpus("folder", tmp_path, speaker_regex=r"^(?P<speaker>s\d)")
    check_manifest(df)
    assert sorted(df.label.unique()) == ["angry", "neutral"] and df.speaker.nunique() == 3
    fixtures.write_wav(tmp_path / "grumpy" / "s1_y.wav")
    with pytest.raises(LabelError, match="grumpy.*unknown label 'grumpy'"):
        load_corpus("folder", tmp_path)


def test_csv_corpus(tmp_path):
    fixtures.write_wav(tmp_path / "a" / "one.wav")
    fixtures.write_wav(tmp_path / "a" / "two.wav")
    (tmp_path / "m.csv").write_text("path,label,speaker,extra\na/one.wav,hap,7,x\na/two.wav,sadness,8,y\n")
    df = load_corpus("csv", tmp_path / "m.csv")
    check_manifest(df)
    assert df.label.tolist() == ["happy", "sad"] and df.speaker.tolist() == ["7", "8"]
    assert df.extra.tolist() == ["x", "y"]
    (tmp_path / "bad.csv").write_text("path\na/one.wav\n")
    with pytest.raises(DataError, match=r"bad.csv: missing required column\(s\) \['label'\]"):
        load_corpus("csv", tmp_path / "bad.csv")


def test_hash_audio_marks_identical_files(tmp_path):
    fixtures.write_emodb(tmp_path)
    copy = tmp_path / "wav" / "03a01Fb.wav"
    copy.write_bytes((tmp_path / "wav" / "03a01Fa.wav").read_bytes())
    df = load_corpus("emodb", tmp_path, hash_audio=True)
    assert df.audio_hash.nunique() == len(df) - 1
    assert df.set_index("utt_id").audio_hash["03a01Fa"] == df.set_index("utt_id").audio_hash["03a01Fb"]


# --- select_classes -------------------------------------------------------------------

def test_select_classes_merges_and_reports(iemocap_root):
    df = load_corpus("iemocap", iemocap_root)
    four = select_classes(df)
    assert set(four.label) == {"neutral", "happy", "sad", "angry"}
    assert four.attrs["dropped"] == {"xxx (no majority)": 5, "excited": 5, "frustrated": 5}
    merged = select_classes(df, merge={"excited": "happy"})
    assert (merged.label == "happy").sum() == 10
    assert merged.attrs["dropped"]["frustrated"] == 5
    with pytest.raises(ConfigError, match="unknown label"):
        select_classes(df, ("neutral", "hapy"))


def test_emodb_shared_copy(emodb_root):
    df = load_corpus("emodb", emodb_root)
    assert len(df) == 535 and df.speaker.nunique() == 10
    assert df.label.value_counts().to_dict() == {
        "angry": 127, "boredom": 81, "neutral": 79, "happy": 71, "fear": 69, "sad": 62, "disgust": 46}
    assert df.groupby("speaker").gender.first().value_counts().to_dict() == {"M": 5, "F": 5}
    assert df.duration.round(3).eq(2.0).all()
