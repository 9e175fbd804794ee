"""Notebook conventions; executing them is nbval's job (`make test`), parameters papermill's."""

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 3


def committed(path: Path) -> dict:
    """The notebook as git would commit it: the working copy through the nbstripout clean
    filter that .gitattributes names (so running notebooks in place never fails this)."""
    import nbformat
    from nbstripout import strip_output

    keys = next(line.split(":=")[1].split() for line in (ROOT / "Makefile").read_text().splitlines()
                if line.startswith("NBSTRIP_KEYS"))
    nb = nbformat.read(path, as_version=4)
    defaults = ["metadata.signature", "metadata.widgets", "cell.metadata.collapsed", "cell.metadata.ExecuteTime",
                "cell.metadata.execution", "cell.metadata.scrolled"]
    return strip_output(nb, keep_output=False, keep_count=False, keep_id=True, extra_keys=defaults + keys)


def test_git_strips_notebook_outputs():
    attributes = (ROOT / ".gitattributes").read_text()
    assert "*.ipynb filter=nbstripout" in attributes
    makefile = (ROOT / "Makefile").read_text()
    assert "nbstripout --install" in makefile


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
    a notebook executed in place (outputs saved, as JupyterLab does), git sees no change."""
    import shutil
    import subprocess
    import sys

    import nbformat
    from nbclient import NotebookClient

    keys = next(line.split(":=")[1].strip() for line in (ROOT / "Makefile").read_text().splitlines()
                if line.startswith("NBSTRIP_KEYS"))

    def git(*args):
        return subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    git("config", "user.email", "t@example.org")
    git("config", "user.name", "t")
    git("config", "filter.nbstripout.clean", f'"{sys.executable}" -m nbstripout')
    git("config", "filter.nbstripout.smudge", "cat")
    git("config", "filter.nbstripout.required", "true")
    git("config", "filter.nbstripout.extrakeys", keys)
    shutil.copy(ROOT / ".gitattributes", tmp_path / ".gitattributes")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 6 * 7\nprint(x)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "n.ipynb")
    git("add", ".")
    git("commit", "-qm", "n")
    NotebookClient(nb, kernel_name="python3").execute()
    nbformat.write(nb, tmp_path / "n.ipynb")
    assert "42" in (tmp_path / "n.ipynb").read_text()  # outputs are in the working copy
    assert git("diff") == ""                             # git sees no change in content
    git("add", "-A")                                     # (git status lists the file until then:
    assert git("status", "--porcelain") == ""            #  its size changed) and nothing is staged


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


@pytest.mark.slow
def test_notebooks_record_real_values(tmp_path):
    """03 trains and records a test UA and its record; 07 tables that very record; 08's
    comparison of a model with itself gives p = 1."""
    out = str(tmp_path / "outputs")
    trained = _execute("03_train_cnn_lstm", tmp_path, output_dir=out)
    assert 0.0 <= trained["test_ua"] <= 1.0 and Path(trained["record_path"]).is_file()
    assert trained["record_path"].startswith(out)
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
    assert all(0 <= v <= 1 for v in compared["ua_pooled"].values())
