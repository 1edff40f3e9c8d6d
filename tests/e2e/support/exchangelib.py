"""exchangelib's real autodiscovery, run in its own process through a guard proxy (scripts/exchangelib_discover.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.e2e.support.proxy import GuardProxy

DRIVER = Path(__file__).resolve().parent / "scripts" / "exchangelib_discover.py"
SVC = "/autodiscover/autodiscover.svc"
XML = {"content-type": "text/xml; charset=utf-8"}


def discover(proxy: GuardProxy, dns_port: int, email: str, password: str, tmp_path: Path) -> dict[str, Any]:
    """exchangelib's autodiscovery for `email` through `proxy`, its resolver at `dns_port`; its JSON outcome."""
    env = {
        "PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "TMPDIR": str(tmp_path),
        "HTTPS_PROXY": proxy.url, "HTTP_PROXY": proxy.url, "NO_PROXY": "",
        "REQUESTS_CA_BUNDLE": str(proxy.ca_bundle), "EXCHANGELIB_TEST_PASSWORD": password,
    }
    result = subprocess.run([sys.executable, str(DRIVER), email, str(dns_port)], env=env,
                            capture_output=True, text=True, timeout=90, check=False)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))
