"""Issue 6, "Nothing lost, nothing leaked, nobody let in", for mdevs: the hook killed (SIGKILL) at every step.
The world, what a verdict rests on and the matrix rows: support/faultworld.py (conftest `mdev_world`, `matrix`).
"""

from __future__ import annotations

import fcntl
import os
import signal
import time
from collections.abc import Callable

import pytest
from support.faultmatrix import (
    KILLED,
    Matrix,
    expect,
)
from support.faultworld import MDEV_KILLS, MdevWorld, prepare_kills, release_kills

# ---- 1. crash safety: SIGKILL at every step ----------------------------------------------------------------------

# (kill point, how many of A's devices exist when it fires, matrix row)
PREPARE_KILLS = prepare_kills(MDEV_KILLS)
RELEASE_KILLS = release_kills(MDEV_KILLS)
expect(*(row for _, _, row in PREPARE_KILLS))
expect("SIGKILL in prepare, during rollback (after 1 of 2 removes)",
       "SIGKILL inside the create write() (the kernel finishes it)",
       "SIGKILL in prepare, no release after it (libvirtd died); next start",
       *(row for _, _, row in RELEASE_KILLS))


@pytest.mark.parametrize(("point", "alive", "row"), PREPARE_KILLS, ids=[p for p, _, _ in PREPARE_KILLS])
def test_sigkill_in_prepare_then_release(mdev_world: Callable[..., MdevWorld], matrix: Matrix, point: str, alive: int,
                                         row: str) -> None:
    w = mdev_world()
    r = w.proc("prepare", MDEV_HOOKS_TEST_KILL_AT=point)
    assert r.returncode == KILLED and r.stdout == b"", r
    assert len(set(w.uuids_a) & set(w.fs.devices())) == alive  # the kill point fired where it says
    w.locks_free()
    # libvirt: a failed prepare is followed by `stopped end` and `release end`
    w.proc("release").ok()
    w.assert_clean()
    t = w.tally()
    # a stale lock or claim of the killed hook never blocks the next start (lock_timeout is 3 s)
    w.call("prepare").ok()  # a wait for the lock would end in exit 1 after lock_timeout
    w.call("release").ok()
    w.assert_clean()
    matrix.record("crash", row, t, injected=1, runs=w.runs, outcome="killed; release exit 0, next start exit 0")


@pytest.mark.parametrize(("point", "alive", "row"), RELEASE_KILLS, ids=[p for p, _, _ in RELEASE_KILLS])
def test_sigkill_in_release_then_release_again(mdev_world: Callable[..., MdevWorld], matrix: Matrix, point: str,
                                               alive: int, row: str) -> None:
    w = mdev_world()
    w.call("prepare").ok()
    r = w.proc("release", MDEV_HOOKS_TEST_KILL_AT=point)
    assert r.returncode == KILLED, r
    assert len(set(w.uuids_a) & set(w.fs.devices())) == alive
    w.locks_free()
    w.proc("release").ok()  # e.g. `mdev-hooks gc`, or the release of the next stop
    w.assert_clean()
    matrix.record("crash", row, w.tally(), injected=1, runs=w.runs, outcome="killed; release again exit 0")


def test_sigkill_during_rollback(mdev_world: Callable[..., MdevWorld], matrix: Matrix) -> None:
    w = mdev_world()
    w.fs.control(cmd="fail", op="create", nth=3, errno="EIO")
    r = w.proc("prepare", MDEV_HOOKS_TEST_KILL_AT="rolled_back")
    assert r.returncode == KILLED, r
    assert len(set(w.uuids_a) & set(w.fs.devices())) == 1  # one of the two rolled back, one still there
    w.proc("release").ok()
    w.assert_clean()
    matrix.record("crash", "SIGKILL in prepare, during rollback (after 1 of 2 removes)", w.tally(), injected=2,
                  runs=w.runs, outcome="killed; release exit 0")


def test_sigkill_inside_create_write(mdev_world: Callable[..., MdevWorld], matrix: Matrix) -> None:
    """SIGKILL while the hook is inside the create write(): the kernel (like the fake) finishes the create before
    the writer dies, so the device exists when libvirt's release runs, with only an intent in the ledger."""
    w = mdev_world()
    first = w.uuids_a[0]
    w.fs.control(cmd="delay", op="create", ms=1500)
    p = w.h.start("vmA", "prepare", "begin", w.xml_a)
    deadline = time.monotonic() + 10
    while first not in w.fs.devices(include_transient=True):  # device_add() done, probe running
        assert time.monotonic() < deadline and p.poll() is None
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL)
    assert p.wait() == KILLED
    w.fs.control(cmd="reset")
    assert w.fs.devices()[first] == ("mtty", "mtty-2")  # created, though its writer never saw the answer
    assert w.claims()[first]["state"] == "intent"
    w.proc("release").ok()
    w.assert_clean()
    assert first in [e["uuid"] for e in w.writes() if e["op"] == "remove" and e["result"] == "ok"]
    matrix.record("crash", "SIGKILL inside the create write() (the kernel finishes it)", w.tally(),
                  injected=1, runs=w.runs, outcome="release removes it (intent in the ledger); exit 0")


def test_killed_prepare_without_release_does_not_block_next_start(mdev_world: Callable[..., MdevWorld],
                                                                   matrix: Matrix) -> None:
    """libvirtd died with the hook: no release ran. The domain's own stale claims must not fail its next start."""
    w = mdev_world()
    assert w.proc("prepare", MDEV_HOOKS_TEST_KILL_AT="intent_written:2").returncode == KILLED
    assert len(w.claims_of_a()) == 2  # one device created, one bare intent
    w.call("prepare").ok()
    assert set(w.uuids_a) <= set(w.fs.devices())
    w.call("release").ok()
    w.assert_clean()
    matrix.record("crash", "SIGKILL in prepare, no release after it (libvirtd died); next start", w.tally(),
                  injected=1, runs=w.runs, outcome="next start exit 0 (own stale claims taken over)")


def test_lock_of_killed_holder_is_free_at_once(mdev_world: Callable[..., MdevWorld]) -> None:
    """flock dies with its holder: proven on the lock file itself, and by a start that must not wait."""
    w = mdev_world()
    w.fs.control(cmd="delay", op="create", ms=1500)
    p = w.h.start("vmA", "prepare", "begin", w.xml_a)
    lock = w.h.lock_dir / "mtty.lock"
    deadline = time.monotonic() + 10
    while w.uuids_a[0] not in w.fs.devices(include_transient=True):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    fd = os.open(lock, os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):  # held by the live hook
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free the moment the holder died
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    w.fs.control(cmd="reset")
    while w.fs.devices(include_transient=True).get(w.uuids_a[0]) != ("mtty", "mtty-2"):
        assert time.monotonic() < deadline + 5  # the killed writer's create completes in the kernel
        time.sleep(0.05)
    w.call("release").ok()
    w.assert_clean()
