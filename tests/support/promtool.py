"""Helpers to run the real promtool and amtool binaries from tests.

A missing binary fails the test loudly (never skips): install them with
`apt-get install -y --no-install-recommends prometheus prometheus-alertmanager`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any, Sequence

import pytest
import yaml

from rollout.config import load_release
from rollout.model import Release, StackConfig
from support import REPO_ROOT

ALERTS_DIR = REPO_ROOT / "alerts"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not on PATH; install it: apt-get install -y --no-install-recommends "
            "prometheus prometheus-alertmanager"
        )
    return path


def run(name: str, *args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a tool and return the finished process (the caller asserts on returncode)."""
    return subprocess.run(
        [tool(name), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def run_ok(name: str, *args: str | Path, cwd: Path | None = None) -> str:
    """Run a tool; a non-zero exit fails the test with the tool's own output."""
    done = run(name, *args, cwd=cwd)
    if done.returncode != 0:
        pytest.fail(
            f"{name} {' '.join(map(str, args))} exited {done.returncode}\n"
            f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        )
    return done.stdout + done.stderr


def release() -> Release:
    return load_release(REPO_ROOT)


def stack_configs() -> list[StackConfig]:
    """The StackConfig of every stage, as `pulumi up --config-file Pulumi.<stage>.yaml` sees it."""
    plan = release()
    return [StackConfig(project=plan.project, stage=stage) for stage in plan.stages]


def write_promtool_test(
    path: Path,
    rule_file: Path,
    tests: Sequence[dict[str, Any]],
    evaluation_interval: str,
    group_order: Sequence[str],
) -> Path:
    """A promtool unit test file; group_order keeps promtool 2.42 from shuffling the groups."""
    document = {
        "rule_files": [str(rule_file)],
        "evaluation_interval": evaluation_interval,
        "group_eval_order": list(group_order),
        "tests": list(tests),
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False, width=10_000))
    return path
