"""Values a notebook records for whoever runs it next: tests, papermill pipelines.

``glue(name, value)`` displays a small JSON bundle (and a readable text line) in the
notebook's output; :func:`read_scraps` reads every glued value back from an executed
notebook. The same idea as the `scrapbook` package, without its unmaintained
dependency chain. :func:`prepare` writes copies of notebooks with papermill parameters
injected (not executed), so nbval can run them with small, CI-sized parameters.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MIMETYPE = "application/x.serlib.scrap+json"


def glue(name: str, value: Any) -> None:
    """Record ``value`` (JSON-serialisable) under ``name`` in the notebook's output. The
    visible line is short: a long list or mapping shows its size, not every item (the
    value itself is kept whole for :func:`read_scraps`)."""
    from IPython.display import display

    json.dumps(value)  # fail here, not when the notebook is read
    shown = repr(value)
    if len(shown) > 200 and isinstance(value, (list, dict)):
        shown = f"<{type(value).__name__} of {len(value)} items>"
    display({MIMETYPE: {"name": name, "value": value}, "text/plain": f"{name} = {shown}"}, raw=True)


def read_scraps(path: str | Path) -> dict[str, Any]:
    """``{name: value}`` of every :func:`glue` output of an executed notebook."""
    nb = json.loads(Path(path).read_text())
    out = {}
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if MIMETYPE in data:
                scrap = data[MIMETYPE]
                out[scrap["name"]] = scrap["value"]
    return out


def prepare(notebooks: list[Path], folder: Path, parameters: dict[str, dict]) -> list[Path]:
    """Copies of ``notebooks`` in ``folder`` with ``parameters[notebook stem]`` injected by
    papermill (prepared, not executed)."""
    import papermill as pm

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for nb in notebooks:
        target = folder / nb.name
        pm.execute_notebook(str(nb), str(target), parameters=parameters.get(nb.stem, {}), prepare_only=True,
                            progress_bar=False, kernel_name="python3", cwd=str(nb.parent))
        written.append(target)
    return written


if __name__ == "__main__":  # python -m serlib.scraps NOTEBOOK_DIR OUT_DIR PARAMS.json
    import sys

    source, out, params = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(Path(sys.argv[3]).read_text())
    for path in prepare(sorted(source.glob("*.ipynb")), out, params):
        print(path)
