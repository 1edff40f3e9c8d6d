"""Render automx2's answers with its own Flask app and templates, for the benign corpus.

Run from an empty scratch folder: `python tests/benign/render_automx2.py tests/benign` (automx2 reads
its configuration file when imported, so the file is written before the import).
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

PROVIDER = {
    "version": 2, "provider": "Contoso Ltd", "domains": [{"name": "contoso.com"}],
    "servers": [{"type": "imap", "name": "imap.contoso.com", "port": 993, "socket_type": "SSL"},
                {"type": "pop", "name": "pop.contoso.com", "port": 995, "socket_type": "SSL"},
                {"type": "smtp", "name": "smtp.contoso.com", "port": 587, "socket_type": "STARTTLS"}],
}
POX_REQUEST = (
    b'<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/'
    b'autodiscover/outlook/requestschema/2006"><Request><EMailAddress>alice@contoso.com</EMailAddress>'
    b"<AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
    b"</AcceptableResponseSchema></Request></Autodiscover>"
)


def main(out: Path) -> None:
    conf = Path("automx2.conf").resolve()
    conf.write_text(f"[automx2]\nloglevel = WARNING\ndb_uri = sqlite:///{Path('automx2.db').resolve()}\n")
    os.environ["AUTOMX2_CONF"] = str(conf)
    server: Any = importlib.import_module("automx2.server")
    model: Any = importlib.import_module("automx2.model")
    database: Any = importlib.import_module("automx2.database")
    with server.app.app_context():
        model.Base.metadata.create_all(model.db.engine)
        database.populate_with_dict(PROVIDER)
    client = server.app.test_client()
    answers = {
        "automx2__autoconfig.xml": client.get("/mail/config-v1.1.xml?emailaddress=alice@contoso.com"),
        "automx2__pox.xml": client.post("/autodiscover/autodiscover.xml", data=POX_REQUEST, content_type="text/xml"),
        "automx2__mobileconfig.xml": client.get("/mobileconfig/?emailaddress=alice@contoso.com"),
    }
    for name, response in answers.items():
        assert response.status_code == 200, (name, response.status_code)
        (out / name).write_bytes(response.data)


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
