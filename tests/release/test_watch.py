"""`rollout watch`'s loop (rollout.release.watch): when it wakes, what it does after a rollback,
an error or a locked stack, and how it stops. The ticks are scripted here (the loop is I/O-free
apart from them); the whole command against real servers is tests/release/test_bot_entrypoint.py."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from support import REPO_ROOT

from rollout.analysis.decision import Decision, check_times
from rollout.config import load_release
from rollout.release.bot import TickOutcome
from rollout.release.deployer import DeployedState, StackLockedError
from rollout.release.watch import MAX_SLEEP, SETTLE, Watcher, next_due

RELEASE = load_release(REPO_ROOT)
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("stage_name", ["canary", "majority"])
@pytest.mark.parametrize("offset_s", [0, 1, 59, 299, 300, 301, 7201])
def test_it_wakes_at_the_stages_next_check_instant(stage_name, offset_s):
    stage = RELEASE.stage(stage_name)
    now = T0 + timedelta(seconds=offset_s)
    due = next_due(stage, T0, now)
    interval = stage.analysis.check_interval
    assert now < due <= now + interval + SETTLE
    # the instant it wakes for is the newest one the checks then judge
    later = check_times(stage, T0, due, count=1)
    assert (T0 + ((due - SETTLE - T0) // interval) * interval) == due - SETTLE
    assert not later or later[-1] == due - SETTLE


def outcome(action: str, stage: str = "canary") -> TickOutcome:
    state = DeployedState(stage=stage, weight=RELEASE.stage(stage).weight, since=T0)
    return TickOutcome(state=state, decision=Decision(action, "scripted", stage, timedelta(0)), checks=[])  # type: ignore[arg-type]


class Script:
    """Ticks that return or raise what they are given, and a clock that the sleeps move."""

    def __init__(self, results, stop_after: int | None = None):
        self.results = list(results)
        self.now = T0 + timedelta(seconds=30)
        self.waits: list[float] = []
        self.locks: list[tuple[bool, float]] = []
        self.recorded = 0
        self.stop = threading.Event()
        self.stop_after = stop_after
        self.ticks = 0
        self.mono = 0.0

    def tick(self):
        self.ticks += 1
        result = self.results.pop(0)
        if self.stop_after is not None and self.ticks >= self.stop_after:
            self.stop.set()  # SIGTERM arrives while this tick is in flight
        if isinstance(result, Exception):
            raise result
        return result

    def watcher(self, **kw) -> Watcher:
        script = self

        class Stop(threading.Event):
            def wait(self, timeout=None):  # the loop's sleep: move the clocks, do not sleep
                script.waits.append(timeout or 0.0)
                script.now += timedelta(seconds=timeout or 0.0)
                script.mono += timeout or 0.0
                if not script.results:
                    script.stop.set()
                return script.stop.is_set()

            def is_set(self):
                return script.stop.is_set()

        return Watcher(
            release=RELEASE, tick=self.tick, record=lambda *a: setattr(self, "recorded", self.recorded + 1),
            record_lock=lambda locked, seconds: self.locks.append((locked, seconds)),
            report=lambda o: None, report_error=lambda e: None, stop=Stop(), clock=lambda: self.now,
            monotonic=lambda: self.mono, **kw,
        )


def test_forever_keeps_ticking_after_a_rollback_and_an_error():
    script = Script([outcome("rollback"), ValueError("prometheus down"), outcome("wait", "stable"), outcome("wait", "stable")])
    assert script.watcher(forever=True).run() == 0
    assert script.ticks == 4 and script.recorded == 3
    # each sleep ends at the next instant of the stage's grid (canary 5m) or a minute later, whichever comes first
    assert all(0 < w <= MAX_SLEEP.total_seconds() for w in script.waits)


def test_it_ticks_at_least_every_minute_and_on_every_check_instant():
    """The plan's 5-minute checks: the loop wakes every minute in between, and exactly at each
    check instant (plus SETTLE), never later."""
    script = Script([outcome("wait")] * 12)
    script.now = T0 + timedelta(seconds=30)
    wakes = []
    watcher = script.watcher(forever=True)
    original = watcher.tick

    def tick():
        wakes.append(script.now)
        return original()

    watcher.tick = tick
    watcher.run()
    gaps = [(b - a).total_seconds() for a, b in zip(wakes, wakes[1:])]
    assert gaps and max(gaps) <= 60
    instants = [T0 + timedelta(minutes=5 * k) + SETTLE for k in (1, 2)]
    assert all(at in wakes for at in instants), wakes


def test_without_forever_a_rollback_ends_it_and_an_error_does_not():
    assert Script([outcome("rollback")]).watcher().run() == 0
    errors = Script([ValueError("prometheus down"), ValueError("prometheus down"), outcome("rollback")])
    assert errors.watcher().run() == 0 and errors.ticks == 3  # the errors did not end the loop
    assert Script([ValueError("prometheus down")] * 3).watcher(max_ticks=2).run() == 3
    script = Script([outcome("wait"), outcome("wait"), outcome("wait")])
    assert script.watcher(max_ticks=2).run() == 0 and script.ticks == 2


def test_a_locked_stack_is_counted_until_it_is_free():
    locked = StackLockedError("stack 'prod' is locked by another update in progress")
    script = Script([locked, locked, locked, outcome("wait")])
    script.watcher(forever=True).run()
    assert [flag for flag, _ in script.locks] == [True, True, True, False]
    seconds = [s for _, s in script.locks]
    assert seconds[0] == 0.0 and seconds[1] > 0 and seconds[2] > seconds[1] and seconds[3] == 0.0


def test_the_probe_reports_a_lock_held_while_the_tick_just_waits():
    class Probe:
        def update_in_progress(self):
            return True

    script = Script([outcome("wait"), outcome("wait")])
    script.watcher(forever=True, probe=Probe()).run()
    assert [flag for flag, _ in script.locks] == [True, True]


def test_sigterm_during_a_tick_lets_it_finish_then_stops_and_releases_the_lease():
    events: list[str] = []

    class Elector:
        def start(self):
            events.append("start")

        def leading(self):
            return True

        def wait_for_leadership(self, stop):
            events.append("lead")
            return True

        def release(self):
            events.append("release")

    script = Script([outcome("wait"), outcome("wait"), outcome("wait")], stop_after=2)
    assert script.watcher(forever=True, elector=Elector()).run() == 0
    assert script.ticks == 2 and script.recorded == 2  # the tick in flight was finished and recorded
    assert events == ["start", "lead", "lead", "release"]
