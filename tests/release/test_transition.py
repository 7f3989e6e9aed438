"""The phases of a stage change, for every promotion and every rollback under every router: no
track receives traffic before it has the ready pods for it, and no track scales down before
its traffic is gone (and the scale-down delay has passed)."""

from __future__ import annotations

import itertools
import math
from datetime import timedelta

import pytest
from support.stack import REPO_ROOT

from rollout.config import load_release
from rollout.model import MIN_CANARY_PODS, TRACKS
from rollout.release.transition import (
    ROUTING,
    MissingResources,
    deployment_role,
    flags_role,
    phase_urns,
    plan_transition,
)

RELEASE = load_release(REPO_ROOT)
ROUTERS = ("gateway-api", "istio", "replica-ratio")
PROMOTIONS = list(itertools.pairwise(RELEASE.project.stage_order))
ROLLBACKS = [(s.name, RELEASE.rollback_target.name) for s in RELEASE.stages if s.weight > 0]


def project(router: str, replicas: int = 10):
    routing = RELEASE.project.routing.model_copy(update={"router": router})
    services = [s.model_copy(update={"replicas": replicas}) for s in RELEASE.project.services]
    return RELEASE.project.model_copy(update={"routing": routing, "services": services})


def needed(replicas: int, weight: int) -> int:
    return 0 if weight == 0 else max(MIN_CANARY_PODS, math.ceil(replicas * weight / 100))


def assert_safe(transition, replicas: int, delay: timedelta) -> None:
    states = transition.states
    assert len(states) == len(transition.phases) + 1
    for index, phase in enumerate(transition.phases):
        before, after = states[index], states[index + 1]
        for key, now in after.items():
            was = before[key]
            if transition.router != "replica-ratio":
                # traffic only onto pods that are already there
                assert now.replicas >= needed(replicas, now.weight), (transition, key, index)
                if now.weight > was.weight:
                    assert was.replicas >= needed(replicas, now.weight), (key, index)
            if now.replicas < was.replicas:
                # a shrinking track lost its traffic in an earlier phase, and we waited
                assert phase.wait >= delay > timedelta(0), (key, index)
                if transition.router != "replica-ratio":
                    assert was.weight == now.weight == 0 or was.weight <= after[key].weight
                    assert before[key].weight == states[-1][key].weight, "weight must move before the scale-down"
                else:
                    # traffic follows pods: the receiving track was already at full size
                    other = (key[0], "stable" if key[1] == "canary" else "canary")
                    assert before[other].replicas >= states[-1][other].replicas
        if transition.router == "replica-ratio":
            # capacity never drops below the service's size during the change
            for service in {k[0] for k in after}:
                assert sum(after[(service, t)].replicas for t in TRACKS) >= replicas


@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize(("source", "target"), PROMOTIONS + ROLLBACKS)
def test_every_promotion_and_rollback_is_ordered_safely(source, target, router):
    settings = project(router)
    transition = plan_transition(settings, RELEASE.stage(source), RELEASE.stage(target))
    assert_safe(transition, 10, settings.routing.scale_down_delay)
    final = transition.states[-1][("genesis", "canary")]
    assert final.weight == RELEASE.stage(target).weight
    assert not transition.phases[-1].targeted  # the last update converges the whole stack


@pytest.mark.parametrize("replicas", [3, 4, 7, 25])
@pytest.mark.parametrize(("source", "target"), PROMOTIONS + ROLLBACKS)
def test_ordering_holds_for_other_service_sizes(source, target, replicas):
    settings = project("gateway-api", replicas)
    assert_safe(plan_transition(settings, RELEASE.stage(source), RELEASE.stage(target)), replicas, settings.routing.scale_down_delay)


def test_a_promotion_scales_the_canary_up_then_shifts():
    transition = plan_transition(project("gateway-api"), RELEASE.stage("canary"), RELEASE.stage("gradual"))
    assert [p.name for p in transition.phases] == ["scale-up", "shift"]
    assert set(transition.phases[0].roles) == {("genesis", deployment_role("canary")), ("genesis", flags_role("canary"))}
    assert transition.phases[0].changes == (
        "genesis: canary flags pipelex-parallel-steps on",
        "genesis: canary replicas 2 -> 5 (pulumi waits until they are ready)",
    )
    # the canary's running pods see their new flags before their share grows
    assert transition.phases[1].wait == timedelta(seconds=75)
    assert transition.marker(0) == "[1/2 scale-up]" and transition.marker(1) == "[2/2 shift]"


def test_a_rollback_shifts_waits_then_scales_down():
    transition = plan_transition(project("istio"), RELEASE.stage("majority"), RELEASE.stage("stable"))
    assert [p.name for p in transition.phases] == ["shift", "scale-down"]
    assert set(transition.phases[0].roles) == {("genesis", ROUTING)}  # traffic first, nothing else
    assert transition.phases[1].wait == timedelta(seconds=30)
    assert "genesis: canary replicas 8 -> 0" in transition.phases[1].changes


def test_replica_ratio_scales_the_receiving_track_first():
    promotion = plan_transition(project("replica-ratio"), RELEASE.stage("canary"), RELEASE.stage("gradual"))
    # no routing objects: the canary's new pods are the shift, so its flags go first, then the
    # pods after the flags reached the running canary pod, then stable shrinks
    assert [(p.name, p.roles, p.wait.total_seconds()) for p in promotion.phases] == [
        ("flags", (("genesis", flags_role("canary")),), 0),
        ("scale-up", (("genesis", deployment_role("canary")),), 75),
        ("scale-down", (), 30),
    ]
    rollback = plan_transition(project("replica-ratio"), RELEASE.stage("majority"), RELEASE.stage("stable"))
    assert rollback.phases[0].roles[0] == ("genesis", deployment_role("stable"))
    assert rollback.states[1][("genesis", "stable")].replicas == 10  # stable whole before canary goes


def test_the_scale_down_delay_comes_from_routing_config():
    settings = project("gateway-api")
    settings = settings.model_copy(update={"routing": settings.routing.model_copy(update={"scale_down_delay": timedelta(seconds=90)})})
    transition = plan_transition(settings, RELEASE.stage("full"), RELEASE.stage("stable"))
    assert transition.phases[-1].wait == timedelta(seconds=90)


def test_reapplying_a_stage_is_one_untargeted_update():
    transition = plan_transition(project("gateway-api"), RELEASE.stage("gradual"), RELEASE.stage("gradual"))
    assert [(p.name, p.roles) for p in transition.phases] == [("apply", ())]
    assert transition.marker(0) == ""


def test_phase_urns_come_from_the_stack_outputs_and_missing_ones_are_named():
    outputs = {"genesis": {"resources": {
        "deployments": {"stable": "urn:s", "canary": "urn:c"}, "routing": ["urn:r"], "flags": {"stable": "urn:fs", "canary": "urn:fc"},
    }}}
    rollback = plan_transition(project("gateway-api"), RELEASE.stage("canary"), RELEASE.stage("stable"))
    assert phase_urns(rollback.phases[0], outputs) == ["urn:r"]
    assert phase_urns(rollback.phases[1], outputs) == []
    with pytest.raises(MissingResources, match="no URN for genesis routing"):
        phase_urns(rollback.phases[0], {"genesis": {"namespace": "genesis"}})


@pytest.mark.parametrize(("source", "target"), [("canary", "gradual"), ("majority", "stable")])
def test_the_safety_check_catches_a_change_made_in_one_update(source, target):
    """What the phases prevent: one update moving weights and replicas together."""
    from rollout.release.transition import Phase, Transition

    good = plan_transition(project("gateway-api"), RELEASE.stage(source), RELEASE.stage(target))
    at_once = Transition(source, target, good.router, (Phase("apply", (), timedelta(0), ()),), (good.states[0], good.states[-1]))
    with pytest.raises(AssertionError):
        assert_safe(at_once, 10, timedelta(seconds=30))
