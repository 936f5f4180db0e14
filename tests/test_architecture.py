"""The package's structure keeps the shape docs/architecture.md describes: imports flow one way, every
environment variable is named in one module, and nothing in the package is there only for a test."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "amltrack"


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, from its __init__)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports when it runs: at the top and inside functions
    alike, but not under ``if TYPE_CHECKING:``, and not its own parent packages, which Python has
    imported before it anyway."""
    is_package = path.name == "__init__.py"
    base = name.split(".") if is_package else name.split(".")[:-1]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking_only(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    anchor = base[: len(base) - child.level + 1]
                    target = ".".join(anchor + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                found.add(target)
                found.update(f"{target}.{a.name}" for a in child.names)
            visit(child)

    visit(ast.parse(path.read_text()))
    parents = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    return {m for m in found if m in known and m != name and m not in parents}


def test_the_package_has_no_import_cycle() -> None:
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in state:
                walk(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node)
    assert cycles == [], "\n".join(" -> ".join(c) for c in cycles)


def test_the_check_finds_a_cycle_through_an_import_inside_a_function(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import x\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n")
    known = {"pkg": pkg / "__init__.py", "pkg.a": pkg / "a.py", "pkg.b": pkg / "b.py", "pkg.c": pkg / "c.py"}
    assert imports("pkg.a", known["pkg.a"], known) == {"pkg.b"}
    assert imports("pkg.b", known["pkg.b"], known) == {"pkg.a"}
    assert imports("pkg.c", known["pkg.c"], known) == set()


# docs/architecture.md's layers, top first: a module imports only its own layer's and those above.
LAYERS = {
    "format": (
        "_format",
        "_records",
        "_kinds",
        "_media",
        "_env",
        "_errors",
        "_platform",
        "_files",
        "_columns",
        "_metadata",
        "_query",
        "_redact",
        "_query",
    ),
    "store": ("_store", "_summary", "_assets", "_runindex"),
    "write": ("_logger", "_validate", "_lifecycle", "_writer", "_mirror", "_resume", "_system"),
    "services": ("_web", "ui", "sync", "server", "integrations"),
    "cli": ("cli",),
}


def layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    for i, names in enumerate(LAYERS.values()):
        if top in names:
            return i
    raise AssertionError(
        f"{module} is in no layer of docs/architecture.md: add it to the table and to LAYERS"
    )


def test_imports_flow_down_the_layers() -> None:
    known = modules()
    upward = [
        f"{name} -> {target}"
        for name, path in known.items()
        if name not in ("amltrack", "amltrack.__main__")
        for target in imports(name, path, known)
        if target not in ("amltrack", "amltrack.__main__") and layer(target) > layer(name)
    ]
    assert upward == []


ENV_NAME = re.compile(r"^(AMLTRACK|MLFLOW_TRACKING)_[A-Z0-9_]+$")


def test_environment_variables_are_named_in_one_module() -> None:
    spelled = []
    for name, path in modules().items():
        if name == "amltrack._env":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and ENV_NAME.match(node.value):
                spelled.append(f"{name}:{node.lineno} {node.value}")
    assert spelled == [], "use the names in amltrack/_env.py"


def test_no_module_reads_a_variable_that_only_a_test_sets() -> None:
    found = [name for name, path in modules().items() if "AMLTRACK_TEST" in path.read_text()]
    assert found == []
