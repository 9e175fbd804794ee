"""Attention FCN (2-D/1-D), Light-SERNet, focal loss."""

import math

import pytest
import torch

from serlib.experiments import make_config
from serlib.losses import focal_loss
from serlib.models.attention_fcn import AttentionFCN, AttentionFCNConfig
from serlib.models.light_sernet import LightSERNet, LightSERNetConfig, tf_avg_pool

# --- Light-SERNet ------------------------------------------------------------------------


def test_light_sernet_parameter_count_is_pinned():
    model = LightSERNet(LightSERNetConfig(n_classes=4))
    assert sum(p.numel() for p in model.parameters()) == 460_740  # "about 0.46 M"
    assert sum(p.numel() for p in LightSERNet(LightSERNetConfig(n_classes=7)).parameters()) == 460_740 + 3 * 321


@pytest.mark.parametrize("frames, shapes", [
    (184, [(96, 92, 20), (64, 46, 10), (96, 23, 5), (128, 12, 5), (160, 6, 5), (320, 6, 5)]),   # 3 s
    (434, [(96, 217, 20), (64, 109, 10), (96, 55, 5), (128, 28, 5), (160, 14, 5), (320, 14, 5)]),  # 7 s
])
def test_light_sernet_feature_maps(frames, shapes, device):
    model = LightSERNet(LightSERNetConfig()).to(device).eval()
    maps = model.feature_maps(torch.randn(2, 40, frames, device=device))
    assert [tuple(m.shape[1:]) for m in maps] == shapes
    assert model(torch.randn(2, 40, frames, device=device)).shape == (2, 4)


def test_tf_same_pooling_ceils_and_excludes_padding():
    x = torch.ones(1, 1, 5, 3)
    out = tf_avg_pool((2, 2))(x)
    assert out.shape == (1, 1, 3, 2) and torch.all(out == 1)  # edge windows average only real cells
    assert tf_avg_pool((2, 1))(torch.ones(1, 1, 7, 5)).shape == (1, 1, 4, 5)


def test_light_sernet_config_defaults():
    c = make_config("light_sernet")
    assert (c.epochs, c.batch_size, c.lr, c.input_seconds, c.loss) == (300, 32, 1e-4, 3.0, "ce")
    assert c.lr_decay == pytest.approx(math.exp(-0.15))


# --- focal loss ----------------------------------------------------------------------------

def test_focal_loss_by_hand_and_against_ce():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    target = torch.tensor([0, 2])
    p = torch.softmax(logits, -1)
    pt = p[torch.arange(2), target]
    by_hand = (-(1 - pt) ** 2 * torch.log(pt)).mean()
    torch.testing.assert_close(focal_loss(logits, target, gamma=2.0), by_hand)
    torch.testing.assert_close(focal_loss(logits, target, gamma=0.0), torch.nn.functional.cross_entropy(logits, target))
    w = torch.tensor([1.0, 2.0, 3.0])
    torch.testing.assert_close(focal_loss(logits, target, gamma=0.0, weight=w),
                               torch.nn.functional.cross_entropy(logits, target, weight=w))
    assert focal_loss(logits, target, 2.0) < focal_loss(logits, target, 0.0)  # easy examples down-weighted


# --- attention FCN ----------------------------------------------------------------------------

@pytest.mark.parametrize("variant, shape", [("2d", (3, 200)), ("1d", (1,))])
def test_attention_sums_to_one_over_valid_positions(variant, shape, device):
    torch.manual_seed(0)
    model = AttentionFCN(AttentionFCNConfig(variant=variant, n_classes=4)).to(device).eval()
    long, short = 400, 180
    x = torch.randn(2, *shape, long, device=device)
    x[1, ..., short:] = 0
    lengths = torch.tensor([long, short], device=device)
    logits, alpha = model.forward_with_attention(x, lengths)
    flat = alpha.reshape(2, -1)
    torch.testing.assert_close(flat.sum(-1), torch.ones(2, device=device))
    t = alpha.shape[-1]
    valid_t = int((alpha[1].reshape(-1, t) > 0).any(0).sum())
    assert 0 < valid_t < t and torch.all(alpha[1].reshape(-1, t)[:, valid_t:] == 0)  # padding gets zero attention
    alone_logits, alone_alpha = model.forward_with_attention(x[1:, ..., :short], lengths[1:])
    torch.testing.assert_close(logits[1:], alone_logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(alpha[1, ..., :alone_alpha.shape[-1]], alone_alpha[0], atol=1e-5, rtol=1e-4)


def test_1d_variant_matches_emotion_in_motion_and_softmax_is_per_utterance():
    model = AttentionFCN(AttentionFCNConfig(variant="1d", attention_lambda=0.8)).eval()
    assert [m.out_channels for m in model.encoder.features if isinstance(m, torch.nn.Conv1d)] == [5, 10, 20, 30]
    x = torch.randn(3, 1, 259)
    _, alpha = model.forward_with_attention(x, torch.full((3,), 259))
    assert alpha.shape == (3, 15)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(3))  # each utterance, not the batch
    _, alone = model.forward_with_attention(x[:1], torch.full((1,), 259))
    torch.testing.assert_close(alone[0], alpha[0])


def test_segment_mode_pools_over_segments():
    model = AttentionFCN(AttentionFCNConfig(variant="1d", segment_frames=100, segment_pool="mean")).eval()
    x = torch.randn(2, 1, 250)
    logits, alpha = model.forward_with_attention(x, torch.tensor([250, 120]))
    assert logits.shape == (2, 4) and alpha.shape[:2] == (2, 3)
    seg0 = model._single(x[:1, :, :100], torch.tensor([100]))[0]
    seg1 = model._single(x[:1, :, 100:200], torch.tensor([100]))[0]
    seg2 = model._single(torch.nn.functional.pad(x[:1, :, 200:], (0, 50)), torch.tensor([50]))[0]
    torch.testing.assert_close(logits[0], ((seg0 + seg1 + seg2) / 3)[0], atol=1e-5, rtol=1e-4)


def test_encoder_checkpoint_loading():
    source = AttentionFCN(AttentionFCNConfig())
    state = {k.replace("encoder.", ""): v for k, v in source.state_dict().items() if k.startswith("encoder.")}
    target = AttentionFCN(AttentionFCNConfig(), encoder_state_dict=state)
    torch.testing.assert_close(target.encoder.features[0].weight, source.encoder.features[0].weight)
    with pytest.raises(ValueError, match="does not fit"):
        AttentionFCN(AttentionFCNConfig(), encoder_state_dict={"features.99.weight": torch.zeros(1)})


def test_experiment_defaults_follow_spec():
    two_d, one_d = make_config("attention_fcn"), make_config("attention_fcn_1d")
    assert (two_d.model.attention_lambda, two_d.lr, two_d.batch_size, two_d.epochs) == (0.3, 1e-4, 64, 100)
    assert (one_d.model.attention_lambda, one_d.lr, one_d.batch_size, one_d.epochs) == (0.8, 1e-3, 51, 200)
