"""debian/ledger-downgrade, run as prerm and as apt's Pre-Install-Pkgs hook, with a stub `mdev-hooks` command.

Invariant: a target version before 0.3.0 runs `mdev-hooks ledger downgrade --format 1` and fails (refusing the
downgrade, with what, why and what to do) exactly when that command fails; other versions and packages pass.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from debpkg import REPO

SCRIPT = os.path.join(REPO, "debian", "ledger-downgrade")
pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg (dpkg-deb, --compare-versions)")


def _stub(tmp: str, rc: int, line: str) -> str:
    """A stand-in for /usr/bin/mdev-hooks that records its arguments and prints LINE, exiting RC."""
    path = os.path.join(tmp, "mdev-hooks")
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"#!/bin/sh\necho \"$*\" >> {tmp}/calls\necho '{line}' >&2\nexit {rc}\n")
    os.chmod(path, 0o755)
    return path


def _deb(tmp: str, package: str, version: str) -> str:
    """A minimal .deb named PACKAGE at VERSION (only its control fields matter here)."""
    root = os.path.join(tmp, f"{package}-{version}")
    os.makedirs(os.path.join(root, "DEBIAN"))
    with open(os.path.join(root, "DEBIAN", "control"), "w", encoding="utf-8") as f:
        f.write(f"Package: {package}\nVersion: {version}\nArchitecture: all\nMaintainer: t <t@example.org>\n"
                "Description: test\n")
    deb = os.path.join(tmp, f"{package}_{version}_all.deb")
    subprocess.run(["dpkg-deb", "--build", root, deb], check=True, capture_output=True)
    return deb


def _run(tmp: str, stub: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "MDEV_HOOKS_BIN": stub}
    return subprocess.run(["sh", SCRIPT, *args], input=stdin, capture_output=True, text=True, env=env, check=False)


def _calls(tmp: str) -> list[str]:
    try:
        with open(os.path.join(tmp, "calls"), encoding="utf-8") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


@pytest.mark.parametrize("version", ["0.3.0", "0.3.0~rc1", "0.3.1", "1.0"])
def test_no_rewrite_for_versions_that_read_every_format(tmp_path: os.PathLike[str], version: str) -> None:
    tmp = str(tmp_path)
    r = _run(tmp, _stub(tmp, 1, "mdev-hooks: must not run"), version)
    assert (r.returncode, _calls(tmp)) == (0, []), r.stderr


def test_downgrade_rewrites_the_ledger_in_format_1(tmp_path: os.PathLike[str]) -> None:
    tmp = str(tmp_path)
    r = _run(tmp, _stub(tmp, 0, "mdev-hooks: 2 claims rewritten in format 1"), "0.2.0")
    assert r.returncode == 0, r.stderr
    assert _calls(tmp) == ["ledger downgrade --format 1"]
    assert "format 1, which mdev-hooks 0.2.0 reads" in r.stderr


def test_downgrade_refused_when_a_claim_cannot_be_rewritten(tmp_path: os.PathLike[str]) -> None:
    tmp = str(tmp_path)
    r = _run(tmp, _stub(tmp, 1, "mdev-hooks: claim abc: pool gpus has no format 1 form"), "0.2.0")
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mdev-hooks: refusing the downgrade of mdev-hooks ")
    for part in ("to 0.2.0", "claim abc: pool gpus has no format 1 form", "Nothing was changed", "virsh shutdown",
                 "then downgrade again"):
        assert part in lines[0], lines[0]


def test_apt_hook_checks_only_our_package(tmp_path: os.PathLike[str]) -> None:
    tmp = str(tmp_path)
    stub = _stub(tmp, 1, "mdev-hooks: claim abc cannot be rewritten")
    other = _deb(tmp, "libfoo", "0.1")
    newer = _deb(tmp, "mdev-hooks", "0.3.1")
    r = _run(tmp, stub, "--apt", stdin=f"{other}\n{newer}\n")
    assert (r.returncode, _calls(tmp)) == (0, []), r.stderr
    older = _deb(tmp, "mdev-hooks", "0.2.0")
    # any protocol version: the .deb paths are found among the words of each line
    r = _run(tmp, stub, "--apt", stdin=f"VERSION 2\n\n{other}\nmdev-hooks 0.3.0 > 0.2.0 {older}\n")
    assert r.returncode == 1 and "refusing the downgrade" in r.stderr, r.stderr
    assert _calls(tmp) == ["ledger downgrade --format 1"]
