"""Hostile answers through a real mitmdump: each is refused fast, with bounded memory, while others are served.

Two kinds of answer. *Documents* (entity bombs, external entities, deep nesting, compression
bombs, unsupported codings, odd encodings, wrong content types) are well-formed HTTP: the guard
reads them with its capped decoder and parsers and must block them (or judge them correctly)
within a second. *Wire faults* (60 MB by Content-Length or chunked, a never-ending chunked drip,
a truncated body) come from raw upstream writers: the proxy must stop reading at the 1 MiB cap
and give the client an error within a second of the cap being passed, not pass a byte of it.

For every case a benign discovery request runs at the same time and must succeed, and the peak
RSS of the mitmdump process (`VmHWM`) must stay within `PEAK_GROWTH_KIB` of its start-up peak.
The same documents are also given to the `autodiscover-guard check` CLI.
"""

from __future__ import annotations

import bz2
import gzip
import importlib
import json
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from guard.policy import Limits
from tests.conftest import FIXTURES, pox_request
from tests.e2e.conftest import ProxyFactory
from tests.e2e.support.procstat import memory_kib
from tests.e2e.support.proxy import GuardProxy
from tests.e2e.support.raw import RawAnswer, repeat
from tests.e2e.support.secrets import SWEEP, basic
from tests.e2e.support.upstream import Upstream

pytestmark = pytest.mark.e2e

POX_PATH = "/autodiscover/autodiscover.xml"
XML = {"content-type": "text/xml; charset=utf-8"}
CAP = 1024 * 1024  # the default policy's limits.max_body_bytes / max_decoded_bytes
MB60 = 60 * 1000 * 1000
JUDGE_BUDGET_US = Limits().judge_ms * 1000  # limits.judge_ms of the default policy; speed itself: `make bench`
PEAK_GROWTH_KIB = 64 * 1024  # measured 19 MiB (the br bomb); see docs/security.md
BENIGN = (FIXTURES / "pox__benign_onprem_exchange.xml").read_bytes()
SEED = (FIXTURES / "pox__seed_example_com.xml").read_bytes()
CREDENTIALS = XML | {"authorization": basic("alice@contoso.com")}  # the user's own host: forwarded
AUTODISCOVER_NS = b'xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"'


def _pox(inner: bytes, doctype: bytes = b"") -> bytes:
    return b'<?xml version="1.0" encoding="utf-8"?>' + doctype + b"<Autodiscover " + AUTODISCOVER_NS + b">" \
        + inner + b"</Autodiscover>"


def _billion_laughs() -> bytes:
    entities = b'<!ENTITY l0 "lol">' + b"".join(
        b'<!ENTITY l%d "%s">' % (i, b"".join([b"&l%d;" % (i - 1)] * 10)) for i in range(1, 10))
    return _pox(b"<Response>&l9;</Response>", b"<!DOCTYPE Autodiscover [" + entities + b"]>")


def _quadratic() -> bytes:
    entity = b'<!DOCTYPE Autodiscover [<!ENTITY a "' + b"A" * 50_000 + b'">]>'
    return _pox(b"<Response>" + b"&a;" * 20_000 + b"</Response>", entity)


def _compressor(module: str, *names: str) -> Callable[[bytes], bytes]:
    for name in (module, *names):
        try:
            found = importlib.import_module(name)
        except ImportError:
            continue
        if name == "zstandard":
            return lambda data: bytes(found.ZstdCompressor().compress(data))
        return lambda data: bytes(found.compress(data))
    raise ImportError(module)


BOMB = b" " * (64 * 1024 * 1024)
BROTLI = _compressor("brotli")
ZSTD = _compressor("compression.zstd", "backports.zstd", "zstandard")

# name → (body, extra headers); every one must be blocked as `malformed`
MALFORMED_DOCUMENTS: dict[str, tuple[bytes, dict[str, str]]] = {
    "billion-laughs": (_billion_laughs(), {}),
    "quadratic-blowup": (_quadratic(), {}),
    "external-entity": (_pox(b"<Response><User><DisplayName>&x;</DisplayName></User></Response>",
                             b'<!DOCTYPE Autodiscover [<!ENTITY x SYSTEM "file:///etc/passwd">]>'), {}),
    "external-dtd": (_pox(b"<Response/>", b'<!DOCTYPE Autodiscover SYSTEM "http://127.0.0.1:1/evil.dtd">'), {}),
    "deep-nesting-100k": (_pox(b"<a>" * 100_000 + b"</a>" * 100_000), {}),
    "invalid-utf8": (BENIGN.replace(b"<DisplayName>", b"<DisplayName>\xc3\x28\xff"), {}),
    "deflate-bomb": (zlib.compress(BOMB, 9), {"content-encoding": "deflate"}),
    "br-bomb": (BROTLI(BOMB), {"content-encoding": "br"}),
    "zstd-bomb": (ZSTD(BOMB), {"content-encoding": "zstd"}),
    "gzip-in-gzip-bomb": (gzip.compress(gzip.compress(BOMB)), {"content-encoding": "gzip, gzip"}),
    "unsupported-coding": (bz2.compress(SEED), {"content-encoding": "bzip2"}),
    "corrupt-gzip": (gzip.compress(SEED)[:-40] + b"\0" * 40, {"content-encoding": "gzip"}),
}

# judged, not refused: a readable answer in an odd dress must still lose its foreign hosts
DRESSED_DOCUMENTS: dict[str, tuple[bytes, dict[str, str]]] = {
    "utf16-with-bom": (SEED.decode("utf-8").replace('encoding="utf-8"', 'encoding="utf-16"').encode("utf-16"),
                       {"content-type": "text/xml; charset=utf-16"}),
    "wrong-content-type": (SEED, {"content-type": "image/png"}),
    "no-content-type": (SEED, {"content-type": ""}),
}


def _big_json() -> Callable[[], Iterator[bytes]]:
    return repeat(b'{"Protocol": "AutodiscoverV1", "Url": "https://' + b"x" * 65_000 + b'.example.net"},', MB60)


# name → how to build a fresh raw answer; every one must end in an error for the client
WIRE_FAULTS: dict[str, Callable[[], RawAnswer]] = {
    # the announced length passes the cap: the proxy may hang up before a single body byte leaves
    "60MB-json-by-content-length": lambda: RawAnswer({"content-type": "application/json"}, _big_json(),
                                                     content_length=MB60, mark=-1),
    "60MB-json-chunked": lambda: RawAnswer({"content-type": "application/json"}, _big_json(), mark=CAP),
    "never-ending-chunked-drip": lambda: RawAnswer(XML, repeat(b"<a>" * 10_000, None), delay=0.005, mark=CAP),
    "truncated-body": lambda: RawAnswer(XML, repeat(BENIGN, 1000), content_length=len(BENIGN) + 4000,
                                        ending="close", mark=999),
}


def _host(case: str) -> str:
    return f"autodiscover.{case.lower()}.hostile.contoso.com"


@pytest.fixture(scope="module")
def proxy(make_guard_proxy: ProxyFactory, upstream: Upstream) -> Iterator[GuardProxy]:
    for case, (body, headers) in (MALFORMED_DOCUMENTS | DRESSED_DOCUMENTS).items():
        upstream.add_route(_host(case), POX_PATH, body=body, headers={k: v for k, v in (XML | headers).items() if v})
    upstream.add_route("autodiscover.contoso.com", POX_PATH, body=BENIGN, headers=XML)
    started = make_guard_proxy()
    benign(started)  # warm up: imports, TLS, certificate generation
    yield started
    started.stop()


@pytest.fixture(scope="module")
def start_peak(proxy: GuardProxy) -> int:
    return memory_kib(proxy.process.pid, "VmHWM")


def benign(proxy: GuardProxy) -> requests.Response:
    response = proxy.session().post(f"https://autodiscover.contoso.com{POX_PATH}",
                                    data=pox_request("alice@contoso.com"), headers=CREDENTIALS, timeout=20)
    assert response.status_code == 200 and response.content == BENIGN
    return response


@dataclass
class Outcome:
    response: requests.Response | None
    error: Exception | None
    ended: float


def hostile(proxy: GuardProxy, case: str) -> Outcome:
    try:
        response = proxy.session().post(f"https://{_host(case)}{POX_PATH}", data=pox_request("alice@contoso.com"),
                                        headers=CREDENTIALS, timeout=20)
        return Outcome(response, None, time.monotonic())
    except requests.RequestException as exc:
        return Outcome(None, exc, time.monotonic())


def decision_for(proxy: GuardProxy, case: str) -> dict[str, object]:
    found = proxy.wait_for(lambda: [d for d in proxy.decisions() if _host(case) in d["url"]],
                           what=f"the decision for {case}")
    assert len(found) == 1, found
    return dict(found[0])


def alongside(proxy: GuardProxy, case: str, started: Callable[[], bool] = lambda: True) -> Outcome:
    """Send the hostile request; once `started()`, serve a benign one meanwhile (it must succeed)."""
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(hostile, proxy, case)
        deadline = time.monotonic() + 10
        while not started() and time.monotonic() < deadline:
            time.sleep(0.01)
        benign(proxy)
        return pending.result(timeout=30)


@pytest.mark.parametrize("case", sorted(MALFORMED_DOCUMENTS))
def test_a_hostile_document_is_blocked_as_malformed(proxy: GuardProxy, start_peak: int, case: str) -> None:
    outcome = alongside(proxy, case)
    assert outcome.response is not None, outcome.error
    assert b"<ErrorCode>500</ErrorCode>" in outcome.response.content  # POX's own block answer
    line = decision_for(proxy, case)
    assert (line["action"], line["rules"]) == ("block", ["malformed"])
    assert int(str(line["latency_us"])) <= JUDGE_BUDGET_US  # the guard's own account, against the budget it enforces
    assert memory_kib(proxy.process.pid, "VmHWM") - start_peak < PEAK_GROWTH_KIB


@pytest.mark.parametrize("case", sorted(DRESSED_DOCUMENTS))
def test_a_readable_answer_in_an_odd_dress_still_loses_its_foreign_hosts(proxy: GuardProxy, case: str) -> None:
    outcome = alongside(proxy, case)
    assert outcome.response is not None, outcome.error
    content = outcome.response.content
    assert b"jnet" not in content and "jnet".encode("utf-16-le") not in content
    line = decision_for(proxy, case)
    assert line["action"] in ("rewrite", "block") and int(str(line["latency_us"])) <= JUDGE_BUDGET_US


@pytest.mark.parametrize("case", sorted(WIRE_FAULTS))
def test_a_wire_fault_ends_in_an_error_near_the_cap(proxy: GuardProxy, upstream: Upstream, start_peak: int,
                                                          case: str) -> None:
    answer = WIRE_FAULTS[case]()
    upstream.add_raw_route(_host(case), POX_PATH, answer)
    outcome = alongside(proxy, case, started=lambda: answer.sent > 0 or answer.passed_mark is not None)
    if outcome.response is not None:  # mitmproxy's own error page, never the upstream body
        assert outcome.response.status_code == 502, outcome.response.content[:200]
    assert answer.passed_mark is not None
    assert answer.finished.wait(5), "the proxy kept reading the answer"
    # the proxy hung up near the cap; what went beyond it sat in loopback socket buffers (autotuned, MiBs)
    assert answer.sent < 24 * CAP
    line = decision_for(proxy, case)
    assert (line["action"], line["rules"]) in (("block", ["malformed"]), ("error", []))
    assert memory_kib(proxy.process.pid, "VmHWM") - start_peak < PEAK_GROWTH_KIB


def test_the_cli_refuses_the_same_documents(tmp_path: Path) -> None:
    files = []
    for case, (body, headers) in MALFORMED_DOCUMENTS.items():
        if "content-encoding" in headers:
            continue  # the CLI reads files, not HTTP: nothing to undo
        files.append(tmp_path / f"{case}.xml")
        files[-1].write_bytes(body)
    result = subprocess.run([sys.executable, "-m", "guard.cli", "check", "--email", "alice@contoso.com", "--json",
                             *map(str, files)], capture_output=True, text=True, timeout=60, check=False)
    SWEEP.watch_text("autodiscover-guard check", result.stdout + result.stderr)
    assert result.returncode == 1, result.stderr
    verdicts = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(verdicts) == len(files)
    assert all((v["action"], [f["rule"] for f in v["findings"]]) == ("block", ["malformed"]) for v in verdicts)
