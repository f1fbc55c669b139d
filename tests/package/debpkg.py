"""Helpers of the Debian package tests (a module of its own: `conftest` is a name several test directories use)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass

from support.hookrun import cannot_run

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SYSTEM_PYTHON = "/usr/bin/python3"


def require_root_and_apt() -> None:
    if os.geteuid() != 0:
        cannot_run("the package tests need root (apt-get installs the build tools; dpkg in a chroot)")
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        cannot_run("the package tests need a Debian system (apt-get, dpkg-deb)")


def ensure_commands(packages: dict[str, str]) -> None:
    """Install with apt the package of each command (command -> package) that is missing (man-db and groff-base
    are not on a minimal Debian)."""
    missing = sorted({pkg for cmd, pkg in packages.items() if shutil.which(cmd) is None})
    if missing:
        proc = subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-qq",
                               "--no-install-recommends", *missing], capture_output=True, text=True, check=False,
                              env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        assert proc.returncode == 0, f"apt-get install {' '.join(missing)}:\n{proc.stdout}{proc.stderr}"


def rules_variable(name: str) -> str:
    """A variable of debian/rules (the one place naming the parser's and the launcher's import paths)."""
    with open(os.path.join(REPO, "debian", "rules"), encoding="utf-8") as f:
        m = re.search(rf"^{name}\s*:?=\s*(\S+)\s*$", f.read(), re.M)
    assert m, f"debian/rules defines no {name}"
    return m.group(1)


def source_python(code: str, *args: str) -> str:
    """Run code with Debian's python3 against this source tree (not whatever mdev_hooks the test runner has)."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": REPO, "LC_ALL": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([SYSTEM_PYTHON, "-s", "-c", code, *args], capture_output=True, text=True, env=env,
                          check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


GET = ("import importlib, sys; m, _, n = sys.argv[1].partition(':'); v = getattr(importlib.import_module(m), n); "
       "sys.stdout.write(v(*sys.argv[2:]) if callable(v) else v)")


def source_value(spec: str, *args: str) -> str:
    """MODULE:NAME of debian/rules, as debian/rules evaluates it (a function is called with args)."""
    return source_python(GET, spec, *args)


@dataclass(frozen=True)
class Built:
    deb: str
    lintian: str  # lintian's output as build-deb saved it
    build_output: str
    tree: str  # the .deb unpacked (dpkg-deb -x)
    version: str


def released_deb(version: str, cache: str) -> str:
    """The released VERSION's .deb, rebuilt once into CACHE from the commit docs/releases.md names (a release never
    changes)."""
    with open(os.path.join(REPO, "docs", "releases.md"), encoding="utf-8") as f:
        m = re.search(rf"^\|\s*{re.escape(version)}\s*\|\s*([0-9a-f]{{40}})\s*\|", f.read(), re.M)
    assert m, f"docs/releases.md names no commit for {version}"
    out = os.path.join(cache, f"release-{m.group(1)}")
    deb = os.path.join(out, f"mdev-hooks_{version}_all.deb")
    if not os.path.exists(deb):
        proc = subprocess.run(["bash", os.path.join(REPO, "scripts", "build-release-deb"), version, out + ".tmp"],
                              capture_output=True, text=True, timeout=1800, check=False)
        assert proc.returncode == 0, f"scripts/build-release-deb {version} failed:\n{proc.stdout}\n{proc.stderr}"
        os.replace(out + ".tmp", out)
    return deb
