"""The import layering of the source folders (``docs/architecture.md``): each folder may import
only the folders below it, so that the runtime, which embedded apps install, stands on the
core alone. Every import counts, those inside functions too; only imports under
``if TYPE_CHECKING:`` (annotations) are exempt."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# folder → the package it is installed as
FOLDERS = {
    "overfeat": "overfeat",
    "runtime": "overfeat.runtime",
    "datasets": "overfeat.datasets",
    "export": "overfeat.export",
    "training": "overfeat.training",
    "calibration": "overfeat.calibration",
    "engines": "overfeat.engines",
    "bench": "overfeat.bench",
    "serving": "overfeat.serving",
}
# layer → the layers it may import (besides itself); the command line imports every layer
ALLOWED = {
    "core": set(),
    "runtime": {"core"},
    "datasets": {"core", "runtime"},
    "export": {"core", "runtime", "datasets"},
    "training": {"core", "runtime", "datasets", "export"},
    "calibration": {"core", "runtime", "datasets"},
    "engines": {"core", "runtime", "datasets", "calibration"},
    "bench": {"core", "runtime", "datasets", "calibration", "engines"},
    "serving": {"core", "runtime"},
}
ALLOWED["cli"] = set(ALLOWED) - {"cli"}


def layer_of_module(module: str) -> str | None:
    """The layer of an ``overfeat…`` module; None for other packages."""
    if module != "overfeat" and not module.startswith("overfeat."):
        return None
    for folder, package in FOLDERS.items():
        if folder != "overfeat" and (module == package or module.startswith(package + ".")):
            return folder
    return "cli" if module == "overfeat.cli" or module.startswith("overfeat.cli.") else "core"


def layer_of_file(path: Path) -> str:
    folder = path.relative_to(ROOT).parts[0]
    if folder == "overfeat":
        return "cli" if path.relative_to(ROOT).parts[1].startswith("cli") else "core"
    return folder


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import of ``path``, skipping ``if TYPE_CHECKING:`` blocks."""
    found = []
    stack: list[ast.AST] = [ast.parse(path.read_text(encoding="utf-8"))]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        stack.extend(ast.iter_child_nodes(node))
    return found


def violations() -> list[str]:
    out = []
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):  # a folder that is not there yields nothing
            source = layer_of_file(path)
            for line, module in imports(path):
                target = layer_of_module(module)
                if target is not None and target != source and target not in ALLOWED[source]:
                    out.append(f"{path.relative_to(ROOT)}:{line}: {source} imports {module} ({target})")
    return out


def test_every_folder_imports_only_the_layers_below_it():
    assert violations() == []


def test_the_contract_catches_an_import_across_layers(tmp_path, monkeypatch):
    """The check itself: an import of the engines from the runtime is reported, one under
    TYPE_CHECKING is not."""
    fake = tmp_path / "runtime" / "bad.py"
    fake.parent.mkdir()
    fake.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from overfeat.engines import plan\n"
        "def f():\n    from overfeat.engines.build import build_engines\n"
    )
    monkeypatch.setattr("tests.test_layering.ROOT", tmp_path)
    assert violations() == ["runtime/bad.py:5: runtime imports overfeat.engines.build (engines)"]
