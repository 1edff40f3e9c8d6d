"""Broken policy files on hot reload, through a real mitmdump: the old policy stays and the reason is logged.

One proxy lives through a sequence of breakages (deleted, half-written, alias bomb, duplicate
key, unknown key); after each, the rejection is logged with its reason and an answer is still
judged under the revision that was in force, and a repaired file is finally taken.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest

from tests.conftest import FIXTURES, ROOT
from tests.e2e.conftest import ProxyFactory
from tests.e2e.support.proxy import GuardProxy
from tests.e2e.support.upstream import Upstream


def _events_from(proxy: GuardProxy, count: int) -> list[dict[str, Any]]:
    """The `count`-th and later `policy_rejected` events."""
    return proxy.events("policy_rejected")[count - 1:]

pytestmark = pytest.mark.e2e

URL = "https://autoconfig.policy-faults.contoso.com/mail/config-v1.1.xml"
DEFAULT = (ROOT / "policies" / "default.yaml").read_text()
ALIAS_BOMB = "x0: &x0 [a, a, a, a, a, a, a, a, a]\n" + "".join(
    f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 9) + "]\n" for i in range(1, 9))
BREAKAGES = [
    ("deleted", None, "cannot read policy"),
    ("half-written", DEFAULT[: DEFAULT.index("rules:") + 40], ""),
    ("alias-bomb", DEFAULT + ALIAS_BOMB, "aliases"),
    ("duplicate-key", DEFAULT + "mode: audit\n", "duplicate key 'mode'"),
    ("unknown-key", DEFAULT + "limitz: {}\n", "unknown key 'limitz'"),
]


def judged(proxy: GuardProxy) -> dict[str, Any]:
    before = len(proxy.decisions())
    response = proxy.session().get(URL, params={"emailaddress": "alice@contoso.com"}, timeout=20)
    assert b"contoso-sso.net" not in response.content  # still enforced: the foreign OAuth host is cut
    return proxy.last_decision(before)


def test_broken_policy_files_on_reload_leave_the_old_policy_in_force(guard_proxy: ProxyFactory,
                                                                       upstream: Upstream) -> None:
    upstream.add_route("autoconfig.policy-faults.contoso.com", "/mail/config-v1.1.xml",
                       body=(FIXTURES / "autoconfig__oauth2_foreign_authurl.xml").read_bytes(),
                       headers={"content-type": "application/xml"})
    proxy = guard_proxy(policy=DEFAULT)
    revision = judged(proxy)["policy_revision"]
    for count, (name, text, reason) in enumerate(BREAKAGES, start=1):
        if text is None:
            proxy.policy_path.unlink()
        else:
            proxy.policy_path.write_text(text)
        rejected = proxy.wait_for(functools.partial(_events_from, proxy, count), what=f"{name} rejected")
        assert len(rejected) == 1 and reason in rejected[0]["reason"], (name, rejected)
        assert rejected[0]["revision_in_force"] == revision
        line = judged(proxy)
        assert (line["action"], line["policy_revision"]) == ("rewrite", revision), name
    assert sum("policy change rejected" in line for line in proxy.output) == len(BREAKAGES)
    proxy.policy_path.write_text(DEFAULT.replace("foreign-host: rewrite", "foreign-host: block"))
    proxy.wait_for(lambda: [e for e in proxy.events("policy_reloaded") if e["revision"] != revision],
                   what="the repaired policy")
    assert judged(proxy)["action"] == "block"
