"""Policies: YAML files parsed once into frozen, typed objects.

No raw dict travels past this module. Every error names `file:line:column` and what is wrong;
unknown keys, duplicate keys and YAML aliases are errors, because a typo in a security policy
must never silently mean "default".
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from guard._yaml import Located, integer, items, load_located, mapping, string, strings
from guard.errors import GuardError, PolicyError
from guard.model import Action
from guard.mx import MxSettings, parse_resolver
from guard.names import InvalidHost, normalise_host
from guard.ownership import Trust, TrustEntry
from guard.rules.catalogue import DEFAULT_ACTIONS, RULES, RuleAction
from guard.suffixwarn import warn_public_suffix_hosts

POLICY_VERSION = 1

class Mode(StrEnum):
    """Enforce changes answers; audit only logs what enforce would have done."""

    ENFORCE = "enforce"
    AUDIT = "audit"


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps on what the guard reads from the network (see docs/policy.md for the rationale)."""

    max_body_bytes: int = 1024 * 1024  # wire bytes of one answer (and of a request body read)
    max_decoded_bytes: int = 1024 * 1024  # after Content-Encoding; stops decompression bombs
    max_redirects: int = 10  # MS-OXDSCLI: clients "should stop redirecting after 10 redirects"
    judge_ms: int = 500  # time budget to judge one answer; over it the answer is `malformed` (too costly)


@dataclass(frozen=True, slots=True)
class LogSettings:
    """What the decision log may reveal."""

    hash_local_part: bool = True
    required: bool = False  # the log cannot be written: refuse discovery flows rather than judge unrecorded


@dataclass(frozen=True, slots=True)
class AuditSettings:
    """What audit mode still enforces (docs/audit.md)."""

    enforce_credential_rules: bool = True  # `discovery-tld`, `credential-leak`: the only cost is a password


@dataclass(frozen=True, slots=True)
class Pinning:
    """Configuration pinning (docs/pinning.md): off unless the policy turns it on."""

    enabled: bool = False
    store: str = ""  # SQLite file; relative paths resolve against the policy file's folder
    pinned: frozenset[str] = frozenset()  # user domains whose changed answers are blocked, not warned


@dataclass(frozen=True, slots=True)
class Policy:
    """A loaded policy: the one object rules and adapters consult."""

    path: str
    revision: str
    mode: Mode = Mode.ENFORCE
    on_error: Action = Action.BLOCK
    actions: Mapping[str, RuleAction] = field(default_factory=lambda: DEFAULT_ACTIONS)
    trust: Trust = field(default_factory=Trust)
    limits: Limits = field(default_factory=Limits)
    log: LogSettings = field(default_factory=LogSettings)
    discovery_hosts: tuple[str, ...] = ()
    pinning: Pinning = field(default_factory=Pinning)
    mx: MxSettings | None = None  # `mx_evidence` enabled: MX lookups (by the caller of judge) may excuse foreign-host
    audit: AuditSettings = field(default_factory=AuditSettings)
    files: tuple[str, ...] = ()  # every file read to build it (the policy, its provider maps): reload watches them
    unknown_user_owns_nothing: bool = True  # `unknown_user: owns-nothing`; `skip-ownership` relaxes it

    def action_for(self, rule: str) -> RuleAction:
        """The configured action for a rule id."""
        return self.actions.get(rule, RuleAction.BLOCK)


def shipped_policy_dir() -> Path:
    """The `policies/` folder shipped with the project (in a wheel: the package's `_policies`)."""
    here = Path(__file__).resolve().parent
    return here / "_policies" if (here / "_policies").is_dir() else here.parent / "policies"


def default_policy_path() -> Path:
    """The workstation default policy."""
    return shipped_policy_dir() / "default.yaml"


def load_policy(path: str | Path) -> Policy:
    """Read, validate and index a policy file and the provider maps it includes.

    Raises:
        PolicyError: with file, line, column and reason for any problem.
    """
    path = Path(path)
    text, digest = _read(path)
    root = mapping(load_located(text, str(path)), _POLICY_KEYS)
    version = root.get("version")
    if version is None or version.value != POLICY_VERSION:
        where = version or Located(None, str(path), 1, 1)
        raise where.error(f"'version: {POLICY_VERSION}' is required")
    entries: list[TrustEntry] = []
    files = [str(path)]
    for include in strings(root.get("providers")):
        include_path = path.parent / include.value
        if not include_path.is_file():
            raise include.error(f"provider map not found: {include_path}")
        include_text, include_digest = _read(include_path)
        files.append(str(include_path))
        digest.update(include_digest.digest())
        entries.extend(_provider_map(load_located(include_text, str(include_path))))
    for item in items(root.get("allow")):
        entries.append(_allow_entry(item))
    if "provider_db" in root and root["provider_db"].value is not None:
        db = root["provider_db"]
        folder = path.parent / string(db)
        if not folder.is_dir():
            raise db.error(f"provider_db folder not found: {folder}")
        entries.extend(_provider_db(folder, digest))
    return Policy(
        path=str(path),
        revision=digest.hexdigest()[:12],
        mode=_enum(root.get("mode"), Mode, Mode.ENFORCE),
        on_error=_on_error(root.get("on_error")),
        actions=MappingProxyType(_actions(root.get("rules"))),
        trust=Trust.build(entries),
        limits=_limits(root.get("limits")),
        log=_log(root.get("log")),
        discovery_hosts=tuple(_host(h) for h in strings(root.get("discovery_hosts"))),
        pinning=_pinning(root.get("pinning"), path),
        mx=_mx_evidence(root.get("mx_evidence")),
        audit=AuditSettings(enforce_credential_rules=_flag(
            mapping(root.get("audit"), frozenset({"enforce_credential_rules"})), "enforce_credential_rules", True)),
        files=tuple(files),
        unknown_user_owns_nothing=_unknown_user(root.get("unknown_user")),
    )


_POLICY_KEYS = frozenset({
    "version", "mode", "on_error", "rules", "providers", "provider_db", "allow", "limits", "log",
    "discovery_hosts", "description", "pinning", "mx_evidence", "audit", "unknown_user",
})


def _read(path: Path) -> tuple[str, Any]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"cannot read policy: {exc.strerror or exc}", str(path)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"not UTF-8 (byte {exc.start})", str(path)) from None
    return text, hashlib.sha256(data)


_E = TypeVar("_E", bound=StrEnum)


def _enum(node: Located | None, kind: type[_E], default: _E) -> _E:
    if node is None:
        return default
    try:
        return kind(string(node))
    except ValueError:
        raise node.error(f"expected one of: {', '.join(m.value for m in kind)}") from None


def _unknown_user(node: Located | None) -> bool:
    """`unknown_user`: whether an answer for nobody known owns nothing (docs/policy.md)."""
    if node is None:
        return True
    value = string(node)
    if value not in ("owns-nothing", "skip-ownership"):
        raise node.error("expected 'owns-nothing' (the default: every server is foreign-host) or "
                         "'skip-ownership' (only reserved names and IP literals are judged)")
    return value == "owns-nothing"


def _on_error(node: Located | None) -> Action:
    if node is None:
        return Action.BLOCK
    value = string(node)
    if value not in ("block", "allow"):
        raise node.error("expected 'block' or 'allow'")
    return Action(value)


def _actions(node: Located | None) -> dict[str, RuleAction]:
    actions = dict(DEFAULT_ACTIONS)
    for rule, value in mapping(node, frozenset(RULES)).items():
        # YAML 1.1 reads a bare `off` as false; that is what the author meant
        actions[rule] = RuleAction.OFF if value.value is False else _enum(value, RuleAction, RuleAction.BLOCK)
        if actions[rule] is RuleAction.REWRITE and not RULES[rule].may_rewrite:
            raise value.error(f"{rule} cannot be 'rewrite': {RULES[rule].no_rewrite}")
    return actions


def _limits(node: Located | None) -> Limits:
    keys = mapping(node, frozenset({"max_body_bytes", "max_decoded_bytes", "max_redirects", "judge_ms"}))
    base = Limits()
    return Limits(
        max_body_bytes=integer(keys["max_body_bytes"], 1024) if "max_body_bytes" in keys else base.max_body_bytes,
        max_decoded_bytes=(
            integer(keys["max_decoded_bytes"], 1024) if "max_decoded_bytes" in keys else base.max_decoded_bytes
        ),
        max_redirects=integer(keys["max_redirects"], 0) if "max_redirects" in keys else base.max_redirects,
        judge_ms=integer(keys["judge_ms"], 1) if "judge_ms" in keys else base.judge_ms,
    )


def _log(node: Located | None) -> LogSettings:
    keys = mapping(node, frozenset({"hash_local_part", "required"}))
    return LogSettings(hash_local_part=_flag(keys, "hash_local_part", True), required=_flag(keys, "required", False))


def _flag(keys: Mapping[str, Located], name: str, default: bool) -> bool:
    if name not in keys:
        return default
    value = keys[name]
    if not isinstance(value.value, bool):
        raise value.error("expected true or false")
    return value.value


def _pinning(node: Located | None, policy_path: Path) -> Pinning:
    keys = mapping(node, frozenset({"enabled", "store", "pinned"}))
    enabled = keys.get("enabled")
    if enabled is not None and not isinstance(enabled.value, bool):
        raise enabled.error("expected true or false")
    store = policy_path.parent / string(keys["store"]) if "store" in keys else default_pin_store()
    return Pinning(
        enabled=bool(enabled and enabled.value),
        store=str(store),
        pinned=frozenset(_host(d) for d in strings(keys.get("pinned"))),
    )


def default_pin_store() -> Path:
    """`$XDG_STATE_HOME/autodiscover-guard/pins.sqlite` (`~/.local/state/...` when unset)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "autodiscover-guard" / "pins.sqlite"


def _mx_evidence(node: Located | None) -> MxSettings | None:
    """The optional `mx_evidence` section; None (no DNS at all) unless `enabled: true`."""
    keys = mapping(node, frozenset({"enabled", "resolver", "timeout", "cache_ttl", "cache_size"}))
    enabled = keys.get("enabled")
    if enabled is None:
        if keys:
            raise keys[next(iter(keys))].error("mx_evidence needs 'enabled: true' (or false)")
        return None
    if not isinstance(enabled.value, bool):
        raise enabled.error("expected true or false")
    base = MxSettings()
    resolver = None
    if "resolver" in keys:
        try:
            resolver = parse_resolver(string(keys["resolver"]))
        except ValueError as exc:
            raise keys["resolver"].error(str(exc)) from None
    timeout = base.timeout
    if "timeout" in keys:
        value = keys["timeout"].value
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 30:
            raise keys["timeout"].error("expected seconds, more than 0 and at most 30")
        timeout = float(value)
    settings = MxSettings(
        resolver=resolver,
        timeout=timeout,
        cache_ttl=float(integer(keys["cache_ttl"], 0)) if "cache_ttl" in keys else base.cache_ttl,
        cache_size=integer(keys["cache_size"], 1) if "cache_size" in keys else base.cache_size,
    )
    return settings if enabled.value else None


def _host(node: Located) -> str:
    try:
        return normalise_host(string(node))
    except InvalidHost as exc:
        raise node.error(str(exc)) from None


def _domain_pattern(node: Located) -> str:
    text = string(node).lower()
    if text == "*":
        return text
    if text.startswith("*."):
        return "*." + _host(Located(text[2:], node.path, node.line, node.column))
    if text.endswith(".*"):
        label = text[:-2]
        if "." in label or not label:
            raise node.error("a brand pattern is one label followed by '.*', e.g. 'hotmail.*'")
        return _host(Located(label, node.path, node.line, node.column))[:63] + ".*"
    return _host(node)


def _entry(node: Located, name_key: str, domains_key: str, extra: frozenset[str]) -> TrustEntry:
    keys = mapping(node, frozenset({name_key, "source", domains_key, "hosts", "note"}) | extra,
                   required=(name_key, domains_key, "hosts"))
    domains = tuple(_domain_pattern(d) for d in strings(keys[domains_key]))
    hosts = tuple(_host(h) for h in strings(keys["hosts"]))
    if not domains or not hosts:
        raise node.error(f"{domains_key!r} and 'hosts' must not be empty")
    warn_public_suffix_hosts(zip(items(keys["hosts"]), hosts, strict=True))
    for host_node, host in zip(items(keys["hosts"]), hosts, strict=True):
        if "." not in host:
            raise host_node.error("a trusted host must be a domain, not a bare top-level label")
    mx = tuple(_host(m) for m in strings(keys["mx"])) if "mx" in keys else ()
    source = string(keys["source"]) if "source" in keys else node.path
    return TrustEntry(string(keys[name_key]), source, domains, hosts, weak="*" in domains, mx=mx)


def _provider_map(root: Located) -> list[TrustEntry]:
    keys = mapping(root, frozenset({"version", "providers", "description"}))
    if "version" not in keys or keys["version"].value != POLICY_VERSION:
        raise root.error(f"'version: {POLICY_VERSION}' is required")
    return [_entry(item, "name", "domains", frozenset({"mx"})) for item in items(keys.get("providers"))]


def _allow_entry(node: Located) -> TrustEntry:
    return _entry(node, "name", "users", frozenset())


def _provider_db(folder: Path, digest: Any) -> list[TrustEntry]:
    """Map entries from an operator-supplied folder of clientConfig files (an ISPDB checkout)."""
    from guard.provider_db import read_provider_db

    try:
        found = read_provider_db(folder)
    except GuardError as exc:
        raise PolicyError(str(exc), str(folder)) from None
    for entry in found:
        digest.update(repr(entry).encode())
    return found

