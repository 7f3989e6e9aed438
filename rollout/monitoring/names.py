"""Names shared by the monitoring config and the release bot: the bot's own alerts and labels,
and the tags of its Grafana annotations.

The alert rules, the Alertmanager routing tree and the dashboard match on these, and the bot
(rollout.release.notify) posts them, so both sides import them from here and cannot drift.
"""

from __future__ import annotations

ROLLBACK_ALERT = "GenesisRolloutRolledBack"
SOURCE = "release-bot"  # the `source` label on every alert the bot posts itself
PRODUCT_TAG = "genesis-rollout"
ANNOTATION_TAGS = (PRODUCT_TAG, "deployment")  # every stage change; + the action and the target stage


def annotation_tags(action: str, target_stage: str) -> list[str]:
    return [*ANNOTATION_TAGS, action, target_stage]
