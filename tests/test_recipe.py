"""The training-recipe switches (serlib.recipe): each one's defining property, and the
engine with them on, through the program as users call it."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import pandas as pd
import pytest
import torch
from torch import nn

from serlib import recipe
from serlib.errors import ConfigError
from serlib.experiments import make_config
from serlib.recipe import RecipeConfig
from serlib.train import run_fold
from tests.fixtures import TINY, records_under, write_csv_corpus


def tiny(tmp_path, **kw):
    csv = write_csv_corpus(tmp_path / "corpus")
    values = {**TINY, "epochs": "3", "corpus": "csv", "data_root": str(csv), "subset": None,
              "output_dir": str(tmp_path / "out"), "vtlp": "none", "test_voting": "false", **kw}
    return make_config("cnn_lstm", values)


# --- SpecAugment masks ------------------------------------------------------------------
def test_masks_stay_inside_each_utterance_and_never_touch_padding():
    gen = torch.Generator().manual_seed(0)
    lengths = torch.tensor([50, 17, 3, 80])
    x = torch.randn(4, 1, 20, 80) + 5  # no value is 0 before masking
    for b, n in enumerate(lengths):
        x[b, ..., n:] = 0
    config = RecipeConfig(time_masks=3, time_mask_width=0.3, freq_masks=2, freq_mask_width=0.25)
    for _ in range(50):
        out = recipe.spec_augment(x, lengths, config, gen)
        for b, n in enumerate(lengths.tolist()):
            assert torch.equal(out[b, ..., n:], x[b, ..., n:])  # padding as it was
            frames_masked = (out[b, 0] == 0).all(0) & (x[b, 0] != 0).all(0)
            assert not frames_masked[n:].any()
            # each mask is at most 30 % of this utterance's own length: 3 masks ≤ 90 %
            assert int(frames_masked.sum()) <= 3 * math.floor(0.3 * n)
            bins_masked = (out[b, 0, :, :n] == 0).all(1)
            assert int(bins_masked.sum()) <= 2 * math.floor(0.25 * 20) or n <= 3
    keep = recipe.mask_spans(lengths, 80, 4, 1.0, gen)
    assert all(keep[b, n:].all() for b, n in enumerate(lengths.tolist()))


def test_masking_off_is_the_identity():
    x = torch.randn(2, 10, 30)
    assert recipe.spec_augment(x, torch.tensor([30, 20]), RecipeConfig()) is x


# --- mixup ------------------------------------------------------------------------------
def test_mixup_input_and_loss_follow_the_formula():
    x, y = torch.randn(4, 3, 5), torch.tensor([0, 1, 2, 3])
    perm = torch.tensor([1, 0, 3, 2])
    assert torch.allclose(recipe.mix(x, 0.7, perm), 0.7 * x + 0.3 * x[perm])
    logits = torch.randn(4, 4)
    ce = nn.CrossEntropyLoss()
    assert torch.allclose(recipe.mixed_loss(ce, logits, y, 0.7, perm), 0.7 * ce(logits, y) + 0.3 * ce(logits, y[perm]))
    lam, p = recipe.draw_mixup(0.2, 8, torch.Generator().manual_seed(1))
    assert 0.5 <= lam <= 1 and sorted(p.tolist()) == list(range(8))


@pytest.mark.slow  # trains twice
def test_mixup_with_lambda_1_is_plain_training(tmp_path, monkeypatch):
    plain = run_fold(tiny(tmp_path))
    monkeypatch.setattr(recipe, "draw_mixup", lambda alpha, n, g: (1.0, torch.randperm(n, generator=g)))
    mixed = run_fold(tiny(tmp_path, **{"recipe.mixup": "0.4"}))
    assert mixed["fingerprint"] != plain["fingerprint"] and mixed["recipe"] == {"mixup": 0.4}
    assert [h["train_loss"] for h in mixed["history"]] == [h["train_loss"] for h in plain["history"]]
    assert mixed["metrics"] == plain["metrics"]


# --- label smoothing --------------------------------------------------------------------
def test_label_smoothing_is_the_soft_target_loss():
    logits, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    soft = torch.full((6, 4), 0.1 / 4) + 0.9 * nn.functional.one_hot(y, 4)
    expected = -(soft * logits.log_softmax(-1)).sum(-1).mean()
    assert torch.allclose(recipe.smooth(nn.CrossEntropyLoss(), 0.1, 4)(logits, y), expected)
    from serlib.losses import FocalLoss

    # focal loss with gamma 0 is cross-entropy: the generic smoothing gives the same
    assert torch.allclose(recipe.smooth(FocalLoss(0.0), 0.1, 4)(logits, y), expected)


# --- schedule ---------------------------------------------------------------------------
def test_warmup_cosine_schedule_matches_its_formula():
    param = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.5)
    config = RecipeConfig(schedule="cosine", warmup=0.1, lr_scale=2.0)
    recipe.scale_lr(opt, None, config.lr_scale)
    sched = recipe.step_scheduler(opt, config, 100)
    seen = []
    for _ in range(100):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    for s, lr in enumerate(seen):
        factor = (s + 1) / 10 if s < 10 else 0.5 * (1 + math.cos(math.pi * (s - 10) / 90))
        assert lr == pytest.approx(1.0 * factor)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0)


@pytest.mark.slow  # trains a fold
def test_engine_steps_the_schedule_every_batch(tmp_path):
    record = run_fold(tiny(tmp_path, **{"recipe.schedule": "cosine", "recipe.lr_scale": "2"}))
    lrs = [h["lr"] for h in record["history"]]  # lr_conv after each epoch
    # warm-up then decay by step: below the peak after epoch 1, exactly 0 after the last step
    assert 0 < lrs[1] < 2 * 0.03 and lrs[0] > 0 and lrs[-1] == pytest.approx(0.0, abs=1e-12)


# --- moving average ---------------------------------------------------------------------
def test_ema_with_decay_0_is_the_raw_weights(tmp_path):
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = recipe.ema_model(model, 0.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        model(torch.randn(5, 3)).sum().backward()
        opt.step()
        ema.update_parameters(model)
    for (k, a), b in zip(model.state_dict().items(), ema.module.state_dict().values()):
        assert torch.equal(a, b), k
    record = run_fold(tiny(tmp_path, **{"recipe.ema": "0.0"}))
    for h in record["history"]:
        assert h["val_ua_ema"] == h["val_ua"] and h["val_loss_ema"] == pytest.approx(h["val_loss"], abs=1e-6)
    assert record["best_weights"] == "raw"  # ties keep the raw weights


def test_modern_recipe_resumes_bit_identically(tmp_path, monkeypatch):
    """Masks, mixup pairs, the step schedule and the moving average all continue where
    an interrupted fold stopped."""
    from tests.test_train import _interrupt_after

    every = {"recipe.time_masks": "2", "recipe.freq_masks": "2", "recipe.mixup": "0.2", "recipe.ema": "0.9",
             "recipe.schedule": "cosine", "recipe.label_smoothing": "0.1"}
    straight = run_fold(tiny(tmp_path, name="straight", **every))
    with monkeypatch.context() as m:
        _interrupt_after(m, 2)
        with pytest.raises(KeyboardInterrupt):
            run_fold(tiny(tmp_path, name="resumed", **every))
    resumed = run_fold(tiny(tmp_path, name="resumed", resume="true", **every))
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in straight["history"]]
    assert [h["val_ua_ema"] for h in resumed["history"]] == [h["val_ua_ema"] for h in straight["history"]]
    assert resumed["metrics"] == straight["metrics"] and resumed["best_weights"] == straight["best_weights"]


# --- per-speaker normalisation ----------------------------------------------------------
def test_speaker_normalisation_standardises_each_speaker():
    gen = torch.Generator().manual_seed(0)
    features = {f"u{i}": torch.randn(4, 10 + i, generator=gen) * (1 + i % 2) + 3 * (i % 2) for i in range(6)}
    speaker_of = {f"u{i}": "ab"[i % 2] for i in range(6)}
    out = recipe.speaker_normalize(features, speaker_of)
    for s in "ab":
        frames = torch.cat([out[u] for u in out if speaker_of[u] == s], dim=1)
        assert torch.allclose(frames.mean(1), torch.zeros(4), atol=1e-5)
        assert torch.allclose(frames.std(1, correction=0), torch.ones(4), atol=1e-5)
    vectors = recipe.speaker_normalize({"x": torch.tensor([1.0, 2.0]), "y": torch.tensor([3.0, 6.0])},
                                       {"x": "a", "y": "a"})
    assert torch.allclose(vectors["x"], torch.tensor([-1.0, -1.0]))


# --- config and the program -------------------------------------------------------------
@pytest.mark.parametrize("values, message", [
    ({"recipe.mixup": "-1"}, "recipe.mixup must be >= 0"),
    ({"recipe.ema": "1.0"}, "recipe.ema must be in [0, 1)"),
    ({"recipe.time_mask_width": "0"}, "recipe.time_mask_width must be in (0, 1]"),
    ({"recipe.schedule": "linear"}, "recipe.schedule must be one of"),
    ({"recipe": "newest"}, "unknown recipe 'newest'"),
    ({"recipe.mixed": "1"}, "unknown config key"),
])
def test_bad_recipe_settings_are_config_errors(values, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_config("light_sernet", values)


def test_paper_recipe_keeps_the_fingerprint_of_earlier_runs():
    from serlib.records import run_identity

    manifest = pd.DataFrame({"utt_id": ["a"], "label": ["sad"], "speaker": ["s"], "audio_hash": ["0"]})
    identity = run_identity(make_config("light_sernet"), ["sad", "happy"], manifest)
    assert "recipe" not in identity["settings"]
    modern = run_identity(make_config("light_sernet", {"recipe": "modern"}), ["sad", "happy"], manifest)
    assert modern["settings"]["recipe"]["schedule"] == recipe.PRESETS["modern"]["schedule"] == "cosine"
    assert modern["settings"]["recipe"]["lr_scale"] == 10.0  # the preset's factor for Light-SERNet
    assert make_config("cnn_lstm", {"recipe": "modern"}).recipe.lr_scale == 1.0


@pytest.mark.slow  # a subprocess of the program
def test_modern_recipe_and_speaker_norm_through_the_program(tmp_path):
    csv = write_csv_corpus(tmp_path / "corpus")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "serlib", "run", "--experiment", "cnn_lstm", "--corpus", "csv", "--root", str(csv),
           "--set", *[f"{k}={v}" for k, v in TINY.items()], "subset=none", f"output_dir={out}",
           "recipe=modern", "recipe.speaker_norm=true", "recipe.vtlp=true", "vtlp=none"]
    done = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
    assert done.returncode == 0, done.stderr
    [path] = records_under(out)
    record = json.loads(path.read_text())
    assert "+speaker-norm" in str(path) and record["uses_test_speaker_audio"] is True
    assert record["recipe"]["label_smoothing"] == recipe.PRESETS["modern"]["label_smoothing"]
    assert record["recipe"]["vtlp"] is True and record["recipe"]["schedule"] == "cosine"


# --- ensembling over seeds --------------------------------------------------------------
def test_seed_ensemble_averages_the_seed_models(tmp_path):
    from serlib.stats import ResultSet, compare, seed_ensemble

    classes = ["sad", "happy"]
    records = []
    probs = {1: [[0.9, 0.1], [0.4, 0.6]], 2: [[0.3, 0.7], [0.2, 0.8]]}  # seed → utterances a, b
    for seed, p in probs.items():
        path = tmp_path / f"s{seed}.csv"
        pd.DataFrame({"utt_id": ["a", "b"], "speaker": ["x", "y"], "truth": ["sad", "happy"],
                      "prediction": [classes[int(row[1] > row[0])] for row in p],
                      "p_sad": [row[0] for row in p], "p_happy": [row[1] for row in p]}).to_csv(path, index=False)
        records.append({"config": {"fold": 1, "seed": seed}, "predictions_path": str(path),
                        "metrics": {"ua": 0.0, "wa": 0.0}})
    frames = [pd.read_csv(r["predictions_path"]).assign(fold=1, seed=r["config"]["seed"]) for r in records]
    single = ResultSet("s", records, pd.concat(frames), classes)
    ensemble = seed_ensemble(single)
    assert ensemble.predictions.p_sad.tolist() == pytest.approx([0.6, 0.3])
    assert ensemble.predictions.prediction.tolist() == ["sad", "happy"]
    assert ensemble.records[0]["metrics"]["ua"] == 1.0 and ensemble.records[0]["config"]["seeds"] == [1, 2]
    seed1 = ResultSet("s1", records[:1], frames[0], classes)
    assert compare(ensemble, seed1)["only_a_right"] == 0  # seed 1 already had both right


def test_compile_by_default_only_for_long_runs_of_models_it_speeds_up():
    from serlib.device import COMPILE_MIN_STEPS, should_compile
    from serlib.experiments import get

    assert make_config("light_sernet").compile is None  # auto
    assert should_compile(get("light_sernet"), 300 * 14)          # the paper's 300 epochs on EMO-DB
    assert not should_compile(get("light_sernet"), 20 * 14)       # a 20-epoch run: compiling costs more
    assert not should_compile(get("cnn_lstm"), 10 * COMPILE_MIN_STEPS)  # measured slower compiled
