"""The in-cluster bot's container entry point, run as the container runs it: the command and
arguments of the Deployment the program renders (`rollout watch --forever --leader-elect ...`),
as separate local processes, against a REAL Prometheus fed by synthetic pods, a REAL Alertmanager
delivering to a webhook, the Pulumi CLI stand-in (rollout/local/pulumi_standin, driven by the real
Automation API: the CLI cannot be installed here) and a loopback stand-in of the Kubernetes Lease
API (tests/support/kube_lease.py: no API server can run here). Only the in-cluster addresses and
mounted-file paths of its environment are swapped for local ones (tests/support/incluster.py).
No image can be built on this machine; the Dockerfile's ENTRYPOINT is the same `rollout`."""

from __future__ import annotations

import hashlib
import json
import signal
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from support.incluster import TOKEN, BotRun, bot_rig

from rollout.review.localstack import wait_for

ANALYSIS = {"checkInterval": "2s", "window": "6s", "consecutiveFailures": 3, "passingChecksToPromote": 3,
            "minCanaryRequests": 20, "hold": "30s", "progressDeadline": "5s"}
pytestmark = pytest.mark.timeout(240)


def metric(run: BotRun, name: str, **labels: str) -> float | None:
    try:
        text = httpx.get(run.metrics_url, timeout=2).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def stage_of(run: BotRun) -> str:
    return run.fake.state()["outputs"].get("stage", "")


def test_the_containers_command_rolls_back_once_with_two_pods_and_hands_over_on_sigterm(tmp_path: Path) -> None:
    with bot_rig(tmp_path, ANALYSIS, profile="bad") as run:
        run.live.wait_for_full_window()
        since = datetime.now(timezone.utc) - timedelta(seconds=1)
        run.seed_canary(since)
        first = run.start("a")
        wait_for(lambda: run.lease.holder("genesis-rollout-bot") == "bot-pod-a", 30, "the first pod to lead")
        second = run.start("b")  # a second pod (a rolling upgrade's surge, a partition): it must not tick
        wait_for(lambda: stage_of(run) == "stable", 90, "the rollback to be applied")
        # the metric is set when the tick ends, after the report and the pages: on a loaded 2-core
        # CI that took over 30 s once (a bound, not a wait: it returns as soon as the metric is there)
        wait_for(lambda: metric(run, "rollout_decision", action="rollback") == 1.0, 90, "the rollback in the metrics")

        ups = run.fake.runs_of("up")
        messages = [c["argv"][c["argv"].index("--message") + 1] for c in ups]
        # one rollback, in its two phases, by one pod: the other never ticked
        assert [m.split(":")[1].strip() for m in messages] == ["rollback canary -> stable [1/2 shift]",
                                                                "rollback canary -> stable [2/2 scale-down]"]
        assert "decision:" not in run.output("b")
        # decided on the third failing check, not earlier: the grid is since + 6 s, 8 s, 10 s
        decided = datetime.fromisoformat(ups[0]["time"].replace("Z", "+00:00"))
        assert decided >= since + timedelta(seconds=10)
        # the token reached the CLI from the mounted file, and nowhere else
        assert {c.get("access_token_sha256") for c in ups} == {hashlib.sha256(TOKEN.encode()).hexdigest()}
        assert TOKEN not in run.output("a") + run.output("b")
        page = run.receiver.wait_for_alert(lambda a: a["labels"].get("alertname") == "GenesisRolloutRolledBack")
        assert page["labels"]["severity"] == "critical"
        assert list((run.project / "reports").glob("*rollback-canary-to-stable.md"))
        wait_for(lambda: metric(run, "rollout_stack_locked") == 0.0, 30, "the lock state in the metrics")

        # --forever: still ticking at stable after the rollback (the Deployment never restarts it)
        ticks = run.output("a").count("decision:")
        wait_for(lambda: run.output("a").count("decision:") > ticks, 30, "a tick after the rollback")
        assert first.poll() is None

        # SIGTERM (an upgrade, an eviction): the leader finishes, hands the Lease over, exits 0
        first.send_signal(signal.SIGTERM)
        assert first.wait(60) == 0
        wait_for(lambda: run.lease.holder("genesis-rollout-bot") == "bot-pod-b", 30, "the second pod to take over")
        wait_for(lambda: "decision: wait" in run.output("b"), 30, "the second pod's first tick")
        assert len(run.fake.runs_of("up")) == 2  # at stable there is nothing to apply again
        assert second.poll() is None


def test_a_locked_stack_is_reported_and_the_rollback_lands_at_the_next_check_once_it_is_free(tmp_path: Path) -> None:
    with bot_rig(tmp_path, ANALYSIS, profile="bad") as run:
        run.live.wait_for_full_window()
        since = datetime.now(timezone.utc) - timedelta(seconds=12)
        run.seed_canary(since)
        state = run.fake.state()
        locked = {**state, "lock": "service"}  # a dead `pulumi up` left its lock on the stack
        run.fake.state_file.write_text(json.dumps({"stacks": {"prod": locked}}))
        process = run.start("a")
        wait_for(lambda: metric(run, "rollout_stack_locked") == 1.0, 60, "the lock in the bot's metrics")
        first_age = metric(run, "rollout_stack_locked_seconds")
        wait_for(lambda: (metric(run, "rollout_stack_locked_seconds") or 0) > (first_age or 0), 30, "the lock's age to grow")
        assert stage_of(run) == "canary" and process.poll() is None  # nothing applied, still running
        assert "locked by another update" in run.output("a")

        run.fake.state_file.write_text(json.dumps({"stacks": {"prod": {**locked, "lock": None}}}))
        wait_for(lambda: stage_of(run) == "stable", 60, "the rollback once the lock is gone")  # the next check
        wait_for(lambda: metric(run, "rollout_stack_locked") == 0.0, 30, "the lock cleared in the metrics")
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
