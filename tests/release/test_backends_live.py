"""The bot's checks against Prometheus-compatible backends behind authentication.

Real servers on 127.0.0.1 throughout: VictoriaMetrics (Debian `victoria-metrics`) scrapes the
synthetic Genesis pods, `vmalert` evaluates the stage's real recording rules into it, and
`vmauth` guards it with a bearer token and a basic-auth user, as a shared backend would be;
a Prometheus behind its own --web.config.file serves TLS, requires a client certificate and
basic auth. One stand-in: the tenant gateway (tests/support/tenant_gateway.py) plays Mimir's
`X-Scope-OrgID` check, in front of the real VictoriaMetrics.

Every refusal must end in an error naming the URL and the reason, never a pass, and never
echo a secret (vmauth puts a rejected token in its answer).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
import trustme
import yaml
from support.live import compressed_config, synthetic_pods
from support.tenant_gateway import TenantGateway
from typer.testing import CliRunner

from rollout.analysis.gates import CheckResult, evaluate
from rollout.cli import app
from rollout.model import StackConfig
from rollout.monitoring.alert_rules import (
    RECORDING_GROUP,
    render_rule_file,
    stack_rule_groups,
)
from rollout.release.measuring import measure
from rollout.release.prometheus import (
    Prometheus,
    PrometheusAuth,
    PrometheusError,
)
from rollout.review.localstack import (
    Running,
    start_prometheus,
    start_victoria_metrics,
    start_vmalert,
    start_vmauth,
    wait_for,
)

PROFILES = {"genesis-healthy": "healthy", "genesis-bad": "bad"}
ROLLBACK_GATES = {"error_rate", "p95_latency_seconds", "test_pass_rate"}
TOKEN = "tok-5f1c0e9a7b"
PASSWORD = "pw-3d8e21c4"
# the availability gate reads max_over_time(...[deadline]) of a recorded series: vmalert writes
# it back with its own delay, which under a loaded CI can exceed the live tests' 5 s; these
# tests are about the backends, the deadline itself is tested in test_dead_canary.py
DEADLINE = "30s"


def recording_rules_only(config: StackConfig) -> str:
    """vmalert evaluates the recording group; alerting rules would need a notifier."""
    groups = [g for g in stack_rule_groups(config)["groups"] if g["name"] == RECORDING_GROUP]
    return yaml.safe_dump({"groups": groups}, sort_keys=False)


def check(config: StackConfig, url: str, auth: PrometheusAuth, app_name: str) -> CheckResult:
    service = next(s for s in config.project.services if s.name == app_name)
    # generous bounds (not waits): a busy 2-core CI answers slowly, and a bound hit is a failure
    with Prometheus(url, auth=auth, timeout=30.0, retries=1, backoff=0.1, check_seconds=120) as prom:
        return evaluate(config.stage, measure(prom, config.stage, service))


def wait_until_judged(config: StackConfig, url: str, auth: PrometheusAuth, timeout: float = 180.0) -> None:
    """Until every gate of every service has a value: scrapes over a whole rate window and
    recording rules evaluated over them (vmalert writes back through remote write)."""

    window = config.stage.analysis.window.total_seconds()

    def full_windows() -> bool:
        # every target scraped over most of a rate window (1 s scrapes): a window that began
        # before the first scrape holds a second or two of data, and at 5 % errors of 30 req/s
        # one second has no error 22 % of the time (the mTLS case once read an error rate of
        # 0 % for the bad canary that way, under a loaded CI)
        with Prometheus(url, auth=auth, timeout=30.0, retries=1, backoff=0.1) as prom:
            fewest = prom.value(f"min(count_over_time(up[{window:g}s]))")
        return fewest is not None and fewest >= 0.8 * window

    def ready() -> bool:
        if not full_windows():
            return False
        results = [check(config, url, auth, name) for name in PROFILES]
        # the stable baselines too: a slow machine scrapes one track before the other; and a
        # throughput rate only once its window holds a task (every profile makes 30 a minute a
        # pod: 0/min is a window that began before the first scrape, not a verdict)
        return all(g.value is not None and "no data" not in g.message
                   and (g.value > 0 or not g.name.endswith("_per_minute")) for r in results for g in r.gates)

    wait_for(ready, timeout, f"every gate measured through {url}", interval=0.5)


def assert_judged_like_prometheus(config: StackConfig, url: str, auth: PrometheusAuth) -> None:
    healthy = check(config, url, auth, "genesis-healthy")
    assert healthy.verdict == "pass", healthy.reason
    bad = check(config, url, auth, "genesis-bad")
    assert bad.verdict == "fail", bad.reason
    failing = {g.name for g in bad.gates if g.status == "fail"}
    assert failing == ROLLBACK_GATES, [(g.name, g.status, g.value, g.message) for g in bad.gates]


# --------------------------------------------------------------------------- VictoriaMetrics


@dataclass
class Victoria:
    config: StackConfig
    vm: Running
    vmauth: Running
    secrets: Path

    def auth(self, **files: str) -> PrometheusAuth:
        return PrometheusAuth(**{key: str(self.secrets / name) for key, name in files.items()})


@pytest.fixture(scope="module")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Victoria]:
    config = compressed_config(list(PROFILES), progress_deadline=DEADLINE)
    secrets = tmp_path_factory.mktemp("secrets")
    (secrets / "token").write_text(TOKEN + "\n")
    (secrets / "basic").write_text(f"rollout-bot:{PASSWORD}\n")
    (secrets / "wrong-token").write_text("not-the-token-91ab\n")
    with ExitStack() as stack:
        targets, _, _ = synthetic_pods(stack, config, PROFILES)
        vm = stack.enter_context(start_victoria_metrics(targets=targets))
        stack.enter_context(start_vmalert(vm.url, [recording_rules_only(config)]))
        gate = stack.enter_context(
            start_vmauth(
                [
                    {"bearer_token": TOKEN, "url_prefix": vm.url},
                    {"username": "rollout-bot", "password": PASSWORD, "url_prefix": vm.url},
                ]
            )
        )
        backend = Victoria(config, vm, gate, secrets)
        wait_until_judged(config, gate.url, backend.auth(basic_auth_file="basic"))
        yield backend


def test_victoria_metrics_behind_basic_auth_judges_like_prometheus(victoria: Victoria) -> None:
    assert_judged_like_prometheus(victoria.config, victoria.vmauth.url, victoria.auth(basic_auth_file="basic"))


def test_victoria_metrics_behind_a_bearer_token_read_from_a_file(victoria: Victoria) -> None:
    assert_judged_like_prometheus(victoria.config, victoria.vmauth.url, victoria.auth(bearer_token_file="token"))


def test_no_credentials_is_no_verdict(victoria: Victoria) -> None:
    with pytest.raises(PrometheusError) as refused:
        check(victoria.config, victoria.vmauth.url, PrometheusAuth(), "genesis-healthy")
    assert victoria.vmauth.url in str(refused.value) and "HTTP 401" in str(refused.value)


def test_a_rejected_token_is_refused_and_never_echoed(victoria: Victoria) -> None:
    """vmauth answers `cannot find the provided auth token "Bearer <token>"`: the error the bot
    shows must say why without the token."""
    with pytest.raises(PrometheusError) as refused:
        check(victoria.config, victoria.vmauth.url, victoria.auth(bearer_token_file="wrong-token"), "genesis-healthy")
    message = str(refused.value)
    assert "HTTP 400" in message and "cannot find the provided auth token" in message
    assert "not-the-token-91ab" not in message and "***" in message


def test_a_tenant_header_reaches_every_query(victoria: Victoria) -> None:
    with TenantGateway(victoria.vm.url) as gateway:
        tenant = PrometheusAuth(headers={"X-Scope-OrgID": "genesis-prod"})
        assert check(victoria.config, gateway.url, tenant, "genesis-healthy").verdict == "pass"
        assert gateway.tenants and set(gateway.tenants) == {"genesis-prod"}
        with pytest.raises(PrometheusError, match="HTTP 401, not a JSON answer: 'no org id'"):
            check(victoria.config, gateway.url, PrometheusAuth(), "genesis-healthy")


def test_the_cli_reads_backend_auth_from_the_environment(victoria: Victoria) -> None:
    """`rollout check` as the bot's container runs it: the token path in the environment."""
    runner = CliRunner()
    args = ["check", "--stage", "canary", "--prometheus", victoria.vmauth.url, "--json"]
    refused = runner.invoke(app, args, env={"PROMETHEUS_BEARER_TOKEN_FILE": ""})
    assert refused.exit_code == 3, refused.output
    assert "HTTP 401" in refused.output and "no verdict without metrics" in refused.output
    allowed = runner.invoke(app, args, env={"PROMETHEUS_BEARER_TOKEN_FILE": str(victoria.secrets / "token")})
    assert allowed.exit_code in (0, 1, 2), allowed.output  # a verdict, not "could not check"
    assert json.loads(allowed.stdout)["queries"] > 0
    assert TOKEN not in allowed.output + refused.output


# --------------------------------------------------------------------------- Prometheus over mTLS


@dataclass
class SecuredPrometheus:
    config: StackConfig
    server: Running
    files: Path

    def auth(self, *, ca: bool = True, client_cert: bool = True, basic: str = "basic") -> PrometheusAuth:
        return PrometheusAuth(
            basic_auth_file=str(self.files / basic),
            ca_file=str(self.files / "ca.pem") if ca else None,
            client_cert_file=str(self.files / "client.pem") if client_cert else None,
        )


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredPrometheus]:
    """Prometheus serving TLS with a private CA, RequireAndVerifyClientCert and a bcrypt
    basic-auth user: its documented --web.config.file hardening."""
    config = compressed_config(list(PROFILES), progress_deadline=DEADLINE)
    files = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(files / "ca.pem"))
    server_cert = ca.issue_cert("127.0.0.1")
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(files / "server.pem"))
    ca.issue_cert("rollout-bot.genesis").private_key_and_cert_chain_pem.write_to_path(str(files / "client.pem"))
    (files / "basic").write_text(f"rollout-bot:{PASSWORD}\n")
    (files / "wrong-basic").write_text("rollout-bot:guess-4471\n")
    web_config = {
        "tls_server_config": {
            "cert_file": str(files / "server.pem"),
            "key_file": str(files / "server.pem"),
            "client_auth_type": "RequireAndVerifyClientCert",
            "client_ca_file": str(files / "ca.pem"),
        },
        "basic_auth_users": {"rollout-bot": bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()},
    }
    ready_auth = PrometheusAuth(basic_auth_file=str(files / "basic"), ca_file=str(files / "ca.pem"), client_cert_file=str(files / "client.pem"))
    with ExitStack() as stack:
        targets, _, _ = synthetic_pods(stack, config, PROFILES)
        server = stack.enter_context(
            start_prometheus(
                rules=[render_rule_file(config)],
                targets=targets,
                web_config=web_config,
                client_options=ready_auth.client_options(None),
            )
        )
        assert server.url.startswith("https://")
        wait_until_judged(config, server.url, ready_auth)
        yield SecuredPrometheus(config, server, files)


def test_prometheus_over_mutual_tls_with_basic_auth_judges(secured: SecuredPrometheus) -> None:
    assert_judged_like_prometheus(secured.config, secured.server.url, secured.auth())


def test_without_a_client_certificate_no_verdict(secured: SecuredPrometheus) -> None:
    with pytest.raises(PrometheusError, match="unreachable"):
        check(secured.config, secured.server.url, secured.auth(client_cert=False), "genesis-healthy")


def test_a_server_not_signed_by_the_ca_bundle_is_not_trusted(secured: SecuredPrometheus) -> None:
    with pytest.raises(PrometheusError, match="CERTIFICATE_VERIFY_FAILED"):
        check(secured.config, secured.server.url, secured.auth(ca=False), "genesis-healthy")


def test_a_wrong_password_is_refused(secured: SecuredPrometheus) -> None:
    """Refused with the status. That the password never shows is tested against a server that
    echoes credentials (tests/release/test_prometheus.py): a real Prometheus never echoes it."""
    with pytest.raises(PrometheusError, match="HTTP 401"):
        check(secured.config, secured.server.url, secured.auth(basic="wrong-basic"), "genesis-healthy")


def test_unreadable_tls_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(ValueError, match=r"PROMETHEUS_CA_FILE: cannot load .*/missing\.pem"):
        PrometheusAuth(ca_file=str(tmp_path / "missing.pem")).client_options(None)
    with pytest.raises(ValueError, match=r"PROMETHEUS_CLIENT_CERT_FILE/PROMETHEUS_CLIENT_KEY_FILE: cannot load .*junk\.pem"):
        PrometheusAuth(client_cert_file=str(tmp_path / "junk.pem")).client_options(None)
    with pytest.raises(ValueError, match="PROMETHEUS_CLIENT_KEY_FILE is set without PROMETHEUS_CLIENT_CERT_FILE"):
        PrometheusAuth(client_key_file=str(tmp_path / "junk.pem")).client_options(None)
