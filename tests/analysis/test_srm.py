"""The sample ratio mismatch e-test (rollout.analysis.srm): closed form, valid under the null
(Ville: rarely crosses 1/alpha in simulation), and quick to see a real mismatch."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rollout.analysis.srm import CONCENTRATION, betaln, sample_ratio, srm_log_e_path


def test_the_e_value_is_the_beta_binomial_bayes_factor_by_hand() -> None:
    """3 canary and 7 stable requests at p0 = 0.1, K = 100: B(13, 97) / B(10, 90) / (0.1^3 0.9^7)."""
    a, b = CONCENTRATION * 0.1, CONCENTRATION * 0.9
    by_hand = (math.lgamma(a + 3) + math.lgamma(b + 7) - math.lgamma(a + b + 10)
               - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)) - 3 * math.log(0.1) - 7 * math.log(0.9))
    path = srm_log_e_path([1, 2], [4, 3], 0.1)
    assert path[-1] == pytest.approx(by_hand, abs=1e-12)
    assert betaln(2.0, 3.0) == pytest.approx(math.log(1 / 12))


def test_skipped_intervals_count_on_neither_track() -> None:
    path = srm_log_e_path([10, np.nan, 12], [90, 88, np.nan], 0.1)
    assert path[1] == path[0] == path[2]


def test_under_the_null_it_rarely_crosses_and_a_real_mismatch_crosses_fast() -> None:
    rng = np.random.default_rng(11)
    stages, intervals, n = 400, 200, 500
    canary = rng.binomial(n, 0.1, size=(stages, intervals)).astype(float)
    crossed = sum(sample_ratio(c, n - c, 0.1, intervals - 1).mismatch for c in canary)
    assert crossed / stages <= 0.01  # alpha 0.001; a generous bound for 400 stages
    skewed = rng.binomial(n, 0.11, size=intervals).astype(float)  # a tenth more than the weight gives
    test = sample_ratio(skewed, n - skewed, 0.1, intervals - 1)
    assert test.mismatch and test.share == pytest.approx(0.11, abs=0.005)


def test_bad_input_names_the_rule() -> None:
    with pytest.raises(ValueError, match="expected_share must be between 0 and 1 exclusive"):
        srm_log_e_path([1], [1], 1.0)
    with pytest.raises(ValueError, match="differ in shape"):
        srm_log_e_path([1, 2], [1], 0.5)


def test_the_share_shown_counts_the_requests_the_e_value_counts() -> None:
    """A negative count (a counter reset not differenced) is skipped by the e-value; the share and
    the request totals beside it skip it too, so the summary never mixes two sets of intervals."""
    test = sample_ratio([10, -50, 12], [90, 88, 88], 0.1, 2)
    assert test.canary_requests == 22 and test.stable_requests == 178
    assert test.share == pytest.approx(22 / 200)
    assert test.e_value == pytest.approx(math.exp(srm_log_e_path([10, 12], [90, 88], 0.1)[-1]))
