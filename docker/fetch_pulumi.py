"""Build step of the bot image (Dockerfile): download the pinned Pulumi CLI release for linux-x64,
check it against the checksums file published with that release, unpack it into DEST/bin.

    python docker/fetch_pulumi.py 3.272.0 /opt/pulumi

Only the standard library: the build stage has no curl. Run at image build time, never by the bot.
"""

from __future__ import annotations

import hashlib
import sys
import tarfile
import urllib.request
from pathlib import Path

RELEASES = "https://github.com/pulumi/pulumi/releases/download"


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 - a fixed https URL
        return response.read()


def main(version: str, dest: str) -> None:
    archive_name = f"pulumi-v{version}-linux-x64.tar.gz"
    archive = fetch(f"{RELEASES}/v{version}/{archive_name}")
    sums = fetch(f"{RELEASES}/v{version}/pulumi-{version}-checksums.txt").decode()
    expected = {line.split()[1]: line.split()[0] for line in sums.splitlines() if len(line.split()) == 2}
    digest = hashlib.sha256(archive).hexdigest()
    if expected.get(archive_name) != digest:
        raise SystemExit(f"{archive_name}: sha256 {digest} does not match the release's checksums file")
    target = Path(dest)
    target.mkdir(parents=True, exist_ok=True)
    scratch = target / archive_name
    scratch.write_bytes(archive)
    with tarfile.open(scratch) as tar:  # the archive holds pulumi/<binaries>
        members = [m for m in tar.getmembers() if m.isfile() and m.name.startswith("pulumi/") and "/" not in m.name[7:]]
        for member in members:
            member.name = "bin/" + member.name[7:]
        tar.extractall(target, members=members, filter="data")
    scratch.unlink()
    print(f"pulumi {version}: {len(members)} binaries in {target / 'bin'} (sha256 {digest})")


if __name__ == "__main__":
    main(*sys.argv[1:3])
