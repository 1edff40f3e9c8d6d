"""`policy test`: YAML cases (document, user, expected verdict and rules) run against a policy.

A case file holds one case or a `cases:` list:

    email: email@example.com
    document: ../fixtures/pox__seed_example_com.xml   # relative to the case file; or `body: |`
    format: pox                                        # optional
    url: https://autodiscover.example.com/autodiscover/autodiscover.xml   # optional
    expect:
      verdict: violation
      rules: [reserved-user-domain, foreign-host]      # each must fire; others may too
      action: block                                     # optional
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from guard._yaml import Located, load_located, mapping
from guard.engine import judge
from guard.errors import PolicyError
from guard.formats import by_name
from guard.mx import MxLookups
from guard.names import InvalidHost, User
from guard.policy import Policy

_CASE_KEYS = frozenset({"name", "email", "document", "body", "format", "url", "expect"})
_EXPECT_KEYS = frozenset({"verdict", "rules", "action", "absent"})


@dataclass(frozen=True, slots=True)
class CaseResult:
    """Outcome of one case."""

    name: str
    ok: bool
    reason: str = ""


def run_cases(folder: Path, policy: Policy) -> list[CaseResult]:
    """Run every `*.yaml`/`*.yml` case file under `folder` (a single file works too)."""
    files = [folder] if folder.is_file() else sorted([*folder.rglob("*.yaml"), *folder.rglob("*.yml")])
    results: list[CaseResult] = []
    for path in files:
        try:
            root = load_located(path.read_text(encoding="utf-8"), str(path))
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(f"cannot read case file: {exc}", str(path)) from None
        cases = root.value.get("cases") if isinstance(root.value, dict) and "cases" in root.value else None
        items = cases.value if cases is not None and isinstance(cases.value, list) else [root]
        for index, case in enumerate(items):
            results.append(_run(path, index, case, policy))
    return results


def _text(case: dict[str, Located], key: str, node: Located) -> str:
    if key not in case or not isinstance(case[key].value, str):
        raise node.error(f"case needs a string {key!r}")
    return str(case[key].value)


def _run(path: Path, index: int, node: Located, policy: Policy) -> CaseResult:
    case = mapping(node, _CASE_KEYS)
    name = str(case["name"].value) if "name" in case else f"{path.name}#{index + 1}"
    try:
        user = User.from_address(_text(case, "email", node))
    except InvalidHost as exc:
        raise case["email"].error(str(exc)) from None
    if "body" in case:
        body = _text(case, "body", node).encode()
    else:
        doc = path.parent / _text(case, "document", node)
        try:
            body = doc.read_bytes()
        except OSError as exc:
            raise case["document"].error(f"cannot read document: {exc.strerror or exc}") from None
    fmt = by_name(_text(case, "format", node)) if "format" in case else None
    url = _text(case, "url", node) if "url" in case else ""
    # judge does no I/O: MX evidence, when the policy enables it, is looked up here (blocking is fine offline)
    mx = MxLookups(policy.mx).lookup(user.domain) if policy.mx is not None and user is not None else None
    decision = judge(body, user, policy, fmt=fmt, url=url, mx=mx)
    if "expect" not in case:
        raise node.error("case needs an 'expect' mapping")
    want = mapping(case["expect"], _EXPECT_KEYS)
    problems: list[str] = []
    if "verdict" in want and decision.verdict != want["verdict"].value:
        problems.append(f"verdict {decision.verdict}, expected {want['verdict'].value}")
    if "action" in want and decision.action.value != want["action"].value:
        problems.append(f"action {decision.action.value}, expected {want['action'].value}")
    fired = set(decision.rules)
    for rule in want["rules"].value if "rules" in want and isinstance(want["rules"].value, list) else []:
        if rule.value not in fired:
            problems.append(f"rule {rule.value} did not fire (fired: {', '.join(sorted(fired)) or 'none'})")
    for rule in want["absent"].value if "absent" in want and isinstance(want["absent"].value, list) else []:
        if rule.value in fired:
            problems.append(f"rule {rule.value} fired but must not")
    return CaseResult(name, not problems, "; ".join(problems))
