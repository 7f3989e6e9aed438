"""`rollout watch`: tick on the stage's own check grid, for as long as the process lives.

The in-cluster bot (components/release_bot.py) runs `rollout watch --forever --leader-elect`:
- timing: it wakes at the stage's next check instant (`next_due`: stage start + k x interval, the
  same grid `rollout.analysis.decision.check_times` judges), and at least every minute, so a check
  is judged as soon as it is due and a rollback lands within one check interval of the third failing check, whatever
  the scheduler. A missed instant (a slow tick, a restart) is not run late on its own: the next
  tick re-reads every recent instant of the grid, so it is caught up, and compare-and-apply
  makes sure a decision is applied once;
- `--forever`: a rollback or a completion does not end the process (the Deployment would only
  restart it), and an error (Prometheus down, the stack locked) is logged, counted in the
  metrics and retried at the next check instant instead of exiting;
- leadership: with an elector only the Lease holder ticks (rollout.release.lease);
- shutdown: SIGTERM (a rolling upgrade, an eviction) sets `stop`; a tick in flight, maybe in the
  middle of a `pulumi up`, is finished, never cut, then the lease is handed back. The pod's
  termination grace period covers a whole stage change (bot.terminationGrace).

The stack lock is watched too: a tick that finds the stack locked (an update running, or one
that died and left its lock) records how long it has seen it so (`rollout_stack_locked_seconds`),
which `GenesisStackLocked` pages on.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable, Protocol

from rollout.model import Release, Stage
from rollout.release.bot import TickOutcome, utcnow
from rollout.release.deployer import DeployerError, StackLockedError
from rollout.release.prometheus import PrometheusError

log = logging.getLogger("rollout.release.watch")
TICK_ERRORS = (DeployerError, PrometheusError, ValueError, KeyError)
SETTLE = timedelta(seconds=1)  # wake just after the instant, so it is in the past for the checks
# between check instants (5 min in the plan) it still ticks every minute: a pending stage change,
# a freed stack lock or untold notifications are picked up without waiting for the next check
MAX_SLEEP = timedelta(minutes=1)


def next_due(stage: Stage, since: datetime, now: datetime) -> datetime:
    """The stage's first check instant after `now` (plus SETTLE): its grid is anchored at the
    stage start, so a restarted bot wakes at the same instants."""
    interval = stage.analysis.check_interval
    k = max(0, math.floor((now - since) / interval)) + 1
    return since + k * interval + SETTLE


class Elector(Protocol):
    def start(self) -> None: ...

    def leading(self) -> bool: ...

    def wait_for_leadership(self, stop: threading.Event) -> bool: ...

    def release(self) -> None: ...


class LockProbe(Protocol):
    def update_in_progress(self) -> bool | None: ...


@dataclass
class LockWatch:
    """How long this process has seen the stack locked (a process keeps no other state)."""

    since: float | None = None

    def seen(self, locked: bool, now: float) -> float:
        if not locked:
            self.since = None
            return 0.0
        if self.since is None:
            self.since = now
        return now - self.since


def observe_tick(
    tick: Callable[[], TickOutcome],
    record: Callable[[TickOutcome, float, float], None],
    record_lock: Callable[[bool, float], None],
    *,
    lock: LockWatch | None = None,
    probe: LockProbe | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> TickOutcome:
    """One tick with its bookkeeping, for `rollout tick` and the watch loop alike: the outcome and
    how long it took (`record`), and what it saw of the stack lock (`record_lock`, with how long
    `lock` has seen it so). A tick's error is raised again once the lock state is recorded.

    The lock is locked when the tick was refused for it, or, after any other tick, when `probe`
    says an update holds it (a tick that only waited never meets the lock itself)."""
    lock = LockWatch() if lock is None else lock

    def seen(refused: bool) -> None:
        locked = refused
        if not locked and probe is not None:
            try:
                locked = bool(probe.update_in_progress())
            except DeployerError as err:
                log.warning("could not read the stack lock: %s", err)
        record_lock(locked, lock.seen(locked, monotonic()))

    started = monotonic()
    try:
        outcome = tick()
    except TICK_ERRORS as err:
        seen(isinstance(err, StackLockedError))
        raise
    record(outcome, monotonic() - started, time.time())
    seen(False)
    return outcome


@dataclass
class Watcher:
    release: Release
    tick: Callable[[], TickOutcome]
    record: Callable[[TickOutcome, float, float], None]  # BotMetrics.record
    record_lock: Callable[[bool, float], None]  # BotMetrics.record_lock
    report: Callable[[TickOutcome], None]
    report_error: Callable[[Exception], None]
    probe: LockProbe | None = None
    elector: Elector | None = None
    forever: bool = False
    max_ticks: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    clock: Callable[[], datetime] = utcnow
    monotonic: Callable[[], float] = time.monotonic
    lock: LockWatch = field(default_factory=LockWatch)
    ticks: int = 0

    def run(self) -> int:
        """Tick until told to stop. Without `forever` a rollback or completion ends it (0, or 4
        when not everyone was told); with `max_ticks`, the last tick's code (0, or 3 on an error)."""
        if self.elector is not None:
            self.elector.start()
        try:
            return self._loop()
        finally:
            if self.elector is not None:
                self.elector.release()

    def _loop(self) -> int:
        stage, since = self.release.rollback_target, self.clock()
        while not self.stop.is_set():
            if self.elector is not None and not self.elector.wait_for_leadership(self.stop):
                break
            outcome, error = self._one_tick()
            self.ticks += 1
            if outcome is not None:
                stage, since = self._grid_of(outcome)
            # a tick that could not act (locked stack, Prometheus down, someone's broken file) never
            # ends the loop: the next check tries again (issue 20); only --max-ticks ends it then
            if not self.forever and outcome is not None:
                if outcome.notified is False:
                    return 4
                if outcome.decision.action in ("rollback", "complete"):
                    return 0
            if self.max_ticks and self.ticks >= self.max_ticks:
                return 0 if error is None else 3
            now = self.clock()
            wake = min(next_due(stage, since, now), now + MAX_SLEEP)
            self.stop.wait(max(0.0, (wake - now).total_seconds()))
        return 0

    def _one_tick(self) -> tuple[TickOutcome | None, Exception | None]:
        try:
            outcome = observe_tick(self.tick, self.record, self.record_lock, lock=self.lock, probe=self.probe,
                                   monotonic=self.monotonic)
        except TICK_ERRORS as err:
            log.warning("tick failed: %s", err)
            self.report_error(err)
            return None, err
        self.report(outcome)
        return outcome, None

    def _grid_of(self, outcome: TickOutcome) -> tuple[Stage, datetime]:
        """The stage the stack is at after this tick, and when it started."""
        if outcome.applied is not None:
            return self.release.stage(outcome.applied.stage), outcome.applied.finished or self.clock()
        return self.release.stage(outcome.state.stage), outcome.state.since
