"""The daily status (the Day-0 plan's 09:00 UTC e-mail): the last 24 h of the release in one
message, composed from the stack and Prometheus, written as Markdown + PNG, e-mailed to the team
and posted to Slack #deployments.

What it holds: the stage, its weight and time in stage; the stage changes of the window (from
the stack's update history, the bot's messages); the current stage's checks in the window, re-run
on the stage's check grid with the unchanged gate code (passed / held / failed) and each gate's
canary min / median / max; the alerts of ours that fired (Prometheus `ALERTS`); the next action
and when (rollout.analysis.decision). Credentials come from the environment (SMTP_PASSWORD or
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
from rollout.model import EmailReceiver, Release, format_duration
from rollout.monitoring.names import ROLLOUT_LABEL, ROLLOUT_VALUE
from rollout.release.bot import next_decision
from rollout.release.deployer import DeployedState, parse_update_message
from rollout.release.notify import NotifyError, Secret, read_token
from rollout.release.report import format_value, redact, unit_of

WINDOW = timedelta(hours=24)


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

    @property
    def counts(self) -> dict[str, int]:
        return {v: sum(c.verdict == v for c in self.checks) for v in ("pass", "hold", "fail")}

    @property
    def health(self) -> str:
        if self.decision.action == "rollback" or self.counts["fail"]:
            return "unhealthy"
        if self.alerts or self.counts["hold"]:
            return "watch"
        return "healthy"

    @property
    def subject(self) -> str:
        return (
            f"Genesis rollout daily status {self.at:%Y-%m-%d}: {self.stage} ({self.weight}%), "
            f"{self.health}, next: {self.decision.action}"
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


def compose(
    release: Release,
    state: DeployedState,
    history: Sequence[Any],
    check: Any,
    prometheus: Any,
    now: datetime,
    window: timedelta = WINDOW,
) -> DailyStatus:
    """`check(stage, at, since)` runs one check (ReleaseBot.check): the unchanged gate code. The
    report shows the window's checks; the next decision is the bot's own (next_decision) on the
    checks the bot judges, all of the stage's when failures are counted cumulatively."""
    stage = release.stage(state.stage)
    start = now - window
    checks: list[CheckResult] = []
    judged: list[CheckResult] = []
    if stage.weight > 0:
        span = now - max(start, state.since)
        count = max(0, int(span / stage.analysis.check_interval))
        shown = check_times(stage, state.since, now, count) if count else []
        bots = check_times(stage, state.since, now)
        instants = bots if len(bots) > len(shown) else shown  # both end at the same check
        with prometheus.grid(instants):  # a day of checks: one range query per expression
            judged = [check(stage, at, state.since) for at in instants]
        checks = judged[len(judged) - len(shown):]
    decision = next_decision(release, state, now, judged)
    return DailyStatus(
        app=release.project.services[0].name,
        at=now,
        window=window,
        stage=stage.name,
        weight=stage.weight,
        since=state.since,
        changes=stage_changes(history, start),
        checks=checks,
        gates=summarise_gates(checks),
        alerts=fired_alerts(prometheus, start, now),
        decision=decision,
        notes=[] if stage.weight else [f"stage '{stage.name}' sends no traffic to the canary: no checks to run"],
    )


# --------------------------------------------------------------------------- rendering


def _time(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def next_action(status: DailyStatus) -> str:
    decision = status.decision
    if decision.action == "wait" and decision.hold_remaining > timedelta(0):
        when = status.at + decision.hold_remaining
        return f"wait: {decision.reason}; the earliest promotion is at {_time(when)} if the checks keep passing"
    return f"{decision.action}: {decision.reason}"


def render_markdown(status: DailyStatus, plot_file: str | None = None) -> str:
    counts = status.counts
    lines = [
        f"# {status.subject}",
        "",
        f"- **Stage:** {status.stage} ({status.weight}% canary) for {format_duration(status.at - status.since)}, "
        f"since {_time(status.since)}",
        f"- **Health:** {status.health}",
        f"- **Checks in the last {format_duration(status.window)}:** {counts['pass']} passed, "
        f"{counts['hold']} held, {counts['fail']} failed",
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
    """Canary against stable for the plan's three rollback gates over the window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("error_rate", 100, "error rate (%)"), ("p95_latency_seconds", 1000, "P95 latency (ms)"),
            ("test_pass_rate", 100, "test pass rate (%)")]
    fig, axes = plt.subplots(len(keys), 1, figsize=(9, 7), sharex=True, constrained_layout=True)
    fig.suptitle(status.subject, fontsize=10)
    times = [datetime.fromisoformat(c.at) for c in status.checks if c.at]
    for ax, (key, scale, label) in zip(axes, keys):
        def series(attr: str) -> list[float]:
            out = []
            for check in status.checks:
                gate = next((g for g in check.gates if g.name.split("/")[-1] == key), None)
                value = getattr(gate, attr) if gate else None
                out.append(math.nan if value is None or not math.isfinite(value) else value * scale)
            return out

        if times:
            ax.plot(times, series("value"), color="tab:orange", marker="o", markersize=2, label="canary")
            ax.plot(times, series("baseline"), color="tab:green", marker="o", markersize=2, label="stable")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    axes[-1].set_xlabel("time (UTC)")
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
