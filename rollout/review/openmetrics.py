"""OpenMetrics text files for `promtool tsdb create-blocks-from openmetrics`: a streaming
writer and a checker that names the line and the rule a bad file breaks.

The checker is the guard: promtool 2.42 lets almost every mistake through silently. It drops
an out-of-order sample, takes millisecond timestamps as seconds (data lands in the year
50000+), accepts split families and a histogram with no +Inf bucket (histogram_quantile then
answers NaN). It only refuses a missing `# EOF` and a sample without a timestamp.

What a replayable file looks like (series-major: one series' whole range, then the next):

    # TYPE pipelex_workflows counter
    pipelex_workflows_total{namespace="genesis",app="genesis",track="canary",pod="genesis-canary-0",version="1.42.0"} 0 1767571200
    ...
    # EOF

- timestamps in seconds on every sample; samples of one series in strictly increasing time;
- each family contiguous, `# TYPE` before its samples; counters named `<family>_total`;
  histogram buckets with an `le` label and an `le="+Inf"` bucket per series;
- the labels a ServiceMonitor puts on a pod's series (`namespace`, `app`, `track`, `pod`,
  `version`); kube-state-metrics series carry `namespace` and `deployment="<app>-<track>"`;
- `# EOF` last.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

import numpy as np

FamilyType = Literal["counter", "gauge", "histogram", "unknown"]

# the suffixes a sample name may carry inside a family of that type
SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "unknown": ("",),
}
MONOTONIC = ("_total", "_bucket", "_count")
MAX_SECONDS = 1e11  # a larger timestamp is in milliseconds (1e11 s is the year 5138)

RULES: dict[str, str] = {
    "bad-line": "a line is neither a comment (# HELP/# TYPE/# UNIT/# EOF) nor `name{labels} value timestamp`",
    "no-timestamp": "every sample needs a timestamp",
    "timestamp-unit": "timestamps are seconds since the epoch, not milliseconds",
    "bad-timestamp": "a timestamp is a finite, non-negative number of seconds in plain ASCII digits",
    "line-ending": "lines end with \\n alone (no CR)",
    "duplicate-label": "a label name appears once per sample",
    "eof-missing": "the file must end with `# EOF`",
    "after-eof": "nothing may follow `# EOF`",
    "family-split": "each metric family must be contiguous",
    "type-after-samples": "# TYPE must come before the family's first sample",
    "counter-name": "counter samples are named <family>_total",
    "histogram-le": "histogram buckets need an `le` label, and each series an le=\"+Inf\" bucket",
    "unordered-sample": "the samples of one series must be in strictly increasing time",
    # only for generated files: a real counter resets when its process restarts (rate() copes)
    "counter-decrease": "a counter, bucket or count went down",
    "unknown-service": "the namespace and app of a series match no service of the project",
    "bad-value": "the value is not a number",
}


class OpenMetricsError(ValueError):
    """A file breaks rules; `problems` holds (line number or 0, rule, message)."""

    def __init__(self, source: str, problems: Sequence[tuple[int, str, str]], stopped: bool = False):
        self.source = source
        self.problems = list(problems)
        lines = [f"  line {n}: [{rule}] {msg}" if n else f"  [{rule}] {msg}" for n, rule, msg in problems]
        if stopped:
            lines.append(f"  ... checking stopped after {len(problems)} problems")
        super().__init__(f"{source}: not a replayable OpenMetrics file\n" + "\n".join(lines))


# --------------------------------------------------------------------------- formatting


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def format_labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}"


def _texts(values: np.ndarray) -> list[object]:
    """Objects whose str() is valid OpenMetrics (ints stay ints; NaN/Inf spelled its way)."""
    if values.dtype.kind in "iu" or np.all(np.isfinite(values)):
        if values.dtype.kind == "f" and np.all(values == np.round(values)) and np.all(np.abs(values) < 1e15):
            return values.astype(np.int64).tolist()
        return values.tolist()
    return [format_value(v) for v in values.tolist()]


# --------------------------------------------------------------------------- writer


class OpenMetricsWriter:
    """Writes one series at a time from numpy arrays, so memory holds numbers (8 bytes a
    sample), never the text (about 140). Refuses what the checker would refuse. `close()`
    (or leaving the `with` block normally) writes `# EOF`; an exception leaves no `# EOF`, so
    a half-written file is never taken for a whole one.

        with OpenMetricsWriter.open(path) as w:
            w.family("pipelex_workflows", "counter", "Pipelex workflows run")
            w.series("pipelex_workflows_total", labels, timestamps, values)
    """

    def __init__(self, out: IO[str]):
        self._out = out
        self._family: tuple[str, FamilyType] | None = None
        self._done: set[str] = set()
        self._series: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        self._closed = False
        self.samples = 0

    @classmethod
    def open(cls, path: Path | str) -> OpenMetricsWriter:
        return cls(open(path, "w", encoding="utf-8", buffering=1 << 20))

    def family(self, name: str, kind: FamilyType, help_text: str = "") -> None:
        if self._closed:
            raise ValueError("the writer is closed")
        if name in self._done or (self._family and self._family[0] == name):
            raise ValueError(f"family {name!r} was already written: families must be contiguous")
        if kind == "counter" and name.endswith("_total"):
            raise ValueError(f"counter family {name!r}: name the family without _total")
        if self._family:
            self._done.add(self._family[0])
        self._family = (name, kind)
        self._out.write((f"# HELP {name} {help_text}\n" if help_text else "") + f"# TYPE {name} {kind}\n")

    def series(self, sample_name: str, labels: Mapping[str, str], timestamps: np.ndarray, values: np.ndarray) -> int:
        """Every sample of one series, oldest first (timestamps in seconds). Returns the count."""
        if self._family is None:
            raise ValueError(f"{sample_name}: call family() first")
        family, kind = self._family
        suffix = sample_name[len(family):] if sample_name.startswith(family) else None
        if suffix not in SUFFIXES[kind]:
            raise ValueError(f"{sample_name} does not belong to {kind} family {family!r}")
        if kind == "histogram" and suffix == "_bucket" and "le" not in labels:
            raise ValueError(f"{sample_name}: histogram buckets need an le label")
        key = (sample_name, tuple(sorted(labels.items())))
        if key in self._series:
            raise ValueError(f"series {sample_name}{format_labels(labels)} written twice")
        self._series.add(key)
        timestamps, values = np.asarray(timestamps), np.asarray(values)
        if timestamps.shape != values.shape or timestamps.ndim != 1:
            raise ValueError(f"{sample_name}: timestamps and values must be 1-d arrays of one length")
        if len(timestamps) == 0:
            return 0
        if len(timestamps) > 1 and not np.all(np.diff(timestamps) > 0):
            raise ValueError(f"{sample_name}{format_labels(labels)}: timestamps not strictly increasing")
        if timestamps.max() > MAX_SECONDS:
            raise ValueError(f"{sample_name}: timestamps look like milliseconds; write seconds")
        prefix = sample_name + format_labels(labels) + " "
        self._out.write("".join(f"{prefix}{v} {t}\n" for v, t in zip(_texts(values), _texts(timestamps))))
        self.samples += len(timestamps)
        return len(timestamps)

    def close(self) -> None:
        if not self._closed:
            self._out.write("# EOF\n")
            self._out.close()
            self._closed = True

    def __enter__(self) -> OpenMetricsWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self._out.close()
            self._closed = True


# --------------------------------------------------------------------------- checker

_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r"(?:\{(?P<labels>[^}]*)\})?"
    r" (?P<value>\S+)"
    r"(?: (?P<ts>\S+))?"
    r"(?: # .*)?$"  # an exemplar
)
# what OpenMetrics (and promtool's parser) takes as a number: ASCII digits only, no `1_0`, no
# full-width digits (Python's float() takes both, promtool refuses them with a vague message)
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:Inf|inf)|NaN")
_TIMESTAMP = re.compile(r"[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(?:,|$)')
_META = re.compile(r"^# (HELP|TYPE|UNIT) ([a-zA-Z_:][a-zA-Z0-9_:]*)(?: (.*))?$")
_TYPES = ("counter", "gauge", "histogram", "unknown", "summary", "stateset", "info", "gaugehistogram")
_TRACK = re.compile(r"-(stable|canary)$")


def _seconds(ts: float) -> str:
    return f"{ts:.3f}".rstrip("0").rstrip(".")


class DuplicateLabel(ValueError):
    pass


def parse_labels(text: str | None) -> dict[str, str]:
    labels: dict[str, str] = {}
    pos = 0
    while text and pos < len(text):
        match = _LABEL.match(text, pos)
        if not match:
            raise ValueError(f"malformed labels at {text[pos:pos + 30]!r}")
        if match.group(1) in labels:
            raise DuplicateLabel(f"label {match.group(1)!r} appears twice")
        labels[match.group(1)] = match.group(2).replace(r"\"", '"').replace(r"\n", "\n").replace(r"\\", "\\")
        pos = match.end()
    return labels


def service_of(labels: Mapping[str, str]) -> tuple[str, str]:
    """(namespace, app) of a series; kube-state-metrics names the Deployment <app>-<track>."""
    app = labels.get("app")
    if app is None and "deployment" in labels:
        app = _TRACK.sub("", labels["deployment"])
    return labels.get("namespace", ""), app or ""


@dataclass
class FileReport:
    """What a valid file holds."""

    path: str
    lines: int = 0
    samples: int = 0
    series: int = 0
    families: list[str] = field(default_factory=list)
    min_time: float | None = None
    max_time: float | None = None
    services: set[tuple[str, str]] = field(default_factory=set)


SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


class _Checker:
    """One pass over a file. A line that continues the previous line's series (the common
    case in a series-major file) skips the regexes: a 650 MB file checks in ~4 s, not ~30."""

    def __init__(self, source: str, services: set[tuple[str, str]] | None, max_problems: int,
                 monotonic_counters: bool):
        self.report = FileReport(source)
        self.services = services
        self.max_problems = max_problems
        self.monotonic_counters = monotonic_counters
        self.problems: list[tuple[int, str, str]] = []
        self.declared: dict[str, str] = {}  # family -> type
        self.closed: dict[str, int] = {}  # family -> the line where another family began
        self.current: str | None = None
        self.current_has_samples = False
        self.last: dict[SeriesKey, tuple[float, float, int]] = {}  # time, value, line
        self.inf_seen: dict[tuple[str, tuple[tuple[str, str], ...]], bool] = {}
        self.label_cache: dict[str | None, dict[str, str]] = {}
        self.eof_line = 0
        # the fast path: the previous sample line's `name{labels}` and its series state
        self.prefix: str | None = None
        self.prefix_key: SeriesKey = ("", ())
        self.prefix_monotonic = False

    def problem(self, line: int, rule: str, message: str) -> None:
        assert rule in RULES, f"undocumented rule {rule!r}"  # every refusal names a documented rule
        if len(self.problems) < self.max_problems:
            self.problems.append((line, rule, message))

    @property
    def full(self) -> bool:
        return len(self.problems) >= self.max_problems

    def fast(self, line: str, number: int) -> bool:
        """The next sample of the previous line's series, fully checked, or False."""
        if self.prefix is None or not line.startswith(self.prefix):
            return False
        rest = line[len(self.prefix):]
        # float() also takes `1_0`, full-width digits, a trailing CR: those take the slow path
        if "_" in rest or not (rest.isascii() and rest.isprintable()):
            return False
        parts = rest.split(" ")
        if len(parts) != 3 or parts[0] != "":
            return False
        try:
            value, ts = float(parts[1]), float(parts[2])
        except ValueError:
            return False
        previous_ts, previous_value, _ = self.last[self.prefix_key]
        if not (ts > previous_ts and ts <= MAX_SECONDS and value == value):
            return False
        if self.prefix_monotonic and value < previous_value:
            return False
        self.last[self.prefix_key] = (ts, value, number)
        self.report.samples += 1
        self.report.max_time = ts if self.report.max_time is None else max(self.report.max_time, ts)
        return True

    def switch_to(self, family: str, number: int) -> None:
        if family == self.current:
            return
        if family in self.closed:
            self.problem(number, "family-split",
                         f"family {family!r} resumes here but ended at line {self.closed[family]}")
        if self.current is not None:
            self.closed[self.current] = number
        self.current, self.current_has_samples = family, False
        if family not in self.report.families:
            self.report.families.append(family)

    def comment(self, line: str, number: int) -> None:
        if line == "# EOF":
            self.eof_line = number
            return
        match = _META.match(line)
        if not match:
            self.problem(number, "bad-line", f"unknown comment {line[:60]!r}")
            return
        kind, family = match.group(1), match.group(2)
        if kind == "TYPE":
            declared = (match.group(3) or "").strip()
            if declared not in _TYPES:
                self.problem(number, "bad-line", f"unknown type {declared!r}")
                return
            if family in self.declared and (family in self.closed or self.current_has_samples):
                self.problem(number, "family-split", f"# TYPE {family} declared again")
            if declared == "counter" and family.endswith("_total"):
                self.problem(number, "counter-name", f"counter family {family!r} must be named without _total")
            if family == self.current and self.current_has_samples:
                self.problem(number, "type-after-samples", f"# TYPE {family} after its samples")
            self.declared.setdefault(family, declared if declared in SUFFIXES else "unknown")
        self.switch_to(family, number)

    def family_of(self, name: str) -> tuple[str, str] | None:
        for suffix in ("_total", "_created", "_bucket", "_count", "_sum", ""):
            if suffix and not name.endswith(suffix):
                continue
            base = name[: len(name) - len(suffix)] if suffix else name
            if base in self.declared and suffix in SUFFIXES[self.declared[base]]:
                return base, suffix
        return None

    def sample(self, line: str, number: int) -> None:
        match = _SAMPLE.match(line)
        if not match:
            self.problem(number, "bad-line", f"cannot parse {line[:80]!r}")
            return
        name, label_text = match.group("name"), match.group("labels")
        labels = self.label_cache.get(label_text)
        if labels is None:
            try:
                labels = parse_labels(label_text)
            except DuplicateLabel as err:
                self.problem(number, "duplicate-label", f"{name}: {err}")
                return
            except ValueError as err:
                self.problem(number, "bad-line", str(err))
                return
            if len(self.label_cache) < 100_000:
                self.label_cache[label_text] = labels
        if not _NUMBER.fullmatch(match.group("value")):
            self.problem(number, "bad-value", f"value {match.group('value')!r} (ASCII digits, . e + -, Inf or NaN)")
            return
        value = float(match.group("value"))
        if match.group("ts") is None:
            self.problem(number, "no-timestamp", f"{name} has no timestamp")
            return
        if not _TIMESTAMP.fullmatch(match.group("ts")):
            self.problem(number, "bad-timestamp", f"timestamp {match.group('ts')!r} of {name}")
            return
        ts = float(match.group("ts"))
        if ts > MAX_SECONDS:
            self.problem(number, "timestamp-unit", f"timestamp {match.group('ts')} (seconds expected, not ms)")
            return
        found = self.family_of(name)
        if found is None:
            if self.current is not None and self.declared.get(self.current) == "counter" and name == self.current:
                self.problem(number, "counter-name", f"counter sample {name!r} must be named {name}_total")
                return
            self.declared[name] = "unknown"  # an undeclared metric is a family of its own
            found = (name, "")
        family, suffix = found
        self.switch_to(family, number)
        self.current_has_samples = True
        if self.declared[family] == "histogram" and suffix == "_bucket":
            if "le" not in labels:
                self.problem(number, "histogram-le", f"{name}: a bucket without an le label")
                return
            group = (family, tuple(sorted((k, v) for k, v in labels.items() if k != "le")))
            self.inf_seen[group] = self.inf_seen.get(group, False) or labels["le"] == "+Inf"
        service = service_of(labels)
        if self.services is not None and service not in self.services:
            allowed = ", ".join(f"{n}/{a}" for n, a in sorted(self.services))
            self.problem(number, "unknown-service",
                         f"{name} has namespace={service[0]!r}, app={service[1]!r}; the project's services are {allowed}")
            return
        key = (name, tuple(sorted(labels.items())))
        previous = self.last.get(key)
        monotonic = self.monotonic_counters and suffix in MONOTONIC
        if previous is not None:
            previous_ts, previous_value, previous_line = previous
            if ts <= previous_ts:
                self.problem(number, "unordered-sample",
                             f"{name}{format_labels(labels)} at {_seconds(ts)} is not after its previous sample "
                             f"at {_seconds(previous_ts)} (line {previous_line})")
                return
            if monotonic and value < previous_value:
                self.problem(number, "counter-decrease",
                             f"{name}{format_labels(labels)} fell from {previous_value:g} (line {previous_line}) to {value:g}")
        else:
            self.report.series += 1
        self.last[key] = (ts, value, number)
        report = self.report
        report.samples += 1
        report.min_time = ts if report.min_time is None else min(report.min_time, ts)
        report.max_time = ts if report.max_time is None else max(report.max_time, ts)
        if service != ("", ""):
            report.services.add(service)
        if value == value:  # NaN always takes the slow path
            self.prefix = line[: match.end("labels") + 1] if label_text is not None else name
            self.prefix_key, self.prefix_monotonic = key, monotonic

    def line(self, raw: str, number: int) -> None:
        line = raw[:-1] if raw.endswith("\n") else raw
        if self.fast(line, number):
            return
        self.prefix = None
        if "\r" in line:
            self.problem(number, "line-ending", "a CR (\\r) in the line: the file has Windows (CRLF) line endings?")
            return
        if self.eof_line:  # a blank line too: promtool refuses anything after # EOF
            self.problem(number, "after-eof", f"content after # EOF (line {self.eof_line}): {line[:60]!r}")
        elif line.startswith("#"):
            self.comment(line, number)
        elif not line.strip():
            self.problem(number, "bad-line", "an empty line")
        else:
            self.sample(line, number)

    def finish(self, lines: int) -> FileReport:
        self.report.lines = lines
        if not self.full:
            if not self.eof_line:
                self.problem(lines, "eof-missing", "the file ends without `# EOF` (truncated?)")
            for (family, group), seen in self.inf_seen.items():
                if not seen:
                    self.problem(0, "histogram-le", f"{family}{format_labels(dict(group))} has no le=\"+Inf\" bucket")
        if self.problems:
            raise OpenMetricsError(self.report.path, self.problems, stopped=self.full)
        return self.report


def check_file(
    path: Path | str,
    *,
    services: Iterable[tuple[str, str]] | None = None,
    max_problems: int = 20,
    monotonic_counters: bool = False,
) -> FileReport:
    """Check a whole file against RULES; returns what it holds or raises OpenMetricsError.
    services: the (namespace, app) pairs a series may belong to (None: any); monotonic_counters: refuse a
    counter that goes down (a generator's promise; real data has resets)."""
    checker = _Checker(str(path), None if services is None else set(services), max_problems, monotonic_counters)
    number = 0
    try:
        with open(path, encoding="utf-8", newline="") as lines:  # newline="": a CR is seen, not translated
            for number, raw in enumerate(lines, 1):
                if checker.full:
                    break
                checker.line(raw, number)
    except OSError as err:
        raise OpenMetricsError(str(path), [(0, "bad-line", f"cannot read: {err.strerror}")]) from None
    except UnicodeDecodeError as err:
        raise OpenMetricsError(str(path), [(number + 1, "bad-line", f"not UTF-8 text: {err.reason}")]) from None
    return checker.finish(number)
