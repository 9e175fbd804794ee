"""The embedded synthetic corpus: deterministic, IEMOCAP-shaped, learnable, not trivial."""

import numpy as np
import pytest

from serlib import audio
from serlib.corpora import load_corpus
from serlib.corpora.synthetic import SyntheticConfig, ensure


def test_deterministic_and_in_iemocap_layout(tmp_path):
    small = {"seed": 3, "utterances_per_session": 12}
    a = ensure(SyntheticConfig(**small), tmp_path / "a")
    b = ensure(SyntheticConfig(**small), tmp_path / "b")
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files_a)
    assert (a / "Session1" / "dialog" / "EmoEvaluation" / "Categorical").is_dir()
    assert any(f.name.startswith("._") for f in files_a)  # the real release's quirks
    other = ensure(SyntheticConfig(seed=4, utterances_per_session=12), tmp_path / "a")
    assert other != a
    df = load_corpus("synthetic", tmp_path / "a", **small)
    assert df.corpus.eq("synthetic").all() and df.speaker.nunique() == 10


def test_default_corpus_structure(synthetic):
    df = synthetic
    assert df.speaker.nunique() == 10 and df.session.nunique() == 5
    assert df.groupby("speaker").gender.first().value_counts().to_dict() == {"F": 5, "M": 5}
    assert df.improvised.any() and not df.improvised.all()
    assert df.duration.between(1.0, 8.0 + 1e-6).all()
    assert df.text.notna().all()
    counts = df.label.value_counts()
    assert counts.idxmax() == "neutral" and counts["happy"] < counts["sad"]  # IEMOCAP-like imbalance
    assert df.attrs["dropped"]["xxx (no majority)"] > 0
    impro = df[df.improvised]
    assert impro.label.value_counts(normalize=True)["neutral"] > df[~df.improvised].label.value_counts(
        normalize=True)["neutral"]


def test_emotions_differ_as_reported(synthetic):
    """Angry speech is louder and sad speech slower/quieter than neutral, on average."""
    rms = {}
    for label in ("angry", "neutral", "sad"):
        paths = synthetic[synthetic.label == label].path.head(25)
        rms[label] = np.mean([float(audio.load(p).pow(2).mean().sqrt()) for p in paths])
    assert rms["angry"] > rms["neutral"] > rms["sad"]


def test_transcripts_correlate_with_emotion(synthetic):
    angry = synthetic[synthetic.label == "angry"].text.str.lower()
    neutral = synthetic[synthetic.label == "neutral"].text.str.lower()
    cue = "hate|stupid|ridiculous|furious|damn|liar"
    assert angry.str.contains(cue).mean() > 2 * neutral.str.contains(cue).mean()


@pytest.mark.slow
def test_learnable_but_not_trivial(synthetic, tmp_path):
    from serlib.sweep import sweep

    table = sweep("functionals", {"feature_set": "mfcc_stats", "classifier": "logreg", "progress": False,
                                  "output_dir": str(tmp_path)}, echo=None)
    assert len(table) == 10 and (table.status == "done").all()
    assert 0.4 < table.ua.mean() < 0.9, table.ua.mean()  # chance is 0.25
