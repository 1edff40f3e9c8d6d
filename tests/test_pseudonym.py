"""The pseudonym key: made once with mode 600, read back the same, refused when others can read it."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from guard.errors import SetupError
from guard.pseudonym import ENV_FILE, ENV_KEY, FILE_NAME, Pseudonyms, load_key


def test_a_missing_key_file_is_created_private_and_read_back_the_same(tmp_path: Path) -> None:
    key = load_key(tmp_path, {})
    assert os.stat(tmp_path / FILE_NAME).st_mode & 0o777 == 0o600
    assert len(key) == 64 and load_key(tmp_path, {}) == key  # a restart reads the same key
    assert [p.name for p in tmp_path.iterdir()] == [FILE_NAME]  # no temporary left


def test_instances_starting_together_end_with_one_key(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: load_key(tmp_path, {}), range(32)))
    assert len(keys) == 1


def test_the_environment_names_the_key_or_its_file(tmp_path: Path) -> None:
    shared = tmp_path / "shared.key"
    from_file = load_key(tmp_path / "unused", {ENV_FILE: str(shared)})
    assert shared.exists() and not (tmp_path / "unused").exists()
    assert load_key(tmp_path, {ENV_KEY: "v" * 40, ENV_FILE: str(shared)}) == b"v" * 40 != from_file


@pytest.mark.parametrize(("setup", "message"), [
    (lambda p: (p.write_text("x" * 64), p.chmod(0o644)), r"mode 644, readable by others; run: chmod 600 "),
    (lambda p: (p.write_text("short"), p.chmod(0o600)), r"has 5 characters, fewer than 32; generate one with"),
])
def test_an_unsafe_key_file_is_refused_with_the_fix(tmp_path: Path, setup: object, message: str) -> None:
    assert callable(setup)
    setup(tmp_path / FILE_NAME)
    with pytest.raises(SetupError, match=message):
        load_key(tmp_path, {})


def test_a_missing_state_folder_is_made_private_but_a_named_files_folder_must_exist(tmp_path: Path) -> None:
    load_key(tmp_path / "state", {})
    assert os.stat(tmp_path / "state").st_mode & 0o777 == 0o700
    with pytest.raises(SetupError, match=r"folder .*/absent does not exist; create it \(mkdir -p -m 700 "):
        load_key(tmp_path, {ENV_FILE: str(tmp_path / "absent" / "k")})


def test_pseudonyms_are_keyed_case_insensitive_and_short() -> None:
    alice = Pseudonyms(b"k" * 32).of("Alice")
    assert alice == Pseudonyms(b"k" * 32).of("alice") != Pseudonyms(b"j" * 32).of("alice")
    assert len(alice) == 16
