"""Prometheus text for gateways: counters by action and rule, the latency histogram, atomic files."""

from __future__ import annotations

from pathlib import Path

from guard.metrics import Metrics


def test_decisions_are_counted_by_mode_action_and_rule() -> None:
    metrics = Metrics()
    metrics.observe("enforce", "block", ["reserved-user-domain", "foreign-host"], 0.0002)
    metrics.observe("enforce", "allow", [], 0.00005)
    metrics.observe("audit", "block", ["foreign-host"], 0.003)
    text = metrics.render()
    assert 'autodiscover_guard_decisions_total{mode="enforce",action="block"} 1' in text
    assert 'autodiscover_guard_decisions_total{mode="audit",action="block"} 1' in text
    assert 'autodiscover_guard_rule_decisions_total{rule="foreign-host",action="block"} 2' in text


def test_latency_is_a_cumulative_histogram() -> None:
    metrics = Metrics()
    for seconds in (0.00005, 0.0002, 0.003, 10.0):
        metrics.observe("enforce", "allow", [], seconds)
    text = metrics.render()
    assert 'autodiscover_guard_added_latency_seconds_bucket{le="0.0001"} 1' in text
    assert 'autodiscover_guard_added_latency_seconds_bucket{le="0.00025"} 2' in text
    assert 'autodiscover_guard_added_latency_seconds_bucket{le="0.25"} 3' in text
    assert 'autodiscover_guard_added_latency_seconds_bucket{le="+Inf"} 4' in text
    assert "autodiscover_guard_added_latency_seconds_count 4" in text


def test_policy_loads_and_the_revision_in_force_are_exported() -> None:
    metrics = Metrics()
    metrics.policy("aaa", loaded=True)
    metrics.policy("aaa", loaded=False)
    text = metrics.render()
    assert 'autodiscover_guard_policy_loads_total{result="loaded"} 1' in text
    assert 'autodiscover_guard_policy_loads_total{result="rejected"} 1' in text
    assert 'autodiscover_guard_policy_info{revision="aaa"} 1' in text


def test_every_sample_line_has_a_declared_type() -> None:
    metrics = Metrics()
    metrics.observe("enforce", "warn", ["plaintext"], 0.001)
    typed = set()
    for line in metrics.render().splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
        elif not line.startswith("#"):
            name = line.split("{")[0].split(" ")[0]
            assert name in typed or name.rsplit("_", 1)[0] in typed, line


def test_writing_replaces_the_file_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "guard.prom"
    target.write_text("old")
    metrics = Metrics()
    metrics.observe("enforce", "block", ["malformed"], 0.001)
    metrics.write(target)
    assert target.read_text() == metrics.render()
    assert [p.name for p in tmp_path.iterdir()] == ["guard.prom"]
    assert not metrics.changed
