"""Debian's piuparts on the .deb in a Debian 12 chroot: install and purge, then the upgrade from the released 0.2.0.

piuparts builds the chroot with debootstrap from Debian's archive (cached as a tarball in CACHE after the first
run), installs the package with its dependencies, removes and purges it, and fails on files left behind or
changed, processes left running, broken maintainer scripts. Its install-upgrade-purge test runs because 0.2.0 is
known to apt there: a local repository holding the 0.2.0 .deb (rebuilt by scripts/build-release-deb) is bind
mounted and added as an extra source. Invariant: piuparts passes with its default checks, no exception flag.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess

import pytest
from debchroot import mirror
from debpkg import Built, ensure_commands, released_deb

pytestmark = pytest.mark.package

CACHE = os.environ.get("MDEV_HOOKS_PIUPARTS_CACHE", "/var/cache/mdev-hooks-piuparts")
SUITE = "bookworm"
OLD = "0.2.0"


def local_repo(root: str, debs: list[str]) -> str:
    """A flat apt repository in ROOT holding DEBS (dpkg-scanpackages: dpkg-dev, which build-deb installs)."""
    os.makedirs(root, exist_ok=True)
    for deb in debs:
        os.link(deb, os.path.join(root, os.path.basename(deb)))
    packages = subprocess.run(["dpkg-scanpackages", "--multiversion", ".", "/dev/null"], cwd=root,
                              capture_output=True, text=True, check=True).stdout
    with open(os.path.join(root, "Packages"), "w", encoding="utf-8") as f:
        f.write(packages)
    return root


def test_piuparts_install_purge_and_upgrade_from_0_2_0(built: Built, tmp_path: os.PathLike[str]) -> None:
    ensure_commands({"piuparts": "piuparts", "debootstrap": "debootstrap", "dpkg-scanpackages": "dpkg-dev"})
    repo = local_repo(os.path.join(str(tmp_path), "repo"), [released_deb(OLD, CACHE)])
    os.makedirs(CACHE, exist_ok=True)
    key = hashlib.sha256(f"{SUITE} {mirror()}".encode()).hexdigest()[:12]
    base = os.path.join(CACHE, f"{SUITE}-{key}.tgz")
    # the base chroot: built by debootstrap and saved on the first run, unpacked on the next ones
    cached = os.path.exists(base)
    cmd = ["nice", "-n", "5", "piuparts", "--distribution", SUITE, "--mirror", mirror(),
           *(["--basetgz", base] if cached else ["--save", base + ".tmp"]),
           "--bindmount", repo, "--extra-repo", f"deb [trusted=yes] file://{repo} ./",
           "--tmpdir", str(tmp_path), built.deb]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=2400, check=False)
    out = proc.stdout + proc.stderr
    with open(os.path.join(str(tmp_path), "piuparts.log"), "w", encoding="utf-8") as f:
        f.write(out)
    print("\n".join(line for line in out.splitlines() if re.search(r"(PASS|FAIL|WARN|ERROR):", line)))
    assert proc.returncode == 0, f"piuparts failed ({'cached' if cached else 'new'} base {base}):\n{out[-12000:]}"
    if not cached:
        os.replace(base + ".tmp", base)
    assert re.search(r"^.*PASS: Installation and purging test\.$", out, re.M), out[-4000:]
    # the upgrade test ran from the apt-known 0.2.0 to this .deb, and passed
    assert f"Unpacking mdev-hooks ({built.version}) over ({OLD})" in out, out[-4000:]
    assert re.search(r"^.*PASS: Installation, upgrade and purging tests\.$", out, re.M), out[-4000:]
