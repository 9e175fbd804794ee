"""The package's structure: every import runs downhill (docs/architecture.md).

The graph is read from the source, every ``import`` included — those inside functions
too — so an import hidden in a function cannot dodge a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "serlib"

# From the ground up; a module may import its own layer and the layers below it only.
LAYERS = [
    ["errors", "constants", "paths", "atomic", "progress", "fields", "device", "metrics", "scraps", "threads",
     "nbclean"],
    ["audio", "features", "augment", "text", "losses", "targets", "optim"],
    ["corpora", "protocols", "recipe", "models", "cache", "functionals", "upstream"],
    ["config", "experiments", "weights"],
    ["data", "records", "manifests", "planning", "fold_setup", "checkpoint", "train"],
    ["results", "bundle", "sweep", "transfer", "stats", "dimensional"],
    ["viz", "analysis", "upstream_analysis", "overview", "__main__"],
]
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}


def module_names() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """serlib modules that ``name`` imports anywhere in its source. ``from . import x``
    counts as an import of the module ``x`` when ``x`` is one (not of the package)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            submodules = {f"{source}.{a.name}" for a in node.names} & set(modules)
            found |= submodules
            if len(submodules) < len(node.names) and source in modules:
                found.add(source)
    return found - {name}


def graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYER_OF.get(parts[1]) if len(parts) > 1 else None


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_serlib_modules():
    assert cycles(graph()) == []


def test_every_import_runs_downhill():
    edges = graph()
    unplaced = sorted(m for m in edges if m != "serlib" and layer(m) is None)
    assert not unplaced, f"modules without a layer in tests/test_layers.py: {unplaced}"
    uphill = sorted(f"{a} (layer {layer(a) + 1}) imports {b} (layer {layer(b) + 1})"
                    for a, targets in edges.items() for b in targets
                    if a != "serlib" and b != "serlib" and layer(b) > layer(a))
    assert not uphill, "\n".join(uphill)


def test_no_private_name_is_imported_from_another_module():
    modules = module_names()
    crossing = []
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("serlib")):
                crossing += [f"{name}: {a.name}" for a in node.names
                             if a.name.startswith("_") and a.name != "__version__"
                             and not (node.module or "").endswith("_common")]
    assert not crossing, crossing
