"""Judging a folder of clientConfig files (ISPDB layout) as each listed domain's user receives it.

The file's own `<domain>` list says who asks, never who owns: each listed domain becomes a user
`postmaster@<domain>` and the file is judged for that user under the policy, exactly as the
ISPDB would serve it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from guard.engine import judge
from guard.errors import UntrustedInputError
from guard.formats import by_name
from guard.formats._xml import kid, kids, read_xml, text
from guard.model import Action, Role
from guard.names import InvalidHost, User, target_of
from guard.policy import Policy
from guard.rules import RuleAction


@dataclass(frozen=True, slots=True)
class Flagged:
    """One (provider, domain, host) the policy would act on, with the rules that fired."""

    provider: str
    domain: str
    host: str
    rules: tuple[str, ...]


@dataclass(slots=True)
class CorpusSummary:
    """Counts over the whole folder."""

    providers: int = 0
    domains: int = 0
    pairs: int = 0
    flagged: list[Flagged] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    @property
    def flagged_providers(self) -> int:
        """Providers with at least one flagged pair."""
        return len({f.provider for f in self.flagged})

    @property
    def flagged_rate(self) -> float:
        """Flagged pairs over all pairs."""
        return len(self.flagged) / self.pairs if self.pairs else 0.0

    def as_dict(self) -> dict[str, object]:
        """The summary line of `corpus --json`."""
        return {
            "providers": self.providers,
            "domains": self.domains,
            "pairs": self.pairs,
            "flagged_pairs": len(self.flagged),
            "flagged_rate": round(self.flagged_rate, 4),
            "flagged_providers": self.flagged_providers,
        }


def claimed_domains(body: bytes) -> list[str]:
    """The `<domain>` entries of a clientConfig file (who asks), raw; [] when unreadable."""
    try:
        root = read_xml(body)
    except UntrustedInputError:
        return []
    provider = kid(root, "emailprovider")
    if provider is None:
        return []
    return [domain for domain in (text(d).strip() for d in kids(provider, "domain")) if domain]


def judge_folder(folder: Path, policy: Policy) -> Iterator[tuple[str, CorpusSummary, list[Flagged]]]:
    """Yield `(file name, running summary, newly flagged)` per file, for progress reporting."""
    summary = CorpusSummary()
    fmt = by_name("autoconfig")
    for path in sorted(folder.glob("*.xml")):
        body = path.read_bytes()
        domains = claimed_domains(body)
        if not domains:
            summary.unreadable.append(path.name)
            yield path.name, summary, []
            continue
        summary.providers += 1
        provider = path.name.removesuffix(".xml")
        new: list[Flagged] = []
        for domain in domains:
            try:
                user = User.from_address(f"postmaster@{domain}")
            except InvalidHost:
                summary.unreadable.append(f"{path.name}: {domain}")
                continue
            summary.domains += 1
            decision = judge(body, user, policy, fmt=fmt)
            hosts: dict[str, list[str]] = {}
            for suggestion in decision.suggestions:
                if suggestion.role is Role.INFO:  # help links are not (domain, server host) pairs
                    continue
                try:
                    hosts.setdefault(target_of(suggestion, user).host, [])
                except InvalidHost:
                    hosts.setdefault(suggestion.value.strip(), [])
            for finding in decision.findings:
                if policy.action_for(finding.rule) in (RuleAction.REWRITE, RuleAction.BLOCK):
                    hosts.setdefault(finding.host or "(document)", []).append(finding.rule)
            if decision.action is Action.BLOCK and not any(hosts.values()):
                hosts.setdefault("(document)", []).append("malformed")
            summary.pairs += len(hosts)
            for host, fired in hosts.items():
                if fired:
                    new.append(Flagged(provider, user.domain, host, tuple(dict.fromkeys(fired))))
        summary.flagged.extend(new)
        yield path.name, summary, new
