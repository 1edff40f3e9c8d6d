"""Policy files: the shipped ones load, and every mistake names file:line:column."""

from __future__ import annotations

from pathlib import Path

import pytest

from guard.errors import PolicyError
from guard.model import Action
from guard.policy import Mode, default_policy_path, load_policy, shipped_policy_dir
from guard.rules import RuleAction

SHIPPED = sorted(p.name for p in shipped_policy_dir().glob("*.yaml") if p.name != "providers.yaml")


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_policy_loads(name: str) -> None:
    policy = load_policy(shipped_policy_dir() / name)
    assert len(policy.revision) == 12
    assert policy.trust.entries


def test_shipped_policies_are_the_three_documented_ones() -> None:
    assert SHIPPED == ["audit.yaml", "default.yaml", "gateway.example.yaml"]


def test_default_policy_fails_closed_and_enforces() -> None:
    policy = load_policy(default_policy_path())
    assert policy.mode is Mode.ENFORCE
    assert policy.on_error is Action.BLOCK
    assert policy.action_for("malformed") is RuleAction.BLOCK
    assert policy.action_for("reserved-user-domain") is RuleAction.BLOCK


def test_audit_policy_is_audit_mode() -> None:
    assert load_policy(shipped_policy_dir() / "audit.yaml").mode is Mode.AUDIT


def _write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("mode: enforce\n", 1, "'version: 1' is required"),
        ("version: 1\nmdoe: audit\n", 2, "unknown key 'mdoe'"),
        ("version: 1\nmode: loud\n", 2, "expected one of: enforce, audit"),
        ("version: 1\nrules:\n  foreign-hots: block\n", 3, "unknown key 'foreign-hots'"),
        ("version: 1\nrules:\n  foreign-host: maybe\n", 3, "expected one of"),
        ("version: 1\non_error: ignore\n", 2, "expected 'block' or 'allow'"),
        ("version: 1\nlimits:\n  max_redirects: -1\n", 3, "integer"),
        ("version: 1\nallow:\n  - name: x\n    users: [a.com]\n", 3, "missing key 'hosts'"),
        ("version: 1\nallow:\n  - name: x\n    users: [a.com]\n    hosts: [com]\n", 5, "not a bare top-level"),
        ("version: 1\nallow:\n  - name: x\n    users: [a..com]\n    hosts: [b.com]\n", 4, "not a valid host"),
        ("version: 1\nproviders: [missing.yaml]\n", 2, "provider map not found"),
        ("version: 1\nrules:\n  reserved-user-domain: rewrite\n", 3, "cannot be 'rewrite'"),
        ("version: 1\nmx_evidence:\n  enabled: yes please\n", 3, "expected true or false"),
        ("version: 1\nmx_evidence:\n  timeout: 2\n", 3, "needs 'enabled: true'"),
        ("version: 1\nmx_evidence:\n  enabled: true\n  resolver: dns.google\n", 4, "must be an IP address"),
        ("version: 1\nmx_evidence:\n  enabled: true\n  timeout: 0\n", 4, "more than 0"),
        ("version: 1\nmx_evidence:\n  enabled: true\n  cache_size: 0\n", 4, "integer"),
        ("version: 1\nmx_evidence:\n  enabled: true\n  resolvers: 1.1.1.1\n", 4, "unknown key 'resolvers'"),
        ("version: 1\nlimits:\n  judge_ms: 0\n", 3, "integer"),
        ("version: 1\nlog:\n  required: sometimes\n", 3, "expected true or false"),
        ("version: 1\naudit:\n  enforce_credential_rules: 1\n", 3, "expected true or false"),
        ("version: 1\naudit:\n  enforce: true\n", 3, "unknown key 'enforce'"),
    ],
)
def test_policy_errors_name_the_line_and_the_problem(tmp_path: Path, text: str, line: int, reason: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert info.value.line == line, str(info.value)
    assert reason in str(info.value)
    assert str(info.value).startswith(f"{path}:{line}:")


def test_errors_inside_an_included_provider_map_name_that_file(tmp_path: Path) -> None:
    _write(tmp_path, "version: 1\nproviders:\n  - name: x\n    domains: [a.com]\n", "map.yaml")
    path = _write(tmp_path, "version: 1\nproviders: [map.yaml]\n")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert info.value.path.endswith("map.yaml")
    assert "missing key 'hosts'" in str(info.value)


def test_the_operations_keys_default_safe_and_the_gateway_example_requires_its_log(tmp_path: Path) -> None:
    bare = load_policy(_write(tmp_path, "version: 1\n"))
    assert (bare.limits.judge_ms, bare.log.required, bare.audit.enforce_credential_rules) == (500, False, True)
    assert load_policy(shipped_policy_dir() / "gateway.example.yaml").log.required is True


def test_a_policy_names_every_file_it_was_read_from(tmp_path: Path) -> None:
    _write(tmp_path, "version: 1\nproviders: []\n", "providers.yaml")
    policy = load_policy(_write(tmp_path, "version: 1\nproviders: [providers.yaml]\n"))
    assert policy.files == (str(tmp_path / "p.yaml"), str(tmp_path / "providers.yaml"))


def test_missing_policy_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read policy"):
        load_policy(tmp_path / "nope.yaml")


def test_revision_changes_when_an_included_map_changes(tmp_path: Path) -> None:
    map_path = _write(tmp_path, "version: 1\nproviders: []\n", "map.yaml")
    path = _write(tmp_path, "version: 1\nproviders: [map.yaml]\n")
    before = load_policy(path).revision
    map_path.write_text("version: 1\nproviders:\n  - {name: x, domains: [a.com], hosts: [b.com]}\n")
    assert load_policy(path).revision != before


def test_provider_db_folder_becomes_trust_entries(tmp_path: Path) -> None:
    db = tmp_path / "ispdb"
    db.mkdir()
    (db / "brand.xml").write_text(
        '<clientConfig version="1.1"><emailProvider id="brand.net">'
        "<domain>brand.net</domain><domain>brand-mail.de</domain>"
        '<incomingServer type="imap"><hostname>imap.brandhost.com</hostname><port>993</port>'
        "<socketType>SSL</socketType></incomingServer></emailProvider></clientConfig>"
    )
    (db / "broken.xml").write_text("<clientConfig")
    path = _write(tmp_path, "version: 1\nprovider_db: ispdb\n")
    policy = load_policy(path)
    assert policy.trust.vouch("brand-mail.de", "imap.brandhost.com") is not None
    assert policy.trust.vouch("other.de", "imap.brandhost.com") is None


def test_a_bare_off_in_rules_turns_the_rule_off(tmp_path: Path) -> None:
    # YAML 1.1 reads `off` as false; the docs write it bare
    policy = load_policy(_write(tmp_path, "version: 1\nrules:\n  plaintext: off\n  ip-literal: 'off'\n"))
    assert policy.action_for("plaintext") is RuleAction.OFF and policy.action_for("ip-literal") is RuleAction.OFF


def test_a_bare_on_in_rules_is_still_an_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"p\.yaml:3"):
        load_policy(_write(tmp_path, "version: 1\nrules:\n  plaintext: on\n"))


def test_mx_evidence_section_sets_resolver_timeout_and_cache(tmp_path: Path) -> None:
    path = _write(tmp_path, "version: 1\nmx_evidence:\n  enabled: true\n  resolver: 127.0.0.1:5300\n"
                            "  timeout: 0.5\n  cache_ttl: 60\n  cache_size: 10\n")
    mx = load_policy(path).mx
    assert mx is not None
    assert (mx.resolver, mx.timeout, mx.cache_ttl, mx.cache_size) == (
        ("127.0.0.1", 5300), 0.5, 60.0, 10)


def test_mx_evidence_is_off_unless_enabled(tmp_path: Path) -> None:
    assert load_policy(_write(tmp_path, "version: 1\n")).mx is None
    assert load_policy(_write(tmp_path, "version: 1\nmx_evidence:\n  enabled: false\n")).mx is None


def test_provider_map_mx_keys_are_read_and_matched_with_subdomains(tmp_path: Path) -> None:
    _write(tmp_path, "version: 1\nproviders:\n  - name: P\n    domains: [p.com]\n    hosts: [p.com]\n"
                     "    mx: [mx.p-relay.net]\n", "map.yaml")
    trust = load_policy(_write(tmp_path, "version: 1\nproviders: [map.yaml]\n")).trust
    assert trust.entries[0].mx == ("mx.p-relay.net",)
    vouched = trust.vouch_mx("in1.mx.p-relay.net", "imap.p.com")
    assert vouched is not None
    assert vouched.name == "P"
    assert trust.vouch_mx("in1.mx.p-relay.net", "imap.other.com") is None
