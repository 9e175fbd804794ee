"""The engine, the results store and the CLI on a tiny fixture corpus."""

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from serlib import results
from serlib.__main__ import main
from serlib.experiments import make_config
from serlib.train import Trainer, TrainingError, run_fold

TINY = {"corpus": "iemocap", "subset": "all", "epochs": 2, "batch_size": 4, "model.n_conv": 1,
        "model.conv_channels": (4,), "model.conv_strides": ((2, 2),), "model.lstm_hidden": 8, "freq_khz": 4,
        "progress": False, "feature_workers": 1,
        "grad_norm_every": 1}


@pytest.fixture
def tiny(iemocap_root, tmp_path):
    def make(**kw):
        return make_config("cnn_lstm", {**TINY, "data_root": str(iemocap_root), "output_dir": str(tmp_path), **kw})
    return make


def test_run_fold_writes_a_complete_record(tiny):
    rec = run_fold(tiny(fold=5))
    stored = json.loads(open(rec["path"]).read())
    assert stored["test_speakers"] == ["Ses03_F"] and stored["val_speakers"] == ["Ses03_M"]
    assert set(stored["metrics"]) >= {"wa", "ua", "macro_f1", "recall", "confusion"}
    assert len(stored["history"]) == 2 and stored["selected_on"] == "val" and not stored["leaky"]
    assert stored["provenance"]["torch"] and stored["config"]["experiment"] == "cnn_lstm"
    assert {"convs.0", "lstm", "classifier"} <= set(stored["grad_norms"][0])
    preds = pd.read_csv(rec["predictions_path"])
    assert list(preds.columns[:4]) == ["utt_id", "speaker", "truth", "prediction"]
    assert set(preds.speaker) == {"Ses03_F"} and len(preds) == stored["metrics"]["n"]


def test_same_seed_same_metrics(tiny):
    a, b = run_fold(tiny(name="a")), run_fold(tiny(name="b"))
    assert a["metrics"] == b["metrics"]
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]


def _interrupt_after(monkeypatch, epoch: int):
    """Make the next fit stop (as if killed) right after the checkpoint of ``epoch``."""
    original = Trainer.save_checkpoint

    def save_then_stop(self):
        original(self)
        if self.state.epoch == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "save_checkpoint", save_then_stop)


@pytest.mark.slow  # trains twice
def test_resume_continues_an_interrupted_fold(tiny, monkeypatch):
    straight = run_fold(tiny(name="straight", epochs=3))
    with monkeypatch.context() as m:
        _interrupt_after(m, 2)
        with pytest.raises(KeyboardInterrupt):
            run_fold(tiny(name="resumed", epochs=3))
    checkpoint = next(Path(tiny().output_dir).rglob("resumed/**/checkpoint.pt"))
    blob = torch.load(checkpoint, weights_only=True)
    for row in blob["history"]:
        row["seconds"] = 1000.0  # as if the first two epochs had been slow
    torch.save(blob, checkpoint)
    resumed = run_fold(tiny(name="resumed", epochs=3, resume=True))
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in straight["history"]]
    assert resumed["metrics"] == straight["metrics"] and resumed["fingerprint"] == straight["fingerprint"]
    # the time before the interruption counts
    assert resumed["timing"]["total_seconds"] >= 2000
    # other settings are another run: their own record, never the old checkpoint
    other = run_fold(tiny(name="resumed", epochs=3, resume=True, **{"model.lstm_hidden": 9}))
    assert other["fingerprint"] != resumed["fingerprint"] and Path(other["path"]).is_file()
    assert Path(resumed["path"]).is_file()


def test_checkpoint_of_other_data_is_refused(tiny, monkeypatch):
    config = tiny(name="guard", epochs=2)
    with monkeypatch.context() as m:
        _interrupt_after(m, 1)
        with pytest.raises(KeyboardInterrupt):
            run_fold(config)
    checkpoint = next(Path(config.output_dir).rglob("guard/**/checkpoint.pt"))
    blob = torch.load(checkpoint, weights_only=True)
    blob["fingerprint"] = "0" * 64  # as if the corpus had changed under the same path
    torch.save(blob, checkpoint)
    with pytest.raises(TrainingError, match="checkpoint.pt: checkpoint was made with other settings or data"):
        run_fold(tiny(name="guard", epochs=2, resume=True))


def test_test_split_is_scored_once_after_training(tiny, monkeypatch):
    calls = []
    original = Trainer.evaluate

    def spy(self, split, *args, **kwargs):
        calls.append((split, self.state.epoch))
        return original(self, split, *args, **kwargs)

    monkeypatch.setattr(Trainer, "evaluate", spy)
    run_fold(tiny(epochs=3))
    assert [c for c in calls if c[0] == "test"] == [("test", 3)]  # once, after the last epoch
    # validation once per epoch, and once more with the selected weights after the test (kept for calibration)
    assert [c[0] for c in calls] == ["val", "val", "val", "test", "val"]


def test_leaky_selection_is_labelled(tiny):
    rec = run_fold(tiny(selection="test"))
    assert rec["leaky"] and rec["selected_on"] == "test" and "+test-selection" in rec["path"]
    assert "test_ua" in rec["history"][0]
    effect = results.selection_effect(Path(rec["path"]).parent).iloc[0]
    assert effect.ua_test_selected == pytest.approx(rec["metrics"]["ua"])  # the published number
    assert effect.ua_test_selected == max(h["test_ua"] for h in rec["history"])
    assert effect.ua_last == rec["history"][-1]["test_ua"]
    best_val = max(rec["history"], key=lambda h: h["val_ua"])
    assert effect.epoch_val_selected == best_val["epoch"] and effect.ua_val_selected == best_val["test_ua"]


def test_nan_loss_names_epoch_and_batch(tiny, monkeypatch):
    from serlib.experiments.cnn_lstm import CNNLSTMExperiment

    class NaNLoss(CNNLSTMExperiment):
        def loss(self, counts):
            import torch

            class Broken(torch.nn.Module):
                def forward(self, logits, y):
                    return logits.sum() * float("nan")

            return Broken()

    monkeypatch.setitem(__import__("serlib.experiments", fromlist=["EXPERIMENTS"]).EXPERIMENTS, "cnn_lstm", NaNLoss)
    with pytest.raises(TrainingError, match="loss is nan at epoch 1, batch 1"):
        run_fold(tiny())


@pytest.mark.slow  # trains twice
def test_records_replace_not_duplicate_and_summarise(tiny, tmp_path):
    for fold in (1, 2):
        run_fold(tiny(fold=fold))
    run_fold(tiny(fold=2))  # same key again
    table = results.collect(tmp_path / "results")
    assert len(table) == 2 and sorted(table.fold) == [1, 2]
    assert not list((tmp_path / "results").rglob("*.tmp"))
    summary = results.summarise(table)
    mean = summary["mean"].iloc[0]
    assert mean.n_folds == 2 and mean.wa_mean == pytest.approx(table.wa.mean())
    assert 0 <= mean.wa_pooled <= 1 and "ua_pooled" in summary["mean"]
    assert "| experiment |" in results.to_markdown(summary["mean"])
    comparison = results.compare_with_papers(summary["mean"])
    assert {"measured", "paper"} == set(comparison.source)


@pytest.mark.slow  # the program's sweep, run twice
def test_cli_run_sweep_and_unknown_keys(iemocap_root, tmp_path, capsys):
    common = ["--experiment", "cnn_lstm", "--corpus", "iemocap", "--root", str(iemocap_root), "--subset", "all",
              "--set", "epochs=1", "batch_size=4", "model.n_conv=1", "model.conv_channels=(4,)", "model.lstm_hidden=4",
              "progress=false", f"output_dir={tmp_path}", "feature_workers=1"]
    assert main(["sweep", *common, "--folds", "1,2"]) == 0
    assert "2 runs to do, 0 already recorded" in capsys.readouterr().out
    assert main(["sweep", *common, "--folds", "1,2"]) == 0  # resumes: nothing left to do
    assert "0 runs to do, 2 already recorded" in capsys.readouterr().out
    assert main(["run", *common, "--fold", "3"]) == 0
    assert main(["run", *common, "model.lstm_hiden=3"]) == 2  # a clear message, no traceback
    assert "error: " in (err := capsys.readouterr().err) and "unknown config key" in err and "lstm_hiden" in err
    assert main(["run", *common[:5], "/no/such/folder", *common[6:]]) == 2
    assert "/no/such/folder" in capsys.readouterr().err


@pytest.mark.parametrize("experiment,extra", [
    ("cnn_lstm", {}),  # VTLP draws from the global generator: the random stream must match too
    ("attention_fcn_1d", {"model.channels_1d": (2, 2, 2, 2), "model.dense_1d": 4, "input_seconds": 0.5,
                          "offset_seconds": 0.0}),
])
def test_features_on_device_gives_identical_results(iemocap_root, tmp_path, experiment, extra):
    base = {k: v for k, v in TINY.items() if not k.startswith("model.") and k != "freq_khz"}
    if experiment == "cnn_lstm":
        base.update({k: v for k, v in TINY.items() if k.startswith("model.") or k == "freq_khz"})
    values = {**base, **extra, "data_root": str(iemocap_root), "output_dir": str(tmp_path)}
    plain = run_fold(make_config(experiment, {**values, "name": "loader", "features_on_device": False}))
    fast = run_fold(make_config(experiment, {**values, "name": "device", "features_on_device": True}))
    assert fast["fingerprint"] == plain["fingerprint"]  # a run-time switch
    assert [h["train_loss"] for h in fast["history"]] == [h["train_loss"] for h in plain["history"]]
    assert fast["metrics"] == plain["metrics"]
    assert pd.read_csv(fast["predictions_path"]).equals(pd.read_csv(plain["predictions_path"]))
