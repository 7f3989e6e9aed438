"""Real Prometheus and Alertmanager on 127.0.0.1, plus a webhook receiver, for tests and the demo.

Each server runs from the Debian binary with a free port and a temporary data directory,
is polled on /-/ready (never a blind sleep) and is torn down on exit or failure: terminate,
then kill, always reaped so no zombie stays behind. Use them as context managers:

    with start_alertmanager(am_yaml) as am, start_prometheus(
        rules=[rule_yaml], targets=[ScrapeTarget("127.0.0.1:9101", {...})],
        alertmanager_url=am.url,
    ) as prom:
        ...
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self, TypeVar
from urllib.parse import urlparse

import httpx
import yaml

HOST = "127.0.0.1"
T = TypeVar("T")

# binary -> Debian package that ships it
BINARIES = {
    "prometheus": "prometheus",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "prometheus-pushgateway": "prometheus-pushgateway",
    "victoria-metrics": "victoria-metrics",
    "vmalert": "victoria-metrics",
    "vmauth": "victoria-metrics",
}


class LocalStackError(RuntimeError):
    """A local server could not start or did not become ready; the message carries its log."""


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        package = BINARIES.get(name, name)
        raise LocalStackError(
            f"'{name}' is not on PATH: install the Debian package '{package}' "
            f"(apt-get update && apt-get install -y --no-install-recommends {package})"
        )
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_for(
    check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1
) -> T:
    """Poll `check` until it returns something truthy; raise naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Running:
    """A started server process. `stop()` is idempotent; also a context manager."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    workdir: Path
    log_path: Path
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _start(
    name: str,
    argv_for: Callable[[Path, int], list[str]],
    workdir_tmp: tempfile.TemporaryDirectory[str],
    timeout: float,
    *,
    scheme: str = "http",
    client_options: Mapping[str, Any] | None = None,
) -> Running:
    """Start a binary with a free port, wait for /-/ready, stop it again on any failure.
    client_options (httpx keyword arguments: verify, auth) reach a server behind TLS or auth."""
    workdir = Path(workdir_tmp.name)
    port = free_port()
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv_for(workdir, port), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    running = Running(name, f"{scheme}://{HOST}:{port}", process, workdir, log_path, workdir_tmp)
    options = dict(client_options or {})

    def ready() -> bool:
        if not running.alive():
            raise LocalStackError(
                f"{name} exited with code {process.returncode} before it was ready:\n{running.log_tail()}"
            )
        try:
            return httpx.get(f"{running.url}/-/ready", timeout=1.0, **options).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(ready, timeout, f"{name} on {running.url} to be ready", interval=0.05)
    except TimeoutError as err:
        tail = running.log_tail()
        running.stop()
        raise LocalStackError(f"{err}\n{tail}") from None
    except BaseException:
        running.stop()
        raise
    return running


# --------------------------------------------------------------------------- Prometheus


@dataclass(frozen=True)
class ScrapeTarget:
    """host:port of a /metrics endpoint and the target labels Prometheus puts on its series
    (namespace, app, track, version, pod), like a ServiceMonitor's podTargetLabels."""

    address: str
    labels: Mapping[str, str]
    metrics_path: str = "/metrics"


def prometheus_config(
    rule_files: Sequence[str],
    targets: Sequence[ScrapeTarget],
    scrape_interval: str,
    eval_interval: str,
    alertmanager_url: str | None,
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": eval_interval,
        },
        "rule_files": list(rule_files),
        "scrape_configs": [
            {
                "job_name": "genesis",
                "metrics_path": path,
                "static_configs": [
                    {"targets": [t.address], "labels": dict(t.labels)}
                    for t in targets
                    if t.metrics_path == path
                ],
            }
            for path in sorted({t.metrics_path for t in targets})
        ],
    }
    if alertmanager_url:
        config["alerting"] = {
            "alertmanagers": [{"static_configs": [{"targets": [urlparse(alertmanager_url).netloc]}]}]
        }
    return config


def start_prometheus(
    *,
    rules: Sequence[str] = (),
    rule_files: Sequence[Path | str] = (),
    targets: Sequence[ScrapeTarget] = (),
    scrape_interval: str = "1s",
    eval_interval: str = "1s",
    alertmanager_url: str | None = None,
    web_config: Mapping[str, Any] | None = None,
    client_options: Mapping[str, Any] | None = None,
    data_dir: Path | None = None,
    timeout: float = 30.0,
) -> Running:
    """Start the real `prometheus` binary on 127.0.0.1.

    rules: rule file texts (YAML), written into the temp dir; rule_files: existing files.
    Rule groups with their own `interval` keep it; eval_interval is the default.
    web_config: a --web.config.file document (tls_server_config, basic_auth_users); with TLS
    the URL is https, and client_options (httpx verify/auth) are how the ready check gets in.
    data_dir: an existing TSDB to serve (backfilled blocks) instead of a fresh one, kept 100
    years: Prometheus counts retention from the newest block, and the default 15 days would
    delete a replayed stage at start.
    """
    binary = require_binary("prometheus")
    tmp = tempfile.TemporaryDirectory(prefix="rollout-prometheus-")
    workdir = Path(tmp.name)
    paths = [str(Path(p).resolve()) for p in rule_files]
    for i, text in enumerate(rules):
        path = workdir / f"rules-{i}.yaml"
        path.write_text(text)
        paths.append(str(path))
    config_path = workdir / "prometheus.yml"
    config_path.write_text(
        yaml.safe_dump(
            prometheus_config(paths, targets, scrape_interval, eval_interval, alertmanager_url),
            sort_keys=False,
        )
    )

    web_flags = []
    if web_config is not None:
        web_path = workdir / "web.yml"
        web_path.write_text(yaml.safe_dump(dict(web_config), sort_keys=False))
        web_flags = [f"--web.config.file={web_path}"]

    def argv(workdir: Path, port: int) -> list[str]:
        return [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={data_dir or workdir / 'data'}",
            *(["--storage.tsdb.retention.time=100y"] if data_dir else []),
            f"--web.listen-address={HOST}:{port}",
            "--web.enable-lifecycle",
            "--log.level=warn",
            *web_flags,
        ]

    scheme = "https" if web_config and "tls_server_config" in web_config else "http"
    return _start("prometheus", argv, tmp, timeout, scheme=scheme, client_options=client_options)


def serve_tsdb(data_dir: Path, *, timeout: float = 60.0) -> Running:
    """The real `prometheus` on 127.0.0.1 serving an existing TSDB directory, scraping nothing."""
    return start_prometheus(data_dir=data_dir, timeout=timeout)


# --------------------------------------------------------------------------- Alertmanager


def start_alertmanager(config: str | Mapping[str, Any], *, timeout: float = 30.0) -> Running:
    """Start the real `prometheus-alertmanager` on 127.0.0.1 (no cluster gossip)."""
    binary = require_binary("prometheus-alertmanager")
    tmp = tempfile.TemporaryDirectory(prefix="rollout-alertmanager-")
    config_path = Path(tmp.name) / "alertmanager.yml"
    text = config if isinstance(config, str) else yaml.safe_dump(dict(config), sort_keys=False)
    config_path.write_text(text)

    def argv(workdir: Path, port: int) -> list[str]:
        return [
            binary,
            f"--config.file={config_path}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address={HOST}:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ]

    return _start("alertmanager", argv, tmp, timeout)


# --------------------------------------------------------------------------- Pushgateway


def start_pushgateway(*, timeout: float = 30.0) -> Running:
    """Start the real `prometheus-pushgateway` on 127.0.0.1 (persistence in the temp dir)."""
    binary = require_binary("prometheus-pushgateway")
    tmp = tempfile.TemporaryDirectory(prefix="rollout-pushgateway-")

    def argv(workdir: Path, port: int) -> list[str]:
        return [
            binary,
            f"--web.listen-address={HOST}:{port}",
            f"--persistence.file={workdir / 'pushgateway.data'}",
            "--log.level=warn",
        ]

    return _start("pushgateway", argv, tmp, timeout)


# --------------------------------------------------------------------------- VictoriaMetrics


def start_victoria_metrics(
    *, targets: Sequence[ScrapeTarget] = (), scrape_interval: str = "1s", timeout: float = 30.0
) -> Running:
    """Start single-node VictoriaMetrics (Debian `victoria-metrics`) on 127.0.0.1, scraping
    `targets` itself. Queries see the newest samples (no 30 s latency offset, no result cache),
    as a bot that checks every few seconds in a test needs."""
    binary = require_binary("victoria-metrics")
    tmp = tempfile.TemporaryDirectory(prefix="rollout-victoria-metrics-")
    config_path = Path(tmp.name) / "scrape.yml"
    scrape = prometheus_config([], targets, scrape_interval, scrape_interval, None)
    del scrape["rule_files"], scrape["global"]["evaluation_interval"]
    config_path.write_text(yaml.safe_dump(scrape, sort_keys=False))

    def argv(workdir: Path, port: int) -> list[str]:
        return [
            binary,
            f"-storageDataPath={workdir / 'data'}",
            f"-httpListenAddr={HOST}:{port}",
            f"-promscrape.config={config_path}",
            "-search.latencyOffset=0s",
            "-search.disableCache",
            "-loggerLevel=WARN",
        ]

    return _start("victoria-metrics", argv, tmp, timeout)


def start_vmalert(
    datasource_url: str, rules: Sequence[str], *, eval_interval: str = "1s", timeout: float = 30.0
) -> Running:
    """Start `vmalert` evaluating recording rules against `datasource_url` and writing the
    results back there: what the Prometheus rule evaluator does for VictoriaMetrics.
    rules: rule file texts holding recording rules only (alerting rules need a notifier)."""
    binary = require_binary("vmalert")
    tmp = tempfile.TemporaryDirectory(prefix="rollout-vmalert-")
    paths = []
    for i, text in enumerate(rules):
        path = Path(tmp.name) / f"rules-{i}.yaml"
        path.write_text(text)
        paths.append(path)

    def argv(workdir: Path, port: int) -> list[str]:
        return [
            binary,
            *(f"-rule={path}" for path in paths),
            f"-datasource.url={datasource_url}",
            f"-remoteWrite.url={datasource_url}",
            f"-evaluationInterval={eval_interval}",
            f"-httpListenAddr={HOST}:{port}",
            "-loggerLevel=WARN",
        ]

    return _start("vmalert", argv, tmp, timeout)


def start_vmauth(users: Sequence[Mapping[str, Any]], *, timeout: float = 30.0) -> Running:
    """Start `vmauth`, VictoriaMetrics' authenticating proxy, with its `users` list (each a
    bearer_token or username/password and a url_prefix): the gate in front of a shared backend."""
    binary = require_binary("vmauth")
    tmp = tempfile.TemporaryDirectory(prefix="rollout-vmauth-")
    config_path = Path(tmp.name) / "auth.yml"
    config_path.write_text(yaml.safe_dump({"users": [dict(u) for u in users]}, sort_keys=False))

    def argv(workdir: Path, port: int) -> list[str]:
        return [
            binary,
            f"-auth.config={config_path}",
            f"-httpListenAddr={HOST}:{port}",
            "-loggerLevel=WARN",
        ]

    return _start("vmauth", argv, tmp, timeout)


# --------------------------------------------------------------------------- loopback HTTP servers


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that keeps the test output clean (no access log on stderr)."""

    def log_message(self, format: str, *args: object) -> None:
        pass


class LoopbackServer:
    """An HTTP server on 127.0.0.1 at a free port, serving `handler` from a daemon thread until
    stop(): the lifecycle every local stand-in (webhook receiver, hostile Prometheus, tenant
    gateway) shares."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer((HOST, 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://{HOST}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- webhook receiver


class WebhookReceiver(LoopbackServer):
    """Records every JSON body POSTed to it (Alertmanager webhook payloads)."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    self.send_response(400)
                    self.end_headers()
                    return
                with receiver._lock:
                    receiver.payloads.append(body)
                self.send_response(200)
                self.end_headers()

        super().__init__(Handler)
        self.url += "/"

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert received, each with the `receiver` and `status` of its notification."""
        with self._lock:
            payloads = list(self.payloads)
        return [
            {**alert, "receiver": p.get("receiver"), "notification_status": p.get("status")}
            for p in payloads
            for alert in p.get("alerts", [])
        ]

    def wait_for_alert(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = 30.0
    ) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next((a for a in self.alerts() if match(a)), None)

        return wait_for(found, timeout, "a matching alert at the webhook receiver")
