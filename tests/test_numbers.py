"""One number format (rollout.numbers) wherever the bot talks: the `check` table and its JSON
messages, reports and notices, against a REAL Prometheus fed by a synthetic Genesis pod."""

from __future__ import annotations

import json
import re
from typing import Iterator

import pytest
from support import REPO_ROOT as REPO
from support.live import LiveStack, compressed_config, live_stack
from typer.testing import CliRunner

from rollout.cli import app
from rollout.numbers import count, duration, number, percent, significant
from rollout.release.report import gate_line, gate_rows, gate_table


@pytest.mark.parametrize(("value", "shown"), [
    (0.001, "0.1 %"), (0.0123456, "1.23 %"), (1.0, "100 %"), (0.0, "0 %"), (1e-7, "0.00001 %"), (None, "no data"),
])
def test_rates_are_percent_with_three_significant_digits(value, shown) -> None:
    assert percent(value) == number(value, "ratio") == shown


@pytest.mark.parametrize(("value", "shown"), [
    (0.773, "773 ms"), (0.0045, "4.5 ms"), (0.5, "500 ms"), (1.25, "1.25 s"), (float("inf"), "∞"), (float("nan"), "NaN"),
])
def test_latencies_are_milliseconds_below_a_second(value, shown) -> None:
    assert duration(value) == number(value, "seconds") == shown


def test_counts_carry_their_noun_and_nothing_is_scientific() -> None:
    assert count(77, "canary request") == "77 canary requests"
    assert count(1, "canary request") == "1 canary request"
    assert count(12345.4, "canary request") == "12,345 canary requests"
    assert number(12.5, "per_minute") == "12.5/min" and number(1234.5) == "1230"
    assert significant(0.000123456) == "0.000123" and "e" not in significant(1.5e-9)


@pytest.fixture(scope="module")
def live() -> Iterator[LiveStack]:
    with live_stack(compressed_config(["genesis"]), {"genesis": "healthy"}) as stack:
        stack.wait_for_full_window()
        yield stack


def test_the_check_table_its_messages_and_the_notices_write_numbers_alike(live: LiveStack, monkeypatch) -> None:
    from rollout.cli import common

    monkeypatch.setattr(common.out, "width", 200)  # a wide terminal: no cell wraps
    runner = CliRunner()
    env = {"PROMETHEUS_URL": live.prometheus.url}
    report = json.loads(runner.invoke(app, ["check", "--stage", "canary", "--json", "-C", str(REPO)], env=env).stdout)
    table = runner.invoke(app, ["check", "--stage", "canary", "-C", str(REPO)], env=env).stdout
    gates = {g["name"]: g for g in report["gates"]}
    error, p95 = gates["error_rate"], gates["p95_latency_seconds"]
    rows = {row.name: row for row in gate_rows(report)}
    notice = {name: gate_line(row) for name, row in rows.items()}  # what GenesisStageChanged carries
    markdown = "\n".join(gate_table(list(rows.values())))  # reports, PR comments, the daily status
    for gate, unit, suffix in ((error, "ratio", " %"), (p95, "seconds", " ms")):
        shown, target = number(gate["value"], unit), number(gate["threshold"], unit)
        assert shown.endswith(suffix) and target.endswith(suffix), (shown, target)
        assert gate["message"].startswith(f"{shown} <= target {target} (stable {number(gate['baseline'], unit)})")
        # the table is a second check, seconds later: the same format, not the same value
        assert re.search(rf"│ {gate['name']} +│ [\d.]+{suffix} +│ [\d.]+{suffix} +│ <= {target} +│", table), table
        assert notice[gate["name"]].startswith(f"{gate['name']} {shown} (target {target}, stable ")
        assert f"| {gate['name']} | {shown} |" in markdown
    assert re.search(r"on [\d,]+ canary requests$", report["reason"]), report["reason"]
