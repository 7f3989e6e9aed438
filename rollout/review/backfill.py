"""Recorded metrics into a real Prometheus, with the stage's own recording rules evaluated over
them, so a replay reads exactly the series the live bot reads.

    promtool tsdb create-blocks-from openmetrics FILE DATA        (the raw samples, one block)
    prometheus --storage.tsdb.path=DATA                           (to evaluate the rules against)
    promtool tsdb create-blocks-from rules --start --end --url    (the recording rules, one block per rule)
    prometheus again, with the rule blocks moved into DATA

Measured pitfalls of promtool 2.42, each handled here:
- it re-reads the whole input once per output block: the default 2h blocks make a 48h file
  25 passes (~50 s for 650 MB); `--max-block-duration` (a hidden flag) makes it one (~7 s);
- the rules backfill's `--end` defaults to now - 3h: always given;
- rule evaluations are offset within the interval by a hash of the group name and the rule
  file path *as given*, like a live Prometheus: the file is always passed as the same bare
  name from its own directory, so two replays of one file give the same verdicts;
- retention counts from the newest block: the serving Prometheus keeps 100 years.
A replay is faithful up to that offset (under one recording interval): the live cluster's own
offset is unknown.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Iterator

import yaml

from rollout.model import Stage
from rollout.monitoring.alert_rules import recording_group
from rollout.review.localstack import Running, require_binary, serve_tsdb

RULE_FILE = "recording.rules.yaml"  # one fixed name: the evaluation offset depends on it
BLOCK_BASE_HOURS = 2  # TSDB block ranges are 2h x 3^k


class BackfillError(RuntimeError):
    """promtool or Prometheus refused the data; the message has their output."""


def block_duration_for(min_ts: float, max_ts: float) -> str:
    """The smallest --max-block-duration whose aligned block holds [min_ts, max_ts]: promtool
    rounds the flag down to a TSDB range (2h x 3^k) and cuts at multiples of it since the epoch."""
    for k in range(10):
        size = BLOCK_BASE_HOURS * 3**k * 3600
        if math.floor(min_ts / size) == math.floor(max_ts / size):
            return f"{BLOCK_BASE_HOURS * 3**k}h"
    return f"{BLOCK_BASE_HOURS * 3**9}h"


def _run(argv: Sequence[str], what: str, cwd: Path | None = None) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, cwd=cwd)
    if done.returncode != 0:
        raise BackfillError(f"{what} failed (exit {done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    return done.stdout + done.stderr


def backfill_openmetrics(path: Path, data_dir: Path, min_ts: float, max_ts: float) -> None:
    promtool = require_binary("promtool")
    _run([promtool, "tsdb", "create-blocks-from", "openmetrics",
          f"--max-block-duration={block_duration_for(min_ts, max_ts)}", str(path), str(data_dir)],
         "promtool tsdb create-blocks-from openmetrics")


def recording_rule_file(stage: Stage) -> str:
    """The stage's recording group as a plain rule file (what promtool reads)."""
    return yaml.safe_dump({"groups": [recording_group(stage)]}, sort_keys=False, width=10_000)


def backfill_rules(rule_file: Path, url: str, start: int, end: int, out_dir: Path) -> None:
    promtool = require_binary("promtool")
    _run([promtool, "tsdb", "create-blocks-from", "rules", f"--start={start}", f"--end={end}",
          f"--url={url}", f"--output-dir={out_dir.resolve()}", f"--max-block-duration={block_duration_for(start, end)}",
          rule_file.name], "promtool tsdb create-blocks-from rules", cwd=rule_file.parent)


def _link_blocks(source: Path, target: Path) -> int:
    """Hard-link every block of `source` into `target` (blocks are immutable; a Prometheus that
    compacts or deletes its copy leaves the others alone)."""
    linked = 0
    for block in source.iterdir():
        if (block / "meta.json").exists():
            shutil.copytree(block, target / block.name, copy_function=os.link)
            linked += 1
    return linked


class Backfill:
    """One file's raw samples as a TSDB block, judged by as many stages as wanted: per set of
    recording rules (they depend on the stage's window and interval) the rules are backfilled
    once, and each `serving()` starts a Prometheus on the raw block plus those rule blocks.
    A context manager: `close()` stops the helper Prometheus the rules backfill reads from."""

    def __init__(self, path: Path, workdir: Path, data_span: tuple[float, float]):
        self.workdir = workdir
        self.raw = workdir / "raw"
        self.raw.mkdir(parents=True)
        self.first = math.floor(data_span[0])
        backfill_openmetrics(path, self.raw, *data_span)
        self._rules: dict[tuple[str, int], Path] = {}
        self._raw_server: Running | None = None

    def _rule_blocks(self, stage: Stage, end: int) -> Path:
        rules = recording_rule_file(stage)
        key = (rules, end)  # stages with the same window and interval share their rule blocks
        if key not in self._rules:
            directory = self.workdir / f"rules-{len(self._rules)}"
            blocks = directory / "blocks"
            blocks.mkdir(parents=True)
            rule_file = directory / RULE_FILE
            rule_file.write_text(rules)
            if self._raw_server is None:
                self._raw_server = serve_tsdb(self.raw)
            backfill_rules(rule_file, self._raw_server.url, self.first, end, blocks)
            if not any(blocks.iterdir()):
                raise BackfillError("promtool wrote no recording-rule block: does the file hold the plan's metrics?")
            self._rules[key] = blocks
        return self._rules[key]

    @contextmanager
    def serving(self, stage: Stage, end: datetime) -> Iterator[Running]:
        """A Prometheus on 127.0.0.1 with the raw samples and the stage's recording rules
        evaluated up to `end`; stopped and its directory removed on exit."""
        rule_blocks = self._rule_blocks(stage, math.ceil(end.timestamp()))
        data = Path(tempfile.mkdtemp(prefix="serve-", dir=self.workdir))
        _link_blocks(self.raw, data)
        _link_blocks(rule_blocks, data)
        try:
            with serve_tsdb(data) as server:
                yield server
        finally:
            shutil.rmtree(data, ignore_errors=True)

    def close(self) -> None:
        if self._raw_server is not None:
            self._raw_server.stop()
            self._raw_server = None

    def __enter__(self) -> Backfill:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
