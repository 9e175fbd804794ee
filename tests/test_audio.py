"""serlib.audio: loading, channel policy, resampling, errors, fixed-length windows."""

import numpy as np
import pytest
import soundfile as sf
import torch

from serlib import audio
from serlib.errors import AudioError
from tests.fixtures import write_wav


def test_load_mono_float32(tmp_path):
    x = audio.load(write_wav(tmp_path / "a.wav", seconds=0.5))
    assert x.dtype == torch.float32 and x.shape == (8000,)
    assert abs(float(x.abs().max()) - 0.1) < 1e-3


def test_resample_keeps_duration_and_pitch(tmp_path):
    path = write_wav(tmp_path / "b.wav", seconds=1.0, sr=48000, freq=440.0)
    x = audio.load(path, sample_rate=16000)
    assert x.shape == (16000,)
    spectrum = np.abs(np.fft.rfft(x.numpy()))
    assert abs(np.argmax(spectrum) - 440) <= 1  # 1 Hz bins at 1 s


def test_channel_policy(tmp_path):
    path = write_wav(tmp_path / "st.wav", channels=2)  # channel 1 is twice channel 0
    mean, first, second = audio.load(path), audio.load(path, channel=0), audio.load(path, channel=1)
    torch.testing.assert_close(mean, (first + second) / 2)
    torch.testing.assert_close(second, 2 * first, rtol=1e-3, atol=1e-4)
    with pytest.raises(AudioError, match="st.wav: 2 channels, expected mono"):
        audio.load(path, channel="error")
    with pytest.raises(AudioError, match="channel 3 requested"):
        audio.load(path, channel=3)


def test_bad_audio_errors_name_the_file(tmp_path):
    with pytest.raises(AudioError, match="missing.wav: file not found"):
        audio.load(tmp_path / "missing.wav")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00not a wav")
    with pytest.raises(AudioError, match="corrupt.wav: cannot decode"):
        audio.load(tmp_path / "corrupt.wav")
    sf.write(tmp_path / "empty.wav", np.zeros(0), 16000)
    with pytest.raises(AudioError, match="empty.wav: empty audio"):
        audio.load(tmp_path / "empty.wav")
    sf.write(tmp_path / "nan.wav", np.array([0.1, np.nan, 0.2]), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="nan.wav: audio contains NaN"):
        audio.load(tmp_path / "nan.wav")
    with pytest.raises(AudioError, match=r"short.wav: too short: 0.250 s < minimum 1.000 s"):
        audio.load(write_wav(tmp_path / "short.wav"), min_seconds=1.0)
    sf.write(tmp_path / "zero.wav", np.zeros(100), 16000)
    with pytest.warns(UserWarning, match="zero.wav: audio is all zeros"):
        audio.load(tmp_path / "zero.wav")


def test_crop_or_pad():
    x = torch.arange(10.0)
    assert audio.crop_or_pad(x, 4).tolist() == [3.0, 4.0, 5.0, 6.0]
    assert audio.crop_or_pad(x, 4, mode="start").tolist() == [0.0, 1.0, 2.0, 3.0]
    padded = audio.crop_or_pad(x, 14)
    assert padded.shape == (14,) and padded[:2].tolist() == [0, 0] and padded[2:12].tolist() == x.tolist()
    batch = torch.ones(3, 5)
    assert audio.crop_or_pad(batch, 7).shape == (3, 7)


def test_segments_cover_everything():
    x = torch.arange(10.0)
    seg = audio.segments(x, 4)
    assert seg.shape == (3, 4) and seg[-1].tolist() == [8.0, 9.0, 0.0, 0.0]
    assert audio.segments(x, 4, hop=2).shape == (4, 4)
    assert audio.segments(torch.ones(3), 4).tolist() == [[1.0, 1.0, 1.0, 0.0]]
    assert audio.segments(x, 5).shape == (2, 5)
