"""Fixtures of the Debian package tests: the .deb built once per session by scripts/build-deb (root, apt)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from debchroot import Chroot
from debpkg import REPO, Built, ensure_commands, require_root_and_apt
from support.hookrun import cannot_run


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "package: builds and installs the Debian package (root, apt, dpkg)")


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    require_root_and_apt()
    ensure_commands({"man": "man-db", "groff": "groff-base", "zcat": "gzip", "unshare": "util-linux"})
    out = tmp_path_factory.mktemp("deb")
    proc = subprocess.run(["bash", os.path.join(REPO, "scripts", "build-deb"), str(out)], capture_output=True,
                          text=True, timeout=1800, check=False)
    assert proc.returncode == 0, f"scripts/build-deb failed:\n{proc.stdout}\n{proc.stderr}"
    debs = sorted(p for p in os.listdir(out) if p.endswith("_all.deb"))
    assert len(debs) == 1, f"expected one mdev-hooks_<version>_all.deb in {out}, found {debs}"
    m = re.fullmatch(r"mdev-hooks_(.+)_all\.deb", debs[0])
    assert m, debs[0]
    lint = [p for p in os.listdir(out) if p.endswith("_lintian.txt")]
    assert lint, "build-deb saved no lintian output"
    with open(os.path.join(out, lint[0]), encoding="utf-8") as f:
        lintian = f.read()
    tree = out / "tree"
    subprocess.run(["dpkg-deb", "-x", str(out / debs[0]), str(tree)], check=True)
    return Built(str(out / debs[0]), lintian, proc.stdout + proc.stderr, str(tree), m.group(1))


@pytest.fixture
def chroot(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chroot]:
    """A fresh Debian 12 chroot (debchroot) with the built .deb in /tmp/pkg/."""
    require_root_and_apt()
    if shutil.which("unshare") is None:
        cannot_run("needs unshare (util-linux)")
    root = Chroot(str(tmp_path_factory.mktemp("chroot") / "root"))
    os.makedirs(root.path("/tmp/pkg"), exist_ok=True)
    shutil.copy(built.deb, root.path("/tmp/pkg/"))
    yield root
    root.remove()
