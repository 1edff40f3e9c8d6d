"""Render automua's answers with its own Flask app and templates, for the benign corpus.

automua pins other Flask/SQLAlchemy versions than the project, so it runs in its own venv:
`python -m venv v && v/bin/pip install automua==2023.0 && v/bin/python render_automua.py OUT` from an
empty scratch folder (automua reads its configuration file when imported).
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

PROVIDER = {"provider": "Contoso Ltd", "domains": ["contoso.com"],
            "servers": [{"type": "imap", "name": "imap.contoso.com"}, {"type": "pop", "name": "pop.contoso.com"},
                        {"type": "smtp", "name": "smtp.contoso.com", "port": 587}]}
POX_REQUEST = (
    b'<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/'
    b'autodiscover/outlook/requestschema/2006"><Request><EMailAddress>alice@contoso.com</EMailAddress>'
    b"<AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
    b"</AcceptableResponseSchema></Request></Autodiscover>"
)


def main(out: Path) -> None:
    conf = Path("automua.conf").resolve()
    conf.write_text(f"[automua]\nloglevel = WARNING\ndb_uri = sqlite:///{Path('automua.db').resolve()}\n")
    os.environ["AUTOMUA_CONF"] = str(conf)
    server: Any = importlib.import_module("automua.server")
    model: Any = importlib.import_module("automua.model")
    database: Any = importlib.import_module("automua.database")
    app = server.create_app()
    with app.app_context():
        model.db.create_all()
        database.populate_with_dict(PROVIDER)
        model.db.session.commit()
    client = app.test_client()
    answers = {
        "automua__autoconfig.xml": client.get("/mail/config-v1.1.xml?emailaddress=alice@contoso.com"),
        "automua__pox.xml": client.post("/autodiscover/autodiscover.xml", data=POX_REQUEST, content_type="text/xml"),
        "automua__mobileconfig.xml": client.get("/mobileconfig/?emailaddress=alice@contoso.com"),
    }
    for name, response in answers.items():
        assert response.status_code == 200, (name, response.status_code, response.data[:200])
        (out / name).write_bytes(response.data)


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
