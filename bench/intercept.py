"""`run --intercept all` vs `--intercept discovery`: what a non-discovery HTTPS request costs a guard
that decrypts it, against one that relays it undecrypted (`allow_hosts`, as `run` passes).

Both guards run at once against the same loopback upstream; rounds alternate A B / B A. Each
request is a new client connection (a new CONNECT and TLS handshake: the cost interception adds is
per connection), then `keep_alive` requests on one connection. CPU is mitmdump's own per request.
`python -m bench.intercept`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import requests
import urllib3

from bench.proxy import Side, _round, _session, median_ratio
from bench.servers import Upstream, make_ca, start_mitmdump
from guard.interception import allow_host_patterns
from guard.policy import default_policy_path, load_policy

URL = "https://www.contoso.com/index.html"


def run(rounds: int = 6, per_round: int = 60) -> dict[str, tuple[Side, Side]]:
    """{"new connection"|"keep-alive": (relayed, decrypted)}."""
    urllib3.disable_warnings()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ca, leaf, key = make_ca(folder, ["www.contoso.com"])
        upstream = Upstream(leaf, key, {"/index.html": ("text/html", b"<html>" + b"x" * 2000 + b"</html>")})
        policy = load_policy(default_policy_path())
        patterns = [arg for p in allow_host_patterns(policy) for arg in ("--allow-hosts", p)]
        relayed = start_mitmdump(folder, ca, upstream.port, guard=True, name="relayed", extra=patterns)
        decrypted = start_mitmdump(folder, ca, upstream.port, guard=True, name="decrypted")
        proxies = (relayed, decrypted)
        # the relayed guard passes the origin's certificate through: its client trusts the origin CA
        trust = {relayed.port: ca, decrypted.port: folder / "conf-decrypted" / "mitmproxy-ca-cert.pem"}
        results = {"new connection": (Side(), Side()), "keep-alive": (Side(), Side())}
        try:
            sessions = []
            for proxy in proxies:
                session = _session(proxy, folder)
                session.verify = str(trust[proxy.port])
                sessions.append(session)
                _round(proxy, session, "get", URL, 20, Side())  # warm-up
            for number in range(rounds):
                for index in ((0, 1) if number % 2 == 0 else (1, 0)):
                    proxy = proxies[index]
                    before = proxy.cpu_seconds()
                    side = results["new connection"][index]
                    for _ in range(per_round):
                        with requests.Session() as fresh:
                            fresh.trust_env = False
                            fresh.proxies = {"https": f"http://127.0.0.1:{proxy.port}"}
                            fresh.verify = str(trust[proxy.port])
                            _round(proxy, fresh, "get", URL, 1, Side())
                    spent = proxy.cpu_seconds() - before
                    side.cpu += spent
                    side.requests += per_round
                    side.rounds.append(spent / per_round * 1000)
                    _round(proxy, sessions[index], "get", URL, per_round, results["keep-alive"][index])
        finally:
            for proxy in proxies:
                proxy.stop()
            upstream.close()
    return results


def main() -> None:
    print("| non-discovery HTTPS | relayed CPU ms/req | decrypted CPU ms/req | ratio (median of rounds) |")
    print("|---|---:|---:|---:|")
    for kind, (relayed, decrypted) in run().items():
        print(f"| {kind} | {relayed.cpu_ms_per_request():.2f} | {decrypted.cpu_ms_per_request():.2f} "
              f"| {median_ratio(decrypted, relayed):.2f} |")


if __name__ == "__main__":
    main()
