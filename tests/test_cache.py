"""The feature cache: keyed on files and settings, atomic, counted skips."""

import os

import pytest
import torch

from serlib.audio import WaveCrop
from serlib.cache import extract
from serlib.corpora import load_corpus
from serlib.errors import AudioError
from serlib.experiments import feature_preset as preset
from tests import fixtures


@pytest.fixture
def emodb(tmp_path):
    fixtures.write_emodb(tmp_path / "emodb")
    return load_corpus("emodb", tmp_path / "emodb")


def test_cache_hit_and_invalidation(emodb, tmp_path):
    cache = tmp_path / "cache"
    first = extract(emodb, preset("cnn_lstm"), cache_dir=cache, progress=False)
    again = extract(emodb, preset("cnn_lstm"), cache_dir=cache, progress=False)
    assert not first.from_cache and again.from_cache and first.key == again.key
    for u in emodb.utt_id:
        torch.testing.assert_close(first[u], again[u])
    assert list(cache.glob("*.tmp")) == []  # written atomically
    other = extract(emodb, preset("cnn_lstm_8k"), cache_dir=cache, progress=False)
    assert other.key != first.key and other[emodb.utt_id[0]].shape[0] == 512
    path = emodb.path.iloc[0]
    os.utime(path, ns=(1, 1))  # a changed file changes the key
    assert extract(emodb, preset("cnn_lstm"), cache_dir=cache, progress=False).key != first.key


def test_crop_gives_fixed_length(emodb):
    store = extract(emodb, preset("light_sernet"), crop=WaveCrop(3.0), use_cache=False, progress=False)
    assert {tuple(t.shape) for t in store.features.values()} == {(40, 184)}


def test_bad_file_raises_or_is_counted(emodb, tmp_path):
    bad = emodb.copy()
    with open(bad.path.iloc[0], "wb") as f:
        f.write(b"RIFF\x00\x00\x00\x00WAVE")
    with pytest.raises(AudioError, match="03a01Fa.wav"):
        extract(bad, preset("cnn_lstm"), use_cache=False, progress=False)
    store = extract(bad, preset("cnn_lstm"), use_cache=False, on_error="skip", progress=False)
    assert len(store) == len(bad) - 1 and store.skipped[0][1].endswith("03a01Fa.wav")
