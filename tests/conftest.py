"""Shared test helpers: fixture paths, the shipped policies, and the fixture index table."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from guard.formats._xml import Span, element_spans
from guard.model import Suggestion
from guard.policy import Policy, load_policy
from guard.pseudonym import ENV_FILE
from tests.e2e.support.nsd import Nsd, nsd_binary, start_nsd

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED = ROOT.parent / "shared"

settings.register_profile("default", max_examples=100, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=int(os.environ.get("FUZZ_EXAMPLES", "20000")), deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True)
def _pseudonym_key_outside_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test (nor a mitmdump it starts) creates a pseudonym key in the real home; a test may name another."""
    if not os.environ.get(ENV_FILE):
        monkeypatch.setenv(ENV_FILE, str(tmp_path_factory.getbasetemp() / "pseudonym.key"))


def pox_request(address: str) -> bytes:
    """The POX request body Outlook sends for `address` (Outlook response schema 2006a)."""
    return (
        '<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/'
        f'autodiscover/outlook/requestschema/2006"><Request><EMailAddress>{address}</EMailAddress>'
        "<AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
        "</AcceptableResponseSchema></Request></Autodiscover>"
    ).encode()


def unit_span(body: bytes, suggestion: Suggestion, *, allow_doctype: bool = False) -> Span:
    """Byte span of the element an XML suggestion's locator (a document-order ordinal) names."""
    return element_spans(body, allow_doctype=allow_doctype)[int(suggestion.locator[0])]


def examples(usual: int) -> int:
    """`max_examples` for a property that wants more than the default profile: `usual`, or the
    loaded profile's count when that is higher (`make fuzz`)."""
    default = settings.default
    return max(usual, default.max_examples) if default is not None else usual


@dataclass(frozen=True)
class IndexedFixture:
    """One row of tests/fixtures/INDEX.md."""

    file: str
    user: str
    verdict: str  # allow | violation
    rules: tuple[str, ...]

    @property
    def path(self) -> Path:
        return FIXTURES / self.file

    @property
    def format(self) -> str:
        return self.file.split("__", 1)[0]


_ROW = re.compile(r"^\| (\S+\.(?:xml|json)) \| (\S+@\S+) \| ([^|]+) \|")


def indexed_fixtures() -> list[IndexedFixture]:
    """Parse the expected verdicts from the fixture index (the copy under tests/fixtures)."""
    rows = []
    for line in (FIXTURES / "INDEX.md").read_text(encoding="utf-8").splitlines():
        match = _ROW.match(line)
        if not match:
            continue
        file, user, expected = match.groups()
        expected = expected.strip()
        if expected.startswith("allow"):
            rows.append(IndexedFixture(file, user, "allow", ()))
        else:
            rules = tuple(r.strip() for r in expected.removeprefix("violation:").split(","))
            rows.append(IndexedFixture(file, user, "violation", rules))
    return rows


@pytest.fixture(scope="session")
def default_policy() -> Policy:
    return load_policy(ROOT / "policies" / "default.yaml")


@pytest.fixture(scope="session")
def nsd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nsd]:
    """A real NSD on loopback serving tests/fixtures/dns (skips without `nsd`, except under CI=true)."""
    if nsd_binary() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nsd is not installed (.ci/run installs it)")
        pytest.skip("nsd is not installed (apt-get install nsd)")
    server = start_nsd(tmp_path_factory.mktemp("nsd"))
    yield server
    server.stop()
