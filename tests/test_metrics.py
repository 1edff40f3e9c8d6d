"""Prometheus text for gateways: counters by action and rule, the latency histogram, atomic files."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from guard.errors import SetupError
from guard.log import DecisionLog
from guard.metrics import SERIES, Metrics, MetricsFile

INSTANCE = 'instance="gw1:8080"'


def test_decisions_are_counted_by_mode_action_and_rule() -> None:
    metrics = Metrics("gw1:8080")
    metrics.observe("enforce", "block", ["reserved-user-domain", "foreign-host"], 0.0002)
    metrics.observe("enforce", "allow", [], 0.00005)
    metrics.observe("audit", "block", ["foreign-host"], 0.003)
    text = metrics.render()
    assert f'autodiscover_guard_decisions_total{{{INSTANCE},mode="enforce",action="block"}} 1' in text
    assert f'autodiscover_guard_decisions_total{{{INSTANCE},mode="audit",action="block"}} 1' in text
    assert f'autodiscover_guard_rule_decisions_total{{{INSTANCE},rule="foreign-host",action="block"}} 2' in text


def test_latency_is_a_cumulative_histogram() -> None:
    metrics = Metrics("gw1:8080")
    for seconds in (0.00005, 0.0002, 0.003, 10.0):
        metrics.observe("enforce", "allow", [], seconds)
    text = metrics.render()
    assert f'autodiscover_guard_added_latency_seconds_bucket{{{INSTANCE},le="0.0001"}} 1' in text
    assert f'autodiscover_guard_added_latency_seconds_bucket{{{INSTANCE},le="0.00025"}} 2' in text
    assert f'autodiscover_guard_added_latency_seconds_bucket{{{INSTANCE},le="0.25"}} 3' in text
    assert f'autodiscover_guard_added_latency_seconds_bucket{{{INSTANCE},le="+Inf"}} 4' in text
    assert f"autodiscover_guard_added_latency_seconds_count{{{INSTANCE}}} 4" in text


def test_policy_loads_and_the_revision_in_force_are_exported() -> None:
    metrics = Metrics("gw1:8080")
    metrics.policy("aaa", loaded=True)
    metrics.policy("aaa", loaded=False)
    text = metrics.render()
    assert f'autodiscover_guard_policy_loads_total{{{INSTANCE},result="loaded"}} 1' in text
    assert f'autodiscover_guard_policy_loads_total{{{INSTANCE},result="rejected"}} 1' in text
    assert f'autodiscover_guard_policy_info{{{INSTANCE},revision="aaa"}} 1' in text


def test_every_sample_carries_the_instance_label_and_a_declared_type() -> None:
    metrics = Metrics()
    metrics.observe("enforce", "warn", ["plaintext"], 0.001)
    metrics.log_write_failed()
    typed, samples = set(), []
    for line in metrics.render().splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
        elif not line.startswith("#"):
            samples.append(line)
            name = line.split("{")[0]
            assert name in typed or name.rsplit("_", 1)[0] in typed, line
            assert line.split("{")[1].startswith(f'instance="{socket.gethostname()}"'), line
    assert typed == {f"autodiscover_guard_{series.name}" for series in SERIES}  # one list of what is exported
    assert len(samples) >= len(SERIES)


def test_lines_the_decision_log_could_not_write_are_counted() -> None:
    metrics = Metrics("gw1:8080")
    log = DecisionLog("/dev/full", on_failure=metrics.log_write_failed)
    for _ in range(3):
        log.write("decision", {"id": "x"})
    assert f"autodiscover_guard_log_write_failures_total{{{INSTANCE}}} 3" in metrics.render()
    assert log.failures == 3


def test_writing_replaces_the_file_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "guard.prom"
    target.write_text("old")
    metrics = Metrics()
    metrics.observe("enforce", "block", ["malformed"], 0.001)
    MetricsFile(target).write(metrics)
    assert target.read_text() == metrics.render()
    assert [p.name for p in tmp_path.iterdir()] == ["guard.prom"]
    assert not metrics.changed


def test_a_missing_metrics_folder_at_start_is_an_error_naming_the_fix(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match=r"folder .*/absent does not exist; create it .*mkdir -p .*/absent"):
        MetricsFile(tmp_path / "absent" / "guard.prom").check()
    MetricsFile(tmp_path / "guard.prom").check()


def test_a_failing_metrics_file_is_reported_once_per_episode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "textfile"
    folder.mkdir()
    writer, metrics = MetricsFile(folder / "guard.prom"), Metrics()
    os.rmdir(folder)
    for _ in range(3):
        writer.write(metrics)
    folder.mkdir()
    writer.write(metrics)
    assert capsys.readouterr().err.count("cannot write metrics") == 1
    assert (folder / "guard.prom").read_text() == metrics.render()
