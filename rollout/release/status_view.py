"""What `rollout status` shows, as one plain dict: the stage ladder, desired vs measured canary
weight, the last checks with their gates and the judge's evidence, the next check, the hold left,
pause and approval. Pure (state, checks and a measured share in, a view out), so `status`,
`status --watch` and `status --json` show the same data and it is tested without servers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from rollout.analysis.decision import Decision
from rollout.analysis.gates import CheckResult
from rollout.analysis.policy import promotion_block
from rollout.model import Release, format_duration
from rollout.release.controls import read_controls
from rollout.release.deployer import DeployedState

def ladder(release: Release, current: str) -> list[dict[str, Any]]:
    """Every stage in order: the rollback target, then done / current / next / later. At the
    rollback target the first promotion is next."""
    index = release.index(current)
    rows = []
    for i, stage in enumerate(release.stages):
        if i == 0 and i != index:
            state = "rollback target"
        elif i < index:
            state = "done"
        elif i == index:
            state = "current"
        elif i == index + 1:
            state = "next"
        else:
            state = "later"
        rows.append({
            "stage": stage.name,
            "weight": stage.weight,
            "state": state,
            "approval": stage.analysis.approval == "required",
        })
    return rows


def next_check(release: Release, state: DeployedState, now: datetime) -> datetime | None:
    """The next instant of the stage's check grid after `now` (none at the rollback target):
    the grid of `decision.check_times`, whose first check waits for a whole rate window."""
    stage = release.stage(state.stage)
    if stage.weight == 0:
        return None
    interval = stage.analysis.check_interval
    first = max(1, math.ceil(stage.analysis.rate_window / interval))
    return state.since + max(first, math.floor((now - state.since) / interval) + 1) * interval


CHECK_FIELDS = ("at", "verdict", "reason", "canary_requests")
GATE_FIELDS = ("name", "status", "value", "baseline", "direction", "target", "critical", "message", "evidence")


def _check(result: CheckResult) -> dict[str, Any]:
    """The fields the view shows of a check, from its own `to_dict()` (which writes a NaN or an
    infinity as a string: `status --json` stays valid JSON)."""
    full = result.to_dict()
    return {**{k: full[k] for k in CHECK_FIELDS}, "gates": [{k: g[k] for k in GATE_FIELDS} for g in full["gates"]]}


def status_view(
    release: Release,
    state: DeployedState,
    checks: Sequence[CheckResult],
    decision: Decision,
    now: datetime,
    measured_weight: float | None = None,
    shown_checks: int = 5,
) -> dict[str, Any]:
    """The whole view. `measured_weight` is the canary's share of requests in percent as
    Prometheus measures it (None: not measured, e.g. no Prometheus given)."""
    stage = release.stage(state.stage)
    target = release.next_stage(stage.name)
    controls = read_controls(state.tags, target.name if target else None, state.head_version)
    block = promotion_block(release.project.release_policy, target, now, controls) if target else None
    hold_left = max(state.since + stage.analysis.hold - now, timedelta(0)) if stage.weight else timedelta(0)
    upcoming = next_check(release, state, now)
    approval = None
    if target is not None and target.analysis.approval == "required":
        approval = {"stage": target.name, "approved": controls.approved}
    return {
        "stage": stage.name,
        "weight": stage.weight,
        "measured_weight": measured_weight,
        "since": state.since.isoformat(),
        "time_in_stage": format_duration(now - state.since),
        "ladder": ladder(release, stage.name),
        "decision": decision.to_dict(),
        "checks": [_check(c) for c in list(checks)[-shown_checks:]],
        "check_interval": format_duration(stage.analysis.check_interval),
        "next_check": None if upcoming is None else upcoming.isoformat(),
        "hold": format_duration(stage.analysis.hold),
        "hold_left": format_duration(hold_left),
        "paused": controls.paused,
        "approval": approval,
        "promotion": None if target is None else (block or "allowed"),
        "operators": {  # what `status --json` showed before the live view; kept for its readers
            "paused": controls.paused,
            "approval": None if approval is None else (
                f"{approval['stage']}: approved {approval['approved']}" if approval["approved"]
                else f"{approval['stage']}: needed, not given"),
            "promotion": block or "allowed",
        },
        "now": now.isoformat(),
    }
