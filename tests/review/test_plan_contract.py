"""`rollout plan FROM TO --json`, the contract other tools read, and the safety of every stage
change it describes, checked over that JSON for every router: each adjacent promotion, each
rollback and the completion of the release.

- a track's flags change in a phase before its traffic grows, and the change had time to reach
  running pods (`routing.flagsPropagation`), unless the track had no pods or its pods rolled;
- no weight grows before the receiving track's replicas are ready (an earlier phase; with the
  replica-ratio router traffic follows ready pods, so a share grows only with its own pods);
- no track scales down before its traffic is gone and the scale-down delay passed.

The program runs under the Pulumi SDK's mock runtime (no engine or cluster here); the phases are
the same ones the bot applies (rollout.release.transition).
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from pathlib import Path

import pytest
import yaml
from support.stack import REPO_ROOT
from typer.testing import CliRunner

from rollout.cli import app
from rollout.config import load_release
from rollout.model import MIN_CANARY_PODS

RELEASE = load_release(REPO_ROOT)
ROUTERS = ("gateway-api", "istio", "replica-ratio")
ORDER = RELEASE.project.stage_order
PROMOTIONS = list(itertools.pairwise(ORDER))
ROLLBACKS = [(s.name, ORDER[0]) for s in RELEASE.stages if s.weight > 0]
CHANGES = [*PROMOTIONS, *ROLLBACKS, (ORDER[-1], "complete")]
WHAT = {"replicas", "weight", "flags", "pods", "other"}
KUBELET_PROJECTION_SECONDS = 60  # kubelet sync period + ConfigMap cache, about a minute
FLAGD_POLL_SECONDS = 5  # flagd's Python and Java in-process providers poll the file's mtime
REPLICAS = 10  # services[0].replicas in Pulumi.yaml

runner = CliRunner()


@functools.cache
def project_for(router: str, root: Path) -> Path:
    """The repository's Pulumi files with another router (the program is still the repo's)."""
    project = root / router
    project.mkdir()
    for path in REPO_ROOT.glob("Pulumi*.yaml"):
        project.joinpath(path.name).write_text(path.read_text())
    data = yaml.safe_load((project / "Pulumi.yaml").read_text())
    data["config"]["genesis-rollout:routing"]["value"]["router"] = router
    (project / "Pulumi.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return project


@pytest.fixture(scope="module")
def projects(tmp_path_factory):
    root = tmp_path_factory.mktemp("routers")
    return lambda router: REPO_ROOT if router == "gateway-api" else project_for(router, root)


def plan_json(project: Path, source: str, target: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["plan", source, target, "--json", "-C", str(project)], catch_exceptions=False)
    return result.exit_code, json.loads(result.stdout)


@functools.cache
def _cached(project: Path, source: str, target: str) -> tuple[int, str]:
    code, document = plan_json(project, source, target)
    return code, json.dumps(document)


def planned(project: Path, source: str, target: str) -> dict:
    code, text = _cached(project, source, target)
    assert code == 0, text
    return json.loads(text)


def track_history(document: dict) -> dict[tuple[str, str], list[dict]]:
    """(service, track) -> the changes of each phase, in phase order."""
    history: dict[tuple[str, str], list[dict]] = {}
    for index, phase in enumerate(document["phases"]):
        for change in phase["changes"]:
            if change["track"] is not None:
                history.setdefault((change["service"], change["track"]), []).append({**change, "phase": index})
    return history


def first(changes: list[dict], what: str) -> dict | None:
    return next((c for c in changes if c["what"] == what), None)


def needed(weight: int) -> int:
    return 0 if weight == 0 else max(MIN_CANARY_PODS, math.ceil(REPLICAS * weight / 100))


def assert_contract_shape(document: dict, source: str, target: str, router: str) -> None:
    assert set(document) == {"from", "to", "router", "phases", "diff"}
    assert (document["from"], document["to"], document["router"]) == (source, target, router)
    assert document["phases"], "a stage change has at least one phase"
    for phase in document["phases"]:
        assert set(phase) == {"name", "wait_seconds", "targets", "changes"}
        assert isinstance(phase["wait_seconds"], int) and phase["wait_seconds"] >= 0
        assert all(t.startswith("urn:pulumi:prod::genesis-rollout::") for t in phase["targets"])
        for change in phase["changes"]:
            assert set(change) == {"service", "track", "what", "from", "to"}
            assert change["what"] in WHAT
    assert document["phases"][-1]["targets"] == [], "the last update converges the whole stack"


def assert_flags_before_traffic(document: dict) -> None:
    waits = [p["wait_seconds"] for p in document["phases"]]
    for (service, track), changes in track_history(document).items():
        weight = first(changes, "weight")
        flags = first(changes, "flags")
        if weight is None or weight["to"] <= weight["from"] or flags is None:
            continue
        # the track's flags changed in an earlier phase than its traffic grew
        assert flags["phase"] < weight["phase"], (service, track, document["from"], document["to"])
        had_pods = next((c["from"] for c in changes if c["what"] == "replicas"), None) != 0
        rolled = any(c["what"] == "pods" and c["phase"] == flags["phase"] for c in changes)
        if had_pods and not rolled:
            waited = sum(waits[flags["phase"] + 1 : weight["phase"] + 1])
            assert waited >= KUBELET_PROJECTION_SECONDS + FLAGD_POLL_SECONDS, (service, track, waits)


def assert_replicas_before_weight(document: dict, router: str) -> None:
    for (service, track), changes in track_history(document).items():
        for weight in (c for c in changes if c["what"] == "weight" and c["to"] > c["from"]):
            grown = [c for c in changes if c["what"] == "replicas" and c["to"] > c["from"]]
            if router == "replica-ratio":
                # traffic follows ready pods: a share grows only once the track's pods are there
                # (its own new pods, in this phase or before, or the other track shrinking)
                assert not [c for c in grown if c["phase"] > weight["phase"]], (service, track, weight)
                assert grown or first(changes, "replicas") is None or first(changes, "replicas")["from"] > 0
            else:
                replicas = next((c["to"] for c in grown if c["phase"] < weight["phase"]), None)
                before = [c for c in changes if c["what"] == "replicas" and c["phase"] >= weight["phase"]]
                assert not [c for c in grown if c["phase"] >= weight["phase"]], (service, track)
                if replicas is None:  # never scaled: it already had its pods (stable keeps them all)
                    assert not before or before[0]["from"] >= needed(weight["to"]), (service, track)
                else:
                    assert replicas >= needed(weight["to"]), (service, track, replicas, weight)


def assert_weight_leaves_before_scale_down(document: dict, router: str, delay: int) -> None:
    for (service, track), changes in track_history(document).items():
        for shrink in (c for c in changes if c["what"] == "replicas" and c["to"] < c["from"]):
            phase = document["phases"][shrink["phase"]]
            assert phase["wait_seconds"] >= delay > 0, (service, track)
            if router != "replica-ratio":
                dropped = [c for c in changes if c["what"] == "weight" and c["to"] < c["from"]]
                assert dropped and all(c["phase"] < shrink["phase"] for c in dropped), (service, track)


@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize(("source", "target"), CHANGES)
def test_every_stage_change_moves_flags_then_pods_then_traffic(projects, router, source, target):
    document = planned(projects(router), source, target)
    assert_contract_shape(document, source, target, router)
    assert_flags_before_traffic(document)
    assert_replicas_before_weight(document, router)
    assert_weight_leaves_before_scale_down(document, router, int(RELEASE.project.routing.scale_down_delay.total_seconds()))
    # the change ends at the target's weight and flags
    history = track_history(document)
    weights = [c for c in history.get(("genesis", "canary"), []) if c["what"] == "weight"]
    expected = 0 if target in (ORDER[0], "complete") else RELEASE.stage(target).weight
    assert (weights[-1]["to"] if weights else RELEASE.stage(source).weight) == pytest.approx(expected, abs=5)


@pytest.mark.parametrize("router", ROUTERS)
def test_the_completion_rolls_stable_to_the_released_version_with_its_flags_before_traffic_returns(projects, router):
    document = planned(projects(router), ORDER[-1], "complete")
    stable = track_history(document)[("genesis", "stable")]
    roll, flags, weight = first(stable, "pods"), first(stable, "flags"), first(stable, "weight")
    canary = RELEASE.project.services[0].canary.image
    assert roll["to"] == canary and roll["from"] == RELEASE.project.services[0].stable.image
    # the new pods read the new flags file at start; traffic comes once they are ready (with the
    # replica-ratio router, traffic follows them in the phase they become ready)
    assert flags["phase"] <= roll["phase"] <= weight["phase"] and flags["phase"] < weight["phase"]
    assert flags["to"] == {f: v for f, v in RELEASE.stages[-1].flags.values.items() if RELEASE.rollback_target.flags.values[f] != v}


def test_a_rollback_moves_traffic_first_and_the_canarys_flags_with_its_scale_down(projects):
    document = planned(projects("gateway-api"), "majority", "stable")
    names = [(p["name"], p["wait_seconds"]) for p in document["phases"]]
    assert names == [("shift", 0), ("scale-down", 30)]
    assert {c["what"] for c in document["phases"][0]["changes"]} == {"weight"}
    assert document["phases"][0]["targets"][0].endswith("HTTPRoute::genesis-httproute")
    assert {c["what"] for c in document["phases"][1]["changes"]} >= {"flags", "replicas"}


def test_a_step_back_to_a_lower_weight_above_zero_is_refused_with_exit_3_naming_the_way(projects):
    code, document = plan_json(projects("gateway-api"), "majority", "canary")
    assert code == 3 and document["exit"] == 3
    assert "rollout rollback" in document["error"] and "rollout plan <deployed stage> stable" in document["error"]


def test_errors_under_json_are_json_with_exit_3():
    code, document = plan_json(REPO_ROOT, "canary", "nope")
    assert code == 3 and "Pulumi.nope.yaml" in document["error"]
    code, document = plan_json(REPO_ROOT, "majority", "complete")
    assert code == 3 and "completes from its last stage 'full'" in document["error"]


def test_the_safety_checks_catch_flags_that_move_with_the_traffic():
    """What the phases prevent: the canary's flags changing in the phase that grows its share."""
    document = planned(REPO_ROOT, "canary", "gradual")
    merged = {**document, "phases": [{**document["phases"][0], "changes": [c for c in document["phases"][0]["changes"] if c["what"] != "flags"]},
                                      {**document["phases"][1], "changes": document["phases"][1]["changes"] + [c for c in document["phases"][0]["changes"] if c["what"] == "flags"]}]}
    with pytest.raises(AssertionError):
        assert_flags_before_traffic(merged)
    unwaited = {**document, "phases": [document["phases"][0], {**document["phases"][1], "wait_seconds": 0}]}
    with pytest.raises(AssertionError):
        assert_flags_before_traffic(unwaited)
    early = {**document, "phases": [{**document["phases"][1], "changes": document["phases"][1]["changes"]}, document["phases"][0]]}
    with pytest.raises(AssertionError):
        assert_replicas_before_weight({**early, "phases": [
            {**p, "changes": p["changes"]} for p in early["phases"]]}, "gateway-api")
