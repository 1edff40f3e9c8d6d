"""Default-deny scrubbing of URLs and free text for every output (decision log, console, CLI).

What may be shown is listed; everything else is masked. A URL keeps its scheme, host and port.
Its path keeps the segments that read as ordinary path words (`autodiscover`, `config-v1.1.xml`,
`v1.0`, `.well-known`); an address keeps its domain (`REDACTED@contoso.com`); any other segment —
a password, a token, a long number, base64 — becomes `REDACTED`. Path parameters (`;password=…`)
and the query keep their keys only, never a value; userinfo and the fragment are dropped. A key
that is not itself a path word is masked too. So a new secret-bearing parameter name needs no
list to stay out of the log (docs/security.md, "Secrets in URLs").
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import unquote, urlsplit, urlunsplit

REDACTED = "REDACTED"

# An ordinary word is made of tokens joined by `.`, `_` or `-`: letters (up to 32: longer runs
# are keys), numbers of up to four digits (versions, years; longer ones are ids and codes),
# `v` + a number, or one case of letters around one short number (`pop3s`, `sha256`, `X509`).
# Mixed case with digits (`P4ssw0rd`) or several numbers (`Tr0ub4dor`) is not a word. Empty
# tokens are fine (`.well-known`, `_imaps._tcp`).
_TOKEN = re.compile(r"[A-Za-z]{1,32}|\d{1,4}|[vV]\d{1,4}|[a-z]{1,16}\d{1,3}[a-z]{0,16}|[A-Z]{1,16}\d{1,3}[A-Z]{0,16}")
_SEPARATOR = re.compile(r"[._-]")
_WORD_MAX = 64
_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")
_ADDRESS = re.compile(r"[^/?#&=@\s;:\"'<>]+@")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")


def is_plain_word(text: str) -> bool:
    """True for text that can be shown as it is: an ordinary path word, not a value."""
    if not text or len(text) > _WORD_MAX:
        return False
    tokens = _SEPARATOR.split(text)
    return any(tokens) and all(not token or _TOKEN.fullmatch(token) for token in tokens)


def mask_word(text: str) -> str:
    """`text` when it is a plain word, `REDACTED@domain` for an address, else `REDACTED`."""
    if is_plain_word(text):
        return text
    local, at, domain = text.rpartition("@")
    if at and local and _HOST.fullmatch(domain):
        return f"{REDACTED}@{domain}"
    return REDACTED


def _keys_only(pair: str) -> str:
    key, eq, value = pair.partition("=")
    return mask_word(unquote(key.replace("+", " "))) + (f"={REDACTED}" if eq and value else eq)


def _segment(segment: str) -> str:
    name, semicolon, params = segment.partition(";")
    shown = mask_word(unquote(name)) if name else ""
    if semicolon:
        shown += "".join(";" + _keys_only(param) for param in params.split(";"))
    return shown


@lru_cache(maxsize=1024)
def scrub_url(url: str) -> str:
    """Scheme, host, port and masked path; path parameters and query by key only; no userinfo or fragment.

    Memoised: a client repeats its discovery, so the same URLs recur.
    """
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        path = "/".join(_segment(segment) for segment in parts.path.split("/"))
        query = "&".join(_keys_only(pair) for pair in parts.query.split("&") if pair)
        return urlunsplit((parts.scheme, host, path, query, ""))
    except ValueError:
        return "(unparseable URL)"


def redact_text(text: str) -> str:
    """Free text (a note, an error message): every URL in it scrubbed, every address's local part masked."""
    return _ADDRESS.sub(REDACTED + "@", _URL.sub(lambda match: scrub_url(match.group(0)), text))
