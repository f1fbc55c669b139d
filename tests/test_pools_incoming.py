"""Parent pools at migrate/restore begin (the pool of that name on this host, no [parents]), in a dry run, and at boot
(parent_wait covers a pool whose members are not registered yet), through the real hook against the FUSE fake."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakesysfs.harness import FakeSysfs
from support.asserts import one_line
from support.common import writes
from support.hookrun import HookEnv, require_fuse
from support.ids import DOM_A, MTTY, uid
from support.pools import ABSENT, T4_16Q, T4S, T4X3, pooled, pools_toml, profiles_file


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[FakeSysfs, HookEnv]]:
    require_fuse()
    fs = FakeSysfs([T4X3, "mtty-sample"], tmp_path / "fake", profiles_file=profiles_file(tmp_path / "p.json"))
    fs.start()
    try:
        # this host's gpu pool: other members than the source's, and no [parents] entry for any of them
        yield fs, HookEnv(tmp_path / "hook", fs.root, pools_toml(gpu=[ABSENT, T4S[2]]))
    finally:
        fs.stop()


def _untouched(fs: FakeSysfs, h: HookEnv) -> None:
    assert writes(fs) == [] and h.ledger() == [] and not h.lock_dir.exists()


@pytest.mark.parametrize("op", ["migrate", "restore"])
def test_incoming_passes_when_this_hosts_pool_can_place_the_devices(world: tuple[FakeSysfs, HookEnv],
                                                                    op: str) -> None:
    fs, h = world
    u = uid()
    r = h.run("vm1", op, "begin", pooled("vm1", DOM_A, [u], T4_16Q))
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    _untouched(fs, h)
    assert [(e["mdev"], e["member"]) for e in h.events() if e["event"] == "pool.placed"] == [(u, T4S[2])]
    assert [e["event"] for e in h.events()][-2:] == ["incoming.checked", "hook.done"]


@pytest.mark.parametrize("op", ["migrate", "restore"])
def test_incoming_fails_with_one_line_when_this_hosts_pool_is_full(world: tuple[FakeSysfs, HookEnv],
                                                                   op: str) -> None:
    fs, h = world
    fs.create_external(T4S[2], T4_16Q, uid())
    journal = len(fs.journal())
    a, b = uid(), uid()
    r = h.run("vm1", op, "begin", pooled("vm1", DOM_A, [a, b], T4_16Q))
    err = one_line(r.stderr)
    assert r.returncode == 1 and r.stdout == b""
    assert err.startswith(f"cannot create mdev {a}: no member of pool gpu has a free instance of type "
                          f"{T4_16Q} ({ABSENT}: not registered; {T4S[2]}: full (available_instances=0)) "
                          f"(checked at {op} begin, ")
    assert len(fs.journal()) == journal and h.ledger() == [] and not h.lock_dir.exists()


def test_incoming_fails_when_this_host_has_no_pool_of_that_name(world: tuple[FakeSysfs, HookEnv]) -> None:
    fs, h = world
    h.write(pools_toml(vdi=[MTTY]))
    u = uid()
    r = h.run("vm1", "migrate", "begin", pooled("vm1", DOM_A, [u], T4_16Q))
    assert r.returncode == 1 and r.stdout == b""
    assert one_line(r.stderr) == (f"mdev {u}: pool gpu is not in [pools] of {h.config} (pools on this "
                                  "host: vdi)")
    _untouched(fs, h)


def test_a_dry_run_logs_where_each_device_would_go_and_writes_nothing(world: tuple[FakeSysfs, HookEnv]) -> None:
    fs, h = world
    h.write(pools_toml(gpu=T4S))
    a, b = uid(), uid()
    r = h.run("vm1", "prepare", "begin", pooled("vm1", DOM_A, [a, b], T4_16Q), MDEV_HOOKS_DRY_RUN="1")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    assert writes(fs) == [] and fs.devices() == {} and h.ledger() == []
    events = h.events()
    assert [(e["mdev"], e["pool"], e["member"]) for e in events if e["event"] == "pool.placed"] == [
        (a, "gpu", T4S[0]), (b, "gpu", T4S[1])]
    assert [(e["mdev"], e["parent"]) for e in events if e["event"] == "mdev.would_create"] == [
        (a, T4S[0]), (b, T4S[1])]


def test_a_late_member_at_boot_gets_the_device(tmp_path: Path) -> None:
    require_fuse()
    fake = FakeSysfs("mtty-sample", tmp_path / "fake")
    fake.mountpoint.mkdir(parents=True)  # sysfs_root exists, empty: no member registered yet
    h = HookEnv(tmp_path / "hook", fake.root, "parent_wait = 30\n" + pools_toml(gpu=[ABSENT, MTTY]))
    u = uid()
    d = pooled("vm1", DOM_A, [u], "mtty-2")
    p = h.start("vm1", "prepare", "begin", d)
    try:
        h.wait_logged(p, "parent.waiting")
        time.sleep(1)
        assert p.poll() is None  # still waiting, holding no lock
        assert not h.lock_dir.exists()
        fake.start()  # the driver registers the second member
        p.wait(timeout=60)
        out, err = (p.stdout.read() if p.stdout else b""), (p.stderr.read() if p.stderr else b"")
        assert (p.returncode, out, err) == (0, b"", b""), err
        assert fake.devices() == {u: (MTTY, "mtty-2")}
        waiting = [e for e in h.events() if e["event"] == "parent.waiting"]
        assert waiting[0]["parents"] == ["pool gpu"]
        assert [e["appeared"] for e in h.events() if e["event"] == "parent.waited"] == [True]
        assert h.run("vm1", "release", "end", d).returncode == 0 and fake.devices() == {} and h.ledger() == []
    finally:
        if p.poll() is None:
            p.kill()
        fake.stop()


def test_a_pool_whose_members_never_come_fails_after_parent_wait(tmp_path: Path) -> None:
    (tmp_path / "sys").mkdir()
    h = HookEnv(tmp_path / "hook", str(tmp_path / "sys"), "parent_wait = 1\n" + pools_toml(gpu=[ABSENT, MTTY]))
    u = uid()
    r = h.run("vm1", "prepare", "begin", pooled("vm1", DOM_A, [u], "mtty-2"))
    assert r.returncode == 1
    assert one_line(r.stderr) == (f"cannot create mdev {u}: no member of pool gpu has a free instance "
                                  f"of type mtty-2 ({ABSENT}: not registered; {MTTY}: not registered)")
    assert [e["appeared"] for e in h.events() if e["event"] == "parent.waited"] == [False] and h.ledger() == []
