"""Writers of small corpus trees in the real naming and layout, quirks included.

Independent of serlib's own writers (the synthetic corpus), so a misunderstanding of a
format cannot hide in both the writer and the parser.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from serlib.experiments import make_config


def write_wav(path: Path, seconds: float = 0.25, sr: int = 16000, channels: int = 1,
              freq: float = 220.0, subtype: str = "PCM_16", format: str = "WAV") -> Path:
    """A sine whose phase follows the file name: same pitch and level everywhere, but no
    two fixture files are byte-identical (duplicate detection is on for training).
    ``format="FLAC"`` writes FLAC under whatever name is given (a header that
    contradicts a ``.wav`` extension)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * (zlib.crc32(path.name.encode()) % 1000) / 1000
    x = 0.1 * np.sin(2 * np.pi * freq * t + phase)
    if channels > 1:
        x = np.stack([x * (c + 1) / channels for c in range(channels)], axis=1)
    sf.write(path, x, sr, subtype=subtype, format=format)
    return path


# (dialog, [(utt_id, code)]) per session; both speakers of each session speak.
IEMOCAP_DIALOGS = {
    "impro01": [("F000", "neu"), ("M000", "ang"), ("F001", "hap"), ("M001", "xxx"), ("F002", "exc")],
    "script01_1": [("F000", "sad"), ("M000", "fru"), ("M001", "neu"), ("F001", "ang")],
}


def iemocap_vad(session: int, dialog: int, turn: int) -> tuple[float, float, float]:
    """The ``[V, A, D]`` of a turn of :func:`write_iemocap` (distinct per dimension)."""
    return 1.0 + 0.5 * turn, 2.0 + 0.25 * session, 3.0 + 0.5 * dialog


def write_iemocap(root: Path, sessions=(1, 2, 3, 4, 5), extra_code: str | None = None) -> Path:
    """IEMOCAP_full_release with EmoEvaluation, transcriptions and sentences/wav.

    Per session: an improvised dialog recorded with the female marker wearer
    (``Ses0NF_impro01``) and a scripted one with the male wearer (``Ses0NM_script01_1``).
    """
    release = root / "IEMOCAP_full_release"
    for s in sessions:
        sdir = release / f"Session{s}"
        for i, (name, turns) in enumerate(IEMOCAP_DIALOGS.items()):
            dialog = f"Ses{s:02d}{'FM'[i]}_{name}"
            blocks = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
            trans = []
            for j, (suffix, code) in enumerate(turns):
                if extra_code and j == 0 and s == sessions[0] and i == 0:
                    code = extra_code
                utt = f"{dialog}_{suffix}"
                start, end = 1.5 * j + 0.1234, 1.5 * j + 1.2
                v, a, d = iemocap_vad(s, i, j)
                blocks += [f"[{start:.4f} - {end:.4f}]\t{utt}\t{code}\t[{v:.4f}, {a:.4f}, {d:.4f}]",
                           "C-E2:\tNeutral;\t()", "A-E3:\tval 3; act 2; dom  2;\t()", ""]
                trans.append(f"{utt} [{start:08.4f}-{end:08.4f}]: Text of {utt}.")
                write_wav(sdir / "sentences" / "wav" / dialog / f"{utt}.wav")
            trans.append(f"{dialog}_MXX0 [010.0000-011.0000]: [LAUGHTER]")  # unlabelled turn
            ev = sdir / "dialog" / "EmoEvaluation"
            ev.mkdir(parents=True, exist_ok=True)
            (ev / f"{dialog}.txt").write_text("\n".join(blocks) + "\n")
            (ev / f"._{dialog}.txt").write_bytes(b"\x00\x05\x16\x07\x00\x02")  # macOS fork
            for sub in ("Categorical", "Attribute", "Self-evaluation"):
                (ev / sub).mkdir(exist_ok=True)
                (ev / sub / f"{dialog}_e1.txt").write_text(f"{dialog}_F000 :Neutral; ()\n")
            tr = sdir / "dialog" / "transcriptions"
            tr.mkdir(parents=True, exist_ok=True)
            (tr / f"{dialog}.txt").write_text("\n".join(trans) + "\n")
            (sdir / "sentences" / "wav" / dialog / f"._{dialog}_F000.wav").write_bytes(b"\x00\x05")
    return release


def write_ravdess(root: Path, actors=(1, 2, 3, 4), stereo_actor: int | None = None) -> Path:
    """Audio_Speech_Actors_01-24/Actor_XX/03-VV-EE-II-SS-RR-AA.wav (a subset of clips)."""
    base = root / "Audio_Speech_Actors_01-24"
    for a in actors:
        for emotion in ("01", "03", "05"):
            intensities = ("01",) if emotion == "01" else ("01", "02")
            for intensity in intensities:
                for statement in ("01", "02"):
                    name = f"03-01-{emotion}-{intensity}-{statement}-01-{a:02d}.wav"
                    write_wav(base / f"Actor_{a:02d}" / name, sr=48000,
                              channels=2 if a == stereo_actor else 1)
        write_wav(base / f"Actor_{a:02d}" / f"03-02-03-01-01-01-{a:02d}.wav", sr=48000)  # song
    return base


def write_emodb(root: Path, names=("03a01Fa", "03a01Wa", "08a02Nb", "10b01Tc", "16b10Lb", "09a04Ec", "13a05Aa")) -> Path:
    for name in names:
        write_wav(root / "wav" / f"{name}.wav")
    (root / "wav" / "README").write_text("not a wav\n")
    return root


def write_asvp(root: Path) -> Path:
    """ASVP-ESD-Update/Audio/actor_XX/*.wav with varying field counts."""
    base = root / "ASVP-ESD-Update" / "Audio"
    names = [
        ("actor_12", "03-01-06-01-02-12-02-01-01-16.wav"),  # all fields
        ("actor_12", "03-01-03-02-01-12-02-01.wav"),        # no language
        ("actor_07", "03-02-13-01-01-07.wav"),              # six fields only
        ("actor_07", "03-01-09-01-01-07-03-02-04.wav"),
    ]
    for folder, name in names:
        write_wav(base / folder / name)
    return base


# -- the field's acted corpora (issue 29), each in its release's layout -----------------------
# Every writer plants quirks of real copies: mixed-case folder names, stereo files, odd
# sample rates, a FLAC file named .wav, macOS resource forks and stray files.

def write_crema_d(root: Path, actors=(1001, 1002, 1003, 1004)) -> Path:
    """AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav and VideoDemographics.csv
    (actor 1004 missing from it). Per actor: DFA in 4 emotions at level XX, IEO angry at
    HI and LO (8 files). Actor 1002 is stereo, 1003 at 22.05 kHz, one file is FLAC."""
    base = root / "AudioWAV"
    for a in actors:
        for emotion in ("ANG", "HAP", "NEU", "SAD"):
            name = f"{a}_DFA_{emotion}_XX.wav"
            write_wav(base / name, sr=22050 if a == 1003 else 16000, channels=2 if a == 1002 else 1,
                      format="FLAC" if name == "1004_DFA_SAD_XX.wav" else "WAV")
        for emotion, level in (("ANG", "HI"), ("ANG", "LO"), ("NEU", "XX"), ("SAD", "MD")):
            write_wav(base / f"{a}_IEO_{emotion}_{level}.wav")
    (base / "._1001_DFA_ANG_XX.wav").write_bytes(b"\x00\x05\x16\x07")
    (root / "VideoDemographics.csv").write_text(
        "ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n"
        "1002,21,Female,Caucasian,Not Hispanic\n1003,21,Female,Caucasian,Not Hispanic\n")
    return root


def write_savee(root: Path, layout: str = "flat") -> Path:
    """SAVEE, 4 speakers × 7 emotions × 2 sentences (+ a third neutral): ``ALL/DC_a01.wav``
    (flat) or ``AudioData/DC/a01.wav`` (the release; JK's folder spelled ``jk``)."""
    for speaker in ("DC", "JE", "JK", "KL"):
        for code in ("a", "d", "f", "h", "n", "sa", "su"):
            for n in (1, 2, 3) if code == "n" else (1, 2):
                if layout == "flat":
                    path = root / "ALL" / f"{speaker}_{code}{n:02d}.wav"
                else:
                    path = root / "AudioData" / (speaker.lower() if speaker == "JK" else speaker) / f"{code}{n:02d}.wav"
                write_wav(path, sr=44100)
    (root / ("ALL" if layout == "flat" else "AudioData") / "Info.txt").write_text("SAVEE\n")
    return root


TESS_FOLDERS = {"angry": "angry", "disgust": "disgust", "fear": "Fear", "happy": "happy", "neutral": "neutral",
                "ps": "Pleasant_surprise", "sad": "Sad"}


def write_tess(root: Path, words=("back", "bar", "base")) -> Path:
    """TESS: <speaker>_<emotion>/<speaker>_<word>_<emotion>.wav at 24 414 Hz, 2 speakers ×
    7 emotions × 3 words; folder spellings vary as in the copies in circulation, and one
    YAF sad file sits in the happy folder (the name says sad)."""
    base = root / "TESS Toronto emotional speech set data"
    for speaker in ("OAF", "YAF"):
        for code, folder in TESS_FOLDERS.items():
            folder = f"{speaker}_{'pleasant_surprised' if speaker == 'YAF' and code == 'ps' else folder}"
            for word in words:
                if speaker == "YAF" and code == "sad" and word == "bar":
                    folder = "YAF_happy"
                write_wav(base / folder / f"{speaker}_{word}_{code}.wav", sr=24414)
    return base


def write_emovo(root: Path) -> Path:
    """EMOVO: <speaker>/<emotion>-<speaker>-<sentence>.wav, 6 speakers × 7 emotions × 2
    sentences at 48 kHz; m3's folder is spelled ``M3`` and f2's files are stereo."""
    for speaker in ("f1", "f2", "f3", "m1", "m2", "m3"):
        for emotion in ("dis", "gio", "neu", "pau", "rab", "sor", "tri"):
            for sentence in ("b1", "n3"):
                write_wav(root / "EMOVO" / (speaker.upper() if speaker == "m3" else speaker)
                          / f"{emotion}-{speaker}-{sentence}.wav", sr=48000, channels=2 if speaker == "f2" else 1)
    (root / "EMOVO" / "documents").mkdir()
    (root / "EMOVO" / "documents" / "README.txt").write_text("EMOVO\n")
    return root / "EMOVO"


ESD_FOLDERS = ("Neutral", "Angry", "Happy", "Sad", "Surprise")


def write_esd(root: Path, speakers=("0001", "0002", "0011", "0012", "0013")) -> Path:
    """ESD: <speaker>/<Emotion>/[train/]<speaker>_<number>.wav, sentences 1 and 2 of each
    emotion; the Mandarin speakers have the release's train/evaluation folders, the
    English ones a flat copy's. 0012's angry sentence 1 sits in ``Happy/`` (the number
    says angry); transcripts in UTF-16 (0001), UTF-8 (0011), GB2312 (0002) and Latin-1 (0013),
as in the release."""
    base = root / "Emotion Speech Dataset"
    for speaker in speakers:
        for k, folder in enumerate(ESD_FOLDERS):
            for sentence in (1, 2):
                number = 350 * k + sentence
                where = "Happy" if (speaker, number) == ("0012", 351) else folder
                sub = ("train" if sentence == 1 else "evaluation") if int(speaker) <= 10 else ""
                write_wav(base / speaker / where / sub / f"{speaker}_{number:06d}.wav")
    (base / "0001" / "0001.txt").write_text("0001_000001\t打远一看，它们的确很是美丽。\t中立\n", encoding="utf-16")
    (base / "0011" / "0011.txt").write_text("0011_000001\tThe nine the eggs, I keep.\tNeutral\n"
                                            "0011_000351\tThe nine the eggs, I keep.\tAngry\n")
    (base / "0002" / "0002.txt").write_text("0002_000001\t他们的确很美。\t中立\n", encoding="gb2312")
    (base / "0013" / "0013.txt").write_text("0013_000001\tA café, they said.\tNeutral\n", encoding="latin-1")
    return base


def write_urdu(root: Path) -> Path:
    """URDU: <Emotion>/S<g><n>_F<file>_<emotion><n>.wav, 4 speakers × 4 emotions (one
    speaker twice per emotion), 44.1 kHz; the Sad folder is spelled ``sad``."""
    base = root / "URDU-Dataset-master"
    for speaker, show in (("SM1", "F1"), ("SM2", "F3"), ("SF1", "F2"), ("SF2", "F10")):
        for code, folder in (("A", "Angry"), ("H", "Happy"), ("N", "Neutral"), ("S", "sad")):
            for n in (1, 2) if speaker == "SM1" else (1,):
                write_wav(base / folder / f"{speaker}_{show}_{code}{n:02d}.wav", sr=44100)
    return base


def write_shemo(root: Path) -> Path:
    """ShEMO: female/F<nn><emotion><nn>.wav and male/M…; F01 and M01 are two people."""
    for gender, folder in (("F", "female"), ("M", "male")):
        for n in (1, 2):
            for code in ("A", "F", "H", "N", "S", "W"):
                write_wav(root / folder / f"{gender}{n:02d}{code}01.wav", sr=44100)
    return root


# -- a tiny CSV corpus and the smallest CNN+LSTM, shared by the tests that train --------------
TINY = {"epochs": "1", "batch_size": "4", "model.n_conv": "1", "model.conv_channels": "(4,)",
        "model.conv_strides": "((2,2),)", "model.lstm_hidden": "4", "freq_khz": "4", "progress": "false",
        "feature_workers": "1"}
SPEAKERS = ("s1", "s2", "s3", "s4")
LABELS4 = ("neutral", "happy", "sad", "angry")


def write_csv_corpus(root: Path, extra_rows: list[tuple[str, str, str]] = ()) -> Path:
    """4 speakers × 4 labels × 2 files (0.5 s) as a CSV manifest, plus ``extra_rows``
    (path relative to root, label, speaker) for files a test writes itself."""
    rows = []
    for s in SPEAKERS:
        for i, label in enumerate(LABELS4):
            for k in range(2):
                rel = f"{s}/{s}_{label}{k}.wav"
                write_wav(root / rel, seconds=0.5, freq=150 + 60 * i + 7 * k)
                rows.append((rel, label, s))
    rows += list(extra_rows)
    csv = root / "corpus.csv"
    pd.DataFrame(rows, columns=["path", "label", "speaker"]).to_csv(csv, index=False)
    return csv


def tiny_config(csv: Path, out: Path, **kw):
    values = {**TINY, "corpus": "csv", "data_root": str(csv), "subset": None, "output_dir": str(out), **kw}
    return make_config("cnn_lstm", values)


def records_under(out: Path) -> list[Path]:
    return sorted((out / "results").rglob("*.json")) if (out / "results").exists() else []


MSP_CLASSES = "ASHNUFDCOXNAHS"


def write_msp_podcast(root: Path, missing: int = 1, test3: bool = False) -> Path:
    """An MSP-Podcast release tree: ``Audios/*.wav`` and ``Labels/labels_consensus.csv``
    with its quirks — speaker ``Unknown`` (in Train), classes O and X, ``missing`` files
    listed but absent. Speakers 1–4 train, 5–6 development, 7–8 Test1, 9–10 Test2
    (11–12 Test3 with ``test3``); 1–7 A/V/D derived from the row number."""
    audios, labels = root / "Audios", root / "Labels"
    labels.mkdir(parents=True, exist_ok=True)
    sets = [("Train", s) for s in ("1", "2", "3", "4", "Unknown")] + [("Development", "5"), ("Development", "6"),
                                                                      ("Test1", "7"), ("Test1", "8"),
                                                                      ("Test2", "9"), ("Test2", "10")]
    if test3:
        sets += [("Test3", "11"), ("Test3", "12")]
    rows = []
    for part, speaker in sets:
        for _ in range(6):
            n = len(rows)
            name = f"MSP-PODCAST_{n // 4 + 1:04d}_{n % 4 + 1:04d}.wav"
            code = MSP_CLASSES[n % len(MSP_CLASSES)]
            rows.append({"FileName": name, "EmoClass": code, "EmoAct": 1 + (n % 13) * 0.5,
                         "EmoVal": 7 - (n % 11) * 0.5, "EmoDom": 2 + (n % 7) * 0.5,
                         "SpkrID": speaker, "Gender": "Unknown" if speaker == "Unknown" else "Female" if int(speaker) % 2 else "Male",
                         "Split_Set": part})
            if n >= missing:  # the first `missing` rows have no file
                write_wav(audios / name, seconds=0.5, freq=120 + 10 * (n % 9))
    pd.DataFrame(rows).to_csv(labels / "labels_consensus.csv", index=False)
    return root


def write_rated_csv_corpus(root: Path) -> Path:
    """:func:`write_csv_corpus` with arousal/valence/dominance columns (1-5), following
    the label (angry and happy aroused, sad and angry negative) plus a fixed spread."""
    csv = write_csv_corpus(root)
    table = pd.read_csv(csv)
    base = {"neutral": (2.5, 3.0), "happy": (3.5, 4.2), "sad": (1.8, 1.8), "angry": (4.3, 1.8)}
    spread = np.resize([-0.3, 0.1, 0.3, -0.1, 0.0], len(table))
    table["arousal"] = [base[lab][0] + d for lab, d in zip(table.label, spread)]
    table["valence"] = [base[lab][1] - d for lab, d in zip(table.label, spread)]
    table["dominance"] = table["arousal"] - 0.3 * (table["valence"] - 3)
    table.to_csv(csv, index=False)
    return csv


def write_emobox(folder: Path, corpus: str, folds: dict[int, dict[str, list[str]]]) -> Path:
    """EmoBox's fold folder: ``fold_K/<corpus>_<role>_fold_K.jsonl``, one line per audio
    file (``folds[k][role]`` lists the files' paths relative to EmoBox's download folder)."""
    for k, roles in folds.items():
        (folder / f"fold_{k}").mkdir(parents=True, exist_ok=True)
        for role, wavs in roles.items():
            lines = [json.dumps({"key": f"{corpus}-{Path(w).stem}", "dataset": corpus, "wav": f"downloads/{corpus}/{w}",
                                 "type": "raw", "sample_rate": 16000, "task": "category", "length": 0.5,
                                 "emo": "anger", "channel": 1}) for w in wavs]
            (folder / f"fold_{k}" / f"{corpus}_{role}_fold_{k}.jsonl").write_text("\n".join(lines) + "\n")
    return folder
