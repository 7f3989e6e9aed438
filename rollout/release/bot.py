"""The release bot: measure, judge, decide, act, tell. One `tick` is one stateless step.

Everything the bot knows comes from outside on every tick: the current stage and when it
started from the deployer (the Pulumi stack's outputs, history and tags), the recent checks from
Prometheus at the stage's check instants (a past instant answers the same after a restart).
So a bot restarted mid-stage continues where it stopped, and two bots would agree.

Safety rules:
- compare-and-apply: a decision is applied only if the stack's newest update is still the one
  it was made from; otherwise the tick decides again on the new state (manual commands refuse);
- roll back first, then tell: a notification problem never blocks or delays a rollback; hooks
  are retried with bounded backoff afterwards, and a tick that applied but could not tell says so
  (`TickOutcome.notified` False: the CLI's exit code 4). A rollback that cannot be applied is
  told (`rollback_failed`: a critical GenesisRollbackFailed alert and the incident report);
- post-apply work is idempotent: the stack tag rollout:notified names the newest change whose
  hooks all ran; a tick after a crash finishes the newest change's notifications (a rollback
  however late, marked late; a promotion within REPLAY_WINDOW);
- an interrupted change (the stack's newest update is an earlier phase): a rollback is always
  finished; a promotion is judged again with a fresh check first, finished only on a pass, rolled
  back on a fail, left waiting otherwise;
- operators: a pause, a required approval, a freeze window or the promotion hours hold back
  promotion only (rollout.analysis.policy), read again right before a promotion is applied, so a
  pause given while a tick measures wins; rollbacks always run.

Judging is pure (rollout.analysis.gates, .decision, .policy); I/O sits behind the deployer, the
Prometheus adapter and the release hooks (Alertmanager, Grafana, reports).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Protocol, Sequence

from rollout.analysis.decision import Decision, check_times, decide
from rollout.analysis.gates import CheckResult, evaluate, worst_verdict
from rollout.analysis.policy import promotion_block
from rollout.model import Release, ServiceConfig, Stage
from rollout.release.controls import COMPLETED_TAG, NOTIFIED_TAG, read_controls
from rollout.release.deployer import (
    ApplyResult,
    DeployedState,
    Deployer,
    DeployerError,
    CANARY_TAG,
    StaleStateError,
    parse_update_message,
)
from rollout.release.measuring import measure
from rollout.release.prometheus import Prometheus

log = logging.getLogger("rollout.release.bot")
REPLAY_WINDOW = timedelta(hours=1)  # a promotion older than this is not told again after a crash


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class StageChange:
    """What a hook is told about a stage change (made, finished after a crash, or failed)."""

    action: str  # promote | rollback | complete
    source: str
    target: str
    reason: str
    started_at: datetime | None  # when the source stage began (None: not known after a crash)
    at: datetime
    checks: Sequence[CheckResult]
    applied: ApplyResult | None
    error: str | None = None  # why it could not be applied
    late: bool = False  # told after REPLAY_WINDOW (the bot was down): the page says so

    @property
    def version(self) -> int | None:
        """The stack update that applied it."""
        return None if self.applied is None else self.applied.version


class ReleaseHook(Protocol):
    """Told about every stage change the bot makes (alerting, annotations, reports). Every
    side effect must be idempotent: after a crash the same change is told again."""

    def stage_changed(self, change: StageChange) -> str | None:
        """Do the side effect; return a line for the outcome (e.g. where a report went)."""

    def rollback_failed(self, change: StageChange) -> str | None:
        """A rollback could not be applied (`change.error` says why): page and report it."""


@dataclass
class TickOutcome:
    state: DeployedState
    decision: Decision
    checks: list[CheckResult]
    applied: ApplyResult | None = None
    effects: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notified: bool | None = None  # None: nothing to tell; False: applied (or failed) but not told

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
            "notified": self.notified,
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
    return check_services(release.project.services, prometheus, stage, at, since,
                          router=release.project.routing.router)


def check_services(
    services: Sequence[ServiceConfig],
    prometheus: Prometheus,
    stage: Stage,
    at: datetime | None = None,
    since: datetime | None = None,
    *,
    router: str | None = None,
) -> CheckResult:
    """check_release for these services (a replay judges the services its file holds): measure
    (rollout.release.measuring), then judge (rollout.analysis.gates), one way."""
    results = [
        (svc.name, evaluate(stage, measure(prometheus, stage, svc, at, since=since, router=router,
                                           services=len(services))))
        for svc in services
    ]
    return merge_service_checks(stage, results)


def next_decision(release: Release, state: DeployedState, now: datetime, checks: Sequence[CheckResult]) -> Decision:
    """What the bot decides on these checks: the stage's rules, then the operator controls and
    the release policy, which can only turn a promotion into a wait. Pure; the one place for
    `tick`, `rollout status` and the daily report."""
    stage = release.stage(state.stage)
    target = release.next_stage(stage.name)
    decision = decide(stage, state.since, now, checks, last_stage=target is None)
    if decision.action == "promote" and target is not None and target.name in release.unavailable:
        problem = release.unavailable[target.name]
        return dataclasses.replace(decision, action="wait", reason=f"{decision.reason}, but the next stage's file is broken: {problem}")
    if decision.action == "promote" and target is not None:
        controls = read_controls(state.tags, target.name, state.head_version)
        block = promotion_block(release.project.release_policy, target, now, controls)
        if block:
            decision = dataclasses.replace(decision, action="wait", reason=f"{decision.reason}, but {block}")
    return decision


class ReleaseBot:
    def __init__(
        self,
        release: Release,
        deployer: Deployer,
        prometheus: Prometheus,
        *,
        hooks: Sequence[ReleaseHook] = (),
        clock: Callable[[], datetime] = utcnow,
        notify_attempts: int = 3,
        notify_backoff: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.release = release
        self.deployer = deployer
        self.prometheus = prometheus
        self.hooks = list(hooks)
        self.clock = clock
        self.notify_attempts = notify_attempts
        self.notify_backoff = notify_backoff
        self.sleep = sleep

    # ------------------------------------------------------------------ measuring

    def check(self, stage: Stage, at: datetime | None = None, since: datetime | None = None) -> CheckResult:
        return check_release(self.release, self.prometheus, stage, at, since)

    def recent_checks(self, stage: Stage, since: datetime, now: datetime) -> list[CheckResult]:
        """The stage's latest checks on its fixed grid, oldest first (same after a restart)."""
        instants = check_times(stage, since, now)
        with self.prometheus.grid(instants):  # every check of the stage, when counted cumulatively
            return [self.check(stage, at, since) for at in instants]

    # ------------------------------------------------------------------ acting

    def tick(self) -> TickOutcome:
        """Read the state, judge the recent checks, promote / roll back / wait. Idempotent. If the
        stack changes between the decision and its apply, decide once more on the new state."""
        try:
            return self._tick()
        except StaleStateError as err:
            log.warning("%s", err)
            outcome = self._tick()
            outcome.warnings.append(f"decided again: {err}")
            return outcome

    def _tick(self) -> TickOutcome:
        state = self.deployer.current()
        if state.pending is None and state.stage in self.release.unavailable:
            # nothing to judge with; `rollout rollback` needs only the rollback target's file
            raise ValueError(f"cannot judge stage '{state.stage}': {self.release.unavailable[state.stage]}")
        outcome = self._tick_on(state)
        outcome.warnings += [f"a stage file is broken (not needed for this tick): {problem}"
                             for name, problem in self.release.unavailable.items() if name != state.stage]
        return outcome

    def _tick_on(self, state: DeployedState) -> TickOutcome:
        if state.pending is not None:
            return self._finish_pending(state)
        stage = self.release.stage(state.stage)
        now = self.clock()
        checks = [] if stage.weight == 0 else self.recent_checks(stage, state.since, now)
        decision = next_decision(self.release, state, now, checks)
        target = self.release.next_stage(stage.name)
        outcome = TickOutcome(state=state, decision=decision, checks=checks)
        if checks:  # said on every tick it lasts (and paged: rollout_judge_errors, GenesisReleaseJudgeFailing)
            outcome.warnings += [f"the judge could not judge {g.name}: {g.judge_error} (held; the thresholds still judge)"
                                 for g in checks[-1].gates if g.judge_error is not None]
        if state.canary_changed is not None:
            outcome.effects.append(
                f"the canary changed in update {state.canary_changed.version} ({state.canary_changed.message or 'no message'}): "
                f"the hold and the evidence run from {state.since:%Y-%m-%d %H:%M:%S}Z"
            )
        if state.canary_note and state.tags.get(CANARY_TAG) != state.canary_note:
            self._note(outcome, CANARY_TAG, state.canary_note, done="")
        if decision.action == "promote":
            # the controls again, right before applying: a pause given while this tick measured wins
            fresh = dataclasses.replace(state, tags=self.deployer.tags())
            decision = next_decision(self.release, fresh, now, checks)
            outcome.decision = decision
        if decision.action == "promote":
            assert target is not None  # decide() says 'complete' at the last stage
            self._change(outcome, "promote", target.name, decision.reason)
        elif decision.action == "rollback":
            self._change(outcome, "rollback", self.release.rollback_target.name, decision.reason)
        else:
            self._finish_notifications(outcome)
        if decision.action == "complete":
            outcome.effects.append(
                "release complete: make the canary image the new stable in Pulumi.yaml, set "
                f"releaseFlags to [], then apply '{self.release.rollback_target.name}' to start the "
                "next release clean (docs/stack.md)"
            )
            # every later tick says 'complete' again: a stack tag remembers that people were told
            if state.tags.get(COMPLETED_TAG) != str(state.update_version):
                change = self._stage_change(outcome, "complete", stage.name, decision.reason, now)
                if self._notify(outcome, change):
                    self._note(outcome, COMPLETED_TAG, str(state.update_version))
        return outcome

    def _finish_pending(self, state: DeployedState) -> TickOutcome:
        """A stage change stopped between its phases (the process died mid-way). A rollback is
        finished before anything else. A promotion was decided on checks that may be hours old:
        it is judged again with a fresh check of its source stage first (and the operator
        controls), finished on a pass, rolled back on a fail, left waiting otherwise. Every
        phase is idempotent, so a change is replayed from its source."""
        pending = state.pending
        assert pending is not None
        source = pending.source or state.stage
        checks: list[CheckResult] = []
        action, target = pending.action, pending.target
        reason = f"finishing the interrupted stage change {source} -> {target}: {pending.reason}"
        if action == "promote":
            stage = self.release.stage(source)
            now = self.clock()
            checks = [self.check(stage, now, state.since)] if stage.weight else []
            verdict = checks[-1].verdict if checks else "pass"
            interrupted = f"the interrupted promotion {source} -> {target}"
            if verdict == "fail":
                action, target = "rollback", self.release.rollback_target.name
                reason = f"{interrupted} was checked again and fails: {checks[-1].reason}"
            elif verdict != "pass":
                reason = f"{interrupted} waits for a passing check: {checks[-1].reason}"
                return TickOutcome(state=state, decision=Decision("wait", reason, source, timedelta(0)), checks=checks)
            else:
                block = promotion_block(
                    self.release.project.release_policy, self.release.stage(target), now,
                    read_controls(state.tags, target, state.head_version),
                )
                if block:
                    reason = f"{interrupted} passes a fresh check, but {block}"
                    return TickOutcome(state=state, decision=Decision("wait", reason, source, timedelta(0)), checks=checks)
                reason = f"{reason} (a fresh check passes: {checks[-1].reason})" if checks else reason
        decision = Decision(action, reason, source, timedelta(0))  # type: ignore[arg-type]
        outcome = TickOutcome(state=state, decision=decision, checks=checks)
        told = pending.reason if action == pending.action else reason
        self._change(outcome, action, target, told, source=source)
        return outcome

    def promote(self, reason: str = "promoted by hand") -> TickOutcome:
        """Move to the next stage now (a human's decision; the gates are not consulted)."""
        state = self.deployer.current()
        target = self.release.next_stage(state.stage)
        if target is None:
            raise ValueError(f"stage '{state.stage}' is the last stage: nothing to promote to")
        return self._manual(state, "promote", target.name, reason)

    def rollback(self, reason: str = "rolled back by hand", *, force: bool = False) -> TickOutcome:
        """Apply the rollback target now. At the rollback target already (and no change under
        way) nothing is applied and nobody is paged again unless `force`. The incident report
        gets a fresh check first, so it shows the gate values that made someone roll back."""
        state = self.deployer.current()
        target = self.release.rollback_target.name
        source = state.pending.source if state.pending is not None else None
        if state.stage == target and state.pending is None and not force:
            reason = f"already at the rollback target '{target}': nothing applied, nobody paged (--force applies it again)"
            return TickOutcome(state=state, decision=Decision("wait", reason, state.stage, timedelta(0)), checks=[])
        checks = self._fresh_checks(source or state.stage, state.since)
        return self._manual(state, "rollback", target, reason, source=source, checks=checks)

    def _fresh_checks(self, stage_name: str, since: datetime) -> list[CheckResult]:
        """One check now, for the report of a person's rollback; unreadable metrics never block it."""
        stage = self.release.stage(stage_name)
        if not stage.weight:
            return []
        try:
            return [self.check(stage, self.clock(), since)]
        except Exception as err:  # noqa: BLE001 - the rollback goes ahead; the report says why no values
            log.warning("no fresh check for the rollback's report: %s", err)
            return []

    def _manual(
        self, state: DeployedState, action: str, target: str, reason: str,
        source: str | None = None, checks: Sequence[CheckResult] = (),
    ) -> TickOutcome:
        """A person's command: applied only on the state they looked at (StaleStateError else)."""
        stage = self.release.stage(state.stage)
        decision = Decision(action, reason, stage.name, timedelta(0))  # type: ignore[arg-type]
        outcome = TickOutcome(state=state, decision=decision, checks=list(checks))
        self._change(outcome, action, target, reason, source=source)
        return outcome

    # ------------------------------------------------------------------ applying and telling

    def _stage_change(
        self, outcome: TickOutcome, action: str, target: str, reason: str, at: datetime,
        source: str | None = None, error: str | None = None,
    ) -> StageChange:
        applied = outcome.applied
        return StageChange(
            action=action, source=source or outcome.state.stage, target=target, reason=reason,
            started_at=outcome.state.since, at=at, checks=outcome.checks, applied=applied,
            error=error,
        )

    def _change(
        self, outcome: TickOutcome, action: str, target: str, reason: str, source: str | None = None
    ) -> None:
        """Apply a stage change on the state it was decided from, then tell; `source` replays an
        interrupted change from that stage."""
        decided_at = self.clock()
        log.info("%s %s -> %s: %s", action, source or outcome.state.stage, target, reason)
        try:
            # `action` given: the reason is never read as a composed stack message
            outcome.applied = self.deployer.apply(
                target, reason, source=source, expect_head=outcome.state.head_version, action=action
            )
        except StaleStateError:
            raise
        except DeployerError as err:
            if action == "rollback":  # nobody may miss a rollback that did not happen
                change = self._stage_change(outcome, action, target, reason, decided_at, source, error=str(err))
                self._notify(outcome, change, method="rollback_failed")
            raise
        change = self._stage_change(outcome, action, target, reason, decided_at, source)
        if self._notify(outcome, change) and outcome.applied.version is not None:
            self._note(outcome, NOTIFIED_TAG, str(outcome.applied.version))

    def _note(self, outcome: TickOutcome, key: str, value: str, done: str = "applied and told, but ") -> None:
        """A note on the stack (post-apply work done, the canary's identity). A failing tag
        write is a warning (the next tick notes or tells once more), never an error: everything
        it records is already done."""
        try:
            self.deployer.set_tag(key, value)
        except DeployerError as err:
            outcome.warnings.append(f"{done}could not note it on the stack ({key}): {err}")

    def _finish_notifications(self, outcome: TickOutcome) -> None:
        """The newest change was applied but its hooks never all ran (a crash right after `up`, or
        Alertmanager down): tell it now. Hooks are idempotent, so telling twice is harmless."""
        state = outcome.state
        parsed = parse_update_message(state.head_message)
        if parsed is None or not parsed.final or parsed.action not in ("promote", "rollback") or state.head_version is None:
            return
        if str(state.head_version) == state.tags.get(NOTIFIED_TAG):
            return
        if state.head_finished is None:
            return
        # a rollback is told however late (marked late); an old promotion is news to nobody
        late = self.clock() - state.head_finished > REPLAY_WINDOW
        if late and parsed.action != "rollback":
            return
        applied = ApplyResult(
            stage=parsed.target, weight=self.release.stage(parsed.target).weight, action=parsed.action,
            previous_stage=parsed.source, message=state.head_message, version=state.head_version,
            finished=state.head_finished,
        )
        change = StageChange(
            action=parsed.action, source=parsed.source or parsed.target, target=parsed.target,
            reason=parsed.reason, started_at=None, at=state.head_finished, checks=[], applied=applied,
            late=late,
        )
        when = f" (LATE: applied at {state.head_finished:%Y-%m-%d %H:%M:%S}Z)" if late else ""
        outcome.effects.append(f"finishing the notifications of update {state.head_version}{when}: {state.head_message}")
        if self._notify(outcome, change):
            self._note(outcome, NOTIFIED_TAG, str(state.head_version))

    def _notify(self, outcome: TickOutcome, change: StageChange, method: str = "stage_changed") -> bool:
        """Every hook, each retried with bounded backoff; a failure is reported, never raised
        (it must not undo or block the stage change). True when every hook succeeded."""
        ok = True
        for hook in self.hooks:
            call = getattr(hook, method, None)
            if call is None:
                continue
            for attempt in range(self.notify_attempts):
                try:
                    effect = call(change)
                except Exception as err:  # noqa: BLE001 - reported, not swallowed
                    last = f"{type(hook).__name__} failed: {err}"
                    log.warning("%s (attempt %d of %d)", last, attempt + 1, self.notify_attempts)
                    if attempt + 1 < self.notify_attempts:
                        self.sleep(self.notify_backoff * 2**attempt)
                    continue
                if effect:
                    outcome.effects.append(effect)
                break
            else:
                ok = False
                outcome.warnings.append(f"{last} (after {self.notify_attempts} attempts)")
        outcome.notified = ok if self.hooks else outcome.notified
        return ok
