"""The install files agree with each other and with the README."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(spec: str) -> str:
    return re.split(r"[<>=!~ \[]", spec.strip(), maxsplit=1)[0].lower()


def test_environment_yml_lists_the_same_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(s) for s in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        wanted |= {_name(s) for s in extra}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_list = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {_name(s) for s in pip_list if not s.startswith("-e")}
    assert listed == wanted


def test_ci_runs_the_readme_test_command():
    """CI runs exactly ``make test`` (the README's opening is checked in test_docs.py)."""
    lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")]
    assert lines[-1] == "exec make test"


def test_every_imported_package_is_declared():
    """A module serlib imports is a declared dependency (or the standard library)."""
    import ast
    import sys
    from importlib.metadata import packages_distributions

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(s).replace("_", "-") for s in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        declared |= {_name(s).replace("_", "-") for s in extra}
    modules = set()
    for path in (ROOT / "serlib").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    third_party = sorted(m for m in modules - set(sys.stdlib_module_names) if m != "serlib")
    dists = packages_distributions()
    missing = [m for m in third_party if not {d.lower().replace("_", "-") for d in dists.get(m, [m])} & declared]
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
