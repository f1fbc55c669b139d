"""Issue 6 for mdevs: broken surroundings (state and lock dirs, log, config, ledger, locks held too long).
The world, what a verdict rests on and the matrix rows: support/faultworld.py (conftest `mdev_world`, `matrix`).
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from support.faultmatrix import (
    CONFIG,
    Matrix,
    expect,
    read_only,
    tmpfs,
)
from support.faultworld import MdevWorld, no_writes_and_clean
from support.hookrun import HookEnv
from support.ids import DOM_A, DOM_B, GVT, uid

# ---- 3. broken surroundings ---------------------------------------------------------------------------------------

expect("state_dir and lock_dir (and their parents) missing",
       "state_dir read-only (ro mount)", "state_dir turns read-only before release",
       "state_dir full (ENOSPC) after the 1st create", "state_dir full (ENOSPC) from the start",
       "state_dir is a symlink (planted, with a forged claim)", "state_dir writable by others",
       "lock_dir read-only (ro mount)", "lock_dir out of inodes (ENOSPC)", "lock_dir is a symlink",
       "lock file is a planted symlink", "log file unwritable (ro, dir, symlink, missing dir, full)",
       "config file broken (7 kinds)", "ledger entry of the device truncated before release",
       "ledger entry corrupt before prepare", "unrelated corrupt ledger entry and stale temp file",
       "lock held longer than lock_timeout (prepare)", "lock held longer than lock_timeout (release)")


def test_missing_dirs_are_created_root_only(mdev_world: Callable[..., MdevWorld], matrix: Matrix) -> None:
    w = mdev_world(background=False)
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


def test_state_dir_read_only(mdev_world: Callable[..., MdevWorld], matrix: Matrix) -> None:
    w = mdev_world()
    with read_only(w.h.state_dir):
        r = w.call("prepare")
        assert r.returncode == 1
        line = r.line()
        assert str(w.h.state_dir) in line and "Read-only file system" in line and "internal error" not in line, line
        no_writes_and_clean(w)
        w.call("release").ok()
    matrix.record("surroundings", "state_dir read-only (ro mount)", w.tally(), injected=1, runs=w.runs,
                  outcome="exit 1, one line; no sysfs write")


def test_state_dir_turns_read_only_before_release(mdev_world: Callable[..., MdevWorld], matrix: Matrix) -> None:
    w = mdev_world()
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


def test_state_dir_full_after_first_create(mdev_world: Callable[..., MdevWorld], matrix: Matrix) -> None:
    # 3 pages: B's claim, A's 1st claim, then the temp file of A's 1st update; A's 2nd update finds no page
    w = mdev_world(before=_state_tmpfs("12k"))
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


def test_state_dir_full_from_the_start(mdev_world: Callable[..., MdevWorld], matrix: Matrix) -> None:
    w = mdev_world(before=_state_tmpfs("8k"))
    filler = w.h.state_dir / "filler"
    with open(filler, "wb") as f:  # take the page A would need
        f.write(b"x" * 4096)
    r = w.call("prepare")
    assert r.returncode == 1 and "No space left on device" in r.line()
    no_writes_and_clean(w)
    filler.unlink()
    matrix.record("surroundings", "state_dir full (ENOSPC) from the start", w.tally(), injected=1, runs=w.runs,
                  outcome="exit 1, one line; no sysfs write")


def test_state_dir_symlink_is_refused_even_for_release(mdev_world: Callable[..., MdevWorld], matrix: Matrix) -> None:
    w = mdev_world()
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


def test_state_dir_writable_by_others_is_refused(mdev_world: Callable[..., MdevWorld], matrix: Matrix) -> None:
    w = mdev_world()
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


def test_lock_dir_read_only(mdev_world: Callable[..., MdevWorld], matrix: Matrix) -> None:
    w = mdev_world()
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


def test_lock_dir_without_inodes(mdev_world: Callable[..., MdevWorld], matrix: Matrix) -> None:
    def before(h: HookEnv, stack: ExitStack) -> None:
        stack.enter_context(tmpfs(h.lock_dir, "size=64k,nr_inodes=2,mode=0700"))  # root + mtty.lock of domain B
    w = mdev_world(before=before)
    r = w.call("prepare")
    assert r.returncode == 1 and "No space left on device" in r.line() and "cannot lock parent" in r.line()
    no_writes_and_clean(w)
    matrix.record("surroundings", "lock_dir out of inodes (ENOSPC)", w.tally(), injected=1, runs=w.runs,
                  outcome="exit 1, one line; no sysfs write")


def test_lock_dir_symlink_is_refused(mdev_world: Callable[..., MdevWorld], matrix: Matrix) -> None:
    w = mdev_world()
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


def test_planted_lock_file_symlink_is_refused(mdev_world: Callable[..., MdevWorld], matrix: Matrix) -> None:
    w = mdev_world()
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


def test_unwritable_log_never_fails_the_hook(mdev_world: Callable[..., MdevWorld], matrix: Matrix) -> None:
    w = mdev_world()
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


def test_broken_config_is_one_clear_line(mdev_world: Callable[..., MdevWorld], matrix: Matrix) -> None:
    w = mdev_world()
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


def test_truncated_ledger_entry_of_own_device(mdev_world: Callable[..., MdevWorld], matrix: Matrix) -> None:
    w = mdev_world()
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


def test_corrupt_ledger_entry_before_prepare(mdev_world: Callable[..., MdevWorld], matrix: Matrix) -> None:
    w = mdev_world()
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


def test_unrelated_corrupt_entry_and_stale_temp_file(mdev_world: Callable[..., MdevWorld], matrix: Matrix) -> None:
    w = mdev_world()
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


def test_lock_held_too_long_at_prepare(mdev_world: Callable[..., MdevWorld], matrix: Matrix) -> None:
    w = mdev_world()
    w.h.write(CONFIG.replace("lock_timeout = 3", "lock_timeout = 1"))
    with _held(w.h, "mtty"):
        r = w.call("prepare")
    assert r.returncode == 1 and "timed out after 1 s waiting for the lock of parent mtty" in r.line()
    assert r.seconds >= 1  # it waited for lock_timeout (1 s, not the file's 3 s: the line names the figure)
    no_writes_and_clean(w)
    matrix.record("surroundings", "lock held longer than lock_timeout (prepare)", w.tally(), injected=1,
                  runs=w.runs, outcome="exit 1 after lock_timeout, one line; no sysfs write")


def test_lock_held_too_long_at_release(mdev_world: Callable[..., MdevWorld], matrix: Matrix) -> None:
    w = mdev_world()
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
