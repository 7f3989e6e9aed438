"""The judge's guardrails through the bot's tick, against a REAL Prometheus: a canary pod from a
build with another bucket layout whose 0.2 s bucket once goes down (a partial counter decrease:
NaN rows), and a judge that raises. Neither crashes a tick nor stops the threshold gates.

Real: Prometheus with the stage's rendered rules, the synthetic pods, a second canary pod that is
a real exporter (prometheus_client) with its own buckets, the Automation API. Stand-in: the
Pulumi CLI (rollout/local/pulumi_standin, seeded by tests/support/fake_pulumi), as in test_dead_canary.py; the judge's exception is
forced with monkeypatch (a stand-in for a bug in the statistics). Compressed timing: 1 s checks,
a 10 s window."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from support.fake_pulumi import REPO, FakePulumi, update
from support.live import LiveStack, compressed_config, live_stack

from rollout.config import load_release
from rollout.local.synthetic import target_labels
from rollout.model import Judge, Release, StackConfig
from rollout.release.bot import ReleaseBot
from rollout.release.deployer import PulumiDeployer
from rollout.release.measuring import read_counts
from rollout.review.localstack import ScrapeTarget, wait_for

ODD, FAILING = "genesis-odd", "genesis-failing"
PROFILES = {ODD: "healthy", FAILING: "bad"}
DROP = (12.0, 14.0)  # seconds after the odd pod starts: its 0.2 s bucket reads 500 lower


class OddPod(Collector):
    """A second canary pod of ODD from another build: buckets 0.2, 0.5, 0.75 (the synthetic
    pods have 0.0266 ... 2.1661, 1.2x apart, so only 0.2 and 0.5 are on every series), 1 request per second, as
    fast as the healthy pods, counters already high when it is first scraped (a baseline)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.started_at = datetime.fromtimestamp(math.floor(time.time()), UTC)

    def collect(self) -> Iterator[HistogramMetricFamily | CounterMetricFamily]:
        elapsed = time.monotonic() - self.started
        n = 1000 + int(elapsed)
        fast = int(0.9975 * n) - (500 if DROP[0] <= elapsed < DROP[1] else 0)  # healthy: 1 - e^-6 under 0.2 s
        latency = HistogramMetricFamily("genesis_request_duration_seconds", "Request duration", labels=["route"])
        latency.add_metric(["weighted"], [("0.2", fast), ("0.5", n), ("0.75", n), ("+Inf", n)], 0.05 * n)
        errors = CounterMetricFamily("genesis_request_errors", "Requests that failed", labels=["route"])
        errors.add_metric(["weighted"], 0)
        yield latency
        yield errors


def judged(config: StackConfig) -> StackConfig:
    gates = config.stage.gates.model_copy(update={
        "error_rate": config.stage.gates.error_rate.model_copy(update={"judge": Judge(tolerance=0.5)}),
        "p95_latency_seconds": config.stage.gates.p95_latency_seconds.model_copy(update={"judge": Judge(tolerance=1.0)}),
    })
    return config.model_copy(update={"stage": config.stage.model_copy(update={"gates": gates})})


ODD_POD = OddPod()


@pytest.fixture(scope="module")
def live() -> Iterator[LiveStack]:
    config = judged(compressed_config(list(PROFILES)))
    registry = CollectorRegistry()
    ODD_POD.__init__()  # its clock starts with the stack
    registry.register(ODD_POD)
    server, thread = start_http_server(0, "127.0.0.1", registry=registry)
    try:
        service = next(s for s in config.project.services if s.name == ODD)
        odd = ScrapeTarget(f"127.0.0.1:{server.server_address[1]}", target_labels(service, "canary", pod=1))
        with live_stack(config, PROFILES, extra_targets=[odd]) as stack:
            stack.wait_for_full_window()
            yield stack
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def release_of(config: StackConfig, app: str) -> Release:
    """The repo's stages with the compressed analysis and the judged gates, for one service."""
    release = load_release(REPO)
    project = config.project.model_copy(update={"services": [s for s in config.project.services if s.name == app]})
    return Release(project=project, stages=[
        s.model_copy(update={"analysis": config.stage.analysis, "gates": config.stage.gates}) for s in release.stages])


def bot_for(live: LiveStack, app: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ReleaseBot, FakePulumi]:
    fake = FakePulumi(tmp_path, monkeypatch)
    now = datetime.fromtimestamp(math.floor(time.time()) - 1, UTC)
    since = now - timedelta(seconds=15)
    fake.seed(outputs={"stage": "canary", "weight": 10},
              history=[update(1, "rollout: promote stable -> canary: day 1", since - timedelta(seconds=5), since)])
    deployer = PulumiDeployer(REPO, "prod", pulumi_root=fake.root, sleep=fake.sleep)
    return ReleaseBot(release_of(live.config, app), deployer, live.prom, clock=lambda: now), fake


def test_a_bucket_layout_change_and_a_nan_row_neither_crash_a_tick_nor_stop_the_judge(
    live: LiveStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = live.service(ODD)
    wait_for(lambda: time.monotonic() - ODD_POD.started > DROP[1] + 3, 30, "the odd pod's drop to be scraped")
    now = datetime.fromtimestamp(math.floor(time.time()) - 1, UTC)
    counts = read_counts(live.prom, live.config.stage, ODD, service.namespace, ODD_POD.started_at, now)
    latency = counts.gates["p95_latency_seconds"]
    assert latency.upto(counts.interval).boundaries == (0.2, 0.5)  # only the buckets every series has
    rows = latency.upto(counts.interval).canary
    stable = latency.upto(counts.interval).stable
    skipped = int((np.isnan(rows).any(axis=1) & ~np.isnan(stable).any(axis=1)).sum())
    assert 1 <= skipped <= 3, rows  # the drop's rows are skipped (not raised); stable's are fine

    bot, fake = bot_for(live, ODD, tmp_path, monkeypatch)
    outcome = bot.tick()
    assert outcome.decision.action == "wait" and not fake.runs_of("up"), outcome.decision.reason
    newest = outcome.checks[-1]
    p95 = next(g for g in newest.gates if g.name == "p95_latency_seconds")
    assert p95.judge_error is None and p95.evidence is not None and not p95.evidence.regression
    assert p95.evidence.boundary in (0.2, 0.5)
    assert newest.verdict in ("pass", "hold") and not outcome.warnings, newest.reason


def test_a_judge_that_raises_holds_its_gates_pages_and_the_thresholds_still_roll_back(
    live: LiveStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The failing canary breaches the error-rate and P95 thresholds; the judge raises on every
    gate. Each judged gate carries the error, the tick warns (and the bot's metric pages), and
    the thresholds fail three checks in a row: rolled back, not at once (no judged regression)."""

    def broken(*args: object, **kwargs: object) -> None:
        raise ArithmeticError("forced: a bug in the statistics")

    monkeypatch.setattr("rollout.analysis.judging.GateJudge", broken)
    bot, fake = bot_for(live, FAILING, tmp_path, monkeypatch)

    def decided():  # noqa: ANN202 - the 10 s window of scrapes may still be arriving
        outcome = bot.tick()
        return outcome if outcome.decision.action == "rollback" else None

    outcome = wait_for(decided, 30, "the bot to roll back on the thresholds", interval=1.0)
    assert outcome.decision.reason == "the last 3 checks failed (limit 3)"
    newest = outcome.checks[-1]
    assert newest.verdict == "fail" and not newest.immediate
    errors = {g.name: g.judge_error for g in newest.gates if g.judge_error}
    assert errors == {name: "ArithmeticError: forced: a bug in the statistics"
                      for name in ("error_rate", "p95_latency_seconds")}
    assert any("the judge could not judge error_rate" in w for w in outcome.warnings)
    assert fake.state()["outputs"]["stage"] == "stable"
