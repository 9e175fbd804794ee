"""Notebook conventions; executing them is nbval's job (`make test`), parameters papermill's."""

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 3


def nbstrip_keys() -> list[str]:
    return next(line.split(":=")[1].split() for line in (ROOT / "Makefile").read_text().splitlines()
                if line.startswith("NBSTRIP_KEYS"))


def committed(path: Path) -> dict:
    """The notebook as git would commit it: the working copy through the clean filter that
    .gitattributes names (so running notebooks in place never fails this)."""
    import nbformat

    from serlib.nbclean import clean

    return clean(nbformat.read(path, as_version=4), nbstrip_keys())


def test_git_strips_notebook_outputs():
    attributes = (ROOT / ".gitattributes").read_text()
    assert "*.ipynb filter=nbstripout" in attributes
    makefile = (ROOT / "Makefile").read_text()
    assert "nbstripout --install" in makefile and "-m serlib.nbclean $(NBSTRIP_KEYS)" in makefile


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebooks_are_what_the_filter_writes(path):
    """The repository's copy already has the filter's kernelspec and no empty tag lists, so
    the first save in JupyterLab does not show up as a diff."""
    import subprocess

    from serlib.nbclean import DISPLAY_NAME

    head = subprocess.run(["git", "show", f"HEAD:notebooks/{path.name}"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode:
        pytest.skip(f"{path.name} is not committed yet")
    nb = json.loads(head.stdout)
    assert nb["metadata"]["kernelspec"]["display_name"] == DISPLAY_NAME
    assert not [c for c in nb["cells"] if c.get("metadata", {}).get("tags") == []]


def test_clean_filter_keeps_a_valid_kernelspec():
    import nbformat

    from serlib.nbclean import DISPLAY_NAME, clean

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1", metadata={"tags": []}),
                                         nbformat.v4.new_code_cell("y = 2", metadata={"tags": ["parameters"]})])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python [conda env:ser]", "language": "python"}
    out = clean(nb, nbstrip_keys())
    nbformat.validate(out)  # nbformat requires display_name: it is normalised, not removed
    assert out.metadata.kernelspec == {"name": "python3", "display_name": DISPLAY_NAME, "language": "python"}
    assert [c.metadata for c in out.cells] == [{}, {"tags": ["parameters"]}]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_thin_stripped_and_parameterised(path):
    cells = committed(path)["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    params = ast.parse("".join(tagged[0]["source"]))
    assert all(isinstance(node, ast.Assign) for node in params.body), "parameters are literals only"
    for cell in code:
        assert not cell.get("outputs") and cell.get("execution_count") is None, "outputs must be stripped"
        tree = ast.parse("".join(cell["source"]))
        assert not any(isinstance(n, (ast.FunctionDef, ast.ClassDef)) for n in ast.walk(tree)), \
            "logic belongs in serlib, not in notebooks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_papermill_sees_every_parameter(path):
    """papermill's parser drops a parameter whose comment holds an '=' (then `-p` only warns)."""
    import papermill as pm

    cells = json.loads(path.read_text())["cells"]
    tagged = next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    names = {t.id for node in ast.parse("".join(tagged["source"])).body for t in node.targets}
    assert set(pm.inspect_notebook(str(path))) == names


def test_papermill_parameters_reach_the_notebook(tmp_path):
    """00 on a fixture EMO-DB tree, through papermill's parameter injection."""
    import papermill as pm

    from tests import fixtures

    root = fixtures.write_emodb(tmp_path / "emodb", names=[
        f"{s}a01{e}a" for s in ("03", "08", "09", "10") for e in "WNT"])
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(NOTEBOOKS[0]), str(out), parameters={"corpus": "emodb", "data_root": str(root)},
                        progress_bar=False, kernel_name="python3")
    text = out.read_text()
    assert "corpus emodb: 12 utterances, 4 speakers" in text


def test_running_a_notebook_in_place_leaves_git_clean(tmp_path):
    """The mechanism for real: a repository with the filter as `make install` sets it up,
    a notebook executed in place and saved as JupyterLab saves it (outputs, its own kernel
    display name, an empty tag list), git sees no change."""
    import shutil
    import subprocess
    import sys

    import nbformat
    from nbclient import NotebookClient

    keys = " ".join(nbstrip_keys())
    clean_line = next(line for line in (ROOT / "Makefile").read_text().splitlines()
                      if "filter.nbstripout.clean" in line)
    clean_command = clean_line.split('filter.nbstripout.clean "', 1)[1].rsplit('"', 1)[0]
    clean_command = clean_command.replace("$(abspath $(PY))", sys.executable).replace("$(NBSTRIP_KEYS)", keys)

    def git(*args):
        return subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    git("config", "user.email", "t@example.org")
    git("config", "user.name", "t")
    git("config", "filter.nbstripout.clean", clean_command)
    git("config", "filter.nbstripout.smudge", "cat")
    git("config", "filter.nbstripout.required", "true")
    git("config", "filter.nbstripout.extrakeys", keys)
    shutil.copy(ROOT / ".gitattributes", tmp_path / ".gitattributes")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 6 * 7\nprint(x)"),
                                         nbformat.v4.new_code_cell("y = 1", metadata={"tags": ["parameters"]})])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "n.ipynb")
    git("add", ".")
    git("commit", "-qm", "n")
    kernelspec_line = next(line for line in git("show", "HEAD:n.ipynb").splitlines() if "display_name" in line)
    NotebookClient(nb, kernel_name="python3").execute()
    nb.metadata["kernelspec"]["display_name"] = "Python 3 (ipykernel)"  # what JupyterLab writes on save
    nb.cells[0].metadata["tags"] = []                                  # what its tag editor leaves behind
    nbformat.write(nb, tmp_path / "n.ipynb")
    assert "42" in (tmp_path / "n.ipynb").read_text()  # outputs are in the working copy
    assert git("diff") == ""                             # git sees no change in content
    git("add", "-A")                                     # (git status lists the file until then:
    assert git("status", "--porcelain") == ""            #  its size changed) and nothing is staged
    git("commit", "-qm", "again", "--allow-empty")         # the kernelspec line is the one first committed
    assert kernelspec_line in git("show", "HEAD:n.ipynb").splitlines()
    assert '"parameters"' in git("show", "HEAD:n.ipynb")  # the tag that means something stays


def _execute(name: str, tmp_path: Path, **parameters) -> dict:
    """Run a notebook through papermill with the CI parameters (+ ``parameters``) and
    return its glued values."""
    import papermill as pm

    from serlib.scraps import read_scraps

    params = {**json.loads((ROOT / "tests" / "notebook_params.json").read_text()).get(name, {}), **parameters}
    out = tmp_path / f"{name}.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(out), parameters=params,
                        progress_bar=False, kernel_name="python3", cwd=str(ROOT / "notebooks"))
    return read_scraps(out)


#: Values the deterministic synthetic runs of tests/notebook_params.json give (measured with
#: 1 and 2 torch threads; a different BLAS may move one test utterance, hence the tolerances:
#: one utterance of fold 5's 21 moves WA by 0.048).
EXPECTED = {"03_test_ua": 0.25, "03_test_wa": 0.381,
            "08_ua_pooled": {"egemaps:svm_linear": 0.522, "mfcc_stats:logreg": 0.519, "attention_fcn_1d": 0.25}}
UTTERANCE = 0.05


def _demo_folds(capsys) -> dict[int, list[str]]:
    """``python -m serlib demo``'s fold table: {fold: [test, val, n_train, n_val, n_test, …]}."""
    from serlib.__main__ import main

    assert main(["demo"]) == 0
    text = capsys.readouterr().out
    table = text.split(" folds (loso):", 1)[1].splitlines()[3:]
    return {int(line.split()[0]): line.split()[1:] for line in table if line.strip()}


@pytest.mark.slow
def test_notebooks_record_real_values(tmp_path, capsys):
    """03 trains and records the deterministic run's scores and the split `make demo` prints;
    07 tables that very record; 08 compares on the folds it says, with the smallest p those
    folds allow; a model against itself gives p = 1."""
    out = str(tmp_path / "outputs")
    trained = _execute("03_train_cnn_lstm", tmp_path, output_dir=out)
    assert trained["test_ua"] == pytest.approx(EXPECTED["03_test_ua"], abs=UTTERANCE)
    assert trained["test_wa"] == pytest.approx(EXPECTED["03_test_wa"], abs=UTTERANCE)
    assert Path(trained["record_path"]).is_file() and trained["record_path"].startswith(out)
    fold5 = _demo_folds(capsys)[5]  # the demo prints the folds 03 trains on (fold 5: Ses03_F tested)
    sizes = trained["split_sizes"]
    assert fold5[:5] == ["Ses03_F", "Ses03_M", str(sizes["train"]), str(sizes["val"]), str(sizes["test"])]
    size = (tmp_path / "03_train_cnn_lstm.ipynb").stat().st_size
    assert size < 8e6, f"executed 03 is {size / 1e6:.1f} MB"
    from nbconvert import HTMLExporter  # the executed notebook's figures travel as offline HTML

    html, _ = HTMLExporter().from_filename(str(tmp_path / "03_train_cnn_lstm.ipynb"))
    assert html.count("Plotly.newPlot") >= 3 and 'src="https://cdn.plot.ly' not in html
    assert "plotly.js v" in html  # the library itself is embedded: no network needed
    text = (tmp_path / "03_train_cnn_lstm.ipynb").read_text()
    assert "epoch 1/1: train loss" in text and "model not found" not in text  # a plain progress line
    collected = _execute("07_collect_results", tmp_path, results_dir=f"{out}/results", tables_dir=f"{out}/tables")
    assert trained["record_path"] in collected["record_paths"] and collected["n_records"] == 1
    assert all(Path(t).is_file() for t in collected["tables"])
    compared = _execute("08_compare_models", tmp_path, output_dir=out)
    assert compared["p_identical"] == 1.0 and len(compared["sets"]) == 3
    assert compared["ua_pooled"] == pytest.approx(EXPECTED["08_ua_pooled"], abs=0.02)
    assert compared["n_folds"] == 2 and compared["smallest_p"] == pytest.approx(2 / 2 ** 2)  # 2/2^K, K folds
    assert compared["matrix_labels"] == ["egemaps:svm_linear", "mfcc_stats:logreg", "attention_fcn_1d"]
    assert all(p >= compared["smallest_p"] for p in compared["p_ua_vs_best"].values())


@pytest.mark.slow
def test_predict_notebook_says_what_it_loaded(tmp_path):
    """09: a one-fold bundle is recorded as one member; the default recording is one whose
    true label the model knows, and the label is recorded beside the prediction."""
    from serlib.corpora import prepare_manifest

    got = _execute("09_predict_and_transfer", tmp_path, output_dir=str(tmp_path / "outputs"))
    assert got["n_members"] == 1
    synthetic = prepare_manifest("synthetic", None, "all", "all").set_index("path")
    assert got["true_label"] == synthetic.loc[got["recording"], "label"]
    assert got["true_label"] in ("neutral", "happy", "sad", "angry") and got["has_attention"]
    text = (tmp_path / "09_predict_and_transfer.ipynb").read_text()
    assert f"true label {got['true_label']}" in text and "ensemble averages" not in text


@pytest.mark.slow
def test_saved_notebooks_stay_small_and_draw_offline(tmp_path):
    """02 (the most figures: 19 spectrograms) saved after a run: plotly.js embedded once,
    maps carried at display resolution, a few MB; its HTML export still draws offline."""
    _execute("02_vtlp", tmp_path)
    path = tmp_path / "02_vtlp.ipynb"
    text = path.read_text()
    assert text.count("plotly.js v") == 1  # the library's banner: one copy per notebook
    assert path.stat().st_size < 10e6, f"{path.stat().st_size / 1e6:.1f} MB"
    from nbconvert import HTMLExporter

    html, _ = HTMLExporter().from_filename(str(path))
    assert html.count("Plotly.newPlot") >= 4 and 'src="https://cdn.plot.ly' not in html


def test_notebook_thread_choice(monkeypatch):
    """serlib.threads: an explicit count wins, then $SERLIB_THREADS, then the free cores
    (cores minus the 1-minute load, at least 1); a bad value is a clear error."""
    import os

    import torch

    from serlib import threads
    from serlib.errors import ConfigError

    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(os, "getloadavg", lambda: (1.2, 0.0, 0.0))
        monkeypatch.setattr(os, "cpu_count", lambda: 2)
        assert threads.free_cores() == 1                     # another process holds one of 2 cores
        monkeypatch.setattr(os, "getloadavg", lambda: (5.0, 0.0, 0.0))
        assert threads.free_cores() == 1                     # never fewer than one
        monkeypatch.setattr(os, "getloadavg", lambda: (0.1, 0.0, 0.0))
        assert threads.free_cores() == 2
        monkeypatch.delenv("SERLIB_THREADS", raising=False)
        assert threads.use_free_cores(echo=False) == 2 == torch.get_num_threads()
        monkeypatch.setenv("SERLIB_THREADS", "1")
        assert threads.use_free_cores(echo=False) == 1 == torch.get_num_threads()
        assert threads.use_free_cores(2, echo=False) == 2
        monkeypatch.setenv("SERLIB_THREADS", "two")
        with pytest.raises(ConfigError, match="SERLIB_THREADS"):
            threads.use_free_cores(echo=False)
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_error_browser_notebook_shows_the_largest_confusion_with_audio(tmp_path):
    """13 headless: the default view is the first set's largest off-diagonal cell, listed
    with audio players; temperature scaling leaves UA as it was."""
    from serlib import explore
    from serlib.records import load_records

    out = tmp_path / "outputs"
    got = _execute("13_error_browser", tmp_path, output_dir=str(out))
    sets = explore.result_sets(load_records(out / "results"))
    table = explore.utterances({got["default_set"]: sets[got["default_set"]]})
    cell = explore.largest_off_diagonal(table, sets[got["default_set"]].classes)
    assert got["default_cell"] == list(cell) and got["n_cell"] == len(explore.cell(table, *cell))
    assert got["ua_after"] == got["ua_before"] and got["ece_before"] >= 0
    text = (tmp_path / "13_error_browser.ipynb").read_text()
    assert "<audio" in text and '"ename"' not in text


def test_headline_names_corpus_and_direction_and_blanks_one_fold_rows():
    """07's headline: one run column first that tells a transfer from a within-corpus run,
    no spread, Δ or Holm p for a one-fold row, and blank (not "NaN") empty cells."""
    import pandas as pd

    from serlib import viz

    table = pd.DataFrame({"experiment": ["fcn", "fcn"], "name": ["default", "default"], "corpus": ["csv-a", "csv-a"],
                          "test_corpus": ["csv-a", "csv-b"], "protocol": ["loso", "cross:csv"], "n_folds": [1, 10],
                          "ua_mean": [0.5, 0.6], "ua_std": [0.0, 0.1], "ua_vs_baseline": [-0.281, 0.1],
                          "p_holm_vs_baseline": [1.0, 0.02], "leaky": [False, False]})
    shown = viz.headline(table)
    assert shown.columns[0] == "run" and "experiment" not in shown
    assert shown.run.tolist() == ["fcn/default · csv-a · loso", "fcn/default · csv-a → csv-b"]
    assert shown.loc[0, "ua_vs_baseline"] == "" and shown.loc[0, "p_holm_vs_baseline"] == "" and shown.loc[0, "ua_std"] == ""
    assert shown.loc[1, "p_holm_vs_baseline"] == 0.02 and "NaN" not in shown.to_string()
    # a table without test_corpus (or with an empty cell) takes the test corpus from cross:…
    no_test = table.drop(columns="test_corpus").assign(protocol=["loso", "cross:b"])
    assert viz.run_names(no_test).tolist() == ["fcn/default · csv-a · loso", "fcn/default · csv-a → b"]
    empty = table.assign(test_corpus=[None, float("nan")], protocol=["loso", "cross:b"])
    assert viz.run_names(empty).tolist() == ["fcn/default · csv-a · loso", "fcn/default · csv-a → b"]


def test_per_fold_table_puts_scores_first_and_papers_table_keeps_one_line_per_row():
    """07's per-fold table: the run, fold, seed, WA and UA before any metadata; the papers
    table: whose number, on what and the number before the long labels, none wrapped."""
    import pandas as pd

    from serlib import viz

    per_fold = pd.DataFrame({"experiment": ["fcn"], "name": ["default"], "corpus": ["a"], "protocol": ["loso"],
                             "test_corpus": ["a"], "uses_test_speaker_audio": [False], "fingerprint": ["f"],
                             "leaky": [False], "code_version": ["v"], "n_classes": [4], "fold": [1], "seed": [1],
                             "test_speakers": ["s1"], "wa": [0.5], "ua": [0.4], "macro_f1": [0.3], "val_ua": [0.6]})
    assert list(viz.headline(per_fold, viz.PER_FOLD).columns[:5]) == ["run", "fold", "seed", "wa", "ua"]
    comparison = pd.DataFrame({"experiment": ["fcn"], "paper": ["p"], "variant": ["v"], "corpus": ["a"],
                               "protocol": ["loso"], "n_classes": [4], "metric": ["m"], "speaker_independent": [True],
                               "uses_test_speaker_audio": [False], "wa": [50.04], "ua": [40.0],
                               "label": ["speaker-independent · loso · a long label"], "note": [None],
                               "source": ["measured"]})
    styled = viz.beside_papers(comparison)
    assert list(styled.data.columns[:7]) == ["source", "paper", "experiment", "corpus", "n_classes", "wa", "ua"]
    html = styled.to_html()
    assert "white-space: nowrap" in html and "50.0" in html and "None" not in html


def test_figures_have_one_renderer_in_jupyterlab_and_html_in_headless_reports(monkeypatch):
    """A kernel that JupyterLab started (``JPY_SESSION_NAME``) stores each figure once (the
    plotly JSON, which JupyterLab draws itself); papermill, nbval and Voilà add the HTML copy
    that an exported report needs."""
    from serlib import viz

    monkeypatch.setenv("JPY_SESSION_NAME", "/work/notebooks/02_vtlp.ipynb")
    assert viz.notebook_renderer() == "plotly_mimetype"
    monkeypatch.delenv("JPY_SESSION_NAME")
    assert viz.notebook_renderer() == "plotly_mimetype+notebook"
