"""Front ends against librosa, batch consistency, frame counts, normalisation."""

import librosa
import numpy as np
import pytest
import torch

from serlib.experiments import feature_preset as preset
from serlib.experiments import feature_presets
from serlib.features import FrontEnd, Normalizer, conv_lengths, lengths_to_mask

PRESETS = feature_presets()


def chirp(seconds=1.3, sr=16000, seed=0):
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    x = 0.3 * np.sin(2 * np.pi * (150 + 400 * t) * t) + 0.01 * rng.normal(size=t.size)
    return torch.tensor(x, dtype=torch.float32)


def test_cnn_lstm_spectrogram_matches_librosa():
    x = chirp()
    ours = FrontEnd(PRESETS["cnn_lstm"])(x).numpy()
    ref = np.abs(librosa.stft(x.numpy(), n_fft=1024, hop_length=512, window="hamming",
                              center=True, pad_mode="reflect"))[:256]  # bins below 4 kHz
    # log(|X| + 1e-6): float32 STFT vs librosa's; 0.01 nats tolerance
    np.testing.assert_allclose(ours, np.log(ref + 1e-6), atol=1e-2)
    assert ours.shape == (256, 1 + len(x) // 512)
    assert FrontEnd(PRESETS["cnn_lstm_8k"])(x).shape[0] == 512


def test_mscnn_mfcc_and_deltas_match_librosa():
    x = chirp()
    ours = FrontEnd(PRESETS["mscnn"])(x).numpy()
    mfcc = librosa.feature.mfcc(y=x.numpy(), sr=16000, n_mfcc=32, n_fft=512, win_length=400,
                                hop_length=160, window="hamming", n_mels=40, pad_mode="reflect")
    assert ours.shape == (96, mfcc.shape[1])
    np.testing.assert_allclose(ours[:32], mfcc, atol=2e-3 * np.abs(mfcc).max())
    d1 = librosa.feature.delta(mfcc)  # same regression formula; edges differ (librosa interpolates)
    np.testing.assert_allclose(ours[32:64, 4:-4], d1[:, 4:-4], atol=1e-3 * np.abs(d1).max())


def test_attention_fcn_1d_matches_librosa_mean_mel():
    x = chirp(3.0, 44100)
    ours = FrontEnd(PRESETS["attention_fcn_1d"])(x).numpy()
    mel = librosa.power_to_db(librosa.feature.melspectrogram(y=x.numpy(), sr=44100, n_mels=128, pad_mode="reflect"))
    assert ours.shape == (1, 259)  # 3 s at 44.1 kHz: the paper's 259 steps
    np.testing.assert_allclose(ours[0], mel.mean(axis=0), atol=0.05)


def test_light_sernet_preset_settings():
    fe = FrontEnd(PRESETS["light_sernet"])
    assert (fe.n_fft, fe.hop, fe.config.n_mels, fe.config.n_mfcc) == (1024, 256, 128, 40)
    x = chirp(3.0)
    y = fe(x)
    assert y.shape == (40, 1 + (48000 - 1024) // 256) and y.abs().max() <= 10
    # amplitude normalisation makes the output independent of the input gain
    torch.testing.assert_close(fe(0.01 * x), y, atol=1e-3, rtol=1e-3)
    assert PRESETS["light_sernet_paper"].window == "hamming" and PRESETS["light_sernet_paper"].fmin == 40


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_batched_equals_per_item(name, device):
    fe = FrontEnd(PRESETS[name]).to(device)
    sr = PRESETS[name].sample_rate
    waves = [chirp(s, sr, seed=i).to(device) for i, s in enumerate((0.7, 1.3, 1.0))]
    lengths = torch.tensor([w.numel() for w in waves], device=device)
    batch = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    feats, frames = fe(batch, lengths)
    for w, f, t in zip(waves, feats, frames.tolist()):
        single = fe(w)
        assert t == fe.frames(w.numel()) == single.shape[-1]
        torch.testing.assert_close(f[..., :t], single, atol=1e-4, rtol=1e-4)
        assert (f[..., t:] == 0).all()


def test_frame_counts_documented():
    fe = FrontEnd(preset("cnn_lstm"))
    assert [fe.frames(n) for n in (0, 511, 512, 16000)] == [1, 1, 2, 32]
    tf = FrontEnd(preset("light_sernet"))
    assert [tf.frames(n) for n in (1024, 1280, 48000, 112000)] == [1, 2, 184, 434]


def test_masks_and_conv_lengths():
    lengths = torch.tensor([5, 3])
    assert lengths_to_mask(lengths).tolist() == [[True] * 5, [True] * 3 + [False] * 2]
    assert conv_lengths(torch.tensor([100, 21]), kernel=3, stride=2, padding=1).tolist() == [50, 11]
    assert conv_lengths(torch.tensor([5]), kernel=2, stride=2, ceil_mode=True).tolist() == [3]


def test_normalizer_uses_training_statistics_only():
    train = [torch.full((4, 10), 2.0), torch.full((4, 6), 4.0)]
    norm = Normalizer("global").fit(train)
    assert norm.mean.item() == pytest.approx((20 * 4 + 24 * 4) / 64)
    test = torch.full((4, 3), 100.0)  # test statistics must not move the normaliser
    assert norm(test).mean() > 10
    per = Normalizer("per_feature").fit([torch.arange(8.0).reshape(2, 4)])
    torch.testing.assert_close(per.mean.flatten(), torch.tensor([1.5, 5.5]))
    with pytest.raises(RuntimeError, match="before fit"):
        Normalizer()(test)
