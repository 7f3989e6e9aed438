"""rollout.review.localstack: real binaries start, fail loudly and are always torn down."""

from __future__ import annotations

import httpx
import pytest
import yaml

from rollout.review.localstack import (
    LocalStackError,
    ScrapeTarget,
    WebhookReceiver,
    prometheus_config,
    require_binary,
    start_alertmanager,
    start_prometheus,
)


def test_missing_binary_names_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(LocalStackError, match="install the Debian package 'prometheus-alertmanager'"):
        require_binary("prometheus-alertmanager")
    with pytest.raises(LocalStackError, match="'prometheus' is not on PATH"):
        start_prometheus()


def test_a_broken_rule_file_fails_with_the_log_and_leaves_no_process() -> None:
    with pytest.raises(LocalStackError) as err:
        start_prometheus(rules=["groups: [{name: x, rules: [{record: 'bad name', expr: 'up'}]}]"])
    message = str(err.value)
    assert "prometheus exited with code" in message and "bad name" in message


def test_prometheus_config_carries_target_labels_and_alertmanager() -> None:
    config = prometheus_config(
        ["/r.yaml"],
        [ScrapeTarget("127.0.0.1:1", {"app": "genesis", "track": "canary"})],
        "1s",
        "2s",
        "http://127.0.0.1:9093",
    )
    assert config["global"]["evaluation_interval"] == "2s"
    assert config["scrape_configs"][0]["static_configs"] == [
        {"targets": ["127.0.0.1:1"], "labels": {"app": "genesis", "track": "canary"}}
    ]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9093"]


def test_servers_start_ready_and_stop_for_good() -> None:
    am_config = {"route": {"receiver": "x"}, "receivers": [{"name": "x"}]}
    with start_alertmanager(am_config) as alertmanager, start_prometheus(
        alertmanager_url=alertmanager.url
    ) as prometheus:
        assert httpx.get(f"{prometheus.url}/-/ready").status_code == 200
        status = httpx.get(f"{alertmanager.url}/api/v2/status").json()
        assert yaml.safe_load(status["config"]["original"])["route"]["receiver"] == "x"
        workdirs = [prometheus.workdir, alertmanager.workdir]
    for server in (prometheus, alertmanager):
        assert not server.alive() and server.process.returncode is not None
    assert not any(path.exists() for path in workdirs)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{prometheus.url}/-/ready")


def test_webhook_receiver_records_alertmanager_payloads() -> None:
    with WebhookReceiver() as webhook:
        payload = {"receiver": "pagerduty", "status": "firing", "alerts": [{"labels": {"alertname": "A"}}]}
        assert httpx.post(webhook.url, json=payload).status_code == 200
        alert = webhook.wait_for_alert(lambda a: a["labels"]["alertname"] == "A", timeout=2)
        assert alert["receiver"] == "pagerduty" and alert["notification_status"] == "firing"
        with pytest.raises(TimeoutError, match="matching alert"):
            webhook.wait_for_alert(lambda a: False, timeout=0.2)
