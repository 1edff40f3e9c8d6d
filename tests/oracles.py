"""Real readers used as test oracles: what a client's own parser extracts from an answer.

Each oracle returns the set of hosts the real reader would contact (A-labels / canonical IP
text where the guard can normalise them), or None when the reader refuses the document (then it
contacts nothing). `guard_hosts` is the guard's side: the hosts of its suggestions, or None when
the guard refuses (a malformed document or a suggestion naming no host, which the default
policy blocks). The differential rule: the guard refuses, or every host an oracle finds is one
the guard judged.
"""

from __future__ import annotations

import ipaddress
import json
import plistlib
import subprocess
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from exchangelib.services import GetUserSettings
from exchangelib.version import EXCHANGE_2016, Version
from lxml import etree
from urllib3.util import parse_url

from guard.errors import UntrustedInputError
from guard.formats import Format
from guard.names import InvalidHost, User, normalise_host, target_of


def _url_host(url: str) -> str | None:
    """The host key of a URL as urllib3 reads it; None when it has no host or does not parse."""
    try:
        host = parse_url(url).host
    except ValueError:
        return None
    return host_key(host) if host else None


def host_key(host: str) -> str:
    """A host as the guard names it: A-labels, or an IP literal's canonical text."""
    text = host.strip().strip("[]").rstrip(".")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    try:
        return normalise_host(text)
    except InvalidHost:
        return text.lower()


def guard_hosts(fmt: Format, body: bytes, user: User) -> set[str] | None:
    """The hosts of the guard's suggestions for `body`, or None when the guard refuses it."""
    try:
        parsed = fmt.parse(body)
        return {target_of(s, user).host for s in parsed.suggestions}
    except (UntrustedInputError, InvalidHost):
        return None


# --- exchangelib (SOAP autodiscover.svc) ------------------------------------------------------


def exchangelib_soap_hosts(body: bytes) -> set[str] | None:
    """Where exchangelib 5.6 goes after reading a GetUserSettings answer with its own parser:
    the EWS URL's host, a RedirectUrl's host, and a RedirectAddress's domain as `get_domain`
    splits it (after the first `@`)."""
    service = GetUserSettings(protocol=SimpleNamespace(version=Version(build=EXCHANGE_2016)))
    try:
        responses = service.parse(body)
    except Exception:
        return None
    hosts: set[str] = set()
    for response in responses:
        if isinstance(response, Exception):
            continue
        if response.redirect_address:
            parts = response.redirect_address.split("@")
            if len(parts) > 1:
                hosts.add(host_key(parts[1]))
        ews_url = (response.user_settings or {}).get("external_ews_url")
        hosts.update(host for url in (response.redirect_url, ews_url) if url and (host := _url_host(url)) is not None)
    return hosts


# --- lxml (libxml2: how lxml-based clients read text with comments and PIs) --------------------

_LXML = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def lxml_leaf_texts(body: bytes) -> list[str] | None:
    """Each leaf element's `.text` as lxml reads it (stopping at a comment or PI), stripped as every
    reader strips a value, in document order."""
    try:
        root = etree.fromstring(body, parser=_LXML)
    except etree.XMLSyntaxError:
        return None
    return [(element.text or "").strip() for element in root.iter() if isinstance(element.tag, str)
            and not any(isinstance(child.tag, str) for child in element)]


# --- plistlib (Apple property lists) -----------------------------------------------------------

_HOST_KEYS = ("hostname", "host", "url", "server", "serverurl")


def _host_values(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str) and key.lower().endswith(_HOST_KEYS) and item.strip():
                yield item
            else:
                yield from _host_values(item)
    elif isinstance(value, list):
        for item in value:
            yield from _host_values(item)


def plistlib_hosts(plist: bytes) -> set[str] | None:
    """Hosts of every host/URL-named key of every payload, as Python's `plistlib` reads the profile."""
    try:
        profile = plistlib.loads(plist)
    except Exception:
        return None
    if not isinstance(profile, dict):
        return None
    hosts: set[str] = set()
    for value in _host_values(profile.get("PayloadContent", [])):
        text = value.strip()
        if "://" in text:
            if (host := _url_host(text)) is not None:
                hosts.add(host)
        elif not text.startswith("/"):
            hosts.add(host_key(text))
    return hosts


# --- node's WHATWG URL parser ------------------------------------------------------------------

_NODE_SCRIPT = r"""
const rl = require('readline').createInterface({input: process.stdin});
rl.on('line', (line) => {
  let out;
  try { out = {host: new URL(JSON.parse(line)).hostname}; } catch (e) { out = {host: null}; }
  process.stdout.write(JSON.stringify(out) + '\n');
});
"""


class WhatwgUrl:
    """One long-lived `node` process answering `new URL(s).hostname` per line (fast enough for
    thousands of hypothesis examples; a process per URL would not be)."""

    def __init__(self) -> None:
        self._node = subprocess.Popen(["node", "-e", _NODE_SCRIPT], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, encoding="utf-8")

    def host(self, url: str) -> str | None:
        """The host WHATWG's parser reads from `url`, or None when it refuses the URL."""
        assert self._node.stdin is not None and self._node.stdout is not None
        self._node.stdin.write(json.dumps(url) + "\n")
        self._node.stdin.flush()
        answer: str | None = json.loads(self._node.stdout.readline())["host"]
        return answer or None

    def close(self) -> None:
        assert self._node.stdin is not None
        self._node.stdin.close()
        self._node.wait(timeout=10)
