"""A person's check of the notebooks in JupyterLab, in a real browser (``make test-browser``).

Starts JupyterLab on 127.0.0.1 over a temporary copy of ``notebooks/``, drives the
system's Chromium with Playwright (``executable_path``: nothing is downloaded), and:

1. runs notebook 02, checks that its plotly figures are drawn, moves the α slider with
   the keyboard and checks that the widget's figure is redrawn for the new α;
2. runs notebook 00 and checks that its plotly figures are drawn;
3. runs notebook 13 (the error browser), picks another confusion cell in its dropdown and
   checks that the cell's utterance list and an ``<audio>`` player appear, with no error
   output;
4. serves notebook 13 with Voilà (``make explore``) and does the same on that page.

Screenshots go to ``outputs/browser/``. Exits 0 when every check passes, 1 otherwise;
the server is stopped either way. Not part of ``make test``: it needs a browser.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "outputs" / "browser"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(server: subprocess.Popen) -> None:
    """Stop a server: SIGTERM, then SIGKILL after 20 s."""
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()


def wait_for(url: str, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer at {url}")


def run_all(page, name: str, timeout_s: float = 600):
    """Open a notebook alone (``?reset``: the workspace's other tabs closed, so no hidden
    notebook's cells are counted), run every cell from the Run menu, wait until the kernel
    is idle; returns the notebook's panel."""
    page.goto(f"{page.base}/lab/tree/{name}?reset&token={page.token}")
    panel = page.locator(".jp-NotebookPanel").filter(visible=True)
    panel.locator(".jp-Cell").first.wait_for(timeout=60_000)
    assert panel.count() == 1, f"{name}: {panel.count()} notebooks shown after a reset workspace"
    page.wait_for_timeout(5000)  # the kernel starts
    page.click(".lm-MenuBar-itemLabel:text-is('Run')")
    page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")
    deadline = time.time() + timeout_s
    time.sleep(2)
    while time.time() < deadline:
        busy = panel.locator(".jp-InputPrompt:has-text('[*]')").count()
        done = panel.locator(".jp-CodeCell .jp-InputPrompt:has-text('[')").count()
        if busy == 0 and done:
            errors = panel.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
                                   ":has-text('Traceback')").count()
            if errors:
                raise AssertionError(f"{name}: a cell raised an error")
            return panel
        time.sleep(1)
    raise TimeoutError(f"{name}: cells still running after {timeout_s} s")


def save(page, panel, name: str) -> tuple[str, Counter]:
    """Save the notebook from the UI (Ctrl+S) and say what the saved working copy holds:
    its size, and its figures by what each keeps (the plotly JSON, a PNG, an HTML copy)."""
    path = Path(page.notebooks) / name
    before = path.stat().st_mtime_ns
    panel.locator(".jp-Cell").first.click()
    page.keyboard.press("Escape")
    page.keyboard.press("Control+s")
    deadline = time.time() + 60
    while path.stat().st_mtime_ns == before and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(1)
    assert path.stat().st_mtime_ns != before, f"{name}: not saved within 60 s of Ctrl+S"
    notebook = json.loads(path.read_text())
    kinds = Counter()
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "application/vnd.plotly.v1+json" in data:
                kinds["figures"] += 1
                kinds["with PNG"] += "image/png" in data
                kinds["with HTML"] += "text/html" in data
            kinds["plotly.js"] += "window.PlotlyConfig" in "".join(data.get("text/html", ""))
    size = path.stat().st_size
    shown = f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"
    return f"saved {shown}: " + ", ".join(f"{k} {v}" for k, v in kinds.items()), kinds


def check_02(page) -> None:
    panel = run_all(page, "02_vtlp.ipynb")
    figures = panel.locator(".js-plotly-plot")
    assert figures.count() >= 4, f"02: expected plotly figures, found {figures.count()}"
    page.screenshot(path=str(SHOTS / "02_before.png"), full_page=False)
    handle = panel.locator(".widget-slider .noUi-handle, .widget-slider .ui-slider-handle").first
    handle.scroll_into_view_if_needed()
    handle.focus()
    for _ in range(5):  # five steps of 0.01
        page.keyboard.press("ArrowRight")
    page.keyboard.press("Tab")  # continuous_update=False: the value is committed on release/blur
    drawn = panel.locator(".jp-OutputArea-output .widget-output .js-plotly-plot, .widget-output .js-plotly-plot")
    drawn.first.wait_for(timeout=60_000)
    deadline, title = time.time() + 60, ""
    while time.time() < deadline and "α = 1.05" not in title:  # each key press redraws once
        title = drawn.first.locator(".gtitle").text_content() or ""
        time.sleep(0.5)
    assert "α = 1.05" in title, f"02: the widget drew {title!r} after moving the slider to 1.05"
    page.screenshot(path=str(SHOTS / "02_after_slider.png"), full_page=False)
    saved, kinds = save(page, panel, "02_vtlp.ipynb")
    # a working copy keeps one copy of each figure: no HTML copy, no embedded plotly.js (viz.notebook_renderer)
    assert kinds["figures"] and not kinds["with HTML"] and not kinds["plotly.js"], f"02: {saved}"
    print(f"02: {figures.count()} figures drawn; slider moved, widget redrew {title!r}; {saved}")


def check_00(page) -> None:
    panel = run_all(page, "00_corpus_overview.ipynb")
    count = panel.locator(".js-plotly-plot").count()
    assert count >= 3, f"00: expected at least 3 plotly figures, found {count}"
    page.screenshot(path=str(SHOTS / "00.png"), full_page=False)
    print(f"00: {count} figures drawn")


def pick_other_cell(page, name: str, root=None) -> str:
    """Choose the second option of the error browser's cell dropdown; wait until the list of
    that cell's utterances and an audio player are drawn; fail on error output."""
    root = root or page
    select = root.locator(".widget-dropdown:has(label:text-is('cell')) select").first
    select.wait_for(timeout=300_000)
    options = select.locator("option").all_text_contents()
    assert len(options) >= 2, f"{name}: the cell dropdown offers {options}"
    choice = options[1]
    select.select_option(label=choice)
    truth, predicted = (part.strip() for part in choice.rsplit("(", 1)[0].split("→"))
    heading = root.locator(f"h3:has-text('True {truth}, predicted {predicted}')")
    heading.first.wait_for(timeout=300_000)
    audio = root.locator(".widget-output audio")
    audio.first.wait_for(state="attached", timeout=120_000)
    # a working player: Chromium decodes its source and knows its length (-1: an error)
    seconds = audio.first.evaluate("""a => new Promise(done => {
        if (a.readyState >= 1) return done(a.duration);
        a.addEventListener("loadedmetadata", () => done(a.duration));
        a.addEventListener("error", () => done(-1));
        setTimeout(() => done(-2), 60000);
        a.load();
    })""")
    assert seconds and seconds > 0, (f"{name}: the first audio player does not load "
                                     f"({'an error' if seconds == -1 else 'no answer in 60 s' if seconds == -2 else seconds})")
    errors = root.locator("[data-mime-type='application/vnd.jupyter.stderr']:has-text('Traceback'), "
                          ".jp-OutputArea-output:has-text('Traceback (most recent call last)'), "
                          ":text('There was an error when executing')").count()
    assert errors == 0, f"{name}: error output after choosing {choice!r}"
    return f"cell {choice!r}: utterance list drawn, {audio.count()} audio player(s), the first plays {seconds:.2f} s"


def check_13(page) -> None:
    panel = run_all(page, "13_error_browser.ipynb")
    found = pick_other_cell(page, "13", panel)
    page.screenshot(path=str(SHOTS / "13_cell.png"), full_page=False)
    print(f"13 in JupyterLab: {found}; {save(page, panel, '13_error_browser.ipynb')[0]}")


def check_voila(page) -> None:
    """``make explore``'s page: Voilà renders notebook 13 as an app."""
    port = free_port()
    work = Path(page.notebooks)
    server = subprocess.Popen([sys.executable, "-m", "voila", "13_error_browser.ipynb", "--no-browser",
                               f"--port={port}", "--Voila.ip=127.0.0.1", "--token="],
                              cwd=work, stdout=subprocess.DEVNULL, stderr=open(work.parent / "voila.log", "w"),
                              stdin=subprocess.DEVNULL)
    try:
        wait_for(f"http://127.0.0.1:{port}/", 120)
        page.goto(f"http://127.0.0.1:{port}/", timeout=600_000)
        found = pick_other_cell(page, "voila")
        page.screenshot(path=str(SHOTS / "13_voila.png"), full_page=False)
        print(f"13 in Voilà: {found}")
    finally:
        stop(server)


def main() -> int:
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="serlib-lab-"))
    shutil.copytree(ROOT / "notebooks", work / "notebooks")
    port, token = free_port(), secrets.token_hex(16)
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ip", "127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work / 'notebooks'}",
         "--ServerApp.disable_check_xsrf=True", "--LabApp.news_url=", "--LabApp.check_for_updates_class="
         "jupyterlab.NeverCheckForUpdate"],
        stdout=subprocess.DEVNULL, stderr=open(work / "server.log", "w"), stdin=subprocess.DEVNULL,
        env={**os.environ, "JUPYTER_CONFIG_DIR": str(work / "config")})
    failures = 0
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/api/status?token={token}")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.base, page.token, page.notebooks = base, token, work / "notebooks"
            checks = [c for c in (check_02, check_00, check_13, check_voila)
                      if not os.environ.get("BROWSER_CHECKS") or c.__name__ in os.environ["BROWSER_CHECKS"].split(",")]
            for check in checks:
                try:
                    check(page)
                except Exception as e:  # report every check, then fail
                    failures += 1
                    page.screenshot(path=str(SHOTS / f"{check.__name__}_failed.png"))
                    print(f"FAILED {check.__name__}: {e}")
            browser.close()
    finally:
        stop(server)
    print(f"{len(checks) - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
