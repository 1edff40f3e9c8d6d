"""Judgement microbenchmarks: parse + normalise + rules per answer, per format, on one core."""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from guard.engine import judge
from guard.names import User
from guard.policy import Policy

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"

# (label, fixture, user): typical 2–4 KB answers per format, plus the seed incident
TYPICAL = [
    ("pox m365", "pox__benign_m365.xml", "carol@fabrikam.com"),
    ("pox on-prem", "pox__benign_onprem_exchange.xml", "alice@contoso.com"),
    ("pox seed", "pox__seed_example_com.xml", "email@example.com"),
    ("mobilesync", "mobilesync__benign_own_domain.xml", "alice@contoso.com"),
    ("soap", "soap__benign_own_domain.xml", "alice@contoso.com"),
    ("adv2", "adv2__benign_ews_own_domain.json", "alice@contoso.com"),
    ("autodetect seed", "autodetect__seed_example_com.json", "email@example.com"),
    ("autodetect m365", "autodetect__benign_m365_services.json", "carol@fabrikam.com"),
    ("autoconfig", "autoconfig__benign_own_domain.xml", "bob@northwind-traders.co.uk"),
    ("autoconfig seed", "autoconfig__seed_example_com.xml", "email@example.com"),
    ("srv", "srv__benign_imaps_own_domain.json", "alice@contoso.com"),
    ("mobileconfig", "mobileconfig__benign_own_domain.xml", "alice@contoso.com"),
]


def timings(fn: Callable[[], object], budget_s: float = 0.6, min_runs: int = 200, warm_up: int = 20) -> list[float]:
    """Per-call seconds for as many calls as fit in the budget (after `warm_up` calls)."""
    for _ in range(warm_up):
        fn()
    out: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(out) < min_runs or time.perf_counter() < deadline:
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def summarise(samples: list[float]) -> tuple[float, float, float]:
    """(median µs, p99 µs, calls per second)."""
    ordered = sorted(samples)
    median = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return median * 1e6, p99 * 1e6, 1 / median


_POX_HEAD = (
    b'<?xml version="1.0" encoding="utf-8"?>\n'
    b'<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">\n'
    b'<Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a">\n'
    b"<User><DisplayName>Alice</DisplayName></User>\n"
    b"<Account><AccountType>email</AccountType><Action>settings</Action>\n"
    b"<Protocol><Type>IMAP</Type><Server>imap.contoso.com</Server><Port>993</Port><SSL>on</SSL></Protocol>\n"
)
_POX_TAIL = b"</Account>\n</Response>\n</Autodiscover>\n"
_POX_UNIT = (b"<Protocol><Type>WEB</Type><External><OWAUrl AuthenticationMethod=\"Fba\">"
             b"https://mail.contoso.com/owa/</OWAUrl></External></Protocol>\n")


def large_pox(size: int) -> bytes:
    """A valid POX answer for alice@contoso.com padded with WEB protocols up to about `size` bytes
    (one suggestion per 130 bytes, all owned, so every one is judged in full)."""
    count = max(0, (size - len(_POX_HEAD) - len(_POX_TAIL)) // len(_POX_UNIT))
    return _POX_HEAD + _POX_UNIT * count + _POX_TAIL


def yardstick() -> float:
    """Median µs of `sum(range(100))`: how fast this machine is right now (~1 µs on a laptop)."""
    return summarise(timings(lambda: sum(range(100)), 0.2))[0]


def run(policy: Policy) -> list[tuple[str, int, float, float, float]]:
    """Rows of (label, bytes, median µs, p99 µs, judgements/s)."""
    rows = []
    for label, name, email in TYPICAL:
        body = (FIXTURES / name).read_bytes()
        user = User.from_address(email)
        rows.append((label, len(body), *summarise(timings(functools.partial(judge, body, user, policy)))))
    alice = User.from_address("alice@contoso.com")
    for size in (64 * 1024,):
        body = large_pox(size)
        judged = functools.partial(judge, body, alice, policy)
        rows.append((f"pox {size // 1024} KB", len(body), *summarise(timings(judged))))
    return rows
