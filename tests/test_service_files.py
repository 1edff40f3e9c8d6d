"""The shipped service files (deploy/) are valid for the real tools and agree with the CLI.

`systemd-analyze verify` loads each unit as systemd would (unknown keys, bad values, a missing
ExecStart binary are errors or warnings); the binary path is pointed at this venv's console
script in a temp copy. `logrotate` runs the shipped config for real on a temp log and must
leave a rotated file and a new one with mode 640. Every ExecStart command line must parse with
the CLI's own parser, so a renamed option breaks this test, not a production unit.
"""

from __future__ import annotations

import configparser
import grp
import os
import pwd
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from guard.cli import build_parser
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
UNITS = sorted((DEPLOY / "systemd").iterdir())
SERVICES = [u for u in UNITS if u.suffix == ".service"]
SHIPPED_BINARIES = ("/opt/autodiscover-guard/bin/autodiscover-guard", "%h/.local/bin/autodiscover-guard")
CLI = Path(sys.executable).parent / "autodiscover-guard"


def program(name: str, *extra_dirs: str) -> str:
    found = shutil.which(name) or next((f"{d}/{name}" for d in extra_dirs if os.access(f"{d}/{name}", os.X_OK)), None)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed (CI must have it: .ci/run installs the Debian package)")
        pytest.skip(f"{name} is not installed (Debian: apt-get install {name})")
    return found


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


def local_copy(path: Path, folder: Path, name: str | None = None) -> Path:
    text = path.read_text()
    for shipped in SHIPPED_BINARIES:
        text = text.replace(shipped, str(CLI))
    copy = folder / (name or path.name)
    copy.write_text(text)
    return copy


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_each_unit_passes_systemd_analyze_verify_without_warnings(path: Path, tmp_path: Path) -> None:
    analyze = program("systemd-analyze")
    for other in UNITS:  # a timer is verified with its service beside it
        local_copy(other, tmp_path)
    target = tmp_path / path.name
    if "@." in path.name:  # a template is verified as one of its instances
        target = local_copy(path, tmp_path, path.name.replace("@.", "@8081."))
    result = subprocess.run([analyze, "verify", "--man=no", str(target)], capture_output=True, text=True,
                            timeout=60, check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


@pytest.mark.parametrize("path", SERVICES, ids=lambda p: p.name)
def test_each_service_command_line_is_one_the_cli_accepts(path: Path) -> None:
    command = unit(path)["Service"]["ExecStart"].replace("\\\n", " ")
    argv = shlex.split(command.replace("%i", "8081"))
    assert argv[0] in SHIPPED_BINARIES
    args = build_parser().parse_args(argv[1:])
    assert args.command in ("run", "canary")


@pytest.mark.parametrize("path", [p for p in SERVICES if "canary" not in p.name], ids=lambda p: p.name)
def test_guard_services_reload_with_sighup_restart_and_install(path: Path) -> None:
    parsed = unit(path)
    service = parsed["Service"]
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["Restart"] == "on-failure"  # SIGHUP reloads in place: no restart-as-reload
    assert parsed["Install"]["WantedBy"]
    assert service["NoNewPrivileges"] == "yes"


@pytest.mark.parametrize("path", [p for p in SERVICES if p.name != "autodiscover-guard.service"],
                         ids=lambda p: p.name)
def test_system_services_are_sandboxed_and_use_systemd_managed_directories(path: Path) -> None:
    service = unit(path)["Service"]
    assert (service["ProtectSystem"], service["ProtectHome"], service["PrivateTmp"]) == ("strict", "yes", "yes")
    assert service["User"] == "autodiscover-guard"
    assert service["ConfigurationDirectory"] == "autodiscover-guard"
    assert service["LogsDirectory"] == "autodiscover-guard"
    assert service["CapabilityBoundingSet"] == ""


def test_gateway_log_is_created_mode_640_before_the_guard_opens_it() -> None:
    service = unit(DEPLOY / "systemd" / "autodiscover-guard@.service")["Service"]
    assert 'chmod 0640 "$LOGS_DIRECTORY/decisions-%i.jsonl"' in service["ExecStartPre"]
    assert "--log ${LOGS_DIRECTORY}/decisions-%i.jsonl" in service["ExecStart"]
    assert service["StateDirectory"] == "autodiscover-guard"


def test_canary_timer_starts_the_canary_service() -> None:
    timer = unit(DEPLOY / "systemd" / "autodiscover-guard-canary.timer")
    assert timer["Timer"]["OnCalendar"] and timer["Timer"]["Persistent"] == "true"
    assert (DEPLOY / "systemd" / "autodiscover-guard-canary.service").is_file()
    assert unit(DEPLOY / "systemd" / "autodiscover-guard-canary.service")["Service"]["Type"] == "oneshot"


def test_logrotate_config_rotates_in_create_style_with_mode_640(tmp_path: Path) -> None:
    logrotate = program("logrotate", "/usr/sbin", "/sbin")
    logs = tmp_path / "log"
    logs.mkdir(mode=0o750)
    text = (DEPLOY / "logrotate" / "autodiscover-guard").read_text()
    assert "create 0640 autodiscover-guard autodiscover-guard" in text
    assert "--signal=HUP 'autodiscover-guard@*.service'" in text
    user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    config = tmp_path / "autodiscover-guard"
    config.write_text(text.replace("/var/log/autodiscover-guard", str(logs))
                      .replace("create 0640 autodiscover-guard autodiscover-guard", f"create 0640 {user} {group}"))
    config.chmod(0o644)
    log = logs / "decisions-8081.jsonl"
    log.write_text('{"event": "decision"}\n')
    debug = subprocess.run([logrotate, "-d", "-s", str(tmp_path / "state"), str(config)], capture_output=True,
                           text=True, timeout=60, check=False)
    assert debug.returncode == 0, debug.stderr
    assert "error" not in debug.stderr.lower(), debug.stderr
    forced = subprocess.run([logrotate, "-f", "-s", str(tmp_path / "state"), str(config)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert forced.returncode == 0, forced.stderr
    assert (logs / "decisions-8081.jsonl.1").read_text() == '{"event": "decision"}\n'  # delaycompress: plain
    assert log.read_text() == ""
    assert log.stat().st_mode & 0o777 == 0o640
