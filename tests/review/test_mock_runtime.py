"""rollout.review.mock_runtime: the recording harness around the Pulumi SDK's mock runtime."""

from __future__ import annotations

import json

import pulumi
import pulumi_kubernetes as k8s
import pytest
from support.stack import REPO_ROOT

from rollout.review.mock_runtime import (
    SECRET_PLACEHOLDER,
    DuplicateResourceName,
    RecordingMocks,
    config_strings,
    run_program,
    values_for_stage,
)


class Box(pulumi.ComponentResource):
    def __init__(self, name: str, data: dict, opts=None):
        super().__init__("test:index:Box", name, None, opts)
        self.config_map = k8s.core.v1.ConfigMap(
            f"{name}-cm", metadata={"name": name}, data=data, opts=pulumi.ResourceOptions(parent=self)
        )


def box_program():
    config = pulumi.Config()
    stage = config.require_object("stage")
    box = Box("box", {"weight": str(stage["weight"])})
    pulumi.export("weight", stage["weight"])
    pulumi.export("data", box.config_map.data)
    pulumi.export("replicas", 10)


def test_records_type_inputs_parent_and_custom_and_resolves_exports():
    stack = run_program(values_for_stage(REPO_ROOT, "gradual"), box_program)
    assert sorted(stack.resources) == ["box", "box-cm"]
    box, config_map = stack.resources["box"], stack.resources["box-cm"]
    assert (box.type, box.custom, box.parent) == ("test:index:Box", False, None)
    assert (config_map.type, config_map.custom, config_map.parent) == ("kubernetes:core/v1:ConfigMap", True, "box")
    assert config_map.parent_urn == box.urn
    assert config_map.inputs == {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "box"}, "data": {"weight": "50"}}
    assert stack.outputs == {"weight": 50, "data": {"weight": "50"}, "replicas": 10}
    assert isinstance(stack.outputs["replicas"], int)
    assert [r.name for r in stack.kubernetes_objects()] == ["box-cm"]


def test_each_run_starts_from_a_fresh_root_stack():
    first = run_program(values_for_stage(REPO_ROOT, "canary"), box_program)
    second = run_program(values_for_stage(REPO_ROOT, "full"), lambda: pulumi.export("only", True))
    assert first.outputs["weight"] == 10
    assert second.outputs == {"only": True} and second.resources == {}


def test_config_goes_over_as_strings_like_the_cli():
    strings, secrets = config_strings(
        {"name": "x", "weight": 10, "on": True, "obj": {"a": [1]}, "other:key": "v"}, "proj"
    )
    assert strings == {"proj:name": "x", "proj:weight": "10", "proj:on": "true", "proj:obj": '{"a": [1]}', "other:key": "v"}
    assert secrets == []


def test_secure_values_become_secret_keys_without_ciphertext():
    strings, secrets = config_strings({"hook": {"secure": "v1:abc"}, "deep": {"x": [{"secure": "v1:def"}]}}, "p")
    assert secrets == ["p:hook", "p:deep"]
    assert strings["p:hook"] == SECRET_PLACEHOLDER
    assert json.loads(strings["p:deep"]) == {"x": [SECRET_PLACEHOLDER]}
    assert "v1:" not in json.dumps(strings)


def test_program_exceptions_propagate_and_registrations_stay_visible():
    mocks = RecordingMocks()

    def failing():
        Box("early", {})
        raise pulumi.RunError("refused on purpose")

    with pytest.raises(pulumi.RunError, match="refused on purpose"):
        run_program(values_for_stage(REPO_ROOT, "canary"), failing, mocks=mocks)
    assert {r.name for r in mocks.registrations} == {"early", "early-cm"}


def test_duplicate_logical_names_are_an_error():
    def twice():
        k8s.core.v1.ConfigMap("same", metadata={"name": "a"})
        Box("same", {})

    with pytest.raises(DuplicateResourceName, match="'same'"):
        run_program(values_for_stage(REPO_ROOT, "canary"), twice)


def test_urns_are_the_ones_the_engine_builds():
    """`pulumi up --target` needs exact URNs: the parent's whole type chain, no root Stack type
    (the SDK mock alone keeps only the parent's last type)."""
    from support.stack import rendered

    stack = rendered("canary")
    prefix = "urn:pulumi:prod::genesis-rollout::"
    assert stack.resources["genesis"].urn == prefix + "genesis:rollout:WeightedService::genesis"
    assert stack.resources["genesis-canary-deployment"].urn == (
        prefix + "genesis:rollout:WeightedService$kubernetes:apps/v1:Deployment::genesis-canary-deployment"
    )
    assert stack.resources["genesis-canary-flags-configmap"].urn == (
        prefix + "genesis:rollout:WeightedService$genesis:rollout:FeatureFlagSet$kubernetes:core/v1:ConfigMap"
        "::genesis-canary-flags-configmap"
    )
    assert stack.resources["kubernetes"].urn == prefix + "pulumi:providers:kubernetes::kubernetes"
