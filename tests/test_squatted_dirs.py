"""Runtime directories nobody else can take: a local user who makes the old lock path /run/lock/mdev-hooks (under
the world-writable /run/lock) first no longer blocks managed starts, since the default lock_dir lives under the
root-only /run/mdev-hooks; a configured lock_dir or state_dir another user owns fails the start with one line that
names the owner and the fix.

The real /run is used (that is the point); the test removes what it made there and puts back what it moved aside.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.hookrun import HookEnv, mdev_xml
from support.ids import DOM_A, GVT, GVT_V54, uid

from mdev_hooks.config import Config

OLD_LOCKS = Path("/run/lock/mdev-hooks")  # the default lock_dir of 0.1 and 0.2
STATE = Path(Config.state_dir)
LOCKS = Path(Config.lock_dir)
NOBODY = pwd.getpwnam("nobody")
SERIAL = "/tmp/mdev-hooks-tests-run.lock"  # two test runs on one host share /run: one squatting test at a time


def as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run a command as the unprivileged user `nobody`, as any local user could."""
    return subprocess.run(argv, user=NOBODY.pw_uid, group=NOBODY.pw_gid, extra_groups=[], capture_output=True,
                          text=True, check=False, cwd="/")


@pytest.fixture
def squatted() -> Iterator[Path]:
    """/run/lock/mdev-hooks made by `nobody` before any hook ran; afterwards, what the test made in /run is gone
    and whatever was there before is back."""
    serial = open(SERIAL, "a")  # noqa: SIM115 (held for the whole test)
    fcntl.flock(serial, fcntl.LOCK_EX)
    made = [p for p in (STATE, LOCKS) if not p.exists()]  # removed after the test, deepest first
    aside = OLD_LOCKS.with_name(f"mdev-hooks.test-aside-{os.getpid()}")
    if OLD_LOCKS.exists() or OLD_LOCKS.is_symlink():
        OLD_LOCKS.rename(aside)
    try:
        r = as_nobody("mkdir", str(OLD_LOCKS))
        assert r.returncode == 0, r
        assert os.lstat(OLD_LOCKS).st_uid == NOBODY.pw_uid
        yield OLD_LOCKS
    finally:
        for lock in LOCKS.glob("*.lock") if LOCKS in made or STATE in made else ():
            lock.unlink()
        for p in reversed(made):
            if p.exists():
                p.rmdir()
        if OLD_LOCKS.exists():
            OLD_LOCKS.rmdir()
        if aside.exists() or aside.is_symlink():
            aside.rename(OLD_LOCKS)
        serial.close()


def _config(h: HookEnv, **paths: str) -> None:
    """The test's config, with lock_dir (and state_dir) only as given: absent means the built-in default."""
    paths.setdefault("state_dir", str(h.state_dir))
    lines = [f'sysfs_root = "{h.sysfs_root}"', f'log_file = "{h.log_file}"', f'mdevctl_dir = "{h.dir / "m.d"}"',
             "parent_wait = 0", *(f'{k} = "{v}"' for k, v in paths.items())]
    h.config.write_text("\n".join(lines) + "\n")


@pytest.fixture
def gvt(fakesysfs: Callable[..., Any], tmp_path: Path) -> tuple[Any, HookEnv]:
    fs = fakesysfs(["intel-gvtg"])
    return fs, HookEnv(tmp_path / "hook", fs.root)


def test_a_user_cannot_make_the_default_directories_first() -> None:
    """What the default relies on: /run is writable only by root, while /run/lock lets anyone make a directory."""
    assert stat.S_IMODE(os.stat("/run").st_mode) & 0o022 == 0 and os.stat("/run").st_uid == 0
    r = as_nobody("mkdir", str(STATE) + f".test-{os.getpid()}")
    assert r.returncode != 0 and "Permission denied" in r.stderr, r
    assert LOCKS.parent == STATE and STATE.parent == Path("/run")


def test_managed_starts_work_with_the_old_path_squatted(gvt: tuple[Any, HookEnv], squatted: Path) -> None:
    fs, h = gvt
    _config(h)  # no lock_dir: the default
    for _ in range(2):  # a start and stop twice: the second finds the lock directory made by the first
        u = uid()
        xml = mdev_xml("vm1", DOM_A, [(u, GVT, GVT_V54)])
        r = h.run("vm1", "prepare", "begin", xml)
        assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
        assert fs.devices() == {u: (GVT, GVT_V54)}
        r = h.run("vm1", "release", "end", xml)
        assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
        assert fs.devices() == {}
    for d in (STATE, LOCKS):
        st = os.lstat(d)
        assert stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o700, d
    lock = os.lstat(LOCKS / f"{GVT}.lock")
    assert lock.st_uid == 0 and stat.S_IMODE(lock.st_mode) == 0o600
    assert list(squatted.iterdir()) == [] and os.lstat(squatted).st_uid == NOBODY.pw_uid  # never used


def test_a_configured_lock_dir_another_user_owns_fails_the_start(gvt: tuple[Any, HookEnv], squatted: Path) -> None:
    fs, h = gvt
    _config(h, lock_dir=str(squatted))
    u = uid()
    r = h.run("vm1", "prepare", "begin", mdev_xml("vm1", DOM_A, [(u, GVT, GVT_V54)]))
    assert r.returncode == 1 and r.stdout == b""
    assert r.stderr.decode() == (
        f"mdev-hooks: lock_dir {squatted} is owned by nobody (uid {NOBODY.pw_uid}), not by root (uid 0): another "
        f"user made it, and could block or steer mdev-hooks through it; refusing to use it: remove it (rm -r -- "
        f"{squatted}) or set lock_dir in the config to a directory under a parent only root can write, such as "
        f"the default {LOCKS}\n")
    assert fs.devices() == {} and h.ledger() == [] and list(squatted.iterdir()) == []


def test_a_configured_state_dir_another_user_owns_fails_the_start(gvt: tuple[Any, HookEnv]) -> None:
    fs, h = gvt
    theirs = h.dir / "state-of-nobody"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, NOBODY.pw_uid, NOBODY.pw_gid)
    _config(h, state_dir=str(theirs), lock_dir=str(h.lock_dir))
    r = h.run("vm1", "prepare", "begin", mdev_xml("vm1", DOM_A, [(uid(), GVT, GVT_V54)]))
    assert r.returncode == 1 and r.stdout == b""
    assert r.stderr.decode().startswith(
        f"mdev-hooks: state_dir {theirs} is owned by nobody (uid {NOBODY.pw_uid}), not by root (uid 0): "), r
    assert r.stderr.decode().endswith(f"such as the default {STATE}\n") and r.stderr.count(b"\n") == 1
    assert fs.devices() == {} and list(theirs.iterdir()) == []
