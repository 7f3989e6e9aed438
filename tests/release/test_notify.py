"""Notifications: a REAL Alertmanager 0.25 (Debian `prometheus-alertmanager`) on 127.0.0.1,
and a tiny local HTTP stand-in for Grafana (no Grafana server can be installed here) that
checks the request shape and the auth header the way Grafana's annotations API reads them.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import httpx
import pytest

from rollout.release.notify import (
    ROLLBACK_ALERT,
    AlertmanagerClient,
    GrafanaClient,
    NotifyError,
    ReleaseNotifier,
    Secret,
    notifier_from_env,
    read_token,
    rollback_alert,
)

TOKEN = "glsa_TopSecretToken_4f9c2e"
AT = datetime(2026, 11, 4, 10, 15, tzinfo=timezone.utc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Recorder(ThreadingHTTPServer):
    """Records every request; answers with `status` and `reply` (JSON)."""

    def __init__(self, status: int = 200, reply: Any = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = status
        self.reply = reply if reply is not None else {}
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", 0))
                recorder.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": json.loads(self.rfile.read(length))}
                )
                data = json.dumps(recorder.reply).encode()
                self.send_response(recorder.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture(scope="module")
def pager() -> Iterator[Recorder]:
    """Where Alertmanager's on-call route delivers (a webhook receiver stands in for PagerDuty)."""
    server = Recorder()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory, pager: Recorder) -> Iterator[str]:
    binary = shutil.which("prometheus-alertmanager")
    assert binary, "prometheus-alertmanager is not installed: apt-get install prometheus-alertmanager"
    workdir = tmp_path_factory.mktemp("alertmanager")
    config = workdir / "alertmanager.yml"
    config.write_text(
        f"""
route:
  receiver: default
  group_by: [alertname, app]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 4h
  routes:
    - receiver: oncall-pager
      matchers: ['severity="critical"', 'source="release-bot"']
receivers:
  - name: default
  - name: oncall-pager
    webhook_configs:
      - url: {pager.url}/pager
        send_resolved: false
"""
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip port: a single local instance
        ],
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "alertmanager.log").open("w"),
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (workdir / "alertmanager.log").read_text()
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "Alertmanager did not become ready in 30 s"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def grafana() -> Iterator[Recorder]:
    server = Recorder(reply={"id": 42, "message": "Annotation added"})
    yield server
    server.shutdown()


def change(action: str = "rollback", source: str = "gradual", target: str = "stable") -> SimpleNamespace:
    """What the release bot hands its hooks (rollout.release.bot.StageChange), duck-typed."""
    return SimpleNamespace(
        action=action,
        source=source,
        target=target,
        reason="error_rate 0.023 > critical 0.01 on 3 consecutive checks",
        started_at=datetime.now(timezone.utc) - timedelta(hours=20),
        at=datetime.now(timezone.utc),  # an alert whose endsAt is past is resolved at once
        checks=[],
        applied=None,
    )


def wait_for(predicate: Any, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


# --------------------------------------------------------------------------- Alertmanager


def test_rollback_alert_reaches_alertmanager_and_the_oncall_route(alertmanager: str, pager: Recorder) -> None:
    now = datetime.now(timezone.utc)
    alert = rollback_alert(
        app="genesis", namespace="genesis", source_stage="gradual", target_stage="stable",
        reason="error rate 2.3% > 1%", at=now, runbook_url="https://runbooks.example/GenesisRolloutRolledBack.md",
    )
    client = AlertmanagerClient(alertmanager)
    client.post_alerts([alert])

    held = client.alerts({"alertname": ROLLBACK_ALERT, "app": "genesis"})
    assert len(held) == 1
    got = held[0]
    assert got["labels"] == {
        "alertname": ROLLBACK_ALERT, "severity": "critical", "source": "release-bot",
        "app": "genesis", "namespace": "genesis", "stage": "gradual", "rollout": "genesis-rollout",
    }
    assert got["annotations"]["summary"] == "genesis: rollout rolled back from gradual to stable"
    assert "error rate 2.3% > 1%" in got["annotations"]["description"]
    assert got["annotations"]["runbook_url"].endswith("/GenesisRolloutRolledBack.md")
    assert got["status"]["state"] == "active"
    assert [r["name"] for r in got["receivers"]] == ["oncall-pager"]
    ends = datetime.fromisoformat(got["endsAt"].replace("Z", "+00:00"))
    assert timedelta(minutes=59) < ends - now <= timedelta(hours=1, seconds=1)

    # Alertmanager routed it to the on-call receiver and delivered it
    wait_for(lambda: any(r["path"] == "/pager" for r in pager.requests))
    delivered = [a for r in pager.requests for a in r["body"]["alerts"]]
    assert any(a["labels"]["alertname"] == ROLLBACK_ALERT and a["labels"]["stage"] == "gradual" for a in delivered)


def test_alertmanager_rejecting_an_alert_is_an_error(alertmanager: str) -> None:
    client = AlertmanagerClient(alertmanager)
    bad = rollback_alert(
        app="genesis", namespace="genesis", source_stage="canary", target_stage="stable",
        reason="x", at=AT, runbook_url="https://r.example/x.md",
    )
    bad = type(bad)(labels={}, annotations={}, starts_at=AT)  # no labels: Alertmanager says 400
    with pytest.raises(NotifyError, match="Alertmanager: POST .*/api/v2/alerts returned 400"):
        client.post_alerts([bad])


def test_unreachable_alertmanager_is_a_clear_error() -> None:
    client = AlertmanagerClient(f"http://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(NotifyError, match="Alertmanager: POST http://127.0.0.1:\\d+/api/v2/alerts failed: ConnectError"):
        client.post_alerts([])


# --------------------------------------------------------------------------- Grafana


def test_grafana_annotation_request_shape_and_auth(grafana: Recorder) -> None:
    client = GrafanaClient(grafana.url, Secret(TOKEN))
    assert client.annotate("promote canary -> gradual: ok", ["genesis-rollout", "deployment", "gradual"], AT) == 42
    [request] = grafana.requests
    assert request["path"] == "/api/annotations"
    assert request["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["body"] == {
        "time": int(AT.timestamp() * 1000),
        "tags": ["genesis-rollout", "deployment", "gradual"],
        "text": "promote canary -> gradual: ok",
    }


def test_grafana_errors_never_show_the_token(caplog: pytest.LogCaptureFixture) -> None:
    # a server that echoes the Authorization header back in its error body
    server = Recorder(status=401, reply={"message": f"invalid API key Bearer {TOKEN}"})
    try:
        client = GrafanaClient(server.url, Secret(TOKEN))
        with caplog.at_level(logging.DEBUG):
            with pytest.raises(NotifyError) as err:
                client.annotate("x", ["genesis-rollout"], AT)
        assert "returned 401 Unauthorized" in str(err.value)
        assert TOKEN not in str(err.value)
        assert "***" in str(err.value)
        assert TOKEN not in caplog.text
        assert TOKEN not in repr(client) and TOKEN not in repr(Secret(TOKEN)) and TOKEN not in str(Secret(TOKEN))
        assert err.value.__cause__ is None  # no chained exception carrying the request
    finally:
        server.shutdown()


def test_token_from_env_or_file(tmp_path: Path) -> None:
    assert read_token("GRAFANA_TOKEN", environ={"GRAFANA_TOKEN": TOKEN}).reveal() == TOKEN  # type: ignore[union-attr]
    file = tmp_path / "token"
    file.write_text(TOKEN + "\n")
    assert read_token("GRAFANA_TOKEN", environ={"GRAFANA_TOKEN_FILE": str(file)}).reveal() == TOKEN  # type: ignore[union-attr]
    with pytest.raises(NotifyError, match="set GRAFANA_TOKEN, or GRAFANA_TOKEN_FILE"):
        read_token("GRAFANA_TOKEN", environ={})
    with pytest.raises(NotifyError, match="GRAFANA_TOKEN_FILE: cannot read .*missing"):
        read_token("GRAFANA_TOKEN", environ={"GRAFANA_TOKEN_FILE": str(tmp_path / "missing")})
    assert read_token("ALERTMANAGER_TOKEN", required=False, environ={}) is None


# --------------------------------------------------------------------------- the bot hook


def test_notifier_pages_on_rollback_annotates_and_feeds_the_report(
    alertmanager: str, grafana: Recorder, tmp_path: Path
) -> None:
    written: list[Any] = []

    def report_writer(ch: Any, events: list[tuple[datetime, str]]) -> Path:
        written.append((ch, events))
        return tmp_path / "incident.md"

    notifier = notifier_from_env(
        app="genesis-hook", namespace="genesis", runbook_base_url="https://runbooks.example/",
        environ={"ALERTMANAGER_URL": alertmanager, "GRAFANA_URL": grafana.url, "GRAFANA_TOKEN": TOKEN},
        report_writer=report_writer,
    )
    effect = notifier.stage_changed(change())
    assert effect is not None
    assert "GenesisRolloutRolledBack, GenesisStageChanged sent" in effect and "report written to" in effect
    held = {a["labels"]["alertname"]: a for a in AlertmanagerClient(alertmanager).alerts({"app": "genesis-hook"})}
    assert held[ROLLBACK_ALERT]["labels"]["stage"] == "gradual"  # the page names the stage it left
    assert held["GenesisStageChanged"]["labels"]["stage"] == "stable"  # the notice, the stage it went to
    assert held[ROLLBACK_ALERT]["annotations"]["runbook_url"] == "https://runbooks.example/GenesisRolloutRolledBack.md"
    assert grafana.requests[0]["body"]["tags"] == ["genesis-rollout", "deployment", "rollback", "stable"]
    [(_, before), (_, events)] = written  # written before anyone was told, then with the timeline
    assert before == []
    assert [text for _, text in events] == [
        "GenesisRolloutRolledBack, GenesisStageChanged sent to Alertmanager", "Grafana annotation added",
    ]


def test_promotion_is_told_and_annotated_but_does_not_page(alertmanager: str, grafana: Recorder) -> None:
    notifier = ReleaseNotifier(
        app="genesis-promo", namespace="genesis", runbook_base_url="https://r.example",
        alertmanager=AlertmanagerClient(alertmanager), grafana=GrafanaClient(grafana.url, Secret(TOKEN)),
        weights={"canary": 10, "gradual": 50}, dashboard_base_url="https://grafana.example",
    )
    effect = notifier.stage_changed(change("promote", "canary", "gradual"))
    assert effect == f"GenesisStageChanged sent to {alertmanager}; Grafana annotation added"
    (notice,) = AlertmanagerClient(alertmanager).alerts({"app": "genesis-promo"})
    assert notice["labels"]["alertname"] == "GenesisStageChanged" and notice["labels"]["severity"] == "info"
    assert notice["labels"]["event"] == "stage-change" and notice["labels"]["action"] == "promote"
    annotations = notice["annotations"]
    assert annotations["summary"] == "genesis-promo: promote canary (10%) -> gradual (50%)"
    assert "Canary weight: 10% -> 50%." in annotations["description"]
    assert annotations["dashboard_url"].startswith("https://grafana.example/d/genesis-release/genesis-release?orgId=1&from=")
    assert "&var-stage=gradual&var-app=genesis-promo" in annotations["dashboard_url"]
    assert annotations["rollback_command"].startswith('rollout rollback --reason "..."')
    assert grafana.requests[0]["body"]["text"].startswith("promote canary -> gradual: ")


def test_a_failed_annotation_still_pages_and_reports_the_failure(alertmanager: str) -> None:
    notifier = ReleaseNotifier(
        app="genesis-partial", namespace="genesis", runbook_base_url="https://r.example",
        alertmanager=AlertmanagerClient(alertmanager),
        grafana=GrafanaClient(f"http://127.0.0.1:{free_port()}", Secret(TOKEN), timeout=2),
    )
    with pytest.raises(NotifyError, match="Grafana: POST .* failed.*done: GenesisRolloutRolledBack, GenesisStageChanged sent"):
        notifier.stage_changed(change())
    assert len(AlertmanagerClient(alertmanager).alerts({"app": "genesis-partial"})) == 2


def test_a_rollback_that_cannot_page_still_writes_the_report_with_what_failed(tmp_path: Path) -> None:
    """Alertmanager is down while a rollback could not be applied: the incident report is still
    written, its timeline says the page was NOT sent, and the error names what was done."""
    written: list[list[tuple[datetime, str]]] = []

    def report_writer(_change: Any, events: list[tuple[datetime, str]]) -> Path:
        written.append(list(events))
        return tmp_path / "incident.md"

    notifier = ReleaseNotifier(
        app="genesis-stuck", namespace="genesis", runbook_base_url="https://r.example",
        alertmanager=AlertmanagerClient(f"http://127.0.0.1:{free_port()}", timeout=2), report_writer=report_writer,
    )
    stuck = change()
    stuck.error = "the stack is locked"
    with pytest.raises(NotifyError, match=r"Alertmanager: POST .* failed.*\(done: report written to .*incident.md\)"):
        notifier.rollback_failed(stuck)
    before, events = written  # before the page was tried, then with what happened
    assert [text for _, text in before] == ["rollback NOT applied: the stack is locked"]
    texts = [text for _, text in events]
    assert texts[0] == "rollback NOT applied: the stack is locked"
    assert texts[1].startswith("GenesisRollbackFailed NOT sent: ") and len(texts) == 2


def test_grafana_url_without_token_is_refused() -> None:
    with pytest.raises(NotifyError, match="GRAFANA_TOKEN"):
        notifier_from_env(app="a", namespace="n", runbook_base_url="https://r", environ={"GRAFANA_URL": "http://g"})
