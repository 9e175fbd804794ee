"""Progress that reads well where it is shown.

On a terminal: tqdm bars (a bar per fold, a nested bar per epoch's batches). In a
notebook (a Jupyter kernel, papermill included) widget bars would be saved as widget
references that no viewer can draw ("model not found", or bars frozen at 0 %), so there
are no bars: each epoch prints one plain summary line, which a saved or converted
notebook shows as it was. Off a terminal (output to a file or a pipe) a bar's carriage
returns would pile up on one line: the bar prints a plain line every
:data:`LINE_EVERY_PERCENT` % instead (and one at the end).
"""

from __future__ import annotations

import sys

from tqdm import tqdm


def in_notebook() -> bool:
    """True inside a Jupyter kernel (JupyterLab, papermill, nbval)."""
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


LINE_EVERY_PERCENT = 10


class LineBar(tqdm):
    """A tqdm bar for logs: a line (``desc: 40%|…| 4/10 [00:02<00:03]``) each time the
    count crosses another :data:`LINE_EVERY_PERCENT` % of the total (only the last one
    when the total is unknown), never a carriage return."""

    def __init__(self, *args, **kwargs):
        self._printed = -1
        kwargs.update(mininterval=0, miniters=1, leave=True)
        super().__init__(*args, **kwargs)

    def display(self, msg=None, pos=None):
        if self.disable:
            return True
        done = self.n >= self.total if self.total else False
        step = int(100 * self.n / self.total) // LINE_EVERY_PERCENT if self.total else -1
        if (step > self._printed and self.n > 0) or (done and self._printed != step):
            self._printed = step
            self.fp.write(self.format_meter(**self.format_dict).strip() + "\n")
            self.fp.flush()
        return True

    def close(self):
        if not self.disable and not self.total and self.n:  # unknown total: one line at the end
            self.fp.write(self.format_meter(**self.format_dict).strip() + "\n")
        self.disable = True  # tqdm's own close would add a blank line or a carriage return
        super().close()


def bar(iterable=None, enabled: bool = True, lines: bool = True, **kwargs):
    """A terminal tqdm bar; lines every 10 % off a terminal (:class:`LineBar`; none when
    not ``lines``, e.g. the batches of one epoch, which the epochs' bar reports); no bar
    in a notebook or when not ``enabled``."""
    disable = not enabled or in_notebook()
    stream = kwargs.get("file") or sys.stderr
    if not disable and not (hasattr(stream, "isatty") and stream.isatty()):
        return LineBar(iterable, **kwargs) if lines else tqdm(iterable, disable=True, **kwargs)
    return tqdm(iterable, disable=disable, **kwargs)


def line(text: str, enabled: bool = True) -> None:
    """One line of progress in a notebook (the terminal has the bars)."""
    if enabled and in_notebook():
        print(text, flush=True)
