"""`rollout replay` through the CLI on generated metrics: the JSON contract, --stage and
--policy, and a clear refusal of bad input. Every replay backfills into the real promtool and
Prometheus (Debian prometheus); the metrics are the synthetic scenario generator's
(rollout/local/scenarios.py), standing in for what a real Prometheus recorded."""

from __future__ import annotations

import itertools
import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from support import REPO_ROOT as REPO
from typer.testing import CliRunner, Result

from rollout.cli import app
from rollout.local.scenarios import Effect, Fault, ScenarioSpec, generate

H, M = timedelta(hours=1), timedelta(minutes=1)
START = "2026-01-05T00:00:00Z"
# a short stage whose canary turns bad at 1h02: the plan's policy rolls back at 1h15
SHORT_BAD = ScenarioSpec(name="short-bad", duration=2 * H, faults=(Fault(H + 2 * M, Effect(error_probability=0.05)),))


def rollout(*args: str):  # noqa: ANN201
    return CliRunner().invoke(app, [*args, "-C", str(REPO)])


@pytest.fixture(scope="module")
def short_bad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("replay") / "short-bad.om"
    generate(SHORT_BAD, path)
    return path


def test_the_json_follows_the_contract(short_bad: Path) -> None:
    result = rollout("replay", "--metrics", str(short_bad), "--start", START, "--stage", "canary", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert list(report) == ["stage", "start", "end", "checks", "decision"]
    assert (report["stage"], report["start"], report["end"]) == ("canary", START, "2026-01-05T02:00:00Z")
    assert list(report["decision"]) == ["action", "at", "reason"]
    assert report["decision"] == {"action": "rollback", "at": "2026-01-05T01:15:00Z",
                                  "reason": "the last 3 checks failed (limit 3)"}
    checks = report["checks"]
    assert [c["at"] for c in checks[:2]] == ["2026-01-05T00:05:00Z", "2026-01-05T00:10:00Z"]
    assert checks[-1]["at"] == report["decision"]["at"]  # it stops at the first decision
    assert [c["verdict"] for c in checks[-3:]] == ["fail"] * 3
    assert all(set(c) == {"at", "verdict", "gates"} for c in checks)
    error = next(g for g in checks[-1]["gates"] if g["name"] == "error_rate")
    assert error["status"] == "fail" and error["value"] > 0.01 and error["baseline"] < 0.01


def test_the_readable_timeline_and_the_plot(short_bad: Path, tmp_path: Path) -> None:
    result = rollout("replay", "--metrics", str(short_bad), "--start", "1767571200", "--stage", "canary",
                     "--plot", str(tmp_path / "replay.png"))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].startswith("replay of stage canary (10%) for genesis: 2026-01-05T00:00:00Z")
    assert "decision at +1h15: rollback - the last 3 checks failed (limit 3)" in result.stdout
    assert "+1h05" in result.stdout and "critical threshold breached: error_rate" in result.stdout
    assert (tmp_path / "replay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_policy_file_replays_like_its_stage_and_can_count_cumulatively(short_bad: Path, tmp_path: Path) -> None:
    policy = tmp_path / "flagger-like.yaml"
    shutil.copy(REPO / "Pulumi.canary.yaml", policy)
    same = rollout("replay", "--metrics", str(short_bad), "--start", START, "--policy", str(policy), "--json")
    assert same.exit_code == 0, same.output
    assert json.loads(same.stdout)["decision"]["at"] == "2026-01-05T01:15:00Z"

    data = yaml.safe_load(policy.read_text())
    data["config"]["genesis-rollout:analysis"].update(checkInterval="1m", consecutiveFailures=5, cumulativeFailures=5)
    policy.write_text(yaml.safe_dump(data))
    faster = rollout("replay", "--metrics", str(short_bad), "--start", START, "--policy", str(policy), "--json")
    assert faster.exit_code == 0, faster.output
    decision = json.loads(faster.stdout)["decision"]
    assert decision["action"] == "rollback"
    assert START < decision["at"] < "2026-01-05T01:15:00Z"  # 1-minute checks decide sooner


def test_the_last_stage_completes_the_release(tmp_path: Path) -> None:
    healthy = tmp_path / "healthy.om"
    generate(ScenarioSpec(name="healthy-3h", duration=3 * H, canary_pods=10, traffic=_full_traffic()), healthy)
    policy = tmp_path / "full-1h.yaml"
    data = yaml.safe_load((REPO / "Pulumi.full.yaml").read_text())
    data["config"]["genesis-rollout:analysis"]["hold"] = "1h"
    policy.write_text(yaml.safe_dump(data))
    result = rollout("replay", "--metrics", str(healthy), "--start", START, "--policy", str(policy), "--json")
    assert result.exit_code == 0, result.output
    decision = json.loads(result.stdout)["decision"]
    assert decision["action"] == "complete" and decision["at"].startswith("2026-01-05T01:")


def _full_traffic():  # noqa: ANN202
    from rollout.local.scenarios import Traffic

    return Traffic(canary_weight=100.0)


def test_no_decision_by_the_end_is_a_wait(short_bad: Path) -> None:
    result = rollout("replay", "--metrics", str(short_bad), "--start", START, "--end", "2026-01-05T00:40:00Z",
                     "--stage", "canary", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["decision"]["action"] == "wait" and report["decision"]["at"] is None
    assert report["decision"]["reason"] == "no decision by the end of the data: hold: 1d23h20m left; 3 of 3 passing checks in a row"
    assert len(report["checks"]) == 8


# --------------------------------------------------------------------------- refusals


def edited(source: Path, tmp_path: Path, edit) -> Path:  # noqa: ANN001
    lines = source.read_text().splitlines(keepends=True)
    path = tmp_path / "edited.om"
    path.write_text("".join(edit(lines)))
    return path


def swap_two_samples(lines: list[str]) -> list[str]:
    index = next(i for i, line in enumerate(lines) if line.startswith("pipelex_workflows_total{"))
    lines[index + 1], lines[index + 2] = lines[index + 2], lines[index + 1]
    return lines


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (swap_two_samples, "[unordered-sample] pipelex_workflows_total{"),
        (lambda lines: lines[:-1], "[eof-missing] the file ends without `# EOF`"),
        (lambda lines: [line.replace('app="genesis"', 'app="payments"') for line in lines[:40]] + lines[40:],
         "[unknown-service] spice_tasks_generated_total has namespace='genesis', app='payments'; "
         "the project's services are genesis/genesis"),
    ],
    ids=["unordered-samples", "missing-eof", "unknown-service"],
)
def test_bad_metrics_are_refused_naming_file_line_and_rule(short_bad: Path, tmp_path: Path, edit, expected: str) -> None:  # noqa: ANN001
    bad = edited(short_bad, tmp_path, edit)
    result = rollout("replay", "--metrics", str(bad), "--start", START, "--stage", "canary")
    assert result.exit_code == 3, result.output
    assert f"{bad}: not a replayable OpenMetrics file" in result.output and expected in result.output
    assert "line " in result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--start", "2026-01-05T03:00:00Z"], "--start 2026-01-05T03:00:00Z is after the end of the replay 2026-01-05T02:00:00Z"),
        (["--start", START, "--end", "2026-01-04T00:00:00Z"], "--start 2026-01-05T00:00:00Z is after --end 2026-01-04T00:00:00Z"),
        (["--start", "yesterday"], "--start: 'yesterday' is neither RFC 3339"),
        (["--start", "2026-01-05T00:00:00"], "needs a time zone"),
        (["--start", START, "--stage", "canary", "--policy", "Pulumi.canary.yaml"], "give exactly one of --stage"),
        (["--start", START, "--stage", "nope"], "no stage file for stage 'nope'"),
    ],
)
def test_bad_flags_are_refused(short_bad: Path, args: list[str], expected: str) -> None:
    if "--stage" not in args and "--policy" not in args:
        args = [*args, "--stage", "canary"]
    result = rollout("replay", "--metrics", str(short_bad), *args)
    assert result.exit_code == 3, result.output
    assert expected in " ".join(result.output.split())


def test_a_policy_that_breaks_the_schema_is_refused_before_anything_runs(short_bad: Path, tmp_path: Path) -> None:
    policy = tmp_path / "bad.yaml"
    data = yaml.safe_load((REPO / "Pulumi.canary.yaml").read_text())
    data["config"]["genesis-rollout:gates"]["errorRate"]["rollback"] = False
    policy.write_text(yaml.safe_dump(data))
    result = rollout("replay", "--metrics", str(short_bad), "--start", START, "--policy", str(policy))
    assert result.exit_code == 3
    assert str(policy) in result.output and "rollback triggers" in result.output


def test_an_aa_replay_prints_the_judges_calibration(tmp_path: Path) -> None:
    """A/A: the same version on both tracks, every pod failing half its requests for 30 s once
    an hour. The replay under the recommended policy prints, per judged gate, the largest
    e-value against 1/alpha (well below: no crossing) and the noise: the bursts show as a
    dispersion of the canary's errors far above 1 and interval shares near 1."""
    from rollout.local.scenarios import LIBRARY

    recording = tmp_path / "aa.om"
    generate(ScenarioSpec(name="aa-bursts", duration=3 * H, faults=LIBRARY["pod-bursts"].faults), recording)
    result = rollout("replay", "--metrics", str(recording), "--start", START, "--policy",
                     str(REPO / "benchmarks" / "policies" / "recommended.yaml"))
    gates = calibration_below_threshold(result)
    dispersion = float(gates["error_rate"].split("dispersion ")[1].split()[0])
    share = float(gates["error_rate"].split("largest canary share ")[1])
    assert dispersion > 5 and share > 0.9  # the bursts, seen
    assert "(jitter)" in gates["p95_latency_seconds"]


def calibration_below_threshold(result: Result) -> dict[str, str]:
    """The replay's judge calibration lines per gate, each checked below its 1/alpha."""
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    start = lines.index("judge calibration (largest e-value of the stage against 1/alpha; the noise it saw):")
    gates = {line.split()[0]: line for line in lines[start + 1:] if line.startswith("  ")}
    assert {"error_rate", "p95_latency_seconds", "pipelex_success_rate", "fallback_rate"} <= set(gates)
    for line in gates.values():
        e_max, threshold = float(line.split("e_max ")[1].split()[0]), float(line.split("1/alpha ")[1].split()[0])
        assert e_max < threshold and "CROSSED" not in line, line
    return gates


@pytest.mark.parametrize("name", ["pod-jitter", "bucket-layout-change"])
def test_an_aa_replay_with_pod_noise_or_a_new_bucket_layout_stays_below_the_threshold(name: str, tmp_path: Path) -> None:
    """A/A under the recommended policy, 3 h: every pod's latency wandering ~20 % minute to
    minute, or a canary version that dropped two buckets (those boundaries do not vote; the
    rest still do, and nothing raises)."""
    from rollout.local.scenarios import LIBRARY

    recording = tmp_path / "aa.om"
    spec = LIBRARY[name]
    generate(ScenarioSpec(name=f"aa-{name}", duration=3 * H, traffic=spec.traffic, faults=spec.faults,
                          canary_drops_buckets=spec.canary_drops_buckets), recording)
    result = rollout("replay", "--metrics", str(recording), "--start", START, "--policy",
                     str(REPO / "benchmarks" / "policies" / "recommended.yaml"))
    gates = calibration_below_threshold(result)
    latency = gates["p95_latency_seconds"]
    # a range, not "-": the latency judge voted (on the boundaries both tracks still have)
    low, high = (float(v) for v in latency.split("slow share over ")[1].split()[2].split(".."))
    assert 0 < low <= high
    if name == "pod-jitter":
        assert low < 0.5 and high > 2  # the jitter, seen: single intervals far from the common 1


def test_a_scenario_names_a_dropped_bucket_that_is_not_in_the_layout() -> None:
    with pytest.raises(ValueError, match=r"scenario 'x': canary_drops_buckets \[0.25\] are not boundaries"):
        ScenarioSpec(name="x", canary_drops_buckets=(0.25,))


def test_a_replay_tells_its_progress_on_stderr_and_keeps_stdout_for_the_result(short_bad: Path) -> None:
    result = rollout("replay", "--metrics", str(short_bad), "--start", START, "--stage", "canary", "--json")
    assert result.exit_code == 0, result.output
    json.loads(result.stdout)  # stdout is the JSON alone
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"checking {short_bad} (") and lines[0].endswith(" MB)"), result.stderr
    assert [line.split(":")[0] for line in lines[1:4]] == ["backfill", "rules", "checks"], result.stderr
    done = [line for line in lines if line.startswith("checks: ") and " done" in line]
    assert len(done) >= 5, done
    assert done[-1] == "checks: 15/24 done (+1h15m): rollback"  # the rollback at +1h15 is check 15 of 24


def test_a_scenario_cut_with_hours_and_scrape_is_small_and_still_replays_to_the_plans_outcome(tmp_path: Path) -> None:
    path = tmp_path / "step-errors.om"
    written = CliRunner().invoke(app, ["scenario", "step-errors", "--out", str(path), "--hours", "7", "--scrape", "60s"])
    assert written.exit_code == 0, written.output
    assert "7h, a scrape every 1m" in written.stdout
    assert path.stat().st_size < 25_000_000  # GitHub's attachment limit
    stamps = sorted({float(line.rsplit(" ", 1)[1]) for line in path.read_text().splitlines()
                     if line.startswith("genesis_request_duration_seconds_count{") and 'pod="genesis-canary-0"' in line})
    assert stamps[-1] - stamps[0] == 7 * 3600 and {b - a for a, b in itertools.pairwise(stamps)} == {60.0}
    result = rollout("replay", "--metrics", str(path), "--start", START, "--stage", "canary", "--json")
    assert result.exit_code == 0, result.output
    decision = json.loads(result.stdout)["decision"]
    assert decision["action"] == "rollback" and "2026-01-05T06:05:00Z" <= decision["at"] <= "2026-01-05T06:20:00Z"


@pytest.mark.parametrize(("args", "expected"), [
    (["--hours", "0"], "--hours must be above 0 and at most the scenario's 2d1h (got 0)"),
    (["--hours", "50"], "--hours must be above 0"),
    (["--scrape", "5m"], "--scrape must be between 1s and 120s"),
    (["--scrape", "fast"], "--scrape: must be a duration like"),
])
def test_scenario_refuses_a_cut_that_cannot_replay(tmp_path: Path, args: list[str], expected: str) -> None:
    result = CliRunner().invoke(app, ["scenario", "step-errors", "--out", str(tmp_path / "x.om"), *args])
    assert result.exit_code == 3 and expected in result.stderr, result.output
    assert not (tmp_path / "x.om").exists()


# --------------------------------------------------------------------------- ranges and paths (issue 20)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--start", "2020-01-05T00:00:00Z"], "is more than 1d before the file's first sample (2026-01-05T00:00:00Z)"),
        (["--start", START, "--end", "2030-01-05T00:00:00Z"], "is more than 1d after the file's last sample"),
        (["--start", "1e300"], "--start: '1e300' is not a time"),
        (["--start", START, "--end", "inf"], "--end: 'inf' is not a time"),
        (["--start", "nan"], "--start: 'nan' is not a time"),
        (["--start", START, "--plot", "/nonexistent/x.png"], "--plot: the folder /nonexistent does not exist"),
    ],
    ids=["start-years-before", "end-years-after", "start-1e300", "end-inf", "start-nan", "plot-folder-missing"],
)
def test_absurd_ranges_and_paths_are_refused_with_the_flag_named(short_bad: Path, flags: list[str], message: str) -> None:
    """Was: an OverflowError traceback (exit 1), a traceback after the replay, or hours of checks."""
    result = rollout("replay", "--metrics", str(short_bad), "--stage", "canary", *flags)
    assert result.exit_code == 3, result.output
    assert message in result.output and "Traceback" not in result.output


def test_a_metrics_file_that_never_ends_is_refused() -> None:
    result = rollout("replay", "--metrics", "/dev/zero", "--start", START, "--stage", "canary")
    assert result.exit_code == 3, result.output
    assert "/dev/zero: not a regular file" in result.output


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--start", "1970-01-02T00:00:00Z", "--end", "2070-01-01T00:00:00Z"], "export at most 31 days at once"),
     (["--start", "inf", "--end", START], "--start: 'inf' is not a time"),
     (["--start", START, "--end", "2026-01-06T00:00:00Z", "--out", "DIR"], "is a directory; give a file name")],
    ids=["a-century", "inf", "out-is-a-directory"],
)
def test_export_refuses_absurd_ranges_before_any_query(tmp_path: Path, flags: list[str], message: str) -> None:
    """Was: 44,818 queries for 100 years; a traceback for --out DIR. The Prometheus here is a
    closed port: a refusal must come before any query."""
    from rollout.review.localstack import free_port

    flags = [str(tmp_path) if f == "DIR" else f for f in flags]
    if "--out" not in flags:
        flags += ["--out", str(tmp_path / "out.om")]
    result = rollout("export", "--prometheus", f"http://127.0.0.1:{free_port()}", *flags)
    assert result.exit_code == 3, result.output
    assert message in result.output and "Traceback" not in result.output


def test_sigterm_stops_the_replays_prometheus(short_bad: Path) -> None:
    """Was: SIGTERM killed `rollout replay` and left its Prometheus running. The replay runs as a
    user starts it (its own process); once its Prometheus child is up, SIGTERM."""
    import os
    import signal
    import subprocess
    import sys

    from rollout.review.localstack import wait_for

    command = [str(Path(sys.executable).parent / "rollout"), "replay", "--metrics", str(short_bad), "--start", START,
               "--stage", "canary", "-C", str(REPO)]
    replaying = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)

    def prometheus_children() -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except (OSError, ValueError):
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == replaying.pid and b"storage.tsdb.path" in cmdline:
                found.append(int(entry.name))
        return found

    children: list[int] = []
    try:
        wait_for(lambda: prometheus_children() or replaying.poll() is not None, 240, "the replay's Prometheus", interval=0.05)
        children = prometheus_children()
        assert children, f"the replay ended before its Prometheus was seen: {replaying.stderr.read()!r}"
        replaying.send_signal(signal.SIGTERM)
        assert replaying.wait(timeout=60) != 0
        for pid in children:
            wait_for(lambda pid=pid: not Path(f"/proc/{pid}").exists(), 30, f"Prometheus {pid} to stop")
    finally:
        if replaying.poll() is None:
            os.killpg(replaying.pid, signal.SIGKILL)
        for pid in children:  # a failed test leaves nothing running either
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)
