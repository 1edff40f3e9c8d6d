"""How judgement cost grows: with answer size, provider-map size, allowlist size, suggestion count."""

from __future__ import annotations

import functools
from pathlib import Path

from bench.judgement import large_pox, summarise, timings
from guard.engine import judge
from guard.names import User
from guard.policy import load_policy

ALICE = User.from_address("alice@contoso.com")


def by_size(policy_path: Path) -> list[tuple[int, int, float]]:
    """(answer bytes, suggestions, median µs) from 1 KB to 256 KB."""
    policy = load_policy(policy_path)
    bodies = [large_pox(kib * 1024) for kib in (1, 4, 16, 64, 256)]
    samples: list[list[float]] = [[] for _ in bodies]
    for _ in range(5):  # interleaved, so a noisy moment hits every size alike
        for index, body in enumerate(bodies):
            samples[index] += timings(functools.partial(judge, body, ALICE, policy), 0.08, 4, warm_up=2)
    return [(len(body), len(judge(body, ALICE, policy).suggestions), summarise(found)[0])
            for body, found in zip(bodies, samples, strict=True)]


def _policy_with(folder: Path, providers: int, allow: int) -> Path:
    """A policy with `providers` provider-map entries and `allow` allowlist entries (none matching)."""
    lines = ["version: 1", "providers:"]
    for i in range(providers):
        lines.append(f"  - {{name: p{i}, domains: [brand{i}.*, d{i}.example-isp.net], hosts: [mail{i}.provider.net]}}")
    (folder / f"map{providers}.yaml").write_text("\n".join(lines if providers else ["version: 1", "providers: []"]))
    policy = [f"version: 1\nproviders: [map{providers}.yaml]\nallow:"]
    policy += [f"  - {{name: a{i}, users: [u{i}.corp.example], hosts: [h{i}.hoster.example]}}" for i in range(allow)]
    if not allow:
        policy = [f"version: 1\nproviders: [map{providers}.yaml]"]
    path = folder / f"policy-{providers}-{allow}.yaml"
    path.write_text("\n".join(policy) + "\n")
    return path


def by_trust_size(folder: Path, body: bytes) -> list[tuple[int, int, float]]:
    """(provider entries, allowlist entries, median µs) for one foreign-host-heavy answer."""
    sizes = ((10, 0), (1000, 0), (10_000, 0), (0, 10), (0, 10_000))
    policies = [load_policy(_policy_with(folder, providers, allow)) for providers, allow in sizes]
    samples: list[list[float]] = [[] for _ in sizes]
    for _ in range(5):  # interleaved, so a noisy moment hits every size alike
        for index, policy in enumerate(policies):
            samples[index] += timings(functools.partial(judge, body, ALICE, policy), 0.08, 10)
    return [(providers, allow, summarise(found)[0]) for (providers, allow), found in zip(sizes, samples, strict=True)]


def by_suggestions(policy_path: Path) -> list[tuple[int, float]]:
    """(suggestions in the answer, median µs per suggestion)."""
    policy = load_policy(policy_path)
    rows = []
    for count in (2, 8, 32, 128):
        servers = "".join(
            f'<incomingServer type="imap"><hostname>imap{i}.contoso.com</hostname><port>993</port>'
            f"<socketType>SSL</socketType><username>%EMAILADDRESS%</username></incomingServer>"
            for i in range(count - 1)
        )
        body = (f'<clientConfig version="1.1"><emailProvider id="contoso.com"><domain>contoso.com</domain>{servers}'
                '<outgoingServer type="smtp"><hostname>smtp.contoso.com</hostname><port>465</port>'
                "<socketType>SSL</socketType></outgoingServer></emailProvider></clientConfig>").encode()
        median = summarise(timings(functools.partial(judge, body, ALICE, policy), 0.4, 50))[0]
        rows.append((count, median / count))
    return rows
