"""The CLI contract: commands, JSON shapes and exit codes (0 allow, 1 violation, 2 error)."""

from __future__ import annotations

import json
import re
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


# --- polish: version, help, validation, completion (issue 15) ------------------------------------


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"autodiscover-guard {version('autodiscover-guard')}"


def all_commands() -> dict[str, object]:
    from guard.cli import build_parser
    from guard.cli_help import subparsers as _subparsers

    return dict(_subparsers(build_parser()))


@pytest.mark.parametrize("command", sorted(all_commands()))
def test_every_command_help_has_examples_exit_codes_and_a_docs_page(command: str) -> None:
    import argparse

    parser = all_commands()[command]
    assert isinstance(parser, argparse.ArgumentParser)
    text = parser.format_help()
    assert "examples:\n  autodiscover-guard " in text
    assert "exit codes: " in text and "exit codes: \n" not in text
    page = re.search(r"docs: (docs/\w+\.md|README\.md)", text)
    assert page is not None and (ROOT / page[1]).is_file(), text
    for action in parser._actions:
        if not action.option_strings and not isinstance(action, argparse._SubParsersAction):
            assert action.help, f"{command} {action.dest} has no help"
        if action.option_strings and action.help != argparse.SUPPRESS and "--help" not in action.option_strings:
            assert action.help, f"{command} {action.option_strings} has no help"
            takes_value = action.nargs != 0
            if takes_value and not action.required:
                shown = parser._get_formatter()._get_help_string(action) or ""
                assert "default" in shown, f"{command} {action.option_strings[0]}: default not said"


def test_run_mode_help_names_each_mode_and_the_default() -> None:
    text = all_commands()["run"].format_help()  # type: ignore[attr-defined]
    flat = " ".join(text.split())
    assert "gateway: 0.0.0.0:8080" in flat and "(default: workstation)" in flat


def test_canary_usage_shows_services_as_required() -> None:
    usage = all_commands()["canary"].format_usage()  # type: ignore[attr-defined]
    assert " --services FILE" in usage and "[--services" not in usage


def test_check_on_an_html_error_page_is_an_input_error_not_a_violation(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "error.html"
    page.write_text("<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>")
    assert main(["check", "--email", "alice@contoso.com", str(page)]) == 2
    assert "not a discovery answer" in capsys.readouterr().err


def test_check_judges_the_other_inputs_and_still_exits_two_for_a_non_answer(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text("")
    assert main(["check", "--email", "email@example.com", "--json", str(empty), SEED]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["file"] == SEED
    assert f"{empty}: not a discovery answer" in captured.err


def test_check_with_a_format_the_document_is_not_exits_two_naming_both(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--email", "email@example.com", "--format", "pox", SEED]) == 2
    assert "--format pox, but the document is a autodetect answer" in capsys.readouterr().err


def test_pac_refuses_a_proxy_without_a_port(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["pac", "--proxy", "10.1.2.3"])
    assert info.value.code == 2
    assert "expected HOST:PORT" in capsys.readouterr().err


def test_ca_path_for_a_ca_not_created_yet_exits_two_with_the_fix(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ca", "--confdir", str(tmp_path), "--path"]) == 2
    err = capsys.readouterr().err
    assert "does not exist yet" in err and f"autodiscover-guard ca --confdir {tmp_path}" in err


def test_an_unknown_policy_key_is_reported_at_its_own_line_with_a_suggestion(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nlimits:\n  max_body_bytes: 100\nlogg:\n  hash_local_part: true\n")
    assert main(["policy", "validate", str(bad)]) == 2
    assert f"{bad}:4:1: unknown key 'logg'; did you mean 'log'?" in capsys.readouterr().err


def test_a_misspelt_nested_key_is_suggested_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nlimits:\n  max_bodybytes: 100\n")
    assert main(["check", "--email", "a@contoso.com", "--policy", str(bad), SEED]) == 2
    assert f"error: {bad}:3:3: unknown key 'max_bodybytes'; did you mean 'max_body_bytes'?" in capsys.readouterr().err


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_script_knows_the_commands(shell: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    assert "autodiscover-guard" in script
    assert all(command in script for command in ("check", "report", "canary", "--since"))


def test_bash_completion_script_loads_in_bash(tmp_path: Path) -> None:
    script = tmp_path / "completion.bash"
    script.write_text(subprocess.run([str(Path(sys.executable).parent / "autodiscover-guard"), "completion", "bash"],
                                     capture_output=True, text=True, check=True, timeout=60).stdout)
    result = subprocess.run(["bash", "-c", f"source {script} && complete -p autodiscover-guard"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "autodiscover-guard" in result.stdout


def test_corpus_is_quiet_on_stderr_when_not_on_a_terminal(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(FIXTURES / "autoconfig__seed_example_com.xml", tmp_path / "example.com.xml")
    assert main(["corpus", str(tmp_path)]) == 1
    assert capsys.readouterr().err == ""


def test_make_run_installs_only_runtime_dependencies_and_says_the_first_setup_takes_minutes(tmp_path: Path) -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    plan = subprocess.run([make, "-n", "run", f"VENV={tmp_path / 'venv'}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=True).stdout
    assert "pip install -q -e .\n" in plan and "[test]" not in plan
    assert "a few minutes the first time" in plan


@pytest.mark.parametrize(("body", "why"), [
    (b"", "an empty body"),
    (b" \n\t", "an empty body"),
    (b"<!-- x -->\n<HTML><head><title>Bad Gateway</title></head></HTML>", "an HTML page"),
    (b"Service Unavailable\n", "plain text"),
])
def test_bodies_that_cannot_be_any_discovery_answer_are_named(body: bytes, why: str) -> None:
    from guard.cli import not_an_answer

    assert (not_an_answer(body) or "").startswith(why)


@pytest.mark.parametrize("body", [
    b"<?xml version='1.0'?><unknownRoot/>",  # XML of an unknown shape: malformed, as the proxy judges it
    b'{"unexpected": 1}',
    "<Autodiscover/>".encode("utf-16"),  # another encoding: the parser decides
])
def test_unknown_documents_are_judged_malformed_not_refused(body: bytes, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    answer = tmp_path / "answer"
    answer.write_bytes(body)
    assert main(["check", "--email", "alice@contoso.com", "--json", str(answer)]) == 1
    assert [f["rule"] for f in json.loads(capsys.readouterr().out)["findings"]] == ["malformed"]
