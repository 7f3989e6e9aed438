"""rollout.release.prometheus transport rules against a scripted HTTP server on 127.0.0.1: bounded
retries with backoff on 5xx/timeouts, no retry on a 4xx, errors naming URL and query.

The server is a stand-in for Prometheus only because a real Prometheus cannot be made to
answer 503 or hang on demand; its real answers are covered in test_prometheus_live.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from support.fake_pulumi import REPO
from support.hostile import Answer, HostilePrometheus, vector

from rollout.config import load_release
from rollout.release.bot import check_release
from rollout.release.prometheus import Prometheus, PrometheusError
from rollout.review.localstack import LoopbackServer, QuietHandler

RELEASE = load_release(REPO)
CANARY = RELEASE.stage("canary")

VECTOR = {"status": "success", "data": {"resultType": "vector", "result": [
    {"metric": {"app": "genesis"}, "value": [1700000000, "0.25"]}]}}


class Scripted(LoopbackServer):
    """Answers requests from a list of (status, body or 'hang'); records the query strings."""

    def __init__(self, answers: list[tuple[int, object]]):
        self.answers = answers
        self.requests: list[str] = []
        scripted = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                scripted.requests.append(self.path)
                status, body = scripted.answers[min(len(scripted.requests), len(scripted.answers)) - 1]
                if body == "hang":
                    time.sleep(1.0)
                    return
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(data)

        super().__init__(Handler)


@pytest.fixture
def scripted() -> Iterator[type[Scripted]]:
    servers: list[Scripted] = []

    class Factory(Scripted):
        def __init__(self, answers: list[tuple[int, object]]):
            super().__init__(answers)
            servers.append(self)

    yield Factory
    for server in servers:
        server.stop()


def test_5xx_is_retried_then_answered(scripted: type[Scripted]) -> None:
    server = scripted([(503, {"status": "error", "error": "busy"})] * 2 + [(200, VECTOR)])
    prom = Prometheus(server.url, retries=2, backoff=0.01)
    assert prom.value("up") == 0.25
    assert len(server.requests) == 3
    assert prom.queries == 1  # one logical query, however many attempts


def test_retries_are_bounded_and_the_error_names_url_and_query(scripted: type[Scripted]) -> None:
    server = scripted([(502, {"status": "error", "error": "bad gateway"})])
    prom = Prometheus(server.url, retries=2, backoff=0.01)
    with pytest.raises(PrometheusError) as err:
        prom.query("namespace_app_track:genesis_requests:rate")
    assert len(server.requests) == 3
    assert err.value.url == server.url
    assert err.value.query == "namespace_app_track:genesis_requests:rate"
    assert "HTTP 502" in str(err.value) and "after 3 attempts" in str(err.value)


def test_a_bad_query_is_not_retried(scripted: type[Scripted]) -> None:
    server = scripted([(400, {"status": "error", "errorType": "bad_data", "error": "parse error"})])
    with pytest.raises(PrometheusError, match="HTTP 400: parse error"):
        Prometheus(server.url, retries=3, backoff=0.01).query("sum(")
    assert len(server.requests) == 1


def test_a_hanging_server_times_out(scripted: type[Scripted]) -> None:
    server = scripted([(200, "hang")])
    prom = Prometheus(server.url, timeout=0.2, retries=1, backoff=0.01)
    with pytest.raises(PrometheusError, match="timed out \\(after 2 attempts\\)"):
        prom.query("up")


def test_instant_query_at_a_past_instant_sends_its_time(scripted: type[Scripted]) -> None:
    server = scripted([(200, VECTOR)])
    Prometheus(server.url).query("up", at=datetime(2026, 11, 3, 9, 0, tzinfo=UTC))
    assert "time=1793696400.000" in server.requests[0]


def test_more_than_one_series_is_an_error_not_a_guess(scripted: type[Scripted]) -> None:
    two = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"namespace": "a"}, "value": [1, "1"]},
        {"metric": {"namespace": "b"}, "value": [1, "2"]}]}}
    server = scripted([(200, two)])
    with pytest.raises(PrometheusError, match="expected one series, got 2"):
        Prometheus(server.url).value("x")


def test_unreachable_is_an_error() -> None:
    prom = Prometheus("http://127.0.0.1:9", timeout=0.5, retries=1, backoff=0.01)
    with pytest.raises(PrometheusError, match="unreachable .* \\(after 2 attempts\\)"):
        prom.query("up")
    assert prom.ready_status() == "ConnectError: [Errno 111] Connection refused"  # a reason, never a 200


# --------------------------------------------------------------------------- credentials never shown


@pytest.mark.parametrize("where", ["file", "url"])
def test_credentials_a_server_echoes_back_are_never_shown(tmp_path, where: str) -> None:  # noqa: ANN001
    """A proxy or gateway that echoes what it got (the Authorization header, the decoded
    password) in its 401: the error says 401 and names the URL, never the password nor its
    base64 form. A real Prometheus never echoes, so only an echoing server can show this."""
    import base64

    from rollout.release.prometheus import PrometheusAuth
    from support.hostile import ScriptedReceiver

    def echo(method: str, path: str, headers: dict[str, str], body: bytes):  # noqa: ANN202
        header = headers.get("authorization", "")
        decoded = base64.b64decode(header.removeprefix("Basic ")).decode() if header.startswith("Basic ") else ""
        return 401, [json.dumps({"status": "error", "error": f"denied: {header} ({decoded})"}).encode()], 0.0

    (tmp_path / "basic").write_text("rollout-bot:pw-echo-7731\n")
    with ScriptedReceiver(echo) as server:
        url, auth = server.url, PrometheusAuth(basic_auth_file=str(tmp_path / "basic"))
        if where == "url":
            url, auth = server.url.replace("http://", "http://rollout-bot:pw-echo-7731@"), PrometheusAuth()
        with Prometheus(url, auth=auth, retries=0) as prom, pytest.raises(PrometheusError, match="401") as refused:
            prom.query("up")
    sent = server.requests[0][2]["authorization"]
    assert sent == "Basic " + base64.b64encode(b"rollout-bot:pw-echo-7731").decode()  # it was echoed
    message = str(refused.value)
    assert "pw-echo-7731" not in message and sent.removeprefix("Basic ") not in message
    assert "denied: Basic ***" in message


@pytest.mark.parametrize(
    ("value", "message"),
    [("Authorization: Bearer s3cr3t-hdr", "item 1 is not Name=value"),
     ("X-Scope-OrgID=ok,Bad Name=s3cr3t-hdr", "item 2: the header name is not an HTTP token"),
     ("X-Token=s3cr3t-hdr\nInjected: 1", "X-Token: the value holds a line break")],
    ids=["colon-not-equals", "bad-name", "line-break"],
)
def test_a_malformed_prometheus_headers_variable_never_echoes_a_value(value: str, message: str) -> None:
    """Was: `PROMETHEUS_HEADERS: 'Authorization: Bearer <token>' is not Name=value`."""
    from rollout.release.prometheus import PrometheusAuth

    with pytest.raises(ValueError) as refused:
        PrometheusAuth.from_env({"PROMETHEUS_HEADERS": value})
    assert message in str(refused.value) and "s3cr3t-hdr" not in str(refused.value)


# --------------------------------------------------------------------------- partial data, drips, size (moved from the probes of issue 10)
#
# A hostile Prometheus (tests/support/hostile.py): a real one cannot be made to answer with
# warnings, drip bytes or send 150 MB on demand.


def test_an_answer_with_warnings_is_not_trusted() -> None:
    """Was: ignored, promoted. Partial data (a Thanos store down) is an error naming the query."""
    def answer(query: str) -> Answer:
        return vector("0.0", warnings=["store 10.0.0.5 unavailable: partial response"])

    with HostilePrometheus(answer) as prometheus, Prometheus(prometheus.url, retries=0) as prom:
        with pytest.raises(PrometheusError, match="partial data, not trusted: warnings .*store 10.0.0.5") as caught:
            check_release(RELEASE, prom, CANARY)
    assert "namespace_app_track" in caught.value.query


def test_a_server_dripping_bytes_cannot_hold_a_check_past_its_deadline() -> None:
    """Was: still running after 100 s (the 5 s timeout is per read). One deadline per check."""
    def drip(query: str) -> Answer:
        return 200, (b" " for _ in range(1000)), 1.0  # one byte a second, for ever

    with HostilePrometheus(drip) as prometheus, Prometheus(prometheus.url, check_seconds=3, retries=0) as prom:
        started = time.monotonic()
        with pytest.raises(PrometheusError, match="deadline passed"):
            check_release(RELEASE, prom, CANARY)
        assert time.monotonic() - started < 30  # bounded by the deadline, not by 1000 bytes


def test_a_huge_answer_is_refused_before_it_fills_memory() -> None:
    """Was: 150 MB read, a pass, 2.2 GB of memory. Now: refused at the size cap."""
    def huge(query: str) -> Answer:
        head = b'{"status":"success","data":{"resultType":"vector","result":['
        series = b'{"metric":{"pod":"' + b"x" * 1000 + b'"},"value":[1,"0"]},'
        return 200, (head, *(series for _ in range(150_000))), 0.0

    with HostilePrometheus(huge) as prometheus, Prometheus(prometheus.url, retries=0) as prom:
        with pytest.raises(PrometheusError, match="answer larger than 10485760 bytes: refused"):
            prom.query('namespace_app_track:genesis_requests:rate{track="canary"}')
