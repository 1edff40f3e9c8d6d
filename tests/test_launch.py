"""`run`, `pac` and `ca`: the mitmdump command line and the client-side helpers."""

from __future__ import annotations

import argparse
import re
import socket
import subprocess
from pathlib import Path

import pytest

from guard.cli import main
from guard.interception import allow_host_patterns, pac_text
from guard.launch import mitmdump_argv
from guard.policy import load_policy
from guard.proxy.endpoints import DISCOVERY_HOST_GLOBS
from tests.conftest import ROOT


def _args(**overrides: object) -> argparse.Namespace:
    base: dict[str, object] = {"mode": "workstation", "listen": None, "log": None, "confdir": None, "mitmdump_args": [],
            "dns": None, "dns_upstream": None, "web": None, "metrics": None, "save": None, "trusted_proxy": [],
            "intercept": None, "domain": None}
    base.update(overrides)
    return argparse.Namespace(**base)


@pytest.mark.parametrize(
    ("mode", "host", "console", "audit", "only_discovery"),
    [("workstation", "127.0.0.1", "true", False, False), ("gateway", "0.0.0.0", "false", False, True),
     ("audit", "127.0.0.1", "true", True, False)],
)
def test_each_mode_sets_its_listen_address_console_mode_and_interception(
        tmp_path: Path, mode: str, host: str, console: str, audit: bool, only_discovery: bool) -> None:
    policy = load_policy(ROOT / "policies" / "default.yaml")
    argv = mitmdump_argv(_args(mode=mode, confdir=str(tmp_path)), ROOT / "policies" / "default.yaml", policy)
    assert argv[argv.index("--listen-host") + 1] == host
    assert f"guard_console={console}" in argv
    assert ("guard_mode=audit" in argv) is audit
    assert f"confdir={tmp_path}" in argv
    assert "flow_detail=0" in argv
    assert argv.count("--allow-hosts") == (len(allow_host_patterns(policy)) if only_discovery else 0)


def test_intercept_discovery_decrypts_reserved_names_and_the_given_domains_bare(tmp_path: Path) -> None:
    policy = load_policy(ROOT / "policies" / "default.yaml")
    argv = mitmdump_argv(_args(confdir=str(tmp_path), intercept="discovery", domain=["Fabrikam.com"]),
                         ROOT / "policies" / "default.yaml", policy)
    allowed = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--allow-hosts"]
    for host in ("fabrikam.com", "autoconfig.fabrikam.com", "example.com", "mail.example.com", "corp"):
        assert any(re.search(p, f"{host}:443") for p in allowed), host
    assert not any(re.search(p, "fabrikam.com.evil.net:443") for p in allowed)
    assert not any(re.search(p, "contoso.com:443") for p in allowed)


def test_pac_names_the_given_domains_and_reserved_names_or_sends_everything() -> None:
    policy = load_policy(ROOT / "policies" / "default.yaml")
    pac = pac_text("127.0.0.1:8080", policy, ["fabrikam.com"])
    assert 'shExpMatch(host, "fabrikam.com")' in pac and 'shExpMatch(host, "*.example.com")' in pac
    everything = pac_text("127.0.0.1:8080", policy, everything=True)
    assert "DIRECT" not in everything and 'return "PROXY 127.0.0.1:8080";' in everything


def test_a_new_confdir_holding_the_ca_key_is_private_to_its_owner(tmp_path: Path) -> None:
    confdir = tmp_path / "home" / ".autodiscover-guard"
    mitmdump_argv(_args(confdir=str(confdir)), ROOT / "policies" / "default.yaml",
                  load_policy(ROOT / "policies" / "default.yaml"))
    assert confdir.stat().st_mode & 0o777 == 0o700


def test_extra_mitmdump_arguments_are_passed_through(tmp_path: Path) -> None:
    policy = load_policy(ROOT / "policies" / "default.yaml")
    argv = mitmdump_argv(_args(confdir=str(tmp_path), mitmdump_args=["--set", "x=1"], listen="127.0.0.1:9999"),
                         ROOT / "policies" / "default.yaml", policy)
    assert argv[-2:] == ["--set", "x=1"]
    assert argv[argv.index("--listen-port") + 1] == "9999"


def test_allow_hosts_cover_discovery_and_the_policys_own_domains() -> None:
    policy = load_policy(ROOT / "policies" / "gateway.example.yaml")
    patterns = [re.compile(p, re.IGNORECASE) for p in allow_host_patterns(policy)]

    def intercepted(host_port: str) -> bool:
        return any(p.search(host_port) for p in patterns)

    assert intercepted("autodiscover.contoso.com:443")
    assert intercepted("autoconfig.northwind-traders.co.uk:443")
    assert intercepted("prod.autodetect.outlook.cloud.microsoft:443")
    assert intercepted("example-corp.com:443")
    assert not intercepted("www.example-corp.com:443")
    assert not intercepted("www.wikipedia.org:443")


def test_pac_file_sends_discovery_hosts_to_the_guard_and_the_rest_direct(tmp_path: Path) -> None:
    text = pac_text("127.0.0.1:8080", load_policy(ROOT / "policies" / "gateway.example.yaml"))
    assert 'return "PROXY 127.0.0.1:8080";' in text
    assert 'return "DIRECT";' in text
    for glob in DISCOVERY_HOST_GLOBS:
        assert f'shExpMatch(host, "{glob}")' in text
    assert 'shExpMatch(host, "autodiscover.example-corp.com")' in text
    node = subprocess.run(["node", "--version"], capture_output=True, check=False) if _has("node") else None
    if node is not None and node.returncode == 0:
        script = text + (
            'function shExpMatch(s, p) { return new RegExp("^" + p.replace(/[.]/g, "\\\\.").replace(/[*]/g, ".*")'
            ' + "$").test(s); }\n'
            'console.log(FindProxyForURL("", "autodiscover.contoso.com"), FindProxyForURL("", "www.wikipedia.org"));'
        )
        out = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True).stdout
        assert out.strip() == "PROXY 127.0.0.1:8080 DIRECT"


def _has(program: str) -> bool:
    import shutil

    return shutil.which(program) is not None


def test_pac_command_writes_the_file(tmp_path: Path) -> None:
    out = tmp_path / "guard.pac"
    assert main(["pac", "--proxy", "10.1.2.3:3128", "-o", str(out)]) == 0
    assert "PROXY 10.1.2.3:3128" in out.read_text()


def test_ca_command_creates_a_ca_named_for_the_product_and_deployment_in_mitmproxys_layout(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cryptography import x509

    assert main(["ca", "--confdir", str(tmp_path), "--name", "lab-gw"]) == 0
    assert "Created: autodiscover-guard CA (lab-gw)." in capsys.readouterr().out
    cert = x509.load_pem_x509_certificate((tmp_path / "mitmproxy-ca-cert.pem").read_bytes())
    assert cert.subject.rfc4514_string() == "O=autodiscover-guard,CN=autodiscover-guard CA (lab-gw)"
    assert b"PRIVATE KEY" in (tmp_path / "mitmproxy-ca.pem").read_bytes()  # what mitmproxy loads
    assert (tmp_path / "mitmproxy-ca.pem").stat().st_mode & 0o077 == 0


def test_ca_command_keeps_an_existing_ca_unless_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["ca", "--confdir", str(tmp_path), "--name", "first"])
    first = (tmp_path / "mitmproxy-ca-cert.pem").read_bytes()
    assert main(["ca", "--confdir", str(tmp_path), "--name", "second"]) == 0
    assert "add --force to replace it" in capsys.readouterr().out
    assert (tmp_path / "mitmproxy-ca-cert.pem").read_bytes() == first
    main(["ca", "--confdir", str(tmp_path), "--name", "second", "--force"])
    assert b"second" not in first and (tmp_path / "mitmproxy-ca-cert.pem").read_bytes() != first


def test_ca_command_warns_about_an_open_key_and_advises_adding_to_the_system_store(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["ca", "--confdir", str(tmp_path)])
    (tmp_path / "mitmproxy-ca.pem").chmod(0o644)
    main(["ca", "--confdir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "TOO OPEN" in out
    assert "update-ca-certificates" in out and "never replace a store" in out
    assert "REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt" in out
    main(["ca", "--confdir", str(tmp_path), "--path"])
    assert capsys.readouterr().out.strip() == str(tmp_path / "mitmproxy-ca-cert.pem")


def test_run_refuses_an_invalid_policy_before_starting_mitmdump(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nmode: sometimes\n")
    assert main(["run", "--policy", str(bad), "--confdir", str(tmp_path)]) == 2
    assert f"{bad}:2:" in capsys.readouterr().err


def test_dns_listener_forwards_to_the_given_upstream_and_allows_it(tmp_path: Path) -> None:
    policy = load_policy(ROOT / "policies" / "default.yaml")
    argv = mitmdump_argv(_args(confdir=str(tmp_path), dns=5300, dns_upstream="192.0.2.53:5353", intercept="discovery"),
                         ROOT / "policies" / "default.yaml", policy)
    modes = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--mode"]
    assert modes == ["regular", "reverse:dns://192.0.2.53:5353@5300"]
    allowed = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--allow-hosts"]
    assert any(re.search(p, "192.0.2.53:5353") for p in allowed)
    assert not any(re.search(p, "192.0.2.53:53") for p in allowed)


def test_dns_listener_without_upstream_uses_dns_mode(tmp_path: Path) -> None:
    policy = load_policy(ROOT / "policies" / "default.yaml")
    argv = mitmdump_argv(_args(confdir=str(tmp_path), dns=53), ROOT / "policies" / "default.yaml", policy)
    assert [argv[i + 1] for i, arg in enumerate(argv) if arg == "--mode"] == ["regular", "dns@53"]


@pytest.mark.parametrize(("dns", "upstream"), [(None, "127.0.0.1"), (53, "resolver.example.net"), (70000, None)])
def test_bad_dns_options_are_refused(tmp_path: Path, dns: int | None, upstream: str | None) -> None:
    policy = load_policy(ROOT / "policies" / "default.yaml")
    with pytest.raises(ValueError, match=r"."):
        mitmdump_argv(_args(confdir=str(tmp_path), dns=dns, dns_upstream=upstream),
                      ROOT / "policies" / "default.yaml", policy)


def test_run_web_refuses_a_ui_address_off_loopback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--web", "0.0.0.0:8081", "--confdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --web 0.0.0.0:8081: the UI listens on loopback only") and "ssh -L" in err


def test_run_web_and_metrics_pass_their_addresses_to_mitmweb(tmp_path: Path) -> None:
    policy = load_policy(ROOT / "policies" / "default.yaml")
    argv = mitmdump_argv(_args(confdir=str(tmp_path), web="127.0.0.1:9081", metrics="127.0.0.1:9464",
                               save=str(tmp_path / "c.flows")), ROOT / "policies" / "default.yaml", policy)
    assert argv[0].endswith("/mitmweb")
    assert {"web_host=127.0.0.1", "web_port=9081", "web_open_browser=false", "web_columns=comment",
            "guard_metrics_listen=127.0.0.1:9464", f"save_stream_file={tmp_path / 'c.flows'}"} <= set(argv)


def test_run_with_a_busy_metrics_port_names_metrics_before_any_banner(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy, socket.socket() as free:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        free.bind(("127.0.0.1", 0))
        listen, metrics = free.getsockname()[1], busy.getsockname()[1]
        free.close()  # a port nobody listens on, for --listen
        assert main(["run", "--listen", f"127.0.0.1:{listen}", "--metrics", f"127.0.0.1:{metrics}",
                     "--confdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --metrics 127.0.0.1:{metrics}: cannot listen there") and "listening on" not in err
