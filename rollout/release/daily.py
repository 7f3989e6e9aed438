"""The daily status (the Day-0 plan's 09:00 UTC e-mail): the last 24 h of the release in one
message, composed from the stack and Prometheus, written as Markdown + PNG, e-mailed to the team
and posted to Slack #deployments.

What it holds: the stage, its weight and time in stage; the stage changes of the window (from
the stack's update history, the bot's messages); the checks of every stage that sent the canary
traffic in the window (a day with a rollback counts the checks before it), re-run on each
stage's check grid with the unchanged gate code (passed / held / failed) and each gate's canary
min / median / max; the alerts of ours that fired (Prometheus `ALERTS` for the rules, the stack
history and Alertmanager for the pages the bot posts itself); the next action and when
(rollout.analysis.decision); a plot of both tracks' rollback gates over the window, from the
recording rules, with the planned weight. Credentials come from the environment (SMTP_PASSWORD or
SMTP_PASSWORD_FILE, SLACK_WEBHOOK_URL or SLACK_WEBHOOK_URL_FILE), never from config.
"""

from __future__ import annotations

import math
import smtplib
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Mapping, Sequence

import httpx

from rollout.analysis.decision import Decision, check_times
from rollout.analysis.gates import CheckResult
from rollout.analysis.signals import recorded_query
from rollout.model import EmailReceiver, Release, format_duration
from rollout.monitoring.names import ROLLBACK_ALERT, ROLLOUT_LABEL, ROLLOUT_VALUE
from rollout.release.bot import next_decision
from rollout.release.deployer import DeployedState, parse_update_message
from rollout.release.notify import NotifyError, Secret, read_token
from rollout.release.report import format_value, redact, unit_of

WINDOW = timedelta(hours=24)
ROLLBACK_PAGE = timedelta(hours=1)  # how long the bot's rollback page stays active (notify.rollback_alert)


@dataclass(frozen=True)
class GateSummary:
    name: str
    minimum: float | None
    median: float | None
    maximum: float | None
    failed: int
    held: int


@dataclass(frozen=True)
class FiredAlert:
    name: str
    severity: str
    first: datetime
    last: datetime


@dataclass(frozen=True)
class Span:
    """A stage the stack was at during the window, from when it was applied until the next change."""

    stage: str
    weight: int
    since: datetime
    until: datetime


@dataclass(frozen=True)
class TrackSeries:
    """One rollback gate of one track over the window, from its recording rule (for the plot)."""

    key: str
    track: str
    times: list[datetime]
    values: list[float]


@dataclass
class DailyStatus:
    app: str
    at: datetime
    window: timedelta
    stage: str
    weight: int
    since: datetime
    changes: list[tuple[datetime, str]]
    checks: list[CheckResult]
    gates: list[GateSummary]
    alerts: list[FiredAlert]
    decision: Decision
    notes: list[str] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    rollbacks: int = 0  # stage changes in the window that were rollbacks
    series: list[TrackSeries] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return {v: sum(c.verdict == v for c in self.checks) for v in ("pass", "hold", "fail")}

    @property
    def health(self) -> str:
        """One word for the subject line; never "healthy" without a check to say so."""
        if self.rollbacks:
            return "rolled back"
        if self.decision.action == "rollback" or self.counts["fail"]:
            return "unhealthy"
        if self.alerts or self.counts["hold"]:
            return "watch"
        if not self.checks:
            return "not checked"
        return "healthy"

    @property
    def subject(self) -> str:
        return (
            f"Genesis rollout daily status {self.at:%Y-%m-%d}: {self.stage} ({self.weight}%), "
            f"{self.health}, next: {self.decision.action if self.weight else 'none'}"
        )


# --------------------------------------------------------------------------- composing


def _stats(values: Sequence[float]) -> tuple[float | None, float | None, float | None]:
    clean = [v for v in values if v is not None and math.isfinite(v)]
    if not clean:
        return None, None, None
    return min(clean), statistics.median(clean), max(clean)


def summarise_gates(checks: Sequence[CheckResult]) -> list[GateSummary]:
    names = list(dict.fromkeys(g.name for c in checks for g in c.gates))
    out = []
    for name in names:
        results = [g for c in checks for g in c.gates if g.name == name]
        low, mid, high = _stats([g.value for g in results])  # type: ignore[misc]
        out.append(GateSummary(
            name, low, mid, high,
            failed=sum(g.status == "fail" for g in results), held=sum(g.status == "hold" for g in results),
        ))
    return out


def fired_alerts(prometheus: Any, start: datetime, end: datetime, step_seconds: float = 60) -> list[FiredAlert]:
    """Our alerts that were firing at any time in the window (Prometheus's ALERTS series)."""
    found = prometheus.query_range(
        f'ALERTS{{{ROLLOUT_LABEL}="{ROLLOUT_VALUE}", alertstate="firing"}}', start, end, step_seconds
    )
    by_name: dict[tuple[str, str], list[float]] = {}
    for series in found:
        key = (series.labels.get("alertname", "?"), series.labels.get("severity", ""))
        by_name.setdefault(key, []).extend(t for t, _ in series.points)
    return [
        FiredAlert(name, severity, datetime.fromtimestamp(min(times), timezone.utc),
                   datetime.fromtimestamp(max(times), timezone.utc))
        for (name, severity), times in sorted(by_name.items())
    ]


def stage_changes(history: Sequence[Any], start: datetime) -> list[tuple[datetime, str]]:
    """The bot's stage changes in the window, oldest first (history entries newest first)."""
    out = []
    for entry in history:
        when = entry.end_time or entry.start_time
        if when is None or when < start or entry.result != "succeeded":
            continue
        parsed = parse_update_message(entry.message)
        if parsed is not None and parsed.final:
            arrow = f"{parsed.source} -> {parsed.target}" if parsed.source else f"-> {parsed.target}"
            out.append((when, f"{parsed.action} {arrow}: {parsed.reason}"))
    return sorted(out)


def stage_spans(release: Release, history: Sequence[Any], state: DeployedState, start: datetime,
                now: datetime) -> list[Span]:
    """The stages the stack was at during [start, now], oldest first, from the bot's stage
    changes in the update history; the current stage and its start are the deployer's."""
    changes = []
    for entry in history:
        when = entry.end_time or entry.start_time
        parsed = parse_update_message(entry.message) if entry.result == "succeeded" else None
        if when is not None and parsed is not None and parsed.final and when < state.since:
            changes.append((when, parsed.target))
    changes.sort()
    bounds = [*changes, (state.since, state.stage)]
    spans = []
    for (since, name), (until, _) in zip(bounds, [*bounds[1:], (now, "")]):
        if until <= start or name not in {s.name for s in release.stages}:
            continue
        spans.append(Span(name, release.stage(name).weight, since, until))
    return spans


def window_checks(release: Release, spans: Sequence[Span], check: Any, prometheus: Any,
                  start: datetime) -> list[CheckResult]:
    """Every check the bot ran (or would have) in the window, stage by stage: each stage's own
    grid from when it was applied, up to the next change."""
    checks: list[CheckResult] = []
    for span in spans:
        if span.weight == 0:
            continue
        stage = release.stage(span.stage)
        count = math.ceil((span.until - span.since) / stage.analysis.check_interval) + 1
        instants = [at for at in check_times(stage, span.since, span.until, count) if at >= start]
        if span.until != spans[-1].until:
            instants = [at for at in instants if at < span.until]  # the change itself was judged on the last one
        if instants:
            with prometheus.grid(instants):  # a day of checks: one range query per expression
                checks += [check(stage, at, span.since) for at in instants]
    return checks


def bot_alerts(history: Sequence[Any], start: datetime, now: datetime, alertmanager: Any = None) -> list[FiredAlert]:
    """The pages the bot posts to Alertmanager itself, which Prometheus's ALERTS never holds: one
    GenesisRolloutRolledBack per rollback in the stack history (Alertmanager forgets a resolved
    alert within hours), and whatever of ours Alertmanager holds that started in the window."""
    found: list[FiredAlert] = []
    for entry in history:
        when = entry.end_time or entry.start_time
        parsed = parse_update_message(entry.message) if entry.result == "succeeded" else None
        if when is not None and when >= start and parsed is not None and parsed.final and parsed.action == "rollback":
            found.append(FiredAlert(ROLLBACK_ALERT, "critical", when, min(when + ROLLBACK_PAGE, now)))
    if alertmanager is not None:  # NotifyError when it does not answer: compose notes it
        for alert in alertmanager.alerts({ROLLOUT_LABEL: ROLLOUT_VALUE}):
            labels = alert.get("labels", {})
            first = datetime.fromisoformat(alert["startsAt"].replace("Z", "+00:00"))
            if start <= first <= now:
                ends = datetime.fromisoformat(alert["endsAt"].replace("Z", "+00:00")) if alert.get("endsAt") else now
                found.append(FiredAlert(labels.get("alertname", "?"), labels.get("severity", ""), first, min(ends, now)))
    return found


def merge_alerts(alerts: Sequence[FiredAlert]) -> list[FiredAlert]:
    """One line per alert name and severity: the first start and the last time it was firing."""
    by_key: dict[tuple[str, str], FiredAlert] = {}
    for alert in alerts:
        key = (alert.name, alert.severity)
        seen = by_key.get(key)
        by_key[key] = alert if seen is None else FiredAlert(
            alert.name, alert.severity, min(seen.first, alert.first), max(seen.last, alert.last))
    return [by_key[key] for key in sorted(by_key)]


PLOTTED = ("error_rate", "p95_latency_seconds", "test_pass_rate")  # the plan's rollback gates


def gate_series(release: Release, prometheus: Any, start: datetime, end: datetime) -> list[TrackSeries]:
    """Both tracks' rollback gates over the window from the recording rules (what the bot judges),
    about 300 points each; at stable there is still a stable line to see."""
    service = release.project.services[0]
    step = max(1.0, (end - start).total_seconds() / 300)
    out = []
    for key in PLOTTED:
        for track in ("stable", "canary"):
            found = prometheus.query_range(recorded_query(key, service.name, track, service.namespace), start, end, step)
            points = sorted(p for series in found for p in series.points)
            out.append(TrackSeries(key, track, [datetime.fromtimestamp(t, timezone.utc) for t, _ in points],
                                   [v for _, v in points]))
    return out


def compose(
    release: Release,
    state: DeployedState,
    history: Sequence[Any],
    check: Any,
    prometheus: Any,
    now: datetime,
    window: timedelta = WINDOW,
    alertmanager: Any = None,
) -> DailyStatus:
    """`check(stage, at, since)` runs one check (ReleaseBot.check): the unchanged gate code. The
    report shows the window's checks of every stage it covered; the next decision is the bot's
    own (next_decision) on the checks the bot judges for the current stage. `alertmanager`
    (an AlertmanagerClient), when given, adds the alerts of ours it holds."""
    stage = release.stage(state.stage)
    start = now - window
    done: dict[tuple[str, datetime, datetime], CheckResult] = {}

    def check_once(stage: Any, at: datetime, since: datetime) -> CheckResult:
        # the current stage's checks in the window are mostly the ones the bot judges: run once
        key = (stage.name, at, since)
        if key not in done:
            done[key] = check(stage, at, since)
        return done[key]

    spans = stage_spans(release, history, state, start, now)
    checks = window_checks(release, spans, check_once, prometheus, start)
    judged: list[CheckResult] = []
    if stage.weight > 0:
        instants = check_times(stage, state.since, now)
        with prometheus.grid(instants):  # queries (made when first asked) only for instants not run yet
            judged = [check_once(stage, at, state.since) for at in instants]
    decision = next_decision(release, state, now, judged)
    changes = stage_changes(history, start)
    rollbacks = sum(text.startswith("rollback ") for _, text in changes)
    notes = [] if stage.weight else [
        f"stage '{stage.name}' sends no traffic to the canary: no check runs until the next release starts"]
    try:
        posted = bot_alerts(history, start, now, alertmanager)
    except NotifyError as error:
        posted = bot_alerts(history, start, now)
        notes.append(f"the alerts Alertmanager holds are not listed: {error}")
    return DailyStatus(
        app=release.project.services[0].name,
        at=now,
        window=window,
        stage=stage.name,
        weight=stage.weight,
        since=state.since,
        changes=changes,
        checks=checks,
        gates=summarise_gates(checks),
        alerts=merge_alerts([*fired_alerts(prometheus, start, now), *posted]),
        decision=decision,
        notes=notes,
        spans=spans,
        rollbacks=rollbacks,
        series=gate_series(release, prometheus, start, now),
    )


# --------------------------------------------------------------------------- rendering


def _time(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def next_action(status: DailyStatus) -> str:
    decision = status.decision
    if status.weight == 0:  # nothing to promote from: a new release starts with `rollout promote`
        return (f"none: stage '{status.stage}' sends the canary no traffic; the bot waits for the next "
                "release to be started (`rollout promote`)")
    if decision.action == "wait" and decision.hold_remaining > timedelta(0):
        when = status.at + decision.hold_remaining
        return f"wait: {decision.reason}; the earliest promotion is at {_time(when)} if the checks keep passing"
    return f"{decision.action}: {decision.reason}"


def per_stage(status: DailyStatus) -> str:
    """`(canary: 20 passed; gradual: 8 passed, 3 failed)` when the window saw more than one stage."""
    stages = list(dict.fromkeys(c.stage for c in status.checks))
    if len(stages) < 2:
        return ""
    parts = []
    for name in stages:
        verdicts = [c.verdict for c in status.checks if c.stage == name]
        words = [f"{verdicts.count(v)} {w}" for v, w in (("pass", "passed"), ("hold", "held"), ("fail", "failed"))
                 if verdicts.count(v)]
        parts.append(f"{name}: {', '.join(words)}")
    return f" ({'; '.join(parts)})"


def render_markdown(status: DailyStatus, plot_file: str | None = None) -> str:
    counts = status.counts
    lines = [
        f"# {status.subject}",
        "",
        f"- **Stage:** {status.stage} ({status.weight}% canary) for {format_duration(status.at - status.since)}, "
        f"since {_time(status.since)}",
        f"- **Health:** {status.health}",
        f"- **Checks in the last {format_duration(status.window)}:** {counts['pass']} passed, "
        f"{counts['hold']} held, {counts['fail']} failed{per_stage(status)}",
        f"- **Next action:** {redact(next_action(status))}",
        "",
        "## Gates (canary: min / median / max)",
        "",
    ]
    if status.gates:
        lines += ["| Gate | Min | Median | Max | Failed | Held |", "|---|---|---|---|---|---|"]
        for g in status.gates:
            unit = unit_of(g.name)
            lines.append(
                f"| {g.name} | {format_value(g.minimum, unit)} | {format_value(g.median, unit)} | "
                f"{format_value(g.maximum, unit)} | {g.failed} | {g.held} |"
            )
    else:
        lines.append("No check ran in the window.")
    lines += ["", "## Alerts that fired", ""]
    lines += [f"- {a.name} ({a.severity}): {_time(a.first)} to {_time(a.last)}" for a in status.alerts] or ["None."]
    lines += ["", "## Stage changes", ""]
    lines += [f"- {_time(at)}: {redact(text)}" for at, text in status.changes] or ["None in the window."]
    if status.notes:
        lines += ["", "## Notes", "", *(f"- {n}" for n in status.notes)]
    if plot_file:
        lines += ["", "## Gates over the window", "", f"![gates]({plot_file})"]
    return "\n".join(lines) + "\n"


def plot(status: DailyStatus, path: Path) -> Path:
    """Canary against stable for the plan's three rollback gates over the window, from the
    recording rules, and the planned canary weight; a gate without data says so."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("error_rate", 100, "error rate (%)"), ("p95_latency_seconds", 1000, "P95 latency (ms)"),
            ("test_pass_rate", 100, "test pass rate (%)")]
    colours = {"stable": "tab:green", "canary": "tab:orange"}
    fig, axes = plt.subplots(len(keys) + 1, 1, figsize=(9, 8), sharex=True, constrained_layout=True,
                             gridspec_kw={"height_ratios": [3] * len(keys) + [1.4]})
    fig.suptitle(status.subject, fontsize=10)
    for ax, (key, scale, label) in zip(axes, keys):
        drawn = False
        for series in status.series:
            if series.key == key and series.times:
                ax.plot(series.times, [v * scale if math.isfinite(v) else math.nan for v in series.values],
                        color=colours[series.track], linewidth=1, label=series.track)
                drawn = True
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        if drawn:
            ax.legend(loc="upper left", fontsize=8)
        else:
            ax.text(0.5, 0.5, "no data in the window", ha="center", va="center", transform=ax.transAxes, color="grey")
    weight = axes[-1]
    if status.spans:
        times = [max(s.since, status.at - status.window) for s in status.spans] + [status.at]
        weights = [s.weight for s in status.spans] + [status.spans[-1].weight]
        weight.step(times, weights, where="post", color="tab:blue", linewidth=1.5)
    weight.set_ylim(-5, 105)
    weight.set_ylabel("canary weight (%)")
    weight.grid(True, alpha=0.3)
    weight.set_xlim(status.at - status.window, status.at)
    weight.set_xlabel("time (UTC)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write(status: DailyStatus, out_dir: Path) -> tuple[Path, Path]:
    """`daily-<date>.md` and `.png` in out_dir."""
    stem = f"daily-{status.at:%Y%m%d}"
    out_dir.mkdir(parents=True, exist_ok=True)
    png = plot(status, out_dir / f"{stem}.png")
    markdown = out_dir / f"{stem}.md"
    markdown.write_text(render_markdown(status, png.name))
    return markdown, png


# --------------------------------------------------------------------------- delivery


def send_email(email: EmailReceiver, subject: str, body: str, png: Path, password: Secret | None, timeout: float = 30) -> None:
    """The report by SMTP to the team, the plot attached; STARTTLS when `requireTls`."""
    message = EmailMessage()
    message["Subject"], message["From"], message["To"] = subject, email.sender, email.to
    message.set_content(body)
    message.add_attachment(png.read_bytes(), maintype="image", subtype="png", filename=png.name)
    host, port = email.smarthost.rsplit(":", 1)
    try:
        with smtplib.SMTP(host, int(port), timeout=timeout) as smtp:
            if email.require_tls:
                smtp.starttls()
            if password is not None:
                smtp.login(email.username, password.reveal())
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as err:
        text = f"e-mail to {email.to} via {email.smarthost} failed: {type(err).__name__}: {err}"
        raise NotifyError(password.scrub(text) if password else text) from None


def post_slack(webhook: Secret, text: str, timeout: float = 10) -> None:
    try:
        response = httpx.post(webhook.reveal(), json={"text": text}, timeout=timeout)
    except httpx.HTTPError as err:
        raise NotifyError(f"Slack post failed: {type(err).__name__}") from None
    if response.is_error:
        raise NotifyError(f"Slack post failed: HTTP {response.status_code}")


def slack_text(status: DailyStatus) -> str:
    counts = status.counts
    return (
        f"*{status.subject}*\n"
        f"Checks ({format_duration(status.window)}): {counts['pass']} passed, {counts['hold']} held, {counts['fail']} failed. "
        f"Alerts fired: {', '.join(a.name for a in status.alerts) or 'none'}.\n"
        f"Next: {redact(next_action(status))}"
    )


def deliver(status: DailyStatus, markdown: Path, png: Path, email: EmailReceiver,
            environ: Mapping[str, str] | None = None) -> list[str]:
    """E-mail and Slack, each only when its credential is set; returns what was done. A failed
    delivery raises NotifyError after trying the others."""
    done, failed = [], []
    password = read_token("SMTP_PASSWORD", required=False, environ=environ)
    try:
        send_email(email, status.subject, markdown.read_text(), png, password)
        done.append(f"e-mailed to {email.to}")
    except NotifyError as err:
        failed.append(str(err))
    webhook = read_token("SLACK_WEBHOOK_URL", required=False, environ=environ)
    if webhook is not None:
        try:
            post_slack(webhook, slack_text(status))
            done.append("posted to Slack")
        except NotifyError as err:
            failed.append(str(err))
    if failed:
        raise NotifyError("; ".join(failed + ([f"(done: {', '.join(done)})"] if done else [])))
    return done
