"""VTLP (eq. 1), strategies, voting, oversampling — and no leakage into training."""

import numpy as np
import pytest
import torch

from serlib.augment import (
    TEST_ALPHAS,
    VTLP,
    oversample_indices,
    predict_with_voting,
    vote,
    vtlp_warp,
    warp_frequencies,
)


def peak_spectrogram(bin_: float, n_freq=257, n_time=5):
    f = torch.arange(n_freq, dtype=torch.float32)
    return torch.exp(-0.5 * ((f - bin_) / 2.0) ** 2)[:, None].repeat(1, n_time)


def test_warp_function_eq1():
    f = torch.tensor([0.0, 100.0, 900.0, 950.0, 1000.0])
    g = warp_frequencies(f, torch.tensor(1.1), fmax=1000.0)
    torch.testing.assert_close(g[:3], torch.tensor([0.0, 110.0, 990.0]))
    assert g[-1] == 1000.0  # the top frequency stays fixed
    assert torch.all(g[1:] > g[:-1])  # monotone


def test_alpha_one_is_identity(device):
    spec = torch.rand(3, 257, 7, device=device)
    torch.testing.assert_close(vtlp_warp(spec, 1.0), spec)
    torch.testing.assert_close(VTLP(alpha=1.0)(spec), spec)
    assert VTLP().eval()(spec) is spec  # no warping outside training


def test_alpha_moves_a_peak_below_f0_by_alpha(device):
    spec = peak_spectrogram(100.0).to(device)
    for alpha in (0.9, 1.1):
        warped = vtlp_warp(spec, alpha)
        assert int(warped[:, 0].argmax()) == round(100 * alpha)
    top = peak_spectrogram(256.0).to(device)
    assert int(vtlp_warp(top, 1.1)[:, 0].argmax()) == 256


def test_batched_equals_per_item(device):
    spec = torch.rand(4, 3, 129, 6, device=device)  # (B, C, F, T)
    alphas = torch.tensor([0.9, 0.95, 1.05, 1.1], device=device)
    batched = vtlp_warp(spec, alphas)
    for i in range(4):
        torch.testing.assert_close(batched[i], vtlp_warp(spec[i], float(alphas[i])))


def test_training_draws_one_alpha_per_example():
    torch.manual_seed(0)
    spec = peak_spectrogram(100.0).repeat(64, 1, 1)
    peaks = VTLP().train()(spec)[:, :, 0].argmax(-1).float()
    assert peaks.std() > 1 and 90 <= peaks.min() and peaks.max() <= 110


def test_vote_majority_then_summed_probability():
    # 3 copies, 2 utterances, 3 classes
    p = torch.tensor([[[0.6, 0.3, 0.1], [0.5, 0.4, 0.1]],
                      [[0.6, 0.3, 0.1], [0.1, 0.45, 0.45]],
                      [[0.2, 0.7, 0.1], [0.1, 0.2, 0.7]]])
    # utterance 0: class 0 wins 2 votes to 1; utterance 1: one vote each -> summed prob: class 2 (1.25)
    assert vote(p).tolist() == [0, 2]
    assert TEST_ALPHAS == (0.9, 0.92, 0.94, 0.96, 0.98, 1.0, 1.02, 1.04, 1.06, 1.08, 1.1)


def test_predict_with_voting_scores_eleven_copies():
    seen = []

    def proba(x):
        seen.append(x)
        return torch.softmax(x.mean(dim=(-2, -1)).unsqueeze(-1).repeat(1, 3) * torch.tensor([1.0, 2.0, 3.0]), -1)

    pred, mean = predict_with_voting(proba, torch.rand(2, 65, 4))
    assert len(seen) == 11 and pred.shape == (2,) and mean.shape == (2, 3)


def test_oversampling_repeats_only_chosen_training_items():
    labels = ["neutral", "happy", "angry", "sad", "happy"]
    index = oversample_indices(labels, {"happy": 2, "angry": 2})
    assert sorted(index.tolist()) == [0, 1, 1, 2, 2, 3, 4, 4]
    shuffled = oversample_indices(labels, {"happy": 2}, seed=1)
    assert sorted(shuffled.tolist()) == [0, 1, 1, 2, 3, 4, 4]
    with pytest.raises(ValueError):
        oversample_indices(labels, {"happy": 1.5})


def test_no_copy_of_val_or_test_reaches_training(iemocap_root):
    """Augmented/oversampled training sets are built from the fold's train ids only."""
    from serlib.cache import extract
    from serlib.corpora import load_corpus, select_classes
    from serlib.data import FeatureDataset
    from serlib.experiments import feature_preset as preset
    from serlib.protocols import make_folds

    df = select_classes(load_corpus("iemocap", iemocap_root))
    store = extract(df, preset("cnn_lstm"), use_cache=False, progress=False)
    label_of = dict(zip(df.utt_id, df.label))
    classes = ["neutral", "happy", "sad", "angry"]
    for fold in make_folds(df, "loso"):
        labels = [label_of[u] for u in fold.train]
        train = FeatureDataset(store, fold.train, labels, classes, oversample_indices(labels, {"happy": 2, "angry": 2}, seed=0))
        seen = {train[i][2] for i in range(len(train))}
        assert seen == set(fold.train)
        assert not seen & (set(fold.val) | set(fold.test))
        assert len(train) > len(fold.train)
    assert np.isfinite(torch.cat([store[u].flatten() for u in df.utt_id]).numpy()).all()
