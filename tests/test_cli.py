"""The CLI contract: commands, JSON shapes and exit codes (0 allow, 1 violation, 2 error)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from guard.cli import main
from tests.conftest import FIXTURES, ROOT

SEED = str(FIXTURES / "autodetect__seed_example_com.json")
BENIGN = str(FIXTURES / "autodetect__benign_own_domain.json")


def test_check_json_prints_one_object_per_input(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", "--email", "email@example.com", "--json", SEED, SEED])
    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert len(lines) == 2
    obj = json.loads(lines[0])
    assert obj["file"] == SEED
    assert obj["format"] == "autodetect"
    assert obj["verdict"] == "violation"
    assert obj["action"] == "block"
    assert [f["rule"] for f in obj["findings"]][:1] == ["reserved-user-domain"]
    assert set(obj["findings"][0]) >= {"rule", "host", "field", "message"}


def test_check_exits_zero_when_everything_is_allowed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--email", "bob@northwind-traders.co.uk", BENIGN]) == 0
    assert "allow" in capsys.readouterr().out


def test_check_human_output_names_rule_host_and_field(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--email", "email@example.com", SEED]) == 1
    out = capsys.readouterr().out
    assert "imapgms.jnet.sei.co.jp" in out
    assert "protocols[0].hostname" in out


def test_check_reads_standard_input(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(Path(SEED).read_bytes())))
    assert main(["check", "--email", "email@example.com", "--json", "-"]) == 1
    assert json.loads(capsys.readouterr().out)["file"] == "-"


def test_malformed_input_is_a_violation(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--email", "alice@contoso.com", str(FIXTURES / "pox__truncated.xml")]) == 1
    assert "malformed" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["check", "--email", "not-an-address", SEED],
        ["check", "--email", "a@b.com", "/nonexistent/file.xml"],
        ["check", "--email", "a@b.com", "--policy", "/nonexistent.yaml", SEED],
    ],
)
def test_usage_io_and_policy_errors_exit_two(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.strip() and "Traceback" not in err


def test_bad_arguments_exit_two() -> None:
    with pytest.raises(SystemExit) as info:
        main(["check"])
    assert info.value.code == 2


def test_policy_validate_reports_file_line_and_exits_two_on_error(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  foreign-host: sometimes\n")
    assert main(["policy", "validate", str(ROOT / "policies" / "default.yaml"), str(bad)]) == 2
    captured = capsys.readouterr()
    assert "valid:" in captured.out
    assert f"{bad}:3:" in captured.err


def test_policy_test_runs_cases_and_summarises(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["policy", "test", str(ROOT / "policies" / "default.yaml"), str(ROOT / "tests" / "cases")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "4 passed, 0 failed" in out


def test_policy_test_fails_when_an_expectation_is_wrong(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = tmp_path / "c.yaml"
    case.write_text(f"email: bob@northwind-traders.co.uk\ndocument: {BENIGN}\nexpect:\n  verdict: violation\n")
    assert main(["policy", "test", str(ROOT / "policies" / "default.yaml"), str(tmp_path)]) == 1
    assert "0 passed, 1 failed" in capsys.readouterr().out


def test_corpus_json_ends_with_a_summary_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(FIXTURES / "autoconfig__trailing_dot_mixed_case.xml", tmp_path / "northwind-traders.co.uk.xml")
    shutil.copy(FIXTURES / "autoconfig__seed_example_com.xml", tmp_path / "example.com.xml")
    code = main(["corpus", "--json", str(tmp_path)])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1
    summary = lines[-1]
    assert set(summary) == {"providers", "domains", "pairs", "flagged_pairs", "flagged_rate", "flagged_providers"}
    assert summary["providers"] == 2
    assert summary["flagged_providers"] == 1
    assert all(set(line) == {"provider", "domain", "host", "rules"} for line in lines[:-1])
    assert any(line["host"] == "imapgms.jnet.sei.co.jp" for line in lines[:-1])


def test_console_script_is_installed_and_runs() -> None:
    script = Path(sys.executable).parent / "autodiscover-guard"
    result = subprocess.run([str(script), "check", "--email", "email@example.com", "--json", SEED],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert json.loads(result.stdout)["verdict"] == "violation"
