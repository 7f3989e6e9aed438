"""Offline validation of rendered Kubernetes objects (there is no API server here).

- core objects: PyPI `kubernetes-validate`, strict (unknown fields are errors), k8s KUBERNETES_VERSION;
- Gateway API, Istio and Prometheus Operator objects: the generated CRD schemas of `@kubernetes-models/*`, through
  tools/validators/validate.mjs (install: `npm ci --prefix tools/validators`).
A missing validator is an assertion failure, never a skip.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import kubernetes_validate

from support import REPO_ROOT

VALIDATORS_DIR = REPO_ROOT / "tools" / "validators"
KUBERNETES_VERSION = "1.31.0"
CRD_GROUPS = ("gateway.networking.k8s.io", "networking.istio.io", "monitoring.coreos.com")


def is_crd_object(obj: dict[str, Any]) -> bool:
    return str(obj.get("apiVersion", "")).split("/")[0] in CRD_GROUPS


def core_errors(objects: list[dict[str, Any]]) -> list[str]:
    """Problems kubernetes-validate (strict) finds in the core objects; CRD objects are left out."""
    problems = []
    for obj in objects:
        if is_crd_object(obj):
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
            problems.append(f"{where}: {'.'.join(str(p) for p in err.path)}: {err.message}")
        except kubernetes_validate.SchemaNotFoundError:
            # a kind with no schema is a failure too: add its group to CRD_GROUPS and validate.mjs
            problems.append(f"{obj.get('apiVersion')} {obj.get('kind')}: no schema to validate it against")
    return problems


def crd_results(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run the node validator on these CRD objects; one result per object."""
    node = shutil.which("node")
    assert node, "node is not on PATH: the Gateway API / Istio validators need it"
    assert (VALIDATORS_DIR / "node_modules" / "@kubernetes-models").is_dir(), (
        "CRD validators are not installed: run `npm ci --prefix tools/validators`"
    )
    completed = subprocess.run(
        [node, str(VALIDATORS_DIR / "validate.mjs")],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode in (0, 1), f"validator crashed: {completed.stderr}"
    return [json.loads(line) for line in completed.stdout.splitlines() if line.strip()]


def crd_errors(objects: list[dict[str, Any]]) -> list[str]:
    crds = [obj for obj in objects if is_crd_object(obj)]
    if not crds:
        return []
    results = crd_results(crds)
    assert len(results) == len(crds), f"validator answered for {len(results)} of {len(crds)} objects"
    return [f"{r['kind']}/{r['name']}: {r['errors']}" for r in results if not r["valid"]]


def flagd_evaluate(flag_files: list[str]) -> list[dict[str, Any]]:
    """Load flagd flag-definition documents with flagd's own evaluator core (strict schema) and
    evaluate every flag with an empty context; one result per document."""
    node = shutil.which("node")
    assert node, "node is not on PATH: the flagd evaluator needs it"
    assert (VALIDATORS_DIR / "node_modules" / "@openfeature" / "flagd-core").is_dir(), (
        "flagd-core is not installed: run `npm ci --prefix tools/validators`"
    )
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for index, text in enumerate(flag_files):
            path = Path(folder) / f"flags-{index}.json"
            path.write_text(text)
            paths.append(str(path))
        completed = subprocess.run(
            [node, str(VALIDATORS_DIR / "flagd.mjs"), *paths],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert completed.returncode in (0, 1), f"flagd evaluator crashed: {completed.stderr}"
    results = [json.loads(line) for line in completed.stdout.splitlines() if line.strip()]
    assert len(results) == len(flag_files), completed.stderr
    return results
