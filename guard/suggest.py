"""Help for a mistyped name: where the key was written, and the allowed name it was probably meant to be.

Kept apart from the YAML walker and the policy schema (owned elsewhere), which each call it from
one line: the walker keeps each mapping key's position in a `Key` (a `str`, so lookups are
unchanged), and the schema check raises `unknown_key(...)` at the key, not at its value (a
nested value starts on the next line).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from guard.errors import PolicyError


class Key(str):
    """A mapping key that remembers where it was written (1-based line and column)."""

    where: tuple[int, int]  # (a str subclass cannot have slots)

    def __new__(cls, text: str, line: int, column: int) -> Key:
        key = super().__new__(cls, text)
        key.where = (line, column)
        return key


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`; did you mean 'mode'?` for the closest allowed name, or an empty string."""
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown_key(key: str, path: str, line: int, column: int, allowed: Iterable[str]) -> PolicyError:
    """The error for a key outside the schema, placed at the key when its position is known."""
    allowed = sorted(allowed)
    where = key.where if isinstance(key, Key) else (line, column)
    return PolicyError(f"unknown key {str(key)!r}{did_you_mean(key, allowed)}; expected one of: "
                       f"{', '.join(allowed)}", path, *where)
