"""YAML with positions: duplicate keys, aliases and syntax errors name file:line:column."""

from __future__ import annotations

import pytest

from guard._yaml import load_located
from guard.errors import PolicyError


def test_values_remember_their_line_and_column() -> None:
    root = load_located("a: 1\nb:\n  - x\n", "p.yaml")
    assert root.value["b"].value[0].line == 3
    assert root.value["b"].value[0].column == 5


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("a: 1\na: 2\n", 2, "duplicate key"),
        ("a: &x [1]\nb: *x\n", 1, "aliases"),
        ("a: [\n", 2, "invalid YAML"),
        ("", 1, "empty"),
        ("? [a]\n: 1\n", 1, "keys must be strings"),
    ],
)
def test_bad_yaml_is_reported_with_its_position(text: str, line: int, reason: str) -> None:
    with pytest.raises(PolicyError) as info:
        load_located(text, "p.yaml")
    assert info.value.line == line
    assert reason in str(info.value)
    assert str(info.value).startswith(f"p.yaml:{line}:")


def test_a_billion_laughs_alias_bomb_is_refused_quickly() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    with pytest.raises(PolicyError, match="aliases"):
        load_located("\n".join(lines) + "\n", "bomb.yaml")
