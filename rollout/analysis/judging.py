"""The judge in a check: a stage's counts (rollout/analysis/counts.py) in, each judged gate's
evidence and the guardrails out. Pure, no I/O; rollout/analysis/gates.py turns the outcome into
gate verdicts.

Guardrails: data the judge cannot trust holds the check, it never rolls back on it.
- counts from the error gauge (no errors counter) count an error once per gauge window it stays
  in, so unless the service states that window equals the check interval, a regression the judge
  declares on them holds and says why;
- a sample ratio mismatch (rollout/analysis/srm.py: the canary's share of weighted requests is
  not the route's weight) holds the check, and a regression declared alongside it holds too: the
  two tracks' requests are not the same population;
- any error while judging (unreadable counts, an exception in the statistics) holds that gate
  with the error; the threshold gates are judged as always, and the bot pages on it
  (rollout_judge_errors, GenesisReleaseJudgeFailing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from rollout.analysis.counts import BucketCounts, StageCounts
from rollout.analysis.evidence import Evidence, GateJudge, LatencyCounts, RateCounts
from rollout.analysis.srm import SampleRatio, SampleRatioTest
from rollout.model import Stage


@dataclass(frozen=True)
class JudgeOutcome:
    """What the judge says in one check of one service."""

    evidence: dict[str, Evidence] = field(default_factory=dict)
    holds: dict[str, str] = field(default_factory=dict)  # gate -> why a regression only holds
    errors: dict[str, str] = field(default_factory=dict)  # gate -> why the judge could not judge it
    sample_ratio: SampleRatio | None = None
    notes: list[str] = field(default_factory=list)


def judge_stage(stage: Stage, counts: StageCounts) -> JudgeOutcome:
    """Every judged gate of the stage at the check's interval (`counts.interval`); never raises."""
    outcome = JudgeOutcome()
    if counts.interval < 0:
        return outcome
    try:
        outcome = JudgeOutcome(sample_ratio=_sample_ratio(stage, counts))
    except Exception as err:  # noqa: BLE001 - a broken test must not stop the gates
        outcome.notes.append(f"sample ratio test failed: {type(err).__name__}: {err}")
    srm = outcome.sample_ratio
    for name, gate in stage.gates.judged():
        if name in counts.failed:
            outcome.errors[name] = f"counts could not be read: {counts.failed[name]}"
            continue
        try:
            evidence = _evidence(stage, name, counts)
        except Exception as err:  # noqa: BLE001 - reported as the gate's judge error
            outcome.errors[name] = f"{type(err).__name__}: {err}"
            continue
        if evidence is None:
            outcome.errors[name] = "no counts were read for it"
            continue
        outcome.evidence[name] = evidence
        reasons = []
        if name in counts.untrusted:
            reasons.append(counts.untrusted[name])
        if srm is not None and srm.mismatch:
            reasons.append("the canary's share of requests is not the configured weight (sample ratio mismatch)")
        if reasons:
            outcome.holds[name] = "; ".join(reasons)
    return outcome


def _evidence(stage: Stage, name: str, counts: StageCounts) -> Evidence | None:
    source = counts.gates.get(name)
    if source is None:
        return None
    gate = getattr(stage.gates, name)
    alpha = stage.judge_alpha(name, counts.services)  # the budget is per release: split over its services
    options = {"warmup_intervals": _warmup_intervals(stage), "budget": stage.analysis.judge_alpha}
    judged: RateCounts | LatencyCounts
    if isinstance(source, BucketCounts):
        judged = source.upto(counts.interval)
        if not judged.boundaries:
            raise ValueError("no latency bucket boundary is shared by both tracks in every interval so far "
                             "(a bucket layout change?): nothing to compare")
        layout = judged.boundaries  # checks that vote on the same boundaries share one e-process
    else:
        judged, layout = source, ()
    key = (name, gate.judge, alpha, layout, tuple(options.values()))
    judge = counts.memo.get(key)
    if judge is None:
        judge = counts.memo[key] = GateJudge(name, gate.judge, alpha, judged, **options)  # type: ignore[arg-type]
    return judge.at(counts.interval)


def _warmup_intervals(stage: Stage) -> int:
    """The judge's evidence starts after analysis.warmup (fixed before the stage: validity kept)."""
    return math.ceil(stage.analysis.warmup / stage.analysis.check_interval - 1e-9)


def _sample_ratio(stage: Stage, counts: StageCounts) -> SampleRatio | None:
    if counts.requests is None or counts.expected_share is None or not 0 < counts.expected_share < 1:
        return None
    warmup = _warmup_intervals(stage)
    key = ("sample_ratio", counts.expected_share, warmup)
    test = counts.memo.get(key)
    if test is None:  # once per reading: a grid's checks read the same test at their own interval
        canary, stable = counts.requests
        test = counts.memo[key] = SampleRatioTest(canary, stable, counts.expected_share, warmup=warmup)
    return test.at(counts.interval)
