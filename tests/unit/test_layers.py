"""The floor plan of node/ (DESIGN.md §1): sub-packages by layer, imports one way.

Every module is parsed, not imported, so that an import inside a function counts as much
as one at the top.  A layer may import its own package and any lower layer; the node/
root (the wiring) may import anything and nothing imports it; only the useful-work
package imports kernels/.
"""
from __future__ import annotations

import ast
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
# lowest first: each layer may import only those before it (and itself)
LAYERS = ("types", "storage", "net", "consensus", "uPoW", "state", "verify", "rpc", "work", "cmd")
KERNEL_USERS = {"uPoW"}
MAX_MODULE_LINES = 400


def _modules() -> list[pathlib.Path]:
    return sorted((ROOT / "node").rglob("*.py"))


def _package_of(path: pathlib.Path) -> str | None:
    """The layer a module of node/ belongs to, or None for the root's wiring."""
    parts = path.relative_to(ROOT / "node").parts
    return parts[0] if len(parts) > 1 else None


def _imported(path: pathlib.Path) -> set[str]:
    names = set()
    for item in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(item, ast.Import):
            names.update(alias.name for alias in item.names)
        elif isinstance(item, ast.ImportFrom) and item.level == 0 and item.module:
            names.add(item.module)
            if item.module == "node":
                names.update(f"node.{alias.name}" for alias in item.names)
    return names


def _target(name: str) -> str | None:
    """The layer an imported dotted name lands in; "" for the root, None outside node/."""
    parts = name.split(".")
    if parts[0] != "node":
        return None
    if len(parts) == 1 or parts[1] not in LAYERS:
        return ""
    return parts[1]


def import_violations() -> list[str]:
    found = []
    for path in _modules():
        package = _package_of(path)
        where = path.relative_to(ROOT)
        for name in sorted(_imported(path)):
            if name.split(".")[0] == "kernels" and package not in KERNEL_USERS:
                found.append(f"{where}: imports {name}; only node/uPoW may use kernels/")
            target = _target(name)
            if package is None or target is None or target == package:
                continue
            if target == "":
                found.append(f"{where}: imports the root's wiring {name}")
            elif LAYERS.index(target) > LAYERS.index(package):
                found.append(f"{where}: layer {package} imports the higher layer {name}")
    return found


def test_every_package_of_node_is_a_known_layer():
    packages = {p.name for p in (ROOT / "node").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert packages == set(LAYERS)


def test_imports_go_down_the_layers_only():
    violations = import_violations()
    assert not violations, "\n".join(violations)


def test_the_root_holds_only_the_wiring():
    root_modules = {p.name for p in (ROOT / "node").glob("*.py")}
    assert root_modules == {"__init__.py", "cli.py", "node.py"}


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_small(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.name} has {lines} lines: split it by job"


def test_the_rule_catches_an_upward_import(tmp_path, monkeypatch):
    # the checker itself could fail open: plant a state module that imports the rpc layer
    fake = tmp_path / "node"
    (fake / "state").mkdir(parents=True)
    (fake / "state" / "bad.py").write_text("from node.rpc.api import NodeAPI\nimport kernels.matmul\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert import_violations() == [
        "node/state/bad.py: imports kernels.matmul; only node/uPoW may use kernels/",
        "node/state/bad.py: layer state imports the higher layer node.rpc.api"]
