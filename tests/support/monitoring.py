"""Helpers for the dashboard and monitoring tests: the real tools they shell out to.

A missing tool fails the test with the command that installs it; nothing is skipped.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from support import REPO_ROOT as ROOT

GRAFANA_SCHEMA_DIR = ROOT / "tools" / "grafana-schema"
MONITORING_VALIDATORS_DIR = ROOT / "tools" / "validators"  # one node validator for every CRD group


def require_tool(name: str, install_hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise AssertionError(f"{name} is not on PATH; install it: {install_hint}")
    return path


def npm_tool_dir(directory: Path) -> Path:
    """The node tool directory with its locked packages installed (`npm ci` when missing)."""
    require_tool("node", "apt-get install nodejs npm")
    if not (directory / "node_modules").is_dir():
        npm = require_tool("npm", "apt-get install npm")
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=directory, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise AssertionError(f"npm ci in {directory} failed:\n{result.stderr}")
    return directory


def grafana_dashboard_schema() -> dict[str, Any]:
    """JSON schema generated from Grafana's own @grafana/schema dashboard types."""
    directory = npm_tool_dir(GRAFANA_SCHEMA_DIR)
    result = subprocess.run(
        ["node", "dashboard-schema.mjs"], cwd=directory, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"generating the Grafana dashboard schema failed:\n{result.stderr}")
    return json.loads(result.stdout)


def promtool_check_exprs(exprs: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Each PromQL expression as a recording rule in one file, checked by the real promtool."""
    promtool = require_tool("promtool", "apt-get install prometheus")
    rules = [{"record": f"dashboard_check:{name}", "expr": expr} for name, expr in exprs.items()]
    path = tmp_path / "dashboard-exprs.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard-exprs", "rules": rules}]}))
    return subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)


def validate_k8s_objects(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validate prometheus-operator objects with @kubernetes-models/prometheus-operator.

    One result per object: {apiVersion, kind, name, valid, errors}.
    """
    directory = npm_tool_dir(MONITORING_VALIDATORS_DIR)
    result = subprocess.run(
        ["node", "validate.mjs"], cwd=directory, input=json.dumps(objects), capture_output=True, text=True,
        check=False,
    )
    if result.returncode not in (0, 1):
        raise AssertionError(f"validator failed (exit {result.returncode}):\n{result.stderr}")
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
