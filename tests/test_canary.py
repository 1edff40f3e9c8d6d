"""The canary's services file (errors name file:line:column) and the requests it sends per kind.

Answers from real services are in tests/e2e/test_canary_services.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from guard.canary import DEFAULT_ADDRESSES, Service, load_services, request_for
from guard.cli import main
from guard.errors import PolicyError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "services.yaml"
    path.write_text(text)
    return path


def test_a_services_file_lists_services_and_defaults_to_every_reserved_kind_of_domain(tmp_path: Path) -> None:
    loaded = load_services(write(tmp_path, "version: 1\nservices:\n  - name: a\n    kind: adv2\n"
                                           "    url: https://autodiscover.contoso.com/autodiscover/autodiscover.json\n"
                                           "    headers: {User-Agent: probe}\n"))
    assert loaded.services == (Service("a", "adv2", "https://autodiscover.contoso.com/autodiscover/autodiscover.json",
                                       (("User-Agent", "probe"),)),)
    assert {a.rpartition(".")[2] for a in loaded.addresses} == {"com", "net", "org", "test", "invalid", "example"}
    assert loaded.addresses == DEFAULT_ADDRESSES


@pytest.mark.parametrize(("text", "where", "reason"), [
    ("version: 1\nservices:\n  - name: a\n    kind: smtp\n    url: https://x.contoso.com/\n", ":4:11",
     "unknown kind 'smtp'"),
    ("version: 1\nservices:\n  - name: a\n    kind: pox\n    url: file:///etc/passwd\n", ":5:10",
     "expected an absolute http:// or https:// URL"),
    ("version: 1\naddresses: [alice@contoso.com]\nservices:\n  - {name: a, kind: pox, url: 'https://x.contoso.com/'}\n",
     ":2:13", "contoso.com is not a reserved domain"),
    ("version: 1\nservices:\n  - name: a\n    kind: pox\n    url: https://x.contoso.com/\n"
     "    headers: {Authorization: Basic eDp5}\n", ":6:30", "canaries never send credentials"),
    ("version: 1\nservices:\n  - {name: a, kind: pox, url: 'https://x.contoso.com/'}\n"
     "  - {name: a, kind: adv2, url: 'https://x.contoso.com/'}\n", ":4:5", "duplicate service name 'a'"),
    ("version: 1\nservices: []\n", ":2:11", "at least one service"),
    ("version: 1\nservices:\n  - {name: a, kind: pox, url: 'https://x.contoso.com/', headers: [x]}\n", ":3:66",
     "expected a mapping"),
    ("version: 1\nservice: []\n", ":2:1", "unknown key 'service'; did you mean 'services'?"),  # at the key
])
def test_services_file_errors_name_file_line_and_column(tmp_path: Path, text: str, where: str, reason: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as raised:
        load_services(path)
    assert str(raised.value).startswith(f"{path}{where}: ") and reason in str(raised.value)


def test_each_kind_asks_the_way_its_clients_do() -> None:
    address = "canary@example.com"
    adv2 = request_for(Service("v2", "adv2", "https://ad.contoso.com/autodiscover/autodiscover.json"), address)
    assert adv2.full_url.endswith("autodiscover.json?Email=canary@example.com&Protocol=AutodiscoverV1")
    ispdb = request_for(Service("db", "ispdb", "https://autoconfig.thunderbird.net/v1.1/"), address)
    assert ispdb.full_url == "https://autoconfig.thunderbird.net/v1.1/example.com"
    detect = request_for(Service("ad", "autodetect", "https://ad.contoso.com/detect?app=x"), address)
    assert detect.get_method() == "GET" and detect.get_header("X-email") == address
    pox = request_for(Service("pox", "pox", "https://ad.contoso.com/autodiscover/autodiscover.xml"), address)
    assert pox.get_method() == "POST" and isinstance(pox.data, bytes)
    assert b"<EMailAddress>canary@example.com</EMailAddress>" in pox.data
    own = request_for(Service("own", "autoconfig", "https://cfg.contoso.com/{domain}/{local}.xml?a=1"), address)
    assert own.full_url == "https://cfg.contoso.com/example.com/canary.xml?a=1"
    plain = request_for(Service("ac", "autoconfig", "https://cfg.contoso.com/mail/config-v1.1.xml?x=1"), address)
    assert plain.full_url.endswith("config-v1.1.xml?x=1&emailaddress=canary@example.com")
    assert all("Authorization" not in r.headers for r in (adv2, ispdb, detect, pox, own, plain))


def test_canary_usage_and_file_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as missing:  # --services is required: argparse's usage error
        main(["canary"])
    assert missing.value.code == 2
    assert main(["canary", "--services", str(tmp_path / "absent.yaml")]) == 2
    assert "services file: " in capsys.readouterr().err
    good = write(tmp_path, "version: 1\nservices:\n  - {name: a, kind: pox, url: 'https://x.contoso.com/'}\n")
    assert main(["canary", "--services", str(good), "--ca-bundle", str(tmp_path / "absent.pem")]) == 2
    assert main(["canary", "--services", str(good), "--timeout", "0"]) == 2


def test_an_unreachable_service_is_an_error_exit_2_not_a_pass(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    closed = write(tmp_path, "version: 1\naddresses: [canary@example.com]\nservices:\n"
                             "  - {name: down, kind: autoconfig, url: 'http://127.0.0.1:9/mail/config-v1.1.xml'}\n")
    assert main(["canary", "--services", str(closed), "--timeout", "2"]) == 2
    assert "1 probes of 1 services: 0 finding(s), 1 error(s)" in capsys.readouterr().out
