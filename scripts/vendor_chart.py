"""scripts/vendor-chart: pull the locked chart version, verify it against the repository's
index.yaml digest, write charts/<name>-<version>.tgz and record its sha256 in the lock file."""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from rollout.monitoring.chart import LOCK_FILE, ChartError, read_lock

MAX_BYTES = 50 << 20  # a chart archive is a few MB; refuse anything absurd


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - https or file, from the lock
        data = response.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise SystemExit(f"vendor-chart: {url} is larger than {MAX_BYTES} bytes")
    return data


def set_lock_field(text: str, key: str, value: str) -> str:
    # edit in place so the lock file's comments stay
    return re.sub(rf"^{key}: .*$", f'{key}: "{value}"' if key == "sha256" else f"{key}: {value}", text, count=1, flags=re.M)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/vendor-chart", description=__doc__)
    parser.add_argument("--update", metavar="VERSION", help="pull this version instead and pin it")
    parser.add_argument("--lock", type=Path, default=LOCK_FILE, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        lock = read_lock(args.lock)
    except ChartError as err:
        raise SystemExit(f"vendor-chart: {err}") from err
    version = args.update or lock.version
    index_url = lock.repository.rstrip("/") + "/index.yaml"
    index = yaml.safe_load(fetch(index_url))
    entry = next((e for e in index.get("entries", {}).get(lock.name, []) if e.get("version") == version), None)
    if entry is None:
        raise SystemExit(f"vendor-chart: {index_url} lists no {lock.name} {version}")
    url = urllib.parse.urljoin(index_url, entry["urls"][0])
    archive = fetch(url)
    digest = hashlib.sha256(archive).hexdigest()
    if entry.get("digest") and entry["digest"] != digest:
        raise SystemExit(f"vendor-chart: {url} has sha256 {digest}, the index lists {entry['digest']}: not written")
    if not args.update and lock.sha256 and lock.sha256 != digest:
        raise SystemExit(
            f"vendor-chart: {url} has sha256 {digest}, the lock file records {lock.sha256}: the published "
            "archive changed; nothing written (use --update VERSION to pin a new one on purpose)"
        )
    target = lock.archive_of(version)
    target.write_bytes(archive)
    text = set_lock_field(set_lock_field(args.lock.read_text(), "version", version), "sha256", digest)
    args.lock.write_text(text)
    for old in args.lock.parent.glob(f"{lock.name}-*.tgz"):
        if old != target:
            old.unlink()
    print(f"vendor-chart: {target.relative_to(args.lock.parent.parent)} sha256 {digest}; commit it with {args.lock.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
