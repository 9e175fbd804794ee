"""One module per paper; each model takes its config and returns logits."""

from .attention_fcn import AttentionFCN, AttentionFCNConfig
from .cnn_lstm import CNNLSTM, CNNLSTMConfig
from .light_sernet import LightSERNet, LightSERNetConfig

__all__ = ["CNNLSTM", "AttentionFCN", "AttentionFCNConfig", "CNNLSTMConfig", "LightSERNet", "LightSERNetConfig"]
