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
