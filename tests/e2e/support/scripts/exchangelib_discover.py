"""Run exchangelib's own autodiscovery for one address and print the outcome as one JSON object.

A separate process so exchangelib's process-wide state (its protocol cache, and the autodiscover
cache file it keeps in the temp directory, `TMPDIR` here) starts empty for every run. The caller
points it at the guard through the environment requests reads (`HTTPS_PROXY`, `HTTP_PROXY`,
`REQUESTS_CA_BUNDLE`) and at the test DNS server through exchangelib's resolver settings
(`Autodiscovery.DNS_RESOLVER_KWARGS` / `DNS_RESOLVER_ATTRS`).

Usage: exchangelib_discover.py EMAIL DNS_PORT, password in `EXCHANGELIB_TEST_PASSWORD`.
Output: {"ews_url": ..., "api_version": ..., "smtp_address": ...} or {"error": "<exception class>", "message": ...}.
"""

import json
import os
import sys

from exchangelib import Credentials
from exchangelib.autodiscover.discovery import Autodiscovery, discover


def main() -> None:
    email, dns_port = sys.argv[1], int(sys.argv[2])
    Autodiscovery.DNS_RESOLVER_KWARGS = {"configure": False}  # no /etc/resolv.conf
    Autodiscovery.DNS_RESOLVER_ATTRS = {"nameservers": ["127.0.0.1"], "port": dns_port, "timeout": 2.0}
    credentials = Credentials(email, os.environ["EXCHANGELIB_TEST_PASSWORD"])
    try:
        answer, protocol = discover(email, credentials=credentials)
    except Exception as exc:  # the class is the result
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        return
    print(json.dumps({"ews_url": protocol.service_endpoint, "api_version": answer.version.api_version,
                      "smtp_address": answer.autodiscover_smtp_address}))


if __name__ == "__main__":
    main()
