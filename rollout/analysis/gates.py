"""Judge one check: every gate of a stage on the canary's measured values. Pure, no I/O.

Verdicts (the CLI's exit code in brackets):
- pass (0): every gate meets its target and the canary served enough requests to judge;
- fail (1): a gate breached its critical threshold (with enough traffic to trust it), or the
  canary Deployment has not been fully available for `analysis.progressDeadline`;
- hold (2): no critical breach, but a target was missed or data is missing/too thin.
Missing data (no series, NaN such as 0/0 with no traffic, fewer than
analysis.min_canary_requests requests in the window) is never a pass: it holds. Neither is an
impossible value (a ratio outside [0, 1], an infinite or negative latency, rate or request
count): it holds and names the query and the value, whatever a broken exporter or a hostile
Prometheus answers.
With too little traffic even a critical breach only holds: a handful of requests is not
evidence enough to roll back on, and the blast radius is small while traffic is that low.

The stable track is the baseline. It is shown next to every canary value (and in the message)
for context. On its own it never changes a verdict: the gates are the plan's absolute
thresholds, and a stable track that misses them too does not make a bad canary acceptable.
Gates with a `judge` also carry the sequential judge's evidence (rollout/analysis/judge.py,
docs/judge.md): a regression it declares (canary worse than (1 + tolerance) x stable, at
confidence 1 - alpha however often it was looked at) fails the check *immediately*, below any
threshold and without waiting for consecutive failures. A critical breach the stable track
shares is reported as "the canary is not worse than stable"; it still fails unless
`analysis.stableBreach: hold`, which holds (and pages) instead. The judge runs on the check's
counts (`Measurements.counts`, rollout/analysis/judging.py) with its guardrails: counts it cannot
trust (the error-gauge estimate, a sample ratio mismatch: the built-in `sample_ratio` row) make
a declared regression hold, and a judge error holds its gate while the thresholds still judge.

The canary's availability (kube-state-metrics: ready / desired replicas) is judged at every
stage with canary traffic: a canary whose pods never become ready exports no metrics, so every
other gate only holds; past the progress deadline its check fails *immediately* (the deadline
already is the persistence; the decision rolls back without waiting for more failing checks),
whatever the traffic (Flagger's progressDeadlineSeconds, Argo's progressDeadlineAbort).

Like an Argo Rollouts measurement, every gate result keeps its value, status and a message,
so a failed check explains itself.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Literal

from rollout.analysis.counts import StageCounts
from rollout.analysis.evidence import Evidence
from rollout.analysis.judging import JudgeOutcome, judge_stage
from rollout.analysis.srm import SampleRatio
from rollout.analysis.signals import BY_KEY
from rollout.model import Direction, Gate, Stage, format_duration
from rollout.numbers import count, number, percent

Verdict = Literal["pass", "hold", "fail"]
VERDICT_EXIT_CODES: dict[str, int] = {"pass": 0, "fail": 1, "hold": 2}
EXIT_ERROR = 3  # the CLI's: the check itself could not run (e.g. Prometheus unreachable)
AVAILABILITY = "canary_availability"  # the built-in gate on kube-state-metrics
SAMPLE_RATIO = "sample_ratio"  # the built-in check that the canary gets its configured share
_SEVERITY = {"pass": 0, "hold": 1, "fail": 2}


@dataclass(frozen=True)
class GateMeasurement:
    """One gate's signal for the canary and the stable baseline (None: no series)."""

    canary: float | None
    stable: float | None
    query: str  # the canary query, so a result can be reproduced by hand
    stable_query: str | None = None


@dataclass(frozen=True)
class Measurements:
    """What one check measured. Keys of `gates` are the Gates field names."""

    gates: Mapping[str, GateMeasurement]
    canary_requests: float | None  # canary requests in the analysis window; None: no series
    requests_query: str = ""
    at: str | None = None  # ISO time the values are for (retrospective checks)
    queries: int = 0  # Prometheus queries spent on this check
    # the canary Deployment's best ready/desired ratio within the progress deadline
    availability: GateMeasurement | None = None
    # how long the stage had run at `at`; None when unknown (a one-off `rollout check`)
    stage_age: timedelta | None = None
    # evidence already judged per gate (rollout.analysis.evidence), e.g. from a report
    evidence: Mapping[str, Evidence] = field(default_factory=dict)
    # the judge's counts for this check (rollout.analysis.counts); None when the judge is off or
    # the stage start is unknown (a one-off `rollout check`)
    counts: StageCounts | None = None


@dataclass(frozen=True)
class GateResult:
    name: str
    query: str
    value: float | None
    baseline: float | None
    direction: str  # 'max' (value <= target is healthy) or 'min'
    target: float
    critical: float | None
    threshold: float  # the threshold the status was judged on: critical when failing, else target
    ok: bool  # target met
    status: Verdict
    message: str
    evidence: Evidence | None = None  # the judge's, when the gate has one
    judged_regression: bool = False  # the judge failed it: roll back at once
    judge_error: str | None = None  # the judge could not judge this gate (held; the bot pages)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "query": self.query,
            "value": _json_number(self.value),
            "baseline": _json_number(self.baseline),
            "direction": self.direction,
            "target": self.target,
            "critical": self.critical,
            "threshold": self.threshold,
            "ok": self.ok,
            "status": self.status,
            "message": self.message,
            "evidence": None if self.evidence is None else self.evidence.to_dict(),
            "judge_error": self.judge_error,
        }


@dataclass(frozen=True)
class CheckResult:
    stage: str
    verdict: Verdict
    reason: str
    gates: list[GateResult]
    canary_requests: float | None
    min_canary_requests: int
    requests_query: str = ""
    at: str | None = None
    queries: int = 0
    notes: list[str] = field(default_factory=list)
    immediate: bool = False  # a fail that rolls back at once (no consecutive failures needed)

    @property
    def exit_code(self) -> int:
        return VERDICT_EXIT_CODES[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "verdict": self.verdict,
            "reason": self.reason,
            "at": self.at,
            "canary_requests": _json_number(self.canary_requests),
            "min_canary_requests": self.min_canary_requests,
            "requests_query": self.requests_query,
            "queries": self.queries,
            "gates": [g.to_dict() for g in self.gates],
            "notes": list(self.notes),
            "immediate": self.immediate,
        }


def _json_number(value: float | None) -> float | str | None:
    """JSON has no NaN/Inf: keep them readable instead of producing invalid JSON."""
    if value is None or math.isfinite(value):
        return value
    return str(value)


def _missing(value: float | None) -> bool:
    return value is None or math.isnan(value)


RATIO_SLACK = 1e-9  # float rounding of a ratio of sums


def impossible(value: float, is_ratio: bool, worst_is_infinite: bool = False) -> str | None:
    """Why a measured value cannot be true, or None: ratios lie in [0, 1], everything else
    (latencies, rates, counts) is finite and not negative. `worst_is_infinite`: a latency
    quantile is +Inf when it lies above the histogram's last finite bucket (histogram_quantile),
    a real and very bad value that can only fail a maximum, never pass it."""
    if value == math.inf and worst_is_infinite:
        return None
    if not math.isfinite(value):
        return f"{value} is not a finite number"
    if value < 0:
        return f"{value:g} is negative"
    if is_ratio and value > 1 + RATIO_SLACK:
        return f"{value:g} is a ratio above 1"
    return None


def _unit(name: str) -> str:
    signal = BY_KEY.get(name.split("/")[-1])
    return signal.unit if signal else ""


def evaluate_gate(
    name: str, gate: Gate, measured: GateMeasurement | None, evidence: Evidence | None = None,
    stable_breach: Literal["rollback", "hold"] = "rollback", *, judge_hold: str | None = None,
    judge_error: str | None = None,
) -> GateResult:
    """One gate on one measurement: pass, hold (target missed, no data, or a critical breach on a
    gate with rollback: false) or fail (critical breach). With the judge's evidence: a
    regression it declares fails the gate (rollback gates; others hold), and a critical breach
    the stable track shares is reported as "the canary is not worse than stable", held instead
    of failed when `stable_breach` is "hold". `judge_hold`: why the judge's counts cannot be
    trusted (a regression on them only holds); `judge_error`: why the judge could not judge
    (the gate holds at least; its thresholds still judge)."""
    result = _absolute(name, gate, measured)
    if judge_error is not None:
        status = _worst(result.status, "hold")
        message = (f"{result.message}; judge error: {judge_error}: holding, the thresholds still judge "
                   "(the bot pages: GenesisReleaseJudgeFailing)")
        return replace(result, status=status, ok=status == "pass", message=message, evidence=evidence,
                       judge_error=judge_error)
    if evidence is None:
        return result
    status, message, regression = result.status, result.message, False
    if evidence.regression and judge_hold is not None:
        status = _worst(status, "hold")
        message = f"{message}; {evidence.summary()}; not acted on, holding: {judge_hold}"
    elif evidence.regression:
        regression = gate.rollback
        status = "fail" if gate.rollback else _worst(status, "hold")
        message = evidence.summary() + (
            "" if gate.rollback else "; this gate does not roll back (rollback: false), it holds the stage")
    else:
        message = f"{message}; {evidence.summary()}"
        baseline = result.baseline
        if status == "fail" and baseline is not None and not _missing(baseline) and gate.breaches_critical(baseline):
            message += "; the canary is not worse than stable (stable breaches the critical threshold too)"
            if stable_breach == "hold":
                status = "hold"
                message += ": holding and paging instead of rolling back (analysis.stableBreach: hold)"
    return replace(result, status=status, ok=status == "pass", message=message, evidence=evidence,
                   judged_regression=regression)


def evaluate_sample_ratio(test: SampleRatio) -> GateResult:
    """The canary's measured share of weighted requests against the route's weight: a mismatch
    holds (and warns), never fails: it says the comparison is broken, not that the canary is."""
    status: Verdict = "hold" if test.mismatch else "pass"
    message = test.summary() + (
        ": the tracks' requests are not the same population, the judge's comparison is not trusted; "
        "holding (check the router, sticky clients, retries, header traffic without a route label)"
        if test.mismatch else "")
    return GateResult(
        name=SAMPLE_RATIO, query="", value=test.share, baseline=test.expected, direction="max",
        target=1.0 / test.alpha, critical=None, threshold=1.0 / test.alpha, ok=status == "pass",
        status=status, message=message,
    )


def _worst(a: Verdict, b: Verdict) -> Verdict:
    return a if _SEVERITY[a] >= _SEVERITY[b] else b


def _absolute(name: str, gate: Gate, measured: GateMeasurement | None) -> GateResult:
    """The plan's absolute thresholds on the canary's value."""
    value = None if measured is None else measured.canary
    baseline = None if measured is None else measured.stable
    query = "" if measured is None else measured.query
    op, worse = ("<=", ">") if gate.direction is Direction.MAX else (">=", "<")
    unit = _unit(name)

    def _fmt(x: float | None) -> str:
        return number(x, unit)

    context = f" (stable {_fmt(baseline)})"

    if _missing(value):
        why = "no series for the canary" if value is None else "value is NaN (no traffic in the window?)"
        status: Verdict = "hold"
        threshold = gate.target
        message = f"{why}: missing data is never a pass{context}"
    elif problem := impossible(  # type: ignore[arg-type]
        value, gate.is_ratio, worst_is_infinite=gate.direction is Direction.MAX and not gate.is_ratio
    ):
        status, threshold = "hold", gate.target
        message = f"impossible value: {problem}; not trusted, never a pass (query {query}){context}"
    elif gate.breaches_critical(value):  # type: ignore[arg-type]
        threshold = gate.critical  # type: ignore[assignment]
        message = f"{_fmt(value)} {worse} critical {_fmt(gate.critical)}{context}"
        if gate.rollback:
            status = "fail"
        else:  # the plan alerts on it but does not roll back: it blocks promotion instead
            status = "hold"
            message += "; this gate does not roll back (rollback: false), it holds the stage"
    elif gate.meets_target(value):  # type: ignore[arg-type]
        status, threshold = "pass", gate.target
        message = f"{_fmt(value)} {op} target {_fmt(gate.target)}{context}"
    else:
        status, threshold = "hold", gate.target
        message = f"{_fmt(value)} misses target {op} {_fmt(gate.target)}{context}"
    return GateResult(
        name=name,
        query=query,
        value=value,
        baseline=baseline,
        direction=gate.direction.value,
        target=gate.target,
        critical=gate.critical,
        threshold=float(threshold),
        ok=status == "pass",
        status=status,
        message=message,
    )


def evaluate_availability(
    stage: Stage, measured: GateMeasurement | None, stage_age: timedelta | None = None
) -> GateResult:
    """Fail once the canary has not been fully available for the whole progress deadline (a
    window that lies inside the stage: before that, pods may still be starting)."""
    deadline = format_duration(stage.analysis.progress_deadline)
    value = None if measured is None else measured.canary
    baseline = None if measured is None else measured.stable
    early = stage_age is not None and stage_age < stage.analysis.progress_deadline
    if _missing(value):
        status: Verdict = "hold"
        message = (
            "no kube-state-metrics series for the canary Deployment: missing data is never a pass"
        )
    elif problem := impossible(value, is_ratio=True):  # type: ignore[arg-type]
        status = "hold"
        query = "" if measured is None else measured.query
        message = f"impossible value: {problem}; not trusted, never a pass (query {query})"
    elif value < 1 and early:  # type: ignore[operator]
        status = "hold"
        left = format_duration(stage.analysis.progress_deadline - stage_age)  # type: ignore[operator]
        message = f"not fully available yet ({percent(value)} of its desired replicas ready); the progress deadline ends in {left}"
    elif value < 1:  # type: ignore[operator]
        status = "fail"
        message = (
            f"the canary Deployment was never fully available in the last {deadline} (at best "
            f"{percent(value)} of its desired replicas ready): past the progress deadline, roll back"
        )
    else:
        status = "pass"
        message = f"fully available within the last {deadline}"
    return GateResult(
        name=AVAILABILITY,
        query="" if measured is None else measured.query,
        value=value,
        baseline=baseline,
        direction=Direction.MIN.value,
        target=1.0,
        critical=1.0,
        threshold=1.0,
        ok=status == "pass",
        status=status,
        message=message,
    )


def evaluate(stage: Stage, measurements: Measurements) -> CheckResult:
    """Every gate of the stage on the measurements, and the check's verdict."""
    judged = _judge(stage, measurements.counts)
    evidence = {**measurements.evidence, **judged.evidence}
    results = [
        evaluate_gate(name, gate, measurements.gates.get(name), evidence.get(name), stage.analysis.stable_breach,
                      judge_hold=judged.holds.get(name), judge_error=judged.errors.get(name))
        for name, gate in stage.gates.items()
    ]
    if judged.sample_ratio is not None:
        results.append(evaluate_sample_ratio(judged.sample_ratio))
    if stage.weight > 0:
        results.append(evaluate_availability(stage, measurements.availability, measurements.stage_age))
    minimum = stage.analysis.min_canary_requests
    requests = measurements.canary_requests
    bad_count = None if _missing(requests) else impossible(requests, is_ratio=False)  # type: ignore[arg-type]
    too_little = _missing(requests) or bad_count is not None or requests < minimum  # type: ignore[operator]
    failed = [r.name for r in results if r.status == "fail"]
    held = [r.name for r in results if r.status == "hold"]
    unavailable = AVAILABILITY in failed
    regressions = [r for r in results if r.judged_regression]

    if unavailable:  # kube-state-metrics evidence: trusted whatever the traffic
        verdict: Verdict = "fail"
        reason = "canary unavailable: " + next(r.message for r in results if r.name == AVAILABILITY)
    elif regressions:  # the judge's evidence already accounts for how many requests it saw
        verdict = "fail"
        reason = "; ".join(f"{r.name} {r.message}" for r in regressions)
    elif bad_count:
        verdict = "hold"
        reason = (
            f"impossible canary request count: {bad_count} (query {measurements.requests_query}); "
            "not trusted, never a pass"
        )
    elif too_little:
        verdict = "hold"
        reason = (
            f"too little canary traffic to judge: {count(requests, 'canary request')} in the window, "
            f"need {minimum}"
        )
        if failed:
            reason += f" (critical breach on {', '.join(failed)} not trusted yet)"
    elif failed:
        verdict = "fail"
        reason = "critical threshold breached: " + "; ".join(
            f"{r.name} {r.message}" for r in results if r.status == "fail"
        )
    elif held:
        verdict = "hold"
        reason = "target missed or no data: " + "; ".join(
            f"{r.name} {r.message}" for r in results if r.status == "hold"
        )
    else:
        verdict = "pass"
        reason = f"all {len(results)} gates meet their targets on {count(requests, 'canary request')}"

    notes = list(judged.notes)
    if stage.weight == 0:
        notes.append(f"stage '{stage.name}' sends no traffic to the canary: nothing to judge")
    return CheckResult(
        stage=stage.name,
        verdict=verdict,
        reason=reason,
        gates=results,
        canary_requests=requests,
        min_canary_requests=minimum,
        requests_query=measurements.requests_query,
        at=measurements.at,
        queries=measurements.queries,
        notes=notes,
        immediate=unavailable or bool(regressions),
    )


def _judge(stage: Stage, counts: StageCounts | None) -> JudgeOutcome:
    """The judge's outcome; an error anywhere in it holds every judged gate, never the check."""
    if counts is None:
        return JudgeOutcome()
    try:
        return judge_stage(stage, counts)
    except Exception as err:  # noqa: BLE001 - judge_stage catches per gate; this is the last net
        why = f"{type(err).__name__}: {err}"
        return JudgeOutcome(errors={name: why for name, _ in stage.gates.judged()})


def worst_verdict(verdicts: Iterable[str]) -> Verdict:
    """Several services in one stage: the worst verdict wins (fail > hold > pass); none holds."""
    worst: Verdict = "pass"
    seen = False
    for verdict in verdicts:
        seen = True
        if _SEVERITY[verdict] > _SEVERITY[worst]:
            worst = verdict  # type: ignore[assignment]
    return worst if seen else "hold"


def exit_code(verdict: str) -> int:
    return VERDICT_EXIT_CODES[verdict]
