"""The judge against a REAL Prometheus: counts of both tracks read from the synthetic pods'
counters (range queries from the stage start), the evidence in the check, and a regression that
fails the check at once. The stage is compressed (1 s checks, so 1 s judge intervals).

The `bad` profile's errors (5 %) and P95 (~0.8 s) breach the plan's thresholds anyway; the
`sluggish` profile is what only the judge catches: latency well above stable's, under every
threshold."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from support.live import LiveStack, compressed_config, live_stack

from rollout.analysis.gates import evaluate
from rollout.model import Judge, StackConfig
from rollout.release.measuring import measure
from rollout.review.localstack import wait_for

PROFILES = {"genesis-healthy": "healthy", "genesis-bad": "bad", "genesis-gauge-only": "bad",
            "genesis-sluggish": "sluggish"}


def judged(config: StackConfig) -> StackConfig:
    gates = config.stage.gates.model_copy(update={
        "error_rate": config.stage.gates.error_rate.model_copy(update={"judge": Judge(tolerance=0.5)}),
        # tolerance 0: the canary's P95 may not exceed stable's. `sluggish` (P95 1.55x) sits
        # inside one bucket (0.1-0.2 s) with stable's, where 0.2 would need many minutes
        "p95_latency_seconds": config.stage.gates.p95_latency_seconds.model_copy(
            update={"judge": Judge(tolerance=0.0, quantile=0.95)}),
    })
    analysis = config.stage.analysis.model_copy(update={"warmup": timedelta(0)})  # the compressed stage has none
    return config.model_copy(update={"stage": config.stage.model_copy(update={"gates": gates, "analysis": analysis})})


@pytest.fixture(scope="module")
def live() -> Iterator[LiveStack]:
    config = judged(compressed_config(list(PROFILES)))
    with live_stack(config, PROFILES, without_errors_counter=["genesis-gauge-only"]) as stack:
        stack.wait_for_full_window()
        yield stack


def check(live: LiveStack, app: str, seconds: int = 8):
    """A check `seconds` after a stage start on the 1 s grid, with the judge reading back to it."""
    at = datetime.fromtimestamp(math.floor(time.time()) - 1, UTC)
    since = at - timedelta(seconds=seconds)
    return evaluate(live.config.stage, measure(live.prom, live.config.stage, live.service(app), at, since=since))


def test_a_healthy_canary_shows_its_evidence_and_passes(live: LiveStack) -> None:
    result = check(live, "genesis-healthy")
    assert result.verdict == "pass", result.reason
    error = next(g for g in result.gates if g.name == "error_rate")
    assert error.evidence is not None and not error.evidence.regression
    assert error.evidence.intervals == 8 and error.evidence.source.startswith("genesis_request_errors_total")
    latency = next(g for g in result.gates if g.name == "p95_latency_seconds")
    assert latency.evidence is not None and latency.evidence.p95_stable is not None
    assert latency.evidence.p95_stable < 0.2


def test_a_bad_canary_is_a_regression_that_fails_at_once(live: LiveStack) -> None:
    """One bet per 1 s interval: a few dozen intervals, not eight, to be sure."""
    seconds = 30
    wait_for(lambda: (live.prom.value(f'min(count_over_time(up{{job="genesis"}}[{seconds + 2}s]))') or 0) >= seconds + 2,
             90, f"{seconds + 2}s of scrapes", interval=0.5)
    result = check(live, "genesis-bad", seconds)
    assert result.verdict == "fail" and result.immediate
    regressions = {g.name for g in result.gates if g.judged_regression}
    assert regressions == {"error_rate", "p95_latency_seconds"}
    error = next(g for g in result.gates if g.name == "error_rate").evidence
    assert error.e_max >= error.threshold and error.ratio_low > 1.5  # clearly beyond the tolerance


def test_a_slower_canary_under_every_threshold_is_caught_only_by_the_judge(live: LiveStack) -> None:
    """The issue's blind spot: P95 well above stable's, every absolute gate met. The thresholds
    pass it; the judge's latency evidence fails it at once."""
    seconds = 45  # a smaller effect than `bad`: it takes more intervals to be sure
    wait_for(lambda: (live.prom.value(f'min(count_over_time(up{{job="genesis"}}[{seconds + 2}s]))') or 0) >= seconds + 2,
             120, f"{seconds + 2}s of scrapes", interval=0.5)
    result = check(live, "genesis-sluggish", seconds)
    latency = next(g for g in result.gates if g.name == "p95_latency_seconds")
    assert latency.value is not None and latency.value < latency.target  # the threshold passes it
    assert latency.judged_regression and result.verdict == "fail" and result.immediate, result.reason
    assert latency.evidence.p95_canary > 1.3 * latency.evidence.p95_stable
    assert not next(g for g in result.gates if g.name == "error_rate").judged_regression


def test_without_an_errors_counter_the_judge_uses_the_plans_gauge(live: LiveStack) -> None:
    """The app exports only genesis_error_rate: errors are estimated as the gauge times each
    pod's requests in the interval (documented as an approximation), and still declared."""
    seconds = 30
    wait_for(lambda: (live.prom.value(f'min(count_over_time(up{{job="genesis"}}[{seconds + 2}s]))') or 0) >= seconds + 2,
             90, f"{seconds + 2}s of scrapes", interval=0.5)
    result = check(live, "genesis-gauge-only", seconds)
    error = next(g for g in result.gates if g.name == "error_rate").evidence
    assert error is not None and error.source.startswith("genesis_error_rate x requests")
    assert error.regression


def test_a_one_off_check_without_a_stage_start_has_no_evidence(live: LiveStack) -> None:
    stage = live.config.stage
    result = evaluate(stage, measure(live.prom, stage, live.service("genesis-bad")))
    assert all(g.evidence is None for g in result.gates)


def test_each_counter_is_read_once_per_check_even_when_gates_share_it(live: LiveStack) -> None:
    """Pipelex failures and fallbacks are both counted per workflow: the workflows counter is
    read once. Four judged gates: errors, requests, failed workflows, workflows, fallbacks and
    the latency buckets, six range queries."""
    from rollout.release.judging import judge_evidence

    gates = live.config.stage.gates
    four = gates.model_copy(update={name: getattr(gates, name).model_copy(update={"judge": Judge(tolerance=0.5)})
                                    for name in gates.JUDGEABLE})
    stage = live.config.stage.model_copy(update={"gates": four})
    at = datetime.fromtimestamp(math.floor(time.time()) - 1, UTC)
    before = live.prom.queries
    evidence = judge_evidence(live.prom, stage, "genesis-healthy", live.service("genesis-healthy").namespace,
                              at - timedelta(seconds=8), at)
    assert set(evidence) == set(gates.JUDGEABLE)
    assert live.prom.queries - before == 6


def test_a_usual_tick_of_three_checks_reads_the_judges_counts_once(live: LiveStack) -> None:
    """The bot re-judges its last few checks every tick (ReleaseBot.recent_checks, inside
    Prometheus.grid): the gates' instant queries are made per check, the judge's range queries
    from the stage start only once for all of them."""
    stage, service = live.config.stage, live.service("genesis-healthy")
    newest = datetime.fromtimestamp(math.floor(time.time()) - 1, UTC)
    instants = [newest - timedelta(seconds=s) for s in (2, 1, 0)]
    since = newest - timedelta(seconds=8)

    def queries(grid: bool) -> int:
        before = live.prom.queries
        if grid:
            with live.prom.grid(instants):
                for at in instants:
                    measure(live.prom, stage, service, at, since=since)
        else:
            for at in instants:
                measure(live.prom, stage, service, at, since=since)
        return live.prom.queries - before

    judge_queries = 3  # errors, requests, latency buckets (two judged gates)
    assert queries(grid=False) - queries(grid=True) == 2 * judge_queries
