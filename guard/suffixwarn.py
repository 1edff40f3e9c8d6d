"""Warn when a policy trusts a host that is itself a public suffix.

A Public Suffix List entry (`googleapis.com`, `blogspot.com`) is a name under which *anyone* may
hold a host: Cloud Storage and Firebase serve any customer's content under `googleapis.com`. A
trust entry listing one trusts every stranger there, for every user the entry covers. Loading
still succeeds (the operator may mean it), but the warning names file, line and the fix.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

from guard._yaml import Located
from guard.ownership import public_suffix


class PublicSuffixHostWarning(UserWarning):
    """A trusted host that the Public Suffix List lists as a public suffix."""


def public_suffix_hosts(hosts: Iterable[tuple[Located, str]]) -> list[tuple[Located, str]]:
    """The (node, normalised host) pairs whose host is a public suffix itself."""
    # a bare label (`com`) is refused as an error by the policy loader: no warning on top of it
    return [(node, host) for node, host in hosts if "." in host and public_suffix(host) == host]


def warn_public_suffix_hosts(hosts: Iterable[tuple[Located, str]]) -> None:
    """One warning per trusted host that is a public suffix, located at its line in the file."""
    for node, host in public_suffix_hosts(hosts):
        warnings.warn_explicit(
            f"trusted host {host!r} is a public suffix: anyone can hold a host under it, so this "
            f"entry trusts strangers; list the service's own host names instead (e.g. oauth2.{host})",
            PublicSuffixHostWarning, node.path, node.line)
