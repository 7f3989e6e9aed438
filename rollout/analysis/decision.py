"""Decide over time: promote, roll back, complete the release, or wait. Pure, no I/O.

The inputs are the stage, when it started, now, and the recent check verdicts (newest last).
The bot keeps no state of its own: after a restart it re-runs the checks at `check_times(...)`
(Prometheus answers for a past instant) and gets the same verdicts and the same decision.

Rules (no flapping):
- rollback: the last `analysis.consecutive_failures` checks all failed. One fail never rolls
  back, and a hold or a pass in between resets the streak. Except an immediate fail (the
  newest check failed on evidence that already carries its own persistence, like a canary
  unavailable for the whole progress deadline): it rolls back at once. With
  `analysis.cumulative_failures` set, also once that many checks failed since the stage
  started, in a row or not (Flagger's and Argo Rollouts' counting); `checks` must then be
  every check since the first of the stage (check_times gives them).
- promote: the stage's hold is over AND the last `analysis.passing_checks_to_promote` checks
  all passed. A hold (missed target, missing data) never counts toward promotion.
- complete: the same condition at the last stage: the release is done.
- wait: anything else, with the reason.
A verdict other than pass/hold/fail (e.g. 'error' when a check could not run) counts like a
hold: it neither promotes nor rolls back.
At the rollback target (weight 0) nothing runs on the canary: nothing to check or roll back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol, Union

from rollout.model import Stage, format_duration

Action = Literal["promote", "rollback", "complete", "wait"]


class Judged(Protocol):
    """What decide() reads of a check (gates.CheckResult has both)."""

    verdict: str
    immediate: bool


Check = Union[str, Judged]  # a bare verdict, or a check that may be an immediate fail


def _verdict(check: Check) -> str:
    return check if isinstance(check, str) else check.verdict


def _immediate(check: Check) -> bool:
    return not isinstance(check, str) and check.verdict == "fail" and bool(getattr(check, "immediate", False))


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    stage: str
    hold_remaining: timedelta

    def to_dict(self) -> dict[str, object]:
        return {
            "action": self.action,
            "reason": self.reason,
            "stage": self.stage,
            "hold_remaining": format_duration(self.hold_remaining),
        }


def _trailing(verdicts: Sequence[str], wanted: str) -> int:
    """How many of the newest verdicts in a row equal `wanted`."""
    count = 0
    for verdict in reversed(verdicts):
        if verdict != wanted:
            break
        count += 1
    return count


def decide(
    stage: Stage,
    started_at: datetime,
    now: datetime,
    checks: Sequence[Check],
    *,
    last_stage: bool | None = None,
) -> Decision:
    """What to do now. `checks` are verdicts or checks, newest last; `last_stage` defaults to
    weight 100 (a Release ends at 100)."""
    analysis = stage.analysis
    is_last = stage.weight == 100 if last_stage is None else last_stage
    elapsed = now - started_at
    remaining = max(analysis.hold - elapsed, timedelta(0))

    def decision(action: Action, reason: str) -> Decision:
        return Decision(action, reason, stage.name, remaining)

    if stage.weight == 0:
        return decision(
            "wait", f"stage '{stage.name}' is the rollback target (weight 0): nothing to check"
        )
    if elapsed < timedelta(0):
        return decision("wait", f"stage '{stage.name}' starts in {format_duration(-elapsed)}")

    verdicts = [_verdict(c) for c in checks]
    if checks and _immediate(checks[-1]):
        return decision("rollback", f"the newest check failed at once: {getattr(checks[-1], 'reason', 'immediate fail')}")
    fails = _trailing(verdicts, "fail")
    need_fails = analysis.consecutive_failures
    if fails >= need_fails:
        return decision("rollback", f"the last {fails} checks failed (limit {need_fails})")
    total_fails = verdicts.count("fail")
    if analysis.cumulative_failures is not None and total_fails >= analysis.cumulative_failures:
        return decision(
            "rollback", f"{total_fails} checks failed since the stage started (limit {analysis.cumulative_failures})"
        )

    passes = _trailing(verdicts, "pass")
    need_passes = analysis.passing_checks_to_promote
    streak = (
        f"{fails} of {need_fails} consecutive failures"
        if fails
        else f"{min(passes, need_passes)} of {need_passes} passing checks in a row"
    )
    if analysis.cumulative_failures is not None and total_fails:
        streak += f"; {total_fails} of {analysis.cumulative_failures} failures since the stage started"
    if remaining > timedelta(0):
        return decision("wait", f"hold: {format_duration(remaining)} left; {streak}")
    if passes >= need_passes:
        if is_last:
            return decision(
                "complete", f"hold over and the last {passes} checks passed: release complete"
            )
        return decision("promote", f"hold over and the last {passes} checks passed")
    newest = verdicts[-1] if verdicts else "none yet"
    return decision(
        "wait", f"hold over but promotion needs {need_passes} passing checks in a row; "
        f"{streak} (newest: {newest})"
    )


EVERY_CHECK = 1 << 62  # check_times(count=...): every check of the stage


def check_times(
    stage: Stage, started_at: datetime, now: datetime, count: int | None = None
) -> list[datetime]:
    """The stage's most recent check instants, oldest first, on a grid anchored at stage start.

    Checks run every check_interval; the first is once a whole rate window lies inside the
    stage, so no check mixes in the previous stage's traffic. The grid does not depend on when
    the bot runs, so a restarted bot re-evaluates exactly the same instants. `count` defaults
    to as many checks as any rule needs: every check of the stage when failures are counted
    cumulatively.
    """
    analysis = stage.analysis
    if count is None:
        count = max(analysis.consecutive_failures, analysis.passing_checks_to_promote)
        if analysis.cumulative_failures is not None:
            count = EVERY_CHECK
    interval = analysis.check_interval
    first = max(1, math.ceil(analysis.rate_window / interval))
    latest = math.floor((now - started_at) / interval)
    lowest = max(first, latest - count + 1)
    return [started_at + k * interval for k in range(lowest, latest + 1)]
