"""The two layers stay apart: the plugin (``hf_muon`` outside ``hf_muon/lab``) never imports the lab, and every
module of the package stays small (≤ 400 lines)."""

from __future__ import annotations

import ast

from conftest import REPO

PKG = REPO / "hf_muon"
LAB = PKG / "lab"
MAX_LINES = 400


def _module_name(path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path, module: str | None = None) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``path`` (its dotted name: ``module``, default from
    its place under the repository), relative imports resolved; ``from X import y`` also yields ``X.y``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = (module or _module_name(path)).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            out += [(node.lineno, f"{mod}.{alias.name}") for alias in node.names]  # from hf_muon import lab
    return out


def _is_lab(mod: str) -> bool:
    return mod == "hf_muon.lab" or mod.startswith("hf_muon.lab.")


def test_plugin_never_imports_the_lab():
    plugin = [p for p in sorted(PKG.rglob("*.py")) if LAB not in p.parents]
    assert plugin
    offenders = [
        f"{p.relative_to(REPO)}:{line} imports {mod}" for p in plugin for line, mod in _imports(p) if _is_lab(mod)
    ]
    assert not offenders, "the plugin must not import hf_muon.lab:\n" + "\n".join(offenders)


def test_the_scan_sees_relative_and_absolute_lab_imports(tmp_path):
    """The resolver itself, on a probe file read as if it were ``hf_muon/optim/probe.py``."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from ..lab import research\nimport hf_muon.lab.data\nfrom hf_muon import lab\nfrom . import muon\n"
        "def f():  # a lazy import counts too\n    from ..lab.study import run_study\n"
    )
    mods = [m for _, m in _imports(probe, "hf_muon.optim.probe")]
    assert {
        "hf_muon.lab.research",
        "hf_muon.lab.data",
        "hf_muon.lab",
        "hf_muon.lab.study.run_study",
        "hf_muon.optim.muon",
    } <= set(mods)
    assert sum(map(_is_lab, mods)) >= 4
    assert not _is_lab("hf_muon.optim.muon") and not _is_lab("hf_muon.labels")


def test_every_module_is_at_most_400_lines():
    sizes = {p.relative_to(REPO): len(p.read_text(encoding="utf-8").splitlines()) for p in sorted(PKG.rglob("*.py"))}
    offenders = [f"{p}: {n} lines" for p, n in sizes.items() if n > MAX_LINES]
    assert not offenders, f"modules over {MAX_LINES} lines:\n" + "\n".join(offenders)
