"""The credentials end-to-end tests send, in one place, and the sweep proving none was ever written.

Tests take `PASSWORD`, `basic(user)` and `bearer()` from here rather than inventing their own,
so the sweep knows every value to look for (each Basic token is remembered as it is made). The
harness registers every guard proxy's work folder (decision log, metrics, confdir), its log file
and its mitmdump output with `SWEEP`; tests add any other output (a CLI run) with `SWEEP.watch_text`.
At the end of the session `tests/e2e/conftest.py` fails the run if `SWEEP.leaks()` finds one.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

PASSWORD = "Tr0ub4dor&3-never-logged"
TOKEN = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJuZXZlci1sb2dnZWQifQ.bearer-never-logged"
# Query values under keys no fixed list of secret names had (issue 16); each its own needle.
QUERY_SECRETS = {
    "auth_token": "AuthT0ken-never-logged",
    "pw": "Pw-hunter2-never-logged",
    "passcode": "Passc0de-never-logged",
    "otp": "739146285",
    "credential": "Cr3dential-never-logged",
    "sessionid": "S3ssionId-never-logged",
}


class Sweep:
    """What to look for, and where."""

    def __init__(self) -> None:
        self.needles: dict[str, str] = {
            PASSWORD: "the test password",
            quote(PASSWORD, safe=""): "the test password, URL-encoded",
            quote_plus(PASSWORD): "the test password, form-encoded",
            TOKEN: "the test bearer token",
            **{value: f"the `{key}` query value" for key, value in QUERY_SECRETS.items()},
        }
        self.paths: list[Path] = []
        self.texts: list[tuple[str, Callable[[], str]]] = []

    def basic(self, user: str) -> str:
        """An `Authorization` value for `user` with the test password (remembered as a needle)."""
        token = base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()
        self.needles[token] = f"the Basic token of {user}"
        return f"Basic {token}"

    def watch_path(self, path: Path) -> None:
        """A regular file, or every regular file under a folder, as it is at the end of the session."""
        self.paths.append(path)

    def watch_text(self, name: str, text: Callable[[], str] | str) -> None:
        """Output held in memory: a string, or a callable read at the end (mitmdump's drained output)."""
        self.texts.append((name, text if callable(text) else lambda: text))

    def _haystacks(self) -> Iterator[tuple[str, bytes]]:
        files = {path for watched in self.paths for path in (watched.rglob("*") if watched.is_dir() else [watched])}
        for path in sorted(files):
            if path.is_file() and not path.is_symlink():  # not /dev/full, say
                yield str(path), path.read_bytes()
        for name, text in self.texts:
            yield name, text().encode("utf-8", "replace")

    def leaks(self) -> list[str]:
        """`<where>: <what>` for every watched file or output holding a needle."""
        needles = [(needle.encode(), what) for needle, what in self.needles.items()]
        return [f"{where}: {what}" for where, data in self._haystacks() for needle, what in needles if needle in data]


SWEEP = Sweep()
basic = SWEEP.basic


def bearer() -> str:
    """An `Authorization` value with the test bearer token."""
    return f"Bearer {TOKEN}"


def secret_url(origin: str, path: str) -> str:
    """`origin` + `path` carrying every URL secret: the password as a path segment and as a `;password=`
    path parameter, and each `QUERY_SECRETS` value under its key (all are needles of `SWEEP`)."""
    password = quote(PASSWORD, safe="")
    folder, _, name = path.rpartition("/")
    query = "&".join(f"{key}={quote(value, safe='')}" for key, value in QUERY_SECRETS.items())
    return f"{origin}{folder}/{password}/{name};password={password}?{query}"
