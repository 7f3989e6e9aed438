"""Names shared by the monitoring config and the release bot: the bot's own alerts and labels,
and the tags of its Grafana annotations.

The alert rules, the Alertmanager routing tree and the dashboard match on these, and the bot
(rollout.release.notify) posts them, so both sides import them from here and cannot drift.
"""

from __future__ import annotations

DASHBOARD_UID = "genesis-release"  # the release dashboard, linked from notifications
ROLLBACK_ALERT = "GenesisRolloutRolledBack"
SOURCE = "release-bot"  # the `source` label on every alert the bot posts itself
PRODUCT_TAG = "genesis-rollout"
ANNOTATION_TAGS = (PRODUCT_TAG, "deployment")  # every stage change; + the action and the target stage


def annotation_tags(action: str, target_stage: str) -> list[str]:
    return [*ANNOTATION_TAGS, action, target_stage]

# Every alert of ours carries ROLLOUT_LABEL=ROLLOUT_VALUE: the routing tree matches only these,
# so the cluster's other alerts never reach our receivers (rollout.monitoring.alertmanager_config).
ROLLOUT_LABEL = "rollout"
ROLLOUT_VALUE = "genesis-rollout"
# Notifications that are news rather than conditions carry EVENT_LABEL (routed to the stage-change
# receivers: Slack #deployments and the team's e-mail).
EVENT_LABEL = "event"
STAGE_CHANGE = "stage-change"
STAGE_CHANGE_ALERT = "GenesisStageChanged"
ROLLBACK_FAILED_ALERT = "GenesisRollbackFailed"
BOT_SILENT_ALERT = "GenesisReleaseBotSilent"
JUDGE_FAILING_ALERT = "GenesisReleaseJudgeFailing"
STACK_LOCKED_ALERT = "GenesisStackLocked"
# the bot's own metrics the rules and the dashboard read (rollout.release.metrics sets them)
LAST_CHECK_METRIC = "rollout_last_successful_check_timestamp_seconds"
DECISION_METRIC = "rollout_decision"
GATE_VERDICT_METRIC = "rollout_gate_verdict"
# the judge's evidence per judged gate (e-value) and the e-value at which it declares a regression
JUDGE_EVIDENCE_METRIC = "rollout_judge_evidence"
JUDGE_THRESHOLD_METRIC = "rollout_judge_threshold"
JUDGE_RATIO_METRIC = "rollout_judge_ratio"
# judged gates the judge could not judge in the newest check (held; GenesisReleaseJudgeFailing pages)
JUDGE_ERRORS_METRIC = "rollout_judge_errors"
# the stage, weight and newest check the bot publishes (rollout.release.metrics)
STAGE_INFO_METRIC = "rollout_stage_info"
WEIGHT_METRIC = "rollout_canary_weight_percent"
CHECK_VERDICT_METRIC = "rollout_check_verdict"
CHECK_DURATION_METRIC = "rollout_check_duration_seconds"
VERDICT_VALUES = {"pass": 0, "hold": 1, "fail": 2}  # the value of every verdict gauge
# the operators' say and what comes next: paused (1/0), the next stage's approval, and the
# earliest time the bot promotes if the checks keep passing
PAUSED_METRIC = "rollout_paused"
APPROVAL_METRIC = "rollout_approval_state"
APPROVAL_VALUES = {"not needed": 0, "needed": 1, "given": 2}
NEXT_PROMOTION_METRIC = "rollout_next_promotion_timestamp_seconds"
# 1 while the newest tick found the stack locked (an update running, or a dead one's lock), and
# for how long this bot process has seen it locked
STACK_LOCKED_METRIC = "rollout_stack_locked"
STACK_LOCKED_SECONDS_METRIC = "rollout_stack_locked_seconds"
