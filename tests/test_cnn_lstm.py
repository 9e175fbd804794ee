"""CNN+LSTM: masking, recurrent BN, the eq. 6 optimiser, configs."""

import pytest
import torch

from serlib.errors import ConfigError
from serlib.experiments import make_config
from serlib.experiments.cnn_lstm import TABLE1
from serlib.fields import from_dict
from serlib.models.cnn_lstm import CNNLSTM, CNNLSTMConfig, RecurrentBNLSTM, SequenceBatchNorm
from serlib.optim import LayerwiseMomentumSGD

SMALL = dict(n_freq=32, conv_channels=(4, 4, 8, 8, 8, 8), lstm_hidden=8, n_classes=3)


@pytest.mark.parametrize("recurrent_bn", [False, True])
@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_padding_changes_nothing(recurrent_bn, pooling, device):
    torch.manual_seed(0)
    model = CNNLSTM(CNNLSTMConfig(**SMALL, recurrent_bn=recurrent_bn, pooling=pooling, n_lstm=2)).to(device).eval()
    a, b = torch.randn(32, 23, device=device), torch.randn(32, 41, device=device)
    batch = torch.zeros(2, 32, 41, device=device)
    batch[0, :, :23], batch[1] = a, b
    batch[0, :, 23:] = 5.0  # garbage in the padding must not matter either
    lengths = torch.tensor([23, 41], device=device)
    together = model(batch, lengths)
    alone = torch.cat([model(a[None], lengths[:1]), model(b[None], lengths[1:])])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)


def test_lengths_follow_the_conv_strides():
    model = CNNLSTM(CNNLSTMConfig(**SMALL))
    seq, lengths = model.encode(torch.randn(2, 32, 100), torch.tensor([100, 37]))
    # strides (2,2),(2,2),(2,1),(2,1) in time: 100 -> 50 -> 25; 37 -> 19 -> 10
    assert seq.shape[1] == 25 and lengths.tolist() == [25, 10]
    assert (seq[1, 10:] == 0).all()


def test_recurrent_bn_statistics_ignore_padding():
    bn = SequenceBatchNorm(6).train()
    x = torch.randn(2, 7, 6)
    mask = torch.tensor([[True] * 7, [True] * 3 + [False] * 4])
    polluted = x.clone()
    polluted[1, 3:] = 1e3
    torch.testing.assert_close(bn(x, mask)[mask], bn(polluted, mask)[mask])
    valid = x[mask]
    expected = (valid - valid.mean()) / torch.sqrt(valid.var(unbiased=False) + 1e-5)
    torch.testing.assert_close(bn(x, mask)[mask], expected, atol=1e-5, rtol=1e-5)


def test_recurrent_bn_normalises_only_the_input_contribution():
    layer = RecurrentBNLSTM(5, 4, bidirectional=False)
    assert all(not c.weight_ih.requires_grad for c in layer.cell)  # W_x lives outside the cell, under BN
    out, final = layer(torch.randn(3, 6, 5), torch.tensor([6, 4, 1]))
    assert out.shape == (3, 6, 4) and final.shape == (3, 4)
    assert (out[2, 1:] == 0).all()


def test_optimizer_matches_eq6_by_hand():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = LayerwiseMomentumSGD([w], lr=0.1, momentum=0.5, beta=0.3, weight_decay=0.01)
    w_ref, v_ref = torch.tensor([1.0, -2.0]), torch.zeros(2)
    for _ in range(4):
        opt.zero_grad()
        (w ** 2).sum().backward()  # gradient 2w
        opt.step()
        v_ref = 0.5 * v_ref + 0.1 * (2 * w_ref + 0.01 * w_ref)
        w_ref = w_ref - 0.3 * v_ref
        torch.testing.assert_close(w.detach(), w_ref)


def test_beta_one_is_torch_sgd():
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    ours, ref = LayerwiseMomentumSGD([a], lr=0.05, momentum=0.9), torch.optim.SGD([b], lr=0.05, momentum=0.9)
    for _ in range(5):
        for p, opt in ((a, ours), (b, ref)):
            opt.zero_grad()
            (p ** 3).sum().backward()
            opt.step()
    torch.testing.assert_close(a, b)


def test_configs_reject_unknown_keys_and_build_table1():
    with pytest.raises(ConfigError, match="unknown config key.*lstm_hiden"):
        make_config("cnn_lstm", {"lstm_hiden": 64})
    with pytest.raises(ConfigError, match="vtlp must be"):
        make_config("cnn_lstm", {"vtlp": "sometimes"})
    nested = make_config("cnn_lstm", {"model.n_conv": "3", "model": {"lstm_hidden": 16}})
    assert (nested.model.n_conv, nested.model.lstm_hidden, nested.model.n_lstm) == (3, 16, 1)
    assert make_config("cnn_lstm", nested.to_dict()) == nested  # a record's config (JSON lists) round-trips
    for name, values in TABLE1.items():
        c = make_config("cnn_lstm", {"name": name, **values})
        assert c.freq_khz in (4, 8)
    c = from_dict(make_config("cnn_lstm").__class__, {"epochs": "3", "oversample": "{'happy': 3}", "patience": "none",
                                                         "classes": "neutral,sad", "amp": "false"})
    assert (c.epochs, c.oversample, c.patience, c.classes, c.amp) == (3, {"happy": 3}, None, ("neutral", "sad"), False)
    default = make_config("cnn_lstm")
    assert (default.batch_size, default.vtlp, default.freq_khz, default.oversample, default.model.n_conv, default.model.n_lstm) == (
        16, "per_example", 8, {"happy": 2, "angry": 2}, 4, 1)
