"""A thin Prometheus HTTP API client for the bot: it talks to its server and nothing else
(rollout/release/measuring.py turns its answers into a check's measurements).

Errors (unreachable, timeout, HTTP error, bad query, an answer that is not what the API
promises) become `PrometheusError` naming the URL (credentials redacted) and the query: the bot
treats them as 'could not check', never as a pass. Transport errors and 5xx answers are retried
a bounded number of times with exponential backoff; a 4xx (bad query) is not, it will not get
better. A check has one deadline for all its queries (`Prometheus.budget`), checked between the
bytes of an answer too, so a server that drips one byte every few seconds cannot hold the bot;
an answer above `max_bytes` is refused before it fills memory. An answer with `warnings`
(partial data, e.g. a Thanos store down) is an error, not a number.

Backends beyond one Prometheus (Thanos, Mimir, VictoriaMetrics) take the same API with their own
authentication: `PrometheusAuth` (bearer token or basic auth read from a file, extra headers such
as `X-Scope-OrgID`, a CA bundle, a client certificate). Credentials in the URL
(`http://user:pass@host`) become basic auth and are never shown.
"""

from __future__ import annotations

import base64
import json
import math
import re
import ssl
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

import httpx

CHECK_SECONDS = 30.0  # one check, every query included
MAX_BYTES = 10 * 1024 * 1024  # an instant query of one service's gate is a few hundred bytes
GRID_MIN_INSTANTS = 10  # fewer checks than this are judged with instant queries
MAX_POINTS = 10_000  # per range query: Prometheus refuses more than 11,000 points per series


class PrometheusError(RuntimeError):
    """A query could not be answered. `str()` names the URL (no credentials), the query and why."""

    def __init__(self, url: str, query: str, reason: str):
        self.url = url
        self.query = query
        self.reason = reason
        super().__init__(f"Prometheus at {url}: query {query!r} failed: {reason}")


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    points: list[tuple[float, float]]  # (unix time, value)


def _timestamp(at: datetime) -> str:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return f"{at.timestamp():.3f}"


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """(the URL without user:password, the credentials) so they never reach a message."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)), (
        parts.username or "", parts.password or ""
    )


def _ssl_reason(err: OSError | ssl.SSLError) -> str:
    return getattr(err, "reason", None) or err.strerror or str(err)


def _read_secret(path: str, what: str) -> str:
    try:
        value = Path(path).read_text().strip()
    except OSError as err:
        raise ValueError(f"{what}: cannot read {path}: {err.strerror}") from None
    if not value:
        raise ValueError(f"{what}: {path} is empty")
    return value


def _basic_header(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass(frozen=True)
class PrometheusAuth:
    """How to reach a Prometheus-compatible API. Secrets are file paths (mounted Secrets)."""

    bearer_token_file: str | None = None
    basic_auth_file: str | None = None  # one line: user:password
    headers: Mapping[str, str] = field(default_factory=dict)
    ca_file: str | None = None
    client_cert_file: str | None = None
    client_key_file: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> PrometheusAuth:
        """PROMETHEUS_BEARER_TOKEN_FILE, PROMETHEUS_BASIC_AUTH_FILE, PROMETHEUS_HEADERS
        ("Name=value,Name=value"), PROMETHEUS_CA_FILE, PROMETHEUS_CLIENT_CERT_FILE,
        PROMETHEUS_CLIENT_KEY_FILE."""
        headers = {}
        # header values are often credentials: an error names the item and the header, never its value
        for index, item in enumerate(filter(None, (environ.get("PROMETHEUS_HEADERS") or "").split(",")), 1):
            name, sep, value = item.partition("=")
            name = name.strip()
            if not sep or not name:
                raise ValueError(f"PROMETHEUS_HEADERS: item {index} is not Name=value (value not shown)")
            if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
                raise ValueError(f"PROMETHEUS_HEADERS: item {index}: the header name is not an HTTP token "
                                 "(letters, digits, -, _, ...; value not shown)")
            if any(c in value for c in "\r\n\0"):
                raise ValueError(f"PROMETHEUS_HEADERS: {name}: the value holds a line break or NUL (value not shown)")
            headers[name] = value.strip()
        return cls(
            bearer_token_file=environ.get("PROMETHEUS_BEARER_TOKEN_FILE") or None,
            basic_auth_file=environ.get("PROMETHEUS_BASIC_AUTH_FILE") or None,
            headers=headers,
            ca_file=environ.get("PROMETHEUS_CA_FILE") or None,
            client_cert_file=environ.get("PROMETHEUS_CLIENT_CERT_FILE") or None,
            client_key_file=environ.get("PROMETHEUS_CLIENT_KEY_FILE") or None,
        )

    def client_options(self, url_credentials: tuple[str, str] | None) -> dict[str, Any]:
        """httpx.Client keyword arguments; reads the secret files (ValueError names the file)."""
        return self.connection(url_credentials)[0]

    def connection(self, url_credentials: tuple[str, str] | None) -> tuple[dict[str, Any], list[str]]:
        """(httpx.Client keyword arguments, the secret values to keep out of every message),
        each secret file read once."""
        options: dict[str, Any] = {"headers": dict(self.headers)}
        # a server may echo the Authorization header: its base64 form is as secret as the password
        secrets = [url_credentials[1], _basic_header(*url_credentials)] if url_credentials else []
        if self.bearer_token_file and (self.basic_auth_file or url_credentials):
            raise ValueError("a bearer token and basic auth exclude each other")
        if self.bearer_token_file:
            token = _read_secret(self.bearer_token_file, "PROMETHEUS_BEARER_TOKEN_FILE")
            options["headers"]["Authorization"] = f"Bearer {token}"
            secrets.append(token)
        elif self.basic_auth_file:
            user, sep, password = _read_secret(self.basic_auth_file, "PROMETHEUS_BASIC_AUTH_FILE").partition(":")
            if not sep:
                raise ValueError(f"PROMETHEUS_BASIC_AUTH_FILE: {self.basic_auth_file} must hold user:password")
            options["auth"] = httpx.BasicAuth(user, password)
            secrets += [password, _basic_header(user, password)]
        elif url_credentials:
            options["auth"] = httpx.BasicAuth(*url_credentials)
        if self.ca_file or self.client_cert_file or self.client_key_file:
            options["verify"] = self.tls_context()
        return options, [v for v in secrets if v]

    def tls_context(self) -> ssl.SSLContext:
        """Server verification against the CA bundle (or the system's), plus the client
        certificate when one is set; a file that cannot be loaded is named."""
        if self.client_key_file and not self.client_cert_file:
            raise ValueError("PROMETHEUS_CLIENT_KEY_FILE is set without PROMETHEUS_CLIENT_CERT_FILE")
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as err:
            raise ValueError(f"PROMETHEUS_CA_FILE: cannot load {self.ca_file}: {_ssl_reason(err)}") from None
        if self.client_cert_file:
            try:
                context.load_cert_chain(self.client_cert_file, self.client_key_file)
            except (OSError, ssl.SSLError) as err:
                files = ", ".join(filter(None, (self.client_cert_file, self.client_key_file)))
                raise ValueError(
                    f"PROMETHEUS_CLIENT_CERT_FILE/PROMETHEUS_CLIENT_KEY_FILE: cannot load {files}: {_ssl_reason(err)}"
                ) from None
        return context


def _number(raw: Any, url: str, query: str) -> float:
    """A sample value as the API sends it: a string holding a float ("NaN", "+Inf" included)."""
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise PrometheusError(url, query, f"malformed answer: sample value {raw!r} is not a number")
    try:
        return float(raw)
    except ValueError:
        raise PrometheusError(url, query, f"malformed answer: sample value {raw!r} is not a number") from None


@dataclass
class _Grid:
    """Evenly spaced check instants and, per expression, the samples at each instant's index."""

    start: float  # unix seconds of the first instant
    step: float
    count: int
    ranged: bool = True  # value() at these instants is answered from range queries
    answers: dict[str, dict[int, list[Sample]]] = field(default_factory=dict)
    memo: dict[Any, Any] = field(default_factory=dict)  # what callers compute once per grid

    @property
    def last(self) -> datetime:
        return datetime.fromtimestamp(self.start + (self.count - 1) * self.step, UTC)

    def index(self, at: datetime) -> int | None:
        k = (at.timestamp() - self.start) / self.step
        nearest = round(k)
        return nearest if 0 <= nearest < self.count and abs(k - nearest) * self.step < 1e-3 else None


class Prometheus:
    """Instant and range queries against one Prometheus-compatible API; counts the queries."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        retries: int = 2,
        backoff: float = 0.2,
        check_seconds: float = CHECK_SECONDS,
        max_bytes: int = MAX_BYTES,
        auth: PrometheusAuth | None = None,
        client: httpx.Client | None = None,
    ):
        bare, credentials = split_credentials(url.rstrip("/"))
        self.url = bare  # what messages show: never the credentials
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.check_seconds = check_seconds
        self.max_bytes = max_bytes
        self.queries = 0
        self._deadline: float | None = None
        self._grid: _Grid | None = None
        auth = auth or PrometheusAuth()
        options, self._secrets = auth.connection(credentials)
        self._client = client or httpx.Client(timeout=timeout, **options)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def budget(self, seconds: float | None = None) -> Iterator[None]:
        """One deadline for every query inside (one check); nested budgets keep the outer one."""
        if self._deadline is not None:
            yield
            return
        self._deadline = time.monotonic() + (self.check_seconds if seconds is None else seconds)
        try:
            yield
        finally:
            self._deadline = None

    # ------------------------------------------------------------------ transport

    def _error(self, query: str, reason: str) -> PrometheusError:
        for secret in self._secrets:
            reason = reason.replace(secret, "***")
        return PrometheusError(self.url, query, reason)

    def _remaining(self, query: str) -> float:
        if self._deadline is None:
            return self.timeout
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise self._error(query, f"the check's {self.check_seconds:g}s deadline passed")
        return min(self.timeout, left)

    def _fetch(self, url: str, params: dict[str, str], query: str) -> tuple[int, bytes]:
        """One GET, body read under the deadline and the size cap."""
        timeout = self._remaining(query)
        chunks, size = [], 0
        with self._client.stream("GET", url, params=params, timeout=timeout) as response:
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > self.max_bytes:
                    raise self._error(query, f"answer larger than {self.max_bytes} bytes: refused")
                chunks.append(chunk)
                self._remaining(query)  # a server dripping bytes still meets the deadline
            return response.status_code, b"".join(chunks)

    def _get(self, path: str, params: dict[str, str], query: str) -> Any:
        """GET an API path; returns the `data` field. Retries transport errors and 5xx."""
        self.queries += 1
        url = self.url + path
        last = "no attempt made"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(self.backoff * 2 ** (attempt - 1), self._remaining(query)))
            try:
                status, raw = self._fetch(url, params, query)
            except httpx.TimeoutException:
                last = "timed out"
                continue
            except httpx.TransportError as err:
                last = f"unreachable ({type(err).__name__}: {err})"
                continue
            if status >= 500:
                last = f"HTTP {status}: {raw[:200].decode(errors='replace')}"
                continue
            try:
                body = json.loads(raw)
            except ValueError:
                snippet = " ".join(raw[:200].decode(errors="replace").split())
                raise self._error(query, f"HTTP {status}, not a JSON answer: {snippet!r}") from None
            if not isinstance(body, dict):
                raise self._error(query, f"HTTP {status}, malformed answer: not a JSON object")
            if status != 200 or body.get("status") != "success":
                error = body.get("error") or raw[:200].decode(errors="replace")
                raise self._error(query, f"HTTP {status}: {error}")
            if body.get("warnings"):
                raise self._error(query, f"partial data, not trusted: warnings {body['warnings']!r}")
            data = body.get("data")
            if not isinstance(data, dict):
                raise self._error(query, f"malformed answer: data is {data!r}")
            return data
        raise self._error(query, f"{last} (after {self.retries + 1} attempts)")

    # ------------------------------------------------------------------ queries

    def query(self, expr: str, at: datetime | None = None) -> list[Sample]:
        """Instant query, now or at a past instant (retrospective checks)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = _timestamp(at)
        data = self._get("/api/v1/query", params, expr)
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar" and isinstance(result, list) and len(result) == 2:
            return [Sample({}, _number(result[1], self.url, expr))]
        if kind != "vector" or not isinstance(result, list):
            raise self._error(expr, f"expected an instant vector, got {kind!r}")
        samples = []
        for item in result:
            if not isinstance(item, dict) or not isinstance(item.get("metric"), dict) or not (
                isinstance(item.get("value"), list) and len(item["value"]) == 2
            ):
                raise self._error(expr, f"malformed answer: {str(item)[:120]}")
            samples.append(Sample(item["metric"], _number(item["value"][1], self.url, expr)))
        return samples

    def query_range(
        self, expr: str, start: datetime, end: datetime, step_seconds: float
    ) -> list[Series]:
        """Every series of `expr` at start, start + step, ... <= end. A range longer than
        Prometheus accepts in one query (11,000 points per series; MAX_POINTS leaves a margin:
        a long stage on a fine grid, a replay) is asked in consecutive pieces on the same grid
        and joined per label set."""
        step = timedelta(seconds=step_seconds)
        if (end - start) // step + 1 <= MAX_POINTS:
            return self._query_range(expr, start, end, step_seconds)
        joined: dict[tuple[tuple[str, str], ...], Series] = {}
        piece = start
        while piece <= end:
            last = min(end, piece + (MAX_POINTS - 1) * step)
            for series in self._query_range(expr, piece, last, step_seconds):
                joined.setdefault(tuple(sorted(series.labels.items())), Series(series.labels, [])).points.extend(series.points)
            piece = last + step
        return list(joined.values())

    def _query_range(self, expr: str, start: datetime, end: datetime, step_seconds: float) -> list[Series]:
        params = {
            "query": expr,
            "start": _timestamp(start),
            "end": _timestamp(end),
            "step": f"{step_seconds:g}",
        }
        data = self._get("/api/v1/query_range", params, expr)
        if data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
            raise self._error(expr, f"expected a range vector, got {data.get('resultType')!r}")
        return [self._series(expr, item) for item in data["result"]]

    def raw_series(self, selector: str, start: datetime, end: datetime) -> list[Series]:
        """The stored samples of the series a selector names, between start and end (for an
        export): a range-vector selector read at `end`, so no step resamples them."""
        seconds = max(1, math.ceil((end - start).total_seconds()))
        expr = f"{selector}[{seconds}s]"
        data = self._get("/api/v1/query", {"query": expr, "time": _timestamp(end)}, expr)
        if data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
            raise self._error(expr, f"expected a range vector, got {data.get('resultType')!r}")
        return [self._series(expr, item) for item in data["result"]]

    def _series(self, expr: str, item: Any) -> Series:
        if not isinstance(item, dict) or not isinstance(item.get("values"), list):
            raise self._error(expr, f"malformed answer: {str(item)[:120]}")
        return Series(item.get("metric") or {}, [
            (_number(t, self.url, expr), _number(v, self.url, expr)) for t, v in item["values"]
        ])

    @contextmanager
    def grid(self, instants: Sequence[datetime]) -> Iterator[None]:
        """Inside, `value(expr, at)` at one of these evenly spaced instants is answered from one
        range query per expression (made the first time it is asked) instead of an instant
        query per instant: a tick that re-judges a whole stage (cumulative counting, a replay)
        costs a few queries, not thousands. A range query evaluates its expression at
        start + k x step exactly as an instant query at that time would: same values."""
        if not instants or self._grid is not None:
            yield
            return
        step = (instants[1] - instants[0]).total_seconds() if len(instants) > 1 else 1.0
        if step <= 0 or any(
            abs((b - a).total_seconds() - step) > 1e-3 for a, b in zip(instants, instants[1:])
        ):
            raise ValueError("grid instants must be evenly spaced, oldest first")
        # a handful of instants (the usual tick): instant queries cost as little, but the memo
        # still spares the judge's range queries from the stage start at every check
        self._grid = _Grid(instants[0].timestamp(), step, len(instants), ranged=len(instants) >= GRID_MIN_INSTANTS)
        try:
            yield
        finally:
            self._grid = None

    def grid_memo(self) -> tuple[dict[Any, Any], datetime] | None:
        """Inside `grid()`: a dict that lives as long as the grid, and its last instant, so a
        caller computes over the whole grid once (the judge's e-process) and reads it per check."""
        return None if self._grid is None else (self._grid.memo, self._grid.last)

    def _grid_samples(self, expr: str, index: int) -> list[Sample]:
        grid = self._grid
        assert grid is not None
        if expr not in grid.answers:
            answers: dict[int, list[Sample]] = {}
            start = datetime.fromtimestamp(grid.start, UTC)
            end = datetime.fromtimestamp(grid.start + (grid.count - 1) * grid.step, UTC)
            for series in self.query_range(expr, start, end, grid.step):  # split when long
                for t, v in series.points:
                    answers.setdefault(round((t - grid.start) / grid.step), []).append(Sample(series.labels, v))
            grid.answers[expr] = answers
        return grid.answers[expr].get(index, [])

    def value(self, expr: str, at: datetime | None = None) -> float | None:
        """The one value of a query that names one series; None when there is no series."""
        index = None if self._grid is None or not self._grid.ranged or at is None else self._grid.index(at)
        samples = self.query(expr, at) if index is None else self._grid_samples(expr, index)
        if not samples:
            return None
        if len(samples) > 1:
            shown = ", ".join(str(s.labels) for s in samples[:3])
            raise self._error(expr, f"expected one series, got {len(samples)} ({shown}): narrow the selector")
        return samples[0].value

    # ------------------------------------------------------------------ preflight helpers

    def ready_status(self) -> int | str:
        """The HTTP status of /-/ready, or why there is none (secrets redacted)."""
        try:
            return self._client.get(self.url + "/-/ready", timeout=self.timeout).status_code
        except httpx.HTTPError as err:
            return self._error("GET /-/ready", f"{type(err).__name__}: {err}").reason

    def rules_loaded(self, names: Iterable[str]) -> dict[str, bool]:
        """Which of these recording/alerting rule names Prometheus has loaded."""
        data = self._get("/api/v1/rules", {}, "GET /api/v1/rules")
        try:
            loaded = {rule["name"] for group in data["groups"] for rule in group["rules"]}
        except (KeyError, TypeError):
            raise self._error("GET /api/v1/rules", "malformed answer: no groups of rules") from None
        return {name: name in loaded for name in names}

    def series_exists(self, series_selector: str, at: datetime | None = None) -> bool:
        return bool(self.query(f"count({series_selector})", at))

    def firing_alerts(self) -> list[dict[str, Any]]:
        """Alerts in state 'firing' as Prometheus reports them (labels, annotations, activeAt)."""
        data = self._get("/api/v1/alerts", {}, "GET /api/v1/alerts")
        alerts = data.get("alerts")
        if not isinstance(alerts, list) or not all(isinstance(a, dict) for a in alerts):
            raise self._error("GET /api/v1/alerts", "malformed answer: no list of alerts")
        return [alert for alert in alerts if alert.get("state") == "firing"]
