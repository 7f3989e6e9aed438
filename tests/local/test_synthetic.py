"""rollout.local.synthetic: traffic share, fault profiles, determinism, and the HTTP control endpoint."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from rollout.local.synthetic import Workload, target_labels
from rollout.review.localstack import free_port, wait_for


def samples(workload: Workload) -> dict[str, float]:
    """Exported samples by name (+le for buckets; +route for testers' header-routed requests),
    without the *_created timestamps."""
    text = generate_latest(workload.registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            labels = [f"le={sample.labels['le']}"] if "le" in sample.labels else []
            if sample.labels.get("route") == "header":
                labels.append("route=header")
            out[sample.name + (f"{{{','.join(labels)}}}" if labels else "")] = sample.value
    return out


def test_same_seed_and_steps_export_the_same_numbers() -> None:
    a, b = (Workload("canary", request_rate=100, canary_weight=50, seed=7) for _ in range(2))
    for workload in (a, b):
        for _ in range(20):
            workload.step(0.5)
    assert samples(a) == samples(b)
    assert a.served == 100 * 0.5 * 10


@pytest.mark.parametrize(
    ("track", "weight", "pods", "share"),
    [("canary", 10, 1, 0.1), ("stable", 10, 1, 0.9), ("stable", 10, 3, 0.3), ("canary", 0, 1, 0.0)],
)
def test_share_follows_track_weight_and_pods(track: str, weight: float, pods: int, share: float) -> None:
    workload = Workload(track, request_rate=100, canary_weight=weight, pods=pods)
    assert workload.share == pytest.approx(share)
    assert workload.step(10) == round(100 * share * 10)


def test_bad_profile_moves_every_signal_the_gates_watch() -> None:
    healthy = Workload("canary", request_rate=200, canary_weight=100, seed=1)
    bad = Workload("canary", request_rate=200, canary_weight=100, seed=1, profile="bad")
    for workload in (healthy, bad):
        workload.step(10)
    h, b = samples(healthy), samples(bad)
    assert h["genesis_error_rate"] == 0.0 and 0.03 < b["genesis_error_rate"] < 0.07
    assert h["genesis_test_pass_rate"] == 1.0 and b["genesis_test_pass_rate"] == 0.9
    # share of requests slower than 0.5 s (the P95 critical threshold)
    count = "genesis_request_duration_seconds_count"
    slow = lambda s: 1 - s["genesis_request_duration_seconds_bucket{le=0.5}"] / s[count]
    assert slow(h) < 0.01 and slow(b) > 0.2
    fallback = lambda s: s["pipelex_fallback_triggered_total"] / s["pipelex_workflows_total"]
    assert fallback(h) < 0.05  # the target
    assert fallback(b) > 0.2  # the critical threshold
    assert h["spice_tasks_generated_total"] == b["spice_tasks_generated_total"] == 5


def test_testers_header_requests_are_labelled_apart_from_the_weighted_ones() -> None:
    """`x-genesis-track: canary` traffic has its own profile and route="header"; the weighted
    requests keep route="weighted"; both children exist from the start (at 0), so a counter's
    first sample is a baseline, not a burst."""
    fresh = samples(Workload("canary", request_rate=100, canary_weight=10, header_rate=20, header_profile="bad"))
    assert fresh["genesis_request_errors_total{route=header}"] == fresh["genesis_request_errors_total"] == 0
    workload = Workload("canary", request_rate=100, canary_weight=10, header_rate=20, header_profile="bad", seed=3)
    assert workload.step(10) == 100 + 200
    got = samples(workload)
    assert got["genesis_request_duration_seconds_count"] == 100
    assert got["genesis_request_duration_seconds_count{route=header}"] == 200
    assert got["genesis_request_errors_total"] == 0 and got["genesis_request_errors_total{route=header}"] > 0
    with pytest.raises(ValueError, match="header_rate: testers' header-routed requests reach the canary only"):
        Workload("stable", header_rate=5)


def test_silent_profile_serves_no_samples_and_recovers() -> None:
    workload = Workload("canary", profile="silent")
    workload.step(1)
    assert samples(workload) == {}
    workload.set_profile("healthy")
    assert "genesis_error_rate" in samples(workload)


def test_bad_arguments_are_refused_with_the_rule() -> None:
    with pytest.raises(ValueError, match="unknown profile 'broken'"):
        Workload("canary", profile="broken")
    with pytest.raises(ValueError, match="track must be one of"):
        Workload("blue")
    with pytest.raises(ValueError, match="canary_weight must be between 0 and 100"):
        Workload("canary", canary_weight=120)


def test_a_separate_process_is_controlled_over_http() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "rollout.local.synthetic", "--track", "canary", "--port", str(port),
         "--weight", "10", "--rate", "100"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            try:
                return httpx.get(f"{base}/control").status_code == 200
            except httpx.HTTPError:
                assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
                return False

        wait_for(up, 15, "the synthetic workload process")
        changed = httpx.post(f"{base}/control", json={"profile": "bad", "canary_weight": 50}).json()
        assert changed["profile"] == "bad" and changed["share"] == 0.5
        wait_for(
            lambda: "genesis_test_pass_rate 0.9" in httpx.get(f"{base}/metrics").text, 5, "bad metrics"
        )
        refused = httpx.post(f"{base}/control", json={"weight": 50})
        assert refused.status_code == 400 and "unknown field(s) ['weight']" in refused.json()["error"]
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.returncode == 0  # SIGTERM is a clean shutdown


def test_target_labels_match_the_service_monitor_labels() -> None:
    from rollout.model import ServiceConfig

    service = ServiceConfig.model_validate(
        {"name": "genesis", "namespace": "prod", "stable": {"image": "g:1.0", "version": "1.0"},
         "canary": {"image": "g:1.1", "version": "1.1"}}
    )
    assert target_labels(service, "canary", 2) == {
        "namespace": "prod", "app": "genesis", "track": "canary", "version": "1.1", "pod": "genesis-canary-2",
    }
    assert target_labels(service, "stable")["version"] == "1.0"
