"""`autodiscover-guard replay`: saved flows re-judged against a policy, never modified."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mitmproxy import http, io
from mitmproxy.test import tflow

from guard.cli import main
from tests.conftest import FIXTURES


def _flow(url: str, body: bytes, email: str, ctype: str = "application/json") -> http.HTTPFlow:
    flow = tflow.tflow(resp=True)
    headers: dict[str | bytes, str | bytes] = {"X-Email": email}
    flow.request = http.Request.make("GET", url, headers=headers)
    flow.response = http.Response.make(200, body, {"Content-Type": ctype})
    return flow


def _write(path: Path, flows: list[http.HTTPFlow]) -> None:
    with path.open("wb") as handle:
        writer = io.FlowWriter(handle)
        for flow in flows:
            writer.add(flow)


def test_replay_rejudges_saved_discovery_flows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed = (FIXTURES / "autodetect__seed_example_com.json").read_bytes()
    benign = (FIXTURES / "autodetect__benign_own_domain.json").read_bytes()
    path = tmp_path / "flows.mitm"
    _write(path, [
        _flow("https://prod.autodetect.outlook.cloud.microsoft/autodetect/detect", seed, "email@example.com"),
        _flow("https://prod.autodetect.outlook.cloud.microsoft/autodetect/detect", benign,
              "bob@northwind-traders.co.uk"),
        _flow("https://www.example.org/index.html", b"<html/>", "", "text/html"),
    ])
    assert main(["replay", "--json", str(path)]) == 1
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["would_action"] for r in records] == ["block", "allow"]
    assert records[0]["rules"][0] == "reserved-user-domain"
    assert all(r["action"] == "allow" for r in records)  # replay is audit: nothing is changed
    assert "2 discovery flows judged" in captured.err


def test_replay_of_a_file_that_is_not_a_flow_file_exits_two(tmp_path: Path) -> None:
    path = tmp_path / "junk.mitm"
    path.write_bytes(b"this is not a flow file")
    assert main(["replay", str(path)]) == 2
