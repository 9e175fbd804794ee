"""One module per paper; each model takes its config and returns logits.

Nothing is re-exported here: import a model from its own module
(``from serlib.models.cnn_lstm import CNNLSTM``), so that loading one paper's model loads
no other, and a new paper's model needs no edit to this file.
"""
