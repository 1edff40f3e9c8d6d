"""Building mitmproxy test flows for the proxy tests (mitmproxy's own test helpers underneath)."""

from __future__ import annotations

import base64

from mitmproxy import http
from mitmproxy.test import tflow

from tests.conftest import FIXTURES

POX_URL = "https://autodiscover.contoso.com/autodiscover/autodiscover.xml"
AUTODETECT_URL = "https://prod.autodetect.outlook.cloud.microsoft/autodetect/detect?app=outlookdesktopBasic"
AUTOCONFIG_URL = "https://autoconfig.contoso.com/mail/config-v1.1.xml?emailaddress=alice%40contoso.com"


def basic(user: str, password: str | None = None) -> str:
    raw = user if password is None else f"{user}:{password}"
    return "Basic " + base64.b64encode(raw.encode()).decode()


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def make_flow(url: str, *, method: str = "GET", headers: dict[str, str] | None = None, body: bytes = b"",
              client: str = "127.0.0.1") -> http.HTTPFlow:
    fields = http.Headers([(k.encode(), v.encode()) for k, v in (headers or {}).items()])
    flow = tflow.tflow(req=http.Request.make(method, url, body, fields))
    flow.client_conn.peername = (client, 50000)
    return flow
