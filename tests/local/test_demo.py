"""`rollout demo` end to end: real Prometheus and Alertmanager, synthetic Genesis pods, the bot.

The synthetic pods and the local deployer stand in for the app and for `pulumi up` (no cluster
or Pulumi CLI here); everything else is the product's own code and the real servers.
Timing is compressed further than the default demo so the test stays short.
"""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console
from support import REPO_ROOT as REPO

from rollout.local.demo import run_demo


def child_processes() -> list[str]:
    """Names of this process's live children (Prometheus, Alertmanager would show here)."""
    names = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        state, parent = rest[0], int(rest[1])
        if parent == os.getpid() and state != "Z":
            names.append(name)
    return names


def test_demo_rolls_back_the_faulty_canary_and_reaches_on_call(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    console = Console(file=open(tmp_path / "demo.log", "w"), width=200)

    # the fault comes 2 checks into `gradual`; the hold must outlast its detection (scrapes, the
    # 3 s window, 3 failing checks) however slow the machine: 30 s is a margin, not a wait
    summary = run_demo(REPO, out, fault_stage="gradual", check_seconds=1.0, hold_seconds=30.0,
                       timeout_seconds=600.0, console=console)

    assert summary.rolled_back, summary
    assert summary.stages_seen == ["canary", "gradual", "stable"]
    assert summary.detection_seconds is not None and summary.detection_seconds > 0  # decided after the fault
    # the bot's page went through the rendered routing tree to every receiver of a critical alert
    assert summary.alert_receivers == ["pagerduty", "slack-incidents"]  # the page: PagerDuty and #incidents
    assert "rollback to stable via stage-changes" in summary.notices  # and told in #deployments and by e-mail
    assert "promote to canary via stage-changes" in summary.notices
    # the demo's bot publishes its metrics. (Not "GenesisReleaseBotSilent never fired": with 1 s
    # checks it fires, rightly, whenever a busy machine makes a tick take over 3 s.)
    assert summary.bot_scraped
    incident = [p for p in summary.reports if "-rollback-gradual-to-stable" in p.name]
    assert len(incident) == 1
    text = incident[0].read_text()
    assert "| error_rate |" in text and "FAIL" in text
    png = incident[0].with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    # the local stack's history is the audit trail of the run
    assert "rollout: rollback gradual -> stable" in (out / "stack-state.json").read_text()
    assert summary.ok
    # every server the demo started is gone
    assert not [n for n in child_processes() if "prometheus" in n or "alertmanager" in n]


def test_a_failing_demo_still_stops_every_server(tmp_path: Path) -> None:
    """A demo that fails midway (here: its time budget runs out) tears down what it started."""
    import pytest

    from rollout.local.demo import DemoError

    console = Console(file=open(tmp_path / "demo.log", "w"), width=200)
    with pytest.raises(DemoError, match="no rollback or completion within 1s"):
        run_demo(REPO, tmp_path / "demo", check_seconds=1.0, hold_seconds=60.0, timeout_seconds=1.0, console=console)
    assert not [n for n in child_processes() if "prometheus" in n or "alertmanager" in n]
