"""The judge against a REAL Prometheus: counts of both tracks read from the synthetic pods'
counters (range queries from the stage start), the evidence in the check, and a regression that
fails the check at once. The stage is compressed (1 s checks, so 1 s judge intervals).

The `bad` profile's errors (5 %) and P95 (~0.8 s) breach the plan's thresholds anyway; the
`sluggish` profile is what only the judge catches: latency well above stable's, under every
threshold."""

from __future__ import annotations

import dataclasses
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
            "genesis-gauge-stated": "bad", "genesis-sluggish": "sluggish", "genesis-testers": "healthy"}
GAUGE_ONLY = ["genesis-gauge-only", "genesis-gauge-stated"]
# testers' x-genesis-track: canary requests: a third of the canary's traffic, all of it `bad`
TESTERS = {"genesis-testers": (15.0, "bad")}


def judged(config: StackConfig) -> StackConfig:
    gates = config.stage.gates.model_copy(update={
        "error_rate": config.stage.gates.error_rate.model_copy(update={"judge": Judge(tolerance=0.5)}),
        # tolerance 0: the canary's P95 may not exceed stable's. `sluggish` (P95 1.55x) sits
        # inside one bucket (0.1-0.2 s) with stable's, where 0.2 would need many minutes
        "p95_latency_seconds": config.stage.gates.p95_latency_seconds.model_copy(
            update={"judge": Judge(tolerance=0.0, quantile=0.95)}),
    })
    analysis = config.stage.analysis.model_copy(update={"warmup": timedelta(0)})  # the compressed stage has none
    # one gauge-only app states its gauge's window (1 s, as its pods really have) = the check interval
    services = [s.model_copy(update={"error_gauge_window": timedelta(seconds=1)}) if s.name == "genesis-gauge-stated"
                else s for s in config.project.services]
    return config.model_copy(update={"stage": config.stage.model_copy(update={"gates": gates, "analysis": analysis}),
                                     "project": config.project.model_copy(update={"services": services})})


@pytest.fixture(scope="module")
def live() -> Iterator[LiveStack]:
    config = judged(compressed_config(list(PROFILES)))
    with live_stack(config, PROFILES, without_errors_counter=GAUGE_ONLY, header_testers=TESTERS,
                    error_windows={"genesis-gauge-stated": 1.0}) as stack:
        stack.wait_for_full_window()
        yield stack


def check(live: LiveStack, app: str, seconds: int = 8, stage=None, router: str | None = None):  # noqa: ANN001
    """A check `seconds` after a stage start on the 1 s grid, with the judge reading back to it."""
    stage = stage or live.config.stage
    at = datetime.fromtimestamp(math.floor(time.time()) - 1, UTC)
    since = at - timedelta(seconds=seconds)
    return evaluate(stage, measure(live.prom, stage, live.service(app), at, since=since, router=router))


def scraped_for(live: LiveStack, seconds: int, timeout: float = 90) -> None:
    """Until every target has been scraped for `seconds` (+2): one bet per 1 s interval needs a
    few dozen intervals to be sure."""
    wait_for(lambda: (live.prom.value(f'min(count_over_time(up{{job="genesis"}}[{seconds + 2}s]))') or 0) >= seconds + 2,
             timeout, f"{seconds + 2}s of scrapes", interval=0.5)


def gate(result, name: str):  # noqa: ANN001, ANN201
    return next(g for g in result.gates if g.name == name)


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
    """One bet per 1 s interval: a few dozen intervals, not eight, to be sure (at 30 both
    e-values were above 1e18 against 1/alpha = 200 in a run on this machine). It failed once on
    a heavily loaded machine without saying why, so every assertion prints each gate's status
    and message."""
    scraped_for(live, 30)
    result = check(live, "genesis-bad", 30)
    shown = "; ".join(f"{g.name} {g.status}: {g.message}" for g in result.gates)
    assert result.verdict == "fail" and result.immediate, shown
    regressions = {g.name for g in result.gates if g.judged_regression}
    assert regressions == {"error_rate", "p95_latency_seconds"}, shown
    error = next(g for g in result.gates if g.name == "error_rate").evidence
    assert error.e_max >= error.threshold and error.ratio_low > 1.5, shown  # clearly beyond the tolerance


def test_a_slower_canary_under_every_threshold_is_caught_only_by_the_judge(live: LiveStack) -> None:
    """The issue's blind spot: P95 well above stable's, every absolute gate met. The thresholds
    pass it; the judge's latency evidence fails it at once."""
    scraped_for(live, 45, timeout=120)  # a smaller effect than `bad`: it takes more intervals to be sure
    result = check(live, "genesis-sluggish", 45)
    latency = next(g for g in result.gates if g.name == "p95_latency_seconds")
    assert latency.value is not None and latency.value < latency.target  # the threshold passes it
    assert latency.judged_regression and result.verdict == "fail" and result.immediate, result.reason
    assert latency.evidence.p95_canary > 1.3 * latency.evidence.p95_stable
    assert not next(g for g in result.gates if g.name == "error_rate").judged_regression


def test_without_an_errors_counter_the_gauges_estimate_only_holds(live: LiveStack) -> None:
    """The app exports only genesis_error_rate (a 10 s window, 1 s checks): errors are estimated
    as the gauge times each track's requests in the interval, so an error counts in every check
    its window overlaps. The judge shows the evidence and says why it does not act on it."""
    scraped_for(live, 30)
    error = gate(check(live, "genesis-gauge-only", 30), "error_rate")
    assert error.evidence is not None and error.evidence.source.startswith("genesis_error_rate x requests")
    assert error.evidence.regression and not error.judged_regression
    assert "not acted on, holding: errors are estimated from the error gauge" in error.message
    assert "window (not stated) is not the check interval (1s)" in error.message


def test_a_gauge_whose_window_is_the_check_interval_is_acted_on(live: LiveStack) -> None:
    """services[].errorGaugeWindow states the app's gauge window; equal to the check interval
    (these pods' gauge covers 1 s), the estimate counts each error about once and may roll back."""
    scraped_for(live, 30)
    error = gate(check(live, "genesis-gauge-stated", 30), "error_rate")
    assert error.evidence.source.startswith("genesis_error_rate x requests")
    assert error.evidence.regression and error.judged_regression and error.status == "fail"


def test_testers_header_requests_are_not_the_canarys_exposure(live: LiveStack) -> None:
    """A third of the canary's requests are testers' (x-genesis-track: canary, route="header"),
    all of them failing 5 % and slow. The weighted canary is healthy: the judge, the gates and
    the sample ratio test count weighted requests only, and the check passes."""
    header_errors = live.prom.value('sum(genesis_request_errors_total{app="genesis-testers", route="header"})')
    assert header_errors and header_errors > 0  # the testers do fail
    result = check(live, "genesis-testers", router="gateway-api")
    assert result.verdict == "pass", result.reason
    assert not gate(result, "error_rate").evidence.regression and gate(result, "error_rate").evidence.canary_events == 0
    assert not gate(result, "p95_latency_seconds").evidence.regression
    share = gate(result, "sample_ratio")
    assert share.status == "pass" and share.value == pytest.approx(0.1, abs=0.02), share.message


def test_a_canary_share_other_than_the_weight_holds_and_never_fails(live: LiveStack) -> None:
    """The stage says 50 %, the pods get 10 %: a sample ratio mismatch holds the check and says
    the comparison is not apples to apples; it is not a failure of the canary. A sign test pays
    at most ~2x per block (1 s here), so it needs a few dozen intervals, not eight."""
    stage = live.config.stage
    stage = stage.model_copy(update={"stage": stage.stage.model_copy(update={"weight": 50})})
    scraped_for(live, 30)
    result = check(live, "genesis-healthy", 30, stage=stage, router="gateway-api")
    share = gate(result, "sample_ratio")
    assert share.status == "hold" and "sample ratio mismatch" in share.message, share.message
    assert result.verdict == "hold" and not result.immediate, result.reason
    assert check(live, "genesis-healthy", stage=stage, router="replica-ratio").gates[-1].name != "sample_ratio"


def _fields(item: tuple) -> list:
    """Every field of an evidence and the sample ratio: counts, intervals and flags exactly,
    floats to 12 significant digits. The e-process sums in another order over a longer count
    array (a grid), which moves the last bit of a float; the next interval's data moves far more
    (and `intervals` pins which interval was read)."""
    evidence, value = item
    values = [*(dataclasses.astuple(evidence) if evidence is not None else ()), value]
    return [f"{v:.12g}" if isinstance(v, float) else v for v in values]  # nan and inf too


def test_a_check_reads_the_same_evidence_inside_and_outside_a_grid(live: LiveStack) -> None:
    """The judge is read at the interval that ended by the check's instant: inside a grid whose
    counts run further (a replay, a tick's last checks, a report) a check must not see the next
    interval. Same instant, exactly the same evidence and sample ratio."""
    stage, service = live.config.stage, live.service("genesis-bad")
    newest = datetime.fromtimestamp(math.floor(time.time()) - 1, UTC)
    since = newest - timedelta(seconds=14)
    at = since + timedelta(seconds=8)
    grid = [at + timedelta(seconds=k) for k in range(7)]  # the grid runs 6 intervals past `at`

    def evidence(inside: bool):  # noqa: ANN202
        if inside:
            with live.prom.grid(grid):
                result = evaluate(stage, measure(live.prom, stage, service, at, since=since, router="gateway-api"))
        else:
            result = evaluate(stage, measure(live.prom, stage, service, at, since=since, router="gateway-api"))
        return {g.name: (g.evidence, g.value if g.name == "sample_ratio" else None) for g in result.gates
                if g.evidence is not None or g.name == "sample_ratio"}

    outside, inside = evidence(False), evidence(True)
    assert set(outside) == {"error_rate", "p95_latency_seconds", "sample_ratio"}
    assert set(inside) == set(outside)
    for name in outside:
        assert _fields(inside[name]) == _fields(outside[name]), name
    assert outside["error_rate"][0].intervals == 8


def test_a_one_off_check_without_a_stage_start_has_no_evidence(live: LiveStack) -> None:
    stage = live.config.stage
    result = evaluate(stage, measure(live.prom, stage, live.service("genesis-bad")))
    assert all(g.evidence is None for g in result.gates)


def test_each_counter_is_read_once_per_check_even_when_gates_share_it(live: LiveStack) -> None:
    """Pipelex failures and fallbacks are both counted per workflow: the workflows counter is
    read once, and so is the requests counter the sample ratio test shares with the error gate.
    Four judged gates: errors, requests, workflows, succeeded workflows, fallbacks, the latency
    buckets and which buckets each track has: seven range queries."""
    from rollout.release.measuring import read_counts

    gates = live.config.stage.gates
    four = gates.model_copy(update={name: getattr(gates, name).model_copy(update={"judge": Judge(tolerance=0.5)})
                                    for name in gates.JUDGEABLE})
    stage = live.config.stage.model_copy(update={"gates": four})
    at = datetime.fromtimestamp(math.floor(time.time()) - 1, UTC)
    before = live.prom.queries
    counts = read_counts(live.prom, stage, "genesis-healthy", live.service("genesis-healthy").namespace,
                         at - timedelta(seconds=8), at, expected_share=0.1)
    assert set(counts.gates) == set(gates.JUDGEABLE) and not counts.failed and counts.requests is not None
    assert live.prom.queries - before == 7


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

    judge_queries = 4  # errors, requests, latency buckets and their presence (two judged gates)
    assert queries(grid=False) - queries(grid=True) == 2 * judge_queries
