"""The plugin's floors (issue 28): ns → config (knobs, config) → model → optim → adapters (factory, integrations,
diagnostics, run, cli) → the lab; no module imports a higher floor (function-level imports included), read
statically from the sources."""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "hf_muon"
FLOORS = {"ns": 0, "knobs": 1, "config": 1, "model": 2, "optim": 3}
FLOORS.update(dict.fromkeys(("factory", "integrations", "diagnostics", "run", "cli"), 4), lab=5)


def _floor(module: str) -> int | None:
    parts = module.split(".")
    return FLOORS.get(parts[1]) if len(parts) > 1 and parts[0] == "hf_muon" else None


def _imports(path: Path) -> list[str]:
    package = ".".join(path.relative_to(PKG.parent).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out += [mod] if node.module else [f"{mod}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names]
    return out


FILES = [p for p in sorted(PKG.rglob("*.py")) if p.relative_to(PKG).parts[0] != "lab" and p.name != "__init__.py"]
FILES += [p for p in sorted(PKG.rglob("__init__.py")) if p.parent != PKG and p.relative_to(PKG).parts[0] != "lab"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PKG)))
def test_no_module_imports_a_higher_floor(path):
    own = _floor("hf_muon." + ".".join(path.relative_to(PKG).with_suffix("").parts))
    higher = [m for m in _imports(path) if (f := _floor(m)) is not None and f > own]
    assert not higher, f"{path.relative_to(PKG)} imports {higher}"
