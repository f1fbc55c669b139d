"""`mdev-hooks install` checks the configured state_dir and lock_dir as the hook will: a directory another user may
write is named at install time, with its owner and the fix, instead of at the first managed start. No root."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from pathlib import Path


def install(tmp_path: Path, config: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "config.toml").write_text(config)
    return subprocess.run([sys.executable, "-m", "mdev_hooks.admin.cli", "install", "--no-extras", "--config",
                           str(tmp_path / "config.toml"), "--hooks-dir", str(tmp_path / "hooks"),
                           "--config-dir", str(tmp_path / "etc")], capture_output=True, text=True, timeout=120,
                          check=False)


def test_install_names_a_lock_dir_others_may_write(tmp_path: Path) -> None:
    shared = tmp_path / "shared-locks"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    r = install(tmp_path, f'state_dir = "{tmp_path / "state"}"\nlock_dir = "{shared}"\n')
    assert r.returncode == 0 and r.stderr == "", r
    me = f"{getpass.getuser()} (uid {os.geteuid()})"
    assert r.stdout.splitlines()[-1] == (
        f"warning: lock_dir {shared}, owned by {me}, is writable by another user (mode 1777); refusing to use it: "
        f"chmod go-w {shared}, or set lock_dir in the config to a directory under a parent only root can write, "
        "such as the default /run/mdev-hooks/locks; managed starts fail until this is fixed")
    assert (tmp_path / "hooks" / "qemu").exists()


def test_install_says_nothing_of_directories_that_are_fine(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir(mode=0o700)
    r = install(tmp_path, f'state_dir = "{tmp_path / "state"}"\nlock_dir = "{tmp_path / "locks"}"\n')
    assert r.returncode == 0 and r.stderr == "", r
    assert "warning" not in r.stdout and "installed " in r.stdout, r.stdout
