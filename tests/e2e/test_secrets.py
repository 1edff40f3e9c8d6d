"""The secrets sweep can fail: it finds planted credentials, and every guard proxy is registered with it."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote_plus

import pytest

from tests.e2e.conftest import ProxyFactory
from tests.e2e.support.secrets import PASSWORD, SWEEP, TOKEN, Sweep, bearer

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("planted", ["basic", "password", "form-encoded", "bearer"])
def test_the_sweep_finds_a_planted_credential(tmp_path: Path, planted: str) -> None:
    sweep = Sweep()
    value = {"basic": sweep.basic("bob@contoso.com").split()[1], "password": PASSWORD,
             "form-encoded": quote_plus(PASSWORD), "bearer": bearer()}[planted]
    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / "deep" / "er" / "decisions.jsonl").write_text('{"event": "decision"}\n{"url": "' + value + '"}\n')
    sweep.watch_path(tmp_path)
    leaks = sweep.leaks()
    assert leaks and all(leak.startswith(str(tmp_path / "deep" / "er" / "decisions.jsonl")) for leak in leaks)
    assert PASSWORD not in "".join(leaks) and TOKEN not in "".join(leaks)  # the report names, never repeats


def test_the_sweep_reads_outputs_and_passes_clean_ones(tmp_path: Path) -> None:
    sweep = Sweep()
    (tmp_path / "clean.jsonl").write_text('{"url": "https://autodiscover.contoso.com/?password=REDACTED"}\n')
    sweep.watch_path(tmp_path)
    sweep.watch_path(Path("/dev/full"))  # a device is not read
    output: list[str] = ["listening"]
    sweep.watch_text("mitmdump output", lambda: "\n".join(output))
    assert sweep.leaks() == []
    output.append(f"Authorization: {sweep.basic('carol@contoso.com')}")  # read at the end, not when watched
    assert sweep.leaks() == ["mitmdump output: the Basic token of carol@contoso.com"]


def test_every_guard_proxy_is_swept(guard_proxy: ProxyFactory) -> None:
    proxy = guard_proxy()
    assert proxy.log_path in SWEEP.paths or proxy.log_path.parent in SWEEP.paths
    assert any(name.startswith("mitmdump output") for name, _ in SWEEP.texts)
