"""Stable pseudonyms through real mitmdumps: one key file, the same `user_local_hash` everywhere.

Two guard processes sharing a key file (as two gateway instances would) hash a user alike, and
so does a third started after they stopped (a restart). The key file is created by the first
process, mode 600, and the key itself never reaches any output. A process with another key
hashes the user differently, so the equality is the key's doing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from guard.pseudonym import ENV_FILE
from tests.conftest import FIXTURES
from tests.e2e.conftest import ProxyFactory
from tests.e2e.support.proxy import GuardProxy
from tests.e2e.support.secrets import SWEEP
from tests.e2e.support.upstream import Upstream

pytestmark = pytest.mark.e2e

HOST = "autoconfig.pseudonyms.northwind-traders.co.uk"
PATH = "/mail/config-v1.1.xml"


def _hash_of(proxy: GuardProxy, address: str) -> str:
    before = len(proxy.decisions())
    result = proxy.curl(f"https://{HOST}{PATH}?emailaddress={address}", "-o", "/dev/null", "-w", "%{http_code}")
    assert result.stdout == "200", result.stderr
    return str(proxy.last_decision(before)["user_local_hash"])


def test_instances_sharing_a_key_file_hash_a_user_alike_across_restarts(
    guard_proxy: ProxyFactory, upstream: Upstream, tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    upstream.add_route(HOST, PATH, body=(FIXTURES / "autoconfig__benign_own_domain.xml").read_bytes(),
                       headers={"content-type": "application/xml"})
    keys = tmp_path_factory.mktemp("pseudonym-keys")  # outside every swept folder: the key is a needle
    shared, other = keys / "shared.key", keys / "other.key"

    monkeypatch.setenv(ENV_FILE, str(shared))  # inherited by the mitmdumps started below
    first, second = guard_proxy(), guard_proxy()
    alice = _hash_of(first, "Alice@northwind-traders.co.uk")
    assert os.stat(shared).st_mode & 0o777 == 0o600
    SWEEP.needles[shared.read_text().strip()] = "the pseudonym key"
    assert _hash_of(second, "alice@northwind-traders.co.uk") == alice
    assert _hash_of(second, "bob@northwind-traders.co.uk") != alice
    first.stop()
    second.stop()
    assert _hash_of(guard_proxy(), "alice@northwind-traders.co.uk") == alice  # after a restart

    monkeypatch.setenv(ENV_FILE, str(other))
    assert _hash_of(guard_proxy(), "alice@northwind-traders.co.uk") != alice
    SWEEP.needles[other.read_text().strip()] = "the other pseudonym key"
    assert Path(other).stat().st_mode & 0o777 == 0o600
