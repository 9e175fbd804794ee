"""serlib.browser.render: what a view displays reaches its Output widget as one state update
from the kernel, never through ``with out:`` (with it, a headless frontend such as papermill's
nbclient sends the widget's state back on the shell channel after every display, which can
leave the cell's execute_reply unread: the run hangs with kernel and client idle)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# In a subprocess: an InteractiveShell is a process-wide singleton.
CODE = r'''
import json
from IPython.core.interactiveshell import InteractiveShell
from IPython.display import Markdown, display
import ipywidgets as w
from serlib.browser import render

InteractiveShell.instance()
out = w.Output()

def show(text):
    display(Markdown(text))
    print("printed")

def fail():
    display(Markdown("before"))
    raise ValueError("boom")

render(out, show, "**hello**")
first = {"types": [o["output_type"] for o in out.outputs], "md": out.outputs[0]["data"]["text/markdown"],
         "text": out.outputs[1]["text"], "msg_id": out.msg_id}
render(out, fail)
second = {"types": [o["output_type"] for o in out.outputs], "ename": out.outputs[-1]["ename"],
          "evalue": out.outputs[-1]["evalue"]}
print(json.dumps({"first": first, "second": second}))
'''


def test_render_replaces_the_outputs_and_shows_an_error():
    r = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["first"] == {"types": ["display_data", "stream"], "md": "**hello**", "text": "printed\n",
                            "msg_id": ""}  # msg_id stays empty: no frontend capture
    assert got["second"] == {"types": ["display_data", "error"], "ename": "ValueError", "evalue": "boom"}
