"""The sequential judge in numbers, on the noise real pods make: false detections over many
healthy 24 h stages (the same version on both tracks) with Clopper-Pearson intervals, detection
time after a fault, the trade-off between the candidate tests that were tried, and the
sample-ratio guardrail on the routing noise real traffic makes.

Simulated per-minute counts (tests/support/judge_sim.py: the synthetic app's traffic, errors
and latency buckets, one canary pod and nine stable pods) through the product's e-processes
and decision with benchmarks/policies/recommended.yaml's judge settings (alpha per gate,
tolerances, latency quantile, warm-up, at least 5 canary events).

    uv run python benchmarks/bench_judge.py [--stages 1000] [--effect-stages 200] [--only nulls|detection|tradeoff|srm]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the simulator lives in tests/support

from dataclasses import replace

from support.judge_sim import (
    ALPHA,
    BOUNDARIES,
    COARSE_BUCKETS,
    INTERVAL,
    QUANTILE,
    TOLERANCE,
    WARMUP,
    Routing,
    Scenario,
    beta_binomial_log_e_path,
    clopper_pearson,
    crossings,
    simulate,
    simulate_routing,
)

from rollout.analysis.judge import BETS, Bets, first_crossing
from rollout.analysis.srm import SRM_ALPHA, TOLERANCE as SRM_TOLERANCE, SampleRatioTest

PER_MIN = 60 // INTERVAL  # intervals per minute at the recommended check interval
DAY = 1440 * PER_MIN
NULLS = (
    Scenario("independent requests, 20 vs 180 req/s, 0.05 % errors"),
    Scenario("per-pod bursts: each pod fails half its requests for 30 s once an hour", burst_per_hour=1.0),
    Scenario("per-pod bursts, 4 an hour, 80 % errors", burst_per_hour=4.0, burst_errors=0.8),
    Scenario("cold canary pod: 1.5x slower, 3x errors, first 10 min", cold_minutes=10),
    Scenario("per-pod latency jitter, sigma 0.1 per minute", pod_jitter=0.1),
    Scenario("per-pod latency jitter, sigma 0.2 per minute", pod_jitter=0.2),
    Scenario("per-pod overdispersion of errors (gamma, variance 1)", overdispersion=1.0),
    Scenario("one much noisier stable pod (5x errors, 2x bursts, 1.5x slower)", noisy_stable_pod=True, burst_per_hour=1.0),
    Scenario("shared noise: diurnal, bursty traffic, incidents on both tracks", noisy=True),
)
# (name, check interval in seconds, crossings() options; warm-up in minutes)
UP_TO_08 = Bets.even(0.1, 0.25, 0.5, 0.8)
CANDIDATES: list[tuple[str, int, dict]] = [
    ("per-event likelihood ratios (the old judge), 1m, no warm-up", 60, {"method": "event", "warmup": 0}),
    ("interval bets up to 0.8, early-change prior, 30s", 30, {"bets": UP_TO_08, "start_prior": "early"}),
    ("interval bets up to 0.95, early-change prior, 30s", 30, {"start_prior": "early"}),
    ("interval bets up to 0.95, unbounded log-time prior, 30s (the previous choice)", 30,
     {"start_prior": "unbounded"}),
    ("interval bets up to 0.8, week-horizon prior, 30s", 30, {"bets": UP_TO_08}),
    ("interval bets up to 0.95, week-horizon prior, 30s (chosen)", 30, {}),
    ("interval bets up to 0.5, week-horizon prior, 30s", 30, {"bets": Bets.even(0.1, 0.25, 0.5)}),
    ("interval bets up to 0.95, week-horizon prior, 1m", 60, {}),
    ("interval bets up to 0.95, week-horizon prior, 15s", 15, {}),
    ("interval bets up to 0.95, week-horizon prior, 10s", 10, {}),
    ("interval bets up to 0.95, week-horizon prior, 30s, no warm-up", 30, {"warmup": 0}),
]
WARMUP_MINUTES = WARMUP * INTERVAL / 60


def false_detections(stages: int) -> list[str]:
    lines = [f"| null, same version on both tracks (24 h stages, a look every {INTERVAL} s) | errors | latency | "
             f"any gate | 95 % interval (any) |", "|---|---|---|---|---|"]
    for seed, scenario in enumerate(NULLS):
        found = crossings(simulate(scenario, stages, DAY, np.random.default_rng(100 + seed)))
        any_gate = int(np.any(np.stack(list(found.values())) >= 0, axis=0).sum())
        low, high = clopper_pearson(any_gate, stages)
        lines.append(f"| {scenario.name} | {int((found['errors'] >= 0).sum())}/{stages} | "
                     f"{int((found['latency'] >= 0).sum())}/{stages} | {any_gate}/{stages} | {low:.4f}-{high:.4f} |")
    return lines


def _delay(scenario: Scenario, gate: str, stages: int, seed: int, onset_minutes: float, interval: int = INTERVAL,
           **kw: object) -> np.ndarray:
    """Minutes from onset to the declaration (inf: not within 2 h), at this check interval."""
    per = 60 // interval
    onset = round(onset_minutes * per)
    scenario = replace(scenario, interval_seconds=interval,
                       fault_start=onset if scenario.fault_start else 0)
    kw = {"warmup": round(WARMUP_MINUTES * per), **kw}
    found = crossings(simulate(scenario, stages, onset + 120 * per, np.random.default_rng(seed)), **kw)[gate]  # type: ignore[arg-type]
    return np.where(found >= onset, (found - onset + 1) / per, np.inf)


# (name, gate, onset in minutes, scenario: fault_start 1 marks a fault from the onset, 0 from the start)
FAULTS = (
    ("3 % vs 0.05 % errors from minute 70, 20 req/s canary", "errors", 70,
     Scenario("e20", q_canary=0.03, fault_start=1)),
    ("3 % vs 0.05 % errors from minute 70, 200 req/s canary", "errors", 70,
     Scenario("e200", canary_rps=200.0, stable_rps=1800.0, q_canary=0.03, fault_start=1)),
    ("3 % vs 0.05 % errors from 6 h, 20 req/s canary", "errors", 360,
     Scenario("e6h", q_canary=0.03, fault_start=1)),
    ("canary 1.5x slower from the stage start", "latency", WARMUP_MINUTES,
     Scenario("l15", mean_canary=0.045, floor=0.02)),
    ("canary 1.5x slower, the app's old buckets (2x apart around the P95)", "latency", WARMUP_MINUTES,
     Scenario("l15-coarse", mean_canary=0.045, floor=0.02, buckets=COARSE_BUCKETS)),
    ("canary 2x slower (P95 0.11 -> 0.22 s) from the stage start", "latency", WARMUP_MINUTES,
     Scenario("l2", mean_canary=0.06, floor=0.02)),
    ("canary P95 twice stable's, 90 -> 180 ms, under every threshold", "latency", WARMUP_MINUTES,
     Scenario("p95x2", floor=0.015, mean_stable=0.025, mean_canary=0.05)),
)


def detection(stages: int) -> list[str]:
    lines = ["| fault (recommended policy) | median minutes from onset to a declared regression | 90 % | "
             "not within 2 h |", "|---|---|---|---|"]
    for seed, (name, gate, onset, scenario) in enumerate(FAULTS):
        d = _delay(scenario, gate, stages, 200 + seed, onset)
        with np.errstate(invalid="ignore"):  # percentiles over "not within 2 h" (inf)
            p90 = np.percentile(d, 90)
        lines.append(f"| {name} | {_m(np.median(d))} | {_m(p90)} | {int(np.isinf(d).sum())}/{stages} |")
    return lines


def tradeoff(stages: int) -> list[str]:
    bursts, cold = NULLS[2], NULLS[3]
    lines = ["| candidate | false detections, 4 bursts/h (24 h) | false detections, cold canary pod (24 h) | "
             "3 % errors at 20 req/s (median min) | at 200 req/s | latency 1.5x (median min) |",
             "|---|---|---|---|---|---|"]
    for name, interval, options in CANDIDATES:
        per = 60 // interval
        kw = {"warmup": round(WARMUP_MINUTES * per), **options}
        false = []
        for seed, null in ((7, bursts), (8, cold)):
            found = crossings(simulate(replace(null, interval_seconds=interval), stages, 1440 * per,
                                       np.random.default_rng(seed)), **kw)
            false.append(int(np.any(np.stack(list(found.values())) >= 0, axis=0).sum()))
        e20 = _delay(FAULTS[0][3], "errors", stages, 9, 70, interval, **options)
        e200 = _delay(FAULTS[1][3], "errors", stages, 10, 70, interval, **options)
        lat = _delay(FAULTS[3][3], "latency", stages, 11, WARMUP_MINUTES, interval, **options)
        lines.append(f"| {name} | {false[0]}/{stages} | {false[1]}/{stages} | {_m(np.median(e20))} | "
                     f"{_m(np.median(e200))} | {_m(np.median(lat))} |")
    return lines


SRM_NULLS = (
    Routing("per-request routing, 200 req/s, weight 10 %"),
    Routing("per-request routing, 2 req/s (blocks span several intervals)", rps=2.0),
    Routing("per-pod rate jitter, sigma 0.3 per scrape (the `noisy` replay)", pod_jitter=0.3),
    Routing("per-pod rate jitter, sigma 0.6, diurnal traffic", pod_jitter=0.6, diurnal=True),
    Routing("sticky user sessions, 20 requests each", unit_requests=20.0),
    Routing("weight 50 %, 2 + 2 pods, sessions of 20, jitter 0.3", weight=0.5, unit_requests=20.0, pod_jitter=0.3,
            canary_pods=2, stable_pods=2),
)
SRM_FAULTS = (
    ("the canary gets half its share (5 % at a 10 % weight)", Routing("half", share=0.05)),
    ("the canary gets 15 % at a 10 % weight", Routing("15", share=0.15)),
    ("a 50 % stage whose canary gets 10 % (the router ignores the weight)", Routing("50-10", weight=0.5, share=0.1)),
    ("testers' 10 req/s counted as weighted canary requests (14 %)", Routing("testers", testers_rps=10.0)),
    ("20 % from 6 h on, per-pod jitter 0.3", Routing("late", share=0.2, pod_jitter=0.3, onset=360 * PER_MIN)),
)


def _srm_first(canary: np.ndarray, stable: np.ndarray, weight: float) -> np.ndarray:
    """The first interval of each stage whose sample-ratio e-value reaches 1/alpha (-1: never)."""
    found = (first_crossing(SampleRatioTest(c, s, weight, warmup=WARMUP).path, SRM_ALPHA)
             for c, s in zip(canary, stable, strict=True))
    return np.array([-1 if first is None else first for first in found])


def sample_ratio(stages: int, effect_stages: int) -> list[str]:
    lines = [f"| routing with the configured weight (24 h stages) | false mismatches: sign test, band "
             f"+-{SRM_TOLERANCE:g} x the smaller share (chosen) | 95 % interval | per-request Beta-binomial e-test "
             "(before) |", "|---|---|---|---|"]
    for seed, routing in enumerate(SRM_NULLS):
        canary, stable = simulate_routing(routing, stages, DAY, np.random.default_rng(300 + seed))
        found = int((_srm_first(canary, stable, routing.weight) >= 0).sum())
        low, high = clopper_pearson(found, stages)
        old = beta_binomial_log_e_path(canary[:, WARMUP:], stable[:, WARMUP:], routing.weight)
        before = sum(first_crossing(path, SRM_ALPHA) is not None for path in old)
        lines.append(f"| {routing.name} | {found}/{stages} | {low:.4f}-{high:.4f} | {before}/{stages} |")
    lines += ["", "| mismatch | median minutes from onset (after the warm-up) to a held check | 90 % | not within 2 h |",
              "|---|---|---|---|"]
    for seed, (name, routing) in enumerate(SRM_FAULTS):
        start = max(routing.onset, WARMUP)
        first = _srm_first(*simulate_routing(routing, effect_stages, start + 120 * PER_MIN,
                                             np.random.default_rng(400 + seed)), routing.weight)
        d = np.where(first >= start, (first - start + 1) / PER_MIN, np.inf)
        with np.errstate(invalid="ignore"):
            p90 = np.percentile(d, 90)
        lines.append(f"| {name} | {_m(np.median(d))} | {_m(p90)} | {int(np.isinf(d).sum())}/{effect_stages} |")
    return lines


def _m(minutes: float) -> str:
    return "-" if not np.isfinite(minutes) else f"{minutes:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", type=int, default=1000, help="healthy 24 h stages per null")
    parser.add_argument("--effect-stages", type=int, default=200, help="stages per fault and per trade-off cell")
    parser.add_argument("--only", choices=("nulls", "detection", "tradeoff", "srm"), action="append",
                        help="print only these tables (repeatable; default: all)")
    args = parser.parse_args()
    only = set(args.only or ("nulls", "detection", "tradeoff", "srm"))
    clock = time.perf_counter()
    print(f"recommended.yaml: check interval {INTERVAL} s, alpha per gate {ALPHA:g} (stage 0.01 over 4 judged "
          f"gates), tolerances {TOLERANCE}, latency quantile {QUANTILE:g}, warm-up {WARMUP_MINUTES:g} min, "
          f"bets {BETS.fractions}, {len(BOUNDARIES)} latency buckets {BOUNDARIES[0]:g}-{BOUNDARIES[-1]:g} s\n")
    for name, table in (("nulls", lambda: false_detections(args.stages)),
                        ("detection", lambda: detection(args.effect_stages)),
                        ("tradeoff", lambda: tradeoff(args.effect_stages)),
                        ("srm", lambda: sample_ratio(args.stages, args.effect_stages))):
        if name in only:
            print("\n".join(table()) + "\n", flush=True)
    print(f"\n({time.perf_counter() - clock:.0f} s)")


if __name__ == "__main__":
    main()
