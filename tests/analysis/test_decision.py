"""rollout.analysis.decision: rollback/promote/complete/wait over time, restart semantics, no flapping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from support.stages import FLAGS_ON

from rollout.analysis.decision import check_times, decide
from rollout.model import Stage

START = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
HOLD = timedelta(hours=48)
STABLE_FLAGS = {
    **{flag: False for flag in FLAGS_ON},
    "fallback-mode": True,
}


def make_stage(name: str = "canary", weight: int = 10, **analysis: object) -> Stage:
    return Stage.model_validate(
        {
            "stage": {"name": name, "weight": weight},
            "analysis": {"checkInterval": "5m", "hold": "48h", **analysis},
            "flags": STABLE_FLAGS if weight == 0 else FLAGS_ON,
        }
    )


CANARY = make_stage()
FULL = make_stage("full", 100)


def test_three_consecutive_fails_roll_back_even_during_hold() -> None:
    decision = decide(CANARY, START, START + timedelta(minutes=20), ["pass", "fail", "fail", "fail"])
    assert decision.action == "rollback"
    assert "3 checks failed" in decision.reason


@pytest.mark.parametrize(
    "verdicts",
    [["fail"], ["fail", "fail"], ["fail", "fail", "pass"], ["fail", "fail", "hold", "fail"],
     ["fail", "fail", "error", "fail"]],
)
def test_fewer_than_n_consecutive_fails_wait(verdicts: list[str]) -> None:
    decision = decide(CANARY, START, START + timedelta(minutes=30), verdicts)
    assert decision.action == "wait"


def test_two_fails_then_a_pass_resets_the_streak_after_the_hold() -> None:
    now = START + HOLD + timedelta(minutes=1)
    decision = decide(CANARY, START, now, ["fail", "fail", "pass"])
    assert decision.action == "wait"
    assert "1 of 3 passing checks" in decision.reason
    assert decide(CANARY, START, now, ["fail", "fail", "pass", "pass", "pass"]).action == "promote"


def test_consecutive_failures_comes_from_the_stage() -> None:
    strict = make_stage(consecutiveFailures=1)
    assert decide(strict, START, START + timedelta(minutes=5), ["fail"]).action == "rollback"


@pytest.mark.parametrize(
    ("elapsed", "expected"),
    [(HOLD - timedelta(seconds=1), "wait"), (HOLD, "promote"), (HOLD + timedelta(hours=1), "promote")],
)
def test_hold_duration_boundary(elapsed: timedelta, expected: str) -> None:
    decision = decide(CANARY, START, START + elapsed, ["pass"] * 3)
    assert decision.action == expected
    if expected == "wait":
        assert decision.hold_remaining == timedelta(seconds=1)
        assert "hold: 1s left" in decision.reason


@pytest.mark.parametrize(
    "verdicts",
    [["pass", "pass", "hold"], ["hold", "hold", "hold"], ["pass", "hold", "pass", "pass"],
     ["pass", "pass"], [], ["pass", "pass", "error"]],
)
def test_hold_or_missing_checks_never_promote(verdicts: list[str]) -> None:
    decision = decide(CANARY, START, START + HOLD * 2, verdicts)
    assert decision.action == "wait"
    assert "promotion needs 3 passing checks" in decision.reason


def test_last_stage_completes_instead_of_promoting() -> None:
    assert decide(FULL, START, START + HOLD, ["pass"] * 3).action == "complete"
    assert decide(FULL, START, START + HOLD - timedelta(seconds=1), ["pass"] * 3).action == "wait"
    assert decide(FULL, START, START + HOLD, ["fail"] * 3).action == "rollback"
    # explicit override for a release whose last stage is not at 100
    assert decide(CANARY, START, START + HOLD, ["pass"] * 3, last_stage=True).action == "complete"


def test_rollback_target_has_nothing_to_check() -> None:
    stable = make_stage("stable", 0)
    decision = decide(stable, START, START + HOLD * 3, ["fail"] * 5)
    assert decision.action == "wait"
    assert "rollback target" in decision.reason


def test_decision_serialises() -> None:
    data = decide(CANARY, START, START + timedelta(hours=1), ["pass"]).to_dict()
    assert data == {
        "action": "wait",
        "reason": "hold: 1d23h left; 1 of 3 passing checks in a row",
        "stage": "canary",
        "hold_remaining": "1d23h",
    }


# --------------------------------------------------------------------------- restart semantics


def test_check_times_sit_on_a_grid_anchored_at_stage_start() -> None:
    now = START + timedelta(minutes=23, seconds=10)
    times = check_times(CANARY, START, now)
    assert times == [START + timedelta(minutes=m) for m in (10, 15, 20)]
    # a restarted bot a little later asks for the same instants: no state needed
    assert check_times(CANARY, START, now + timedelta(minutes=1)) == times
    assert check_times(CANARY, START, START + timedelta(minutes=25))[-1] == START + timedelta(minutes=25)


def test_check_times_never_reach_before_a_whole_window_in_the_stage() -> None:
    assert check_times(CANARY, START, START + timedelta(minutes=4)) == []
    assert check_times(CANARY, START, START + timedelta(minutes=5)) == [START + timedelta(minutes=5)]
    wide = make_stage(window="12m")
    assert check_times(wide, START, START + timedelta(minutes=16)) == [START + timedelta(minutes=15)]
    assert check_times(CANARY, START, START - timedelta(minutes=1)) == []


def test_check_times_count_covers_both_rules() -> None:
    stage = make_stage(consecutiveFailures=2, passingChecksToPromote=5)
    assert len(check_times(stage, START, START + HOLD)) == 5
    assert len(check_times(stage, START, START + HOLD, count=2)) == 2


def test_restarted_bot_reaches_the_same_decision_from_re_evaluated_checks() -> None:
    """The verdicts are a function of the check instant; a bot restarted between checks
    re-evaluates the same instants and must decide the same."""
    bad_from = START + timedelta(minutes=15)

    def verdict_at(when: datetime) -> str:
        return "fail" if when >= bad_from else "pass"

    def run(now: datetime) -> str:
        times = check_times(CANARY, START, now)
        return decide(CANARY, START, now, [verdict_at(t) for t in times]).action

    assert run(START + timedelta(minutes=24)) == "wait"  # 15, 20 failed: 2 of 3
    assert run(START + timedelta(minutes=25)) == "rollback"  # 15, 20, 25
    assert run(START + timedelta(minutes=27)) == "rollback"  # restarted later: same instants


def test_an_immediate_fail_rolls_back_at_once_and_an_ordinary_one_does_not():
    from dataclasses import dataclass

    @dataclass
    class Judged:
        verdict: str
        immediate: bool = False
        reason: str = "canary unavailable: never fully available in the last 10m"

    stage = make_stage(weight=10)
    now = START + timedelta(hours=1)
    quick = decide(stage, START, now, [Judged("pass"), Judged("fail", immediate=True)])
    assert quick.action == "rollback" and "failed at once: canary unavailable" in quick.reason
    assert decide(stage, START, now, [Judged("pass"), Judged("fail")]).action == "wait"
    # only the newest check counts: an old immediate fail followed by a pass does not roll back
    assert decide(stage, START, now, [Judged("fail", immediate=True), Judged("pass")]).action == "wait"
    # bare verdict strings still work (replay, tests) and are never immediate
    assert decide(stage, START, now, ["pass", "fail"]).action == "wait"


# --------------------------------------------------------------------------- cumulative counting

FLAGGER = make_stage(checkInterval="1m", consecutiveFailures=5, cumulativeFailures=5)


def test_cumulative_failures_roll_back_on_scattered_fails_like_flaggers_threshold() -> None:
    """Five fails spread over a stage, never two in a row: the plan's rule waits, Flagger's rolls back."""
    scattered = ["fail", "pass", "pass"] * 4 + ["fail"]
    now = START + timedelta(hours=1)
    assert decide(CANARY, START, now, scattered).action == "wait"
    decision = decide(FLAGGER, START, now, scattered)
    assert decision.action == "rollback"
    assert decision.reason == "5 checks failed since the stage started (limit 5)"
    waiting = decide(FLAGGER, START, now, scattered[:-1])
    assert waiting.action == "wait" and "4 of 5 failures since the stage started" in waiting.reason


def test_holds_do_not_count_as_failures_cumulatively() -> None:
    assert decide(FLAGGER, START, START + timedelta(hours=1), ["hold", "fail"] * 4 + ["hold"]).action == "wait"


def test_cumulative_counting_needs_every_check_of_the_stage() -> None:
    now = START + timedelta(hours=3)
    assert len(check_times(CANARY, START, now)) == 3
    instants = check_times(FLAGGER, START, now)
    assert len(instants) == 180 and instants[0] == START + timedelta(minutes=1) and instants[-1] == now


def test_a_cumulative_limit_is_a_positive_count() -> None:
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        make_stage(cumulativeFailures=0)
