"""`rollout replay`: what the bot would have decided over recorded metrics, at production timing.

The file (OpenMetrics, checked first: rollout.review.openmetrics) is backfilled into a real
Prometheus with the stage's own recording rules (rollout.review.backfill); then the unchanged
gate and decision code (rollout.release.bot.check_services, rollout.analysis.decision.decide)
runs at every instant of the stage's check grid, from the stage start, stopping at the first
rollback, promote or complete decision. The gate values come from one range query per
expression over the whole grid (Prometheus.grid): the same numbers as an instant query each.

The JSON shape (a contract other tools read):

    {"stage", "start", "end",
     "checks": [{"at", "verdict", "gates": [{"name", "status", "value", "baseline", "message", ...}]}],
     "decision": {"action": "rollback"|"promote"|"complete"|"wait", "at": <RFC 3339 or null>, "reason"}}
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from rollout.analysis.decision import EVERY_CHECK, check_times, decide
from rollout.analysis.gates import CheckResult, GateResult
from rollout.model import ServiceConfig, StackConfig, Stage, format_duration
from rollout.release.bot import check_services
from rollout.release.prometheus import Prometheus
from rollout.review.backfill import Backfill
from rollout.review.openmetrics import FileReport, OpenMetricsError, check_file


MAX_LEAD = timedelta(days=1)  # how far --start / --end may lie outside the file's samples
MAX_CHECKS = 100_000  # about 70 days of 1-minute checks
MAX_FILE_BYTES = 4 * 1024**3


Progress = Callable[[str], None]  # one line per step (the CLI prints them on stderr)


def _quiet(_: str) -> None:
    pass


class ReplayError(ValueError):
    """The replay cannot run on this input; the message names the file or flag and the rule."""


@dataclass
class ReplayResult:
    stage: Stage
    start: datetime
    end: datetime
    services: list[str]
    instants: list[datetime]
    checks: list[CheckResult]
    action: str  # rollback | promote | complete | wait
    decided_at: datetime | None
    reason: str
    seconds: dict[str, float] = field(default_factory=dict)  # where the time went
    queries: int = 0

    @property
    def decided_after(self) -> timedelta | None:
        return None if self.decided_at is None else self.decided_at - self.start

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage.name,
            "start": _rfc3339(self.start),
            "end": _rfc3339(self.end),
            "checks": [
                {"at": _rfc3339(at), "verdict": check.verdict, "gates": [_gate(g) for g in check.gates]}
                for at, check in zip(self.instants, self.checks)
            ],
            "decision": {
                "action": self.action,
                "at": None if self.decided_at is None else _rfc3339(self.decided_at),
                "reason": self.reason,
            },
        }


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _gate(gate: GateResult) -> dict[str, Any]:
    full = gate.to_dict()
    return {key: full[key] for key in ("name", "status", "value", "baseline", "threshold", "message", "evidence")}


def _services(config: StackConfig, report: FileReport, path: Path) -> list[ServiceConfig]:
    present = [s for s in config.project.services if (s.namespace, s.name) in report.services]
    if not present:
        names = ", ".join(f"{s.namespace}/{s.name}" for s in config.project.services)
        raise ReplayError(f"{path}: no series of the project's services ({names}) in the file")
    return present


class ReplaySession:
    """One metrics file, checked and backfilled once, judged by as many stages or policies as
    wanted (the detection benchmark replays each scenario under several policies). Raises
    OpenMetricsError naming line and rule for a bad file; a context manager."""

    def __init__(self, path: Path | str, services: Sequence[ServiceConfig], workdir: Path | None = None,
                 progress: Progress = _quiet):
        self.path = Path(path)
        # /dev/zero, a FIFO: reading it would never end
        if not self.path.is_file():
            raise ReplayError(f"{self.path}: not a regular file (a metrics file written by `rollout export` or a scenario)")
        size = self.path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ReplayError(f"{self.path}: {size} bytes, over the {MAX_FILE_BYTES} bytes a replay reads")
        self.progress = progress
        self.seconds: dict[str, float] = {}
        clock = time.perf_counter()
        progress(f"checking {self.path} ({size / 1e6:.1f} MB)")
        self.report = check_file(self.path, services={(s.namespace, s.name) for s in services})
        if self.report.min_time is None or self.report.max_time is None:
            raise OpenMetricsError(str(self.path), [(0, "bad-line", "the file holds no samples")])
        self.first_sample = datetime.fromtimestamp(self.report.min_time, UTC)
        self.last_sample = datetime.fromtimestamp(self.report.max_time, UTC)
        self.seconds["check file"] = time.perf_counter() - clock
        self._tmp = tempfile.TemporaryDirectory(prefix="rollout-replay-", dir=workdir)
        clock = time.perf_counter()
        progress(f"backfill: the samples from {_rfc3339(self.first_sample)} to {_rfc3339(self.last_sample)} "
                 "into a TSDB block (promtool)")
        try:
            self.backfill = Backfill(self.path, Path(self._tmp.name), (self.report.min_time, self.report.max_time))
        except BaseException:
            self._tmp.cleanup()
            raise
        self.seconds["backfill"] = time.perf_counter() - clock

    def judge(self, config: StackConfig, start: datetime, end: datetime | None = None, *,
              last_stage: bool | None = None) -> ReplayResult:
        """The stage's checks and decision from `start` (when the stage was applied) to `end`
        (default: the last sample), stopping at the first decision other than wait."""
        stage = config.stage
        if end is not None and start > end:
            raise ReplayError(f"--start {_rfc3339(start)} is after --end {_rfc3339(end)}")
        end = end or self.last_sample
        if start > end:
            raise ReplayError(f"--start {_rfc3339(start)} is after the end of the replay {_rfc3339(end)} "
                              "(the file's last sample unless --end is given)")
        services = _services(config, self.report, self.path)
        # a replay judges the data it has: a range far outside it is a typo, and unbounded work
        if start < self.first_sample - MAX_LEAD:
            raise ReplayError(f"--start {_rfc3339(start)} is more than {format_duration(MAX_LEAD)} before the file's "
                              f"first sample ({_rfc3339(self.first_sample)}): give the time the stage was applied")
        if end > self.last_sample + MAX_LEAD:
            raise ReplayError(f"--end {_rfc3339(end)} is more than {format_duration(MAX_LEAD)} after the file's "
                              f"last sample ({_rfc3339(self.last_sample)})")
        if (end - start) / stage.analysis.check_interval > MAX_CHECKS:
            raise ReplayError(f"{_rfc3339(start)} to {_rfc3339(end)} is over {MAX_CHECKS} checks of every "
                              f"{format_duration(stage.analysis.check_interval)}: replay a shorter range")
        instants = check_times(stage, start, end, count=EVERY_CHECK)  # the bot's grid, all of it
        if not instants:
            raise ReplayError(f"no check fits between --start and the end: the stage checks every "
                              f"{format_duration(stage.analysis.check_interval)} once a "
                              f"{format_duration(stage.analysis.rate_window)} window has passed")
        seconds = dict(self.seconds)
        clock = time.perf_counter()
        self.progress(f"rules: evaluating stage {stage.name}'s recording rules up to {_rfc3339(end)} (promtool)")
        with self.backfill.serving(stage, end) as server:
            seconds["rules"] = time.perf_counter() - clock
            clock = time.perf_counter()
            self.progress(f"checks: {len(instants)} check instants from {_rfc3339(instants[0])}, "
                          f"stopping at the first decision")
            with Prometheus(server.url, timeout=120, retries=0, check_seconds=600) as prom:
                result = _judge(stage, services, prom, start, end, instants, last_stage, config.project.routing.router,
                                self.progress)
                result.queries = prom.queries
        seconds["checks"] = time.perf_counter() - clock
        result.seconds = seconds
        return result

    def close(self) -> None:
        self.backfill.close()
        self._tmp.cleanup()

    def __enter__(self) -> ReplaySession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def replay(
    path: Path | str,
    config: StackConfig,
    start: datetime,
    end: datetime | None = None,
    *,
    last_stage: bool | None = None,
    workdir: Path | None = None,
    progress: Progress = _quiet,
) -> ReplayResult:
    """Replay the file's metrics through the stage's gates and decision from `start` (when the
    stage was applied) to `end` (default: the last sample). Raises ReplayError or
    OpenMetricsError naming the problem; a BackfillError when promtool or Prometheus refuse."""
    if end is not None and start > end:
        raise ReplayError(f"--start {_rfc3339(start)} is after --end {_rfc3339(end)}")
    with ReplaySession(path, config.project.services, workdir, progress) as session:
        return session.judge(config, start, end, last_stage=last_stage)


def _judge(
    stage: Stage, services: Sequence[ServiceConfig], prom: Prometheus, start: datetime, end: datetime,
    instants: list[datetime], last_stage: bool | None, router: str | None = None, progress: Progress = _quiet,
) -> ReplayResult:
    checks: list[CheckResult] = []
    every = max(1, len(instants) // 10)  # about ten progress lines however long the stage
    with prom.grid(instants):
        for at in instants:
            checks.append(check_services(services, prom, stage, at, since=start, router=router))
            decision = decide(stage, start, at, checks, last_stage=last_stage)
            done = f"checks: {len(checks)}/{len(instants)} done (+{format_duration(at - start)})"
            if decision.action != "wait":
                progress(f"{done}: {decision.action}")
            elif len(checks) % every == 0:
                progress(done)
            if decision.action != "wait":
                return ReplayResult(stage, start, end, [s.name for s in services], instants[: len(checks)],
                                    checks, decision.action, at, decision.reason)
    return ReplayResult(stage, start, end, [s.name for s in services], instants, checks, "wait", None,
                        f"no decision by the end of the data: {decision.reason}")


# --------------------------------------------------------------------------- readable output


def _offset(result: ReplayResult, at: datetime) -> str:
    minutes = round((at - result.start).total_seconds() / 60)
    return f"+{minutes // 60}h{minutes % 60:02d}"


def timeline(result: ReplayResult) -> list[str]:
    """Runs of equal verdicts, each non-pass with its reason, then the decision."""
    stage = result.stage
    lines = [
        f"replay of stage {stage.name} ({stage.weight}%) for {', '.join(result.services)}: "
        f"{_rfc3339(result.start)} to {_rfc3339(result.end)}, a check every "
        f"{format_duration(stage.analysis.check_interval)}"
    ]
    run: list[int] = []

    def flush() -> None:
        if not run:
            return
        first, last = result.instants[run[0]], result.instants[run[-1]]
        check = result.checks[run[-1]]
        span = _offset(result, first) if len(run) == 1 else f"{_offset(result, first)}..{_offset(result, last)}"
        why = "" if check.verdict == "pass" else f"  {check.reason}"
        lines.append(f"  {span:<16} {check.verdict:<5} x{len(run):<4}{why}")
        run.clear()

    for index, check in enumerate(result.checks):
        previous = result.checks[run[-1]] if run else None
        if previous is not None and (previous.verdict != check.verdict or (check.verdict != "pass" and previous.reason != check.reason)):
            flush()
        run.append(index)
    flush()
    when = "by the end of the data" if result.decided_at is None else f"at {_offset(result, result.decided_at)}"
    lines.append(f"decision {when}: {result.action} - {result.reason}")
    return lines


def calibration(result: ReplayResult) -> list[str]:
    """The judge on this recording, per judged gate: its largest e-value against 1/alpha, and
    the noise it saw. Replayed over an A/A recording (the same version on both tracks), this is
    the check a team runs before turning the judge on (docs/judge.md, "Calibrating on an A/A
    recording"): every e_max should stay well below 1/alpha.

    Noise, from the evidence at consecutive checks (each check's counts since the last one):
    rates: the dispersion of the canary's events per check interval (variance / mean: about 1
    for independent requests, far above for bursts and per-pod overdispersion) and the largest
    canary share of one interval's events (a burst on one canary pod is near 1); latency: the
    spread of the canary/stable slow-request ratio over 10-interval windows (per-pod jitter), and
    how far apart the buckets around stable's quantile are (coarser than 1 + tolerance: the
    judge reads stable's tail off a chord and sees small slowdowns late)."""
    by_gate: dict[str, list[Any]] = {}
    for check in result.checks:
        for gate in check.gates:
            if gate.evidence is not None:
                by_gate.setdefault(gate.name, []).append(gate.evidence)
    if not by_gate:
        return []
    lines = ["judge calibration (largest e-value of the stage against 1/alpha; the noise it saw):"]
    for name, evidence in by_gate.items():
        last = evidence[-1]
        e_max = max(e.e_max for e in evidence)
        verdict = "CROSSED" if last.regression else f"{math.log(e_max) / math.log(last.threshold):.0%} of the way in log"
        noise = _rate_noise(evidence) if last.kind == "rate" else _latency_noise(evidence)
        lines.append(f"  {name:<34} e_max {e_max:<9.3g} 1/alpha {last.threshold:<7.4g} ({verdict}); {noise}")
    return lines


def _rate_noise(evidence: list[Any]) -> str:
    canary = np.diff([0.0] + [e.canary_events for e in evidence])
    stable = np.diff([0.0] + [e.stable_events for e in evidence])
    mean = float(canary.mean()) if canary.size else 0.0
    dispersion = "-" if mean <= 0 else f"{float(canary.var()) / mean:.3g}"
    total = canary + stable
    shares = canary[total > 0] / total[total > 0]
    burst = "-" if shares.size == 0 else f"{float(shares.max()):.2f}"
    return f"canary events per interval: dispersion {dispersion} (1 = independent), largest canary share {burst}"


def _latency_noise(evidence: list[Any]) -> str:
    ratios = [e.recent_ratio for e in evidence if e.recent_ratio is not None and math.isfinite(e.recent_ratio)]
    spread = "-" if len(ratios) < 2 else f"{min(ratios):.3g}..{max(ratios):.3g}"
    last = evidence[-1]
    q = "-" if last.quantile_canary is None or last.quantile_stable is None or not last.quantile_stable else (
        f"{last.quantile_canary / last.quantile_stable:.3g}")
    spacing = last.bucket_spacing
    buckets = "" if spacing is None else f"; buckets around stable's quantile {spacing:.3g}x apart" + (
        f", coarser than 1 + tolerance = {1 + last.tolerance:g}: small slowdowns are seen late (docs/judge.md, "
        "Bucket layout)" if spacing > (1 + last.tolerance) * 1.01 else "")
    return f"canary/stable slow share over 10 intervals {spread} (jitter); canary/stable quantile {q}{buckets}"


def plot(result: ReplayResult, path: Path) -> Path:
    """Error rate, P95 and test pass rate of both tracks over the replay, with the critical
    thresholds, each check's verdict and the decision."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = [(at - result.start).total_seconds() / 3600 for at in result.instants]
    shown = ("error_rate", "p95_latency_seconds", "test_pass_rate")
    figure, axes = plt.subplots(len(shown) + 1, 1, figsize=(10, 8), sharex=True,
                                gridspec_kw={"height_ratios": [3] * len(shown) + [1]})
    for axis, name in zip(axes, shown):
        gates = [next((g for g in c.gates if g.name.endswith(name)), None) for c in result.checks]
        for attribute, label in (("value", "canary"), ("baseline", "stable")):
            values = [math.nan if g is None or getattr(g, attribute) is None else getattr(g, attribute) for g in gates]
            axis.plot(hours, values, label=label, linewidth=1)
        critical = next((g.critical for g in gates if g is not None and g.critical is not None), None)
        if critical is not None:
            axis.axhline(critical, color="red", linestyle="--", linewidth=0.8, label="critical")
        axis.set_ylabel(name.replace("_", " "), fontsize=8)
        axis.legend(fontsize=7, loc="upper right")
    colours = {"pass": "tab:green", "hold": "tab:orange", "fail": "tab:red"}
    axes[-1].scatter(hours, [0] * len(hours), c=[colours.get(c.verdict, "grey") for c in result.checks], s=6)
    axes[-1].set_yticks([])
    axes[-1].set_ylabel("verdict (pass, hold, fail)", fontsize=8)
    axes[-1].set_xlabel("hours since the stage started")
    if result.decided_after is not None:
        for axis in axes:
            axis.axvline(result.decided_after.total_seconds() / 3600, color="black", linewidth=1)
    figure.suptitle(f"replay of stage {result.stage.name}: {result.action}"
                    + ("" if result.decided_after is None else f" at +{format_duration(result.decided_after)}"))
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
