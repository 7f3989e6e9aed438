"""Per-interval counts of many simulated stages at once, for the judge's Monte Carlo tests and
benchmarks/bench_judge.py. Traffic follows rollout/local/synthetic.py: requests per interval
(the check interval, `Scenario.interval_seconds`) are Poisson (canary 10 % of 200 req/s by
default), each fails with a probability, takes floor + Exponential(mean) seconds binned into
the app's buckets, and half of them run a Pipelex workflow that fails or falls back with its own probability. `noisy` adds what both
tracks share in production: diurnal and bursty traffic, a wandering error level, incidents
(5 % errors, 3x latency, a few minutes, several a day) and latency swings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import betaln
from scipy.stats import beta

from rollout.analysis.evidence import Evidence, GateJudge, RateCounts
from rollout.analysis.judge import (
    BETS,
    Bets,
    StartPrior,
    first_crossing,
    latency_quantile_log_e_path,
    rate_log_e_paths,
    rate_ratio_log_e_paths,
)
from rollout.config import REPO_ROOT, load_policy_file
from rollout.local.scenarios import latency_bucket_probabilities
from rollout.local.synthetic import LATENCY_BUCKETS
from rollout.model import Judge

BOUNDARIES = np.array(LATENCY_BUCKETS)
# the synthetic app's layout before this round: 2x apart around its 0.11 s P95, coarser than the
# latency tolerance (the benchmark's and the tests' "coarse" case)
COARSE_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 2.0)
# the simulated counts and the gates that judge them
GATES = {"errors": "error_rate", "latency": "p95_latency_seconds", "failures": "pipelex_success_rate",
         "fallbacks": "fallback_rate"}


def _recommended_judge() -> tuple[float, dict[str, float], int, int, float, int]:
    """(alpha per gate, tolerances, min canary events, warm-up intervals, latency quantile,
    interval seconds) of benchmarks/policies/recommended.yaml,
    read from the file so the simulations test the policy the benchmarks publish."""
    stage = load_policy_file(REPO_ROOT, REPO_ROOT / "benchmarks" / "policies" / "recommended.yaml").stage
    judges = {key: getattr(stage.gates, gate).judge for key, gate in GATES.items()}
    alphas = {stage.judge_alpha(gate) for gate in GATES.values()}
    events = {judge.min_canary_events for judge in judges.values()}
    assert len(alphas) == 1 and len(events) == 1, "the simulator assumes one alpha and one guard for all gates"
    warmup = math.ceil(stage.analysis.warmup / stage.analysis.check_interval)  # in intervals
    quantile = judges["latency"].quantile or 0.95
    return (alphas.pop(), {key: judge.tolerance for key, judge in judges.items()}, events.pop(), warmup, quantile,
            round(stage.analysis.check_interval.total_seconds()))


ALPHA, TOLERANCE, MIN_EVENTS, WARMUP, QUANTILE, INTERVAL = _recommended_judge()


@dataclass(frozen=True)
class Scenario:
    name: str
    canary_rps: float = 20.0
    stable_rps: float = 180.0
    q_stable: float = 0.0005  # error probability
    q_canary: float = 0.0005
    floor: float = 0.02  # latency floor + Exponential(mean)
    canary_floor: float | None = None  # the canary's own floor (None: `floor`)
    mean_stable: float = 0.03
    mean_canary: float = 0.03
    workflow_failure: float = 0.002
    fallback: float = 0.005
    fault_start: int = 0  # the canary's own q and mean apply from this interval
    noisy: bool = False
    # per-minute lognormal swings (this sigma) of the canary's latency alone: pod-local shocks
    # (GC pauses, a noisy neighbour), which break the judge's independence assumption
    canary_jitter: float = 0.0
    # what real pods do (the same on both tracks: a null for the judge). Pods: the library's
    # split, one canary pod and nine stable ones at 20 req/s each
    canary_pods: int = 1
    stable_pods: int = 9
    burst_per_hour: float = 0.0  # each pod fails `burst_errors` of its requests for 30 s, this often
    burst_errors: float = 0.5
    pod_jitter: float = 0.0  # every pod's latency scale wanders lognormal(0, sigma) minute to minute
    overdispersion: float = 0.0  # per pod and minute, the error probability x Gamma(1/v, v): variance v
    cold_minutes: int = 0  # canary pods 1.5x slower (and 3x the errors) for their first minutes
    noisy_stable_pod: bool = False  # stable pod 0: 5x the errors, twice the bursts, 1.5x the latency
    interval_seconds: int = INTERVAL  # the judge's interval (the check interval); fault_start counts these
    buckets: tuple[float, ...] = LATENCY_BUCKETS  # the app's `le` boundaries


def bucket_probabilities(floor: np.ndarray | float, mean: np.ndarray | float,
                         bounds: np.ndarray = BOUNDARIES) -> np.ndarray:
    """The replay scenarios' bucket probabilities, renormalised for rng.multinomial."""
    p = latency_bucket_probabilities(floor, mean, bounds)
    return p / p.sum(-1, keepdims=True)


def simulate(s: Scenario, stages: int, intervals: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """(stages, intervals) arrays: requests nc/ns, errors xc/xs, workflows wc/ws, failed
    workflows fc/fs, fallbacks bc/bs; (stages, intervals, buckets + 1) cumulative-in-le bucket
    counts cb/sb, and their boundaries `bounds`."""
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
    nc = rng.poisson(s.canary_rps * s.interval_seconds * rate)
    ns = rng.poisson(s.stable_rps * s.interval_seconds * rate)
    faulty = t >= s.fault_start
    qc = np.clip(np.where(faulty, s.q_canary, s.q_stable) * level, 0, 1)
    qs = np.clip(s.q_stable * level, 0, 1)
    mc = np.where(faulty, s.mean_canary, s.mean_stable) * latency
    if s.canary_jitter:
        mc = mc * rng.lognormal(0, s.canary_jitter, (S, T))
    ms = s.mean_stable * latency
    cold_intervals = s.cold_minutes * 60 // s.interval_seconds
    if s.cold_minutes:
        cold = t < cold_intervals
        mc = np.where(cold, mc * 1.5, mc)
        qc = np.where(cold, np.clip(qc * 3, 0, 1), qc)
    wc, ws = rng.binomial(nc, 0.5), rng.binomial(ns, 0.5)
    bounds = np.asarray(s.buckets, dtype=float)
    own_floor = s.floor if s.canary_floor is None else s.canary_floor
    floor_c = np.where(t < cold_intervals, own_floor * 1.5, own_floor) if s.cold_minutes else own_floor
    return {
        "nc": nc, "ns": ns,
        "xc": _pod_errors(nc, qc, s.canary_pods, s, rng, noisy_pod=False),
        "xs": _pod_errors(ns, qs, s.stable_pods, s, rng, noisy_pod=s.noisy_stable_pod),
        "wc": wc, "ws": ws,
        "fc": rng.binomial(wc, np.clip(s.workflow_failure * level, 0, 1)),
        "fs": rng.binomial(ws, np.clip(s.workflow_failure * level, 0, 1)),
        "bc": rng.binomial(wc, s.fallback), "bs": rng.binomial(ws, s.fallback),
        "cb": _pod_buckets(nc, floor_c, mc, s.canary_pods, s.pod_jitter, 1.0, bounds, rng),
        "sb": _pod_buckets(ns, s.floor, ms, s.stable_pods, s.pod_jitter, 1.5 if s.noisy_stable_pod else 1.0, bounds, rng),
        "bounds": bounds,
    }


def _pod_errors(n: np.ndarray, q: np.ndarray, pods: int, s: Scenario, rng: np.random.Generator,
                noisy_pod: bool) -> np.ndarray:
    """A track's errors per interval when its pods misbehave on their own: requests spread
    evenly over the pods; each pod's error probability x Gamma noise, and 30 s bursts."""
    if not (s.burst_per_hour or s.overdispersion or noisy_pod):
        return rng.binomial(n, q)
    S, T = n.shape
    per_pod = rng.multinomial(n, np.full(pods, 1.0 / pods))  # (S, T, P)
    qp = np.broadcast_to(np.asarray(q, dtype=float)[..., None], (S, T, pods)).copy()
    if s.overdispersion:
        k = 1.0 / s.overdispersion
        qp *= rng.gamma(k, 1.0 / k, (S, T, pods))
    bursts_per_hour = np.full(pods, s.burst_per_hour)
    if noisy_pod:
        qp[..., 0] *= 5.0
        bursts_per_hour[0] *= 2.0
    if s.burst_per_hour:
        burst = rng.random((S, T, pods)) < bursts_per_hour * s.interval_seconds / 3600.0
        # a 30 s burst inside the interval: that share of the pod's requests at burst_errors
        covered = min(1.0, 30.0 / s.interval_seconds)
        qp = np.where(burst, covered * s.burst_errors + (1 - covered) * qp, qp)
    return rng.binomial(per_pod, np.clip(qp, 0, 1)).sum(axis=-1)


def _pod_buckets(n: np.ndarray, floor: np.ndarray | float, mean: np.ndarray, pods: int, jitter: float,
                 pod0_scale: float, bounds: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cumulative `le` bucket counts: each request is served by a pod chosen evenly, whose
    latency scale this minute is lognormal(0, jitter) (and pod0_scale for pod 0)."""
    S, T = n.shape
    floor = np.broadcast_to(np.asarray(floor, dtype=float), (S, T)) if np.ndim(floor) else np.full((S, T), floor)
    if not jitter and pod0_scale == 1.0:
        return np.cumsum(rng.multinomial(n, bucket_probabilities(floor, mean, bounds)), axis=-1)
    out = np.empty((S, T, bounds.size + 1), dtype=np.int64)
    for part in range(0, S, 100):  # the (S, T, pods, buckets) mixture in slices keeps memory small
        sl = slice(part, part + 100)
        scale = rng.lognormal(0, jitter, (*n[sl].shape, pods)) if jitter else np.ones((*n[sl].shape, pods))
        scale[..., 0] *= pod0_scale
        probs = bucket_probabilities(floor[sl][..., None] * scale, mean[sl][..., None] * scale, bounds).mean(axis=-2)
        out[sl] = np.cumsum(rng.multinomial(n[sl], probs / probs.sum(-1, keepdims=True)), axis=-1)
    return out


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    a = 1 - level
    low = 0.0 if k == 0 else float(beta.ppf(a / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - a / 2, k + 1, n - k))
    return low, high


def crossings(sim: dict[str, np.ndarray], tolerance: dict[str, float] = TOLERANCE, alpha: float = ALPHA,
              min_events: int = MIN_EVENTS, warmup: int | None = None, quantile: float | None = None,
              bets: Bets = BETS, method: str = "bet", start_prior: StartPrior = "changepoint") -> dict[str, np.ndarray]:
    """Per gate, the first interval of each stage where a regression is declared (-1: never),
    through the product's tests (method "bet"; "event": the per-event likelihood ratios that
    the bot ran before, for the trade-off table)."""
    warmup = WARMUP if warmup is None else warmup  # in intervals
    quantile = QUANTILE if quantile is None else quantile
    out = {}
    for gate, (c, nc, s, ns) in {
        "errors": ("xc", "nc", "xs", "ns"), "failures": ("fc", "wc", "fs", "ws"), "fallbacks": ("bc", "wc", "bs", "ws"),
    }.items():
        if method == "event":
            paths = rate_ratio_log_e_paths(sim[c], sim[nc], sim[s], sim[ns], tolerance[gate])
        else:
            paths = rate_log_e_paths(sim[c], sim[nc], sim[s], sim[ns], tolerance[gate], bets=bets, warmup=warmup,
                                     start_prior=start_prior)
        cum = np.cumsum(sim[c], axis=1)
        out[gate] = np.array([_first(first_crossing(p, alpha, k, min_events)) for p, k in zip(paths, cum)])
    if method == "event":
        paths, slow = latency_paths(sim, 1.0)
    else:
        paths, slow = quantile_paths(sim, tolerance["latency"], quantile, warmup, bets, start_prior)
    out["latency"] = np.array([_first(first_crossing(p, alpha, k, min_events)) for p, k in zip(paths, slow)])
    return out


def quantile_paths(sim: dict[str, np.ndarray], tolerance: float, quantile: float, warmup: int,
                   bets: Bets = BETS, start_prior: StartPrior = "changepoint") -> tuple[np.ndarray, np.ndarray]:
    """latency_quantile_log_e_path of every stage at once (it takes leading stage axes), 100
    stages at a time to keep the arrays small."""
    paths, slow = [], []
    for part in range(0, len(sim["nc"]), 100):
        sl = slice(part, part + 100)
        p, k = latency_quantile_log_e_path(sim["cb"][sl].astype(float), sim["sb"][sl].astype(float), sim["bounds"],
                                           tolerance, quantile, bets=bets, warmup=warmup, start_prior=start_prior)
        paths.append(p)
        slow.append(k)
    return np.concatenate(paths), np.concatenate(slow)


def latency_paths(sim: dict[str, np.ndarray], tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """The old judge's latency test (before interval betting; the trade-off table's "per-event"
    row) for every stage at once: rate_ratio_log_e_paths per boundary (requests slower than it,
    per request) averaged with equal weights."""
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


# --------------------------------------------------------------------------- routing (the sample ratio test)


@dataclass(frozen=True)
class Routing:
    """How weighted requests reach the tracks, for the sample-ratio test. A router picks the track
    per routing unit (a request, a user's session, a keep-alive connection of `unit_requests`
    requests on average, geometric sizes) with probability `share` (None: the weight). Each
    pod's rate wanders by `pod_jitter` (lognormal, mean 1) every 15 s scrape, independently, the
    `noisy` replay scenario's per-pod traffic; `diurnal` adds +-60 % over a day on both tracks.
    `testers_rps`: header-routed requests counted as weighted canary ones (no route label)."""

    name: str
    rps: float = 200.0  # the service's weighted requests per second
    weight: float = 0.1
    share: float | None = None
    unit_requests: float = 1.0
    pod_jitter: float = 0.0
    diurnal: bool = False
    canary_pods: int = 1
    stable_pods: int = 9
    testers_rps: float = 0.0
    onset: int = 0  # the share applies from this interval (the weight before)


def simulate_routing(r: Routing, stages: int, intervals: int, rng: np.random.Generator,
                     interval_seconds: int = INTERVAL) -> tuple[np.ndarray, np.ndarray]:
    """(canary, stable) weighted requests per interval, shape (stages, intervals)."""
    t = np.arange(intervals)
    share = np.where(t >= r.onset, r.weight if r.share is None else r.share, r.weight)
    volume = np.full((stages, intervals), r.rps * interval_seconds, dtype=float)
    if r.diurnal:
        volume *= 1 + 0.6 * np.sin(2 * np.pi * t / (86400 / interval_seconds) + rng.uniform(0, 2 * np.pi, (stages, 1)))
    tracks = []
    for pods, part in ((r.canary_pods, share), (r.stable_pods, 1 - share)):
        scale = np.ones((stages, intervals))
        if r.pod_jitter:  # the mean over the track's pods and the interval's scrapes of each rate's swing
            scrapes = max(1, interval_seconds // 15)
            scale = rng.lognormal(-r.pod_jitter**2 / 2, r.pod_jitter, (stages, intervals, pods * scrapes)).mean(axis=-1)
        units = rng.poisson(volume * part * scale / r.unit_requests)
        if r.unit_requests > 1:  # each unit carries 1 + NegBin(1, 1/k) requests: a sum of geometrics
            requests = units + rng.negative_binomial(np.maximum(units, 1), 1 / r.unit_requests) * (units > 0)
        else:
            requests = units
        tracks.append(requests.astype(float))
    canary, stable = tracks
    if r.testers_rps:
        canary = canary + rng.poisson(r.testers_rps * interval_seconds, canary.shape)
    return canary, stable


def beta_binomial_log_e_path(canary: np.ndarray, stable: np.ndarray, weight: float,
                             concentration: float = 100.0) -> np.ndarray:
    """The sample-ratio test the bot ran before (Lindon & Malek's Beta-binomial mixture against
    the point null `weight`, every request routed independently), for the benchmark's comparison:
    log B(a + C, b + S) / B(a, b) - C log p0 - S log(1 - p0), a = K p0, b = K (1 - p0)."""
    c, s = np.cumsum(canary, axis=-1), np.cumsum(stable, axis=-1)
    a, b = concentration * weight, concentration * (1 - weight)
    return betaln(a + c, b + s) - betaln(a, b) - c * math.log(weight) - s * math.log1p(-weight)
