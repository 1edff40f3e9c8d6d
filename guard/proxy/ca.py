"""The guard's CA: named for the product and the deployment, written where mitmproxy looks for it."""

from __future__ import annotations

import socket
from pathlib import Path

from mitmproxy.certs import CertStore

CA_BASENAME = "mitmproxy"  # mitmproxy reads <confdir>/mitmproxy-ca.pem; other names are not looked for
CA_FILES = ("-ca.pem", "-ca.p12", "-ca-cert.pem", "-ca-cert.cer", "-ca-cert.p12", "-dhparam.pem")
CA_KEY_BITS = 2048  # mitmproxy's own default (its `key_size` option)


def ca_common_name(name: str | None) -> str:
    """The CA's subject: the product and the deployment, so a user who inspects a certificate sees
    who intercepts (never "mitmproxy")."""
    return f"autodiscover-guard CA ({name or socket.gethostname()})"


def create_ca(confdir: Path, name: str | None, *, force: bool = False) -> bool:
    """Write the guard's CA into `confdir` in mitmproxy's layout (its own writer); True if created.

    An existing CA is kept unless `force`: replacing it breaks every client that trusts it.
    """
    key = confdir / f"{CA_BASENAME}-ca.pem"
    if key.exists() and not force:
        return False
    confdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for suffix in CA_FILES:
        (confdir / f"{CA_BASENAME}{suffix}").unlink(missing_ok=True)
    CertStore.create_store(confdir, CA_BASENAME, CA_KEY_BITS, organization="autodiscover-guard",
                           cn=ca_common_name(name))
    return True
