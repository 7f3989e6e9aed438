"""Leader election on a `coordination.k8s.io/v1` Lease, so at most one `rollout watch` ticks.

The in-cluster bot is a Deployment; during a rolling upgrade (maxSurge 1) or when a node is
partitioned, two of its pods can run at once. Only the holder of the Lease ticks. This follows
client-go's leader election (kubernetes/client-go, tools/leaderelection/leaderelection.go at
32ce75a7, v0.37 line: `tryAcquireOrRenew`, `isLeaseValid`, `release`):

- a record is taken over only when it has no holder, or when it has not changed for its
  `leaseDurationSeconds` as measured on *our* clock from when we first saw it (`observed_at`),
  never by comparing its renewTime with our clock (the clocks of two nodes may differ);
- every write is a compare-and-swap: the PUT carries the resourceVersion we read, and the API
  server refuses it with 409 Conflict when anyone wrote in between (so two candidates can never
  both win the same round);
- the holder gives the lease up on shutdown (holder emptied, duration 1 s) so the next pod
  takes over at once instead of after a lease duration.

Leadership is an optimisation on top of the real guards, not the guard itself: a holder whose
renewals fail while it is in the middle of a `pulumi up` cannot stop that update safely, so two
ticks may still overlap in a partition; Pulumi's stack lock and the bot's compare-and-apply
(rollout.release.deployer: `expect_head`) make the second one apply nothing.

`KubeLeaseApi` is the thin adapter: httpx against the API server named by the in-cluster
variables (KUBERNETES_SERVICE_HOST/PORT), the pod's ServiceAccount token (re-read on every
request: projected tokens rotate) and CA. It is tested against a loopback stand-in of the Lease
endpoints (tests/support/kube_lease.py): no API server can run on the test machines.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import httpx

log = logging.getLogger("rollout.release.lease")

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
LEASE_API = "/apis/coordination.k8s.io/v1"


class LeaseError(RuntimeError):
    """The Lease could not be read or written (the API server's answer is in the message)."""


class LeaseConflict(LeaseError):
    """Someone else wrote the Lease since we read it (409): we did not get it this round."""


@dataclass(frozen=True)
class LeaseRecord:
    holder: str  # "" when nobody holds it
    duration_seconds: int
    acquire_time: datetime | None = None
    renew_time: datetime | None = None
    transitions: int = 0
    resource_version: str | None = None  # what a compare-and-swap write must match


def _micro_time(value: datetime) -> str:
    # metav1.MicroTime: RFC 3339 with microseconds
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def record_from_lease(lease: Mapping[str, Any]) -> LeaseRecord:
    spec = lease.get("spec") or {}
    return LeaseRecord(
        holder=spec.get("holderIdentity") or "",
        duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
        acquire_time=_parse_time(spec.get("acquireTime")),
        renew_time=_parse_time(spec.get("renewTime")),
        transitions=int(spec.get("leaseTransitions") or 0),
        resource_version=(lease.get("metadata") or {}).get("resourceVersion"),
    )


def lease_body(name: str, namespace: str, record: LeaseRecord) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "holderIdentity": record.holder,
        "leaseDurationSeconds": record.duration_seconds,
        "leaseTransitions": record.transitions,
    }
    if record.acquire_time:
        spec["acquireTime"] = _micro_time(record.acquire_time)
    if record.renew_time:
        spec["renewTime"] = _micro_time(record.renew_time)
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if record.resource_version:
        metadata["resourceVersion"] = record.resource_version
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}


# --------------------------------------------------------------------------- pure rules


def held_by_other(record: LeaseRecord, me: str, observed_at: float, now: float) -> bool:
    """True while someone else holds a lease that has not expired on our clock (client-go's
    `isLeaseValid`: observation time + duration, not the record's renewTime)."""
    return bool(record.holder) and record.holder != me and observed_at + record.duration_seconds > now


def next_record(current: LeaseRecord | None, me: str, duration_seconds: int, now: datetime) -> LeaseRecord:
    """What we write to take or renew the lease: a new holder counts one more transition and
    starts a new acquire time; a renewal keeps both."""
    if current is not None and current.holder == me:
        return replace(current, duration_seconds=duration_seconds, renew_time=now)
    transitions = 0 if current is None else current.transitions + (1 if current.holder else 0)
    return LeaseRecord(
        holder=me, duration_seconds=duration_seconds, acquire_time=now, renew_time=now,
        transitions=transitions, resource_version=None if current is None else current.resource_version,
    )


# --------------------------------------------------------------------------- the API adapter


class LeaseApi(Protocol):
    def get(self) -> LeaseRecord | None: ...

    def create(self, record: LeaseRecord) -> LeaseRecord: ...

    def update(self, record: LeaseRecord) -> LeaseRecord: ...


class KubeLeaseApi:
    """GET / POST / PUT of one Lease through the Kubernetes API, as the pod's ServiceAccount."""

    def __init__(
        self,
        name: str,
        namespace: str,
        *,
        server: str,
        token_file: Path,
        ca_file: Path | None,
        timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.namespace = namespace
        self._token_file = token_file
        verify = ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
        self._client = httpx.Client(base_url=server, verify=verify, timeout=timeout)

    @classmethod
    def in_cluster(cls, name: str, namespace: str | None = None, environ: Mapping[str, str] | None = None) -> KubeLeaseApi:
        """From the pod's environment: KUBERNETES_SERVICE_HOST/PORT and the mounted ServiceAccount
        (ROLLOUT_SERVICE_ACCOUNT_DIR overrides its folder, for a run outside a pod)."""
        environ = os.environ if environ is None else environ
        host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise LeaseError("leader election needs the Kubernetes API: KUBERNETES_SERVICE_HOST is not set (not in a pod?)")
        folder = Path(environ.get("ROLLOUT_SERVICE_ACCOUNT_DIR") or SERVICE_ACCOUNT_DIR)
        token = folder / "token"
        if not token.is_file():
            raise LeaseError(f"leader election: no ServiceAccount token at {token}")
        if namespace is None:
            namespace = (folder / "namespace").read_text().strip()
        server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
        ca = folder / "ca.crt"
        return cls(name, namespace, server=server, token_file=token, ca_file=ca if ca.is_file() else None)

    @property
    def _path(self) -> str:
        return f"{LEASE_API}/namespaces/{self.namespace}/leases"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token_file.read_text().strip()}", "Accept": "application/json"}

    def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        try:
            response = self._client.request(method, path, json=body, headers=self._headers())
        except httpx.HTTPError as err:
            raise LeaseError(f"{method} {path}: {type(err).__name__}: {err}") from err
        if response.status_code == 409:
            raise LeaseConflict(f"{method} {path}: 409 Conflict (someone else wrote the Lease)")
        return response

    def _record(self, response: httpx.Response, doing: str) -> LeaseRecord:
        if response.status_code not in (200, 201):
            raise LeaseError(f"{doing} Lease {self.namespace}/{self.name}: HTTP {response.status_code}: {response.text[:200]}")
        return record_from_lease(response.json())

    def get(self) -> LeaseRecord | None:
        response = self._send("GET", f"{self._path}/{self.name}")
        if response.status_code == 404:
            return None
        return self._record(response, "read")

    def create(self, record: LeaseRecord) -> LeaseRecord:
        body = lease_body(self.name, self.namespace, replace(record, resource_version=None))
        return self._record(self._send("POST", self._path, body), "create")

    def update(self, record: LeaseRecord) -> LeaseRecord:
        """PUT with the resourceVersion read last: 409 (LeaseConflict) if it changed since."""
        body = lease_body(self.name, self.namespace, record)
        return self._record(self._send("PUT", f"{self._path}/{self.name}", body), "update")


# --------------------------------------------------------------------------- the elector


class LeaderElector:
    """Take and keep the lease; `leading()` says whether we may tick now.

    `try_acquire_or_renew` is one round (client-go's function of that name); `start()` runs
    rounds every `retry_seconds` on a daemon thread. We stop counting as leader once no renewal
    succeeded for `renew_deadline_seconds` (shorter than the lease, so we stop before another pod
    may start)."""

    def __init__(
        self,
        api: LeaseApi,
        identity: str,
        *,
        lease_seconds: int = 30,
        renew_deadline_seconds: float = 20.0,
        retry_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        if not retry_seconds < renew_deadline_seconds < lease_seconds:
            raise ValueError("leader election needs retry < renew deadline < lease duration")
        self.api = api
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.renew_deadline = renew_deadline_seconds
        self.retry = retry_seconds
        self._clock = clock
        self._wall = wall
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0
        self._renewed_at: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def leading(self) -> bool:
        with self._lock:
            return self._renewed_at is not None and self._clock() - self._renewed_at < self.renew_deadline

    def try_acquire_or_renew(self) -> bool:
        with self._lock:
            return self._round()

    def _round(self) -> bool:
        now = self._clock()
        try:
            current = self.api.get()
            if current is None:
                self._won(self.api.create(next_record(None, self.identity, self.lease_seconds, self._wall())), now)
                return True
            if current != self._observed:  # a new write by anyone restarts our expiry clock
                self._observed, self._observed_at = current, now
            if held_by_other(current, self.identity, self._observed_at, now):
                self._renewed_at = None
                return False
            self._won(self.api.update(next_record(current, self.identity, self.lease_seconds, self._wall())), now)
            return True
        except LeaseError as err:  # a conflict or an unreachable API server: retried next round,
            log.warning("lease: %s", err)  # and a holder leads on until its renew deadline
            return self._renewed_at is not None and now - self._renewed_at < self.renew_deadline

    def _won(self, record: LeaseRecord, now: float) -> None:
        if self._renewed_at is None:
            log.info("lease: %s now holds the lease", self.identity)
        self._observed, self._observed_at, self._renewed_at = record, now, now

    def start(self) -> None:
        """Keep trying (as a candidate) and renewing (as the holder) in the background."""

        def run() -> None:
            while not self._stop.is_set():
                self.try_acquire_or_renew()
                self._stop.wait(self.retry)

        self._thread = threading.Thread(target=run, name="lease", daemon=True)
        self._thread.start()

    def wait_for_leadership(self, stop: threading.Event) -> bool:
        """Block until we lead (True) or `stop` is set (False)."""
        while not stop.is_set():
            if self.leading():
                return True
            stop.wait(min(1.0, self.retry))
        return False

    def release(self) -> None:
        """Stop renewing; hand the lease back so the next pod takes over at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.retry + 5)
        with self._lock:
            if self._renewed_at is None or self._observed is None or self._observed.holder != self.identity:
                return
            try:
                self.api.update(replace(self._observed, holder="", duration_seconds=1, renew_time=self._wall()))
                log.info("lease: released by %s", self.identity)
            except LeaseError as err:  # it expires by itself after the lease duration
                log.warning("lease: could not release: %s", err)
            self._renewed_at = None
