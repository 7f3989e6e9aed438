"""A hostile or broken Prometheus on 127.0.0.1, for the probes a real one cannot be made to do:
answers computed per query by a function, bodies streamed in chunks with delays (a server that
drips one byte every few seconds), huge bodies generated lazily (never held in memory)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from rollout.review.localstack import LoopbackServer, QuietHandler

Answer = tuple[int, Iterable[bytes], float]  # status, body chunks, seconds between chunks


def vector(value: str, labels: dict[str, str] | None = None, **extra: Any) -> Answer:
    body = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": labels or {}, "value": [1700000000, value]}]}, **extra}
    return 200, [json.dumps(body).encode()], 0.0


def raw(body: Any, status: int = 200) -> Answer:
    return status, [json.dumps(body).encode()], 0.0


def _reply(handler: QuietHandler, status: int, chunks: Iterable[bytes], pause: float) -> None:
    """Send an Answer; status 0: the chunks are the raw response, status line included. A client
    that gives up mid-body (what a probe wants) is no error."""
    try:
        if status:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.end_headers()
        for chunk in chunks:
            handler.wfile.write(chunk)
            handler.wfile.flush()
            if pause:
                time.sleep(pause)
    except (BrokenPipeError, ConnectionResetError):
        pass


class HostilePrometheus(LoopbackServer):
    """`answer(query) -> Answer` decides every reply; `queries` records what was asked."""

    def __init__(self, answer: Callable[[str], Answer]) -> None:
        self.queries: list[str] = []
        server = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                params = parse_qs(urlsplit(self.path).query)
                query = params.get("query", [""])[0]
                server.queries.append(query)
                _reply(self, *answer(query))

        super().__init__(Handler)


HEALTHY = {  # recording rule -> canary value; stable gets the same
    "genesis_requests:rate": "100", "genesis_error_rate": "0", "p50": "0.05", "p95": "0.1", "p99": "0.2",
    "test_pass_rate": "1", "pipelex_workflows_success": "0.99", "pipelex_fallback": "0.01",
    "spice_tasks_generated": "5", "kube_deployment_status_replicas_available": "1", "istio": "0",
}


def answering(**canary: str) -> Callable[[str], Answer]:
    """Healthy answers for every query the bot sends, with some canary values replaced."""

    def answer(query: str) -> Answer:
        for key, value in HEALTHY.items():
            if key in query:
                chosen = canary.get(key, value) if 'track="canary"' in query else value
                return vector(chosen)
        return vector("1")

    return answer


class ScriptedReceiver(LoopbackServer):
    """An HTTP receiver (Alertmanager, Grafana) whose every answer a test scripts:
    `answer(method, path, headers, body) -> (status, body chunks, seconds between chunks)`;
    status 0 sends the chunks as the raw response, status line included, so a receiver can
    accept a request and then trickle its answer a byte at a time. `requests` records
    (method, path, headers, body)."""

    def __init__(self, answer: Callable[[str, str, dict[str, str], bytes], Answer]) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        server = self

        class Handler(QuietHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                server.requests.append((self.command, self.path, headers, body))
                _reply(self, *answer(self.command, self.path, headers, body))

            do_GET = do_POST = _serve

        super().__init__(Handler)


def trickle(text: bytes, pause: float) -> Answer:
    """A raw answer sent one byte every `pause` seconds."""
    return 0, (text[i : i + 1] for i in range(len(text))), pause
