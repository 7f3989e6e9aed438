"""The release bot: measure, judge, decide, act. One `tick` is one stateless step.

Everything the bot knows comes from outside on every tick: the current stage and when it
started from the deployer (the Pulumi stack's outputs and history), the recent checks from
Prometheus at the stage's check instants (a past instant answers the same after a restart).
So a bot restarted mid-stage continues where it stopped, and two bots would agree.

Judging is pure (rollout.analysis.gates, rollout.analysis.decision); I/O sits behind the deployer, the
Prometheus adapter and the release hooks (Alertmanager, Grafana, reports).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Protocol, Sequence

from rollout.analysis.decision import Decision, check_times, decide
from rollout.analysis.gates import CheckResult, evaluate, worst_verdict
from rollout.model import Release, Stage
from rollout.release.deployer import ApplyResult, DeployedState, Deployer
from rollout.release.prometheus import Prometheus, measure

log = logging.getLogger("rollout.release.bot")
COMPLETED_TAG = "rollout:completed"  # the stack update whose completion was announced


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class StageChange:
    """What a hook is told after the bot changed the stage."""

    action: str  # promote | rollback | complete
    source: str
    target: str
    reason: str
    started_at: datetime  # when the source stage began
    at: datetime
    checks: Sequence[CheckResult]
    applied: ApplyResult | None


class ReleaseHook(Protocol):
    """Told about every stage change the bot makes (alerting, annotations, reports)."""

    def stage_changed(self, change: StageChange) -> str | None:
        """Do the side effect; return a line for the outcome (e.g. where a report went)."""


@dataclass
class TickOutcome:
    state: DeployedState
    decision: Decision
    checks: list[CheckResult]
    applied: ApplyResult | None = None
    effects: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.state.stage,
            "weight": self.state.weight,
            "since": self.state.since.isoformat(),
            "decision": self.decision.to_dict(),
            "checks": [{"at": c.at, "verdict": c.verdict, "reason": c.reason} for c in self.checks],
            "applied": None
            if self.applied is None
            else {"stage": self.applied.stage, "message": self.applied.message},
            "effects": self.effects,
            "warnings": self.warnings,
        }


def merge_service_checks(stage: Stage, results: Sequence[tuple[str, CheckResult]]) -> CheckResult:
    """One check over several services: the worst verdict wins; gate names get the service."""
    if len(results) == 1:
        return results[0][1]
    verdict = worst_verdict(r.verdict for _, r in results)
    gates = [dataclasses.replace(g, name=f"{svc}/{g.name}") for svc, r in results for g in r.gates]
    reasons = "; ".join(f"{svc}: {r.reason}" for svc, r in results if r.verdict == verdict)
    first = results[0][1]
    return CheckResult(
        stage=stage.name,
        verdict=verdict,
        reason=reasons,
        gates=gates,
        canary_requests=min(
            (r.canary_requests for _, r in results if r.canary_requests is not None), default=None
        ),
        min_canary_requests=first.min_canary_requests,
        at=first.at,
        queries=sum(r.queries for _, r in results),
        notes=[n for _, r in results for n in r.notes],
        immediate=any(r.immediate for _, r in results),
    )


def check_release(
    release: Release,
    prometheus: Prometheus,
    stage: Stage,
    at: datetime | None = None,
    since: datetime | None = None,
) -> CheckResult:
    """One evaluation of every gate of every service. Raises PrometheusError, never passes."""
    results = [
        (svc.name, evaluate(stage, measure(prometheus, stage, svc, at, since=since)))
        for svc in release.project.services
    ]
    return merge_service_checks(stage, results)


class ReleaseBot:
    def __init__(
        self,
        release: Release,
        deployer: Deployer,
        prometheus: Prometheus,
        *,
        hooks: Sequence[ReleaseHook] = (),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.release = release
        self.deployer = deployer
        self.prometheus = prometheus
        self.hooks = list(hooks)
        self.clock = clock

    # ------------------------------------------------------------------ measuring

    def check(self, stage: Stage, at: datetime | None = None, since: datetime | None = None) -> CheckResult:
        return check_release(self.release, self.prometheus, stage, at, since)

    def recent_checks(self, stage: Stage, since: datetime, now: datetime) -> list[CheckResult]:
        """The stage's latest checks on its fixed grid, oldest first (same after a restart)."""
        return [self.check(stage, at, since) for at in check_times(stage, since, now)]

    # ------------------------------------------------------------------ acting

    def tick(self) -> TickOutcome:
        """Read the state, judge the recent checks, promote / roll back / wait. Idempotent."""
        state = self.deployer.current()
        if state.pending is not None:
            return self._finish_pending(state)
        stage = self.release.stage(state.stage)
        now = self.clock()
        checks = [] if stage.weight == 0 else self.recent_checks(stage, state.since, now)
        is_last = self.release.next_stage(stage.name) is None
        decision = decide(stage, state.since, now, checks, last_stage=is_last)
        outcome = TickOutcome(state=state, decision=decision, checks=checks)
        if decision.action == "promote":
            target = self.release.next_stage(stage.name)
            assert target is not None  # decide() says 'complete' at the last stage
            self._change(outcome, "promote", target.name, decision.reason)
        elif decision.action == "rollback":
            self._change(outcome, "rollback", self.release.rollback_target.name, decision.reason)
        elif decision.action == "complete":
            outcome.effects.append(
                "release complete: make the canary image the new stable in Pulumi.yaml, set "
                f"releaseFlags to [], then apply '{self.release.rollback_target.name}' to start the "
                "next release clean (docs/stack.md)"
            )
            # every later tick says 'complete' again: a stack tag remembers that people were told
            if state.tags.get(COMPLETED_TAG) != str(state.update_version):
                self._notify(outcome, "complete", stage.name, decision.reason, now)
                self.deployer.set_tag(COMPLETED_TAG, str(state.update_version))
        return outcome

    def _finish_pending(self, state: DeployedState) -> TickOutcome:
        """A stage change stopped between its phases (the process died mid-way): finish it
        before judging anything; every phase is idempotent, so it is replayed from its source."""
        pending = state.pending
        assert pending is not None
        source = pending.source or state.stage
        reason = f"finishing the interrupted stage change {source} -> {pending.target}: {pending.reason}"
        decision = Decision(pending.action, reason, source, timedelta(0))  # type: ignore[arg-type]
        outcome = TickOutcome(state=state, decision=decision, checks=[])
        self._change(outcome, pending.action, pending.target, pending.reason, source=source)
        return outcome

    def promote(self, reason: str = "promoted by hand") -> TickOutcome:
        """Move to the next stage now (a human's decision; the gates are not consulted)."""
        state = self.deployer.current()
        target = self.release.next_stage(state.stage)
        if target is None:
            raise ValueError(f"stage '{state.stage}' is the last stage: nothing to promote to")
        return self._manual(state, "promote", target.name, reason)

    def rollback(self, reason: str = "rolled back by hand") -> TickOutcome:
        state = self.deployer.current()
        return self._manual(state, "rollback", self.release.rollback_target.name, reason)

    def _manual(self, state: DeployedState, action: str, target: str, reason: str) -> TickOutcome:
        stage = self.release.stage(state.stage)
        decision = Decision(action, reason, stage.name, timedelta(0))  # type: ignore[arg-type]
        outcome = TickOutcome(state=state, decision=decision, checks=[])
        self._change(outcome, action, target, reason)
        return outcome

    def _change(
        self, outcome: TickOutcome, action: str, target: str, reason: str, source: str | None = None
    ) -> None:
        """Apply a stage change; `source` replays an interrupted one from that stage."""
        decided_at = self.clock()
        log.info("%s %s -> %s: %s", action, source or outcome.state.stage, target, reason)
        if source is None:
            outcome.applied = self.deployer.apply(target, reason)
        else:
            outcome.applied = self.deployer.apply(target, reason, source=source)
        self._notify(outcome, action, target, reason, decided_at, source)

    def _notify(
        self,
        outcome: TickOutcome,
        action: str,
        target: str,
        reason: str,
        decided_at: datetime | None = None,
        source: str | None = None,
    ) -> None:
        change = StageChange(
            action=action,
            source=source or outcome.state.stage,
            target=target,
            reason=reason,
            started_at=outcome.state.since,
            at=decided_at or self.clock(),
            checks=outcome.checks,
            applied=outcome.applied,
        )
        for hook in self.hooks:
            # a failed notification must never undo or block the stage change itself
            try:
                effect = hook.stage_changed(change)
            except Exception as err:  # noqa: BLE001 - reported, not swallowed
                outcome.warnings.append(f"{type(hook).__name__} failed: {err}")
                log.warning("%s failed: %s", type(hook).__name__, err)
            else:
                if effect:
                    outcome.effects.append(effect)
