"""Per-interval counts of many simulated stages at once, for the judge's Monte Carlo tests and
benchmarks/bench_judge.py. Traffic follows rollout/local/synthetic.py: requests per 1-minute
interval are Poisson (canary 10 % of 200 req/s by default), each fails with a probability,
takes floor + Exponential(mean) seconds binned into the app's buckets, and half of them run a
Pipelex workflow that fails or falls back with its own probability. `noisy` adds what both
tracks share in production: diurnal and bursty traffic, a wandering error level, incidents
(5 % errors, 3x latency, a few minutes, several a day) and latency swings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import beta

from rollout.analysis.evidence import Evidence, GateJudge, RateCounts
from rollout.analysis.judge import first_crossing, rate_ratio_log_e_paths
from rollout.config import REPO_ROOT, load_policy_file
from rollout.local.synthetic import LATENCY_BUCKETS
from rollout.model import Judge

BOUNDARIES = np.array(LATENCY_BUCKETS)
# the simulated counts and the gates that judge them
GATES = {"errors": "error_rate", "latency": "p95_latency_seconds", "failures": "pipelex_success_rate",
         "fallbacks": "fallback_rate"}


def _recommended_judge() -> tuple[float, dict[str, float], int]:
    """(alpha per gate, tolerances, min canary events) of benchmarks/policies/recommended.yaml,
    read from the file so the simulations test the policy the benchmarks publish."""
    stage = load_policy_file(REPO_ROOT, REPO_ROOT / "benchmarks" / "policies" / "recommended.yaml").stage
    judges = {key: getattr(stage.gates, gate).judge for key, gate in GATES.items()}
    alphas = {stage.judge_alpha(gate) for gate in GATES.values()}
    events = {judge.min_canary_events for judge in judges.values()}
    assert len(alphas) == 1 and len(events) == 1, "the simulator assumes one alpha and one guard for all gates"
    return alphas.pop(), {key: judge.tolerance for key, judge in judges.items()}, events.pop()


ALPHA, TOLERANCE, MIN_EVENTS = _recommended_judge()


@dataclass(frozen=True)
class Scenario:
    name: str
    canary_rps: float = 20.0
    stable_rps: float = 180.0
    q_stable: float = 0.0005  # error probability
    q_canary: float = 0.0005
    floor: float = 0.02  # latency floor + Exponential(mean)
    mean_stable: float = 0.03
    mean_canary: float = 0.03
    workflow_failure: float = 0.002
    fallback: float = 0.005
    fault_start: int = 0  # the canary's own q and mean apply from this interval
    noisy: bool = False
    # per-minute lognormal swings (this sigma) of the canary's latency alone: pod-local shocks
    # (GC pauses, a noisy neighbour), which break the judge's independence assumption
    canary_jitter: float = 0.0


def bucket_probabilities(floor: np.ndarray | float, mean: np.ndarray | float) -> np.ndarray:
    """P(latency in each `le` bucket, +Inf last) for floor + Exponential(mean); broadcasts."""
    floor = np.asarray(floor, dtype=float)[..., None]
    mean = np.asarray(mean, dtype=float)[..., None]
    cdf = np.where(BOUNDARIES > floor, -np.expm1(-(BOUNDARIES - floor) / mean), 0.0)
    cdf = np.concatenate([np.zeros(cdf.shape[:-1] + (1,)), cdf, np.ones(cdf.shape[:-1] + (1,))], -1)
    p = np.clip(np.diff(cdf, axis=-1), 0.0, 1.0)
    return p / p.sum(-1, keepdims=True)


def simulate(s: Scenario, stages: int, intervals: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """(stages, intervals) arrays: requests nc/ns, errors xc/xs, workflows wc/ws, failed
    workflows fc/fs, fallbacks bc/bs; (stages, intervals, buckets + 1) cumulative-in-le bucket
    counts cb/sb."""
    S, T = stages, intervals
    t = np.arange(T)
    rate, level, latency = np.ones((S, T)), np.ones((S, T)), np.ones((S, T))
    if s.noisy:
        phase = rng.uniform(0, 2 * np.pi, (S, 1))
        rate = (1 + 0.6 * np.sin(2 * np.pi * t / 1440 + phase)) * rng.lognormal(0, 0.3, (S, T))
        level = rng.lognormal(-0.5, 1.0, (S, T))
        incident = rng.random((S, T)) < 0.004
        for lag in range(1, 5):
            incident[:, lag:] |= incident[:, :-lag]
        level = np.where(incident, 100.0, level)
        latency = np.where(incident, 3.0, rng.lognormal(0, 0.4, (S, T)))
    nc = rng.poisson(s.canary_rps * 60 * rate)
    ns = rng.poisson(s.stable_rps * 60 * rate)
    faulty = t >= s.fault_start
    qc = np.clip(np.where(faulty, s.q_canary, s.q_stable) * level, 0, 1)
    qs = np.clip(s.q_stable * level, 0, 1)
    mc = np.where(faulty, s.mean_canary, s.mean_stable) * latency
    if s.canary_jitter:
        mc = mc * rng.lognormal(0, s.canary_jitter, (S, T))
    ms = s.mean_stable * latency
    wc, ws = rng.binomial(nc, 0.5), rng.binomial(ns, 0.5)
    return {
        "nc": nc, "ns": ns, "xc": rng.binomial(nc, qc), "xs": rng.binomial(ns, qs),
        "wc": wc, "ws": ws,
        "fc": rng.binomial(wc, np.clip(s.workflow_failure * level, 0, 1)),
        "fs": rng.binomial(ws, np.clip(s.workflow_failure * level, 0, 1)),
        "bc": rng.binomial(wc, s.fallback), "bs": rng.binomial(ws, s.fallback),
        "cb": np.cumsum(rng.multinomial(nc, bucket_probabilities(s.floor, mc)), axis=-1),
        "sb": np.cumsum(rng.multinomial(ns, bucket_probabilities(s.floor, ms)), axis=-1),
    }


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    a = 1 - level
    low = 0.0 if k == 0 else float(beta.ppf(a / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - a / 2, k + 1, n - k))
    return low, high


def crossings(sim: dict[str, np.ndarray], tolerance: dict[str, float] = TOLERANCE, alpha: float = ALPHA,
              min_events: int = MIN_EVENTS) -> dict[str, np.ndarray]:
    """Per gate, the first interval of each stage where a regression is declared (-1: never)."""
    out = {}
    for gate, (c, nc, s, ns) in {
        "errors": ("xc", "nc", "xs", "ns"), "failures": ("fc", "wc", "fs", "ws"), "fallbacks": ("bc", "wc", "bs", "ws"),
    }.items():
        paths = rate_ratio_log_e_paths(sim[c], sim[nc], sim[s], sim[ns], tolerance[gate])
        cum = np.cumsum(sim[c], axis=1)
        out[gate] = np.array([_first(first_crossing(p, alpha, k, min_events)) for p, k in zip(paths, cum)])
    paths, slow = latency_paths(sim, tolerance["latency"])
    out["latency"] = np.array([_first(first_crossing(p, alpha, k, min_events)) for p, k in zip(paths, slow)])
    return out


def latency_paths(sim: dict[str, np.ndarray], tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """latency_log_e_path for every stage at once: the same e-process per boundary (requests
    slower than it, per request) averaged with equal weights; test_latency_batch_is_the_product_path
    checks they agree."""
    paths, slow = [], []
    for chunk in range(0, len(sim["nc"]), 50):  # 50 stages at a time keeps the arrays in cache
        part = slice(chunk, chunk + 50)
        nc, ns = sim["nc"][part], sim["ns"][part]
        tail_c = np.moveaxis(nc[..., None] - sim["cb"][part, :, :-1], -1, -2)  # (S, B, T)
        tail_s = np.moveaxis(ns[..., None] - sim["sb"][part, :, :-1], -1, -2)
        per_boundary = rate_ratio_log_e_paths(tail_c, nc[:, None, :], tail_s, ns[:, None, :], tolerance)
        top = per_boundary.max(axis=1)
        paths.append(top + np.log(np.exp(per_boundary - top[:, None, :]).mean(axis=1)))
        slow.append(np.cumsum(tail_c.max(axis=1), axis=1))
    return np.concatenate(paths), np.concatenate(slow)


def _first(index: int | None) -> int:
    return -1 if index is None else index


def evidence_of(gate: str, q_canary: float, q_stable: float = 0.0005, tolerance: float = 0.5,
                alpha: float = 0.005, minutes: int = 30, seed: int = 5) -> Evidence:
    """A gate's evidence after `minutes` of simulated 20 vs 180 req/s at these error shares."""
    sim = simulate(Scenario("x", q_canary=q_canary, q_stable=q_stable), 1, minutes, np.random.default_rng(seed))
    counts = RateCounts(*(sim[k][0].astype(float) for k in ("xc", "nc", "xs", "ns")), source="simulated")
    return GateJudge(gate, Judge(tolerance=tolerance), alpha, counts).at(minutes - 1)
