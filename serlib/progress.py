"""Progress that reads well where it is shown.

On a terminal: tqdm bars (a bar per fold, a nested bar per epoch's batches). In a
notebook (a Jupyter kernel, papermill included) widget bars would be saved as widget
references that no viewer can draw ("model not found", or bars frozen at 0 %), so there
are no bars: each epoch prints one plain summary line, which a saved or converted
notebook shows as it was.
"""

from __future__ import annotations

import sys

from tqdm import tqdm


def in_notebook() -> bool:
    """True inside a Jupyter kernel (JupyterLab, papermill, nbval)."""
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def bar(iterable=None, enabled: bool = True, **kwargs):
    """A terminal tqdm bar, or no bar in a notebook / when not ``enabled``."""
    return tqdm(iterable, disable=not enabled or in_notebook(), **kwargs)


def line(text: str, enabled: bool = True) -> None:
    """One line of progress in a notebook (the terminal has the bars)."""
    if enabled and in_notebook():
        print(text, flush=True)
