"""One module per paper; each model takes its config and returns logits."""

from .cnn_lstm import CNNLSTM, CNNLSTMConfig

__all__ = ["CNNLSTM", "CNNLSTMConfig"]
