"""Tell people about stage changes through Alertmanager's routes: on every promotion, rollback
and completion a `GenesisStageChanged` notice (event=stage-change: Slack #deployments and the
team's e-mail) saying what changed, the weight, the gate values that justified it, a dashboard
link and the rollback command; on a rollback also the critical `GenesisRolloutRolledBack`
(PagerDuty and Slack #incidents). A Grafana annotation marks every change on the dashboard.

Thin adapters over the two HTTP APIs (httpx, no retries: a lost notification is reported by the
bot, it never blocks or repeats a stage change). Every request has a TOTAL deadline, not a
per-read timeout: a receiver that accepts and then trickles bytes is given up on at the deadline.
Credentials in a URL (`http://bot:PASSWORD@...`) become basic auth and are never shown: every
message, log line and link uses the URL without them.
- Alertmanager API v2: `POST /api/v2/alerts` with labels/annotations/startsAt/endsAt;
- Grafana HTTP API: `POST /api/annotations` with tags/text/time, `Authorization: Bearer <token>`.
Tokens come from an env var or a file (`GRAFANA_TOKEN` / `GRAFANA_TOKEN_FILE`) and are held in
`Secret`, which never shows its value in str/repr, logs or error messages.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import httpx

from rollout.monitoring.names import (
    DASHBOARD_UID,
    EVENT_LABEL,
    ROLLBACK_ALERT,
    ROLLBACK_FAILED_ALERT,
    ROLLOUT_LABEL,
    ROLLOUT_VALUE,
    SOURCE,
    STAGE_CHANGE,
    STAGE_CHANGE_ALERT,
    annotation_tags,
)
from rollout.release.report import gate_line, gate_rows, redact

log = logging.getLogger("rollout.release.notify")

DEFAULT_TIMEOUT = 10.0  # seconds for a whole request: connect, send, headers and body


def notify_timeout(environ: Mapping[str, str] | None = None) -> float:
    """ROLLOUT_NOTIFY_TIMEOUT (seconds, total per request), else DEFAULT_TIMEOUT."""
    raw = (os.environ if environ is None else environ).get("ROLLOUT_NOTIFY_TIMEOUT") or ""
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 600:
        raise NotifyError(f"ROLLOUT_NOTIFY_TIMEOUT: {raw!r} is not a number of seconds in (0, 600]")
    return value


class NotifyError(RuntimeError):
    """A notification was not delivered. Never contains a token."""


# --------------------------------------------------------------------------- secrets


class Secret:
    """A token that never prints itself; only `reveal()` gives the value, for the auth header."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not value:
            raise NotifyError("empty token")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def scrub(self, text: str) -> str:
        return text.replace(self._value, "***")

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


def read_token(
    env_var: str, *, required: bool = True, environ: Mapping[str, str] | None = None
) -> Secret | None:
    """The token in $ENV_VAR, or in the file named by $ENV_VAR_FILE (a mounted secret)."""
    environ = os.environ if environ is None else environ
    file_var = f"{env_var}_FILE"
    if environ.get(env_var):
        return Secret(environ[env_var].strip())
    if environ.get(file_var):
        path = Path(environ[file_var])
        try:
            value = path.read_text().strip()
        except OSError as err:
            raise NotifyError(f"{file_var}: cannot read {path}: {err.strerror}") from None
        if not value:
            raise NotifyError(f"{file_var}: {path} is empty")
        return Secret(value)
    if required:
        raise NotifyError(f"no token: set {env_var}, or {file_var} to a file holding it")
    return None


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


class _Api:
    """One HTTP API: base URL, optional bearer token, timeout; errors never carry the token."""

    name = "API"

    def __init__(
        self,
        base_url: str,
        token: Secret | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        broken: str | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise NotifyError(f"{self.name} URL must start with http:// or https:// (got {_shown_url(base_url)!r})")
        try:
            url = httpx.URL(base_url)
        except httpx.InvalidURL as err:
            raise NotifyError(f"{self.name} URL {_shown_url(base_url)!r} is not a valid URL: {err}") from None
        # user:password in the URL: basic auth, and never part of what is shown
        self._basic = (url.username, url.password) if (url.username or url.password) else None
        self._url_secret = Secret(url.password) if url.password else None
        self.base_url = str(url.copy_with(username=None, password=None)).rstrip("/")
        self._token = token
        self._timeout = timeout
        self._transport = transport
        # a credential that could not be read: every call fails with this, at notification time,
        # so the problem is reported after the stage change instead of stopping the bot before it
        self._broken = broken

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"

    @property
    def has_credentials(self) -> bool:
        return self._basic is not None

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if self._broken:
            raise NotifyError(f"{self.name}: {self._broken}")
        headers = {"Accept": "application/json"}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token.reveal()}"
        url = f"{self.base_url}{path}"
        answer: dict[str, Any] = {}

        def send() -> None:
            try:
                with httpx.Client(timeout=self._timeout, transport=self._transport, auth=self._basic) as client:
                    response = client.request(method, url, headers=headers, **kwargs)
                    response.read()
                    answer["response"] = response
            except Exception as err:  # noqa: BLE001 - handed to the caller below
                answer["error"] = err

        # httpx's timeout is per read: a receiver trickling a byte a second never trips it. The
        # request runs in a daemon thread and is given up on at the total deadline (the thread
        # ends with the connection; a CLI process does not wait for it).
        worker = threading.Thread(target=send, name=f"{self.name} {method}", daemon=True)
        worker.start()
        worker.join(self._timeout)
        if worker.is_alive():
            raise NotifyError(f"{self.name}: {method} {url} gave no complete answer within {self._timeout:g}s: given up")
        if "error" in answer:
            err = answer["error"]
            if not isinstance(err, httpx.HTTPError):
                raise err
            raise NotifyError(self._scrub(f"{self.name}: {method} {url} failed: {type(err).__name__}: {err}")) from None
        response = answer["response"]
        if response.is_error:
            body = response.text[:300].strip()
            raise NotifyError(
                self._scrub(f"{self.name}: {method} {url} returned {response.status_code} {response.reason_phrase}: {body}")
            )
        return response

    def _scrub(self, text: str) -> str:
        for secret in (self._token, self._url_secret):
            text = secret.scrub(text) if secret else text
        return redact(text)


def _shown_url(url: str) -> str:
    return redact(url)


# --------------------------------------------------------------------------- Alertmanager


@dataclass(frozen=True)
class Alert:
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime | None = None
    generator_url: str | None = None

    def to_api(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": _iso(self.starts_at),
        }
        if self.ends_at is not None:
            body["endsAt"] = _iso(self.ends_at)
        if self.generator_url:
            body["generatorURL"] = self.generator_url
        return body


class AlertmanagerClient(_Api):
    name = "Alertmanager"

    def post_alerts(self, alerts: Sequence[Alert]) -> None:
        self._request("POST", "/api/v2/alerts", json=[a.to_api() for a in alerts])
        log.info("posted %d alert(s) to %s", len(alerts), self.base_url)

    def alerts(self, matchers: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds, filtered by exact label matchers."""
        params = [("filter", f'{k}="{v}"') for k, v in (matchers or {}).items()]
        return self._request("GET", "/api/v2/alerts", params=params).json()


def rollback_alert(
    *,
    app: str,
    namespace: str,
    source_stage: str,
    target_stage: str,
    reason: str,
    at: datetime,
    runbook_url: str,
    active_for: timedelta = timedelta(hours=1),
    generator_url: str | None = None,
) -> Alert:
    """The page for an automatic rollback; it resolves by itself after `active_for`."""
    return Alert(
        labels={
            "alertname": ROLLBACK_ALERT,
            "severity": "critical",
            "source": SOURCE,
            ROLLOUT_LABEL: ROLLOUT_VALUE,
            "app": app,
            "namespace": namespace,
            "stage": source_stage,
        },
        annotations={
            "summary": f"{app}: rollout rolled back from {source_stage} to {target_stage}",
            "description": f"The release bot rolled {app} back from stage {source_stage} to "
            f"{target_stage}: {reason}",
            "runbook_url": runbook_url,
        },
        starts_at=at,
        ends_at=at + active_for,
        generator_url=generator_url,
    )


def rollback_failed_alert(change: Any, *, app: str, namespace: str, runbook_url: str) -> Alert:
    """The page for a rollback that could not be applied: the canary still has its traffic."""
    return Alert(
        labels={
            "alertname": ROLLBACK_FAILED_ALERT,
            "severity": "critical",
            "source": SOURCE,
            ROLLOUT_LABEL: ROLLOUT_VALUE,
            "app": app,
            "namespace": namespace,
            "stage": change.source,
        },
        annotations={
            "summary": f"{app}: rollback from {change.source} to {change.target} FAILED, the canary still has traffic",
            "description": (
                f"The release bot decided to roll {app} back from stage {change.source} to {change.target} "
                f"({change.reason}) but could not apply it: {change.error}"
            ),
            "runbook_url": runbook_url,
        },
        starts_at=change.at,
        ends_at=change.at + timedelta(hours=1),
    )


def dashboard_link(base_url: str, app: str, stage: str, start: datetime, end: datetime) -> str:
    """The release dashboard over a time range, with the stage and app variables filled in."""
    ms = lambda value: int(value.timestamp() * 1000)  # noqa: E731
    return (
        f"{base_url.rstrip('/')}/d/{DASHBOARD_UID}/genesis-release?orgId=1&from={ms(start)}&to={ms(end)}"
        f"&var-stage={stage}&var-app={app}&var-track=$__all"
    )


def stage_change_alert(
    change: Any,
    *,
    app: str,
    namespace: str,
    weights: Mapping[str, int],
    dashboard_base_url: str | None,
    active_for: timedelta = timedelta(hours=1),
) -> Alert:
    """The stage-change notice: what changed, the weights, the gate values that justified it,
    a dashboard link over the stage that just ended and the rollback command."""
    source_weight, target_weight = weights.get(change.source), weights.get(change.target)
    verb = {"promote": "promoted", "rollback": "rolled back", "complete": "completed the release at"}.get(
        change.action, change.action
    )
    moved = f"{change.source} ({source_weight}%)" + (
        f" -> {change.target} ({target_weight}%)" if change.target != change.source else ""
    )
    decisive = list(change.checks or [])[-1:]
    gates = [gate_line(row) for row in gate_rows(decisive[0])] if decisive else []
    lines = [
        f"{app}: {verb} {moved} at {_iso(change.at)}.",
        f"Canary weight: {source_weight}% -> {target_weight}%.",
        f"Why: {change.reason}",
    ]
    if gates:
        lines += ["Gate values:", *(f"- {g}" for g in gates)]
    annotations = {
        "summary": f"{app}: {change.action} {moved}",
        "description": "\n".join(lines),
    }
    if dashboard_base_url:
        end = change.at + timedelta(minutes=5)
        # a change told again after a crash does not know when its stage began: the hour before it
        start = change.started_at or change.at - timedelta(hours=1)
        annotations["dashboard_url"] = dashboard_link(dashboard_base_url, app, change.target, start, end)
    if change.action == "rollback":
        annotations["next_steps"] = "rolled back already: fix the canary, then start again with `rollout promote`"
    else:
        annotations["rollback_command"] = (
            f'rollout rollback --reason "..."  (by hand: rollout plan {change.target} stable, then its commands)'
        )
    return Alert(
        labels={
            "alertname": STAGE_CHANGE_ALERT,
            "severity": "info",
            "source": SOURCE,
            ROLLOUT_LABEL: ROLLOUT_VALUE,
            EVENT_LABEL: STAGE_CHANGE,
            "app": app,
            "namespace": namespace,
            "action": change.action,
            "stage": change.target,
        },
        annotations=annotations,
        starts_at=change.at,
        ends_at=change.at + active_for,
    )


# --------------------------------------------------------------------------- Grafana


class GrafanaClient(_Api):
    name = "Grafana"

    def annotate(
        self,
        text: str,
        tags: Sequence[str],
        at: datetime,
        *,
        end: datetime | None = None,
        dashboard_uid: str | None = None,
    ) -> int | None:
        """An organisation-wide (or dashboard) annotation; returns its id."""
        body: dict[str, Any] = {"time": int(at.timestamp() * 1000), "tags": list(tags), "text": text}
        if end is not None:
            body["timeEnd"] = int(end.timestamp() * 1000)
        if dashboard_uid:
            body["dashboardUID"] = dashboard_uid
        answer = self._request("POST", "/api/annotations", json=body).json()
        log.info("added Grafana annotation %s at %s", answer.get("id"), self.base_url)
        return answer.get("id")

    def find(self, tags: Sequence[str]) -> list[dict[str, Any]]:
        """Annotations carrying every one of `tags` (so a replayed change is not annotated twice)."""
        params = [("tags", tag) for tag in tags] + [("limit", "5")]
        answer = self._request("GET", "/api/annotations", params=params).json()
        return answer if isinstance(answer, list) else []


# --------------------------------------------------------------------------- the bot's hook


@dataclass
class ReleaseNotifier:
    """A release-bot hook (`stage_changed(change)`): the stage-change notice (and the rollback
    page) to Alertmanager, an annotation to Grafana, then the report (when a `report_writer` is
    given) with what was sent in its timeline.

    `change` is the bot's StageChange (action, source, target, reason, started_at, at, checks,
    applied). A failed delivery does not stop the others; it is raised at the end as NotifyError.
    """

    app: str
    namespace: str
    runbook_base_url: str
    alertmanager: AlertmanagerClient | None = None
    grafana: GrafanaClient | None = None
    dashboard_uid: str | None = None
    # report_writer(change, events) -> path of the written report; events are (time, text)
    report_writer: Callable[[Any, list[tuple[datetime, str]]], Path] | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc))
    weights: Mapping[str, int] = field(default_factory=dict)  # stage -> canary weight
    dashboard_base_url: str | None = None  # Grafana as people open it, for links

    @property
    def runbook_url(self) -> str:
        return self._runbook(ROLLBACK_ALERT)

    def _runbook(self, alert: str) -> str:
        return f"{self.runbook_base_url.rstrip('/')}/{alert}.md"

    def rollback_failed(self, change: Any) -> str | None:
        """The rollback was not applied: write the incident report, then page (GenesisRollbackFailed)."""
        told = _Telling(self.clock)
        told.events.append((self.clock(), f"rollback NOT applied: {change.error}"))
        self._write_report(change, told)
        if self.alertmanager is not None:
            alertmanager = self.alertmanager
            alert = rollback_failed_alert(change, app=self.app, namespace=self.namespace,
                                          runbook_url=self._runbook(ROLLBACK_FAILED_ALERT))
            told.attempt(lambda: alertmanager.post_alerts([alert]),
                         done=f"{ROLLBACK_FAILED_ALERT} sent to {alertmanager.base_url}",
                         event=f"{ROLLBACK_FAILED_ALERT} (critical) sent to Alertmanager",
                         failed_event=f"{ROLLBACK_FAILED_ALERT} NOT sent")
        return self._report_and_result(change, told)

    def alerts_for(self, change: Any) -> list[Alert]:
        notice = stage_change_alert(
            change, app=self.app, namespace=self.namespace, weights=self.weights,
            dashboard_base_url=self.dashboard_base_url,
        )
        if change.action != "rollback":
            return [notice]
        page = rollback_alert(
            app=self.app, namespace=self.namespace, source_stage=change.source, target_stage=change.target,
            reason=change.reason, at=change.at, runbook_url=self.runbook_url,
        )
        if not getattr(change, "late", False):
            return [page, notice]
        # told late: an alert whose endsAt is past is resolved on arrival and pages nobody
        now = self.clock()
        late = f"LATE: this rollback was applied at {_iso(change.at)} and is told only now ({_iso(now)})"
        return [
            dataclasses.replace(alert, ends_at=now + timedelta(hours=1),
                                annotations={**alert.annotations, "late": late,
                                             "summary": f"[late] {alert.annotations['summary']}"})
            for alert in (page, notice)
        ]

    def stage_changed(self, change: Any) -> str | None:
        told = _Telling(self.clock)
        self._write_report(change, told)  # the record exists before anyone is told (or waited for)
        if self.alertmanager is not None:
            alertmanager = self.alertmanager
            alerts = self.alerts_for(change)
            names = ", ".join(a.labels["alertname"] for a in alerts)
            told.attempt(lambda: alertmanager.post_alerts(alerts), done=f"{names} sent to {alertmanager.base_url}",
                         event=f"{names} sent to Alertmanager", failed_event=f"{names} NOT sent")
        if self.grafana is not None:
            grafana = self.grafana
            text = f"{change.action} {change.source} -> {change.target}: {change.reason}"
            tags = annotation_tags(change.action, change.target)
            version = getattr(change, "version", None)
            if version is not None:
                tags.append(f"update-{version}")  # one annotation per stack update, also when told again

            def annotate() -> None:
                if version is None or not grafana.find(tags):
                    grafana.annotate(text, tags, change.at, dashboard_uid=self.dashboard_uid)

            told.attempt(annotate, done="Grafana annotation added", event="Grafana annotation added")
        return self._report_and_result(change, told)

    def _write_report(self, change: Any, told: _Telling) -> Path | None:
        if self.report_writer is None:
            return None
        try:
            return self.report_writer(change, list(told.events))
        except Exception as err:  # noqa: BLE001 - a report that cannot be written never stops the telling
            told.failed.append(f"report not written: {type(err).__name__}: {err}")
            return None

    def _report_and_result(self, change: Any, told: _Telling) -> str | None:
        """The report is written before anyone is told and again afterwards with this round's
        timeline (same file, replaced atomically), whatever failed; then a failure raises,
        naming what was done anyway."""
        path = self._write_report(change, told)
        if path is not None:
            told.done.append(f"report written to {path}")
        return told.result()


@dataclass
class _Telling:
    """One round of notifications: what was done, what failed, and the timeline for the report."""

    clock: Callable[[], datetime]
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    events: list[tuple[datetime, str]] = field(default_factory=list)

    def attempt(self, action: Callable[[], object], *, done: str, event: str, failed_event: str | None = None) -> None:
        try:
            action()
        except NotifyError as err:
            self.failed.append(str(err))
            if failed_event is not None:
                self.events.append((self.clock(), f"{failed_event}: {err}"))
        else:
            self.done.append(done)
            self.events.append((self.clock(), event))

    def result(self) -> str | None:
        if self.failed:
            raise NotifyError("; ".join(self.failed + ([f"(done: {', '.join(self.done)})"] if self.done else [])))
        return "; ".join(self.done) or None


def notifier_from_env(
    *,
    app: str,
    namespace: str,
    runbook_base_url: str,
    grafana_url: str | None = None,
    environ: Mapping[str, str] | None = None,
    report_writer: Callable[[Any, list[tuple[datetime, str]]], Path] | None = None,
) -> ReleaseNotifier:
    """ALERTMANAGER_URL (+ optional ALERTMANAGER_TOKEN[_FILE]); GRAFANA_URL (or `grafana_url`,
    e.g. monitoring.grafana.url) + GRAFANA_TOKEN[_FILE]; GRAFANA_DASHBOARD_UID optional.
    A service without a URL is skipped; a Grafana URL without a token is an error."""
    environ = os.environ if environ is None else environ
    alertmanager = None
    if environ.get("ALERTMANAGER_URL"):
        alertmanager = AlertmanagerClient(
            environ["ALERTMANAGER_URL"], read_token("ALERTMANAGER_TOKEN", required=False, environ=environ)
        )
    grafana = None
    url = environ.get("GRAFANA_URL") or grafana_url
    if url:
        grafana = GrafanaClient(url, read_token("GRAFANA_TOKEN", environ=environ))
    return ReleaseNotifier(
        app=app,
        namespace=namespace,
        runbook_base_url=runbook_base_url,
        alertmanager=alertmanager,
        grafana=grafana,
        dashboard_uid=environ.get("GRAFANA_DASHBOARD_UID") or None,
        report_writer=report_writer,
    )
