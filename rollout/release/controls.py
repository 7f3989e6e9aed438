"""What the operators and the bot note on the stack, as stack tags: the bot keeps no state of
its own, so a pause, an approval, and the last stage change whose notifications went out live
with the stack (Pulumi stack tags; the self-managed backends support them since CLI 3.211).

Tag values are short text: `by <who> at <UTC time>: <why>` (Pulumi caps a tag at 256 chars).
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from datetime import datetime, timezone

from rollout.analysis.policy import Controls

PAUSED_TAG = "rollout:paused"
APPROVED_PREFIX = "rollout:approved:"  # + stage: "update <N> by <who> at <time>"
NOTIFIED_TAG = "rollout:notified"  # the stack update whose post-apply work (alerts, report) is done
COMPLETED_TAG = "rollout:completed"  # the stack update whose completion was announced
MAX_TAG = 256


def who() -> str:
    """The operator: ROLLOUT_USER, else the CI actor, else the login name."""
    return os.environ.get("ROLLOUT_USER") or os.environ.get("GITHUB_ACTOR") or getpass.getuser()


def stamp(by: str, at: datetime, why: str = "") -> str:
    text = f"by {by} at {at.astimezone(timezone.utc):%Y-%m-%dT%H:%M:%SZ}" + (f": {' '.join(why.split())}" if why else "")
    return text[:MAX_TAG]


def approval_tag(stage: str) -> str:
    return APPROVED_PREFIX + stage


def approval_value(head_version: int | None, by: str, at: datetime) -> str:
    return f"update {head_version} {stamp(by, at)}"


def read_controls(tags: Mapping[str, str], target_stage: str | None, head_version: int | None) -> Controls:
    """A pause, and an approval for `target_stage` that was given at the stack's current head
    update: a later update (a promotion, a rollback) makes an old approval stale."""
    approved = None
    if target_stage is not None:
        value = tags.get(approval_tag(target_stage), "")
        if value.startswith(f"update {head_version} "):
            approved = value.removeprefix(f"update {head_version} ")
    return Controls(paused=tags.get(PAUSED_TAG) or None, approved=approved)
