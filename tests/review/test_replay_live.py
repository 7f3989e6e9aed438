"""A replay judges like the live bot on the same data.

A real Prometheus scrapes synthetic Genesis pods with the stage's recording rules (timing
compressed: 1 s checks over a 10 s window) while the canary turns bad; the bot's own check code
judges every instant live; `rollout export` then writes what that Prometheus stored, and
`rollout replay` backfills it into a second, fresh Prometheus (promtool, the recording rules
evaluated anew) and judges the same instants. Verdicts and the decision must agree, up to one
thing no replay can know: the phase at which the cluster's Prometheus evaluated its recording
rules (an offset within the interval, hashed from the rule file's path). So a verdict may
differ only next to a change of verdict, and the decision by at most one recording interval.
"""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime
from pathlib import Path

from support.live import compressed_config, live_stack
from typer.testing import CliRunner

from rollout.analysis.decision import EVERY_CHECK, check_times, decide
from rollout.cli import app
from rollout.monitoring.alert_rules import recording_interval
from rollout.release.bot import check_services
from rollout.review.openmetrics import check_file
from rollout.review.replay import replay

APP = "genesis"


def test_a_replay_of_exported_metrics_gives_the_live_bots_verdicts(tmp_path: Path) -> None:
    config = compressed_config([APP])
    stage = config.stage
    with live_stack(config, {APP: "healthy"}) as live:
        live.wait_for_full_window()
        start = datetime.fromtimestamp(math.floor(time.time()) - 10, UTC)  # the stage "began" a window ago
        time.sleep(8)
        live.workloads[(APP, "canary")].set_profile("bad")
        time.sleep(14)
        end = datetime.fromtimestamp(math.floor(time.time()) - 2, UTC)
        instants = check_times(stage, start, end, count=EVERY_CHECK)  # the live bot's grid
        live_checks = [check_services(config.project.services, live.prom, stage, at, since=start) for at in instants]

        exported = tmp_path / "exported.om"
        result = CliRunner().invoke(app, [
            "export", "--prometheus", live.prometheus.url, "--start", str(start.timestamp() - 20),
            "--end", str(end.timestamp() + 1), "--out", str(exported), "-C", str(_project(tmp_path, config)),
        ])
        assert result.exit_code == 0, result.output
    assert "genesis_request_duration_seconds" in result.output and "kube_deployment_spec_replicas" in result.output
    report = check_file(exported, services={("genesis", APP)})
    assert report.series > 20

    replayed = replay(exported, config, start, end)
    live_verdicts = [c.verdict for c in live_checks]
    assert "pass" in live_verdicts and "fail" in live_verdicts  # the canary really turned bad
    first_decision = next(
        (at, d) for i, at in enumerate(instants)
        if (d := decide(stage, start, at, live_checks[: i + 1])).action != "wait"
    )
    interval = recording_interval(stage)
    assert replayed.action == first_decision[1].action == "rollback"
    assert replayed.decided_at is not None and abs(replayed.decided_at - first_decision[0]) <= interval
    changes = {i for i in range(1, len(live_verdicts)) if live_verdicts[i] != live_verdicts[i - 1]}
    near_a_change = {j for i in changes for j in (i - 1, i)}
    replay_verdicts = [c.verdict for c in replayed.checks]
    differing = {i for i, (a, b) in enumerate(zip(live_verdicts, replay_verdicts)) if a != b}
    assert differing <= near_a_change, (live_verdicts, replay_verdicts)
    assert len(replay_verdicts) - len(differing) >= 10  # most checks agree exactly
    # gate by gate, with the same allowance next to a change of that gate's own status (a gate
    # can turn from hold to fail while the verdict stays fail)
    live_gates = [{g.name: g.status for g in c.gates} for c in live_checks]
    replay_gates = [{g.name: g.status for g in c.gates} for c in replayed.checks]
    for name in live_gates[0]:
        statuses = [gates[name] for gates in live_gates]
        moved = {j for i in range(1, len(statuses)) if statuses[i] != statuses[i - 1] for j in (i - 1, i)}
        for i, (live_status, replayed_gates) in enumerate(zip(statuses, replay_gates)):
            if i not in moved:
                assert replayed_gates[name] == live_status, (name, i, statuses, [g[name] for g in replay_gates])


def _project(tmp_path: Path, config) -> Path:  # noqa: ANN001
    """A project dir whose Pulumi.yaml names the live stack's services (export reads them)."""
    import yaml
    from support.stack import copy_project

    project = copy_project(tmp_path)
    path = project / "Pulumi.yaml"
    data = yaml.safe_load(path.read_text())
    data["config"]["genesis-rollout:services"]["value"] = [
        json.loads(s.model_dump_json(by_alias=True, exclude_none=True)) for s in config.project.services
    ]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return project
