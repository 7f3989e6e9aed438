"""`rollout export`: the raw series a replay needs, read from a real Prometheus's HTTP API and
written as an OpenMetrics file `rollout replay` (and promtool) read.

For each raw family the signals read (rollout.analysis.signals.RAW_FAMILIES) and each of the
project's services, the stored samples (range-vector selectors, read in chunks: no step, no
resampling), with every label the scrape gave them. The Deployment gauges come from
kube-state-metrics, selected by `deployment=~"<app>-(stable|canary)"`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from rollout.analysis.signals import DEPLOYMENT_FAMILIES, RAW_FAMILIES
from rollout.model import ServiceConfig
from rollout.release.prometheus import Prometheus
from rollout.review.openmetrics import SUFFIXES, OpenMetricsWriter

CHUNK = timedelta(hours=2)  # one range selector per chunk keeps each answer small
MAX_RANGE = timedelta(days=31)  # a release is days; a longer range is a typo, and 12 queries per chunk add up
# what Prometheus stores of each kind: OpenMetrics' suffixes but _created (not scraped as a series)
SAMPLE_NAMES = {kind: tuple(s for s in SUFFIXES[kind] if s != "_created") for kind in ("counter", "gauge", "histogram")}
DEPLOYMENT_NAMES = {name for name, _, _ in DEPLOYMENT_FAMILIES}


@dataclass
class ExportReport:
    path: Path
    series: int
    samples: int
    families: list[str]


def _alternatives(values: Sequence[str]) -> str:
    return "|".join(re.escape(v) for v in sorted(set(values)))


def selector(family: str, services: Sequence[ServiceConfig]) -> str:
    namespaces = _alternatives([s.namespace for s in services])
    apps = _alternatives([s.name for s in services])
    if family in DEPLOYMENT_NAMES:
        return f'{{namespace=~"{namespaces}", deployment=~"({apps})-(stable|canary)"}}'
    return f'{{namespace=~"{namespaces}", app=~"{apps}"}}'


def _collect(prom: Prometheus, expr: str, start: datetime, end: datetime) -> dict[tuple[tuple[str, str], ...], list[tuple[float, float]]]:
    """Every stored sample of the selector in [start, end], per series, oldest first, once."""
    series: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
    chunk_start = start
    while chunk_start < end:
        chunk_end = min(end, chunk_start + CHUNK)
        for found in prom.raw_series(expr, chunk_start, chunk_end):
            labels = tuple(sorted((k, v) for k, v in found.labels.items() if k != "__name__"))
            points = series.setdefault(labels, [])
            for t, v in found.points:
                if start.timestamp() <= t and (not points or t > points[-1][0]):  # chunk edges overlap
                    points.append((t, v))
        chunk_start = chunk_end
    return series


def export(prom: Prometheus, services: Sequence[ServiceConfig], start: datetime, end: datetime, path: Path) -> ExportReport:
    if start >= end:
        raise ValueError(f"--start {start.isoformat()} must be before --end {end.isoformat()}")
    if end - start > MAX_RANGE:
        raise ValueError(f"--start {start.isoformat()} to --end {end.isoformat()} is {(end - start).days} days: "
                         f"export at most {MAX_RANGE.days} days at once")
    series_count = 0
    families = []
    with OpenMetricsWriter.open(path) as writer:
        for family, kind, help_text in RAW_FAMILIES:
            gathered = {
                name: _collect(prom, family + name + selector(family, services), start, end)
                for name in SAMPLE_NAMES[kind]
            }
            if not any(gathered.values()):
                continue  # e.g. no errors counter: the app does not export one
            writer.family(family, kind, help_text)  # type: ignore[arg-type]
            families.append(family)
            for name, by_labels in gathered.items():
                for labels, points in sorted(by_labels.items()):
                    times = np.array([t for t, _ in points])
                    values = np.array([v for _, v in points])
                    writer.series(family + name, dict(labels), _seconds(times), values)
                    series_count += 1
    return ExportReport(path, series_count, writer.samples, families)


def _seconds(times: np.ndarray) -> np.ndarray:
    """Prometheus stores milliseconds: keep them as a fraction of a second, never more."""
    return np.round(times, 3) if not np.all(times == np.floor(times)) else times.astype(np.int64)

