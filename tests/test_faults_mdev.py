"""Issue 6, "Nothing lost, nothing leaked, nobody let in", for mdevs: the hook killed at every step, every kernel
errno, broken surroundings (state/lock dirs, log, config, ledger, locks). Every scenario runs next to a device of
another domain and an external device on the same parents, and ends with what libvirt would do next (`release`);
the fake kernel's journal and device list then say whether anything leaked or was wrongly removed. The fault
matrix (docs/fault-matrix.md) is written from this module's and test_faults_nvidia_vf.py's rows (conftest `matrix`).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fakesysfs.harness import FakeSysfs
from support.faultmatrix import (
    CONFIG,
    KILLED,
    Matrix,
    Result,
    Tally,
    expect,
    hook_created,
    hook_writes,
    inproc,
    outside_writes,
    read_claims,
    read_only,
    subproc,
    tally,
    tmpfs,
)
from support.hookrun import HookEnv, mdev_xml
from support.ids import DOM_A, DOM_B, GVT, T4, uid

# ---- the world every scenario runs in -----------------------------------------------------------------------------

@dataclass
class World:
    fs: FakeSysfs
    h: HookEnv
    stack: ExitStack
    a: list[tuple[str, str, str]]  # domain A (the one we break): 3 devices on 2 parents
    protected: dict[str, tuple[str, str]] = field(default_factory=dict)
    xml_b: bytes = b""
    ub: str = ""  # domain B's device
    mark: int = 0  # journal length once the background is in place
    runs: int = 0

    @property
    def xml_a(self) -> bytes:
        return mdev_xml("vmA", DOM_A, self.a)

    @property
    def uuids_a(self) -> list[str]:
        return [u for u, _, _ in self.a]

    def call(self, op: str, xml: bytes | None = None, name: str = "vmA", **env: str) -> Result:
        """The hook in-process (fast)."""
        self.runs += 1
        sub = "begin" if op in ("prepare", "start", "started", "migrate", "restore") else "end"
        return inproc(self.h, name, op, sub, self.xml_a if xml is None else xml, **env)

    def proc(self, op: str, xml: bytes | None = None, name: str = "vmA", **env: str) -> Result:
        """The hook as libvirt runs it (a subprocess with a scrubbed environment)."""
        self.runs += 1
        sub = "begin" if op == "prepare" else "end"
        return subproc(self.h, name, op, sub, self.xml_a if xml is None else xml, **env)

    def claims(self) -> dict[str, dict[str, Any]]:
        return read_claims(self.h)

    def claims_of_a(self) -> list[str]:
        return sorted(u for u, c in self.claims().items() if c.get("domain_uuid") == DOM_A)

    def writes(self) -> list[dict[str, Any]]:
        return hook_writes(self.fs, self.mark)

    def created(self) -> set[str]:
        return hook_created(self.fs, self.mark)

    def tally(self, reported: set[str] = frozenset()) -> Tally:  # type: ignore[assignment]
        assert outside_writes(self.fs) == []
        return tally(self.fs, self.protected, reported)

    def assert_clean(self) -> None:
        """Domain A has nothing left (devices, claims); B's device and the external one are intact."""
        present = self.fs.devices(include_transient=True)
        assert not set(self.uuids_a) & set(present), present
        assert self.claims_of_a() == []
        for u, pt in self.protected.items():
            assert present.get(u) == pt, (u, present)
        if self.ub:
            assert self.claims()[self.ub]["domain_uuid"] == DOM_B  # B's claim untouched

    def locks_free(self) -> None:
        """flock dies with its holder: every lock file can be taken at once, without waiting."""
        for p in self.h.lock_dir.glob("*.lock"):
            st = os.lstat(p)
            assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, (p, oct(st.st_mode))
            fd = os.open(p, os.O_RDWR | os.O_NOFOLLOW)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            finally:
                os.close(fd)


@pytest.fixture
def world(fakesysfs: Callable[..., FakeSysfs], tmp_path: Path) -> Iterator[Callable[..., World]]:
    """Factory: world(before=fn) mounts the fake (mtty, GVT-g, T4), writes the config, lets `before` break
    the surroundings, then puts a device of domain B and an external device on the parents A uses."""
    stacks: list[ExitStack] = []

    def make(before: Callable[[HookEnv, ExitStack], None] | None = None, background: bool = True) -> World:
        fs = fakesysfs(["mtty-sample", "intel-gvtg", "nvidia-tesla-t4"])
        (tmp_path / "hook").mkdir(exist_ok=True)
        h = HookEnv(tmp_path / "hook", fs.root, CONFIG)
        stack = ExitStack()
        stacks.append(stack)
        if before is not None:
            before(h, stack)
        a = [(uid(), "mtty", "mtty-2"), (uid(), GVT, "i915-GVTg_V5_4"), (uid(), "mtty", "mtty-1")]
        w = World(fs, h, stack, a=a)
        if background:
            ux, ub = uid(), uid()
            fs.create_external("mtty", "mtty-1", ux)
            w.xml_b = mdev_xml("vmB", DOM_B, [(ub, "mtty", "mtty-2")])
            w.call("prepare", w.xml_b, name="vmB").ok()
            w.protected = {ux: ("mtty", "mtty-1"), ub: ("mtty", "mtty-2")}
            w.ub = ub
        w.mark = len(fs.journal())
        w.runs = 0
        return w

    yield make
    for s in reversed(stacks):
        s.close()


# ---- 1. crash safety: SIGKILL at every step ----------------------------------------------------------------------

# (kill point, how many of A's devices exist when it fires, matrix row)
PREPARE_KILLS = [
    ("locked", 0, "SIGKILL in prepare, holding the parent locks"),
    ("intent_written", 0, "SIGKILL in prepare, after the 1st ledger intent"),
    ("created", 1, "SIGKILL in prepare, after the 1st create"),
    ("verified", 1, "SIGKILL in prepare, after the 1st verify"),
    ("ledger_updated", 1, "SIGKILL in prepare, after the 1st ledger update"),
    ("intent_written:2", 1, "SIGKILL in prepare, after the 2nd ledger intent"),
    ("created:2", 2, "SIGKILL in prepare, after the 2nd create"),
    ("verified:3", 3, "SIGKILL in prepare, after the 3rd verify"),
    ("ledger_updated:3", 3, "SIGKILL in prepare, after the last ledger update"),
]
RELEASE_KILLS = [
    ("release_locked", 3, "SIGKILL in release, holding the parent locks"),
    ("removed", 2, "SIGKILL in release, after the 1st remove"),
    ("removed:2", 1, "SIGKILL in release, after the 2nd remove"),
]
expect(*(row for _, _, row in PREPARE_KILLS))
expect("SIGKILL in prepare, during rollback (after 1 of 2 removes)",
       "SIGKILL inside the create write() (the kernel finishes it)",
       "SIGKILL in prepare, no release after it (libvirtd died); next start",
       *(row for _, _, row in RELEASE_KILLS))


@pytest.mark.parametrize(("point", "alive", "row"), PREPARE_KILLS, ids=[p for p, _, _ in PREPARE_KILLS])
def test_sigkill_in_prepare_then_release(world: Callable[..., World], matrix: Matrix, point: str, alive: int,
                                         row: str) -> None:
    w = world()
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
def test_sigkill_in_release_then_release_again(world: Callable[..., World], matrix: Matrix, point: str, alive: int,
                                               row: str) -> None:
    w = world()
    w.call("prepare").ok()
    r = w.proc("release", MDEV_HOOKS_TEST_KILL_AT=point)
    assert r.returncode == KILLED, r
    assert len(set(w.uuids_a) & set(w.fs.devices())) == alive
    w.locks_free()
    w.proc("release").ok()  # e.g. `mdev-hooks gc`, or the release of the next stop
    w.assert_clean()
    matrix.record("crash", row, w.tally(), injected=1, runs=w.runs, outcome="killed; release again exit 0")


def test_sigkill_during_rollback(world: Callable[..., World], matrix: Matrix) -> None:
    w = world()
    w.fs.control(cmd="fail", op="create", nth=3, errno="EIO")
    r = w.proc("prepare", MDEV_HOOKS_TEST_KILL_AT="rolled_back")
    assert r.returncode == KILLED, r
    assert len(set(w.uuids_a) & set(w.fs.devices())) == 1  # one of the two rolled back, one still there
    w.proc("release").ok()
    w.assert_clean()
    matrix.record("crash", "SIGKILL in prepare, during rollback (after 1 of 2 removes)", w.tally(), injected=2,
                  runs=w.runs, outcome="killed; release exit 0")


def test_sigkill_inside_create_write(world: Callable[..., World], matrix: Matrix) -> None:
    """SIGKILL while the hook is inside the create write(): the kernel (like the fake) finishes the create before
    the writer dies, so the device exists when libvirt's release runs, with only an intent in the ledger."""
    w = world()
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


def test_killed_prepare_without_release_does_not_block_next_start(world: Callable[..., World],
                                                                   matrix: Matrix) -> None:
    """libvirtd died with the hook: no release ran. The domain's own stale claims must not fail its next start."""
    w = world()
    assert w.proc("prepare", MDEV_HOOKS_TEST_KILL_AT="intent_written:2").returncode == KILLED
    assert len(w.claims_of_a()) == 2  # one device created, one bare intent
    w.call("prepare").ok()
    assert set(w.uuids_a) <= set(w.fs.devices())
    w.call("release").ok()
    w.assert_clean()
    matrix.record("crash", "SIGKILL in prepare, no release after it (libvirtd died); next start", w.tally(),
                  injected=1, runs=w.runs, outcome="next start exit 0 (own stale claims taken over)")


def test_lock_of_killed_holder_is_free_at_once(world: Callable[..., World]) -> None:
    """flock dies with its holder: proven on the lock file itself, and by a start that must not wait."""
    w = world()
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


# ---- 2. kernel errors -------------------------------------------------------------------------------------------

CREATE_ERRNOS = {
    "EINVAL": "driver refused",
    "EEXIST": "appeared meanwhile",
    "EUSERS": "no free instance",
    "ENOSPC": "no free instance",
    "EPERM": "no free instance",
    "ENOMEM": "no free instance",
    "ENODEV": "being unregistered",
    "EAGAIN": "busy",
    "EBUSY": "busy",
    "EIO": "dmesg",
}
expect(*(f"create fails {e} (2nd of 3)" for e in CREATE_ERRNOS))


@pytest.mark.parametrize("name", list(CREATE_ERRNOS))
def test_create_errno_rolls_back_with_one_clear_line(world: Callable[..., World], matrix: Matrix, name: str) -> None:
    w = world()
    w.fs.control(cmd="fail", op="create", nth=2, errno=name)
    r = w.call("prepare")
    assert r.returncode == 1 and r.stdout == b""
    line = r.line()
    u, parent, mtype = w.a[1]
    assert f"mdev {u} (type {mtype} on {parent})" in line and name in line, line
    assert CREATE_ERRNOS[name] in line, line
    if CREATE_ERRNOS[name] in ("no free instance", "driver refused"):
        assert "available_instances=" in line
    ops = [(e["op"], e["uuid"], e["result"]) for e in w.writes()]
    assert ops == [("create", w.uuids_a[0], "ok"), ("create", u, name), ("remove", w.uuids_a[0], "ok")]
    assert w.claims_of_a() == []
    w.call("release").ok()  # what libvirt sends next: nothing left to do
    assert len(w.writes()) == 3
    w.assert_clean()
    matrix.record("kernel", f"create fails {name} (2nd of 3)", w.tally(), injected=1, runs=w.runs,
                  outcome="exit 1, one line; 1st rolled back")


REMOVE_TRANSIENT = ["EAGAIN", "EBUSY"]
REMOVE_HARD = ["EIO", "EPERM", "EINVAL", "ENOMEM", "ENODEV"]
expect(*(f"remove fails {e} twice (transient)" for e in REMOVE_TRANSIENT),
       *(f"remove fails {e} until remove_timeout" for e in REMOVE_TRANSIENT),
       *(f"remove fails {e} (persistent)" for e in REMOVE_HARD),
       "device removed by its driver (NVIDIA) during the wait",
       "device removed by someone else before release")


@pytest.mark.parametrize("name", REMOVE_TRANSIENT)
def test_remove_transient_errors_are_retried_with_backoff(world: Callable[..., World], matrix: Matrix,
                                                          name: str) -> None:
    w = world()
    w.call("prepare").ok()
    w.fs.control(cmd="fail", op="remove", nth=1, errno=name, count=2)
    w.call("release").ok()
    w.assert_clean()
    removes = [e for e in w.writes() if e["op"] == "remove"]
    first = [e for e in removes if e["uuid"] == removes[0]["uuid"]]
    assert [e["result"] for e in first] == [name, name, "ok"]
    gaps = [b["t0"] - a["t1"] for a, b in zip(first, first[1:])]
    assert 0.045 <= gaps[0] < 1.0 and 0.095 <= gaps[1] < 1.0, gaps  # exponential backoff: 0.05 s, then 0.1 s
    matrix.record("kernel", f"remove fails {name} twice (transient)", w.tally(), injected=2, runs=w.runs,
                  outcome="retried with backoff; exit 0")


@pytest.mark.parametrize("name", REMOVE_TRANSIENT)
def test_remove_transient_errors_are_bounded(world: Callable[..., World], matrix: Matrix, name: str) -> None:
    w = world()
    w.call("prepare").ok()
    w.h.write(CONFIG.replace("remove_timeout = 2", "remove_timeout = 1"))
    w.fs.control(cmd="fail", op="remove", nth=1, errno=name, count=-1, parent=GVT)
    r = w.call("release")
    assert r.returncode == 1
    line = r.line()
    stuck = w.uuids_a[1]
    tries = [e for e in w.writes() if e["op"] == "remove" and e["uuid"] == stuck]
    assert all(e["result"] == name for e in tries)
    assert 3 <= len(tries) <= 12 and tries[-1]["t1"] - tries[0]["t0"] < 1.5, tries  # bounded by remove_timeout
    assert f"could not remove mdev {stuck} (type i915-GVTg_V5_4 on {GVT})" in line and name in line, line
    assert w.claims_of_a() == [stuck]  # kept: the next release (or gc) finishes the job
    assert not {w.uuids_a[0], w.uuids_a[2]} & set(w.fs.devices())  # the others went
    w.fs.control(cmd="reset")
    w.call("release").ok()
    w.assert_clean()
    matrix.record("kernel", f"remove fails {name} until remove_timeout", w.tally(), injected=len(tries),
                  runs=w.runs, outcome="exit 1 after remove_timeout, ledger kept; next release exit 0")


@pytest.mark.parametrize("name", REMOVE_HARD)
def test_remove_hard_errors_fail_once_and_keep_the_ledger(world: Callable[..., World], matrix: Matrix,
                                                          name: str) -> None:
    w = world()
    w.call("prepare").ok()
    w.fs.control(cmd="fail", op="remove", nth=1, errno=name, count=1)
    r = w.call("release")
    assert r.returncode == 1
    line = r.line()
    u, parent, mtype = w.a[-1]
    assert f"could not remove mdev {u} (type {mtype} on {parent})" in line and name in line, line
    assert f"/sys/bus/mdev/devices/{u}/remove" in line
    results = [(e["uuid"], e["result"]) for e in w.writes() if e["op"] == "remove"]
    assert results == [(u, name), (w.uuids_a[1], "ok"), (w.uuids_a[0], "ok")]  # no retry; the others still go
    assert w.claims_of_a() == [u]
    w.call("release").ok()
    w.assert_clean()
    matrix.record("kernel", f"remove fails {name} (persistent)", w.tally(), injected=1, runs=w.runs,
                  outcome="exit 1, one line, others removed; next release exit 0")


def test_nvidia_device_removed_by_its_driver_is_success(world: Callable[..., World], matrix: Matrix) -> None:
    w = world()
    w.a = [(uid(), T4, "nvidia-231"), (uid(), "mtty", "mtty-2")]
    w.call("prepare").ok()
    w.fs.control(cmd="vanish", uuid=w.uuids_a[0], after_ms=300)
    w.call("release").ok()
    w.assert_clean()
    assert [e["uuid"] for e in w.writes() if e["op"] == "remove"] == [w.uuids_a[1]]
    matrix.record("kernel", "device removed by its driver (NVIDIA) during the wait", w.tally(), injected=1,
                  runs=w.runs, outcome="no remove written; exit 0")


def test_device_removed_by_someone_else_is_success(world: Callable[..., World], matrix: Matrix) -> None:
    w = world()
    w.call("prepare").ok()
    w.fs.remove_external(w.uuids_a[1])
    w.call("release").ok()
    w.assert_clean()
    assert sorted(e["uuid"] for e in w.writes() if e["op"] == "remove") == sorted([w.uuids_a[0], w.uuids_a[2]])
    matrix.record("kernel", "device removed by someone else before release", w.tally(), injected=1, runs=w.runs,
                  outcome="exit 0")


# ---- 3. broken surroundings ---------------------------------------------------------------------------------------

def no_writes_and_clean(w: World) -> None:
    assert w.writes() == []
    assert w.claims_of_a() == []
    w.assert_clean()


expect("state_dir and lock_dir (and their parents) missing",
       "state_dir read-only (ro mount)", "state_dir turns read-only before release",
       "state_dir full (ENOSPC) after the 1st create", "state_dir full (ENOSPC) from the start",
       "state_dir is a symlink (planted, with a forged claim)", "state_dir writable by others",
       "lock_dir read-only (ro mount)", "lock_dir out of inodes (ENOSPC)", "lock_dir is a symlink",
       "lock file is a planted symlink", "log file unwritable (ro, dir, symlink, missing dir, full)",
       "config file broken (7 kinds)", "ledger entry of the device truncated before release",
       "ledger entry corrupt before prepare", "unrelated corrupt ledger entry and stale temp file",
       "lock held longer than lock_timeout (prepare)", "lock held longer than lock_timeout (release)")


def test_missing_dirs_are_created_root_only(world: Callable[..., World], matrix: Matrix) -> None:
    w = world(background=False)
    deep = w.h.dir / "run" / "deep"
    w.h.state_dir, w.h.lock_dir = deep / "state", deep / "lock"
    w.h.write()
    w.call("prepare").ok()
    for d in (w.h.state_dir, w.h.lock_dir):
        st = os.lstat(d)
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
    for f in [*w.h.state_dir.iterdir(), *w.h.lock_dir.iterdir()]:
        st = os.lstat(f)
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, (f, oct(st.st_mode))
    assert {f.name for f in w.h.lock_dir.iterdir()} == {"mtty.lock", f"{GVT}.lock"}
    w.locks_free()
    w.call("release").ok()
    w.assert_clean()
    matrix.record("surroundings", "state_dir and lock_dir (and their parents) missing", w.tally(), injected=2,
                  runs=w.runs, outcome="created 0700, files 0600, no links followed; exit 0")


def test_state_dir_read_only(world: Callable[..., World], matrix: Matrix) -> None:
    w = world()
    with read_only(w.h.state_dir):
        r = w.call("prepare")
        assert r.returncode == 1
        line = r.line()
        assert str(w.h.state_dir) in line and "Read-only file system" in line and "internal error" not in line, line
        no_writes_and_clean(w)
        w.call("release").ok()
    matrix.record("surroundings", "state_dir read-only (ro mount)", w.tally(), injected=1, runs=w.runs,
                  outcome="exit 1, one line; no sysfs write")


def test_state_dir_turns_read_only_before_release(world: Callable[..., World], matrix: Matrix) -> None:
    w = world()
    w.call("prepare").ok()
    with read_only(w.h.state_dir):
        r = w.call("release")
        r.ok()  # every device of the domain is gone: exit 0 (the stale claims are logged)
        assert not set(w.uuids_a) & set(w.fs.devices())
        assert w.claims_of_a() == sorted(w.uuids_a)
        assert [e["event"] for e in w.h.events()].count("ledger.drop_failed") == 3
    w.call("release").ok()  # once writable, the next release drops the stale claims
    w.assert_clean()
    matrix.record("surroundings", "state_dir turns read-only before release", w.tally(), injected=1, runs=w.runs,
                  outcome="all removed, exit 0, claims logged; next release drops them")


def _state_tmpfs(size: str) -> Callable[[HookEnv, ExitStack], None]:
    def before(h: HookEnv, stack: ExitStack) -> None:
        stack.enter_context(tmpfs(h.state_dir, f"size={size},mode=0700"))
    return before


def test_state_dir_full_after_first_create(world: Callable[..., World], matrix: Matrix) -> None:
    # 3 pages: B's claim, A's 1st claim, then the temp file of A's 1st update; A's 2nd update finds no page
    w = world(before=_state_tmpfs("12k"))
    r = w.call("prepare")
    assert r.returncode == 1
    line = r.line()
    assert "No space left on device" in line and str(w.h.state_dir) in line and "internal error" not in line, line
    assert len(w.created()) >= 1  # the ledger filled up after a create: that device was rolled back
    assert sorted(e["uuid"] for e in w.writes() if e["op"] == "remove") == sorted(w.created())
    w.call("release").ok()
    w.assert_clean()
    matrix.record("surroundings", "state_dir full (ENOSPC) after the 1st create", w.tally(), injected=1,
                  runs=w.runs, outcome="exit 1, one line; created devices rolled back")


def test_state_dir_full_from_the_start(world: Callable[..., World], matrix: Matrix) -> None:
    w = world(before=_state_tmpfs("8k"))
    filler = w.h.state_dir / "filler"
    with open(filler, "wb") as f:  # take the page A would need
        f.write(b"x" * 4096)
    r = w.call("prepare")
    assert r.returncode == 1 and "No space left on device" in r.line()
    no_writes_and_clean(w)
    filler.unlink()
    matrix.record("surroundings", "state_dir full (ENOSPC) from the start", w.tally(), injected=1, runs=w.runs,
                  outcome="exit 1, one line; no sysfs write")


def test_state_dir_symlink_is_refused_even_for_release(world: Callable[..., World], matrix: Matrix) -> None:
    w = world()
    x = next(u for u, pt in w.protected.items() if pt == ("mtty", "mtty-1"))  # the external device
    elsewhere = w.h.dir / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    # someone plants state_dir -> a directory with a forged claim giving the external device to domain A
    forged = {"mdev": x, "domain_uuid": DOM_A, "domain_name": "vmA", "parent": "mtty", "type": "mtty-1",
              "state": "created", "pid": 1, "time": 1.0}
    (elsewhere / f"{x}.json").write_text(json.dumps(forged))
    real_state = w.h.dir / "state.real"
    w.h.state_dir.rename(real_state)
    w.h.state_dir.symlink_to(elsewhere)
    try:
        for op in ("release", "prepare"):
            r = w.call(op)
            assert r.returncode == 1, (op, r)
            assert "symlink" in r.line()
        assert w.writes() == []
        assert w.fs.devices()[x] == ("mtty", "mtty-1")
    finally:
        w.h.state_dir.unlink()
        real_state.rename(w.h.state_dir)
    w.assert_clean()
    matrix.record("surroundings", "state_dir is a symlink (planted, with a forged claim)", w.tally(), injected=1,
                  runs=w.runs, outcome="prepare and release exit 1, one line; no sysfs write")


def test_state_dir_writable_by_others_is_refused(world: Callable[..., World], matrix: Matrix) -> None:
    w = world()
    w.call("prepare").ok()
    os.chmod(w.h.state_dir, 0o777)
    for op in ("prepare", "release"):
        r = w.call(op)
        assert r.returncode == 1 and "writable by another user" in r.line(), (op, r)
    assert w.created() == set(w.uuids_a) and [e for e in w.writes() if e["op"] == "remove"] == []
    os.chmod(w.h.state_dir, 0o700)
    w.call("release").ok()
    w.assert_clean()
    matrix.record("surroundings", "state_dir writable by others", w.tally(), injected=1, runs=w.runs,
                  outcome="exit 1, one line, nothing touched; release after the fix exit 0")


def test_lock_dir_read_only(world: Callable[..., World], matrix: Matrix) -> None:
    w = world()
    with read_only(w.h.lock_dir):
        r = w.call("prepare")
        assert r.returncode == 1
        assert "cannot lock parent" in r.line() and "Read-only file system" in r.line()
        no_writes_and_clean(w)
    w.call("prepare").ok()
    with read_only(w.h.lock_dir):
        r = w.call("release")  # cannot lock: nothing removed, nothing forgotten
        assert r.returncode == 1 and "cannot lock parent" in r.line()
        assert w.claims_of_a() == sorted(w.uuids_a)
    w.call("release").ok()
    w.assert_clean()
    matrix.record("surroundings", "lock_dir read-only (ro mount)", w.tally(), injected=2, runs=w.runs,
                  outcome="exit 1, one line, nothing touched; later release exit 0")


def test_lock_dir_without_inodes(world: Callable[..., World], matrix: Matrix) -> None:
    def before(h: HookEnv, stack: ExitStack) -> None:
        stack.enter_context(tmpfs(h.lock_dir, "size=64k,nr_inodes=2,mode=0700"))  # root + mtty.lock of domain B
    w = world(before=before)
    r = w.call("prepare")
    assert r.returncode == 1 and "No space left on device" in r.line() and "cannot lock parent" in r.line()
    no_writes_and_clean(w)
    matrix.record("surroundings", "lock_dir out of inodes (ENOSPC)", w.tally(), injected=1, runs=w.runs,
                  outcome="exit 1, one line; no sysfs write")


def test_lock_dir_symlink_is_refused(world: Callable[..., World], matrix: Matrix) -> None:
    w = world()
    real = w.h.dir / "lock.real"
    w.h.lock_dir.rename(real)
    w.h.lock_dir.symlink_to(real)
    r = w.call("prepare")
    assert r.returncode == 1 and "symlink" in r.line()
    no_writes_and_clean(w)
    w.h.lock_dir.unlink()
    real.rename(w.h.lock_dir)
    matrix.record("surroundings", "lock_dir is a symlink", w.tally(), injected=1, runs=w.runs,
                  outcome="exit 1, one line; no sysfs write")


def test_planted_lock_file_symlink_is_refused(world: Callable[..., World], matrix: Matrix) -> None:
    w = world()
    victim = w.h.dir / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o644)
    (w.h.lock_dir / f"{GVT}.lock").symlink_to(victim)
    r = w.call("prepare")
    assert r.returncode == 1 and "symlink" in r.line()
    assert victim.read_text() == "precious\n" and stat.S_IMODE(victim.stat().st_mode) == 0o644
    no_writes_and_clean(w)
    matrix.record("surroundings", "lock file is a planted symlink", w.tally(), injected=1, runs=w.runs,
                  outcome="exit 1, one line; target untouched; no sysfs write")


def test_unwritable_log_never_fails_the_hook(world: Callable[..., World], matrix: Matrix) -> None:
    w = world()
    victim = w.h.dir / "victim"
    victim.write_text("precious\n")
    rodir = w.h.dir / "rolog"
    rodir.mkdir()
    fulldir = w.h.dir / "fulllog"
    (w.h.dir / "link.log").symlink_to(victim)
    cases = [
        w.h.dir / "no" / "such" / "dir" / "hook.log",  # missing directory
        w.h.dir,  # a directory
        w.h.dir / "link.log",  # a symlink planted to another file
        rodir / "hook.log",  # read-only mount
        fulldir / "hook.log",  # full file system
    ]
    with read_only(rodir), tmpfs(fulldir, "size=4k"):
        (fulldir / "filler").write_bytes(b"x" * 4096)
        for log_file in cases:
            w.h.log_file = log_file
            w.h.write()
            w.call("prepare").ok()
            w.call("release").ok()
            w.assert_clean()
        assert (fulldir / "hook.log").stat().st_size <= 4096
    assert victim.read_text() == "precious\n"
    assert len([e for e in w.writes() if e["op"] == "create" and e["result"] == "ok"]) == 3 * len(cases)
    matrix.record("surroundings", "log file unwritable (ro, dir, symlink, missing dir, full)", w.tally(),
                  injected=len(cases), runs=w.runs, outcome="log dropped; hook works, exit 0")


BROKEN_CONFIGS = {
    "not TOML": "sysfs_root = /sys\n",
    "unknown key": 'sysfs_rot = "/sys"\n',
    "wrong type": 'lock_timeout = "soon"\n',
    "relative path": 'state_dir = "run/mdev"\n',
    "out of range": "lock_timeout = -1\n",
    "not UTF-8": b"\xff\xfe = 1\n",
    "missing file": None,
}


def test_broken_config_is_one_clear_line(world: Callable[..., World], matrix: Matrix) -> None:
    w = world()
    for kind, text in BROKEN_CONFIGS.items():
        if text is None:
            w.h.config.unlink()
        elif isinstance(text, bytes):
            w.h.config.write_bytes(text)
        else:
            w.h.write(CONFIG + text)
        for op in ("prepare", "release", "migrate", "restore"):  # migrate/restore begin: the incoming check
            r = w.call(op)
            assert r.returncode == 1, (kind, op, r)
            assert f"config {w.h.config}" in r.line(), (kind, r)
        for op in ("start", "stopped", "reconnect"):
            w.call(op).ok()  # every other operation: exit 0, no side effect
    w.h.write(CONFIG)
    no_writes_and_clean(w)
    matrix.record("surroundings", "config file broken (7 kinds)", w.tally(), injected=len(BROKEN_CONFIGS),
                  runs=w.runs, outcome="prepare/release exit 1, one line; other ops exit 0; no sysfs write")


def test_truncated_ledger_entry_of_own_device(world: Callable[..., World], matrix: Matrix) -> None:
    w = world()
    w.call("prepare").ok()
    victim = w.uuids_a[1]
    path = w.h.state_dir / f"{victim}.json"
    path.write_bytes(path.read_bytes()[:25])  # a torn write, a bad disk: whatever
    r = w.call("release")
    assert r.returncode == 1
    line = r.line()
    assert victim in line and str(path) in line, line
    present = w.fs.devices()
    assert victim in present and not {w.uuids_a[0], w.uuids_a[2]} & set(present)  # the rest still released
    t = w.tally(reported={victim})
    path.unlink()  # what the line says to do, after checking the device; then the operator removes it
    w.fs.remove_external(victim)
    w.assert_clean()
    matrix.record("surroundings", "ledger entry of the device truncated before release", t, injected=1,
                  runs=w.runs, outcome="exit 1 naming device and file; device left (ownership unproven)")


def test_corrupt_ledger_entry_before_prepare(world: Callable[..., World], matrix: Matrix) -> None:
    w = world()
    path = w.h.state_dir / f"{w.uuids_a[2]}.json"
    for junk in (b"", b"{", b'{"mdev": 1}', b"[]", json.dumps({"mdev": uid(), "domain_uuid": DOM_B, "domain_name": "x",
                                                                "parent": "mtty", "type": "mtty-1",
                                                                "state": "created"}).encode()):
        path.write_bytes(junk)
        r = w.call("prepare")
        assert r.returncode == 1 and str(path) in r.line() and "internal error" not in r.line(), (junk, r)
        assert w.writes() == []
    path.unlink()
    w.call("release").ok()
    no_writes_and_clean(w)
    matrix.record("surroundings", "ledger entry corrupt before prepare", w.tally(), injected=5, runs=w.runs,
                  outcome="exit 1 naming the file; no sysfs write")


def test_unrelated_corrupt_entry_and_stale_temp_file(world: Callable[..., World], matrix: Matrix) -> None:
    w = world()
    (w.h.state_dir / f"{uid()}.json").write_text("{not json")
    (w.h.state_dir / f".{w.uuids_a[0]}.123.456.tmp").write_text('{"half": ')
    w.call("prepare").ok()
    w.call("release").ok()
    w.assert_clean()
    matrix.record("surroundings", "unrelated corrupt ledger entry and stale temp file", w.tally(), injected=2,
                  runs=w.runs, outcome="ignored (logged); exit 0")


def _held(h: HookEnv, parent: str) -> Any:
    h.lock_dir.mkdir(mode=0o700, exist_ok=True)
    f = open(h.lock_dir / f"{parent}.lock", "a")  # noqa: SIM115 - closed by the caller
    fcntl.flock(f, fcntl.LOCK_EX)
    return f


def test_lock_held_too_long_at_prepare(world: Callable[..., World], matrix: Matrix) -> None:
    w = world()
    w.h.write(CONFIG.replace("lock_timeout = 3", "lock_timeout = 1"))
    with _held(w.h, "mtty"):
        r = w.call("prepare")
    assert r.returncode == 1 and "timed out after 1 s waiting for the lock of parent mtty" in r.line()
    assert r.seconds >= 1  # it waited for lock_timeout (1 s, not the file's 3 s: the line names the figure)
    no_writes_and_clean(w)
    matrix.record("surroundings", "lock held longer than lock_timeout (prepare)", w.tally(), injected=1,
                  runs=w.runs, outcome="exit 1 after lock_timeout, one line; no sysfs write")


def test_lock_held_too_long_at_release(world: Callable[..., World], matrix: Matrix) -> None:
    w = world()
    w.call("prepare").ok()
    w.h.write(CONFIG.replace("lock_timeout = 3", "lock_timeout = 1"))
    with _held(w.h, GVT):
        r = w.call("release")
    assert r.returncode == 1 and f"waiting for the lock of parent {GVT}" in r.line()
    assert set(w.uuids_a) <= set(w.fs.devices()) and w.claims_of_a() == sorted(w.uuids_a)
    w.call("release").ok()
    w.assert_clean()
    matrix.record("surroundings", "lock held longer than lock_timeout (release)", w.tally(), injected=1,
                  runs=w.runs, outcome="exit 1, nothing forgotten; next release exit 0")


def test_errno_table_is_complete() -> None:
    """The issue's list of create/remove errnos is covered above (a guard against trimming the lists)."""
    issue = {"EINVAL", "EEXIST", "EUSERS", "ENOSPC", "EPERM", "ENODEV", "EAGAIN", "EBUSY", "EIO"}
    assert issue <= set(CREATE_ERRNOS)
    assert issue - {"EEXIST", "EUSERS", "ENOSPC"} <= set(REMOVE_TRANSIENT) | set(REMOVE_HARD)
    assert all(hasattr(errno, e) for e in issue)


