"""Thunderbird's own clientConfig reader as a differential oracle (issue 17).

Stock Thunderbird reads an autoconfig answer with `JXON.build` over the parsed XML document, then
`readFromXML` (resource:///modules/accountcreation/readFromXML.sys.mjs) — the same two steps its
network fetch (FetchHTTP, `responseXML`) and its ISPDB lookup take. Every hostname that reader
extracts (incoming, outgoing, and their alternatives) must be a host the guard judged for the same
bytes, or the guard must refuse the document: one reading or none.

One Thunderbird serves the module (support/thunderbird.py, no proxy: nothing here touches the
network), and every document goes to it in a single Marionette call.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from guard.formats import by_name
from guard.names import User
from tests.conftest import FIXTURES, indexed_fixtures
from tests.e2e.support.thunderbird import Thunderbird, require_thunderbird
from tests.oracles import guard_hosts, host_key

pytestmark = pytest.mark.e2e

AUTOCONFIG = by_name("autoconfig")
BENIGN = Path(__file__).resolve().parents[1] / "benign"
BENIGN_USER = "alice@contoso.com"


@dataclass(frozen=True)
class Document:
    """One autoconfig answer and the address it is judged for."""

    path: Path
    user: str

    @property
    def name(self) -> str:
        return self.path.relative_to(FIXTURES.parent).as_posix()


DOCUMENTS = [Document(case.path, case.user) for case in indexed_fixtures() if case.format == "autoconfig"] + [
    Document(path, BENIGN_USER) for path in sorted(BENIGN.glob("*autoconfig*"))]

# Bytes in (as the network hands them to `responseXML`: the XML declaration picks the encoding),
# the raw hostnames readFromXML extracted out, or the error it threw.
_READ_ALL_JS = """
const [documents, done] = [arguments[0], arguments[arguments.length - 1]];
const { JXON } = ChromeUtils.importESModule("resource:///modules/JXON.sys.mjs");
const { readFromXML } = ChromeUtils.importESModule("resource:///modules/accountcreation/readFromXML.sys.mjs");
const parser = new DOMParser();
const read = encoded => {
  const bytes = Uint8Array.from(atob(encoded), c => c.charCodeAt(0));
  try {
    const config = readFromXML(JXON.build(parser.parseFromBuffer(bytes, "text/xml")), "disk");
    const servers = [config.incoming, ...config.incomingAlternatives, config.outgoing, ...config.outgoingAlternatives];
    return { hosts: servers.filter(s => s && s.hostname).map(s => s.hostname), error: "" };
  } catch (e) {
    return { hosts: [], error: String((e && e.message) || e) || "refused" };
  }
};
done(documents.map(read));
"""


@dataclass(frozen=True)
class Reading:
    """What Thunderbird's reader made of one document: raw hostnames, or the error it threw."""

    hosts: tuple[str, ...]
    error: str


@pytest.fixture(scope="module")
def thunderbird(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Thunderbird]:
    require_thunderbird()
    client = Thunderbird(tmp_path_factory.mktemp("thunderbird-oracle"), {}, {})
    yield client
    client.close()


@pytest.fixture(scope="module")
def readings(thunderbird: Thunderbird) -> Mapping[str, Reading]:
    encoded = [base64.b64encode(document.path.read_bytes()).decode("ascii") for document in DOCUMENTS]
    found: list[dict[str, Any]] = thunderbird.client.execute_async_script(
        _READ_ALL_JS, script_args=[encoded], script_timeout=60_000)
    return {document.name: Reading(tuple(r["hosts"]), r["error"]) for document, r in zip(DOCUMENTS, found, strict=True)}


def _resolved(hostname: str, user: User) -> str:
    """A hostname with Thunderbird's placeholders filled in (AccountConfig.replaceVariables), as the guard names it."""
    for placeholder, value in (("%EMAILADDRESS%", user.address), ("%EMAILLOCALPART%", user.local),
                               ("%EMAILDOMAIN%", user.domain)):
        hostname = hostname.replace(placeholder, value)
    return host_key(hostname)


def test_the_module_reads_every_autoconfig_fixture_and_benign_answer() -> None:
    assert len(DOCUMENTS) >= 10 and all(d.path.is_file() for d in DOCUMENTS)


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: d.name)
def test_every_host_thunderbird_reads_from_an_autoconfig_answer_is_judged_or_refused(
        document: Document, readings: Mapping[str, Reading]) -> None:
    reading = readings[document.name]
    user = User.from_address(document.user)
    guard = guard_hosts(AUTOCONFIG, document.path.read_bytes(), user)
    if guard is None or reading.error:
        return  # one reader refuses: nothing reaches a client through the guard from this document
    thunderbird = {_resolved(host, user) for host in reading.hosts}
    assert thunderbird <= guard, (thunderbird - guard, reading)


@pytest.mark.parametrize("document", [d for d in DOCUMENTS if d.path.parent == BENIGN], ids=lambda d: d.name)
def test_thunderbird_configures_from_every_benign_autoconfig_answer(document: Document,
                                                                     readings: Mapping[str, Reading]) -> None:
    reading = readings[document.name]
    assert reading.hosts and not reading.error, reading
