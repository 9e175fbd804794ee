"""The documents' commands and links work: every fenced shell command of README.md,
CONTRIBUTING.md and docs/**/*.md is checked without training anything.

- ``python -m serlib …`` (or ``serlib …``) parses with the command line's own parser
  (``serlib.__main__.build_parser()``), and the ``--set`` values of ``run``/``sweep``/``baseline``
  build the experiment's config;
- ``make TARGET`` names a target of the Makefile;
- ``papermill notebooks/X.ipynb …`` names an existing notebook and passes only parameters
  (``-p``, ``-r``, ``-y``) that its ``parameters`` cell defines;
- a script a command runs (``python benchmarks/x.py``, ``bash benchmarks/x.sh``) exists;
- every relative link points at an existing file, and at an existing heading when it names one.

``test_the_checks_can_fail`` feeds broken commands and links to the same checks.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import io
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
OPERATORS = {";", "&&", "||", "|", "&"}
# Makefile targets that issue 19 adds in the same round (the lead's part of the merge). Remove
# a name here once the Makefile has it: from then on the Makefile itself is the check.
PENDING_MAKE_TARGETS = {"lab"}  # added with the notebooks work


@dataclass(frozen=True)
class Command:
    document: Path
    line: int  # first line of the command in the document (1-based)
    text: str  # the command with continuations joined and comments removed

    def __str__(self) -> str:
        return f"{_shown(self.document)}:{self.line}: {self.text}"


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _strip_comment(line: str) -> str:
    """``line`` without a shell comment: a ``#`` at the start of a word, outside quotes."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def fenced_blocks(text: str) -> list[tuple[str, int, list[str]]]:
    """(language, first line number, lines) of every fenced code block of a Markdown text."""
    blocks, current, fence = [], None, None
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if current is None and match:
            fence, current = match.group(1), (match.group(2).lower(), number + 1, [])
        elif current is not None and line.strip().startswith(fence) and not line.strip().strip(fence[0]):
            blocks.append(current)
            current = None
        elif current is not None:
            current[2].append(line)
    return blocks


def shell_commands(document: Path) -> list[Command]:
    """The commands of the document's shell blocks: continuations (``\\``) joined, comments and
    ``$ `` prompts removed; a ``console`` block's output lines (no prompt) are skipped."""
    commands = []
    for language, first, lines in fenced_blocks(document.read_text()):
        if language not in SHELL_LANGUAGES:
            continue
        pending, start = "", None
        for offset, raw in enumerate(lines):
            line = raw
            if language == "console" and not pending:
                if not line.lstrip().startswith("$ "):
                    continue  # program output
                line = line.lstrip()[2:]
            line = _strip_comment(line)
            if start is None:
                start = first + offset
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            text = (pending + line).strip()
            if text:
                commands.append(Command(document, start, " ".join(text.split())))
            pending, start = "", None
    return commands


def split_simple(text: str) -> list[list[str]]:
    """The simple commands of a command line, split at ``;``, ``&&``, ``||``, ``|``, ``&``."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    parts, current = [], []
    for token in lexer:
        if token in OPERATORS:
            parts.append(current)
            current = []
        else:
            current.append(token)
    parts.append(current)
    out = []
    for words in parts:
        while words and (re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", words[0]) or words[0] in ("nice", "time", "exec")):
            words = words[1:]  # environment assignments and wrappers: the command follows
        if words:
            out.append(words)
    return out


# --- what the checks compare against -------------------------------------------------------

def make_targets() -> set[str]:
    targets = set()
    for line in (ROOT / "Makefile").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-/ $()]+?)\s*::?(?!=)", line)
        if match and not line.startswith("\t"):
            targets |= {t for t in match.group(1).split() if not t.startswith((".", "$"))}
    return targets


def notebook_parameters(path: Path) -> set[str]:
    """The names the notebook's ``parameters`` cell assigns."""
    cells = json.loads(path.read_text())["cells"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert tagged, f"{path.relative_to(ROOT)} has no cell tagged 'parameters'"
    names = set()
    for node in ast.parse("".join(tagged[0]["source"])).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


@functools.cache
def _parser():
    from serlib.__main__ import build_parser

    return build_parser()


def _config_problem(args) -> str | None:
    """Build the config a run/sweep/baseline command asks for (nothing is trained or read)."""
    from serlib.errors import SerlibError
    from serlib.experiments import make_config
    from serlib.fields import parse_overrides

    experiment = getattr(args, "experiment", None) or "functionals"
    values = {"corpus": args.corpus, "data_root": args.root, "protocol": args.protocol}
    if args.command == "baseline":
        values.update(feature_set=args.feature_set, classifier=args.classifier)
    try:
        values.update(parse_overrides(args.set))
        make_config(experiment, values)
    except SerlibError as e:
        # a config that reads a folder the command names (a pretrained checkpoint): the
        # reader's own folder, not the document's fault; anything else is a problem
        named = [v for k, v in values.items() if k == "upstream.path"]
        if not (named and f"{named[0]}: no such checkpoint folder" in str(e)):
            return f"its settings do not build a config: {e}"
    return None


# --- the checks: each returns the problems it found (empty: fine) ---------------------------

def check_serlib(words: list[str]) -> list[str]:
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            args = _parser().parse_args(words)
    except SystemExit:
        return [f"the command line rejects it: {stderr.getvalue().strip().splitlines()[-1]}"]
    if getattr(args, "command", None) in ("run", "sweep", "baseline"):
        problem = _config_problem(args)
        return [problem] if problem else []
    return []


def check_make(words: list[str]) -> list[str]:
    targets = make_targets() | PENDING_MAKE_TARGETS
    wanted = [w for w in words if not w.startswith("-") and "=" not in w]
    return [f"the Makefile has no target {t!r}" for t in wanted if t not in targets]


def check_papermill(words: list[str]) -> list[str]:
    positional, given, i = [], [], 0
    while i < len(words):
        word = words[i]
        if word in ("-p", "--parameters", "-r", "--parameters_raw"):
            given.append(words[i + 1])
            i += 3
        elif word in ("-y", "--parameters_yaml"):
            parsed = yaml.safe_load(words[i + 1])
            if not isinstance(parsed, dict):
                return [f"-y {words[i + 1]!r} is not a YAML mapping"]
            given += list(parsed)
            i += 2
        elif word in ("-f", "--parameters_file", "-k", "--kernel", "--cwd", "--log-level", "-l", "--language"):
            i += 2
        elif word.startswith("-"):
            i += 1
        else:
            positional.append(word)
            i += 1
    if not positional:
        return ["papermill without a notebook"]
    notebook = ROOT / positional[0]
    if not notebook.is_file():
        return [f"no notebook {positional[0]}"]
    known = notebook_parameters(notebook)
    return [f"{positional[0]} has no parameter {name!r} (its parameters cell: {sorted(known)})"
            for name in given if name not in known]


def check_script(path: str) -> list[str]:
    if "/" not in path or "$" in path:
        return []  # not a path of this checkout
    return [] if (ROOT / path).is_file() else [f"no script {path}"]


def command_problems(text: str) -> list[str]:
    problems = []
    for words in split_simple(text):
        program, args = Path(words[0]).name, words[1:]
        if program == "serlib":
            problems += check_serlib(args)
        elif re.fullmatch(r"python(3(\.\d+)?)?", program):
            if args[:2] == ["-m", "serlib"]:
                problems += check_serlib(args[2:])
            elif args and args[0].endswith(".py"):
                problems += check_script(args[0])
        elif program == "make":
            problems += check_make(args)
        elif program == "papermill":
            problems += check_papermill(args)
        elif program in ("bash", "sh") and args and args[0].endswith(".sh"):
            problems += check_script(args[0])
    return problems


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower().replace("`", "").replace("*", "")
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(document: Path) -> set[str]:
    text = document.read_text()
    for _, _, lines in fenced_blocks(text):  # a '#' comment in a code block is no heading
        for line in lines:
            text = text.replace(line, "", 1)
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M)}


def link_problems(document: Path) -> list[str]:
    text = document.read_text()
    for _, _, lines in fenced_blocks(text):
        for line in lines:
            text = text.replace(line, "", 1)
    text = re.sub(r"(`+)[^`]*?\1", "", text)  # inline code shows links, it holds none
    problems = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = (document.parent / path).resolve() if path else document
        where = f"{_shown(document)}: link {target}"
        if not resolved.exists():
            problems.append(f"{where}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{where}: no heading with that anchor in {resolved.name}")
    return problems


# --- the tests ------------------------------------------------------------------------------

COMMANDS = [c for d in DOCUMENTS for c in shell_commands(d)]


def test_the_documents_hold_commands():
    """The extraction finds the commands (an empty list would make every other test pass)."""
    texts = [c.text for c in COMMANDS]
    assert any(" -m serlib sweep " in t for t in texts) and any(t.startswith("make demo") for t in texts)
    assert sum(" -m serlib " in f" {t} " for t in texts) >= 20
    assert any("papermill " in t for t in texts)


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_command(command):
    assert command_problems(command.text) == [], str(command)


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: str(d.relative_to(ROOT)))
def test_links(document):
    assert link_problems(document) == []


def test_readme_opens_with_the_two_commands():
    """The first code block of the README, before its second section, is `make demo` and `make test`."""
    text = (ROOT / "README.md").read_text()
    first_command_block = next(lines for language, _, lines in fenced_blocks(text) if language in SHELL_LANGUAGES)
    words = [_strip_comment(line).split() for line in first_command_block]
    assert [w[:2] for w in words if w] == [["make", "demo"], ["make", "test"]]
    sections = [m.start() for m in re.finditer(r"^## ", text, re.M)]
    assert text.index("make demo") < sections[1]


def test_the_map_is_the_registrys():
    """The README's map of the papers is the table the registry generates
    (``serlib.experiments.papers_table()``): a new paper appears once its experiment file
    declares ``title``, ``notebook`` and ``docs``; every page and notebook it links exists."""
    from serlib import experiments

    text = (ROOT / "README.md").read_text()
    generated = experiments.papers_table()
    assert generated in text, ("the README's map differs from the registry's; paste the output of\n"
                               "  python -c 'from serlib.experiments import papers_table; print(papers_table())'\n"
                               f"under '## The map'. It is now:\n{generated}")
    for name, cls in experiments.EXPERIMENTS.items():
        assert cls.title and (ROOT / cls.docs).is_file() and (ROOT / "notebooks" / f"{cls.notebook}.ipynb").is_file(), name


def _linked_notebooks(text: str) -> set[str]:
    return set(re.findall(r"`(\d\d_\w+)`", text))


def test_every_notebook_is_listed():
    """README's notebook table and docs/notebooks.md (its table and its run times) name every notebook."""
    notebooks = {p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    readme = (ROOT / "README.md").read_text()
    readme = readme[readme.index("## The notebooks"):readme.index("## Where to read more")]
    guide = (ROOT / "docs" / "notebooks.md").read_text()
    times = guide[guide.index("## Run times of the defaults"):]
    for where, text in (("README.md", readme), ("docs/notebooks.md", guide[:guide.index("## Running them")])):
        assert _linked_notebooks(text) == notebooks, f"{where}: missing {sorted(notebooks - _linked_notebooks(text))}, " \
                                                     f"unknown {sorted(_linked_notebooks(text) - notebooks)}"
    assert set(re.findall(r"^\| (\d\d) \|", times, re.M)) == {n[:2] for n in notebooks}


def test_every_paper_page_is_listed():
    """docs/papers/README.md and the README link every paper page, and name each page's experiments."""
    from serlib import experiments

    pages = {p.name for p in (ROOT / "docs" / "papers").glob("*.md")} - {"README.md"}
    index = (ROOT / "docs" / "papers" / "README.md").read_text()
    readme = (ROOT / "README.md").read_text()
    for page in pages:
        assert f"({page})" in index and f"(docs/papers/{page})" in readme, page
    for name, cls in experiments.EXPERIMENTS.items():
        if cls.docs.startswith("docs/papers/"):
            assert f"`{name}`" in index, f"docs/papers/README.md does not name experiment {name}"


BROKEN = [
    "python -m serlib sweep --experiment cnn_lstm --no-such-option 3",
    "python -m serlib run --experiment cnn_lstm --fold 0",
    "python -m serlib run --experiment cnn_lstm --set epochs=2.5",
    "python -m serlib sweep --experiment cnn_lstm --set no_such_field=1",
    "python -m serlib sweep --experiment no_such_paper",
    "python -m serlib no-such-command",
    ".venv/bin/python -m serlib predict",
    "make no-such-target",
    "papermill notebooks/03_train_cnn_lstm.ipynb out.ipynb -p no_such_parameter 1",
    "papermill notebooks/03_train_cnn_lstm.ipynb out.ipynb -y 'no_such_parameter: 1'",
    "papermill notebooks/99_missing.ipynb out.ipynb",
    "SERLIB_OUTPUTS=x bash benchmarks/no_such_script.sh",
    "cd x && python benchmarks/no_such_script.py",
]


@pytest.mark.parametrize("text", BROKEN)
def test_the_checks_can_fail(text):
    assert command_problems(text), f"a broken command passed: {text}"


def test_extraction_joins_continuations_and_drops_comments(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("text\n\n```bash\n# a comment line\npython -m serlib sweep --experiment cnn_lstm \\\n"
                   "    --folds 1,2   # trailing comment\nmake demo\n```\n\n```python\nmake nothing\n```\n"
                   "```console\n$ make test\noutput line\n```\n")
    assert [(c.line, c.text) for c in shell_commands(doc)] == [
        (5, "python -m serlib sweep --experiment cnn_lstm --folds 1,2"), (7, "make demo"), (14, "make test")]


def test_broken_links_are_found(tmp_path):
    (tmp_path / "b.md").write_text("# Real heading, with `code`\n\n```bash\n# not a heading\n```\n")
    doc = tmp_path / "a.md"
    doc.write_text("# Title\n\n[ok](b.md#real-heading-with-code) [gone](no-such.md) [bad](b.md#not-a-heading)"
                   " [self](#title) [web](https://example.org) ![img](b.md)\n")
    problems = link_problems(doc)
    assert len(problems) == 2 and "no-such.md" in problems[0] and "#not-a-heading" in problems[1]


def test_the_notebooks_point_at_places_that_exist():
    """A notebook's pointer to a README section ("README, \"Section\"", README.md#anchor) or to
    a document (docs/x.md) names one that exists."""
    readme = (ROOT / "README.md").read_text()
    headings = {h.strip().lower() for h in re.findall(r"^#+ (.+)$", readme, re.M)}
    readme_anchors = anchors(ROOT / "README.md")
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        text = "".join("".join(cell["source"]) for cell in json.loads(path.read_text())["cells"])
        for section in re.findall(r'README, "([^"]+)"', text):
            assert section.lower() in headings, f"{path.name}: no README section {section!r}"
        for anchor in re.findall(r"README\.md#([\w-]+)", text):
            assert anchor in readme_anchors, f"{path.name}: no README anchor #{anchor}"
        for doc in re.findall(r"\bdocs/[\w/]+\.md", text):
            assert (ROOT / doc).is_file(), f"{path.name}: no {doc}"
