"""Upstream faults through a real mitmdump: the client gets a prompt error, the flow is logged, the proxy stays up.

mitmproxy cannot kill a flow in transit (mitmproxy issue 4711), so an upstream that goes silent
or drips slowly is bounded by the client's own timeout: the test client gives up after
`CLIENT_TIMEOUT`, and the guard must still log the flow and keep serving.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.conftest import FIXTURES
from tests.e2e.conftest import ProxyFactory
from tests.e2e.support.proxy import GuardProxy
from tests.e2e.support.raw import RawAnswer, repeat
from tests.e2e.support.secrets import bearer
from tests.e2e.support.upstream import Upstream

pytestmark = pytest.mark.e2e

POX_PATH = "/autodiscover/autodiscover.xml"
XML = {"content-type": "text/xml; charset=utf-8"}
BENIGN = (FIXTURES / "pox__benign_onprem_exchange.xml").read_bytes()
CLIENT_TIMEOUT = 1.5
PROMPT = 1.0  # seconds within which a fault the proxy can see must reach the client


def silent(seconds: float) -> Callable[[socket.socket], None]:
    """An upstream that accepts the request and then says nothing."""
    return lambda _sock: time.sleep(seconds)


@pytest.fixture(scope="module")
def proxy(make_guard_proxy: ProxyFactory, upstream: Upstream) -> Iterator[GuardProxy]:
    upstream.add_route("autodiscover.contoso.com", POX_PATH, body=BENIGN, headers=XML)
    upstream.add_route("autodiscover.unavailable.faults.contoso.com", POX_PATH, status=503,
                       headers={"content-type": "text/plain"}, body=b"try later\n")
    upstream.add_route("autodiscover.bad-cert.faults.contoso.com", POX_PATH, body=BENIGN, headers=XML)
    upstream.distrust("autodiscover.bad-cert.faults.contoso.com")
    upstream.add_raw_route("autodiscover.reset.faults.contoso.com", POX_PATH,
                           RawAnswer(XML, repeat(BENIGN, 1000), content_length=len(BENIGN), ending="reset"))
    upstream.add_raw_route("autodiscover.silent.faults.contoso.com", POX_PATH, silent(4 * CLIENT_TIMEOUT))
    upstream.add_raw_route("autodiscover.slow-drip.faults.contoso.com", POX_PATH,
                           RawAnswer(XML, repeat(BENIGN[:50], 50 * 40), content_length=len(BENIGN), delay=0.2))
    started = make_guard_proxy()
    yield started
    started.stop()


def ask(proxy: GuardProxy, url: str) -> tuple[requests.Response | Exception, float]:
    began = time.monotonic()
    try:
        result: requests.Response | Exception = proxy.session().post(
            url, data=b"<Autodiscover/>", headers=XML | {"X-Email": "alice@contoso.com", "authorization": bearer()},
            timeout=CLIENT_TIMEOUT)
    except requests.RequestException as exc:
        result = exc
    return result, time.monotonic() - began


def still_serving(proxy: GuardProxy) -> None:
    assert proxy.process.poll() is None
    response = proxy.session().post(f"https://autodiscover.contoso.com{POX_PATH}", data=b"<Autodiscover/>",
                                    headers=XML | {"X-Email": "alice@contoso.com"}, timeout=20)
    assert response.status_code == 200 and response.content == BENIGN


def logged(proxy: GuardProxy, host: str, timeout: float = 10.0) -> dict[str, Any]:
    found = proxy.wait_for(lambda: [d for d in proxy.decisions() if f"//{host}" in d["url"]], timeout=timeout,
                           what=f"the decision for {host}")
    assert len(found) == 1, found
    return dict(found[0])


@pytest.mark.parametrize(("case", "url", "why"), [
    ("connection-refused", "https://autodiscover.refused.faults.contoso.com:1" + POX_PATH, "errno 111"),
    ("tls-untrusted-certificate", "https://autodiscover.bad-cert.faults.contoso.com" + POX_PATH, "certificate"),
    ("tls-handshake-failure", "https://autodiscover.plain.faults.contoso.com:80" + POX_PATH, "tls"),
    ("reset-mid-response", "https://autodiscover.reset.faults.contoso.com" + POX_PATH, ""),
])
def test_a_failing_upstream_gives_a_prompt_502_and_a_logged_error(proxy: GuardProxy, case: str, url: str,
                                                                  why: str) -> None:
    result, took = ask(proxy, url)
    assert isinstance(result, requests.Response), result
    assert result.status_code == 502 and took < PROMPT
    assert BENIGN not in result.content
    line = logged(proxy, urlsplit(url).hostname or "")
    assert line["action"] == line["would_action"] == "error" and line["rules"] == []  # nothing judged, nothing allowed
    assert line["notes"][0].startswith("no answer: ") and why in line["notes"][0].lower()
    still_serving(proxy)


def test_a_5xx_answer_is_passed_and_logged_as_unjudged(proxy: GuardProxy) -> None:
    result, took = ask(proxy, f"https://autodiscover.unavailable.faults.contoso.com{POX_PATH}")
    assert isinstance(result, requests.Response) and result.status_code == 503 and took < PROMPT
    line = logged(proxy, "autodiscover.unavailable.faults.contoso.com")
    assert (line["status"], line["notes"]) == (503, ["HTTP 503: no answer to judge"])
    still_serving(proxy)


@pytest.mark.parametrize("host", ["autodiscover.silent.faults.contoso.com",
                                  "autodiscover.slow-drip.faults.contoso.com"])
def test_an_upstream_too_slow_for_the_client_is_logged_when_the_client_gives_up(proxy: GuardProxy,
                                                                                 host: str) -> None:
    result, took = ask(proxy, f"https://{host}{POX_PATH}")
    assert isinstance(result, requests.Timeout) and took < CLIENT_TIMEOUT + PROMPT
    still_serving(proxy)  # meanwhile
    line = logged(proxy, host)
    assert line["notes"][0].startswith("no answer: ")
