"""When promotion may happen (rollout.analysis.policy): pure, table-driven."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from support.stages import FLAGS_ON

from rollout.analysis.policy import Controls, promotion_block
from rollout.model import ReleasePolicy, Stage

MONDAY_10 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
SATURDAY_10 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
OFFICE = ReleasePolicy.model_validate({
    "promotionHours": {"days": ["mon", "tue", "wed", "thu"], "start": "09:00", "end": "17:00"},
    "freezes": [{"start": "2026-12-20T00:00:00Z", "end": "2027-01-05T00:00:00Z", "reason": "holidays"}],
})


def stage(approval: str = "none") -> Stage:
    return Stage.model_validate({"stage": {"name": "full", "weight": 100}, "analysis": {"approval": approval}, "flags": FLAGS_ON})


def test_the_default_policy_never_holds_a_promotion_back():
    assert promotion_block(ReleasePolicy(), stage(), SATURDAY_10, Controls()) is None


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (MONDAY_10, None),
        (SATURDAY_10, "outside the promotion hours (mon, tue, wed, thu 09:00-17:00 UTC)"),
        (datetime(2026, 11, 30, 17, 0, tzinfo=UTC), "outside the promotion hours"),  # end is exclusive
        (datetime(2026, 11, 30, 8, 59, tzinfo=UTC), "outside the promotion hours"),
        (datetime(2026, 12, 21, 10, 0, tzinfo=UTC), "release freeze until 2027-01-05 00:00 UTC (holidays)"),
    ],
)
def test_promotion_hours_and_freezes(at, expected):
    block = promotion_block(OFFICE, stage(), at, Controls())
    assert block == expected if expected is None else expected in block


def test_a_pause_holds_promotion_and_names_who_paused():
    block = promotion_block(ReleasePolicy(), stage(), MONDAY_10, Controls(paused="by alice at 2026-11-30T09:00:00Z: INC-7"))
    assert block.startswith("paused by alice at 2026-11-30T09:00:00Z: INC-7") and "rollbacks continue" in block


def test_a_stage_that_requires_approval_waits_for_one():
    assert "needs an approval first: `rollout approve full`" in promotion_block(ReleasePolicy(), stage("required"), MONDAY_10, Controls())
    assert promotion_block(ReleasePolicy(), stage("required"), MONDAY_10, Controls(approved="by bob")) is None


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"promotionHours": {"start": "17:00", "end": "09:00"}}, "start 17:00 must be before end 09:00"),
        ({"promotionHours": {"start": "9am"}}, "String should match pattern"),
        ({"promotionHours": {"days": ["monday"]}}, "Input should be 'mon'"),
        ({"freezes": [{"start": "2026-12-20T00:00:00", "end": "2027-01-05T00:00:00Z", "reason": "x"}]}, "needs a time zone"),
        ({"freezes": [{"start": "2027-01-05T00:00:00Z", "end": "2026-12-20T00:00:00Z", "reason": "x"}]}, "must be before end"),
    ],
)
def test_a_malformed_policy_is_refused(policy, message):
    with pytest.raises(ValueError, match=message):
        ReleasePolicy.model_validate(policy)


def test_the_example_policy_in_pulumi_yaml_is_valid_when_uncommented(tmp_path):
    """The commented releasePolicy example in Pulumi.yaml is what operators copy: uncommented,
    it must load and restrict promotion to the hours and freeze it names."""
    from support.stack import copy_project

    from rollout.config import load_stack_config

    project = copy_project(tmp_path)
    text = (project / "Pulumi.yaml").read_text()
    start = text.index("  # genesis-rollout:releasePolicy:")
    block = text[start:]
    (project / "Pulumi.yaml").write_text(text[:start] + block.replace("  # ", "  ", ))
    policy = load_stack_config(project, "canary").project.release_policy
    assert policy.promotion_hours.days == ["mon", "tue", "wed", "thu"]
    assert promotion_block(policy, stage(), MONDAY_10, Controls()) is None
    assert "outside the promotion hours" in promotion_block(policy, stage(), SATURDAY_10, Controls())
    assert "release freeze until 2027-01-04 00:00 UTC (year-end change freeze)" in promotion_block(
        policy, stage(), datetime(2026, 12, 22, 10, 0, tzinfo=UTC), Controls()
    )


def test_the_shipped_project_restricts_no_promotion():
    from support import REPO_ROOT

    from rollout.config import load_stack_config

    assert load_stack_config(REPO_ROOT, "canary").project.release_policy == ReleasePolicy()


FREEZE = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)  # a Monday inside the promotion hours
FREEZE_ONLY = ReleasePolicy.model_validate({
    "freezes": [{"start": "2026-11-30T10:00:00Z", "end": "2026-11-30T12:00:00Z", "reason": "CAB"}],
})


@pytest.mark.parametrize(
    ("policy", "at", "blocked"),
    [
        (FREEZE_ONLY, FREEZE, True),  # the freeze's first instant is frozen (start <= now)
        (FREEZE_ONLY, FREEZE - timedelta(microseconds=1), False),  # 1 µs before
        (FREEZE_ONLY, FREEZE.replace(hour=12), False),  # its end is not (now < end)
        (FREEZE_ONLY, FREEZE.replace(hour=11, minute=59, second=59, microsecond=999999), True),
        (OFFICE, datetime(2026, 11, 30, 9, 0, tzinfo=UTC), False),  # the hours' first instant is open
    ],
    ids=["freeze-start", "before-freeze", "freeze-end", "last-frozen-instant", "hours-start"],
)
def test_the_boundaries_of_freezes_and_hours(policy, at, blocked):
    assert (promotion_block(policy, stage(), at, Controls()) is not None) == blocked
