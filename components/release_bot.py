"""The release bot in the cluster (`genesis-rollout:bot`, mode cluster): a Deployment running
`rollout watch --forever --leader-elect`, its ServiceAccount, Roles, kubeconfig and PodMonitor.

Why a Deployment with a Lease and not a CronJob (docs/bot.md has the whole argument):
- the bot's metrics are scraped from a long-running process (a PodMonitor; no Pushgateway), and
  `GenesisReleaseBotSilent` reads them;
- the watch wakes at the stage's own check instants, so the check interval, not a scheduler,
  sets how fast a rollback lands; a CronJob adds the controller's pass, the pod start and the
  image's start-up to every check, and its `concurrencyPolicy: Forbid` is documented as best
  effort (a Job can be created twice in rare cases);
- never twice: only the Lease holder ticks, and the stack's compare-and-apply and phase markers
  (rollout.release.deployer) stop a second tick from applying anything even if two ever ran.

Children (typed attributes, every one parented here, all through the program's one provider):
`service_account`; `roles` and `role_bindings` per namespace of `cluster.namespaces` (rights in
components.bot_rights); `cluster_role` and `cluster_role_binding` only in install mode (the
chart's CRDs and ClusterRoles); `kubeconfig` (a ConfigMap: the context `cluster.context` pointing
at the in-cluster API with the pod's own token file, so the program's explicit provider works
unchanged inside the pod); `deployment`; `pod_monitor`.

Secrets are mounted as files from existing Kubernetes Secrets and named to the bot by
`*_FILE` variables; nothing secret is in an environment value or an argument.
"""

from __future__ import annotations

import os
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from components.bot_rights import install_cluster_rules, namespace_rules
from components.monitoring import MONITORING_API, common_labels
from rollout.model import BotConfig, ProjectSettings, SecretRef, format_duration

NAME = "genesis-rollout-bot"
LEASE = NAME
BOT_LABELS = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": "release-bot"}
WORKDIR = "/app"  # the image's working directory: the project (Pulumi.yaml, stage files, charts/)
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SECRETS_DIR = "/var/run/secrets/rollout"
KUBECONFIG_DIR = "/etc/rollout/kubeconfig"
REPORT_DIR = "/var/lib/rollout/reports"
RUN_AS = 10001  # the image's user (Dockerfile)
IMAGE_ENV = "ROLLOUT_BOT_IMAGE"  # the running bot declares its own image: its own `up` never replaces it


def bot_image(bot: BotConfig) -> str:
    """The image the program declares for the bot: the running bot's own (set in its pod), else
    `bot.image`. So an untargeted `pulumi up` by the bot never rolls the bot itself; a new version
    is a person's `pulumi up` with a new `bot.image` (docs/bot.md, upgrade)."""
    return os.environ.get(IMAGE_ENV) or bot.image


def in_cluster_kubeconfig(context: str, namespace: str) -> str:
    """A kubeconfig whose only context has the name the program's provider asks for, pointing at
    the API server through its in-cluster Service with the pod's ServiceAccount token file (the
    client re-reads `tokenFile`, so rotated projected tokens keep working)."""
    return yaml.safe_dump({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "in-cluster", "cluster": {
            "server": "https://kubernetes.default.svc",
            "certificate-authority": f"{SERVICE_ACCOUNT_DIR}/ca.crt",
        }}],
        "users": [{"name": NAME, "user": {"tokenFile": f"{SERVICE_ACCOUNT_DIR}/token"}}],
        "contexts": [{"name": context, "context": {"cluster": "in-cluster", "user": NAME, "namespace": namespace}}],
        "current-context": context,
    }, sort_keys=True)


def service_urls(project: ProjectSettings) -> dict[str, str]:
    """Where the bot reads metrics and posts alerts: the config's URLs, else (install mode) the
    Services kube-prometheus-stack creates for its release."""
    bot, monitoring = project.bot, project.monitoring
    base = f"{monitoring.release_name}-{{}}.{monitoring.namespace}.svc"
    urls = {
        "PROMETHEUS_URL": bot.prometheus_url or f"http://{base.format('prometheus')}:9090",
        "ALERTMANAGER_URL": bot.alertmanager_url or f"http://{base.format('alertmanager')}:9093",
    }
    if bot.grafana_url or monitoring.grafana.url:
        urls["GRAFANA_URL"] = bot.grafana_url or monitoring.grafana.url  # type: ignore[assignment]
    return urls


def secret_files(bot: BotConfig) -> list[tuple[str, str, SecretRef]]:
    """(volume name, the variable naming the file, the Secret key) for every credential."""
    files: list[tuple[str, str, SecretRef]] = []
    pulumi_ = bot.pulumi
    if pulumi_.access_token:
        files.append(("pulumi-token", "PULUMI_ACCESS_TOKEN_FILE", pulumi_.access_token))
    if pulumi_.passphrase:
        files.append(("pulumi-passphrase", "PULUMI_CONFIG_PASSPHRASE_FILE", pulumi_.passphrase))
    if pulumi_.backend_credentials and pulumi_.backend_credentials_env:
        files.append(("backend-credentials", pulumi_.backend_credentials_env, pulumi_.backend_credentials))
    if bot.grafana_token:
        files.append(("grafana-token", "GRAFANA_TOKEN_FILE", bot.grafana_token))
    return files


def container_command(bot: BotConfig) -> tuple[list[str], list[str]]:
    """The container's command and args: what tests/release/test_bot_entrypoint.py runs as is."""
    return ["rollout"], [
        "watch", "--forever", "--leader-elect", "--lease-name", LEASE,
        "--stack", bot.stack, "--metrics-port", str(bot.metrics_port),
    ]


def container_env(project: ProjectSettings, image: str) -> list[dict[str, str]]:
    bot = project.bot
    env = {
        **service_urls(project),
        IMAGE_ENV: image,
        "KUBECONFIG": f"{KUBECONFIG_DIR}/config",
        "HOME": "/tmp/home",  # the root filesystem is read-only: Pulumi writes under $HOME/.pulumi
        "PULUMI_HOME": "/tmp/pulumi-home",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "ROLLOUT_USER": NAME,
        "ROLLOUT_REPORT_DIR": REPORT_DIR,
    }
    if bot.pulumi.backend_url:
        env["PULUMI_BACKEND_URL"] = bot.pulumi.backend_url
    for volume, variable, ref in secret_files(bot):
        env[variable] = f"{SECRETS_DIR}/{volume}/{ref.key}"
    return [{"name": k, "value": v} for k, v in sorted(env.items())]


def pod_spec(project: ProjectSettings, image: str, service_account: pulumi.Input[str], kubeconfig: pulumi.Input[str]) -> dict[str, Any]:
    bot = project.bot
    command, args = container_command(bot)
    secrets = secret_files(bot)
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {}},
        {"name": "reports", "emptyDir": {}},
        {"name": "kubeconfig", "configMap": {"name": kubeconfig}},
        *({"name": volume, "secret": {"secretName": ref.name, "defaultMode": 0o440,
                                      "items": [{"key": ref.key, "path": ref.key}]}}
          for volume, _, ref in secrets),
    ]
    mounts = [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "reports", "mountPath": os.path.dirname(REPORT_DIR)},
        {"name": "kubeconfig", "mountPath": KUBECONFIG_DIR, "readOnly": True},
        *({"name": volume, "mountPath": f"{SECRETS_DIR}/{volume}", "readOnly": True} for volume, _, _ in secrets),
    ]
    probe = {"httpGet": {"path": "/metrics", "port": "metrics"}, "periodSeconds": 10, "failureThreshold": 6}
    return {
        "serviceAccountName": service_account,
        "automountServiceAccountToken": True,  # the Lease and the in-cluster kubeconfig use its token
        "terminationGracePeriodSeconds": int(bot.termination_grace.total_seconds()),
        "securityContext": {
            "runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS, "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [{
            "name": "bot",
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "command": command,
            "args": args,
            "workingDir": WORKDIR,
            "env": container_env(project, image),
            "ports": [{"name": "metrics", "containerPort": bot.metrics_port}],
            # ready while it serves metrics, leader or not: a rolling upgrade can then finish and
            # hand the old pod its SIGTERM (it finishes its tick and releases the Lease)
            "readinessProbe": probe,
            "livenessProbe": {**probe, "initialDelaySeconds": 30},
            "resources": bot.resources.model_dump(by_alias=True),
            "securityContext": {
                "runAsNonRoot": True, "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
            },
            "volumeMounts": mounts,
        }],
        "volumes": volumes,
    }


class ReleaseBot(pulumi.ComponentResource):
    """The in-cluster release bot and everything it needs to run with least privilege."""

    service_account: k8s.core.v1.ServiceAccount
    roles: dict[str, k8s.rbac.v1.Role]
    role_bindings: dict[str, k8s.rbac.v1.RoleBinding]
    cluster_role: k8s.rbac.v1.ClusterRole | None
    cluster_role_binding: k8s.rbac.v1.ClusterRoleBinding | None
    kubeconfig: k8s.core.v1.ConfigMap
    deployment: k8s.apps.v1.Deployment
    pod_monitor: k8s.apiextensions.CustomResource

    def __init__(
        self,
        name: str,
        project: ProjectSettings,
        provider: pulumi.ProviderResource,
        depends_on: list[pulumi.Resource] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("genesis:rollout:ReleaseBot", name, None, opts)
        bot = project.bot
        namespace = bot.namespace
        labels = {**common_labels(project.monitoring), **BOT_LABELS}
        child = pulumi.ResourceOptions(parent=self, provider=provider)

        def meta(object_name: str, ns: str | None = namespace) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(name=object_name, namespace=ns, labels=labels)

        self.service_account = k8s.core.v1.ServiceAccount(
            f"{name}-serviceaccount", metadata=meta(NAME), opts=child
        )
        subject = k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name=NAME, namespace=namespace)
        self.roles, self.role_bindings = {}, {}
        for ns in project.cluster.namespaces:
            self.roles[ns] = k8s.rbac.v1.Role(
                f"{name}-role-{ns}", metadata=meta(NAME, ns), rules=namespace_rules(project, ns, LEASE), opts=child
            )
            self.role_bindings[ns] = k8s.rbac.v1.RoleBinding(
                f"{name}-rolebinding-{ns}", metadata=meta(NAME, ns), subjects=[subject],
                role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="Role", name=NAME),
                opts=child,
            )
        self.cluster_role = self.cluster_role_binding = None
        if project.monitoring.mode == "install":
            self.cluster_role = k8s.rbac.v1.ClusterRole(
                f"{name}-clusterrole", metadata=meta(NAME, None), rules=install_cluster_rules(project), opts=child
            )
            self.cluster_role_binding = k8s.rbac.v1.ClusterRoleBinding(
                f"{name}-clusterrolebinding", metadata=meta(NAME, None), subjects=[subject],
                role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=NAME),
                opts=child,
            )
        assert project.cluster.context is not None  # the model requires it in cluster mode
        self.kubeconfig = k8s.core.v1.ConfigMap(
            f"{name}-kubeconfig", metadata=meta(f"{NAME}-kubeconfig"),
            data={"config": in_cluster_kubeconfig(project.cluster.context, namespace)}, opts=child,
        )
        image = bot_image(bot)
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=meta(NAME),
            spec={
                "replicas": 1,
                "selector": {"matchLabels": BOT_LABELS},
                # a new version starts beside the old one, which finishes its tick and hands over the Lease
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": pod_spec(project, image, self.service_account.metadata.name, self.kubeconfig.metadata.name),
                },
            },
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[*self.role_bindings.values()])),
        )
        self.pod_monitor = k8s.apiextensions.CustomResource(
            f"{name}-podmonitor",
            api_version=MONITORING_API,
            kind="PodMonitor",
            metadata=meta(NAME),
            spec={
                "selector": {"matchLabels": BOT_LABELS},
                "podMetricsEndpoints": [{
                    "port": "metrics", "path": "/metrics",
                    "interval": format_duration(project.monitoring.scrape_interval),
                }],
            },
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=depends_on or [])),
        )
        self.register_outputs({})
