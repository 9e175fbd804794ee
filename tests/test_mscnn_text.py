"""MSCNN-SPU(-ATT) and the text pipeline."""

import numpy as np
import pandas as pd
import pytest
import torch

from serlib.errors import DataError
from serlib.experiments import make_config
from serlib.experiments.mscnn_spu import MSCNNSPUExperiment
from serlib.models.mscnn_spu import MSCNN, MSCNNSPU, VARIANTS, MSCNNSPUConfig, spu, text_attention
from serlib.text import Vocabulary, load_glove, read_utterance_embeddings, swem, tokenize


def test_tokenizer_keeps_markers_and_splits_punctuation():
    assert tokenize("[LAUGHTER] Well... I can't!") == ["<laughter>", "well", ".", ".", ".", "i", "can't", "!"]
    assert tokenize(None) == [] and tokenize("") == []


def test_vocabulary_from_training_texts_only():
    vocab = Vocabulary.build(["the cat sat", "the dog"])
    assert vocab.itos[:2] == ["<pad>", "<unk>"] and len(vocab) == 6
    assert vocab.encode("the cat flew").tolist() == [vocab.stoi["the"], vocab.stoi["cat"], 1]
    assert vocab.encode("").tolist() == [1]  # never empty: lengths stay >= 1


def test_glove_loading_coverage_and_errors(tmp_path):
    vocab = Vocabulary.build(["happy sad unseen"])
    path = tmp_path / "glove.txt"
    path.write_text("happy 0.1 0.2 0.3\nirrelevant 1 1 1\nsad -0.1 -0.2 -0.3\n")
    matrix, report = load_glove(path, vocab)
    assert matrix.shape == (5, 3) and report["found"] == 2 and report["coverage"] == pytest.approx(2 / 3)
    torch.testing.assert_close(matrix[vocab.stoi["happy"]], torch.tensor([0.1, 0.2, 0.3]))
    assert torch.all(matrix[0] == 0)  # padding
    bad = tmp_path / "bad.txt"
    bad.write_text("happy 0.1 0.2 0.3\nsad 0.1 0.2\n")
    with pytest.raises(DataError, match=r"bad.txt:2: malformed GloVe line: 2 values, expected 3"):
        load_glove(bad, vocab)
    bad.write_text("happy 0.1 x 0.3\n")
    with pytest.raises(DataError, match=r"bad.txt:1: malformed GloVe line"):
        load_glove(bad, vocab)
    with pytest.raises(DataError, match="not found"):
        load_glove(tmp_path / "nope.txt", vocab)


def test_swem_and_spu_ignore_padding():
    emb = torch.tensor([[[1.0, 2.0], [3.0, -1.0], [100.0, 100.0]]])
    torch.testing.assert_close(swem(emb, torch.tensor([2])), torch.tensor([[3.0, 2.0, 2.0, 0.5]]))
    h = torch.tensor([[[1.0, 3.0, 50.0, -7.0]]])  # (B=1, C=1, T=4), two valid steps
    pooled = spu(h, torch.tensor([2]))
    assert pooled["max"].item() == 3.0 and pooled["avg"].item() == 2.0
    assert pooled["std"].item() == pytest.approx(1.0, abs=1e-4)  # population std of [1, 3]
    assert list(spu(h, torch.tensor([2]), "max")) == ["max"]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # the reference layer
def test_mscnn_is_same_padded_for_odd_and_even_kernels():
    torch.manual_seed(0)
    kernels = (2, 3, 4, 5)
    msc, x, lengths = MSCNN(6, kernels, 4), torch.randn(3, 6, 11), torch.tensor([11, 7, 3])
    mask = (torch.arange(11) < lengths[:, None])[:, None].float()
    out = msc(x, lengths)
    for i, (conv, k) in enumerate(zip(msc.convs, kernels)):
        same = torch.nn.Conv1d(6, 4, k, padding="same")
        same.load_state_dict(conv.state_dict())
        expected = torch.relu(same(x * mask)) * mask
        assert torch.allclose(out[:, 4 * i:4 * (i + 1)], expected, atol=1e-6)


def test_text_attention_masks_padding():
    h = torch.randn(2, 8, 5)
    weights_s, weights = text_attention(torch.randn(2, 8), h, torch.tensor([5, 2]))
    torch.testing.assert_close(weights.sum(-1), torch.ones(2))
    assert torch.all(weights[1, 2:] == 0)
    assert weights_s.shape == (2, 8)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_and_padding_invariance(variant):
    torch.manual_seed(0)
    model = MSCNNSPU(MSCNNSPUConfig(variant=variant, audio_dim=12, vocab_size=20, embedding_dim=6, filters=4,
                                    fc_dim=8, utterance_dim=3 if variant != "text" else 0)).eval()
    audio = torch.randn(2, 12, 30)
    text = torch.randint(2, 20, (2, 7))
    lengths, text_lengths = torch.tensor([30, 17]), torch.tensor([7, 4])
    audio[1, :, 17:], text[1, 4:] = 9.0, 0
    utt = torch.randn(2, 3)
    logits = model(audio, lengths, text, text_lengths, utt)
    alone = model(audio[1:, :, :17], lengths[1:], text[1:, :4], text_lengths[1:], utt[1:])
    assert logits.shape == (2, 4)
    torch.testing.assert_close(logits[1:], alone, atol=1e-5, rtol=1e-4)


def test_ablations_change_the_classifier_input():
    full = MSCNNSPU(MSCNNSPUConfig(audio_dim=12, vocab_size=9, embedding_dim=6, filters=4))
    ablated = MSCNNSPU(MSCNNSPUConfig(variant="mscnn_spu", audio_dim=12, vocab_size=9, embedding_dim=6, filters=4,
                                      text_spu="max", swem=False))
    # full: audio SPU 3·16 + text SPU 3·16 + SWEM 12 + attention 3·16 = 156; ablated: 48 + 16
    assert full.fc.in_features == 156 and ablated.fc.in_features == 64


def test_corpus_without_text_is_a_clear_error():
    manifest = pd.DataFrame({"utt_id": ["a", "b"], "text": [None, None]})
    config = make_config("mscnn_spu", {"model.variant": "mscnn_spu_att", "corpus": "asvp_esd"})
    with pytest.raises(DataError, match="corpus 'asvp_esd' has no transcripts.*variant='audio'"):
        MSCNNSPUExperiment(config).texts(manifest)
    manifest.loc[0, "text"] = "one transcript"
    with pytest.raises(DataError, match="needs a transcript for every utterance.*1 of 2.*variant='audio'"):
        MSCNNSPUExperiment(config).texts(manifest)
    audio_only = make_config("mscnn_spu", {"model.variant": "audio"})
    assert MSCNNSPUExperiment(audio_only).prepare(manifest, {"train": ["a"]}) == {"extras": {}}


def test_asr_text_and_utterance_embeddings(tmp_path):
    manifest = pd.DataFrame({"utt_id": ["a", "b"], "text": ["one", "two"]})
    (tmp_path / "asr.csv").write_text("utt_id,asr_text\na,won\nb,too\n")
    config = make_config("mscnn_spu", {"text_column": "asr_text", "asr_csv": str(tmp_path / "asr.csv")})
    assert MSCNNSPUExperiment(config).texts(manifest) == {"a": "won", "b": "too"}
    np.savez(tmp_path / "x.npz", a=np.ones(4), b=np.zeros(4))
    table = read_utterance_embeddings(tmp_path / "x.npz")
    assert set(table) == {"a", "b"} and table["a"].shape == (4,)
    (tmp_path / "x.csv").write_text("utt_id,e0,e1\na,1,2\n")
    assert read_utterance_embeddings(tmp_path / "x.csv")["a"].tolist() == [1.0, 2.0]


def test_config_defaults_follow_the_paper():
    c = make_config("mscnn_spu")
    assert (c.lr, c.grad_clip, c.model.dropout, c.batch_size, c.merge, c.model.filters) == (5e-4, 1.0, 0.3, 64, {"excited": "happy"}, 128)
