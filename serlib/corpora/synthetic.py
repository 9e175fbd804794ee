"""The embedded default corpus: deterministic synthetic speech in the IEMOCAP layout.

Written once under ``outputs/synthetic/`` and then read through the real ``iemocap``
adapter, so the demo, the notebooks and the tests exercise the real parser.

Audio comes from a source–filter model: a glottal pulse train following an F0 contour
(declination plus word accents, with jitter and shimmer), shaped by a spectral-tilt
filter, plus breath noise, through vowel formant resonators (F1–F4), with noise-burst
consonants, syllable rhythm and pauses. Emotions differ the way the SER literature
reports (F0 level and range, speaking rate, energy, spectral tilt, jitter/shimmer,
breathiness; e.g. Scherer 2003, Banse & Scherer 1996); speakers differ by gender and by
per-speaker F0 and formant scaling (vocal tract length: what VTLP perturbs). Each
utterance also varies at random (recording gain, prosody), so classes overlap.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import lfilter

from ..errors import DataError
from ..paths import outputs_dir
from . import iemocap

VERSION = 1  # bump when the generator's output changes

# Label distributions with an IEMOCAP-like imbalance (improvised vs scripted differ).
LABEL_PROBS = {
    "improvised": {"neu": 0.28, "hap": 0.08, "sad": 0.16, "ang": 0.07, "exc": 0.17, "fru": 0.11, "xxx": 0.13},
    "scripted": {"neu": 0.15, "hap": 0.05, "sad": 0.09, "ang": 0.14, "exc": 0.12, "fru": 0.27, "xxx": 0.18},
}


@dataclass(frozen=True)
class Prosody:
    """Per-emotion voice settings, relative to the speaker's neutral voice."""

    f0_scale: float      # F0 level
    accent_st: float     # word-accent height, semitones (F0 range)
    rate: float          # syllables per second
    gain_db: float       # loudness
    tilt: float          # glottal low-pass pole: higher = steeper spectral tilt (softer voice)
    jitter: float        # period-to-period F0 perturbation (relative)
    shimmer: float       # pulse-to-pulse amplitude perturbation (relative)
    breath: float        # aspiration noise level
    pause_s: float       # mean pause between words
    valence: float       # for the EmoEvaluation [V, A, D] fields (1–5)
    activation: float


EMOTIONS = {
    "neu": Prosody(1.00, 2.0, 4.2, 0.0, 0.93, 0.006, 0.04, 0.02, 0.15, 3.0, 2.5),
    "hap": Prosody(1.15, 4.5, 4.7, 3.0, 0.86, 0.008, 0.05, 0.02, 0.12, 4.0, 3.5),
    "exc": Prosody(1.28, 5.5, 5.1, 5.0, 0.82, 0.009, 0.06, 0.02, 0.10, 4.0, 4.2),
    "ang": Prosody(1.22, 3.5, 4.9, 7.0, 0.74, 0.016, 0.09, 0.01, 0.10, 1.8, 4.3),
    "sad": Prosody(0.90, 1.0, 3.2, -5.0, 0.96, 0.007, 0.05, 0.06, 0.35, 1.8, 1.8),
    "fru": Prosody(1.06, 2.8, 4.4, 3.0, 0.85, 0.013, 0.07, 0.03, 0.18, 2.0, 3.3),
}

# F1–F4 (Hz) of a few vowels for an adult male vocal tract (Peterson & Barney 1952).
VOWELS = np.array([
    [730, 1090, 2440, 3400], [270, 2290, 3010, 3700], [300, 870, 2240, 3300],
    [530, 1840, 2480, 3500], [660, 1720, 2410, 3400], [490, 1350, 1690, 3300],
    [570, 840, 2410, 3300], [390, 1990, 2550, 3600],
], dtype=float)
BANDWIDTHS = np.array([80.0, 100.0, 140.0, 180.0])

FUNCTION_WORDS = (
    "i you we it the a to and that is was so well just really what do know think "
    "yeah okay right here there now then about like mean can't don't this"
).split()
LEXICON = {
    "neu": "meeting tomorrow office paper schedule fine sure usual train noon report normal".split(),
    "hap": "great wonderful love amazing glad fun beautiful yay lucky perfect nice sweet".split(),
    "exc": "wow incredible awesome can't-wait finally yes party fantastic unbelievable best".split(),
    "ang": "ridiculous hate stupid unacceptable never damn liar enough furious stop shut".split(),
    "sad": "miss sorry lost alone gone tired cry hurt funeral sick lonely never-again".split(),
    "fru": "again line waiting form broken seriously whatever annoying forms supposed useless".split(),
}
MARKERS = {"hap": "[LAUGHTER]", "exc": "[LAUGHTER]", "sad": "[BREATHING]", "fru": "[BREATHING]"}


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and seed of the synthetic corpus. The defaults give 800 utterances
    (about 45 minutes of audio), written in about half a minute on one core."""

    seed: int = 0
    utterances_per_session: int = 160
    sample_rate: int = 16000
    min_seconds: float = 1.0
    max_seconds: float = 8.0
    lexical_cue: float = 0.35  # share of words drawn from the emotion's lexicon

    @property
    def name(self) -> str:
        return f"iemocap_like_v{VERSION}_seed{self.seed}_n{self.utterances_per_session}"


@dataclass(frozen=True)
class Speaker:
    session: int
    gender: str
    f0: float            # neutral mean F0, Hz
    formant_scale: float  # vocal tract length factor (shorter tract = higher formants)
    tilt_offset: float
    breath: float


def make_speakers(rng: np.random.Generator) -> list[Speaker]:
    speakers = []
    for session in range(1, 6):
        for gender in ("F", "M"):
            f0 = rng.normal(205, 22) if gender == "F" else rng.normal(118, 14)
            scale = rng.normal(1.15, 0.04) if gender == "F" else rng.normal(0.98, 0.04)
            speakers.append(Speaker(session, gender, float(f0), float(scale),
                                    float(rng.normal(0, 0.02)), float(rng.uniform(0.5, 1.5))))
    return speakers


def _resonator(freq: float, bandwidth: float, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Second-order all-pole resonator at ``freq`` with unity gain at DC."""
    r = np.exp(-np.pi * bandwidth / sr)
    a = np.array([1.0, -2 * r * np.cos(2 * np.pi * freq / sr), r * r])
    return np.array([a.sum()]), a


def _formant_filter(x: np.ndarray, formants: np.ndarray, sr: int) -> np.ndarray:
    for f, bw in zip(formants, BANDWIDTHS):
        if f < sr / 2 - bw:
            b, a = _resonator(f, bw, sr)
            x = lfilter(b, a, x)
    return x


def synthesize(
    prosody: Prosody, speaker: Speaker, seconds: float, rng: np.random.Generator, sr: int
) -> tuple[np.ndarray, int]:
    """One utterance of about ``seconds`` (never longer) as float32 samples in [-1, 1],
    and its number of words."""
    # Per-utterance variation: the same emotion is never rendered twice alike.
    rate = prosody.rate * np.exp(rng.normal(0, 0.18))
    f0_level = speaker.f0 * prosody.f0_scale * np.exp(rng.normal(0, 0.11))
    accent = prosody.accent_st * np.exp(rng.normal(0, 0.4))
    tilt = float(np.clip(prosody.tilt + speaker.tilt_offset + rng.normal(0, 0.04), 0.5, 0.985))
    jitter = prosody.jitter * np.exp(rng.normal(0, 0.5))
    shimmer = prosody.shimmer * np.exp(rng.normal(0, 0.5))
    breath = prosody.breath * speaker.breath * np.exp(rng.normal(0, 0.5))

    # Plan: (start, n_samples, vowel formants) per syllable, with pauses between words.
    total = int(seconds * sr)
    t = int(rng.uniform(0.05, 0.2) * sr)
    end_of_speech = total - int(rng.uniform(0.05, 0.2) * sr)
    syllables, accents = [], []
    shortest = int(0.06 * sr)
    while t + shortest <= end_of_speech:  # seconds >= 1 leaves room for a word
        word_start = t
        for _ in range(rng.integers(1, 4)):
            n = min(int(sr / rate * rng.uniform(0.7, 1.3)), end_of_speech - t)
            if n < shortest:
                break
            syllables.append((t, n, VOWELS[rng.integers(len(VOWELS))] * speaker.formant_scale))
            t += n
        if t > word_start:
            accents.append((word_start, t, rng.uniform(0.3, 1.0)))
        if rng.random() < 0.3:
            t = min(t + int(rng.exponential(prosody.pause_s) * sr), end_of_speech)

    # F0 contour: declination + word accents (semitones) + jitter, at sample rate.
    n_idx = np.arange(total)
    semitones = np.linspace(1.5, -1.5, total)
    for start, end, height in accents:
        centre, width = (start + end) / 2, max(end - start, 1) / 2.5
        semitones += accent * height * np.exp(-0.5 * ((n_idx - centre) / width) ** 2)
    n_knots = total // int(0.005 * sr) + 2  # a jitter value every ~5 ms
    jitter_track = np.interp(n_idx, np.linspace(0, total, n_knots), rng.normal(0, jitter, n_knots))
    f0 = f0_level * 2 ** (semitones / 12) * (1 + jitter_track)

    # Glottal source: one pulse per period, shimmered, then spectral tilt (two poles).
    phase = np.cumsum(f0 / sr)
    pulses = np.diff(np.floor(phase), prepend=0.0) > 0
    source = pulses * (1 + shimmer * rng.normal(0, 1, total))
    source = lfilter([1.0], [1.0, -tilt], lfilter([1.0], [1.0, -tilt], source))
    source = source / (np.abs(source).max() + 1e-9)
    source += breath * rng.normal(0, 1, total)

    out = np.zeros(total + int(0.05 * sr))
    tail = int(0.04 * sr)  # let the resonators ring out (overlap-add)
    for start, n, formants in syllables:
        n_cons = min(int(rng.uniform(0.02, 0.06) * sr), n // 3)
        voiced = source[start + n_cons : start + n] * np.hanning(n - n_cons)
        seg = _formant_filter(np.concatenate([voiced, np.zeros(tail)]), formants, sr)
        out[start + n_cons : start + n + tail] += seg
        if n_cons > 0 and rng.random() < 0.7:  # fricative-like consonant
            noise = rng.normal(0, 1, n_cons) * np.hanning(n_cons)
            cons = _formant_filter(noise, np.array([rng.uniform(2500, 5500)]), sr)
            out[start : start + n_cons] += 0.3 * cons / (np.abs(cons).max() + 1e-9) * np.abs(seg).max()
    out = out[:total]
    gain_db = prosody.gain_db + rng.normal(0, 4.0)  # recording gain varies per utterance
    out *= 0.05 * 10 ** (gain_db / 20) / (np.sqrt(np.mean(out**2)) + 1e-9)
    out += 10 ** (-65 / 20) * rng.normal(0, 1, total)  # room noise floor
    return np.clip(out, -1, 1).astype(np.float32), len(accents)


def _blend(a: Prosody, b: Prosody, w: float) -> Prosody:
    """An ambiguous rendering between two emotions (for xxx: no annotator majority)."""
    return Prosody(*[w * x + (1 - w) * y for x, y in zip(asdict(a).values(), asdict(b).values())])


def _transcript(code: str, n_words: int, rng: np.random.Generator, cue: float) -> str:
    words = []
    for _ in range(n_words):
        if code in LEXICON and rng.random() < cue:
            words.append(str(rng.choice(LEXICON[code])))
        elif rng.random() < 0.08:  # a little cross-talk between emotions' wording
            words.append(str(rng.choice(LEXICON[str(rng.choice(list(LEXICON)))])))
        else:
            words.append(str(rng.choice(FUNCTION_WORDS)))
    text = " ".join(words).replace("-", " ")
    text = text[0].upper() + text[1:] + str(rng.choice([".", ".", "?", "!"]))
    if code in MARKERS and rng.random() < 0.25:
        text = f"{MARKERS[code]} {text}"
    return text


def _write_session(root: Path, speakers: list[Speaker], config: SyntheticConfig,
                   rng: np.random.Generator) -> None:
    session = speakers[0].session
    sdir = root / f"Session{session}"
    eval_dir, trans_dir = sdir / "dialog" / "EmoEvaluation", sdir / "dialog" / "transcriptions"
    for d in (eval_dir / "Categorical", trans_dir):
        d.mkdir(parents=True, exist_ok=True)
    n_dialogs_per_kind = 3
    per_dialog = max(2, config.utterances_per_session // (2 * n_dialogs_per_kind))
    sr = config.sample_rate
    dialogs = [(f"impro{i + 1:02d}", "improvised") for i in range(n_dialogs_per_kind)]
    dialogs += [(f"script0{i + 1}_{i % 2 + 1}", "scripted") for i in range(n_dialogs_per_kind)]
    for d_index, (name, kind) in enumerate(dialogs):
        wearer = "F" if d_index % 2 == 0 else "M"
        dialog = f"Ses{session:02d}{wearer}_{name}"
        wav_dir = sdir / "sentences" / "wav" / dialog
        wav_dir.mkdir(parents=True, exist_ok=True)
        probs = LABEL_PROBS[kind]
        codes = rng.choice(list(probs), size=per_dialog, p=list(probs.values()))
        eval_lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        trans_lines, clock, counters = [], rng.uniform(1, 5), {"F": 0, "M": 0}
        for turn, code in enumerate(codes):
            spk = speakers[turn % 2]
            utt = f"{dialog}_{spk.gender}{counters[spk.gender]:03d}"
            counters[spk.gender] += 1
            if code == "xxx":
                a, b = rng.choice(list(EMOTIONS), size=2, replace=False)
                prosody = _blend(EMOTIONS[a], EMOTIONS[b], rng.uniform(0.3, 0.7))
            else:
                prosody = EMOTIONS[code]
            seconds = float(np.clip(rng.lognormal(np.log(3.0), 0.5), config.min_seconds, config.max_seconds))
            audio, n_words = synthesize(prosody, spk, seconds, rng, sr)
            sf.write(wav_dir / f"{utt}.wav", audio, sr, subtype="PCM_16")
            start, end = clock, clock + len(audio) / sr
            clock = end + rng.uniform(0.2, 2.0)
            v, act = prosody.valence, prosody.activation
            eval_lines += [
                f"[{start:.4f} - {end:.4f}]\t{utt}\t{code}\t[{v:.4f}, {act:.4f}, {act:.4f}]",
                f"C-E1:\t{code.capitalize()};\t()",
                f"A-E1:\tval {round(v)}; act {round(act)}; dom  {round(act)};\t()",
                "",
            ]
            text = _transcript(code if code != "xxx" else str(rng.choice(list(LEXICON))),
                               n_words, rng, config.lexical_cue)
            trans_lines.append(f"{utt} [{start:08.4f}-{end:08.4f}]: {text}")
            if rng.random() < 0.05:  # a turn with no label, as in the real transcripts
                trans_lines.append(f"{dialog}_{spk.gender}XX{turn % 10} [{end:08.4f}-{end + 0.5:08.4f}]: Mm.")
        (eval_dir / f"{dialog}.txt").write_text("\n".join(eval_lines) + "\n")
        (trans_dir / f"{dialog}.txt").write_text("\n".join(trans_lines) + "\n")
        # Quirks of the real release: macOS resource forks and non-label sub-folders.
        (eval_dir / f"._{dialog}.txt").write_bytes(b"\x00\x05\x16\x07macOS resource fork")
        (eval_dir / "Categorical" / f"{dialog}_e1_cat.txt").write_text(f"{dialog}_F000 :Neutral state; ()\n")


def ensure(config: SyntheticConfig | None = None, root: str | Path | None = None) -> Path:
    """Generate the corpus once and return its IEMOCAP_full_release folder.

    Generation writes to a temporary folder and renames it into place, so an
    interrupted run never leaves a half-written corpus behind.
    """
    config = config or SyntheticConfig()
    base = Path(root) if root is not None else outputs_dir() / "synthetic"
    target = base / config.name / "IEMOCAP_full_release"
    if target.is_dir():
        return target
    try:
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{config.name}-", dir=base))
    except OSError as e:
        raise DataError(base, f"cannot write the synthetic corpus ({e.strerror or e}); set SERLIB_OUTPUTS to a "
                              "writable folder") from None
    try:
        release = tmp / "IEMOCAP_full_release"
        speakers = make_speakers(np.random.default_rng([config.seed, 0]))
        for session in range(1, 6):
            rng = np.random.default_rng([config.seed, session])
            _write_session(release, speakers[2 * (session - 1) : 2 * session], config, rng)
        (tmp / "README.txt").write_text(
            f"serlib synthetic corpus ({config}); generated, not real speech.\n")
        try:
            os.rename(tmp, base / config.name)
        except OSError:  # another process finished first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, (OSError, sf.LibsndfileError)):  # a full disk, a read-only folder
            raise DataError(base, f"cannot write the synthetic corpus ({getattr(e, 'strerror', None) or e}); "
                                  "free disk space or set SERLIB_OUTPUTS to a writable folder") from None
        raise
    return target


def load(root: str | Path | None = None, subset: str = "all", keep_no_majority: bool = False,
         on_error: str = "raise", hash_audio: bool = False, **size):
    """Manifest of the synthetic corpus, read by the ``iemocap`` adapter.

    ``root`` is where to keep it (default ``outputs/synthetic``); ``size`` takes
    :class:`SyntheticConfig` fields (``seed``, ``utterances_per_session``, ...).
    """
    release = ensure(SyntheticConfig(**size), root)
    df = iemocap.load(release, subset=subset, keep_no_majority=keep_no_majority,
                      on_error=on_error, hash_audio=hash_audio)
    df["corpus"] = "synthetic"
    return with_dimensions(df, SyntheticConfig(**size).seed)


# Spread of an utterance's A/V/D around its emotion's (raters disagree; voices vary).
DIMENSION_SPREAD = 0.35


def with_dimensions(df, seed: int):
    """Arousal, valence and dominance (1–5, IEMOCAP's scale) of each utterance, from its
    emotion's voice settings and a deterministic per-utterance draw.

    The EmoEvaluation files give each utterance its emotion's ``valence`` and
    ``activation`` (:data:`EMOTIONS`; a blend of two for ``xxx``), which set the
    acoustic knobs with them: arousal follows F0 level, loudness and rate (angry and
    excited high, sad low), valence the emotion (angry, sad, frustrated low). Dominance
    rises with arousal and falls with valence (angry above happy, sad lowest). Each value
    gets a normal draw (sd :data:`DIMENSION_SPREAD`) seeded by the corpus seed and the
    utterance id, so the labels are deterministic and the audio files are not touched
    (they, the categories and every fingerprint stay as they were)."""
    draws = np.array([np.random.default_rng([seed, zlib.crc32(u.encode())]).normal(0, DIMENSION_SPREAD, 3)
                      for u in df["utt_id"]]).reshape(-1, 3)
    arousal, valence = df["arousal"].to_numpy(float), df["valence"].to_numpy(float)
    dominance = arousal - 0.3 * (valence - 3.0)
    df = df.copy()
    for j, (name, value) in enumerate((("arousal", arousal), ("valence", valence), ("dominance", dominance))):
        df[name] = np.clip(value + draws[:, j], 1.0, 5.0).round(4)
    return df
