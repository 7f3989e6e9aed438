"""When the bot may promote: a pause, an approval the target stage requires, a freeze window,
the promotion hours (rollout.model.ReleasePolicy). Pure: what is known in, a reason out.

Only promotion is held back. Rollbacks are always allowed: a paused, frozen or out-of-hours
release still rolls back a failing canary.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rollout.model import ReleasePolicy, Stage


@dataclass(frozen=True)
class Controls:
    """The operators' say, as read back from the stack."""

    paused: str | None = None  # who paused it, when and why; None: not paused
    approved: str | None = None  # who approved promotion into the target stage; None: nobody


def promotion_block(policy: ReleasePolicy, target: Stage, now: datetime, controls: Controls) -> str | None:
    """Why a due promotion into `target` may not happen now, or None."""
    if controls.paused:
        return f"paused {controls.paused}: promotion waits for `rollout resume`; rollbacks continue"
    if target.analysis.approval == "required" and not controls.approved:
        return f"stage '{target.name}' needs an approval first: `rollout approve {target.name}`"
    for freeze in policy.freezes:
        if freeze.start <= now < freeze.end:
            return f"release freeze until {freeze.end:%Y-%m-%d %H:%M} UTC ({freeze.reason}): promotion waits"
    hours = policy.promotion_hours
    if not hours.allows(now):
        days = ", ".join(hours.days)
        return f"outside the promotion hours ({days} {hours.start}-{hours.end} UTC): promotion waits"
    return None
