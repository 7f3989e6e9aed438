"""The vendored kube-prometheus-stack chart: a lock file pins name, version, source repository
and the sha256 of the packaged archive; the archive sits next to it in charts/.

`pulumi up` in install mode reads the chart from that local archive only (helm v4 Chart with a
local `chart:` path, no `repositoryOpts`), so a rollback needs no chart repository; the program
checks the digest before it registers anything (components/program.py). `scripts/vendor-chart`
pulls exactly the locked version where the repository is reachable and records its digest.
Everything chart-related stays under charts/ (the in-cluster bot's image copies that folder).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml

CHARTS_DIR = Path(__file__).resolve().parents[2] / "charts"
LOCK_FILE = CHARTS_DIR / "kube-prometheus-stack.lock.yaml"
VENDOR_COMMAND = "scripts/vendor-chart"


class ChartError(ValueError):
    """The vendored chart is missing, unpinned or not the archive the lock file names."""


@dataclass(frozen=True)
class ChartLock:
    name: str
    version: str
    repository: str
    sha256: str
    lock_file: Path

    @property
    def archive(self) -> Path:
        return self.archive_of(self.version)

    def archive_of(self, version: str) -> Path:
        """Where the archive of `version` sits (the program's chart path; only the locked version's
        is checked, by verified_archive)."""
        return self.lock_file.parent / f"{self.name}-{version}.tgz"


def read_lock(lock_file: Path = LOCK_FILE) -> ChartLock:
    try:
        data = yaml.safe_load(lock_file.read_text())
    except OSError as err:
        raise ChartError(f"{lock_file}: cannot read the chart lock file ({err.strerror})") from err
    missing = [key for key in ("name", "version", "repository", "sha256") if not isinstance((data or {}).get(key), str)]
    if missing:
        raise ChartError(f"{lock_file}: {', '.join(missing)} must be set (strings)")
    return ChartLock(data["name"], data["version"], data["repository"], data["sha256"], lock_file)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified_archive(version: str, lock_file: Path = LOCK_FILE) -> Path:
    """The local chart archive for `version`, after checking it against the lock file.

    Raises ChartError naming the file and the command that fixes it: a version the lock does
    not pin, no recorded digest, a missing archive or one whose sha256 differs."""
    lock = read_lock(lock_file)
    fix = f"run `{VENDOR_COMMAND}` where {lock.repository} is reachable and commit {lock.archive.name} with the lock file"
    if version != lock.version:
        raise ChartError(
            f"{lock_file.name}: monitoring.chartVersion {version} is not the vendored version {lock.version}; "
            f"bump on purpose with `{VENDOR_COMMAND} --update {version}`"
        )
    if not lock.sha256:
        raise ChartError(f"{lock_file.name}: no sha256 recorded for {lock.name} {lock.version}: {fix}")
    if not lock.archive.exists():
        raise ChartError(f"{lock.archive}: the vendored chart is missing: {fix}")
    actual = sha256_of(lock.archive)
    if actual != lock.sha256:
        raise ChartError(
            f"{lock.archive}: sha256 {actual} is not the {lock.sha256} recorded in {lock_file.name}: "
            f"the archive was changed or is another version; {fix}"
        )
    return lock.archive
