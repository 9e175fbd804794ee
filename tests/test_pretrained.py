"""Pretrained upstreams with no pretrained weights on the machine: tiny randomly
initialised encoders (2 layers, hidden size 32) of each supported kind, saved with
``save_pretrained`` into temporary folders and loaded by the real code."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from serlib import bundle, upstream, weights
from serlib.errors import ConfigError
from serlib.experiments import make_config
from serlib.experiments.pretrained import UpstreamFrontEnd
from serlib.models.upstream import UpstreamHead, UpstreamHeadConfig
from serlib.records import run_fingerprint
from serlib.train import run_fold
from serlib.upstream import UpstreamError, describe, extract_states, pooled_statistics
from tests.test_bad_inputs import write_csv_corpus

pytest.importorskip("transformers")
ROOT = Path(__file__).resolve().parents[1]
HEAD = {"epochs": "2", "batch_size": "8", "progress": "false", "feature_workers": "1", "patience": "none"}


@pytest.fixture(scope="module")
def encoders(tmp_path_factory) -> dict[str, Path]:
    """One tiny random checkpoint folder per kind."""
    root = tmp_path_factory.mktemp("encoders")
    return {kind: upstream.write_random_encoder(root / kind, kind) for kind in upstream.KINDS}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """4 speakers × 4 labels × 2 files of 0.5 s (a CSV manifest)."""
    return write_csv_corpus(tmp_path_factory.mktemp("corpus"))


def manifest_of(csv: Path) -> pd.DataFrame:
    from serlib.corpora import load_corpus

    return load_corpus("csv", csv)


def wave(seconds: float, seed: int = 0) -> torch.Tensor:
    return torch.randn(int(seconds * 16000), generator=torch.Generator().manual_seed(seed)) * 0.1


# -- loading -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", upstream.KINDS)
def test_each_kind_loads_locally_and_gives_every_hidden_state(encoders, kind):
    found = describe(encoders[kind])
    assert (found.kind, found.n_states, found.hidden_size, found.sample_rate) == (kind, 3, 32, 16000)
    states = upstream.load(encoders[kind]).states(wave(1.0), 16000)
    assert states.shape[:2] == (3, 32) and abs(states.shape[-1] - found.frame_rate) <= 1  # about 50 frames in 1 s
    assert torch.isfinite(states).all()


def test_a_missing_folder_says_what_is_needed_and_where_to_get_it(tmp_path):
    with pytest.raises(UpstreamError, match=r"no such checkpoint folder.*config.json.*huggingface-cli download"):
        describe(tmp_path / "nothing")
    with pytest.raises(ConfigError, match=r"upstream.path: .*no such checkpoint folder"):
        make_config("pretrained", {"upstream.path": str(tmp_path / "nothing")})


def test_a_partial_folder_names_the_missing_files(encoders, tmp_path):
    partial = shutil.copytree(encoders["wavlm"], tmp_path / "partial")
    (partial / "model.safetensors").unlink()
    with pytest.raises(UpstreamError, match=r"incomplete checkpoint: missing \['model.safetensors or pytorch_model.bin'\]"):
        describe(partial)
    (partial / "preprocessor_config.json").unlink()
    with pytest.raises(UpstreamError, match=r"missing \['preprocessor_config.json', 'model.safetensors or"):
        describe(partial)


def test_a_non_speech_checkpoint_is_refused(encoders, tmp_path):
    import transformers

    text = tmp_path / "bert"
    transformers.BertModel(transformers.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                                   intermediate_size=64, vocab_size=50)).save_pretrained(text)
    shutil.copy(encoders["wavlm"] / "preprocessor_config.json", text)
    with pytest.raises(UpstreamError, match=r"model_type 'bert': not a supported speech encoder"):
        describe(text)
    with pytest.raises(UpstreamError, match=r"upstream.kind='hubert' but config.json says model_type 'wavlm'"):
        describe(encoders["wavlm"], "hubert")


def test_a_wrong_sampling_rate_is_refused(encoders):
    encoder = upstream.load(encoders["wav2vec2"])
    with pytest.raises(UpstreamError, match=r"waveform at 8000 Hz but this encoder takes 16000 Hz"):
        encoder.states(wave(1.0), 8000)
    with pytest.raises(UpstreamError, match=r"8000 Hz"):
        encoder.encode([wave(1.0)], 8000)


# -- the head ---------------------------------------------------------------------------------
def test_layer_weights_sum_to_one_and_get_gradients():
    head = UpstreamHead(UpstreamHeadConfig(n_layers=3, n_features=32, n_classes=4, pooling="attentive"))
    x, lengths = torch.randn(5, 3, 32, 20), torch.tensor([20, 15, 9, 20, 3])
    w = head.layers.weights()
    assert torch.allclose(w.sum(), torch.tensor(1.0)) and torch.allclose(w, torch.full((3,), 1 / 3))
    torch.nn.functional.cross_entropy(head(x, lengths), torch.tensor([0, 1, 2, 3, 0])).backward()
    assert head.layers.logits.grad is not None and head.layers.logits.grad.abs().sum() > 0


def test_mean_pooling_of_pooled_statistics_equals_mean_pooling_of_frames():
    """Both linear: the head gives the same logits from the cached statistics as from
    the frames (so the pooled cache loses nothing for ``pooling="mean"``)."""
    head = UpstreamHead(UpstreamHeadConfig(n_layers=3, n_features=32, n_classes=4)).eval()
    head.layers.logits.data = torch.tensor([0.5, -1.0, 2.0])
    frames = [torch.randn(3, 32, t) for t in (20, 7)]
    padded = torch.stack([torch.nn.functional.pad(f, (0, 20 - f.shape[-1])) for f in frames])
    pooled = torch.stack([pooled_statistics(f) for f in frames])
    assert torch.allclose(head(padded, torch.tensor([20, 7])), head(pooled, torch.ones(2, dtype=torch.long)), atol=1e-5)


def test_padding_does_not_change_the_head():
    head = UpstreamHead(UpstreamHeadConfig(n_layers=3, n_features=32, n_classes=4, pooling="mean_std")).eval()
    x = torch.randn(1, 3, 32, 9)
    padded = torch.cat([x, torch.randn(1, 3, 32, 5)], dim=-1)  # garbage past the length
    assert torch.allclose(head(x, torch.tensor([9])), head(padded, torch.tensor([9])), atol=1e-6)


# -- chunks and the cache ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["wavlm", "whisper"])
def test_chunked_long_files_equal_single_passes_of_their_chunks(encoders, kind):
    encoder = upstream.Upstream(describe(encoders[kind]), chunk_seconds=0.5)
    long = wave(1.5, seed=3)
    assert encoder.chunks(long.numel()) == [(0, 8000), (8000, 16000), (16000, 24000)]  # no overlap, no gap
    joined = encoder.states(long, 16000)
    singles = torch.cat([encoder.encode([long[s:e]])[0] for s, e in encoder.chunks(long.numel())], dim=-1)
    assert torch.equal(joined, singles)
    assert torch.allclose(encoder.batch_states([long, long[:8000]])[0], joined, atol=1e-5)
    # a file within one chunk is one pass of the whole file
    whole = upstream.Upstream(describe(encoders[kind]), chunk_seconds=2.0)
    assert torch.equal(whole.states(long, 16000), whole.encode([long])[0])


def test_cached_states_equal_fresh_ones(encoders, corpus, tmp_path):
    manifest = manifest_of(corpus)
    found = describe(encoders["hubert"])
    first = extract_states(manifest, found, frames=True, cache_dir=tmp_path, progress=False)
    again = extract_states(manifest, found, frames=True, cache_dir=tmp_path, progress=False)
    pooled = extract_states(manifest, found, frames=False, cache_dir=tmp_path, progress=False)
    assert not first.from_cache and again.from_cache and pooled.from_cache  # one pass wrote both levels
    encoder = upstream.load(encoders["hubert"])
    for utt, path in list(zip(manifest.utt_id, manifest.path))[:4]:
        fresh = encoder.states(upstream.InputChecks().load(path, 16000)[0], 16000)
        assert again[utt].dtype == torch.float16 and torch.equal(again[utt], first[utt])
        assert torch.allclose(again[utt].float(), fresh, atol=1e-2, rtol=1e-3)  # fp16 storage
        assert torch.allclose(pooled[utt], pooled_statistics(fresh), atol=1e-5)


@pytest.mark.parametrize("frames", [False, True])
def test_the_bundle_front_end_gives_what_the_cache_holds(encoders, corpus, tmp_path, frames):
    """Prediction's path (waveforms → states, :class:`UpstreamFrontEnd`) equals training's
    (the cache), layers selected, for items of different lengths in one padded batch."""
    manifest = manifest_of(corpus).head(3)
    found = describe(encoders["wav2vec2"])
    store = extract_states(manifest, found, frames=frames, cache_dir=tmp_path, progress=False)
    waves = [upstream.InputChecks().load(p, 16000)[0] for p in manifest.path]
    waves[1] = waves[1][:6000]  # a shorter item: padded in the batch, encoded at its own length
    front = UpstreamFrontEnd(upstream.Upstream(found), [0, 2], frames)
    x, counts = front(torch.nn.utils.rnn.pad_sequence(waves, batch_first=True), torch.tensor([w.numel() for w in waves]))
    for i in (0, 2):
        cached = store[manifest.utt_id.iloc[i]]
        expected = cached[[0, 2]] if frames else cached[:, [0, 2]]
        assert x[i, ..., :int(counts[i])].shape == expected.shape
        assert torch.allclose(x[i, ..., :int(counts[i])], expected.float(), atol=1e-5 if not frames else 1e-2)
    short = front.upstream.states(waves[1], 16000)
    assert int(counts[1]) == (short.shape[-1] if frames else 1)


def test_another_checkpoint_gets_another_cache_and_fingerprint(encoders, corpus, tmp_path):
    manifest = manifest_of(corpus)
    folder = shutil.copytree(encoders["wavlm"], tmp_path / "ckpt")
    values = {"corpus": "csv", "data_root": str(corpus), "subset": None, "upstream.path": str(folder)}
    before = make_config("pretrained", values)
    paths_before = upstream.store_paths(manifest, describe(folder), 20.0, upstream.InputChecks(), tmp_path)
    upstream.write_random_encoder(folder, "wavlm", seed=1)  # other weights, same folder
    after = make_config("pretrained", values)
    paths_after = upstream.store_paths(manifest, describe(folder), 20.0, upstream.InputChecks(), tmp_path)
    assert before.upstream.hash != after.upstream.hash and before.upstream.name == after.upstream.name
    assert paths_before["pooled"][2] != paths_after["pooled"][2] and paths_before["frames"][2] != paths_after["frames"][2]
    assert run_fingerprint(before, manifest)[0] != run_fingerprint(after, manifest)[0]
    # the same checkpoint elsewhere (same folder name, same files) keeps the fingerprint
    moved = shutil.copytree(folder, tmp_path / "elsewhere" / "ckpt")
    assert run_fingerprint(make_config("pretrained", {**values, "upstream.path": str(moved)}), manifest)[0] == \
        run_fingerprint(after, manifest)[0]
    # a config that names the old hash (a record's, a bundle's) refuses the new folder content
    with pytest.raises(ConfigError, match=r"has hash .* was made with"):
        make_config("pretrained", {**values, "upstream.hash": before.upstream.hash})


def test_config_rules():
    with pytest.raises(ConfigError, match=r"attentive weighs frames: it needs upstream.frames=true"):
        make_config("pretrained", {"model.pooling": "attentive"})
    with pytest.raises(ConfigError, match=r"model.pooling must be one of"):
        make_config("pretrained", {"model.pooling": "max"})
    with pytest.raises(ConfigError, match=r"upstream.freeze=false .* not available"):
        make_config("pretrained", {"upstream.freeze": "false"})
    with pytest.raises(ConfigError, match=r"time masks need frame-level states"):
        make_config("pretrained", {"recipe.time_masks": "2"})
    with pytest.raises(ConfigError, match=r"needs a local checkpoint: --set upstream.path=DIR"):
        from serlib.experiments import create

        create(make_config("pretrained")).features()


# -- training, export and predict ----------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(encoders, corpus, tmp_path_factory):
    """One fold of the head on frame-level states of a tiny WavLM (layers 1 and 2)."""
    tmp = tmp_path_factory.mktemp("trained")
    folder = shutil.copytree(encoders["wavlm"], tmp / "ckpt")
    config = make_config("pretrained", {**HEAD, "corpus": "csv", "data_root": str(corpus), "subset": None,
                                        "output_dir": str(tmp / "out"), "upstream.path": str(folder),
                                        "upstream.layers": "1,2", "upstream.frames": "true",
                                        "model.pooling": "attentive"})
    weights_before = {k: v.clone() for k, v in upstream.load(folder).state_dict().items()}
    record = run_fold(config)
    return {"tmp": tmp, "folder": folder, "record": record, "weights_before": weights_before}


def test_the_frozen_encoder_does_not_change(trained):
    record, folder = trained["record"], trained["folder"]
    after = upstream.load(folder)
    assert all(torch.equal(v, after.state_dict()[k]) for k, v in trained["weights_before"].items())
    assert describe(folder).hash == record["config"]["upstream"]["hash"]
    assert not any(p.requires_grad for p in after.parameters())
    model_state, _, _ = weights.read_weights(weights.weights_path(record["path"]))
    assert set(model_state) >= {"layers.logits"} and not any("encoder" in k for k in model_state)  # head only
    w = torch.softmax(model_state["layers.logits"], 0)
    assert w.shape == (2,) and torch.allclose(w.sum(), torch.tensor(1.0))
    assert not torch.allclose(w, torch.full((2,), 0.5))  # the weights were trained


def test_the_record_names_the_checkpoint(trained):
    record = trained["record"]
    features = json.loads(record["features"])
    assert features["checkpoint_hash"] == describe(trained["folder"]).hash and features["level"] == "frames"
    assert record["identity"]["settings"]["upstream"]["hash"] == features["checkpoint_hash"]
    assert record["identity"]["settings"]["upstream"]["name"] == "ckpt"


def test_predict_uses_the_checkpoint_and_refuses_another(trained, corpus, tmp_path):
    record = trained["record"]
    out = bundle.export(record["path"], tmp_path / "bundle")
    assert json.loads((out / "config.json").read_text())["upstream"]["hash"] == describe(trained["folder"]).hash
    model = bundle.load_model(out)
    test_files = pd.read_csv(record["predictions_path"])
    paths = dict(zip(manifest_of(corpus).utt_id, manifest_of(corpus).path))
    scored = model.predict([paths[u] for u in test_files.utt_id])
    assert scored.failures.empty
    # the bundle's prediction is the record's (same states, same head)
    assert list(scored.files.prediction) == list(test_files.prediction)
    upstream.write_random_encoder(trained["folder"], "wavlm", seed=7)  # the folder now holds another checkpoint
    with pytest.raises(ConfigError, match=r"has hash .* was made with"):
        bundle.load_model(out)


# -- through the program --------------------------------------------------------------------------
@pytest.mark.slow
def test_sweep_through_the_program(encoders, corpus, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "serlib", "sweep", "--experiment", "pretrained", "--corpus", "csv", "--root", str(corpus),
         "--folds", "1,2", "--set", f"upstream.path={encoders['whisper']}", "epochs=2", "batch_size=8", "progress=false",
         f"output_dir={tmp_path}", "feature_workers=1"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    records = sorted(tmp_path.rglob("fold*-seed1.json"))
    assert len(records) == 2
    config = json.loads(records[0].read_text())["config"]
    assert config["upstream"]["kind"] == "whisper" and config["upstream"]["hash"] == describe(encoders["whisper"]).hash
    bad = subprocess.run([sys.executable, "-m", "serlib", "run", "--experiment", "pretrained", "--corpus", "csv",
                          "--root", str(corpus), "--set", f"upstream.path={tmp_path / 'none'}"],
                         capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300, cwd=ROOT)
    assert bad.returncode == 2 and "no such checkpoint folder" in bad.stderr and "Traceback" not in bad.stderr
    assert np.isfinite(json.loads(records[0].read_text())["metrics"]["ua"])
