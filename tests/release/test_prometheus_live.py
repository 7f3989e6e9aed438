"""rollout.release.prometheus + rollout.analysis.gates against a REAL Prometheus 2.42 on 127.0.0.1.

Synthetic Genesis pods (rollout.local.synthetic) are scraped every second; Prometheus runs the
stage's real recording rules from rollout.monitoring.alert_rules over a 10 s window. One Prometheus
serves several services whose canaries misbehave differently, so the scenarios share the
~6 s Prometheus needs before its first scrape.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from support.live import LiveStack, compressed_config, live_stack

from rollout.analysis.decision import decide
from rollout.analysis.gates import AVAILABILITY, evaluate
from rollout.analysis.signals import SIGNALS, selector
from rollout.release.measuring import measure
from rollout.release.prometheus import MAX_POINTS, Prometheus, PrometheusError
from rollout.review.localstack import start_prometheus, wait_for

PROFILES = {
    "genesis-healthy": "healthy",
    "genesis-bad": "bad",
    "genesis-silent": "silent",
    "genesis-flip": "healthy",  # turned bad at runtime through its control endpoint
    "genesis-dead": "silent",  # its pods never become ready (kube-state-metrics says so)
}
NEVER_READY = ["genesis-dead"]
QUERIES_PER_CHECK = 2 * 6 + 2 + 1  # canary + stable per gate and for availability, the canary request count


@pytest.fixture(scope="module")
def live() -> Iterator[LiveStack]:
    config = compressed_config(list(PROFILES))
    with live_stack(config, PROFILES, never_ready=NEVER_READY) as stack:
        stack.started_at = datetime.now(UTC)  # type: ignore[attr-defined]
        stack.wait_for_full_window()
        yield stack


def check(live: LiveStack, app: str, at: datetime | None = None):
    stage = live.config.stage
    return evaluate(stage, measure(live.prom, stage, live.service(app), at))


def test_healthy_canary_passes(live: LiveStack) -> None:
    result = check(live, "genesis-healthy")
    assert result.verdict == "pass", result.reason
    assert result.queries == QUERIES_PER_CHECK
    assert result.canary_requests is not None and result.canary_requests >= 20
    by_name = {g.name: g for g in result.gates}
    assert 0 < by_name["p95_latency_seconds"].value <= 0.2  # type: ignore[operator]
    # the stable baseline is measured too and shown next to the canary value
    assert all(g.baseline is not None for g in result.gates)
    assert 'track="canary"' in by_name["error_rate"].query
    assert 'namespace="genesis"' in by_name["error_rate"].query


def test_bad_canary_fails_and_explains_why(live: LiveStack) -> None:
    result = check(live, "genesis-bad")
    assert result.verdict == "fail", result.reason
    failed = {g.name for g in result.gates if g.status == "fail"}
    assert failed == {"error_rate", "p95_latency_seconds", "test_pass_rate"}  # the plan's rollback gates
    for name in ("pipelex_success_rate", "fallback_rate"):  # rollback: false: they hold, never pass
        assert next(g for g in result.gates if g.name == name).status == "hold"
    assert "critical" in result.reason and "error_rate" in result.reason
    # its stable track is healthy: the baseline shows the contrast
    error = next(g for g in result.gates if g.name == "error_rate")
    assert error.baseline is not None and error.baseline < 0.01 < error.value  # type: ignore[operator]


def test_silent_canary_holds_never_passes(live: LiveStack) -> None:
    result = check(live, "genesis-silent")
    assert result.verdict == "hold"
    assert result.canary_requests is None
    own = [g for g in result.gates if g.name != AVAILABILITY]
    assert all(g.value is None and g.status == "hold" for g in own)
    assert all(g.baseline is not None for g in own)  # stable still reports
    assert "too little canary traffic" in result.reason
    # its pods are ready (kube-state-metrics): it only says nothing
    assert next(g for g in result.gates if g.name == AVAILABILITY).status == "pass"


def test_a_canary_whose_pods_never_get_ready_fails_at_once_past_the_deadline(live: LiveStack) -> None:
    """kube-state-metrics (the stand-in) says 0 of 1 canary pods ready; the canary exports nothing,
    so only the availability gate can see it. The compressed deadline is 5 s."""
    stage = live.config.stage
    since = datetime.now(UTC) - stage.analysis.progress_deadline
    result = evaluate(stage, measure(live.prom, stage, live.service("genesis-dead"), since=since))
    assert result.verdict == "fail" and result.immediate, result.reason
    assert result.reason.startswith("canary unavailable: the canary Deployment was never fully available")
    gate = next(g for g in result.gates if g.name == AVAILABILITY)
    assert gate.value == 0 and gate.baseline == 1  # stable's Deployment is fine
    young = evaluate(stage, measure(live.prom, stage, live.service("genesis-dead"), since=datetime.now(UTC)))
    assert young.verdict == "hold" and not young.immediate  # within the first deadline it may still start


def test_retrospective_check_at_a_past_instant(live: LiveStack) -> None:
    before_any_data = live.started_at - timedelta(seconds=5)  # type: ignore[attr-defined]
    past = check(live, "genesis-healthy", at=before_any_data)
    assert past.verdict == "hold"
    assert past.at == before_any_data.isoformat()
    recent = check(live, "genesis-healthy", at=datetime.now(UTC) - timedelta(seconds=2))
    assert recent.verdict == "pass", recent.reason


def test_fault_injected_at_runtime_turns_a_passing_canary_into_a_failing_one(live: LiveStack) -> None:
    assert check(live, "genesis-flip").verdict == "pass"
    control = f"http://{live.workloads[('genesis-flip', 'canary')].address}/control"
    assert httpx.post(control, json={"profile": "bad"}).json()["profile"] == "bad"
    result = wait_for(
        lambda: (r := check(live, "genesis-flip")).verdict == "fail" and r,
        timeout=30,
        what="the flipped canary to fail its check",
        interval=0.5,
    )
    # the self-test gauge flips at once; the rate-based gates follow within a window
    assert any(g.name == "test_pass_rate" and g.status == "fail" for g in result.gates)


def test_preflight_helpers(live: LiveStack) -> None:
    records = [s.record for s in SIGNALS]
    loaded = live.prom.rules_loaded([*records, "GenesisErrorRateCritical", "no:such:rule"])
    assert all(loaded[name] for name in records)
    assert loaded["GenesisErrorRateCritical"] is True
    assert loaded["no:such:rule"] is False
    assert live.prom.series_exists("genesis_request_duration_seconds_count" + selector("genesis-healthy", "canary"))
    assert not live.prom.series_exists("genesis_request_duration_seconds_count" + selector("genesis-silent", "canary"))

    def bad_canary_alert() -> bool:
        return any(
            a["labels"].get("alertname") == "GenesisErrorRateCritical"
            and a["labels"].get("app") == "genesis-bad"
            and a["labels"].get("track") == "canary"
            for a in live.prom.firing_alerts()
        )

    wait_for(bad_canary_alert, 20, "GenesisErrorRateCritical firing for genesis-bad", interval=0.5)
    assert not any(
        a["labels"].get("app") == "genesis-healthy" for a in live.prom.firing_alerts()
    )


def test_range_query_returns_the_recorded_series(live: LiveStack) -> None:
    now = datetime.now(UTC)
    record = SIGNALS[0].record + selector("genesis-healthy", "canary", "genesis")
    series = live.prom.query_range(record, now - timedelta(seconds=5), now, 1)
    assert len(series) == 1
    assert len(series[0].points) >= 4
    assert all(value > 0 and math.isfinite(value) for _, value in series[0].points)


def test_a_range_longer_than_prometheus_accepts_is_asked_in_pieces_on_the_same_grid(live: LiveStack) -> None:
    """A stage judged on a fine grid (15 s checks over a 48 h hold: 11,521 instants) exceeds
    the 11,000 points Prometheus allows per series in one query; the client splits it and the
    joined answer has every instant once, in order, as one series."""
    end = datetime.fromtimestamp(math.floor(datetime.now(UTC).timestamp()), UTC)
    start = end - timedelta(seconds=2 * MAX_POINTS + 500)
    expr = 'sum(up{job="genesis"}) or vector(0)'
    with pytest.raises(PrometheusError, match="exceeded maximum resolution"):
        live.prom._query_range(expr, start, end, 1)  # what Prometheus answers to one query
    before = live.prom.queries
    (series,) = live.prom.query_range(expr, start, end, 1)
    assert live.prom.queries - before == 3
    times = [t for t, _ in series.points]
    assert times == [start.timestamp() + i for i in range(2 * MAX_POINTS + 501)]
    assert series.points[-1][1] > 0  # the pods are up now; hours ago the fallback gives 0


def test_a_grid_of_checks_reads_the_same_values_with_one_range_query_per_expression(live: LiveStack) -> None:
    """What a tick over a whole stage (cumulative counting, a replay) does: identical checks."""
    stage = live.config.stage
    newest = datetime.fromtimestamp(math.floor(datetime.now(UTC).timestamp()) - 2, UTC)
    instants = [newest - timedelta(seconds=s) for s in range(14, -1, -1)]
    services = [live.service(name) for name in ("genesis-healthy", "genesis-bad", "genesis-silent")]
    one_by_one = [evaluate(stage, measure(live.prom, stage, svc, at)) for at in instants for svc in services]
    before = live.prom.queries
    with live.prom.grid(instants):
        gridded = [evaluate(stage, measure(live.prom, stage, svc, at)) for at in instants for svc in services]
    assert live.prom.queries - before == QUERIES_PER_CHECK * len(services)  # one per expression, not per instant
    assert [r.verdict for r in gridded] == [r.verdict for r in one_by_one]
    assert {r.verdict for r in gridded} >= {"pass", "fail", "hold"}
    for a, b in zip(one_by_one, gridded, strict=True):
        assert [(g.name, g.value, g.baseline) for g in a.gates] == [(g.name, g.value, g.baseline) for g in b.gates]
        assert a.canary_requests == b.canary_requests


def test_a_grid_needs_evenly_spaced_instants(live: LiveStack) -> None:
    now = datetime.now(UTC)
    uneven = [now - timedelta(seconds=s) for s in (30, 20, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6)]
    with pytest.raises(ValueError, match="evenly spaced"):
        with live.prom.grid(uneven):
            pass


def test_a_bad_query_is_an_error_naming_url_and_query(live: LiveStack) -> None:
    with pytest.raises(PrometheusError) as err:
        live.prom.query("sum(")
    assert live.prometheus.url in str(err.value) and "'sum('" in str(err.value)
    assert "HTTP 400" in str(err.value)


def test_prometheus_stopped_mid_stage_is_an_error_never_a_promotion() -> None:
    config = compressed_config(["genesis"])
    stage = config.stage
    running = start_prometheus(rules=[], targets=[])
    try:
        prom = Prometheus(running.url, timeout=1.0, retries=2, backoff=0.05)
        before = measure(prom, stage, config.project.services[0])  # answers: no data yet
        assert evaluate(stage, before).verdict == "hold"
        running.stop()
        with pytest.raises(PrometheusError) as err:
            measure(prom, stage, config.project.services[0])
        message = str(err.value)
        assert running.url in message and "namespace_app_track:" in message
        assert "after 3 attempts" in message
        # the bot gets no verdict, which decide() treats like a hold: no promotion
        now = datetime.now(UTC)
        verdicts = ["pass", "pass", "error"]
        assert decide(stage, now - timedelta(hours=1), now, verdicts).action == "wait"
    finally:
        running.stop()
    assert not running.alive()
