"""`rollout preflight`: the Day-0 plan's go/no-go list, checked instead of ticked by hand.

Every item is a no-go until shown otherwise: an unreachable or unconfigured system is a no-go
with the reason, unless the caller explicitly skips it (`skip`), and then it says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import httpx

from rollout.analysis.signals import SIGNALS, selector
from rollout.config import ConfigError, load_release
from rollout.model import Release
from rollout.release.prometheus import Prometheus, PrometheusError, split_credentials

ITEMS = ("stage files", "prometheus", "alertmanager", "grafana", "rules loaded", "stable metrics", "no critical alert")


@dataclass(frozen=True)
class PreflightItem:
    name: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


def _reachable(name: str, url: str | None, path: str) -> PreflightItem:
    if not url:
        return PreflightItem(name, False, f"no {name} URL given")
    bare, _ = split_credentials(url.rstrip("/"))  # a detail never shows a password
    try:
        response = httpx.get(url.rstrip("/") + path, timeout=5.0)
    except httpx.HTTPError as err:
        return PreflightItem(name, False, f"{bare} unreachable: {type(err).__name__}")
    ok = response.status_code == 200
    return PreflightItem(name, ok, f"{bare}{path} answered HTTP {response.status_code}")


def _prometheus_ready(prom: Prometheus | None) -> PreflightItem:
    """Through the bot's own client, so the backend's auth (PROMETHEUS_*) and TLS apply."""
    if prom is None:
        return PreflightItem("prometheus", False, "no prometheus URL given")
    status = prom.ready_status()
    ok = status == 200
    answer = f"answered HTTP {status}" if isinstance(status, int) else f"unreachable: {status}"
    return PreflightItem("prometheus", ok, f"{prom.url}/-/ready {answer}")


def _with_prometheus(name: str, prom: Prometheus | None, probe: Callable[[Prometheus], PreflightItem]) -> PreflightItem:
    if prom is None:
        return PreflightItem(name, False, "needs Prometheus")
    try:
        return probe(prom)
    except PrometheusError as err:
        return PreflightItem(name, False, str(err))


def _rules(release: Release, prom: Prometheus) -> PreflightItem:
    loaded = prom.rules_loaded(s.record for s in SIGNALS)
    missing = sorted(name for name, ok in loaded.items() if not ok)
    if missing:
        return PreflightItem("rules loaded", False, f"missing recording rules: {', '.join(missing)}")
    return PreflightItem("rules loaded", True, f"all {len(loaded)} recording rules loaded")


def _stable_metrics(release: Release, prom: Prometheus) -> PreflightItem:
    silent = [
        svc.name
        for svc in release.project.services
        if not prom.series_exists(
            "genesis_request_duration_seconds_count" + selector(svc.name, "stable", svc.namespace)
        )
    ]
    if silent:
        return PreflightItem("stable metrics", False, f"no stable series for: {', '.join(silent)}")
    return PreflightItem("stable metrics", True, "every service's stable track is scraped")


def _no_critical(prom: Prometheus) -> PreflightItem:
    critical = [
        a["labels"].get("alertname", "?")
        for a in prom.firing_alerts()
        if a.get("labels", {}).get("severity") == "critical"
    ]
    if critical:
        return PreflightItem("no critical alert", False, f"firing: {', '.join(sorted(set(critical)))}")
    return PreflightItem("no critical alert", True, "no critical alert firing")


def run_preflight(
    project_dir: Path,
    prom: Prometheus | None,
    alertmanager_url: str | None,
    grafana_url: str | None,
    skip: Iterable[str] = (),
) -> list[PreflightItem]:
    """Every item, in ITEMS order. `prom` is the bot's client (with its auth), or None."""
    skipped = set(skip)
    unknown = skipped - set(ITEMS)
    if unknown:
        raise ValueError(f"unknown preflight item(s) {sorted(unknown)}; items: {list(ITEMS)}")
    items: list[PreflightItem] = []
    release: Release | None = None
    try:
        release = load_release(project_dir)
        items.append(PreflightItem("stage files", True, f"{len(release.stages)} stage files valid"))
    except ConfigError as err:
        items.append(PreflightItem("stage files", False, str(err)))

    items.append(_prometheus_ready(prom))
    items.append(_reachable("alertmanager", alertmanager_url, "/-/ready"))
    items.append(_reachable("grafana", grafana_url, "/api/health"))
    if release is None:
        items.append(PreflightItem("rules loaded", False, "needs valid stage files"))
        items.append(PreflightItem("stable metrics", False, "needs valid stage files"))
    else:
        items.append(_with_prometheus("rules loaded", prom, lambda p: _rules(release, p)))
        items.append(_with_prometheus("stable metrics", prom, lambda p: _stable_metrics(release, p)))
    items.append(_with_prometheus("no critical alert", prom, _no_critical))
    return [
        PreflightItem(i.name, True, f"skipped on request ({i.detail})") if i.name in skipped else i
        for i in items
    ]
