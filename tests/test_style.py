"""The code base stays ruff-clean and mypy-strict-clean on guard/, tests/, bench/ (run as part of `make test`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

BIN = Path(sys.executable).parent


def test_ruff_reports_nothing() -> None:
    result = subprocess.run([str(BIN / "ruff"), "check", "--no-cache", "."], cwd=ROOT, capture_output=True,
                            text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]


def test_mypy_strict_reports_nothing_on_guard_tests_and_bench(tmp_path: Path) -> None:
    result = subprocess.run([str(BIN / "mypy"), "--cache-dir", str(tmp_path / "cache")], cwd=ROOT,
                            capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]


def _guard_imports() -> dict[str, set[str]]:
    """Module name → the modules its top-level code imports (guard's and third parties')."""
    import ast

    graph: dict[str, set[str]] = {}
    for path in sorted((ROOT / "guard").rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
        graph[name] = found
    return graph


def test_only_guard_proxy_imports_mitmproxy() -> None:
    importers = {name for name, found in _guard_imports().items()
                 if any(m == "mitmproxy" or m.startswith("mitmproxy.") for m in found)}
    assert importers and all(name.startswith("guard.proxy.") for name in importers), sorted(importers)


def test_guard_has_no_import_cycle() -> None:
    graph = _guard_imports()
    edges = {name: {m for m in found if m in graph and m != name} for name, found in graph.items()}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        assert name not in visiting, " → ".join([*visiting[visiting.index(name):], name])
        if name in done:
            return
        visiting.append(name)
        for target in sorted(edges[name]):
            visit(target)
        visiting.pop()
        done.add(name)

    for name in sorted(edges):
        visit(name)
