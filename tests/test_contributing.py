"""CONTRIBUTING.md's recipe, followed once: a paper added as its own files alone (the toy of
``tests/toy_paper.py``: a model, an experiment with its attention) is trained, tabled,
exported, predicted with attention maps and checked like the shipped papers, with no edit
anywhere else in serlib."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from serlib import bundle, experiments, results
from serlib.__main__ import main
from serlib.train import run_fold
from tests import fixtures, toy_paper
from tests.test_fields import without_range
from tests.toy_paper import Toy, ToyConfig

ROOT = Path(__file__).resolve().parents[1]
# the program as a user runs it, with the toy paper's files loaded (as serlib loads its own)
PROGRAM = ("import sys; from tests import toy_paper; toy_paper.register(); from serlib.__main__ import main; "
           "sys.exit(main(sys.argv[1:]))")


@pytest.fixture
def toy():
    yield toy_paper.register()
    toy_paper.unregister()


def program(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", PROGRAM, *map(str, args)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=600, cwd=cwd, env=env)


def test_a_paper_registered_from_its_own_files_is_known_everywhere(toy):
    assert experiments.get("toy_paper") is toy
    assert experiments.feature_preset("toy_logmel").n_mels == 40
    assert experiments.make_config("toy_paper", {"recipe": "modern"}).recipe.lr_scale == 3.0
    table = experiments.reference_table()
    row = table[table.experiment == "toy_paper"].iloc[0]
    assert (row.paper, row.wa, row.ua, row.protocol) == ("Toy et al. 2031", 55.0, 50.0, "loso")
    # every numeric field declares its range (tests/test_fields.py checks the shipped papers)
    assert without_range(toy.Config) == []
    # the generated tables of the docs list it (tests/test_docs.py checks them against the registry)
    assert "toy_paper" in experiments.papers_table()


def test_a_bad_value_of_the_papers_own_field_is_a_clear_error(toy, tmp_path, capsys):
    code = main(["run", "--experiment", "toy_paper", "--set", "model.hidden=0", f"output_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "model.hidden must be >= 1, got 0" in err


@pytest.mark.slow  # trains, exports, and runs the program in subprocesses
def test_a_new_paper_goes_through_collect_export_and_predict(toy, tmp_path):
    csv = fixtures.write_csv_corpus(tmp_path / "corpus")
    config = experiments.make_config("toy_paper", {"corpus": "csv", "data_root": str(csv), "output_dir": str(tmp_path),
                                                   "progress": False, "feature_workers": 1, "fold": 2})
    record = run_fold(config)
    assert record["config"]["experiment"] == "toy_paper" and len(record["history"]) == 2
    assert record["n_parameters"] == sum(p.numel() for p in Toy(ToyConfig(40, 4, 8)).parameters())
    collected = results.collect(tmp_path / "results")
    assert collected.experiment.tolist() == ["toy_paper"]
    beside = results.compare_with_papers(results.summarise(collected)["mean"])
    assert set(beside[beside.experiment == "toy_paper"].source) == {"measured", "paper"}

    listed = program("collect", "--path", tmp_path / "results", cwd=tmp_path)
    assert listed.returncode == 0 and "toy_paper" in listed.stdout, listed.stderr
    exported = program("export", record["path"], tmp_path / "bundle", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    wav = fixtures.write_wav(tmp_path / "new" / "clip.wav", seconds=1.5, sr=16000)
    drawn = program("predict", tmp_path / "bundle", wav, "--attention", tmp_path / "maps", cwd=tmp_path)
    assert drawn.returncode == 0 and "no attention weights" not in drawn.stderr, drawn.stderr
    assert (tmp_path / "maps" / "clip.attention.html").stat().st_size > 10_000
    entry = bundle.load_model(tmp_path / "bundle").predict([wav], attention=True).attention[str(wav)]
    assert entry["windows"] and all(len(profile) > 0 for *_, profile in entry["windows"])

    bad = program("run", "--experiment", "toy_paper", "--set", "model.hidden=0", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "model.hidden must be >= 1, got 0" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_a_second_experiment_cannot_take_a_registered_name(toy):
    with pytest.raises(Exception, match="taken"):
        experiments.register(type("Other", (experiments.Experiment,), {"name": "toy_paper"}))
