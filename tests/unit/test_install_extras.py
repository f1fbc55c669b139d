"""`mdev-hooks install` for pip users: the man page and bash completion (from the command's own parser) and the
logrotate snippet, written where the host has the directories, never over someone else's file, and removed by
`uninstall`. No root: every directory is under tmp_path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run(tmp_path: Path, command: str, *more: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mdev_hooks.admin.cli", command, "--hooks-dir",
                           str(tmp_path / "hooks"), "--config-dir", str(tmp_path / "etc"), "--share-dir",
                           str(tmp_path / "share"), "--logrotate-dir", str(tmp_path / "logrotate.d"), *more],
                          capture_output=True, text=True, timeout=120, check=False)


def test_extras_go_where_the_host_has_the_directories_and_leave_with_uninstall(tmp_path: Path) -> None:
    (tmp_path / "share" / "man").mkdir(parents=True)
    (tmp_path / "share" / "bash-completion").mkdir()
    (tmp_path / "logrotate.d").mkdir()
    r = run(tmp_path, "install")
    assert r.returncode == 0, r.stderr
    man = tmp_path / "share" / "man" / "man8" / "mdev-hooks.8"
    comp = tmp_path / "share" / "bash-completion" / "completions" / "mdev-hooks"
    rot = tmp_path / "logrotate.d" / "mdev-hooks"
    for path in (man, comp, rot):
        assert "wrote the" in r.stdout and str(path) in r.stdout, r.stdout
    text = man.read_text()
    assert '.TH "MDEV\\-HOOKS" "8"' in text and ".SH COMMANDS" in text and "parent_wait" in text
    assert all(c in text for c in ("install", "plan", "status", "gc", "types", "add", "drop"))
    assert "complete -F" in comp.read_text() and "/var/log/mdev-hooks.log {" in rot.read_text()

    r = run(tmp_path, "uninstall")
    assert r.returncode == 0, r.stderr
    assert not man.exists() and not comp.exists() and not rot.exists()
    assert not (tmp_path / "hooks" / "qemu").exists()


def test_a_file_someone_else_put_there_is_kept_and_absent_directories_get_nothing(tmp_path: Path) -> None:
    (tmp_path / "logrotate.d").mkdir()
    theirs = tmp_path / "logrotate.d" / "mdev-hooks"
    theirs.write_text("/var/log/mdev-hooks.log { daily }\n")
    r = run(tmp_path, "install")
    assert r.returncode == 0, r.stderr
    assert f"kept {theirs}: not written by mdev-hooks install" in r.stdout
    assert theirs.read_text() == "/var/log/mdev-hooks.log { daily }\n"
    assert not (tmp_path / "share" / "man").exists()  # no man/ there: no man page, and no directory made for it
    assert run(tmp_path, "uninstall").returncode == 0 and theirs.exists()


def test_no_extras(tmp_path: Path) -> None:
    (tmp_path / "share" / "man").mkdir(parents=True)
    (tmp_path / "logrotate.d").mkdir()
    r = run(tmp_path, "install", "--no-extras")
    assert r.returncode == 0 and "wrote the man page" not in r.stdout and "logrotate" not in r.stdout, r.stdout
    assert list((tmp_path / "logrotate.d").iterdir()) == [] and not (tmp_path / "share" / "man" / "man8").exists()
