"""`run`, `pac` and `ca`: starting mitmdump with the guard, and helping clients reach and trust it.

What the guard decrypts is `--intercept` (docs/workstation.md, docs/gateway.md): `all` (the
workstation and audit default: only the mail client uses the guard, and clients fetch discovery
URLs on the bare mail domain, which no host list can name in advance) or `discovery` (the gateway
default, least interception): mitmproxy's `allow_hosts` gets the endpoint table's hosts, reserved
names, and the user's mail domains (`--domain`, the policy's `discovery_hosts`) with their
discovery names; every other TLS connection is relayed untouched, before any decryption.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import re
import socket
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from guard.exits import CommandError, Exit
from guard.interception import allow_host_patterns, cmd_pac, own_domains
from guard.mx import parse_resolver
from guard.policy import Policy, default_policy_path, load_policy, shipped_policy_dir
from guard.proxy.ca import CA_BASENAME, ca_common_name, create_ca
from guard.proxy.identity import parse_trusted
from guard.pseudonym import default_state_dir


@dataclass(frozen=True, slots=True)
class ModeDefaults:
    """What each deployment mode sets unless the user overrides it."""

    listen: str
    console: bool
    guard_mode: str
    json_console: bool = False  # only JSON lines on stdout/stderr (the journal), per-connection lines off
    intercept: str = "all"  # `--intercept` default: "all" where only mail clients use the guard


MODES = {
    "workstation": ModeDefaults("127.0.0.1:8080", console=True, guard_mode=""),
    "gateway": ModeDefaults("0.0.0.0:8080", console=False, guard_mode="", json_console=True, intercept="discovery"),
    "audit": ModeDefaults("127.0.0.1:8080", console=True, guard_mode="audit"),
}

# What a guard without its DNS listener cannot judge, said at start (docs/workstation.md, coverage).
NO_DNS_GAP = (
    "no --dns: TXT mailconf= records are not judged; the document such a record names is judged for the host "
    "that serves it, so a record pointing at a foreign host is not caught (point the client's resolver at --dns)"
)

# What `--intercept discovery` leaves unjudged, said at start (docs/gateway.md, coverage).
DISCOVERY_ONLY_GAP = (
    "intercept=discovery: URLs on a bare mail domain (https://D/.well-known/autoconfig/…, "
    "https://D/autodiscover/autodiscover.xml|svc, a TXT mailconf= URL) are judged only for reserved names "
    "and the domains given with --domain or discovery_hosts{domains}; other domains' bare URLs pass undecrypted"
)


def default_confdir() -> Path:
    """The guard's own mitmproxy confdir: its CA, and no user config.yaml overriding policy options.

    The same folder as the pseudonym key's (`guard.pseudonym.default_state_dir`).
    """
    return default_state_dir()


def addon_path() -> Path:
    """The shim `mitmdump -s` loads (in a wheel: the package's `_addons`)."""
    here = Path(__file__).resolve().parent
    return (here / "_addons" if (here / "_addons").is_dir() else here.parent / "addons") / "autodiscover_guard.py"


WEB_DEFAULT = "127.0.0.1:8081"  # mitmweb's own default UI address
WEB_COLUMNS = ("icon", "path", "method", "status", "size", "time", "comment")  # the comment shows the decision


def _split_listen(listen: str, flag: str = "--listen") -> tuple[str, str]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host or not 0 < int(port) < 65536:
        raise ValueError(f"{flag} expects HOST:PORT such as 127.0.0.1:8080, got {listen!r}")
    return host.strip("[]"), port


def _web_address(web: str) -> tuple[str, str]:
    """The mitmweb UI address: loopback only, since the UI shows every flow (credentials included)
    and can change and replay them."""
    host, port = _split_listen(web, "--web")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ValueError(f"--web {web}: the UI listens on loopback only (127.0.0.1 or [::1]); reach it from "
                         "elsewhere through an SSH tunnel (ssh -L 8081:127.0.0.1:8081 HOST)")
    return host, port


def ensure_free(flag: str, host: str, port: str) -> None:
    """Fail before the banner when a TCP address cannot be bound, naming the option that sets it.

    The probe binds the way asyncio's servers do (SO_REUSEADDR), so only a real listener or a
    missing address fails it.

    Raises:
        CommandError: the address is in use, not local, or needs privileges.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        raise CommandError(f"{flag} {host}:{port}: cannot listen there ({exc.strerror or exc}); "
                           f"another program (another guard?) may hold it: choose a free one with "
                           f"{flag} HOST:PORT") from None


def dns_mode(port: int, upstream: str | None) -> tuple[str, str | None]:
    """The mitmproxy mode of the DNS listener (docs/dns.md), and the `--allow-hosts`
    pattern its upstream needs (None for `dns@`).

    Without an upstream, `dns@PORT`: A/AAAA through the system's resolvers, every other type
    (SRV included) forwarded to the first system name server on port 53. With one,
    `reverse:dns://HOST:PORT@PORT`: every query forwarded to that resolver, on any port. A
    reverse-mode connection is subject to `allow_hosts` like any other (matched on the upstream
    "IP:PORT"), so without the pattern it would be relayed as raw UDP, unjudged.

    Raises:
        ValueError: a bad port or an upstream that is not `IP[:PORT]`.
    """
    if not 0 < port < 65536:
        raise ValueError(f"--dns port {port} out of range")
    if upstream is None:
        return f"dns@{port}", None
    address, upstream_port = parse_resolver(upstream)
    shown = f"[{address}]" if ":" in address else address
    return f"reverse:dns://{shown}:{upstream_port}@{port}", rf"^{re.escape(address)}:{upstream_port}$"


def parse_trusted_list(items: list[str]) -> list[str]:
    """`--trusted-proxy` values (repeatable, or comma-separated), checked before mitmdump starts.

    Raises:
        ValueError: one that is not an address or CIDR.
    """
    spec = ",".join(items)
    return [str(network) for network in parse_trusted(spec)]


def mitmdump_argv(args: argparse.Namespace, policy_path: Path, policy: Policy) -> list[str]:
    """The full mitmdump (or, with `--web`, mitmweb) command line for `run`."""
    defaults = MODES[args.mode]
    host, port = _split_listen(args.listen or defaults.listen)
    confdir = Path(args.confdir) if args.confdir else default_confdir()
    confdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    log = args.log or (str(confdir / "decisions.jsonl") if args.mode != "gateway" else "")
    argv = [
        str(Path(sys.executable).parent / ("mitmweb" if args.web else "mitmdump")),
        "--listen-host", host, "--listen-port", port,
        "-s", str(addon_path()),
        "--set", f"confdir={confdir}",
        "--set", f"guard_policy={policy_path}",
        "--set", f"guard_log={log}",
        "--set", f"guard_console={'true' if defaults.console else 'false'}",
        "--set", "flow_detail=0",  # never dump flows (they hold credentials) to the terminal
        "--set", "connection_strategy=lazy",  # a blocked request never even connects upstream
        "--set", f"body_size_limit={policy.limits.max_body_bytes}",
    ]
    if defaults.guard_mode:
        argv += ["--set", f"guard_mode={defaults.guard_mode}"]
    if args.web:
        web_host, web_port = _web_address(args.web)
        argv += ["--set", f"web_host={web_host}", "--set", f"web_port={web_port}", "--set", "web_open_browser=false"]
        argv += [arg for column in WEB_COLUMNS for arg in ("--set", f"web_columns={column}")]
    if args.metrics:
        _split_listen(args.metrics, "--metrics")
        argv += ["--set", f"guard_metrics_listen={args.metrics}"]
    if args.save:
        argv += ["--set", f"save_stream_file={Path(args.save).resolve()}"]
    if defaults.json_console:  # warnings and errors stay, as JSON; connect/disconnect lines are info
        argv += ["--set", "guard_json_console=true", "--set", "termlog_verbosity=warn"]
    if args.trusted_proxy:
        argv += ["--set", f"guard_trusted_proxies={','.join(parse_trusted_list(args.trusted_proxy))}"]
    intercept = intercept_scope(args)
    patterns = allow_host_patterns(policy, getattr(args, "domain", None)) if intercept == "discovery" else []
    if args.dns is not None:
        mode, upstream = dns_mode(args.dns, args.dns_upstream)
        argv += ["--mode", "regular", "--mode", mode]
        patterns += [upstream] if upstream and patterns else []
    elif args.dns_upstream is not None:
        raise ValueError("--dns-upstream needs --dns")
    for pattern in patterns:  # none: mitmproxy decrypts every connection
        argv += ["--allow-hosts", pattern]
    return argv + list(args.mitmdump_args)


def intercept_scope(args: argparse.Namespace) -> str:
    """`--intercept`, else the mode's default."""
    return str(getattr(args, "intercept", None) or MODES[args.mode].intercept)


def cmd_run(args: argparse.Namespace) -> int:
    """Replace this process with mitmdump (or mitmweb) running the guard, once its addresses are free."""
    policy_path = Path(args.policy) if args.policy else (
        shipped_policy_dir() / "audit.yaml" if args.mode == "audit" else default_policy_path()
    )
    policy = load_policy(policy_path)  # fail here, with file:line, before mitmdump starts
    create_ca(Path(args.confdir) if args.confdir else default_confdir(), None)  # else mitmproxy names it "mitmproxy"
    try:
        argv = mitmdump_argv(args, policy_path.resolve(), policy)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    host, port = argv[argv.index("--listen-host") + 1], argv[argv.index("--listen-port") + 1]
    ensure_free("--listen", host, port)
    extras = [f"DNS on {host}:{args.dns}"] if args.dns is not None else []
    if args.metrics:
        ensure_free("--metrics", *_split_listen(args.metrics, "--metrics"))
        extras.append(f"metrics on http://{args.metrics}/metrics")
    if args.web:
        web_host, web_port = _web_address(args.web)
        ensure_free("--web", web_host, web_port)
        extras.append(f"mitmweb UI on http://{args.web}/ (mitmweb prints the link with its token below)")
    intercept = intercept_scope(args)
    gaps = [] if args.dns is not None else [NO_DNS_GAP]
    if intercept == "discovery":
        domains = own_domains(policy, args.domain)
        gaps.append(DISCOVERY_ONLY_GAP.format(domains=f" ({', '.join(domains)})" if domains else " (none given)"))
    if MODES[args.mode].json_console:
        print(json.dumps({"ts": datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z"),
                          "event": "starting", "mode": args.mode, "policy": str(policy_path),
                          "policy_revision": policy.revision, "listen": f"{host}:{port}",
                          "dns": args.dns, "trusted_proxies": args.trusted_proxy or [],
                          "metrics": args.metrics, "web": args.web, "intercept": intercept, "not_judged": gaps}),
              file=sys.stderr, flush=True)
    else:
        extras.append(f"intercept={intercept}")
        print(f"autodiscover-guard: {args.mode} mode, policy {policy_path} (revision {policy.revision}), "
              f"listening on {host}:{port}" + "".join(f", {e}" for e in extras),
              file=sys.stderr, flush=True)
        for gap in gaps:
            print("autodiscover-guard: " + gap, file=sys.stderr, flush=True)
    os.execv(argv[0], argv)  # noqa: S606 - fixed argv, no shell
    return Exit.OK  # pragma: no cover - execv does not return


CA_HELP = """\
The guard's CA certificate: {cert}
{state}
Give clients the certificate (never the key file mitmproxy-ca.pem, which must stay private:
mode 600, owned by the user running the guard). Add it to each store next to the roots already
there; never replace a store or bundle with this file alone: only discovery hosts are decrypted,
every other HTTPS site still presents its own certificate from a public CA.

  Debian/Ubuntu   sudo cp {cert} /usr/local/share/ca-certificates/autodiscover-guard.crt
                  sudo update-ca-certificates
  Fedora/RHEL     sudo cp {cert} /etc/pki/ca-trust/source/anchors/ && sudo update-ca-trust
  macOS           sudo security add-trusted-cert -d -r trustRoot \\
                      -k /Library/Keychains/System.keychain {cert}
  Windows         certutil -addstore root {cer}
  Thunderbird     Settings → Privacy & Security → Certificates → Manage Certificates →
                  Authorities → Import {cert} ("Trust this CA to identify websites")
  Firefox         same dialog as Thunderbird (it keeps its own store)
  Java            keytool -importcert -cacerts -alias autodiscover-guard -file {cert}
  curl, OpenSSL   the system store above (Debian/Ubuntu, Fedora/RHEL): nothing more to do
  Python requests REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt (the system bundle, which
                  now holds the guard's CA too; requests' own certifi bundle does not)
  Android/iOS     install {cer} as a user CA profile (see docs/workstation.md)
"""


def cmd_ca(args: argparse.Namespace) -> int:
    """Create the CA when missing (or with --force), say where it is and how to trust it."""
    confdir = Path(args.confdir) if args.confdir else default_confdir()
    cert = confdir / f"{CA_BASENAME}-ca-cert.pem"
    key = confdir / f"{CA_BASENAME}-ca.pem"
    if args.path:
        print(cert)
        return 0
    if create_ca(confdir, args.name, force=args.force):
        state = f"Created: {ca_common_name(args.name)}."
    elif args.name:
        state = "Present (kept; --name applies only to a new CA: add --force to replace it, then redistribute)."
    else:
        state = "Present."
    mode = key.stat().st_mode & 0o777 if key.exists() else 0
    state += f" Private key {key} has mode {mode:o}" + (
        " — TOO OPEN, run: chmod 600 " + str(key) if mode & 0o077 else " (private, good).")
    print(CA_HELP.format(cert=cert, cer=confdir / f"{CA_BASENAME}-ca-cert.cer", state=state))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Report saved flows as the guard recorded or re-judges them; exit 1 when any was or would be
    rewritten or blocked (docs/replay.md)."""
    import io
    import json

    from guard.log import DecisionLog
    from guard.proxy.replay import NotAFlowFile, replay_flows

    policy = load_policy(args.policy or default_policy_path())
    counts: Counter[str] = Counter()
    bases: Counter[str] = Counter()
    try:
        for result in replay_flows(Path(args.flows), policy, DecisionLog(stream=io.StringIO())):
            counts[result.would_action] += 1
            bases[result.basis.value] += 1
            if args.json:
                print(json.dumps(result.as_dict()))
            else:
                rules = ",".join(result.rules) or "-"
                print(f"{result.would_action.upper():<8} {result.basis.value:<19} {result.format:<12} "
                      f"{rules:<40} {result.url}")
    except OSError as exc:
        raise CommandError(f"{args.flows}: {exc.strerror or exc}") from None
    except NotAFlowFile as exc:
        raise CommandError(f"{args.flows}: not a mitmproxy flow file ({exc}); save one with "
                           "`autodiscover-guard run --save FILE` or mitmdump -w FILE") from None
    print(f"{sum(counts.values())} discovery flows: " + ", ".join(f"{n} {a}" for a, n in sorted(counts.items()))
          + (" (" + ", ".join(f"{n} {b}" for b, n in sorted(bases.items())) + ")" if bases else ""),
          file=sys.stderr)
    return Exit.FINDING if counts["block"] + counts["rewrite"] else Exit.OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `run`, `pac`, `ca` and `replay` to the CLI."""
    run = sub.add_parser("run", help="start the guarding proxy (mitmdump with the addon)")
    run.add_argument("--mode", choices=sorted(MODES), default="workstation")
    run.add_argument("--policy", help="policy file (default: default.yaml; audit.yaml in audit mode)")
    run.add_argument("--listen", help="HOST:PORT (workstation/audit 127.0.0.1:8080, gateway 0.0.0.0:8080)")
    run.add_argument("--log", help="decision log file (JSON lines; gateway default: stderr)")
    run.add_argument("--confdir", help="mitmproxy confdir: CA and options (default ~/.autodiscover-guard)")
    run.add_argument("--dns", type=int, nargs="?", const=53, metavar="PORT",
                     help="also listen for DNS on PORT (default 53) and judge mail SRV answers (docs/dns.md)")
    run.add_argument("--dns-upstream", metavar="IP[:PORT]",
                     help="resolver the DNS listener forwards to (default: the system's, SRV to port 53)")
    run.add_argument("--web", nargs="?", const=WEB_DEFAULT, metavar="HOST:PORT",
                     help=f"run mitmweb instead of mitmdump, its UI on loopback HOST:PORT (default {WEB_DEFAULT}); "
                          "decisions show as flow comments and markers (docs/workstation.md)")
    run.add_argument("--metrics", metavar="HOST:PORT",
                     help="serve Prometheus metrics at http://HOST:PORT/metrics (default: off; docs/report.md)")
    run.add_argument("--save", metavar="FILE",
                     help="save every flow to FILE (mitmproxy's -w) with the guard's decisions, for `replay` "
                          "(default: off; docs/replay.md; the file holds credentials: keep it private)")
    run.add_argument("--trusted-proxy", action="append", default=[], metavar="ADDR[/BITS]",
                     help="load balancer whose X-Forwarded-For (last element) names the client; repeatable "
                          "(default: none; docs/gateway.md, trust boundary)")
    run.add_argument("--intercept", choices=("all", "discovery"),
                     help="decrypt all HTTPS through the guard, or only discovery hosts, reserved names and "
                          "--domain (default: all for workstation and audit, discovery for gateway)")
    run.add_argument("--domain", action="append", metavar="DOMAIN",
                     help="a user's mail domain whose bare-domain discovery URLs are decrypted under "
                          "--intercept discovery (repeatable; default: the policy's discovery_hosts only)")
    run.add_argument("mitmdump_args", nargs=argparse.REMAINDER, metavar="-- MITMDUMP_ARGS")
    run.set_defaults(func=_run_with_remainder)

    pac = sub.add_parser("pac", help="write a PAC file sending discovery hosts and your mail domains to the guard")
    pac.add_argument("--proxy", default="127.0.0.1:8080", help="HOST:PORT of the guard")
    pac.add_argument("--domain", action="append", metavar="DOMAIN",
                     help="a user's mail domain: its bare name and discovery names go to the guard "
                          "(repeatable; default: the policy's discovery_hosts only)")
    pac.add_argument("--all", action="store_true", help="send all traffic to the guard (it decides what to decrypt)")
    pac.add_argument("--policy", help="policy whose discovery_hosts are added")
    pac.add_argument("-o", "--output", help="file to write (default: stdout)")
    pac.set_defaults(func=cmd_pac)

    ca = sub.add_parser("ca", help="create the guard's CA (once), say where it is and how to trust it")
    ca.add_argument("--confdir", help="mitmproxy confdir (default ~/.autodiscover-guard)")
    ca.add_argument("--path", action="store_true", help="print only the certificate path (creates nothing)")
    ca.add_argument("--name", help="deployment name in the CA's subject (default: this host's name)")
    ca.add_argument("--force", action="store_true",
                    help="replace an existing CA (every client must then trust the new one)")
    ca.set_defaults(func=cmd_ca)

    replay = sub.add_parser("replay", help="what the guard did, or would do, with saved mitmproxy flows")
    replay.add_argument("--policy", help="policy file (default: the shipped default policy)")
    replay.add_argument("--json", action="store_true", help="print the decision records as JSON lines")
    replay.add_argument("flows", metavar="FLOWS")
    replay.set_defaults(func=cmd_replay)


def _run_with_remainder(args: argparse.Namespace) -> int:
    if args.mitmdump_args and args.mitmdump_args[0] == "--":
        args.mitmdump_args = args.mitmdump_args[1:]
    return cmd_run(args)
