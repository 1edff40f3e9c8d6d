"""A real automx2 (the venv's, a Flask app) on an ephemeral loopback port, seeded with an honest
provider for contoso.com and the January 2026 incident's answer for example.com."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import requests

from tests.e2e.support.process import stop as stop_process

SEED_HOSTS = (b"imapgms.jnet.sei.co.jp", b"smtpgms.jnet.sei.co.jp")

PROVIDERS = [
    {"version": 2, "provider": "Contoso Ltd", "domains": [{"name": "contoso.com"}],
     "servers": [{"type": "imap", "name": "imap.contoso.com"}, {"type": "smtp", "name": "smtp.contoso.com"}]},
    {"version": 2, "provider": "SEI GMS", "domains": [{"name": "example.com"}],
     "servers": [{"type": "imap", "name": "imapgms.jnet.sei.co.jp", "port": 993},
                 {"type": "smtp", "name": "smtpgms.jnet.sei.co.jp", "port": 465}]},
]

SEED_SCRIPT = textwrap.dedent("""
    import json, sys
    from automx2.server import app
    from automx2.model import Base, db
    from automx2.database import populate_with_dict
    with app.app_context():
        Base.metadata.create_all(db.engine)
        for provider in json.loads(sys.argv[1]):
            populate_with_dict(provider)
""")

_RUNNING = re.compile(r"Running on http://127\.0\.0\.1:(\d+)")


class Automx2:
    """An automx2 process (Flask's own server) on an ephemeral loopback port."""

    def __init__(self, workdir: Path) -> None:
        conf = workdir / "automx2.conf"
        conf.write_text(f"[automx2]\nloglevel = WARNING\ndb_uri = sqlite:///{workdir / 'automx2.db'}\n")
        env = {"AUTOMX2_CONF": str(conf), "PATH": str(Path(sys.executable).parent), "HOME": str(workdir)}
        subprocess.run([sys.executable, "-c", SEED_SCRIPT, json.dumps(PROVIDERS)], env=env, cwd=workdir,
                       check=True, capture_output=True, timeout=60)
        self.output: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "automx2.server:app", "run", "--host", "127.0.0.1",
             "--port", "0", "--no-reload"],
            env=env, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        found: list[int] = []
        ready = threading.Event()

        def drain() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self.output.append(line.rstrip("\n"))
                match = _RUNNING.search(line)
                if match and not found:
                    found.append(int(match.group(1)))
                    ready.set()
            ready.set()

        threading.Thread(target=drain, name="automx2-output", daemon=True).start()
        if not ready.wait(30) or not found:
            self.stop()
            raise RuntimeError("automx2 did not start:\n" + "\n".join(self.output))
        self.port = found[0]

    def get(self, path: str, **kwargs: object) -> requests.Response:
        """Straight to automx2, no proxy: what it serves."""
        return requests.get(f"http://127.0.0.1:{self.port}{path}", timeout=10, **kwargs)  # type: ignore[arg-type]

    def post(self, path: str, **kwargs: object) -> requests.Response:
        return requests.post(f"http://127.0.0.1:{self.port}{path}", timeout=10, **kwargs)  # type: ignore[arg-type]

    def stop(self) -> None:
        stop_process(self.process)
