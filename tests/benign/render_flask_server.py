"""Render automx2's or automua's answers with the server's own Flask app and templates, for the benign corpus.

Run from an empty scratch folder (both servers read their configuration file when imported, so it is
written before the import):
- automx2 (the project's venv): `python tests/benign/render_flask_server.py automx2 tests/benign`
- automua pins other Flask/SQLAlchemy versions, so it runs in its own venv:
  `python -m venv v && v/bin/pip install automua==2023.0 && v/bin/python render_flask_server.py automua OUT`
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

AUTOMX2_PROVIDER = {
    "version": 2, "provider": "Contoso Ltd", "domains": [{"name": "contoso.com"}],
    "servers": [{"type": "imap", "name": "imap.contoso.com", "port": 993, "socket_type": "SSL"},
                {"type": "pop", "name": "pop.contoso.com", "port": 995, "socket_type": "SSL"},
                {"type": "smtp", "name": "smtp.contoso.com", "port": 587, "socket_type": "STARTTLS"}],
}
AUTOMUA_PROVIDER = {
    "provider": "Contoso Ltd", "domains": ["contoso.com"],
    "servers": [{"type": "imap", "name": "imap.contoso.com"}, {"type": "pop", "name": "pop.contoso.com"},
                {"type": "smtp", "name": "smtp.contoso.com", "port": 587}],
}
POX_REQUEST = (
    b'<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/'
    b'autodiscover/outlook/requestschema/2006"><Request><EMailAddress>alice@contoso.com</EMailAddress>'
    b"<AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
    b"</AcceptableResponseSchema></Request></Autodiscover>"
)


def _configure(server: str) -> None:
    conf = Path(f"{server}.conf").resolve()
    conf.write_text(f"[{server}]\nloglevel = WARNING\ndb_uri = sqlite:///{Path(f'{server}.db').resolve()}\n")
    os.environ[f"{server.upper()}_CONF"] = str(conf)


def automx2_client() -> Any:
    _configure("automx2")
    server: Any = importlib.import_module("automx2.server")
    model: Any = importlib.import_module("automx2.model")
    database: Any = importlib.import_module("automx2.database")
    with server.app.app_context():
        model.Base.metadata.create_all(model.db.engine)
        database.populate_with_dict(AUTOMX2_PROVIDER)
    return server.app.test_client()


def automua_client() -> Any:
    _configure("automua")
    server: Any = importlib.import_module("automua.server")
    model: Any = importlib.import_module("automua.model")
    database: Any = importlib.import_module("automua.database")
    app = server.create_app()
    with app.app_context():
        model.db.create_all()
        database.populate_with_dict(AUTOMUA_PROVIDER)
        model.db.session.commit()
    return app.test_client()


CLIENTS = {"automx2": automx2_client, "automua": automua_client}


def main(server: str, out: Path) -> None:
    client = CLIENTS[server]()
    answers = {
        f"{server}__autoconfig.xml": client.get("/mail/config-v1.1.xml?emailaddress=alice@contoso.com"),
        f"{server}__pox.xml": client.post("/autodiscover/autodiscover.xml", data=POX_REQUEST, content_type="text/xml"),
        f"{server}__mobileconfig.xml": client.get("/mobileconfig/?emailaddress=alice@contoso.com"),
    }
    for name, response in answers.items():
        assert response.status_code == 200, (name, response.status_code, response.data[:200])
        (out / name).write_bytes(response.data)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]).resolve())
