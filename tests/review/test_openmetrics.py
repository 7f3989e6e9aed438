"""rollout.review.openmetrics: the writer, and the checker that names the line and the rule of
every mistake promtool would let through; real promtool accepts what the writer writes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from rollout.review.openmetrics import (
    RULES,
    OpenMetricsError,
    OpenMetricsWriter,
    check_file,
)

POD = 'namespace="genesis",app="genesis",track="canary",pod="genesis-canary-0",version="1.42.0"'
GOOD = f"""# HELP pipelex_workflows Pipelex workflows run
# TYPE pipelex_workflows counter
pipelex_workflows_total{{{POD}}} 0 1767571200
pipelex_workflows_total{{{POD}}} 7 1767571230
# TYPE genesis_error_rate gauge
genesis_error_rate{{{POD}}} 0.01 1767571200
# TYPE genesis_request_duration_seconds histogram
genesis_request_duration_seconds_bucket{{{POD},le="0.1"}} 3 1767571200
genesis_request_duration_seconds_bucket{{{POD},le="+Inf"}} 4 1767571200
genesis_request_duration_seconds_count{{{POD}}} 4 1767571200
genesis_request_duration_seconds_sum{{{POD}}} 0.5 1767571200
# TYPE kube_deployment_spec_replicas gauge
kube_deployment_spec_replicas{{namespace="genesis",deployment="genesis-canary"}} 1 1767571200
# EOF
"""
SERVICES = {("genesis", "genesis")}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "metrics.om"
    path.write_text(text)
    return path


def test_a_good_file_reports_what_it_holds(tmp_path: Path) -> None:
    report = check_file(write(tmp_path, GOOD), services=SERVICES)
    assert (report.samples, report.series) == (8, 7)
    assert report.families == ["pipelex_workflows", "genesis_error_rate", "genesis_request_duration_seconds",
                               "kube_deployment_spec_replicas"]
    assert (report.min_time, report.max_time) == (1767571200, 1767571230)
    assert report.services == {("genesis", "genesis")}  # the Deployment maps back to its app


def broken(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


CASES = {
    "unordered-sample": (broken(GOOD, "7 1767571230", "7 1767571100"), 4),
    "eof-missing": (GOOD.replace("# EOF\n", ""), 13),
    "unknown-service": (broken(GOOD, 'genesis_error_rate{namespace="genesis",app="genesis"',
                               'genesis_error_rate{namespace="genesis",app="payments"'), 6),
    "timestamp-unit": (broken(GOOD, "0.01 1767571200", "0.01 1767571200000"), 6),
    "no-timestamp": (broken(GOOD, "0.01 1767571200", "0.01"), 6),
    "counter-name": (broken(GOOD, "pipelex_workflows_total{", "pipelex_workflows{"), 3),
    "family-split": (GOOD.replace("# EOF\n", f"pipelex_workflows_total{{{POD}}} 9 1767571260\n# EOF\n"), 14),
    "after-eof": (GOOD + "genesis_error_rate 1 1\n", 15),
    "bad-value": (broken(GOOD, "0.01 1767571200", "abc 1767571200"), 6),
    "bad-line": (broken(GOOD, "# TYPE genesis_error_rate gauge", "# TYPO genesis_error_rate gauge"), 5),
    "bad-timestamp": (broken(GOOD, "0.01 1767571200", "0.01 NaN"), 6),
    "duplicate-label": (broken(GOOD, 'genesis_error_rate{namespace="genesis",', 'genesis_error_rate{namespace="genesis",namespace="genesis",'), 6),
    "line-ending": (GOOD.replace("\n", "\r\n"), 1),
}


@pytest.mark.parametrize(
    ("old", "new", "line", "rule"),
    [
        ("0.01 1767571200", "0.01 -1767571200", 6, "bad-timestamp"),  # negative
        ("0.01 1767571200", "0.01 +Inf", 6, "bad-timestamp"),
        ("0.01 1767571200", "1_0 1767571200", 6, "bad-value"),  # float() takes 1_0
        ("0.01 1767571200", "\uff11\uff10 1767571200", 6, "bad-value"),  # full-width digits
        ("7 1767571230", "7 1767571230\r", 4, "line-ending"),  # the fast path's line
        ("7 1767571230", "1_0 1767571230", 4, "bad-value"),  # the fast path's line
        ("7 1767571230", "7 1767571200", 4, "unordered-sample"),  # the same time twice: not after it
        ("# EOF\n", "# EOF\n\n", 15, "after-eof"),  # a blank line after # EOF
    ],
    ids=["negative-ts", "inf-ts", "underscore", "full-width", "cr-fast-path", "underscore-fast-path",
         "equal-timestamps", "blank-after-eof"],
)
def test_what_float_or_a_lax_check_would_let_through_is_named(tmp_path: Path, old: str, new: str, line: int, rule: str) -> None:
    """Was: through to promtool's vague errors (or silently taken). Now: line and rule."""
    path = tmp_path / "metrics.om"
    path.write_bytes(broken(GOOD, old, new).encode())
    with pytest.raises(OpenMetricsError) as refused:
        check_file(path, services=SERVICES)
    assert (line, rule) in [(n, r) for n, r, _ in refused.value.problems], refused.value.problems


@pytest.mark.parametrize("rule", sorted(CASES))
def test_each_mistake_is_named_with_its_line_and_rule(tmp_path: Path, rule: str) -> None:
    text, line = CASES[rule]
    with pytest.raises(OpenMetricsError) as refused:
        check_file(write(tmp_path, text), services=SERVICES)
    assert (line, rule) in [(n, r) for n, r, _ in refused.value.problems], refused.value.problems
    assert f"line {line}: [{rule}]" in str(refused.value) and "metrics.om" in str(refused.value)


def test_a_histogram_without_its_inf_bucket_is_refused(tmp_path: Path) -> None:
    text = GOOD.replace(f'genesis_request_duration_seconds_bucket{{{POD},le="+Inf"}} 4 1767571200\n', "")
    with pytest.raises(OpenMetricsError, match=r'\[histogram-le\] .*has no le="\+Inf" bucket'):
        check_file(write(tmp_path, text))


def test_a_counter_reset_is_real_data_but_a_generator_bug(tmp_path: Path) -> None:
    path = write(tmp_path, broken(GOOD, "7 1767571230", "0 1767571230").replace(f"{{{POD}}} 0 1767571200", f"{{{POD}}} 5 1767571200", 1))
    check_file(path)  # a process restart resets counters; rate() copes
    with pytest.raises(OpenMetricsError, match=r"\[counter-decrease\]"):
        check_file(path, monotonic_counters=True)


def test_problems_are_capped_and_counted(tmp_path: Path) -> None:
    lines = "".join(f"genesis_error_rate{{{POD}}} 1 {1767571200 - i}\n" for i in range(40))
    with pytest.raises(OpenMetricsError) as refused:
        check_file(write(tmp_path, f"# TYPE genesis_error_rate gauge\n{lines}# EOF\n"), max_problems=5)
    assert len(refused.value.problems) == 5 and "checking stopped after 5 problems" in str(refused.value)
    assert "at 1767571199 is not after its previous sample at 1767571200 (line 2)" in str(refused.value)


def test_a_sample_at_exactly_its_previous_time_is_refused(tmp_path: Path) -> None:
    """The `<=` boundary: two samples of one series at the same instant (slow and fast path)."""
    for text in (f"# TYPE genesis_error_rate gauge\ngenesis_error_rate{{{POD}}} 1 1767571200\n"
                 f"genesis_error_rate{{{POD}}} 2 1767571200\n# EOF\n",
                 f"# TYPE genesis_error_rate gauge\ngenesis_error_rate{{{POD}}} 1 1767571199\n"
                 f"genesis_error_rate{{{POD}}} 1 1767571200\ngenesis_error_rate{{{POD}}} 2 1767571200\n# EOF\n"):
        with pytest.raises(OpenMetricsError, match=r"\[unordered-sample\] .* at 1767571200 is not after its previous sample at 1767571200"):
            check_file(write(tmp_path, text))


def test_every_rule_is_documented() -> None:
    assert set(CASES) | {"histogram-le", "counter-decrease", "type-after-samples"} == set(RULES)


def test_the_writer_refuses_what_the_checker_would(tmp_path: Path) -> None:
    with OpenMetricsWriter.open(tmp_path / "w.om") as writer:
        writer.family("pipelex_workflows", "counter")
        with pytest.raises(ValueError, match="does not belong"):
            writer.series("pipelex_workflows", {}, np.array([1]), np.array([1]))
        with pytest.raises(ValueError, match="strictly increasing"):
            writer.series("pipelex_workflows_total", {}, np.array([2, 1]), np.array([1, 2]))
        with pytest.raises(ValueError, match="milliseconds"):
            writer.series("pipelex_workflows_total", {"a": "1"}, np.array([1767571200000]), np.array([1]))
        writer.series("pipelex_workflows_total", {"a": "2"}, np.array([1, 2]), np.array([0, 3]))
        writer.family("genesis_error_rate", "gauge")
        with pytest.raises(ValueError, match="already written"):
            writer.family("pipelex_workflows", "counter")
    assert (tmp_path / "w.om").read_text().endswith("# EOF\n")
    report = check_file(tmp_path / "w.om", monotonic_counters=True)  # what it did write passes the checker
    assert report.samples == 2


def test_a_writer_that_fails_leaves_no_eof(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with OpenMetricsWriter.open(tmp_path / "w.om") as writer:
            writer.family("genesis_error_rate", "gauge")
            raise RuntimeError("the generator crashed")
    with pytest.raises(OpenMetricsError, match="eof-missing"):
        check_file(tmp_path / "w.om")


def test_promtool_backfills_what_the_writer_wrote(tmp_path: Path) -> None:
    """The real promtool (Debian prometheus) reads the file into a TSDB block with every sample."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed (Debian package prometheus)"
    path = tmp_path / "w.om"
    times = np.arange(1767571200, 1767571200 + 3600, 30)
    with OpenMetricsWriter.open(path) as writer:
        writer.family("genesis_error_rate", "gauge", "Share of requests that failed")
        writer.series("genesis_error_rate", {"namespace": "genesis", "app": "genesis"}, times, np.linspace(0, 0.5, len(times)))
    data = tmp_path / "data"
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(path), str(data)], check=True, capture_output=True)
    listed = subprocess.run([promtool, "tsdb", "list", str(data)], check=True, capture_output=True, text=True).stdout
    assert f" {len(times)} " in listed.splitlines()[1]  # NUM SAMPLES
