"""Incident and stage reports from real gate evaluations (rollout.analysis.gates) and the bot's StageChange."""

from __future__ import annotations

import dataclasses
import struct
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from support import REPO_ROOT as REPO

from rollout.analysis.gates import CheckResult, GateMeasurement, Measurements, evaluate
from rollout.config import load_release
from rollout.release.bot import StageChange
from rollout.release.deployer import ApplyResult
from rollout.release.report import (
    GateRow,
    ReportWriter,
    Series,
    gate_rows,
    render_markdown,
    report_for_change,
    series_from_checks,
    write_report,
)

START = datetime(2026, 11, 5, 9, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def release():
    return load_release(REPO)


def check(release, minutes: int, error_rate: float, p95: float) -> CheckResult:
    stage = release.stage("gradual")
    at = START + timedelta(minutes=minutes)
    values = {
        "error_rate": (error_rate, 0.0004),
        "p95_latency_seconds": (p95, 0.150),
        "test_pass_rate": (0.99, 0.99),
        "pipelex_success_rate": (0.97, 0.97),
        "spice_tasks_per_minute": (4.0, 0.0),
        "fallback_rate": (0.01, 0.0),
    }
    gates = {
        name: GateMeasurement(canary=c, stable=s, query=f'{name}{{app="genesis",track="canary"}}')
        for name, (c, s) in values.items()
    }
    return evaluate(stage, Measurements(gates=gates, canary_requests=5000, at=at.isoformat()))


def rollback_change(release) -> StageChange:
    checks = [check(release, m, e, p) for m, e, p in [(5, 0.0005, 0.18), (10, 0.023, 0.31), (15, 0.025, 0.62), (20, 0.031, 0.71)]]
    decided = START + timedelta(minutes=20, seconds=30)
    applied = ApplyResult(
        stage="stable", weight=0, action="rollback", previous_stage="gradual",
        message="rollout: rollback gradual -> stable: error_rate 0.031 > critical 0.01",
        version=7, started=decided, finished=decided + timedelta(seconds=40),
    )
    return StageChange(
        action="rollback", source="gradual", target="stable",
        reason="the last 3 checks failed: error_rate 0.031 > critical 0.01",
        started_at=START, at=decided, checks=checks[-3:], applied=applied,
    )


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_incident_report_has_gate_table_timeline_and_plot(release, tmp_path: Path) -> None:
    events = [(START + timedelta(minutes=21, seconds=15), "alert GenesisRolloutRolledBack (critical) sent to Alertmanager")]
    path = ReportWriter(tmp_path, release)(rollback_change(release), events)
    text = path.read_text()

    assert text.startswith("# Incident report: genesis rolled back from gradual to stable\n")
    assert "| Gate | Canary | Stable baseline | Target | Critical | Status | Detail |" in text
    assert "| error_rate | 3.1 % | 0.04 % | 0.1 % | 1 % | FAIL |" in text
    assert "| p95_latency_seconds | 710 ms | 150 ms | 200 ms | 500 ms | FAIL |" in text
    assert "| test_pass_rate | 99 % | 99 % | 98 % | 95 % | PASS |" in text
    assert "| spice_tasks_per_minute | 4/min | 0/min | 1/min | - | PASS |" in text

    timeline = text.split("## Timeline")[1]
    order = [
        "stage gradual applied (canary weight 50%)",
        "check: fail",
        "decision: rollback to stable",
        "rollback applied: stable (0%), stack update v7 `rollout: rollback gradual -> stable",
        "alert GenesisRolloutRolledBack (critical) sent",
    ]
    positions = [timeline.index(item) for item in order]
    assert positions == sorted(positions)
    assert timeline.count("check: fail") == 3
    assert "| 2026-11-05 09:20:30 UTC | decision: rollback" in timeline

    png = path.with_suffix(".png")
    assert f"![stage plot]({png.name})" in text
    width, height = png_size(png)
    assert (width, height) == (900, 970)  # three panels, and a row with every failing gate against stable
    assert png.stat().st_size > 20_000  # panels with data, not a blank canvas


def test_series_from_checks_and_the_weight_step(release) -> None:
    change = rollback_change(release)
    report = report_for_change(change, release, "genesis")
    s = report.series
    # stage start, three checks, the rollback applied (finished 40 s after the decision)
    assert s.times[0] == START and s.times[-1] == change.applied.finished
    assert s.weight == [50, 50, 50, 50, 0]
    assert s.error_rate == [None, 0.023, 0.025, 0.031, None]
    assert s.p95_latency_seconds == [None, 0.31, 0.62, 0.71, None]
    assert (report.thresholds.error_rate_critical, report.thresholds.p95_critical) == (0.01, 0.5)
    assert report.kind == "incident" and report.gates_at == change.checks[-1].at


def test_gate_rows_accept_check_result_and_its_dict(release) -> None:
    result = check(release, 5, 0.023, 0.31)
    assert gate_rows(result) == gate_rows(result.to_dict())
    row = gate_rows(result.to_dict())[0]
    assert row == GateRow(
        name="error_rate", value=0.023, baseline=0.0004, target=0.001, critical=0.01, status="fail",
        message=result.gates[0].message, query='error_rate{app="genesis",track="canary"}',
    )


def test_missing_data_shows_as_no_data_and_stage_report_title(release, tmp_path: Path) -> None:
    stage = release.stage("canary")
    result = evaluate(stage, Measurements(gates={}, canary_requests=None, at=START.isoformat()))
    change = StageChange(
        action="promote", source="canary", target="gradual", reason="hold over and the last 3 checks passed",
        started_at=START - timedelta(hours=48), at=START + timedelta(minutes=1), checks=[result], applied=None,
    )
    text = render_markdown(report_for_change(change, release, "genesis"))
    assert text.startswith("# Stage report: genesis canary (10%) passed, promoted to gradual (50%)\n")
    assert "| error_rate | no data | no data | 0.1 % | 1 % | HOLD |" in text
    assert "- **Stage canary ran:** 2d1m" in text


def test_reports_never_carry_credentials(release, tmp_path: Path) -> None:
    change = rollback_change(release)
    leaky = dataclasses.replace(change, reason="Prometheus at https://bot:hunter2@prom.example/ said Bearer abc.def token=s3cr3t")
    text = write_report(report_for_change(leaky, release, "genesis"), tmp_path).read_text()
    for secret in ("hunter2", "abc.def", "s3cr3t"):
        assert secret not in text
    assert "https://***@prom.example/" in text


def test_series_lengths_must_match() -> None:
    with pytest.raises(ValueError, match="series lengths differ"):
        Series(times=[START], weight=[10, 10], error_rate=[None], p95_latency_seconds=[None])


def test_no_checks_gives_an_empty_but_valid_report(release, tmp_path: Path) -> None:
    change = StageChange(
        action="rollback", source="canary", target="stable", reason="rolled back by hand",
        started_at=START, at=START + timedelta(hours=1), checks=[], applied=None,
    )
    report = report_for_change(change, release, "genesis")
    assert series_from_checks([], 10).times == []
    path = write_report(report, tmp_path)
    assert "No check ran in this stage." in path.read_text()
    assert png_size(path.with_suffix(".png")) == (900, 750)


def test_check_json_renders_as_markdown_for_a_pr_comment(release, tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    result = check(release, 10, 0.023, 0.31)
    path = tmp_path / "check.json"
    path.write_text(json.dumps(result.to_dict()))
    shown = subprocess.run(
        [sys.executable, "-m", "rollout.release.report", str(path)], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    assert shown.startswith("**Projected verdict for stage `gradual`: FAIL**\n\ncritical threshold breached: error_rate")
    assert "| error_rate | 2.3 % | 0.04 % | 0.1 % | 1 % | FAIL |" in shown
    assert "| p95_latency_seconds | 310 ms | 150 ms | 200 ms | 500 ms | HOLD |" in shown


def test_a_status_report_of_the_running_stage(release, tmp_path: Path) -> None:
    """`rollout report` mid-stage: no decision, source and target are the same stage."""
    change = StageChange(
        action="status", source="majority", target="majority", reason="stage report on request",
        started_at=START, at=START + timedelta(hours=3), checks=[check(release, 5, 0.0004, 0.12)], applied=None,
    )
    path = write_report(report_for_change(change, release, "genesis"), tmp_path)
    text = path.read_text()
    assert text.startswith("# Stage report: genesis majority (80%) so far\n")
    assert "- **Decision:** status majority (80%) at 2026-11-05 12:00:00 UTC" in text
    assert png_size(path.with_suffix(".png")) == (900, 750)


def test_a_judged_check_shows_the_judges_evidence_in_the_report_and_the_pr_comment(release) -> None:
    """The evidence table: the verdict, e-value against 1/alpha, the ratio with its confidence
    sequence and where the counts came from, only for the gates the judge looks at."""
    from support.judge_sim import evidence_of

    from rollout.release.report import check_markdown

    evidence = evidence_of("error_rate", 0.008)
    stage = release.stage("gradual")
    values = {"error_rate": (0.008, 0.0005), "p95_latency_seconds": (0.1, 0.1), "test_pass_rate": (1.0, 1.0),
              "pipelex_success_rate": (0.99, 0.99), "spice_tasks_per_minute": (4.0, 4.0), "fallback_rate": (0.0, 0.0)}
    result = evaluate(stage, Measurements(
        gates={k: GateMeasurement(c, s, k) for k, (c, s) in values.items()}, canary_requests=5000,
        evidence={"error_rate": evidence}))
    for shown in (check_markdown(result.to_dict()), check_markdown(result)):
        rows = [line for line in shown.splitlines() if line.startswith("| error_rate | REGRESSION |")]
        assert len(rows) == 1, shown
        assert f"| {evidence.e_value:.3g} ({evidence.e_max:.3g}) | 200 | 0.5 |" in rows[0]
        assert f"{evidence.ratio:.3g} [{evidence.ratio_low:.3g}, {evidence.ratio_high:.3g}]" in rows[0]
        assert rows[0].endswith("| simulated |")
        assert "| p95_latency_seconds | no regression" not in shown
    plain = check(release, 10, 0.0005, 0.1)
    assert "Canary/stable ratio" not in check_markdown(plain.to_dict())
