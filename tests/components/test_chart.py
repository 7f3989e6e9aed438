"""Install mode on a real cluster: the kube-prometheus-stack values need no Helm hook, no pod
mounts a Secret only a hook would create, nothing goes into kube-system, and the chart comes from
the repository's vendored archive with its digest checked (never from a chart repository).

The hook and volume gates are the chart's own, read from kube-prometheus-stack 79.5.0
(github:prometheus-community/helm-charts, tag kube-prometheus-stack-79.5.0) and cited per gate;
the chart itself cannot be rendered here (no Helm, and nothing fetched may be committed), so the
tests pin the values that close each gate explicitly (the chart's defaults open most of them).
The program runs under the Pulumi SDK's mock runtime; the digest check and scripts/vendor-chart
are the product's own code, run on archives and a file:// chart repository the tests make.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from support.stack import REPO_ROOT, rendered, run_values, stage_values

import components.program as program
from components.program import StackConfigError, check_vendored_chart
from rollout.monitoring.chart import LOCK_FILE, ChartError, read_lock, verified_archive

CHART_TYPE = "kubernetes:helm.sh/v4:Chart"


def chart_values(stage: str = "canary") -> dict:
    [chart] = rendered(stage).of_type(CHART_TYPE)
    return chart.inputs["values"]


def dig(values: dict, path: str):
    node = values
    for part in path.split("."):
        node = node[part]  # KeyError: not set explicitly, so the chart's default would apply
    return node


# Each hook of the chart, with the condition that renders it (templates cited).
HOOK_GATES = {
    # templates/prometheus-operator/admission-webhooks/job-patch/job-createSecret.yaml,
    # job-patchWebhook.yaml, clusterrole(binding).yaml, role(binding).yaml, serviceaccount.yaml:
    # prometheusOperator.enabled and admissionWebhooks.enabled and admissionWebhooks.patch.enabled
    # and not admissionWebhooks.certManager.enabled
    "admission certificate Jobs": lambda v: dig(v, "prometheusOperator.admissionWebhooks.enabled")
    and dig(v, "prometheusOperator.admissionWebhooks.patch.enabled")
    and not dig(v, "prometheusOperator.admissionWebhooks.certManager.enabled"),
    # charts/crds/templates/upgrade/*.yaml: upgradeJob.enabled (the crds subchart)
    "CRD upgrade Job": lambda v: dig(v, "crds.upgradeJob.enabled"),
}
# Pods that mount the `<fullname>-admission` Secret the certificate Jobs create.
SECRET_MOUNT_GATES = {
    # templates/prometheus-operator/deployment.yaml: volume `tls-secret` if prometheusOperator.tls.enabled
    "operator Deployment": lambda v: dig(v, "prometheusOperator.tls.enabled"),
    # templates/prometheus-operator/admission-webhooks/deployment/deployment.yaml: rendered if
    # admissionWebhooks.deployment.enabled; volume `tls-secret` if admissionWebhooks.deployment.tls.enabled
    "admission webhook Deployment": lambda v: dig(v, "prometheusOperator.admissionWebhooks.deployment.enabled")
    and dig(v, "prometheusOperator.admissionWebhooks.deployment.tls.enabled"),
}
# Objects the chart would write into kube-system (templates/exporters/*: Services, Endpoints,
# ServiceMonitors, all gated by kubernetesServiceMonitors.enabled; the Operator's kubelet Service
# in prometheusOperator.kubeletService.namespace, default kube-system).
KUBE_SYSTEM_GATES = {
    "exporters (kube-system Services, Endpoints, ServiceMonitors)": lambda v: dig(v, "kubernetesServiceMonitors.enabled"),
    "the Operator's kubelet Service": lambda v: dig(v, "prometheusOperator.kubeletService.enabled"),
}


def closed(gates: dict, values: dict) -> dict:
    return {name: bool(gate(values)) for name, gate in gates.items()}


@pytest.mark.parametrize("stage", ["stable", "full"])
def test_install_mode_values_render_no_hook(stage):
    assert closed(HOOK_GATES, chart_values(stage)) == dict.fromkeys(HOOK_GATES, False)


def test_no_rendered_pod_mounts_a_secret_only_a_hook_would_create():
    assert closed(SECRET_MOUNT_GATES, chart_values()) == dict.fromkeys(SECRET_MOUNT_GATES, False)


def test_the_gates_are_open_with_the_chart_defaults():
    """With the chart's defaults (values.yaml 79.5.0: tls.enabled true, admissionWebhooks.enabled
    true, patch.enabled true, kubernetesServiceMonitors.enabled true) the checks above fail."""
    defaults = {
        "prometheusOperator": {
            "tls": {"enabled": True},
            "admissionWebhooks": {
                "enabled": True, "patch": {"enabled": True}, "certManager": {"enabled": False},
                "deployment": {"enabled": False, "tls": {"enabled": True}},
            },
            "kubeletService": {"enabled": True},
        },
        "crds": {"upgradeJob": {"enabled": False}},
        "kubernetesServiceMonitors": {"enabled": True},
    }
    assert HOOK_GATES["admission certificate Jobs"](defaults)
    assert SECRET_MOUNT_GATES["operator Deployment"](defaults)
    assert all(gate(defaults) for gate in KUBE_SYSTEM_GATES.values())


def test_nothing_goes_into_kube_system_and_the_release_keeps_kube_state_metrics():
    values = chart_values()
    assert closed(KUBE_SYSTEM_GATES, values) == dict.fromkeys(KUBE_SYSTEM_GATES, False)
    assert values["nodeExporter"]["enabled"] is False and values["defaultRules"]["create"] is False
    assert values["kubeStateMetrics"]["enabled"] is True  # the canary availability gate reads it


@pytest.mark.parametrize("stage", ["stable", "canary", "full"])
def test_the_chart_is_read_from_the_repository_never_a_chart_repository(stage):
    [chart] = rendered(stage).of_type(CHART_TYPE)
    assert "repositoryOpts" not in chart.inputs
    path = Path(chart.inputs["chart"])
    assert path.is_absolute() and path.parent == REPO_ROOT / "charts"
    assert path.name == "kube-prometheus-stack-79.5.0.tgz"
    everything = json.dumps([r.inputs for r in rendered(stage).resources.values()])
    for remote in ("prometheus-community.github.io", "oci://", "/releases/download/", "grafana.github.io/helm-charts"):
        assert remote not in everything


def _archive(content: bytes = b"name: kube-prometheus-stack\nversion: 79.5.0\n") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("kube-prometheus-stack/Chart.yaml")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _lock(folder: Path, sha256: str, version: str = "79.5.0", repository: str = "https://charts.example") -> Path:
    lock = folder / "kube-prometheus-stack.lock.yaml"
    lock.write_text(yaml.safe_dump({"name": "kube-prometheus-stack", "version": version, "repository": repository, "sha256": sha256}))
    return lock


def test_the_digest_check_accepts_the_locked_archive_and_refuses_any_other(tmp_path):
    data = _archive()
    archive = tmp_path / "kube-prometheus-stack-79.5.0.tgz"
    archive.write_bytes(data)
    lock = _lock(tmp_path, hashlib.sha256(data).hexdigest())
    assert verified_archive("79.5.0", lock) == archive
    archive.write_bytes(data + b"\0")
    with pytest.raises(ChartError, match=r"kube-prometheus-stack-79.5.0.tgz: sha256 .* is not the .*scripts/vendor-chart"):
        verified_archive("79.5.0", lock)
    archive.unlink()
    with pytest.raises(ChartError, match=r"the vendored chart is missing: run `scripts/vendor-chart`"):
        verified_archive("79.5.0", lock)
    with pytest.raises(ChartError, match=r"80.0.0 is not the vendored version 79.5.0.*--update 80.0.0"):
        verified_archive("80.0.0", lock)
    with pytest.raises(ChartError, match="no sha256 recorded"):
        verified_archive("79.5.0", _lock(tmp_path, ""))


def test_pulumi_up_refuses_before_registering_anything_when_the_chart_is_not_vendored(monkeypatch):
    """Under a real engine (here: the mock runtime's exemption switched off) the repository's lock
    file names an archive that is not there yet: the program stops with the file and the command."""
    from rollout.review.mock_runtime import RecordingMocks

    assert read_lock(LOCK_FILE).version == "79.5.0"
    monkeypatch.setattr(program, "under_mocks", lambda: False)
    mocks = RecordingMocks()
    with pytest.raises(StackConfigError, match=r"(?s)charts/kube-prometheus-stack.lock.yaml.*scripts/vendor-chart"):
        run_values(stage_values("canary"), mocks=mocks)
    assert mocks.registrations == []  # nothing registered, not even the provider
    monkeypatch.setattr(program, "under_mocks", lambda: True)
    assert run_values(stage_values("canary")).of_type(CHART_TYPE)


def test_check_vendored_chart_names_the_lock_file(tmp_path):
    with pytest.raises(StackConfigError, match="charts/kube-prometheus-stack.lock.yaml"):
        check_vendored_chart("79.5.0", _lock(tmp_path, "0" * 64))


def _repository(tmp_path: Path, data: bytes, digest: str | None = None) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir(exist_ok=True)
    versions = {"79.5.0": data, "79.6.0": data + b"new"}
    entries = []
    for version, content in versions.items():
        (repo / f"kube-prometheus-stack-{version}.tgz").write_bytes(content)
        listed = digest if (digest and version == "79.5.0") else hashlib.sha256(content).hexdigest()
        entries.append({"version": version, "urls": [f"kube-prometheus-stack-{version}.tgz"], "digest": listed})
    (repo / "index.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "entries": {"kube-prometheus-stack": entries}}))
    return repo


def _vendor(lock: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "vendor_chart.py"), "--lock", str(lock), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )


def test_vendor_chart_pulls_the_locked_version_and_records_its_digest(tmp_path):
    """scripts/vendor-chart against a chart repository on file:// (the index.yaml + archive layout
    a Helm repository serves over https)."""
    data = _archive()
    repo = _repository(tmp_path, data)
    charts = tmp_path / "charts"
    charts.mkdir()
    lock = _lock(charts, "", repository=repo.as_uri())
    result = _vendor(lock)
    assert result.returncode == 0, result.stderr
    assert (charts / "kube-prometheus-stack-79.5.0.tgz").read_bytes() == data
    assert read_lock(lock).sha256 == hashlib.sha256(data).hexdigest()
    assert verified_archive("79.5.0", lock)
    # a bump on purpose replaces the archive and the pin
    assert _vendor(lock, "--update", "79.6.0").returncode == 0
    assert read_lock(lock).version == "79.6.0" and not (charts / "kube-prometheus-stack-79.5.0.tgz").exists()
    assert verified_archive("79.6.0", lock)


def test_vendor_chart_refuses_an_archive_that_is_not_the_published_or_pinned_one(tmp_path):
    data = _archive()
    charts = tmp_path / "charts"
    charts.mkdir()
    lock = _lock(charts, "", repository=_repository(tmp_path, data, digest="f" * 64).as_uri())
    result = _vendor(lock)
    assert result.returncode != 0 and "the index lists" in result.stderr
    assert not (charts / "kube-prometheus-stack-79.5.0.tgz").exists()
    lock = _lock(charts, "e" * 64, repository=_repository(tmp_path, data).as_uri())
    result = _vendor(lock)
    assert result.returncode != 0 and "the published archive changed" in result.stderr


def test_the_cluster_scoped_rights_are_documented_under_their_stable_heading():
    """docs/stack.md's table and rollout.monitoring.cluster_scope (which the bot's RBAC reads)
    name the same API groups and resources."""
    from rollout.monitoring.cluster_scope import CLUSTER_SCOPED_RIGHTS

    text = (REPO_ROOT / "docs" / "stack.md").read_text()
    section = text.split("### Cluster-scoped rights", 1)[1].split("\n## ", 1)[0]
    rows = {tuple(cell.strip(" `") for cell in line.split("|")[1:3]) for line in section.splitlines() if line.startswith("| `")}
    assert rows == {(r.api_group, r.resource) for r in CLUSTER_SCOPED_RIGHTS}
    assert "rollout/monitoring/cluster_scope.py" in section
