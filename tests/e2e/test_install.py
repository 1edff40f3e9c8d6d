"""Installed from a wheel, outside the source tree, the tool works (docs/install.md).

The wheel is built from this checkout (`pip wheel --no-deps`), installed with its runtime
dependencies into a fresh venv in a temp dir, and run from that temp dir: `check` must find
the shipped default policy, and `run` must start mitmdump with the addon shim shipped inside
the package, listen, block the January 2026 seed answer for a real client, and stop.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, ROOT
from tests.e2e.support.pki import TestPKI
from tests.e2e.support.proxy import ROUTE_SCRIPT, GuardProxy, wait_until_running
from tests.e2e.support.upstream import Upstream
from tests.e2e.test_run_command import free_port

pytestmark = pytest.mark.e2e

AUTODETECT = "https://prod.autodetect.outlook.cloud.microsoft/autodetect/detect"


def clean_env() -> dict[str, str]:
    """No PYTHONPATH or venv of ours leaking into the installed tool."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout."""
    wheels = tmp_path_factory.mktemp("wheels")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
                   check=True, timeout=600, cwd=wheels, env=clean_env(), capture_output=True)
    (built,) = wheels.glob("autodiscover_guard-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin folder of a fresh venv with the wheel of this checkout installed."""
    tmp = tmp_path_factory.mktemp("install")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)], check=True,
                   timeout=600, cwd=tmp, env=clean_env(), capture_output=True)
    return venv / "bin"


@pytest.fixture(scope="module", autouse=True)
def routes(upstream: Upstream) -> None:
    upstream.add_route("prod.autodetect.outlook.cloud.microsoft", "/autodetect/detect",
                       body=(FIXTURES / "autodetect__seed_example_com.json").read_bytes(),
                       headers={"content-type": "application/json; charset=utf-8"})


def test_the_wheel_ships_every_guard_package_the_policies_and_the_addon(wheel: Path) -> None:
    """pyproject.toml lists packages by name (two are folders outside guard/): a new one must be added."""
    names = set(zipfile.ZipFile(wheel).namelist())
    for init in (ROOT / "guard").rglob("__init__.py"):
        assert init.relative_to(ROOT).as_posix() in names, f"{init.parent.name} is not in pyproject's packages"
    assert {f"guard/_policies/{p.name}" for p in (ROOT / "policies").glob("*.yaml")} <= names
    assert "guard/_addons/autodiscover_guard.py" in names


def test_the_installed_package_is_not_the_source_tree(installed: Path, tmp_path: Path) -> None:
    where = subprocess.run([str(installed / "python"), "-c", "import guard; print(guard.__file__)"], cwd=tmp_path,
                           capture_output=True, text=True, check=True, timeout=60, env=clean_env()).stdout
    assert Path(where.strip()).is_relative_to(installed.parent)


def test_installed_check_finds_the_shipped_policy(installed: Path, tmp_path: Path) -> None:
    result = subprocess.run([str(installed / "autodiscover-guard"), "check", "--email", "email@example.com", "--json",
                             str(FIXTURES / "autodetect__seed_example_com.json")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=False, env=clean_env())
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["findings"][0]["rule"] == "reserved-user-domain"


@pytest.fixture
def running(installed: Path, pki: TestPKI, upstream: Upstream, tmp_path: Path) -> Iterator[GuardProxy]:
    confdir, log = tmp_path / "confdir", tmp_path / "decisions.jsonl"
    command = [str(installed / "autodiscover-guard"), "run", "--listen", f"127.0.0.1:{free_port()}",
               "--confdir", str(confdir), "--log", str(log), "--",
               "-s", str(ROUTE_SCRIPT), "--set", f"route_https_port={upstream.https_port}",
               "--set", f"route_http_port={upstream.http_port}",
               "--set", f"ssl_verify_upstream_trusted_ca={pki.origin_ca_bundle}"]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               bufsize=1, env=clean_env())
    proxy = GuardProxy(process, 0, confdir, Path(), log, tmp_path / "unused.prom", confdir / "mitmproxy-ca-cert.pem")
    proxy.port = wait_until_running(proxy)
    yield proxy
    proxy.stop()


def test_installed_run_loads_the_shipped_addon_listens_and_blocks_the_seed(installed: Path,
                                                                          running: GuardProxy) -> None:
    argv = Path(f"/proc/{running.process.pid}/cmdline").read_bytes().split(b"\0")
    addon = Path(argv[argv.index(b"-s") + 1].decode())
    assert addon.is_relative_to(installed.parent) and addon.name == "autodiscover_guard.py"
    response = running.session().get(AUTODETECT, params={"app": "outlookdesktopBasic"},
                                     headers={"X-Email": "email@example.com"}, timeout=20)
    assert response.status_code == 404
    record = running.last_decision(0)
    assert (record["action"], record["user_domain"]) == ("block", "example.com")
    (loaded,) = running.events("policy_loaded")
    assert Path(loaded["policy"]).is_relative_to(installed.parent)  # the policy shipped in the wheel
