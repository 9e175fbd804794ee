"""The field's acted corpora (CREMA-D, SAVEE, TESS, EMOVO, ESD, URDU, ShEMO) on fixture
trees in each release's layout, quirks included (tests/fixtures.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from serlib.corpora import load_corpus, prepare_manifest
from serlib.errors import ConfigError, LabelError, SplitError
from serlib.protocols import make_folds
from tests import fixtures
from tests.test_corpora import check_manifest

# corpus: (writer, files, speakers, labels)
CASES = {
    "crema_d": (fixtures.write_crema_d, 32, {"1001", "1002", "1003", "1004"}, {"angry", "happy", "neutral", "sad"}),
    "savee": (fixtures.write_savee, 60, {"DC", "JE", "JK", "KL"},
              {"angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"}),
    "tess": (fixtures.write_tess, 42, {"OAF", "YAF"},
             {"angry", "disgust", "fear", "happy", "neutral", "sad", "pleasant_surprise"}),
    "emovo": (fixtures.write_emovo, 84, {"f1", "f2", "f3", "m1", "m2", "m3"},
              {"disgust", "happy", "neutral", "fear", "angry", "surprise", "sad"}),
    "esd": (fixtures.write_esd, 50, {"0001", "0002", "0011", "0012", "0013"},
            {"neutral", "angry", "happy", "sad", "surprise"}),
    "urdu": (fixtures.write_urdu, 20, {"SM1", "SM2", "SF1", "SF2"}, {"angry", "happy", "neutral", "sad"}),
    "shemo": (fixtures.write_shemo, 24, {"F01", "F02", "M01", "M02"},
              {"angry", "fear", "happy", "neutral", "sad", "surprise"}),
}


@pytest.mark.parametrize("corpus", sorted(CASES))
def test_adapter_reads_its_release_layout(corpus, tmp_path):
    writer, n_files, speakers, labels = CASES[corpus]
    writer(tmp_path)
    df = load_corpus(corpus, tmp_path)
    check_manifest(df)
    assert len(df) == n_files
    assert set(df.speaker) == speakers
    assert set(df.label) == labels
    assert (df.corpus == corpus).all()
    # each speaker's utterances are counted in full: the same number per speaker here
    # (URDU's SM1 speaks twice per emotion, SAVEE has 15 files per speaker)
    if corpus != "urdu":
        assert df.groupby("speaker").size().nunique() == 1


@pytest.mark.parametrize("corpus, bad_name", [
    ("crema_d", "AudioWAV/1001_DFA_CAL_XX.wav"), ("savee", "ALL/DC_x01.wav"), ("tess", "OAF_x/OAF_back_calm.wav"),
    ("emovo", "EMOVO/f1/col-f1-b1.wav"), ("urdu", "URDU-Dataset-master/Angry/SM1_F1_X01.wav"),
    ("shemo", "female/F01C01.wav"), ("esd", "Emotion Speech Dataset/0011/Angry/0011_001751.wav"),
])
def test_undocumented_code_raises_or_is_a_counted_skip(corpus, bad_name, tmp_path):
    writer, n_files, _, _ = CASES[corpus]
    writer(tmp_path)
    fixtures.write_wav(tmp_path / bad_name)
    stem = bad_name.rsplit("/", 1)[1]
    with pytest.raises(LabelError, match=stem):
        load_corpus(corpus, tmp_path)
    df = load_corpus(corpus, tmp_path, on_error="skip")
    assert len(df) == n_files and len(df.attrs["skipped"]) == 1 and stem in df.attrs["skipped"][0][0]


def test_crema_d_fields_and_demographics(tmp_path):
    fixtures.write_crema_d(tmp_path)
    df = load_corpus("crema_d", tmp_path).set_index("utt_id")
    assert df.loc["1001_IEO_ANG_HI", ["speaker", "gender", "age", "label", "sentence", "level"]].tolist() == [
        "1001", "M", 51.0, "angry", "IEO", "high"]
    assert df.loc["1002_DFA_HAP_XX", ["gender", "level", "prompt_text"]].tolist() == [
        "F", "unspecified", "Don't forget a jacket."]
    assert pd.isna(df.loc["1004_DFA_NEU_XX", "gender"])  # not in VideoDemographics.csv
    assert df.text.isna().all()
    # the FLAC file named .wav is read by its header, not its extension
    assert df.loc["1004_DFA_SAD_XX", "duration"] == pytest.approx(0.25)


def test_corrupt_header_is_named_or_skipped(tmp_path):
    fixtures.write_crema_d(tmp_path)
    (tmp_path / "AudioWAV" / "1001_ITS_FEA_XX.wav").write_text("not audio\n")
    with pytest.raises(Exception, match="1001_ITS_FEA_XX.wav: unreadable audio header"):
        load_corpus("crema_d", tmp_path)
    df = load_corpus("crema_d", tmp_path, on_error="skip")
    assert len(df) == 32 and df.attrs["skipped_by_reason"] == {"unreadable audio header": 1}


def test_savee_both_layouts_agree(tmp_path):
    flat = load_corpus("savee", fixtures.write_savee(tmp_path / "flat"))
    folders = load_corpus("savee", fixtures.write_savee(tmp_path / "orig", layout="folders"))
    columns = ["utt_id", "speaker", "gender", "label", "text_code"]
    assert flat[columns].equals(folders[columns])
    assert flat.set_index("utt_id").loc["JK_sa02", ["speaker", "label", "text_code"]].tolist() == ["JK", "sad", "sa02"]
    assert (flat.gender == "M").all()
    # the name wins over the folder; both layouts unpacked together: repeats are counted skips
    fixtures.write_wav(tmp_path / "orig" / "AudioData" / "DC" / "KL_h01.wav")
    both = load_corpus("savee", tmp_path)
    assert len(both) == 60 and both.attrs["skipped_by_reason"] == {"repeated utterance": 61}
    assert both.set_index("utt_id").loc["KL_h01", "speaker"] == "KL"


def test_tess_reads_names_not_folders(tmp_path):
    fixtures.write_tess(tmp_path)
    df = load_corpus("tess", tmp_path).set_index("utt_id")
    assert df.loc["YAF_bar_sad", "label"] == "sad"  # in the YAF_happy folder
    assert df.loc["OAF_back_ps", ["label", "word", "gender", "age"]].tolist() == ["pleasant_surprise", "back", "F", 64]
    assert "surprise" not in set(df.label)  # pleasant surprise stays its own label


def test_tess_two_speakers_refuse_loso_with_the_alternative(tmp_path):
    df = load_corpus("tess", fixtures.write_tess(tmp_path))
    for protocol in ("loso", "group_kfold:3"):
        with pytest.raises(SplitError, match=r"2 speakers \(OAF, YAF\).*cross:tess.*stratified_kfold"):
            make_folds(df, protocol)
    folds = make_folds(df, "stratified_kfold:3")
    assert not any(f.speaker_independent for f in folds)


def test_emovo_speaker_from_the_name(tmp_path):
    fixtures.write_emovo(tmp_path)
    df = load_corpus("emovo", tmp_path)
    row = df.set_index("utt_id").loc["tri-m3-n3"]  # in the folder spelled M3
    assert (row.speaker, row.gender, row.label, row.text_code) == ("m3", "M", "sad", "n3")
    assert df.groupby("gender").speaker.nunique().to_dict() == {"F": 3, "M": 3}


def test_esd_language_number_and_prompts(tmp_path):
    fixtures.write_esd(tmp_path)
    df = load_corpus("esd", tmp_path).set_index("utt_id")
    assert df.loc["0012_000351", "label"] == "angry"  # filed under Happy/: the number decides
    assert df.loc["0011_000351", ["language", "gender", "text_code", "prompt_text"]].tolist() == [
        "en", "M", 1, "The nine the eggs, I keep."]
    assert pd.isna(df.loc["0011_000351", "partition"])  # a flat copy has no partition folders
    assert df.loc["0001_000001", ["language", "gender", "prompt_text", "partition"]].tolist() == [
        "zh", "F", "打远一看，它们的确很是美丽。", "train"]
    assert df.loc["0002_000001", "prompt_text"] == "他们的确很美。"
    assert df.loc["0013_000001", "prompt_text"] == "A café, they said."
    assert df.text.isna().all()
    english = load_corpus("esd", tmp_path, language="en")
    assert set(english.language) == {"en"} and english.speaker.nunique() == 3


def test_urdu_and_shemo_speakers(tmp_path):
    urdu = load_corpus("urdu", fixtures.write_urdu(tmp_path / "u")).set_index("utt_id")
    assert urdu.loc["SF2_F10_S01", ["speaker", "gender", "label", "file"]].tolist() == ["SF2", "F", "sad", "F10"]
    shemo = load_corpus("shemo", fixtures.write_shemo(tmp_path / "s"))
    assert shemo.groupby("speaker").gender.first().to_dict() == {"F01": "F", "F02": "F", "M01": "M", "M02": "M"}
    assert shemo.set_index("utt_id").loc["M01W01", "label"] == "surprise"


def test_loso_and_group_folds_where_speakers_allow(tmp_path):
    df = load_corpus("emovo", fixtures.write_emovo(tmp_path))
    assert [f.test_speakers for f in make_folds(df, "loso")] == [[s] for s in ("f1", "f2", "f3", "m1", "m2", "m3")]
    assert len(make_folds(df, "group_kfold:3")) == 3


@pytest.mark.slow
def test_describe_reports_a_corpus(tmp_path):
    fixtures.write_crema_d(tmp_path)
    (tmp_path / "AudioWAV" / "1001_ITS_FEA_XX.wav").write_text("not audio\n")
    out = subprocess.run([sys.executable, "-m", "serlib", "describe", "--corpus", "crema_d", "--root", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "corpus crema_d: 32 utterances, 4 speakers" in text
    assert "sample rates: 16000 Hz 28, 22050 Hz 4" in text
    assert "channels: mono 28, stereo 4" in text
    assert "formats: WAV 31, FLAC 1" in text
    assert "skipped files: 1 {'unreadable audio header': 1}" in text
    assert "1001_ITS_FEA_XX.wav: unreadable audio header" in text
    out = subprocess.run([sys.executable, "-m", "serlib", "describe", "--corpus", "tess", "--root",
                          str(fixtures.write_tess(tmp_path / "tess"))], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "corpus tess: 42 utterances, 2 speakers" in out.stdout and "cross:tess" in out.stdout


# --- EmoBox's fold files ------------------------------------------------------------------

def test_emobox_folder_gives_its_folds_and_the_leak_report(tmp_path):
    names = ["03a01Fa", "03a01Wa", "08a02Nb", "08a02Wa", "10b01Tc", "10b01Wa", "16b10Lb", "16b10Wc", "09a04Ec",
             "09a04Wa", "13a05Aa", "13a05Wb"]
    df = load_corpus("emodb", fixtures.write_emodb(tmp_path / "emodb", names))
    test = ["03a01Wa", "08a02Wa", "10b01Wa"]  # EmoBox-like: speakers of the test are in train too
    train = [n for n in names if n not in test] + ["99a01Wa"]  # a file this copy lacks
    folder = fixtures.write_emobox(tmp_path / "emobox" / "emodb", "emodb", {
        1: {"train": [f"wav/{n}.wav" for n in train], "test": [f"wav/{n}.wav" for n in test]},
        2: {"train": [f"wav/{n}.wav" for n in names[:6]], "valid": [f"wav/{n}.wav" for n in names[6:9]],
            "test": [f"wav/{n}.wav" for n in names[9:]]}})
    spelled = folder / "fold_2" / "emodb_test_fold2.jsonl"  # both spellings in one checkout
    spelled.write_text((folder / "fold_2" / "emodb_test_fold_2.jsonl").read_text())
    folds = make_folds(df, f"folds_file:{folder}")
    assert [sorted(f.test) for f in folds] == [sorted(test), names[9:]]
    one = folds[0]
    assert len(one.val) == 2 and set(one.val) | set(one.train) == set(names) - set(test)
    assert not one.speaker_independent and one.leaky
    notes = " | ".join(one.notes)
    assert "speaker-dependent: 3 speaker(s) in both train and test" in notes
    assert "1 file(s) not in the manifest" in notes and "no valid list: 2 of its 9 train utterances" in notes
    assert folds[1].val == names[6:9] and not any("no valid list" in n for n in folds[1].notes)
    assert make_folds(df, f"folds_file:{folder}")[0].val == one.val  # deterministic
    with pytest.raises(Exception, match="EmoBox's fold files: give their folder"):
        make_folds(df, f"folds_file:{folder / 'fold_1' / 'emodb_test_fold_1.jsonl'}")


@pytest.mark.slow
def test_an_emobox_folder_drives_a_sweep(tmp_path):
    csv = fixtures.write_csv_corpus(tmp_path / "c")
    wavs = sorted(p.relative_to(tmp_path / "c").as_posix() for p in (tmp_path / "c").rglob("*.wav"))
    folder = fixtures.write_emobox(tmp_path / "emobox" / "mine", "mine", {
        k: {"train": [w for w in wavs if not w.startswith((f"s{k}/", f"s{k % 4 + 1}/"))],
            "valid": [w for w in wavs if w.startswith(f"s{k % 4 + 1}/")],
            "test": [w for w in wavs if w.startswith(f"s{k}/")]} for k in (1, 2)})
    argv = [sys.executable, "-m", "serlib", "sweep", "--experiment", "cnn_lstm", "--corpus", "csv", "--root", str(csv),
            "--protocol", f"folds_file:{folder}", "--set", *[f"{k}={v}" for k, v in fixtures.TINY.items()],
            f"output_dir={tmp_path / 'out'}"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    records = fixtures.records_under(tmp_path / "out")
    assert len(records) == 2
    rec = json.loads(records[0].read_text())
    assert rec["test_speakers"] == ["s1"] and rec["leaky"] is False
    assert rec["identity"]["settings"]["folds_file_sha256"]


# --- several corpora trained together -------------------------------------------------------

@pytest.fixture
def three_corpora(tmp_path):
    return {"emovo": fixtures.write_emovo(tmp_path / "emovo"), "shemo": fixtures.write_shemo(tmp_path / "shemo"),
            "urdu": fixtures.write_urdu(tmp_path / "urdu")}


def test_several_corpora_are_one_manifest_with_unique_speakers(three_corpora):
    roots = three_corpora
    df = prepare_manifest("emovo+shemo", f"{roots['emovo']}+{roots['shemo']}", None, "all")
    check_manifest(df)
    assert df.groupby("corpus").size().to_dict() == {"emovo": 84, "shemo": 24}
    assert df.speaker.nunique() == 10 and df.speaker.str.match(r"^(emovo|shemo):").all()
    assert df.set_index("utt_id").loc["shemo:F01A01", ["speaker", "label"]].tolist() == ["shemo:F01", "angry"]
    four = prepare_manifest("emovo+shemo", f"{roots['emovo']}+{roots['shemo']}", None, ("neutral", "happy", "sad", "angry"))
    assert four.attrs["dropped"] == {"fear": 16, "surprise": 16, "disgust": 12}  # one label map for all
    folds = make_folds(four, "loso")  # each fold checked for speaker overlap when made
    assert len(folds) == 10 and folds[0].test_speakers == ["emovo:f1"]
    assert len(make_folds(four, "group_kfold:5")) == 5
    with pytest.raises(ConfigError, match=r"names 2 corpora but the root .* has 1 part"):
        prepare_manifest("emovo+shemo", str(roots["emovo"]), None, "all")
    with pytest.raises(ConfigError, match="unknown corpus 'shemmo' in 'emovo\\+shemmo'"):
        prepare_manifest("emovo+shemmo", f"{roots['emovo']}+{roots['shemo']}", None, "all")


@pytest.mark.slow
def test_a_sweep_trained_on_two_corpora_and_tested_on_a_third(three_corpora, tmp_path):
    roots = three_corpora
    argv = [sys.executable, "-m", "serlib", "sweep", "--experiment", "cnn_lstm", "--corpus", "emovo+shemo",
            "--root", f"{roots['emovo']}+{roots['shemo']}", "--protocol", "cross:urdu", "--test-root", str(roots["urdu"]),
            "--set", *[f"{k}={v}" for k, v in fixtures.TINY.items()], "min_seconds=0.1", f"output_dir={tmp_path / 'out'}"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (path,) = fixtures.records_under(tmp_path / "out")
    rec = json.loads(path.read_text())
    assert (rec["corpus_label"], rec["test_corpus"], rec["cross_corpus"]) == ("emovo+shemo", "urdu", True)
    assert rec["config"]["corpus"] == "emovo+shemo" and "emovo+shemo" in str(path)
    assert rec["test_speakers"] == ["test:SF1", "test:SF2", "test:SM1", "test:SM2"]
    assert rec["val_speakers"] == ["train:shemo:M02"]  # the last of the training corpora's 10 speakers
    assert rec["split_sizes"]["test"] == 20
    assert rec["cross_dropped"]["train"] == {"fear": 16, "surprise": 16, "disgust": 12}


@pytest.mark.slow
def test_transfer_matrix_gains_the_all_others_row(three_corpora, tmp_path):
    from serlib import transfer

    corpora = {name: {"corpus": name, "data_root": str(root)} for name, root in three_corpora.items()}
    out = transfer.matrix("functionals", corpora, {"output_dir": str(tmp_path / "out"), "min_seconds": 0.1},
                          diagonal_folds="1", echo=None, all_others=True)
    assert out["ua"].index.tolist() == ["emovo", "shemo", "urdu", "all others"]
    assert out["ua"].loc["all others"].notna().all()
    runs = out["runs"].set_index(["train", "test"])
    rec = json.loads(Path(runs.loc[("all others", "urdu"), "records"][0]).read_text())
    assert (rec["corpus_label"], rec["test_corpus"]) == ("emovo+shemo", "urdu")
