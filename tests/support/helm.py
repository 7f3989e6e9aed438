"""Helm's values merge (helm/helm pkg/chartutil/coalesce.go): maps deep-merge, lists and scalars
from the user's values replace the chart's, a null deletes the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CHARTS = Path(__file__).parent / "charts"


def merge(chart: Any, user: Any) -> Any:
    if isinstance(chart, dict) and isinstance(user, dict):
        merged = dict(chart)
        for key, value in user.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = merge(chart.get(key), value) if key in chart else value
        return merged
    return user


def chart_alertmanager_config() -> dict[str, Any]:
    """kube-prometheus-stack 79.5.0's default `alertmanager.config`."""
    return yaml.safe_load((CHARTS / "kube-prometheus-stack-79.5.0-alertmanager-config.yaml").read_text())
