"""Upgrade from the released 0.2.0 and downgrade back with the real apt and dpkg, in a throwaway Debian 12 chroot.

Invariant: 0.2.0's claims are read after the upgrade; before apt unpacks 0.2.0 the package's apt hook rewrites
every claim in format 1 (which 0.2.0's own reader then takes), or refuses with one line and apt changes nothing.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
from debchroot import Chroot
from debpkg import Built, released_deb

pytestmark = pytest.mark.package

OLD = "0.2.0"
CACHE = os.environ.get("MDEV_HOOKS_PIUPARTS_CACHE", "/var/cache/mdev-hooks-piuparts")
CLAIM = "/run/mdev-hooks/4b20d080-1b54-4048-85b3-a6a62d165c01.json"
APT = "apt-get -o DPkg::Lock::Timeout=600 -y --no-install-recommends"
# 0.2.0's reader, as its hook releases a claim: Claim(**data) fails on any field it does not know
READ_020 = ("/usr/bin/python3 -c 'import json, sys; from mdev_hooks.core.ledger import Claim; "
            "print(Claim(**json.load(open(sys.argv[1]))))' ")


def _claim(extra: dict[str, object]) -> str:
    data = {"key": os.path.basename(CLAIM)[:-5], "domain_uuid": "5909df77-0544-4c25-b292-6027c2468ce1",
            "domain_name": "vm1", "parent": "mtty", "type": "mtty-2", "state": "created", "pid": 1, "time": 0.0,
            "attrs": [], "pf": "", "kind": "mdev", **extra}
    return f"mkdir -p -m 700 /run/mdev-hooks; cat >{CLAIM} <<'EOF'\n{json.dumps(data)}\nEOF\nchmod 600 {CLAIM}"


def _read(chroot: Chroot, path: str) -> str:
    with open(chroot.path(path), encoding="utf-8") as f:
        return f.read()


def _version(chroot: Chroot) -> str:
    return chroot.run("dpkg-query -W -f='${Version} ${db:Status-Abbrev}' mdev-hooks").stdout.strip()


def test_upgrade_from_0_2_0_then_downgrade_refused_or_made_safe(chroot: Chroot, built: Built) -> None:
    shutil.copy(built.deb, chroot.path("/tmp/pkg/new.deb"))
    shutil.copy(released_deb(OLD, CACHE), chroot.path("/tmp/pkg/old.deb"))
    chroot.run(f"{APT} install /tmp/pkg/old.deb")
    assert _version(chroot) == f"{OLD} ii"
    chroot.run(_claim({}))  # as 0.2.0 writes it: format 1
    chroot.run(f"{APT} install /tmp/pkg/new.deb")
    assert _version(chroot) == f"{built.version} ii"

    # a claim with a field format 1 cannot hold (a later format's): apt stops before dpkg runs
    chroot.run(_claim({"format": 3, "placement": "numa0"}))
    before = _read(chroot, CLAIM)
    r = chroot.run(f"{APT} install --allow-downgrades /tmp/pkg/old.deb", check=False)
    assert r.returncode != 0, r.stdout
    refusal = [line for line in r.stdout.splitlines() if line.startswith("mdev-hooks: refusing the downgrade")]
    assert len(refusal) == 1, r.stdout
    assert f"of mdev-hooks {built.version} to {OLD}: " in refusal[0]
    assert "placement='numa0', which format 1 cannot hold" in refusal[0] and "Nothing was changed" in refusal[0]
    assert "Unpacking" not in r.stdout, r.stdout
    assert _version(chroot) == f"{built.version} ii"
    assert _read(chroot, CLAIM) == before

    # a claim of this version (format 2): rewritten in format 1, which 0.2.0's own reader takes after the downgrade
    chroot.run(_claim({"format": 2, "pool": "gpus"}))
    r = chroot.run(f"{APT} install --allow-downgrades /tmp/pkg/old.deb")
    assert f"mdev-hooks: the ledger's claims are in format 1, which mdev-hooks {OLD} reads" in r.stdout, r.stdout
    assert _version(chroot) == f"{OLD} ii"
    data = json.loads(_read(chroot, CLAIM))
    assert "format" not in data and "pool" not in data, data
    assert "Claim(" in chroot.run(READ_020 + CLAIM).stdout
    # the apt hook's conffile stays (obsolete) without its script: apt still works
    assert os.path.exists(chroot.path("/etc/apt/apt.conf.d/20mdev-hooks"))
    chroot.run(f"{APT} install /tmp/pkg/new.deb")
    assert _version(chroot) == f"{built.version} ii"
