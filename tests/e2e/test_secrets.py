"""No secret in a URL reaches any output; the sweep can fail, and every guard proxy is registered with it."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote_plus

import pytest

from tests.conftest import FIXTURES
from tests.e2e.conftest import ProxyFactory
from tests.e2e.support.secrets import PASSWORD, QUERY_SECRETS, SWEEP, TOKEN, Sweep, bearer, secret_url
from tests.e2e.support.upstream import Upstream

pytestmark = pytest.mark.e2e

HOST = "autoconfig.secrets.northwind-traders.co.uk"


@pytest.mark.parametrize("planted", ["basic", "password", "form-encoded", "bearer", *QUERY_SECRETS])
def test_the_sweep_finds_a_planted_credential(tmp_path: Path, planted: str) -> None:
    sweep = Sweep()
    value = {"basic": sweep.basic("bob@contoso.com").split()[1], "password": PASSWORD,
             "form-encoded": quote_plus(PASSWORD), "bearer": bearer(), **QUERY_SECRETS}[planted]
    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / "deep" / "er" / "decisions.jsonl").write_text('{"event": "decision"}\n{"url": "' + value + '"}\n')
    sweep.watch_path(tmp_path)
    leaks = sweep.leaks()
    assert leaks and all(leak.startswith(str(tmp_path / "deep" / "er" / "decisions.jsonl")) for leak in leaks)
    assert PASSWORD not in "".join(leaks) and TOKEN not in "".join(leaks)  # the report names, never repeats


def test_the_sweep_reads_outputs_and_passes_clean_ones(tmp_path: Path) -> None:
    sweep = Sweep()
    (tmp_path / "clean.jsonl").write_text('{"url": "https://autodiscover.contoso.com/?password=REDACTED"}\n')
    sweep.watch_path(tmp_path)
    sweep.watch_path(Path("/dev/full"))  # a device is not read
    output: list[str] = ["listening"]
    sweep.watch_text("mitmdump output", lambda: "\n".join(output))
    assert sweep.leaks() == []
    output.append(f"Authorization: {sweep.basic('carol@contoso.com')}")  # read at the end, not when watched
    assert sweep.leaks() == ["mitmdump output: the Basic token of carol@contoso.com"]


def test_every_guard_proxy_is_swept(guard_proxy: ProxyFactory) -> None:
    proxy = guard_proxy()
    assert proxy.log_path in SWEEP.paths or proxy.log_path.parent in SWEEP.paths
    assert any(name.startswith("mitmdump output") for name, _ in SWEEP.texts)


def test_no_url_secret_reaches_the_log_or_the_console(guard_proxy: ProxyFactory, upstream: Upstream) -> None:
    upstream.add_route(HOST, "*", body=(FIXTURES / "autoconfig__benign_own_domain.xml").read_bytes(),
                       headers={"content-type": "application/xml"})
    proxy = guard_proxy(options={"guard_console": "true"})
    url = secret_url(f"https://{HOST}", "/mail/config-v1.1.xml") + "&emailaddress=alice@northwind-traders.co.uk"
    assert proxy.curl(url, "-o", "/dev/null", "-w", "%{http_code}").stdout == "200"
    line = proxy.last_decision(0)
    keys = "&".join(f"{key}=REDACTED" for key in QUERY_SECRETS)
    assert line["url"] == (f"https://{HOST}/mail/REDACTED/config-v1.1.xml;password=REDACTED"
                           f"?{keys}&emailaddress=REDACTED")  # the request was logged, masked
    proxy.wait_for(lambda: any(HOST in out and "autodiscover-guard:" in out for out in proxy.output),
                   what="the console line")
    sweep = Sweep()
    sweep.watch_path(proxy.log_path.parent)
    sweep.watch_text("mitmdump output", "\n".join(proxy.output))
    assert sweep.leaks() == []
