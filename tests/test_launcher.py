"""The launcher (hooks/qemu = mdev_hooks/share/qemu-hook) when the package cannot be loaded, whatever the reason:
only prepare/migrate/restore begin of domains that ask for managed devices fail, with one line; all else exits 0.
No root, no FUSE: a broken `mdev_hooks` package is put first on the import path; the file runs as libvirt runs it,
through its sh front (which starts this interpreter, MDEV_HOOKS_PYTHON)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support.asserts import one_line
from support.hookrun import HOOK
from support.launcherxml import MANAGED, MANAGED_FIRST, METADATA, NO_DEVICES, UNMANAGED

# what "cannot load" can be: an old Python choking on new syntax at import, a half-installed package, none at all
BROKEN = {
    "type-error": "raise TypeError(\"unsupported operand type(s) for |: 'type' and 'NoneType'\")\n",
    "syntax": "def f(:\n",
    "missing-dependency": "import lxml_is_not_installed_here\n",
}


def run(tmp_path: Path, broken: str | None, op: str, xml: bytes) -> subprocess.CompletedProcess[bytes]:
    pkg = tmp_path / "site" / "mdev_hooks"
    pkg.mkdir(parents=True, exist_ok=True)
    if broken is not None:
        (pkg / "__init__.py").write_text("")
        (pkg / "hook.py").write_text(BROKEN[broken])
    else:  # a namespace with no hook module at all: ModuleNotFoundError
        (pkg / "__init__.py").write_text("raise ImportError('No module named mdev_hooks.hook')\n")
    env = {"LC_ALL": "C", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path / "site"),
           "MDEV_HOOKS_PYTHON": sys.executable}
    return subprocess.run([str(HOOK), "g", *op.split(), "-"], input=xml, capture_output=True,
                          env=env, timeout=60, check=False)


@pytest.mark.parametrize("broken", [*BROKEN, None])
@pytest.mark.parametrize("op", ["prepare begin", "migrate begin", "restore begin"])
@pytest.mark.parametrize("xml", [METADATA, MANAGED, MANAGED_FIRST], ids=["metadata", "managed", "managed-first"])
def test_a_domain_asking_for_managed_devices_fails_with_one_line(tmp_path: Path, broken: str | None, op: str,
                                                                 xml: bytes) -> None:
    r = run(tmp_path, broken, op, xml)
    assert r.returncode == 1 and r.stdout == b""
    line = one_line(r.stderr)
    assert "cannot load mdev_hooks" in line and "reinstall mdev-hooks" in line, line


@pytest.mark.parametrize("broken", [*BROKEN, None])
@pytest.mark.parametrize("op", ["prepare begin", "migrate begin", "release end", "start begin", "stopped end"])
@pytest.mark.parametrize("xml", [NO_DEVICES, UNMANAGED], ids=["plain", "unmanaged-mdev"])
def test_every_other_domain_is_untouched(tmp_path: Path, broken: str | None, op: str, xml: bytes) -> None:
    r = run(tmp_path, broken, op, xml)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")


@pytest.mark.parametrize("op", ["release end", "stopped end", "start begin"])
def test_other_operations_of_a_managed_domain_exit_0(tmp_path: Path, op: str) -> None:
    """Only the calls that would create devices can be refused; a stop must never be blocked."""
    r = run(tmp_path, "type-error", op, METADATA)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")


def test_the_launchers_namespace_is_the_packages() -> None:
    import mdev_hooks

    assert f'b"{mdev_hooks.NS}"' in HOOK.read_text()
