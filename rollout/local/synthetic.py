"""A synthetic Genesis pod: simulated traffic exporting the seed plan's metrics on 127.0.0.1.

One `Workload` is one pod-like instance with its own registry and HTTP server. Prometheus
adds namespace/app/track/version/pod as target labels in its scrape config, as the
ServiceMonitor does in the cluster, so the exporter itself carries no such labels.

Traffic: `request_rate` is the whole service's requests per second; this instance serves its
track's share (canary: canary_weight %, stable: the rest) divided by `pods`. Request metrics
carry a `route` label: `weighted` for what the route's weight sent, `header` for testers'
`x-genesis-track: canary` requests (`header_rate` per second on a canary pod, with their own
`header_profile`), so the judge and the gates can leave the testers out. The fault
profile and the weight can change at runtime: `set_profile()`/`set_weight()` in-process, or
for a separate process `POST /control` with JSON {"profile": "bad", "canary_weight": 50}
(`GET /control` shows the state). Outcomes come from a seeded RNG and request counts from a
fixed-rate accumulator, so a run is repeatable for a given seed and step sequence.

    python -m rollout.local.synthetic --track canary --port 9101 --weight 10 --profile healthy

`KubeStateMetrics` stands in for kube-state-metrics (which kube-prometheus-stack ships): the
desired and available replicas of each `<app>-<track>` Deployment, so the availability gate
and its alert see what they would in a cluster; `set_ready(..., False)` models a canary whose
pods never become ready.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from rollout.model import ServiceConfig

TRACKS = ("stable", "canary")
ROUTES = ("weighted", "header")  # the request metrics' route label
# Boundaries 2.5^(1/5) ~ 1.2x apart, 0.027 s to 2.2 s, with the plan's 0.2 s and 0.5 s exact: the
# latency judge compares the canary above b with stable above b / 1.2 (its default tolerance), so
# with one tolerance between boundaries that point is (within 0.1 %) a boundary, not a guess
# inside a wide bucket. With the old 2x-apart buckets a canary 1.5x slower took a median 79 min
# to declare, with these 6.5 (benchmarks/bench_judge.py's detection table; docs/judge.md).
LATENCY_BUCKETS = tuple(round(0.2 * 2.5 ** (k / 5), 4) for k in range(-11, 14))


@dataclass(frozen=True)
class Profile:
    name: str
    error_probability: float
    latency_floor_seconds: float  # every request takes at least this...
    latency_extra_mean_seconds: float  # ...plus an exponential tail with this mean
    test_pass_rate: float
    workflow_probability: float  # share of requests that run a Pipelex workflow
    workflow_success_probability: float
    fallback_probability: float  # per workflow
    spice_tasks_per_minute: float  # per pod, independent of traffic (background generation)
    silent: bool = False  # the endpoint answers but carries no samples


# healthy: P95 ~0.11 s; bad: 5% errors, P95 ~0.8 s, pass rate 0.9, 80% Pipelex success,
# 30% fallbacks; sluggish: P95 ~0.17 s, half again stable's, slow requests several times as
# common, under every threshold (only the judge sees it). 30 SPICE tasks/min per pod keeps a
# short test window from seeing none.
PROFILES: dict[str, Profile] = {
    "healthy": Profile("healthy", 0.0, 0.02, 0.03, 1.0, 0.5, 0.998, 0.005, 30.0),
    "bad": Profile("bad", 0.05, 0.25, 0.18, 0.9, 0.5, 0.80, 0.30, 30.0),
    "sluggish": Profile("sluggish", 0.0, 0.035, 0.045, 1.0, 0.5, 0.998, 0.005, 30.0),
    "silent": Profile("silent", 0.0, 0.02, 0.03, 1.0, 0.5, 0.998, 0.005, 30.0, silent=True),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; profiles: {sorted(PROFILES)}") from None


class _Switchable(Collector):
    """Exposes the inner registry unless the profile is silent."""

    def __init__(self, inner: CollectorRegistry, workload: Workload):
        self._inner = inner
        self._workload = workload

    def collect(self) -> Iterator[Any]:
        if not self._workload.profile.silent:
            yield from self._inner.collect()


class Workload:
    """One simulated pod of one track. `start()` serves /metrics and simulates in a thread."""

    def __init__(
        self,
        track: str,
        *,
        request_rate: float = 20.0,
        canary_weight: float = 10,
        pods: int = 1,
        profile: str = "healthy",
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        tick_seconds: float = 0.1,
        error_window_seconds: float = 10.0,
        errors_counter: bool = True,
        header_rate: float = 0.0,
        header_profile: str = "healthy",
    ):
        if track not in TRACKS:
            raise ValueError(f"track must be one of {TRACKS} (got {track!r})")
        if pods < 1:
            raise ValueError(f"pods must be >= 1 (got {pods})")
        self.track = track
        self.request_rate = request_rate
        self.pods = pods
        self.host = host
        self.port = port
        self.tick_seconds = tick_seconds
        self.error_window_seconds = error_window_seconds
        if header_rate < 0 or (header_rate and track != "canary"):
            raise ValueError(f"header_rate: testers' header-routed requests reach the canary only (got {header_rate} "
                             f"for {track})")
        self.header_rate = header_rate
        self.header_profile = get_profile(header_profile)
        self._carry_header = 0.0
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._carry_requests = 0.0
        self._carry_tasks = 0.0
        self._clock = 0.0  # simulated seconds
        self._recent: deque[tuple[float, int, int]] = deque()  # (time, requests, errors)
        self.served = 0
        self.set_weight(canary_weight)
        self.profile = get_profile(profile)
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

        inner = CollectorRegistry()
        self.spice_tasks = Counter(
            "spice_tasks_generated", "SPICE tasks generated", registry=inner
        )
        route = ["route"]
        self.workflows = Counter("pipelex_workflows", "Pipelex workflows run", route, registry=inner)
        self.workflows_success = Counter(
            "pipelex_workflows_success", "Pipelex workflows that succeeded", route, registry=inner
        )
        self.fallbacks = Counter(
            "pipelex_fallback_triggered", "Pipelex fallbacks triggered", route, registry=inner
        )
        self.test_pass_rate = Gauge(
            "genesis_test_pass_rate", "Share of self-tests passing", registry=inner
        )
        self.error_rate = Gauge(
            "genesis_error_rate", "Share of requests that failed, recent window", registry=inner
        )
        # the counter the judge prefers (docs/judge.md); without it the judge falls back on the gauge
        self.errors = (
            Counter("genesis_request_errors", "Requests that failed", route, registry=inner) if errors_counter else None
        )
        self.latency = Histogram(
            "genesis_request_duration_seconds",
            "Request duration",
            route,
            buckets=LATENCY_BUCKETS,
            registry=inner,
        )
        for name in ROUTES:  # every child exported from the start at 0: a counter's first sample is its baseline
            for metric in (self.workflows, self.workflows_success, self.fallbacks, self.errors, self.latency):
                if metric is not None:
                    metric.labels(name)
        self.test_pass_rate.set(self.profile.test_pass_rate)
        self.error_rate.set(0.0)
        self.registry = CollectorRegistry()
        self.registry.register(_Switchable(inner, self))

    # ------------------------------------------------------------------ control

    @property
    def share(self) -> float:
        """Requests per second share of this instance (0..1 of the service's traffic)."""
        track_share = self.canary_weight / 100 if self.track == "canary" else 1 - self.canary_weight / 100
        return track_share / self.pods

    def set_weight(self, canary_weight: float) -> None:
        if not 0 <= canary_weight <= 100:
            raise ValueError(f"canary_weight must be between 0 and 100 (got {canary_weight})")
        with self._lock:
            self.canary_weight = float(canary_weight)

    def set_profile(self, name: str) -> None:
        new = get_profile(name)
        with self._lock:
            self.profile = new
            self.test_pass_rate.set(new.test_pass_rate)

    def state(self) -> dict[str, Any]:
        return {
            "track": self.track,
            "profile": self.profile.name,
            "canary_weight": self.canary_weight,
            "share": self.share,
            "request_rate": self.request_rate,
            "pods": self.pods,
            "served": self.served,
            "profiles": {name: asdict(p) for name, p in PROFILES.items()},
        }

    # ------------------------------------------------------------------ simulation

    def step(self, seconds: float) -> int:
        """Simulate `seconds` of traffic; returns the requests served."""
        with self._lock:
            p = self.profile
            self._clock += seconds
            self._carry_requests += self.request_rate * self.share * seconds
            count = int(self._carry_requests)
            self._carry_requests -= count
            self._carry_header += self.header_rate * seconds
            header = int(self._carry_header)
            self._carry_header -= header
            errors = self._serve("weighted", p, count)
            header_errors = self._serve("header", self.header_profile, header)
            self._carry_tasks += p.spice_tasks_per_minute / 60 * seconds
            tasks = int(self._carry_tasks)
            self._carry_tasks -= tasks
            if tasks:
                self.spice_tasks.inc(tasks)
            self._update_error_rate(count + header, errors + header_errors)  # the gauge cannot tell routes apart
            self.served += count + header
            return count + header

    def _serve(self, route: str, p: Profile, count: int) -> int:
        """`count` requests of one route under profile `p`; returns how many failed."""
        errors = 0
        latency = self.latency.labels(route)
        for _ in range(count):
            latency.observe(p.latency_floor_seconds + self._rng.expovariate(1 / p.latency_extra_mean_seconds))
            errors += self._rng.random() < p.error_probability
            if self._rng.random() < p.workflow_probability:
                self.workflows.labels(route).inc()
                if self._rng.random() < p.workflow_success_probability:
                    self.workflows_success.labels(route).inc()
                if self._rng.random() < p.fallback_probability:
                    self.fallbacks.labels(route).inc()
        if errors and self.errors is not None:
            self.errors.labels(route).inc(errors)
        return errors

    def _update_error_rate(self, requests: int, errors: int) -> None:
        """The gauge the app would export: errors / requests over the recent window."""
        self._recent.append((self._clock, requests, errors))
        while self._recent and self._recent[0][0] < self._clock - self.error_window_seconds:
            self._recent.popleft()
        total = sum(r for _, r, _ in self._recent)
        failed = sum(e for _, _, e in self._recent)
        self.error_rate.set(failed / total if total else 0.0)

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stopping.wait(self.tick_seconds):
            now = time.monotonic()
            self.step(now - last)
            last = now

    # ------------------------------------------------------------------ serving

    @property
    def address(self) -> str:
        """host:port for a scrape config."""
        return f"{self.host}:{self.port}"

    def start(self) -> Workload:
        self._server = ThreadingHTTPServer((self.host, self.port), _handler(self))
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._stopping.clear()
        self._threads = [
            threading.Thread(
                target=self._server.serve_forever, args=(0.05,), daemon=True, name=f"{self.track}-http"
            ),
            threading.Thread(target=self._run, daemon=True, name=f"{self.track}-traffic"),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class KubeStateMetrics:
    """`kube_deployment_spec_replicas` and `kube_deployment_status_replicas_available` per
    Deployment `<app>-<track>`, labelled namespace and deployment like kube-state-metrics."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self.registry = CollectorRegistry()
        labels = ["namespace", "deployment"]
        self.desired = Gauge("kube_deployment_spec_replicas", "Desired replicas", labels, registry=self.registry)
        self.available = Gauge(
            "kube_deployment_status_replicas_available", "Available replicas", labels, registry=self.registry
        )
        self._ready: dict[tuple[str, str], bool] = {}
        self._server: Any = None

    def set_replicas(self, namespace: str, deployment: str, replicas: int) -> None:
        """What the Deployment asks for; available follows unless its pods never get ready."""
        ready = self._ready.get((namespace, deployment), True)
        self.desired.labels(namespace, deployment).set(replicas)
        self.available.labels(namespace, deployment).set(replicas if ready else 0)

    def set_ready(self, namespace: str, deployment: str, ready: bool) -> None:
        self._ready[(namespace, deployment)] = ready
        desired = self.desired.labels(namespace, deployment)._value.get()
        self.available.labels(namespace, deployment).set(desired if ready else 0)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> KubeStateMetrics:
        self._server, _ = start_http_server(self.port, self.host, registry=self.registry)
        self.port = self._server.server_address[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def target_labels(service: ServiceConfig, track: str, pod: int = 0) -> dict[str, str]:
    """The labels a ServiceMonitor puts on a pod's series; give them to the scrape target."""
    image = service.canary if track == "canary" else service.stable
    return {
        "namespace": service.namespace,
        "app": service.name,
        "track": track,
        "version": image.version,
        "pod": f"{service.name}-{track}-{pod}",
    }


def _handler(workload: Workload) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, data: object) -> None:
            self._send(status, json.dumps(data).encode(), "application/json")

        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/metrics":
                self._send(200, generate_latest(workload.registry), CONTENT_TYPE_LATEST)
            elif self.path == "/control":
                self._json(200, workload.state())
            else:
                self._json(404, {"error": f"no such path {self.path}; try /metrics or /control"})

        def do_POST(self) -> None:
            if self.path != "/control":
                self._json(404, {"error": f"no such path {self.path}; POST /control"})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                change = json.loads(self.rfile.read(length) or b"{}")
                unknown = sorted(set(change) - {"profile", "canary_weight"})
                if unknown:
                    raise ValueError(f"unknown field(s) {unknown}; allowed: profile, canary_weight")
                if "canary_weight" in change:
                    workload.set_weight(float(change["canary_weight"]))
                if "profile" in change:
                    workload.set_profile(str(change["profile"]))
            except (ValueError, TypeError) as err:
                self._json(400, {"error": str(err)})
                return
            self._json(200, workload.state())

        def log_message(self, format: str, *args: object) -> None:  # quiet: Prometheus scrapes often
            pass

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--track", choices=TRACKS, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--rate", type=float, default=20.0, help="service requests per second")
    parser.add_argument("--weight", type=float, default=10, help="canary weight in percent")
    parser.add_argument("--pods", type=int, default=1, help="pods of this track sharing its traffic")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="healthy")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    workload = Workload(
        args.track,
        request_rate=args.rate,
        canary_weight=args.weight,
        pods=args.pods,
        profile=args.profile,
        seed=args.seed,
        host=args.host,
        port=args.port,
    ).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print(f"{args.track} workload on http://{workload.address}/metrics (control: /control)", flush=True)
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        workload.stop()


if __name__ == "__main__":
    main()
