"""Incident (rollback) reports and stage reports: Markdown plus a PNG plot.

A report holds the gate values of the decisive check (canary value, stable baseline, target,
critical, status), the timeline (stage applied, checks with verdicts, the decision, the update
that applied it, notifications sent), and a plot of canary weight, error rate and P95 latency
over the stage with the critical thresholds drawn in.

Inputs are plain dataclasses so a report can be built from anything: `gate_rows()` accepts the
gates module's CheckResult (or its `to_dict()`), `report_for_change()` the bot's StageChange.
No secrets reach a report: the inputs hold none, and free text is redacted of credentials anyway.
"""

from __future__ import annotations

import io
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from rollout.analysis.signals import BY_KEY, recorded_query
from rollout.numbers import number
from rollout.model import Release, format_duration

_CREDENTIALS = (
    (re.compile(r"(?i)(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 ***"),
    (re.compile(r"://[^/\s:@]+:[^/\s@]+@"), "://***@"),
    (re.compile(r"(?i)\b(token|password|secret|api_key|apikey)=[^&\s]+"), r"\1=***"),
)


def redact(text: str) -> str:
    for pattern, replacement in _CREDENTIALS:
        text = pattern.sub(replacement, text)
    return text


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class GateRow:
    name: str
    value: float | None
    baseline: float | None
    target: float
    critical: float | None
    status: str  # pass | hold | fail
    message: str = ""
    query: str = ""
    evidence: dict[str, Any] | None = None  # the judge's (Evidence.to_dict()), when the gate has one


@dataclass(frozen=True)
class TimelineEvent:
    at: datetime
    text: str


@dataclass(frozen=True)
class Series:
    """Values over the stage; None where there was no data."""

    times: Sequence[datetime]
    weight: Sequence[float]
    error_rate: Sequence[float | None]
    p95_latency_seconds: Sequence[float | None]

    def __post_init__(self) -> None:
        lengths = {len(self.times), len(self.weight), len(self.error_rate), len(self.p95_latency_seconds)}
        if len(lengths) != 1:
            raise ValueError(f"series lengths differ: {sorted(lengths)}; every list needs one value per time")


@dataclass(frozen=True)
class Thresholds:
    error_rate_target: float
    error_rate_critical: float | None
    p95_target: float
    p95_critical: float | None


@dataclass(frozen=True)
class Report:
    kind: str  # incident | stage
    app: str
    action: str  # rollback | promote | complete
    source: str
    target: str
    source_weight: int
    target_weight: int
    reason: str
    started_at: datetime | None  # None: not known (a change told again after a crash)
    decided_at: datetime
    gates: Sequence[GateRow]
    gates_at: str | None  # when the decisive check measured
    timeline: Sequence[TimelineEvent]
    series: Series
    thresholds: Thresholds
    update: str | None = None  # the stack update that applied the decision
    notes: Sequence[str] = field(default_factory=tuple)
    version: int | None = None  # the stack update's version: names the file, so telling again rewrites it
    error: str | None = None  # the decision could not be applied
    traffic_moved: datetime | None = None  # when the phase that moved traffic finished


def _get(item: Any, key: str, default: Any = None) -> Any:
    return item.get(key, default) if isinstance(item, Mapping) else getattr(item, key, default)


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)  # to_dict() keeps NaN/Inf as text
    except (TypeError, ValueError):
        return None


def gate_rows(check: Any) -> list[GateRow]:
    """Rows from a gates.CheckResult, its to_dict(), or a list of gate results/dicts."""
    gates = check if isinstance(check, (list, tuple)) else _get(check, "gates", [])
    return [
        GateRow(
            name=str(_get(g, "name")),
            value=_number(_get(g, "value")),
            baseline=_number(_get(g, "baseline")),
            target=float(_get(g, "target")),
            critical=_number(_get(g, "critical")),
            status=str(_get(g, "status", "hold")),
            message=str(_get(g, "message", "")),
            query=str(_get(g, "query", "")),
            evidence=_evidence(_get(g, "evidence")),
        )
        for g in gates
    ]


def _evidence(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    return value if isinstance(value, dict) else value.to_dict()


def evidence_table(rows: Sequence[GateRow]) -> list[str]:
    """The judge's evidence per judged gate (docs/judge.md): empty when the judge is off."""
    judged = [g for g in rows if g.evidence]
    if not judged:
        return []
    lines = [
        "| Gate | Verdict | E-value (stage max) | Regression at (1/alpha) | Tolerance | Canary/stable ratio [confidence sequence] | Recent ratio | Events canary / stable | Counted from |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for g in judged:
        e = g.evidence or {}
        what = f" (share slower than {e['boundary']:g}s)" if e.get("boundary") else ""
        lines.append(
            f"| {g.name} | {'REGRESSION' if e.get('regression') else 'no regression'} | "
            f"{_sig(e.get('e_value'))} ({_sig(e.get('e_max'))}) | {_sig(e.get('threshold'))} | {e.get('tolerance')} | "
            f"{_sig(e.get('ratio'))} [{_sig(e.get('ratio_low'))}, {_sig(e.get('ratio_high'))}]{what} | "
            f"{_sig(e.get('recent_ratio'))} | {_sig(e.get('canary_events'))} / {_sig(e.get('stable_events'))} | "
            f"{_cell(str(e.get('source', '')))} |"
        )
    return lines


def _sig(value: Any) -> str:
    if value is None:
        return "-"
    try:
        return f"{float(value):.3g}"
    except (TypeError, ValueError):
        return str(value)


def _when(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return _when(datetime.fromisoformat(str(value).replace("Z", "+00:00")))


def _gate_value(check: Any, key: str) -> float | None:
    """A gate's canary value in a check; merged multi-service checks name gates 'svc/key'."""
    for gate in _get(check, "gates", []):
        if str(_get(gate, "name")).split("/")[-1] == key:
            value = _number(_get(gate, "value"))
            return None if value is None or math.isnan(value) else value
    return None


def series_from_checks(checks: Sequence[Any], weight: float) -> Series:
    """The plot's series from the checks themselves (one point per check with a time)."""
    timed = [(_when(_get(c, "at")), c) for c in checks]
    timed = [(t, c) for t, c in timed if t is not None]
    return Series(
        times=[t for t, _ in timed],
        weight=[weight] * len(timed),
        error_rate=[_gate_value(c, "error_rate") for _, c in timed],
        p95_latency_seconds=[_gate_value(c, "p95_latency_seconds") for _, c in timed],
    )


def series_from_prometheus(
    prometheus: Any, app: str, namespace: str, start: datetime, end: datetime, weight: float, step_seconds: float = 60
) -> Series:
    """The whole stage from Prometheus range queries over the recorded canary signals."""

    def points(key: str) -> dict[float, float]:
        found = prometheus.query_range(recorded_query(key, app, "canary", namespace), start, end, step_seconds)
        return {t: v for t, v in found[0].points} if found else {}

    errors, p95 = points("error_rate"), points("p95_latency_seconds")
    stamps = sorted(set(errors) | set(p95))

    def clean(value: float | None) -> float | None:
        return None if value is None or math.isnan(value) else value

    return Series(
        times=[datetime.fromtimestamp(t, timezone.utc) for t in stamps],
        weight=[weight] * len(stamps),
        error_rate=[clean(errors.get(t)) for t in stamps],
        p95_latency_seconds=[clean(p95.get(t)) for t in stamps],
    )


# --------------------------------------------------------------------------- Markdown


def unit_of(name: str) -> str:
    signal = BY_KEY.get(name.split("/")[-1])
    return signal.unit if signal else ""


def format_value(value: float | None, unit: str) -> str:
    """The one number format (rollout.numbers): `0.1 %`, `773 ms`, `12.5/min`."""
    return number(value, unit)


def gate_line(row: GateRow) -> str:
    """One gate as a line of plain text: `error_rate 0.02 % (target 0.1 %, stable 0.01 %): PASS`."""
    unit = unit_of(row.name)
    return (
        f"{row.name} {format_value(row.value, unit)} (target {format_value(row.target, unit)}, "
        f"stable {format_value(row.baseline, unit)}): {row.status.upper()}"
    )


def gate_table(rows: Sequence[GateRow]) -> list[str]:
    """The gate values as Markdown table lines (reports and pull-request comments)."""
    lines = [
        "| Gate | Canary | Stable baseline | Target | Critical | Status | Detail |",
        "|---|---|---|---|---|---|---|",
    ]
    for g in rows:
        unit = unit_of(g.name)
        lines.append(
            f"| {g.name} | {format_value(g.value, unit)} | {format_value(g.baseline, unit)} | "
            f"{format_value(g.target, unit)} | "
            f"{format_value(g.critical, unit) if g.critical is not None else '-'} | "
            f"{g.status.upper()} | {_cell(g.message)} |"
        )
    return lines


def check_markdown(check: Any) -> str:
    """A `rollout check --json` result as Markdown: verdict, reason, gate table."""
    verdict = str(_get(check, "verdict", "unknown")).upper()
    lines = [f"**Projected verdict for stage `{_get(check, 'stage')}`: {verdict}**", "", _cell(str(_get(check, "reason", "")))]
    rows = gate_rows(check)
    evidence = evidence_table(rows)
    return "\n".join([*lines, "", *gate_table(rows), *(["", *evidence] if evidence else [])]) + "\n"


def _time(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _cell(text: str) -> str:
    return redact(text).replace("|", "\\|").replace("\n", " ")


def _title(report: Report) -> str:
    stage = f"{report.source} ({report.source_weight}%)"
    if report.error:
        return f"Incident report: {report.app} {report.action} from {report.source} to {report.target} NOT APPLIED"
    if report.action == "rollback":
        return f"Incident report: {report.app} rolled back from {report.source} to {report.target}"
    if report.action == "promote":
        return f"Stage report: {report.app} {stage} passed, promoted to {report.target} ({report.target_weight}%)"
    if report.action == "complete":
        return f"Stage report: {report.app} release complete at {stage}"
    return f"Stage report: {report.app} {stage} so far"


def render_markdown(report: Report, plot_file: str | None = None) -> str:
    lines = [
        f"# {_title(report)}",
        "",
        f"- **Decision:** {report.action} {report.source} ({report.source_weight}%)"
        + (f" -> {report.target} ({report.target_weight}%)" if report.target != report.source else "")
        + f" at {_time(report.decided_at)}",
        f"- **Why:** {_cell(report.reason)}",
    ]
    if report.error:
        lines.append(f"- **NOT APPLIED:** {_cell(report.error)}")
    if report.started_at is not None:
        ran = format_duration(report.decided_at - report.started_at)
        lines.append(f"- **Stage {report.source} ran:** {ran}, since {_time(report.started_at)}")
    if report.update:
        lines.append(f"- **Applied by:** {_cell(report.update)}")
    if report.traffic_moved is not None:
        lines.append(f"- **Traffic moved:** {_time(report.traffic_moved)}")
    lines += ["", f"## Gate values{f' at {report.gates_at}' if report.gates_at else ''}", ""]
    lines += gate_table(report.gates) if report.gates else ["No check ran in this stage."]
    evidence = evidence_table(report.gates)
    if evidence:
        lines += ["", "## The judge's evidence: canary versus stable", "",
                  "A regression is declared once the e-value reaches 1/alpha; the chance that a healthy canary "
                  "ever gets there during the stage is at most alpha (docs/judge.md).", "", *evidence]
    lines += ["", "## Timeline", "", "| Time | Event |", "|---|---|"]
    for event in sorted(report.timeline, key=lambda e: e.at):
        lines.append(f"| {_time(event.at)} | {_cell(event.text)} |")
    if plot_file:
        lines += ["", "## Canary weight, error rate and P95 latency over the stage", "", f"![stage plot]({plot_file})"]
    queries = [g for g in report.gates if g.query]
    if queries:
        lines += ["", "## Queries", ""]
        lines += [f"- {g.name}: `{_cell(g.query)}`" for g in queries]
    if report.notes:
        lines += ["", "## Notes", ""] + [f"- {_cell(n)}" for n in report.notes]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- plot


def plot_stage(report: Report, path: Path) -> Path:
    """Three stacked panels (weight, error rate, P95) with target/critical lines; PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.dates import DateFormatter

    s, th = report.series, report.thresholds
    failing = failing_gates(report)
    fig = plt.figure(figsize=(9, 7.5 + (2.2 if failing else 0)), constrained_layout=True)
    grid = fig.add_gridspec(4 if failing else 3, max(1, len(failing)), height_ratios=[1, 1, 1, 0.9][: 4 if failing else 3])
    ax_w = fig.add_subplot(grid[0, :])
    ax_e = fig.add_subplot(grid[1, :], sharex=ax_w)
    ax_p = fig.add_subplot(grid[2, :], sharex=ax_w)
    fig.suptitle(_title(report), fontsize=12)
    # every failing gate of the decisive check: the canary against the stable baseline and the limits
    for column, row in enumerate(failing):
        ax = fig.add_subplot(grid[3, column])
        bars = [("canary", row.value, "tab:red"), ("stable", row.baseline, "tab:blue")]
        ax.bar([n for n, v, _ in bars if v is not None], [v for _, v, _ in bars if v is not None],
               color=[c for _, v, c in bars if v is not None])
        ax.axhline(row.target, color="tab:green", linestyle=":", label="target")
        if row.critical is not None:
            ax.axhline(row.critical, color="black", linestyle="--", label="critical")
        ax.set_title(row.name, fontsize=9)
        ax.tick_params(labelsize=8)
    if failing:
        fig.axes[3].legend(loc="upper left", fontsize=7)

    def values(seq: Sequence[float | None], scale: float) -> list[float]:
        return [math.nan if v is None else v * scale for v in seq]

    ax_w.step(s.times, s.weight, where="post", color="tab:blue", marker="o", markersize=3)
    ax_w.set_ylabel("canary weight (%)")
    ax_w.set_ylim(-5, 105)

    ax_e.plot(s.times, values(s.error_rate, 100), color="tab:red", marker="o", markersize=3, label="canary")
    ax_e.axhline(th.error_rate_target * 100, color="tab:green", linestyle=":", label=f"target {th.error_rate_target * 100:g}%")
    if th.error_rate_critical is not None:
        ax_e.axhline(th.error_rate_critical * 100, color="black", linestyle="--", label=f"critical {th.error_rate_critical * 100:g}%")
    ax_e.set_ylabel("error rate (%)")

    ax_p.plot(s.times, values(s.p95_latency_seconds, 1000), color="tab:purple", marker="o", markersize=3, label="canary")
    ax_p.axhline(th.p95_target * 1000, color="tab:green", linestyle=":", label=f"target {th.p95_target * 1000:g} ms")
    if th.p95_critical is not None:
        ax_p.axhline(th.p95_critical * 1000, color="black", linestyle="--", label=f"critical {th.p95_critical * 1000:g} ms")
    ax_p.set_ylabel("P95 latency (ms)")
    ax_p.set_xlabel("time (UTC)")
    # a 48 h stage reads in hours, a compressed demo stage in seconds
    span = (max(s.times) - min(s.times)).total_seconds() if len(s.times) > 1 else 0
    ax_p.xaxis.set_major_formatter(DateFormatter("%H:%M:%S" if span < 600 else "%m-%d %H:%M", tz=timezone.utc))

    for ax in (ax_w, ax_e, ax_p):
        ax.axvline(report.decided_at, color="tab:orange", linewidth=1.5)
        if report.traffic_moved is not None:  # when the page's change actually reached the traffic
            ax.axvline(report.traffic_moved, color="tab:brown", linestyle="-.", linewidth=1.2)
        ax.grid(True, alpha=0.3)
    if report.traffic_moved is not None:
        ax_w.annotate("traffic moved", (report.traffic_moved, 50), xytext=(4, 0), textcoords="offset points",
                      color="tab:brown", fontsize=8)
    ax_w.annotate(
        report.action, (report.decided_at, 100), xytext=(-4, -12), textcoords="offset points",
        color="tab:orange", ha="right",
    )
    ax_e.legend(loc="upper left", fontsize=8)
    ax_p.legend(loc="upper left", fontsize=8)
    for label in ax_p.get_xticklabels():
        label.set_rotation(20)
    for ax in (ax_w, ax_e):
        ax.tick_params(labelbottom=False)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=100, format="png")
    plt.close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, buffer.getvalue())
    return path


def failing_gates(report: Report) -> list[GateRow]:
    """The gates the plot shows one by one: those failing in the decisive check."""
    return [row for row in report.gates if row.status == "fail" and row.value is not None]


REPORT_MODE = 0o640  # owner and group (the on-call group) read reports; nobody else


def write_private(path: Path, data: bytes) -> None:
    """Write `path` atomically with mode 0640: a fresh temp file beside it (O_EXCL, never a
    symlink), then renamed over it. A symlink planted at `path` is replaced, never followed, and
    a reader never sees half a report."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, REPORT_MODE)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_report(report: Report, out_dir: Path) -> Path:
    """`<time>-<action>-<source>-to-<target>.md` and `.png` in out_dir, or `update-<version>-...`
    for an applied change (telling it again after a crash rewrites the same files); returns the
    .md path."""
    stamp = report.decided_at.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    prefix = f"update-{report.version:05d}" if report.version is not None else stamp
    stem = f"{prefix}-{report.action}-{report.source}-to-{report.target}" + ("-failed" if report.error else "")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot = plot_stage(report, out_dir / f"{stem}.png")
    markdown = out_dir / f"{stem}.md"
    write_private(markdown, render_markdown(report, plot.name).encode())
    return markdown


# --------------------------------------------------------------------------- from the bot


def report_for_change(
    change: Any,
    release: Release,
    app: str,
    events: Iterable[tuple[datetime, str]] = (),
    series: Series | None = None,
) -> Report:
    """A report for the bot's StageChange (action, source, target, reason, started_at, at,
    checks, applied); `events` are the notifications sent (time, text)."""
    source, target = release.stage(change.source), release.stage(change.target)
    checks = list(change.checks or [])
    started = _when(change.started_at) or _when(change.at)  # not known when told again after a crash
    timeline = [TimelineEvent(started, f"stage {source.name} applied (canary weight {source.weight}%)")] if change.started_at else []  # type: ignore[arg-type]
    for check in checks:
        at = _when(_get(check, "at"))
        if at is not None:
            timeline.append(TimelineEvent(at, f"check: {_get(check, 'verdict')} - {_get(check, 'reason')}"))
    timeline.append(TimelineEvent(_when(change.at), f"decision: {change.action} to {target.name} - {change.reason}"))  # type: ignore[arg-type]
    applied = change.applied
    update = None
    done = _when(change.at)
    if applied is not None:
        done = _when(getattr(applied, "finished", None)) or _when(change.at)
        version = getattr(applied, "version", None)
        update = f"stack update {'v' + str(version) if version else ''} `{applied.message}`".replace("  ", " ")
        # every phase as it happened, so the page says when traffic actually moved
        timeline += [TimelineEvent(_when(at), text) for at, text in getattr(applied, "events", ())]  # type: ignore[arg-type]
        timeline.append(TimelineEvent(done, f"{change.action} applied: {target.name} ({target.weight}%), {update}"))  # type: ignore[arg-type]
    timeline += [TimelineEvent(_when(at), text) for at, text in events]  # type: ignore[arg-type]
    if series is None:
        # from the stage start, through the checks, to the weight the decision applied
        measured = series_from_checks(checks, source.weight)
        end = [] if applied is None else [(done, target.weight)]
        series = Series(
            times=[started, *measured.times, *(t for t, _ in end)],  # type: ignore[list-item]
            weight=[source.weight, *measured.weight, *(w for _, w in end)],
            error_rate=[None, *measured.error_rate, *(None for _ in end)],
            p95_latency_seconds=[None, *measured.p95_latency_seconds, *(None for _ in end)],
        )
    gates = source.gates
    decisive = checks[-1] if checks else None
    # the phase that moved traffic: a shift when there is one, else the change's last phase
    phase_events = [(at, text) for at, text in getattr(applied, "events", ()) if text.endswith(" done") or " done (" in text]
    moved = next((at for at, text in phase_events if " shift done" in text), phase_events[-1][0] if phase_events else None)
    notes = list(_get(decisive, "notes", []) or []) if decisive is not None else []
    if getattr(change, "late", False):
        notes.insert(0, f"told LATE: applied at {_time(done)}, nobody was told until this report "  # type: ignore[arg-type]
                        "(the bot was down or could not reach the receivers)")
    return Report(
        kind="incident" if change.action == "rollback" else "stage",
        app=app,
        action=change.action,
        source=source.name,
        target=target.name,
        source_weight=source.weight,
        target_weight=target.weight,
        reason=change.reason,
        started_at=_when(change.started_at),  # type: ignore[arg-type]
        decided_at=_when(change.at),  # type: ignore[arg-type]
        version=getattr(change, "version", None),
        error=getattr(change, "error", None),
        gates=gate_rows(decisive) if decisive is not None else [],
        gates_at=_get(decisive, "at") if decisive is not None else None,
        timeline=timeline,
        series=series,
        thresholds=Thresholds(
            error_rate_target=gates.error_rate.target,
            error_rate_critical=gates.error_rate.critical,
            p95_target=gates.p95_latency_seconds.target,
            p95_critical=gates.p95_latency_seconds.critical,
        ),
        update=update,
        notes=notes,
        traffic_moved=_when(moved),
    )


@dataclass
class ReportWriter:
    """Plugs into notify.ReleaseNotifier(report_writer=...): writes one report per stage change."""

    out_dir: Path
    release: Release
    app: str = "genesis"

    def __call__(self, change: Any, events: Iterable[tuple[datetime, str]] = ()) -> Path:
        return write_report(report_for_change(change, self.release, self.app, events), self.out_dir)


if __name__ == "__main__":  # python -m rollout.release.report check.json: a check result as Markdown
    import json
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python -m rollout.release.report CHECK_JSON (the output of `rollout check --json`)")
    sys.stdout.write(check_markdown(json.loads(Path(sys.argv[1]).read_text())))
