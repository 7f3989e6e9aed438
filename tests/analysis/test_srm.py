"""The sample ratio mismatch test (rollout.analysis.srm): a sign test by betting on blocks of
requests against a band around the weight. Pinned by hand, valid under per-request routing AND
under the overdispersed counts real routing makes (where the per-request test it replaced held
healthy releases forever), and quick to see a real mismatch on either side."""

from __future__ import annotations

import math

import numpy as np
import pytest
from support.judge_sim import Routing, beta_binomial_log_e_path, simulate_routing

from rollout.analysis.judge import BETS, start_log_weights
from rollout.analysis.srm import SampleRatioTest, block_votes, min_block_requests, share_band

LEVEL = math.log(1000.0)  # SRM_ALPHA 0.001


def test_the_band_is_a_fifth_of_the_smaller_tracks_share_and_blocks_are_big_enough_for_it() -> None:
    assert share_band(0.1) == pytest.approx((0.08, 0.12))
    assert share_band(0.5) == pytest.approx((0.4, 0.6))
    assert share_band(0.8) == pytest.approx((0.76, 0.84))  # the stable track's 20 % +- a fifth
    assert min_block_requests(0.1) == 50 and min_block_requests(0.5) == 10 and min_block_requests(0.8) == 25


def test_the_e_value_is_the_mean_of_two_sign_tests_by_hand() -> None:
    """Blocks of >= 50 requests at p0 = 0.1 (band 8-12 %): intervals of 30 requests close a block
    every second interval. Shares 9/60 (above), 3/60 (below), 6/60 (inside), so the votes are
    above (+1, -1, -1) and below (-1, +1, -1) at intervals 1, 3, 5. Each side is the judge's
    mixture over stakes and change-point starts, written out here as sums of products."""
    canary, stable = [5, 4, 1, 2, 3, 3], [25, 26, 29, 28, 27, 27]
    above, below = block_votes(canary, stable, 0.1)
    assert list(above) == [0, 1, 0, -1, 0, -1] and list(below) == [0, -1, 0, 1, 0, -1]
    log_pi, log_rest = start_log_weights(6, "changepoint")

    def side(z: list[float]) -> float:
        total = 0.0
        for mu, w in zip(BETS.fractions, BETS.weights, strict=True):
            started = sum(math.exp(log_pi[s]) * math.prod(1 + mu * z[i] for i in range(s, 6)) for s in range(6))
            total += w * started
        return total + math.exp(log_rest[5])

    by_hand = 0.5 * (side(list(above)) + side(list(below)))
    assert SampleRatioTest(canary, stable, 0.1).path[-1] == pytest.approx(math.log(by_hand), abs=1e-12)


def test_a_block_closes_on_its_size_and_skips_unusable_intervals_and_the_warm_up() -> None:
    canary = [2, np.nan, 3, -1, 2, 4, 1]
    stable = [18, 20, 17, 20, 18, 36, 9]
    above, _ = block_votes(canary, stable, 0.1, warmup=1)  # interval 0 is the warm-up
    # 20 (interval 2) + 20 (interval 4) + 40 (interval 5) = 80 >= 50 closes at 5; 10 left open
    assert list(above != 0) == [False, False, False, False, False, True, False]


def test_under_per_request_routing_it_rarely_crosses() -> None:
    rng = np.random.default_rng(11)
    stages, intervals, n = 400, 300, 500
    canary = rng.binomial(n, 0.1, size=(stages, intervals)).astype(float)
    crossed = sum(SampleRatioTest(c, n - c, 0.1).running_max[-1] >= LEVEL for c in canary)
    assert crossed / stages <= 0.01  # alpha 0.001; a generous bound for 400 stages


@pytest.mark.parametrize("routing", [
    Routing("one canary pod whose rate jitters 30 % per scrape", rps=40.0, pod_jitter=0.3),
    Routing("sessions of 20 requests and jittering pods at 50 %", rps=40.0, weight=0.5, unit_requests=20.0,
            pod_jitter=0.3, canary_pods=2, stable_pods=2),
], ids=lambda r: r.name)
def test_overdispersed_routing_with_the_configured_weight_passes(routing: Routing) -> None:
    """The benchmark's simulator (tests/support/judge_sim.py): the weight is right, but requests
    are not routed one by one, so their counts are overdispersed. The per-request test this
    replaced crosses 1/alpha on most of these 6-hour stages; the sign test on none."""
    canary, stable = simulate_routing(routing, 100, 720, np.random.default_rng(9))
    assert sum(SampleRatioTest(c, s, routing.weight).running_max[-1] >= LEVEL for c, s in zip(canary, stable)) == 0
    per_request = beta_binomial_log_e_path(canary, stable, routing.weight).max(axis=-1) >= LEVEL
    assert per_request.mean() > 0.5


@pytest.mark.parametrize("share", [0.05, 0.15, 0.2])
def test_a_share_outside_the_band_is_flagged_on_either_side(share: float) -> None:
    """Half the weight is as much a mismatch as twice it (the side that interval betting on the
    share itself could not see: a share below the weight pays ~1.09x at most)."""
    rng = np.random.default_rng(7)
    canary = rng.binomial(1200, share, size=40).astype(float)
    test = SampleRatioTest(canary, 1200 - canary, 0.1)
    first = int(np.argmax(test.running_max >= LEVEL))
    assert test.running_max[-1] >= LEVEL and first <= 20, first
    at = test.at(39)
    assert at.mismatch and at.share == pytest.approx(share, abs=0.01)
    assert (at.above if share > 0.1 else at.below) == at.blocks == 40


def test_a_share_inside_the_band_is_not_a_mismatch_however_many_requests() -> None:
    """11 % at a 10 % weight is within the tolerance: a point null would flag it eventually."""
    rng = np.random.default_rng(3)
    canary = rng.binomial(5000, 0.11, size=2000).astype(float)
    assert not SampleRatioTest(canary, 5000 - canary, 0.1).at(1999).mismatch


def test_reading_at_an_interval_sees_only_the_intervals_before_it() -> None:
    rng = np.random.default_rng(2)
    canary = np.concatenate([rng.binomial(600, 0.1, 20), rng.binomial(600, 0.3, 40)]).astype(float)
    whole = SampleRatioTest(canary, 600 - canary, 0.1)
    for index in (5, 19, 25, 59):
        assert whole.at(index) == SampleRatioTest(canary[: index + 1], 600 - canary[: index + 1], 0.1).at(index)
    assert not whole.at(19).mismatch and whole.at(59).mismatch  # a mismatch that starts late


def test_bad_input_names_the_rule() -> None:
    with pytest.raises(ValueError, match="expected_share must be between 0 and 1 exclusive"):
        SampleRatioTest([1], [1], 1.0)
    with pytest.raises(ValueError, match="of one shape"):
        SampleRatioTest([1, 2], [1], 0.5)


def test_the_share_shown_counts_the_requests_the_votes_count() -> None:
    """A negative count (a counter reset not differenced) is skipped; so are warm-up intervals.
    The share and the request totals beside the e-value skip the same ones."""
    test = SampleRatioTest([10, -50, 12, 30], [90, 88, 88, 70], 0.1, warmup=1).at(3)
    assert test.canary_requests == 42 and test.stable_requests == 158
    assert test.share == pytest.approx(42 / 200)
    assert test.blocks == 2 and test.above == 1
    assert "allowed 8.00%-12.00%" in test.summary() and "1 above and 0 below" in test.summary()
