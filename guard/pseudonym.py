"""The key behind `user_local_hash`: one secret per deployment, so a SIEM can follow a user.

A per-process key made the same user hash differently after every restart and on every gateway
instance. The key now comes from, in this order:

1. `AUTODISCOVER_GUARD_PSEUDONYM_KEY`: the key itself (at least 32 characters), for containers
   whose secrets arrive in the environment;
2. the file named by `AUTODISCOVER_GUARD_PSEUDONYM_KEY_FILE`, or `pseudonym.key` in the guard's
   state folder (its confdir, `~/.autodiscover-guard` or `$AUTODISCOVER_GUARD_HOME`; made mode
   700 when missing, as `autodiscover-guard run` makes it).

A missing file is created with 32 random bytes (64 hex digits), mode 600, and linked into
place whole: two instances starting together end with the one key. A file group or others may
read, or a short key, is a `SetupError`: a key anyone can read lets them hash guessed addresses
and re-identify users. Instances that share the key (the same file or value) hash a user alike.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import os
import secrets
import tempfile
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from guard.errors import SetupError

ENV_KEY = "AUTODISCOVER_GUARD_PSEUDONYM_KEY"
ENV_FILE = "AUTODISCOVER_GUARD_PSEUDONYM_KEY_FILE"
FILE_NAME = "pseudonym.key"
MIN_KEY_CHARS = 32
HASH_CHARS = 16  # 64 bits: unique enough per deployment, short enough to read


def default_state_dir(env: Mapping[str, str] = os.environ) -> Path:
    """The guard's own folder when no confdir is given: `$AUTODISCOVER_GUARD_HOME` or `~/.autodiscover-guard`.

    The same place `autodiscover-guard run` uses as its default confdir (guard.launch.default_confdir).
    """
    return Path(env.get("AUTODISCOVER_GUARD_HOME") or Path.home() / ".autodiscover-guard")


def key_file(state_dir: Path, env: Mapping[str, str]) -> Path:
    """Where the key file is (or will be created)."""
    return Path(env[ENV_FILE]).expanduser() if env.get(ENV_FILE) else state_dir / FILE_NAME


def load_key(state_dir: Path, env: Mapping[str, str] = os.environ) -> bytes:
    """The deployment's key: from the environment, or read from (or created in) the key file."""
    if env.get(ENV_KEY):
        return _checked(env[ENV_KEY].strip(), f"${ENV_KEY}")
    path = key_file(state_dir, env)
    if not env.get(ENV_FILE):
        with contextlib.suppress(OSError):  # the guard's own folder, as `run` makes it; else _create says why
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        _create(path)
    return _read(path)


def _create(path: Path) -> None:
    """Write a new key to a private temporary file, then link it into place: never seen half-written."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 600
    except FileNotFoundError:
        raise SetupError(f"{path}: cannot create the pseudonym key: folder {path.parent} does not exist; "
                         f"create it (mkdir -p -m 700 {path.parent}) or set {ENV_FILE}") from None
    except OSError as exc:
        raise SetupError(f"{path}: cannot create the pseudonym key: {exc.strerror}; make {path.parent} "
                         f"writable by the guard's user or set {ENV_FILE}") from None
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_hex(32) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.link(tmp, path)  # FileExistsError when another instance was first: its key is used
    finally:
        os.unlink(tmp)


def _read(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as exc:
        how = "it is a symlink; point the setting at the file itself" if exc.errno == errno.ELOOP else exc.strerror
        raise SetupError(f"{path}: cannot read the pseudonym key: {how}") from None
    with os.fdopen(fd, encoding="ascii", errors="replace") as source:
        mode = os.fstat(source.fileno()).st_mode & 0o777
        if mode & 0o077:
            raise SetupError(f"{path}: the pseudonym key has mode {mode:03o}, readable by others; "
                             f"run: chmod 600 {path}")
        text = source.read().strip()
    return _checked(text, str(path))


def _checked(text: str, where: str) -> bytes:
    if len(text) < MIN_KEY_CHARS:
        raise SetupError(f"{where}: the pseudonym key has {len(text)} characters, fewer than {MIN_KEY_CHARS}; "
                         "generate one with: python3 -c 'import secrets; print(secrets.token_hex(32))'")
    return text.encode("utf-8")


class Pseudonyms:
    """Keyed, truncated HMAC-SHA256 of local parts (case-folded: mail systems ignore case)."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self.of = lru_cache(maxsize=1024)(self._hash)  # a client repeats its discovery

    def _hash(self, local: str) -> str:
        return hmac.new(self._key, local.casefold().encode("utf-8"), hashlib.sha256).hexdigest()[:HASH_CHARS]
