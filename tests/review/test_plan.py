"""`rollout plan`: the desired-state diff between two stage files (Pulumi mock runtime stand-in
for `pulumi preview`, which needs the CLI and live state)."""

from __future__ import annotations

import itertools
import re

import pytest
from support.stack import REPO_ROOT

from rollout.config import load_release
from rollout.model import STAGE_ORDER
from rollout.review.plan import MISSING, diff_inputs, flatten, plan


RELEASE = load_release(REPO_ROOT)


def field_paths(result):
    return {(c.name, f.path) for c in result.changed for f in c.fields}


def test_canary_to_gradual_changes_only_weights_canary_replicas_and_flags():
    result = plan(REPO_ROOT, "canary", "gradual")
    assert result.added == [] and result.removed == []
    assert {c.name for c in result.changed} == {
        "genesis-httproute",
        "genesis-canary-deployment",
        "genesis-canary-flags-configmap",
    }
    changes = {(c.name, f.path): (f.old, f.new) for c in result.changed for f in c.fields}
    assert changes[("genesis-httproute", "spec.rules[1].backendRefs[name=genesis-stable].weight")] == (90, 50)
    assert changes[("genesis-httproute", "spec.rules[1].backendRefs[name=genesis-canary].weight")] == (10, 50)
    assert changes[("genesis-canary-deployment", "spec.replicas")] == (2, 5)
    flag_paths = [p for (n, p) in changes if n == "genesis-canary-flags-configmap"]
    assert flag_paths == ['data["flags.json"].flags["pipelex-parallel-steps"].defaultVariant']
    assert len(changes) == 4
    assert not any(c.may_replace for c in result.changed)


# The alert rules change only where a track starts or stops taking traffic (canary alerts and
# its missing-data alert appear at the first canary stage; the stable one goes at 100%).
RULES_CHANGE = {("stable", "canary"), ("majority", "full")}


@pytest.mark.parametrize(("before", "after"), list(itertools.pairwise(STAGE_ORDER)))
def test_no_promotion_step_touches_stable_pods_services_or_flags(before, after):
    result = plan(REPO_ROOT, before, after)
    names = {c.name for c in result.changed}
    allowed = {"genesis-httproute", "genesis-canary-deployment", "genesis-canary-flags-configmap"}
    if (before, after) in RULES_CHANGE:
        assert "monitoring-prometheusrule" in names
        allowed.add("monitoring-prometheusrule")
    assert names <= allowed
    assert "genesis-httproute" in names and not result.added and not result.removed
    for change in result.changed:
        if change.name == "genesis-canary-deployment":
            assert [f.path for f in change.fields] == ["spec.replicas"]


def test_rollback_plan_returns_all_traffic_to_stable():
    result = plan(REPO_ROOT, "majority", "stable")
    changes = {(c.name, f.path): (f.old, f.new) for c in result.changed for f in c.fields}
    assert changes[("genesis-httproute", "spec.rules[1].backendRefs[name=genesis-stable].weight")] == (20, 100)
    # testers' pinned requests go to stable once the canary has no pods
    pinned_stable = changes[("genesis-httproute", "spec.rules[0].backendRefs[name=genesis-stable]")]
    pinned_canary = changes[("genesis-httproute", "spec.rules[0].backendRefs[name=genesis-canary]")]
    assert pinned_stable[0] is MISSING and pinned_stable[1]["name"] == "genesis-stable"
    assert pinned_canary[0]["name"] == "genesis-canary" and pinned_canary[1] is MISSING
    assert changes[("genesis-canary-deployment", "spec.replicas")] == (8, 0)
    flags = 'data["flags.json"].flags["fallback-mode"].defaultVariant'
    assert changes[("genesis-canary-flags-configmap", flags)] == ("off", "on")
    assert "genesis-stable-flags-configmap" not in {c.name for c in result.changed}


@pytest.mark.parametrize(("before", "after"), [*itertools.pairwise(STAGE_ORDER), *((s, "stable") for s in STAGE_ORDER[1:])])
def test_plan_prints_the_phases_in_order_with_their_commands(before, after):
    text = plan(REPO_ROOT, before, after).to_text()
    phases = [line.strip() for line in text.splitlines() if line.startswith("  ") and line.strip()[:2] in ("1.", "2.", "3.")]
    commands = [line.strip() for line in text.splitlines() if line.strip().startswith("$ pulumi up")]
    assert len(commands) == len(phases) >= 1
    assert all(c.startswith(f"$ pulumi up --stack prod --config-file Pulumi.{after}.yaml") for c in commands)
    assert "--target" not in commands[-1]  # the last update converges the whole stack
    if after == "stable":
        assert phases == ["1. shift (targeted)", "2. scale-down after 30s (whole stack)"]
        assert "HTTPRoute::genesis-httproute'" in commands[0]
    else:
        # running canary pods whose flags change get them before their share grows
        waits = RELEASE.stage(before).weight > 0 and RELEASE.stage(before).flags != RELEASE.stage(after).flags
        assert phases == ["1. scale-up (targeted)", f"2. shift{' after 1m15s' if waits else ''} (whole stack)"]
        urn = "urn:pulumi:prod::genesis-rollout::genesis:rollout:WeightedService$kubernetes:apps/v1:Deployment::genesis-canary-deployment"
        assert f"--target '{urn}'" in commands[0]


def test_markdown_plan_shows_the_order_of_the_change():
    markdown = plan(REPO_ROOT, "gradual", "majority").to_markdown()
    assert "**Order of the change:**" in markdown and "1. scale-up (targeted)" in markdown


def test_same_stage_plan_is_empty():
    result = plan(REPO_ROOT, "full", "full")
    assert result.is_empty and result.resource_count == 0
    assert "No resource changes." in result.to_markdown()


def test_text_and_markdown_name_every_change():
    result = plan(REPO_ROOT, "canary", "gradual")
    text = result.to_text()
    assert text.splitlines()[0] == "Plan canary (10%) -> gradual (50%): 3 changed, 0 added, 0 removed"
    assert "Stage change canary -> gradual: 2 phases (gateway-api)" in text
    assert "    spec.replicas: 2 -> 5" in text
    assert "pulumi preview" in text
    markdown = result.to_markdown()
    assert "| resource | object | field | from | to |" in markdown
    rows = [line for line in markdown.splitlines() if line.startswith("| `genesis")]
    assert len(rows) == 4
    assert "| `genesis-canary-deployment` | Deployment genesis/genesis-canary | `spec.replicas` | `2` | `5` |" in rows


def test_flatten_addresses_named_items_and_embedded_json():
    leaves = flatten({"spec": {"containers": [{"name": "app", "image": "a:1"}], "args": ["x", "y"]},
                      "data": {"f.json": '{"flags": {"a-b": {"on": true}}}'}})
    assert leaves == {
        ".spec.containers[name=app].name": "app",
        ".spec.containers[name=app].image": "a:1",
        ".spec.args[0]": "x",
        ".spec.args[1]": "y",
        '.data["f.json"].flags["a-b"].on': True,
    }


def test_diff_reports_added_removed_and_replacing_fields():
    changes = diff_inputs({"spec": {"selector": {"app": "a"}, "old": 1}}, {"spec": {"selector": {"app": "b"}, "new": 2}})
    assert [(c.path, c.old, c.new) for c in changes] == [
        ("spec.new", MISSING, 2),
        ("spec.old", 1, MISSING),
        ("spec.selector.app", "a", "b"),
    ]
    from rollout.review.plan import ResourceChange

    assert ResourceChange("x", "t", "o", changes).may_replace
    assert not ResourceChange("x", "t", "o", changes[:2]).may_replace


def test_long_values_are_shortened_for_display_but_kept_whole():
    from rollout.review.plan import SHOW_LIMIT, FieldChange, PlanResult, ResourceChange

    old, new = "x" * 300 + "stage canary" + "y" * 300, "x" * 300 + "stage gradual" + "y" * 300
    change = ResourceChange("cm", "kubernetes:core/v1:ConfigMap", "ConfigMap a/b", [FieldChange("data.big", old, new)])
    result = PlanResult("a", "b", 0, 10, [], [], [change])
    line = next(line for line in result.to_text().splitlines() if "data.big" in line)
    assert "stage canary" in line and "stage gradual" in line  # shown around the difference
    assert "(614 chars)" in line and "(615 chars)" in line and len(line) < 2 * SHOW_LIMIT + 80
    assert result.changed[0].fields[0].old == old
    assert "stage gradual" in result.to_markdown()


def test_plan_refuses_an_unknown_stage():
    from rollout.config import ConfigError

    with pytest.raises(ConfigError, match="Pulumi.nope.yaml"):
        plan(REPO_ROOT, "canary", "nope")


def test_rule_changes_are_named_by_alert_not_by_list_position():
    """A rollback removes the canary's alerts: the plan names each rule that goes (one line per
    rule), instead of every later rule shifting up a position (`rules[3].alert: A -> B`)."""
    result = plan(REPO_ROOT, "majority", "stable")
    (rules,) = [c for c in result.changed if c.name == "monitoring-prometheusrule"]
    paths = [f.path for f in rules.fields]
    assert not any(re.search(r"rules\[\d+\]", p) for p in paths), paths
    gone = {p.split("[alert=")[1].rstrip("]") for p in paths if "[alert=" in p}
    assert {"GenesisCanaryDataMissing", "GenesisReleaseBotSilent"} <= gone
    assert all(f.new is MISSING and f.old["alert"] in p for f, p in zip(rules.fields, paths))
    text = result.to_text()
    assert len(text.splitlines()) < 45, text
    assert "rules[alert=GenesisCanaryDataMissing]: {" in text


def test_a_repeated_rule_name_is_told_apart_by_occurrence():
    old = {"rules": [{"alert": "A", "expr": "x"}, {"alert": "B", "expr": "1"}, {"alert": "B", "expr": "2"}]}
    new = {"rules": [{"alert": "B", "expr": "1"}, {"alert": "B", "expr": "3"}]}
    changes = {c.path: (c.old, c.new) for c in diff_inputs(old, new)}
    assert changes == {"rules[alert=A]": ({"alert": "A", "expr": "x"}, MISSING), "rules[alert=B#2].expr": ("2", "3")}
