"""The git clean filter of the notebooks: what git commits of a notebook that was run.

``python -m serlib.nbclean [EXTRA_KEY ...]`` reads a notebook on stdin and writes, on
stdout, the notebook as the repository keeps it: nbstripout's stripping (outputs,
execution counts, the metadata keys of ``EXTRA_KEY`` such as ``metadata.papermill``),
then two normalisations that nbstripout lacks, for what JupyterLab changes on every save:

* the kernelspec's ``display_name`` ("Python 3", "Python 3 (ipykernel)", a conda
  environment's name…) becomes :data:`DISPLAY_NAME`; nbformat requires the field, so it
  is kept, with one value;
* an empty ``"tags": []`` list (JupyterLab's tag editor leaves one behind) is removed;
  tags that say something (``parameters``) stay.

``make install`` registers it as the ``nbstripout`` filter that ``.gitattributes`` names,
so that running or saving a notebook leaves ``git diff`` empty.
"""

from __future__ import annotations

import sys

import nbformat

#: The display name every committed notebook carries: ipykernel's own kernelspec's.
DISPLAY_NAME = "Python 3 (ipykernel)"
#: Metadata that nbstripout removes by default (``strip_output`` needs them spelled out).
DEFAULT_KEYS = ("metadata.signature", "metadata.widgets", "cell.metadata.collapsed", "cell.metadata.ExecuteTime",
                "cell.metadata.execution", "cell.metadata.scrolled")


def clean(nb: nbformat.NotebookNode, extra_keys: list[str] | tuple[str, ...] = ()) -> nbformat.NotebookNode:
    """``nb`` stripped (in place, and returned) as git commits it."""
    from nbstripout import strip_output

    nb = strip_output(nb, keep_output=False, keep_count=False, keep_id=True,
                      extra_keys=list(DEFAULT_KEYS) + list(extra_keys))
    kernelspec = nb.metadata.get("kernelspec")
    if kernelspec is not None and "display_name" in kernelspec:
        kernelspec["display_name"] = DISPLAY_NAME
    for cell in nb.cells:
        if cell.get("metadata", {}).get("tags") == []:
            del cell.metadata["tags"]
    return nb


def main(argv: list[str] | None = None) -> int:
    keys = [k for arg in (sys.argv[1:] if argv is None else argv) for k in arg.split()]
    nb = nbformat.read(sys.stdin, as_version=nbformat.NO_CONVERT)
    nbformat.write(clean(nb, keys), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
