"""The in-cluster bot's container, run as a local process: the exact command and arguments of the
Deployment the program renders, its environment with the in-cluster addresses swapped for
loopback ones, against a REAL Prometheus (synthetic pods, the stage's rules), a REAL
Alertmanager (delivering to a webhook), the Pulumi CLI stand-in (rollout/local/pulumi_standin,
driven by the real Automation API) and the Lease API stand-in (tests/support/kube_lease.py).
Used by tests/release/test_bot_entrypoint.py and benchmarks/bench_incluster.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterator

from support.fake_pulumi import FakePulumi, update
from support.kube_lease import KubeLeaseServer
from support.live import LiveStack, compressed_config, live_stack
from support.stack import compressed_project

from rollout.review.localstack import WebhookReceiver, start_alertmanager
from rollout.review.mock_runtime import render_stage

APP = "genesis"
PREFIX = "urn:pulumi:prod::genesis-rollout::genesis:rollout:WeightedService$"
SERVICES = {APP: {"resources": {
    "deployments": {t: f"{PREFIX}kubernetes:apps/v1:Deployment::{APP}-{t}-deployment" for t in ("stable", "canary")},
    "routing": [f"{PREFIX}kubernetes:gateway.networking.k8s.io/v1:HTTPRoute::{APP}-httproute"],
    "flags": {t: f"{PREFIX}genesis:rollout:FeatureFlagSet$kubernetes:core/v1:ConfigMap::{APP}-{t}-flags-configmap"
              for t in ("stable", "canary")},
}}}
TOKEN = "pul-test-5c1e0a"  # what the mounted Secret file holds
# the in-cluster addresses (Services, mounted files) the local run replaces with its own
LOCAL = ("PROMETHEUS_URL", "ALERTMANAGER_URL", "HOME", "PULUMI_HOME", "PULUMI_ACCESS_TOKEN_FILE", "ROLLOUT_REPORT_DIR",
         "KUBECONFIG")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Env:
    """Takes what FakePulumi would put in the test process's environment, for a child process."""

    def __init__(self) -> None:
        self.env: dict[str, str] = {}

    def setenv(self, key: str, value: str) -> None:
        self.env[key] = value


def container(project: Path, stage: str = "canary") -> tuple[list[str], dict[str, str]]:
    """command + args, and env, of the bot's container as the program declares it for `project`."""
    from rollout.review.mock_runtime import values_for_stage  # noqa: F401 - render_stage reads them

    stack = render_stage(project, stage)
    (spec,) = stack.resources["release-bot-deployment"].inputs["spec"]["template"]["spec"]["containers"]
    return [*spec["command"], *spec["args"]], {e["name"]: e["value"] for e in spec["env"]}


@dataclass
class BotRun:
    argv: list[str]
    env: dict[str, str]
    project: Path
    fake: FakePulumi
    lease: KubeLeaseServer
    live: LiveStack
    receiver: WebhookReceiver
    metrics_url: str
    processes: list[subprocess.Popen[str]] = field(default_factory=list)

    def start(self, pod: str = "a") -> subprocess.Popen[str]:
        """One pod of the Deployment: HOSTNAME is the pod's name (its Lease identity); a second
        pod on this one host needs its own metrics port."""
        argv = list(self.argv)
        if pod != "a":
            argv[argv.index("--metrics-port") + 1] = str(free_port())
        log = (self.project / f"bot-{pod}.log").open("w")
        process = subprocess.Popen(argv, cwd=self.project, env={**self.env, "HOSTNAME": f"bot-pod-{pod}"},
                                   stdout=log, stderr=subprocess.STDOUT, text=True)
        self.processes.append(process)
        return process

    def output(self, pod: str = "a") -> str:
        path = self.project / f"bot-{pod}.log"
        return path.read_text() if path.exists() else ""

    def seed_canary(self, since: datetime) -> None:
        self.fake.seed(outputs={"stage": "canary", "weight": 10, "services": SERVICES},
                       history=[update(1, "rollout: promote stable -> canary: day 1", since - timedelta(seconds=3), since)],
                       tags={"rollout:notified": "1"})


@contextmanager
def bot_rig(tmp_path: Path, analysis: dict[str, Any], profile: str = "healthy") -> Iterator[BotRun]:
    """Everything around the bot's process; the caller seeds the stack and starts it."""
    interval = analysis["checkInterval"]
    with ExitStack() as stack:
        receiver = stack.enter_context(WebhookReceiver())
        am = stack.enter_context(start_alertmanager({
            "route": {"receiver": "hook", "group_by": ["alertname"], "group_wait": "1s", "group_interval": "1s",
                      "repeat_interval": "1h"},
            "receivers": [{"name": "hook", "webhook_configs": [{"url": receiver.url}]}],
        }))
        config = compressed_config([APP], check_interval=interval, window=analysis["window"],
                                   consecutive_failures=analysis["consecutiveFailures"],
                                   min_canary_requests=analysis["minCanaryRequests"])
        live = stack.enter_context(live_stack(config, {APP: profile}))
        lease = stack.enter_context(KubeLeaseServer(tmp_path / "kube"))
        port = free_port()
        project = compressed_project(tmp_path, analysis, metricsPort=port)
        argv, pod_env = container(project)
        recorder = _Env()
        fake = FakePulumi(tmp_path, recorder)
        secrets = tmp_path / "secrets"
        secrets.mkdir()
        (secrets / "token").write_text(TOKEN + "\n")
        local = {
            "PROMETHEUS_URL": live.prometheus.url, "ALERTMANAGER_URL": am.url,
            "HOME": str(tmp_path / "home"), "PULUMI_HOME": str(tmp_path / "pulumi-home"),
            "PULUMI_ACCESS_TOKEN_FILE": str(secrets / "token"), "ROLLOUT_REPORT_DIR": str(project / "reports"),
            "KUBECONFIG": str(tmp_path / "kubeconfig-unused"),
        }
        assert set(local) == set(LOCAL) and set(LOCAL) <= set(pod_env)
        env = {
            **{k: v for k, v in pod_env.items() if k not in LOCAL}, **local, **recorder.env, **lease.env(),
            # `rollout` and the stand-in's interpreter: the image has both on PATH
            "PATH": f"{recorder.env['PATH']}:{Path(sys.executable).parent}",
            "ROLLOUT_NOTIFY_BACKOFF": "0.1", "PYTHONUNBUFFERED": "1", "LANG": os.environ.get("LANG", "C.UTF-8"),
        }
        run = BotRun(argv, env, project, fake, lease, live, receiver, f"http://127.0.0.1:{port}/metrics")
        try:
            yield run
        finally:
            for process in run.processes:
                if process.poll() is None:
                    process.kill()
                    process.wait(10)
