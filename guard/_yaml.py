"""YAML read into plain values that remember where they came from, and the schema checks on them.

PyYAML's composer gives every node a start mark; walking nodes ourselves (instead of
`yaml.safe_load`) lets every policy error say `file:line:column`, and lets us refuse what
safe_load silently accepts: duplicate keys (the last one wins there) and aliases (the
"billion laughs" of YAML, and never needed in a policy).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from guard.errors import PolicyError
from guard.suggest import Key, unknown_key

MAX_POLICY_BYTES = 4 * 1024 * 1024
MAX_NODES = 200_000


@dataclass(frozen=True, slots=True)
class Located:
    """A scalar, list or mapping value together with its position in the file."""

    value: Any  # str | int | float | bool | None | list[Located] | dict[str, Located]
    path: str
    line: int
    column: int

    def error(self, message: str) -> PolicyError:
        """A PolicyError pointing at this value."""
        return PolicyError(message, self.path, self.line, self.column)


def load_located(text: str, path: str) -> Located:
    """Parse YAML text into `Located` values; raises PolicyError with the position of any problem."""
    if len(text) > MAX_POLICY_BYTES:
        raise PolicyError(f"file larger than {MAX_POLICY_BYTES} bytes", path)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        raise PolicyError(f"invalid YAML: {exc.problem or exc.context}", path, line, col) from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"invalid YAML: {exc}", path) from None
    if node is None:
        raise PolicyError("empty file", path, 1, 1)
    return _Walker(path).walk(node)


class _Walker:
    def __init__(self, path: str) -> None:
        self.path = path
        self.seen: set[int] = set()

    def walk(self, node: yaml.Node) -> Located:
        line, col = node.start_mark.line + 1, node.start_mark.column + 1
        if id(node) in self.seen:
            raise PolicyError("YAML aliases (*name) are not allowed in policies", self.path, line, col)
        self.seen.add(id(node))
        if len(self.seen) > MAX_NODES:
            raise PolicyError(f"more than {MAX_NODES} YAML nodes", self.path, line, col)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Located] = {}
            for key_node, value_node in node.value:
                key = self.walk(key_node)
                if not isinstance(key.value, str):
                    raise key.error("mapping keys must be strings")
                if key.value in out:
                    raise key.error(f"duplicate key {key.value!r}")
                out[Key(key.value, key.line, key.column)] = self.walk(value_node)
            return Located(out, self.path, line, col)
        if isinstance(node, yaml.SequenceNode):
            return Located([self.walk(item) for item in node.value], self.path, line, col)
        return Located(_resolve_scalar(node.tag, str(node.value)), self.path, line, col)


def _resolve_scalar(tag: str, text: str) -> Any:
    """Scalars as YAML 1.1's core schema resolved them (the tag the SafeLoader resolver chose)."""
    if tag == "tag:yaml.org,2002:null":
        return None
    if tag == "tag:yaml.org,2002:bool":
        return text.lower() in ("true", "yes", "on")
    if tag == "tag:yaml.org,2002:int":
        try:
            return int(text.replace("_", ""), 0)
        except ValueError:
            return text
    if tag == "tag:yaml.org,2002:float":
        return float(text)
    return text


# --- schema checks shared by every YAML file the guard reads (policies, canary services, policy tests)


def mapping(node: Located | None, allowed: Collection[str], required: Iterable[str] = ()) -> dict[str, Located]:
    """The keys of a mapping (none when the node is absent); unknown keys and missing required ones are errors."""
    if node is None:
        return {}
    if not isinstance(node.value, dict):
        raise node.error("expected a mapping")
    for key, value in node.value.items():
        if key not in allowed:
            raise unknown_key(key, value.path, value.line, value.column, allowed)
    for key in required:
        if key not in node.value:
            raise node.error(f"missing key {key!r}")
    return dict(node.value)


def items(node: Located | None) -> list[Located]:
    """The items of a list (none when absent or empty)."""
    if node is None or node.value is None:
        return []
    if not isinstance(node.value, list):
        raise node.error("expected a list")
    return list(node.value)


def string(node: Located) -> str:
    """A non-empty string, stripped."""
    if not isinstance(node.value, str) or not node.value.strip():
        raise node.error("expected a non-empty string")
    return node.value.strip()


def strings(node: Located | None) -> list[Located]:
    """A list whose items are all non-empty strings."""
    found = items(node)
    for item in found:
        string(item)
    return found


def integer(node: Located, minimum: int) -> int:
    """An integer (not a boolean) of at least `minimum`."""
    if isinstance(node.value, bool) or not isinstance(node.value, int) or node.value < minimum:
        raise node.error(f"expected an integer ≥ {minimum}")
    return node.value
