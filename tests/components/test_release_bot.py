"""The in-cluster release bot as the program declares it (`genesis-rollout:bot`, mode cluster):
invariants over `rollout render` of every stage, router and monitoring mode. The program runs
under the Pulumi SDK's mock runtime (no engine, no API server here); the properties are about
what it registers: one ticking bot, on the stage's own check grid, non-root, read-only, secrets
only as files, and rights for exactly what the program manages."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from support.stack import REPO_ROOT, rendered, run_values, stage_values

from components.bot_rights import AWAIT_READS, CHART_NAMESPACED, managed_kinds
from components.release_bot import BOT_LABELS, LEASE, NAME, REPORT_DIR, SECRETS_DIR
from rollout.config import load_release
from rollout.model import STAGE_ORDER, ProjectSettings
from rollout.release.lease import LeaderElector
from rollout.release.watch import MAX_SLEEP
from rollout.review.render import render

ROUTERS = ("gateway-api", "istio", "replica-ratio")
RELEASE = load_release(REPO_ROOT)
BOT_OWN = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}  # a person's `up` (RBAC escalation)
PLURAL = {"Deployment": "deployments", "Service": "services", "ConfigMap": "configmaps",
          "PodDisruptionBudget": "poddisruptionbudgets", "HTTPRoute": "httproutes", "VirtualService": "virtualservices",
          "DestinationRule": "destinationrules", "ServiceMonitor": "servicemonitors", "PodMonitor": "podmonitors",
          "PrometheusRule": "prometheusrules", "AlertmanagerConfig": "alertmanagerconfigs"}
SECRETISH = re.compile(r"TOKEN|PASSWORD|PASSPHRASE|SECRET|CREDENTIAL|KEY", re.I)


def variant(router: str, mode: str):
    values = stage_values("canary")
    values["routing"] = {**values["routing"], "router": router}
    values["monitoring"] = {**values["monitoring"], "mode": mode}
    return values, run_values(values)


def bot_objects(stack):
    return {r.name: r.inputs for r in stack.kubernetes_objects() if r.name.startswith("release-bot-")}


def pod_of(stack):
    return stack.resources["release-bot-deployment"].inputs["spec"]["template"]["spec"]


@pytest.mark.parametrize("stage", STAGE_ORDER)
def test_render_of_every_stage_holds_the_bots_workload_account_roles_and_monitor(stage, tmp_path: Path):
    result = render(REPO_ROOT, stage, tmp_path / "out")
    manifests = tmp_path / "out" / "manifests"
    for path in (f"monitoring/deployment-{NAME}.yaml", f"monitoring/serviceaccount-{NAME}.yaml",
                 f"monitoring/podmonitor-{NAME}.yaml", f"monitoring/configmap-{NAME}-kubeconfig.yaml",
                 f"genesis/role-{NAME}.yaml", f"genesis/rolebinding-{NAME}.yaml",
                 f"monitoring/role-{NAME}.yaml", f"monitoring/rolebinding-{NAME}.yaml",
                 f"_cluster/clusterrole-{NAME}.yaml", f"_cluster/clusterrolebinding-{NAME}.yaml"):
        assert (manifests / path).is_file(), path
    # every child is parented to the one ReleaseBot component
    parents = {r.name: r.parent for r in result.stack.kubernetes_objects() if r.name.startswith("release-bot-")}
    (component,) = result.stack.of_type("genesis:rollout:ReleaseBot")
    assert len(parents) == 10 and set(parents.values()) == {component.name}


@pytest.mark.parametrize("stage", STAGE_ORDER)
def test_one_bot_ticks_at_a_time_and_never_stops_ticking(stage):
    """No two ticks at once: one replica, a new version only beside the old (maxUnavailable 0),
    and `--leader-elect` on a Lease the bot's Role lets it renew. At least every minute: `watch
    --forever` wakes at every check instant of the stage and at least every minute between them
    (tests/release/test_watch.py), and a dead leader's Lease is taken over within a minute."""
    stack = rendered(stage)
    deployment = stack.resources["release-bot-deployment"].inputs["spec"]
    assert deployment["replicas"] == 1
    assert deployment["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    (container,) = pod_of(stack)["containers"]
    assert container["command"] == ["rollout"]
    args = container["args"]
    assert args[:3] == ["watch", "--forever", "--leader-elect"]
    assert args[args.index("--lease-name") + 1] == LEASE
    assert "--max-ticks" not in args
    assert MAX_SLEEP <= timedelta(minutes=1)  # a tick at least every minute, between check instants too
    elector = LeaderElector(api=None, identity="x")  # type: ignore[arg-type]  # the defaults the pod runs with
    assert elector.lease_seconds <= 60 and elector.retry < elector.renew_deadline < elector.lease_seconds
    role = stack.resources["release-bot-role-monitoring"].inputs
    lease_rules = [r for r in role["rules"] if r["apiGroups"] == ["coordination.k8s.io"]]
    assert {"resources": ["leases"], "resourceNames": [LEASE], "verbs": ["get", "update"],
            "apiGroups": ["coordination.k8s.io"]} in lease_rules
    # the grace period lets a tick in flight finish a stage change after SIGTERM
    assert pod_of(stack)["terminationGracePeriodSeconds"] >= 600


@pytest.mark.parametrize("stage", STAGE_ORDER)
def test_the_bot_runs_as_non_root_on_a_read_only_root_filesystem(stage):
    pod = pod_of(rendered(stage))
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["runAsNonRoot"] is True and context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    # what it writes goes to volumes: /tmp (Pulumi's home and workspaces) and the reports
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/tmp", str(Path(REPORT_DIR).parent)} <= mounts


@pytest.mark.parametrize("stage", STAGE_ORDER)
def test_no_secret_in_env_or_args_only_files_from_secrets(stage):
    pod = pod_of(rendered(stage))
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert all(set(e) == {"name", "value"} for e in env.values()), "no valueFrom: no secretKeyRef in env"
    for name, entry in env.items():
        if SECRETISH.search(name):
            assert name.endswith("_FILE") and entry["value"].startswith(SECRETS_DIR + "/"), name
    assert not any(SECRETISH.search(arg) for arg in container["args"])
    secret_volumes = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    for name, entry in env.items():
        if name.endswith("_FILE"):
            folder, key = entry["value"].rsplit("/", 1)
            volume = mounts[folder]["name"]
            assert mounts[folder]["readOnly"] is True
            assert secret_volumes[volume]["items"] == [{"key": key, "path": key}]
    # the Pulumi Cloud token of the default config arrives this way
    assert env["PULUMI_ACCESS_TOKEN_FILE"]["value"] == f"{SECRETS_DIR}/pulumi-token/token"
    assert secret_volumes["pulumi-token"]["secretName"] == "pulumi-access-token"


@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize("mode", ["install", "existing"])
def test_no_cluster_admin_no_wildcards_and_roles_only_in_the_clusters_namespaces(router, mode):
    values, stack = variant(router, mode)
    project = ProjectSettings.model_validate({k: values[k] for k in ("services", "routing", "monitoring", "cluster", "bot")
                                              if k in values})
    objects = bot_objects(stack)
    for name, obj in objects.items():
        for rule in obj.get("rules", []):
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(field, []), (name, rule)
        ref = obj.get("roleRef")
        if ref:
            assert ref["name"] == NAME and ref["name"] not in ("cluster-admin", "admin", "edit")
    roles = {obj["metadata"]["namespace"] for obj in objects.values() if obj["kind"] == "Role"}
    assert roles == set(project.cluster.namespaces)
    cluster_roles = [obj for obj in objects.values() if obj["kind"] == "ClusterRole"]
    assert len(cluster_roles) == (1 if mode == "install" else 0)


@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize("mode", ["install", "existing"])
def test_the_roles_grant_exactly_the_kinds_the_program_writes_per_namespace(router, mode):
    """Every kind the program registers in a namespace (apart from the bot's own rights objects,
    which only a person may change) is writable there, and nothing else is: the rights follow the
    program, router and mode. Read-only: what pulumi-kubernetes watches while it awaits."""
    values, stack = variant(router, mode)
    project = ProjectSettings.model_validate({k: values[k] for k in ("services", "routing", "monitoring", "cluster", "bot")
                                              if k in values})
    written: dict[str, set[tuple[str, str]]] = {}
    for resource in stack.kubernetes_objects():
        obj = resource.inputs
        if obj["kind"] in BOT_OWN:
            continue
        group = obj["apiVersion"].rpartition("/")[0]
        written.setdefault(obj["metadata"]["namespace"], set()).add((group, PLURAL[obj["kind"]]))
    assert managed_kinds(project) == written
    for namespace in project.cluster.namespaces:
        rules = stack.resources[f"release-bot-role-{namespace}"].inputs["rules"]
        writable = {(g, r) for rule in rules if "delete" in rule["verbs"] for g in rule["apiGroups"] for r in rule["resources"]}
        readable = {(g, r) for rule in rules if rule["verbs"] == ["get", "list", "watch"]
                    for g in rule["apiGroups"] for r in rule["resources"]}
        chart = set(CHART_NAMESPACED) if mode == "install" and namespace == project.monitoring.namespace else set()
        assert writable == written.get(namespace, set()) | chart
        assert readable == set(AWAIT_READS)
        assert ("", "secrets") not in writable or chart, "Secrets only for the chart's own, in install mode"


def test_the_in_cluster_kubeconfig_names_the_programs_context_with_the_pods_token():
    stack = rendered("canary")
    config = yaml.safe_load(stack.resources["release-bot-kubeconfig"].inputs["data"]["config"])
    assert config["current-context"] == RELEASE.project.cluster.context
    (user,) = config["users"]
    assert user["user"] == {"tokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token"}
    (container,) = pod_of(stack)["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["KUBECONFIG"] == "/etc/rollout/kubeconfig/config"
    assert env["ROLLOUT_BOT_IMAGE"] == container["image"] == RELEASE.project.bot.image


def test_the_pod_monitor_scrapes_the_bots_metrics_port():
    stack = rendered("canary")
    monitor = stack.resources["release-bot-podmonitor"].inputs
    assert monitor["spec"]["selector"]["matchLabels"] == BOT_LABELS
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    (container,) = pod_of(stack)["containers"]
    assert container["ports"] == [{"name": "metrics", "containerPort": RELEASE.project.bot.metrics_port}]
    assert container["args"][container["args"].index("--metrics-port") + 1] == str(RELEASE.project.bot.metrics_port)
    labels = stack.resources["release-bot-deployment"].inputs["spec"]["template"]["metadata"]["labels"]
    assert BOT_LABELS.items() <= labels.items()


def test_external_mode_declares_no_bot():
    values = stage_values("canary")
    values["bot"] = {"mode": "external"}
    assert bot_objects(run_values(values)) == {}


@pytest.mark.parametrize(
    ("bot", "message"),
    [
        ({"namespace": "elsewhere"}, "bot.namespace 'elsewhere' not in the namespaces"),
        ({"image": "ghcr.io/genesis/bot"}, "image must carry a tag or digest"),
        ({"pulumi": {"accessToken": None}}, "Pulumi Cloud (no backendUrl) needs accessToken"),
        ({"pulumi": {"backendUrl": "s3://user:pw@bucket"}}, "String should match pattern"),
        ({"terminationGrace": "10s"}, "must be between 1m and 1h"),
        ({"mode": "cron"}, "Input should be 'cluster' or 'external'"),
    ],
)
def test_a_bad_bot_config_is_refused_naming_the_key(bot, message):
    from components.program import StackConfigError

    values = stage_values("canary")
    values["bot"] = bot
    with pytest.raises(StackConfigError, match=re.escape(message)):
        run_values(values)


def test_pulumi_yaml_declares_the_bot_in_cluster_mode():
    raw = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())["config"]["genesis-rollout:bot"]["value"]
    assert raw["mode"] == "cluster"
    assert RELEASE.project.bot.mode == "cluster"


def test_the_cluster_role_covers_exactly_the_charts_cluster_scoped_rights():
    """Derived from rollout.monitoring.cluster_scope (docs/stack.md, "Cluster-scoped rights"):
    every kind listed there, nothing else; names only where RBAC can restrict by name."""
    from rollout.monitoring.cluster_scope import CLUSTER_SCOPED_RIGHTS

    rules = rendered("canary").resources["release-bot-clusterrole"].inputs["rules"]
    granted = {(g, r) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]}
    assert granted == {(right.api_group, right.resource) for right in CLUSTER_SCOPED_RIGHTS}
    for rule in rules:
        if "delete" in rule["verbs"] or "escalate" in rule["verbs"] or "bind" in rule["verbs"]:
            assert rule.get("resourceNames"), rule
        if rule["resources"] == ["customresourcedefinitions"]:
            assert "delete" not in rule["verbs"]
