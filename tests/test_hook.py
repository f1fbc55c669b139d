"""The real hook, run as a subprocess the way libvirt runs it, against the FUSE fake of mdev sysfs.

Every promise of the core issue is checked here through what the fake's kernel saw (its journal) and what
the user sees (exit code, stderr, stdout), never through the hook's own view of itself.
"""

from __future__ import annotations

import fcntl
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.asserts import one_line
from support.hookrun import HookEnv, mdev_xml
from support.ids import DOM_A, DOM_B, GVT, T4, uid


def hook_creates(fs: Any) -> list[dict[str, Any]]:
    return [e for e in fs.journal() if e["op"] == "create" and e.get("actor") == "user"]


def hook_removes(fs: Any) -> list[dict[str, Any]]:
    return [e for e in fs.journal() if e["op"] == "remove" and e.get("actor") == "user"]


@pytest.fixture
def gvt(fakesysfs: Callable[..., Any], tmp_path: Path) -> tuple[Any, HookEnv]:
    fs = fakesysfs(["intel-gvtg", "mtty-sample", "nvidia-tesla-t4"])
    return fs, HookEnv(tmp_path / "hook", fs.root)


def test_lifecycle_create_then_remove(gvt: tuple[Any, HookEnv]) -> None:
    fs, h = gvt
    u = uid()
    xml = mdev_xml("vm1", DOM_A, [(u, GVT, "i915-GVTg_V5_4")])
    assert fs.available(GVT, "i915-GVTg_V5_4") == 1
    r = h.run("vm1", "prepare", "begin", xml)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    assert fs.devices() == {u: (GVT, "i915-GVTg_V5_4")}
    assert [e["uuid"] for e in hook_creates(fs)] == [u]
    assert fs.available(GVT, "i915-GVTg_V5_4") == 0
    assert h.ledger() == [f"{u}.json"]
    for op, sub in (("start", "begin"), ("started", "begin"), ("stopped", "end")):
        assert h.run("vm1", op, sub, xml).returncode == 0
    assert fs.devices() == {u: (GVT, "i915-GVTg_V5_4")}
    r = h.run("vm1", "release", "end", xml)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    assert fs.devices() == {}
    assert [e["uuid"] for e in hook_removes(fs)] == [u]
    assert h.ledger() == []
    names = [e["event"] for e in h.events()]
    assert "mdev.created" in names and "mdev.removed" in names
    created = next(e for e in h.events() if e["event"] == "mdev.created")
    for key in ("domain", "domain_uuid", "op", "mdev", "parent", "type", "duration_ms"):
        assert key in created, key


def test_three_devices_unprefixed_metadata_and_upper_case(gvt: tuple[Any, HookEnv]) -> None:
    fs, h = gvt
    us = [uid(), uid(), uid()]
    mdevs = [(us[0].upper(), "mtty", "mtty-1"), (us[1], "mtty", "mtty-1"), (us[2], "mtty", "mtty-2")]
    xml = mdev_xml("vm1", DOM_A, mdevs, prefixed=False)
    assert h.run("vm1", "prepare", "begin", xml).returncode == 0
    assert set(fs.devices()) == set(us)  # written lower-case
    assert all(e["data"] and us[0].upper() not in e["data"] for e in hook_creates(fs))
    assert h.run("vm1", "release", "end", xml).returncode == 0
    assert fs.devices() == {} and h.ledger() == []


def test_rollback_on_second_of_three(gvt: tuple[Any, HookEnv]) -> None:
    fs, h = gvt
    us = [uid(), uid(), uid()]
    xml = mdev_xml("vm1", DOM_A, [(u, "mtty", "mtty-1") for u in us])
    fs.control(cmd="fail", op="create", nth=2, errno="EIO")
    r = h.run("vm1", "prepare", "begin", xml)
    assert r.returncode == 1
    line = one_line(r.stderr)
    assert us[1] in line and "EIO" in line and "mtty-1" in line
    ops = [e for e in fs.journal() if e["op"] in ("create", "remove")]
    assert [(e["op"], e["result"]) for e in ops] == [("create", "ok"), ("create", "EIO"), ("remove", "ok")]
    assert ops[0]["uuid"] == ops[2]["uuid"] == us[0] and us[1] in ops[1]["data"]
    assert fs.devices() == {} and h.ledger() == []
    # libvirt then runs stopped + release: nothing more to do, exit 0, no write
    assert h.run("vm1", "release", "end", xml).returncode == 0
    assert len(hook_removes(fs)) == 1


def test_release_after_failed_prepare_spares_other_domains_device(gvt: tuple[Any, HookEnv]) -> None:
    fs, h = gvt
    u = uid()
    xml1 = mdev_xml("vm1", DOM_A, [(u, "mtty", "mtty-2")])
    xml2 = mdev_xml("vm2", DOM_B, [(u, "mtty", "mtty-2")])
    assert h.run("vm1", "prepare", "begin", xml1).returncode == 0
    r = h.run("vm2", "prepare", "begin", xml2)
    assert r.returncode == 1
    assert "ledger gives it to domain vm1" in one_line(r.stderr)
    assert h.run("vm2", "release", "end", xml2).returncode == 0
    assert fs.devices() == {u: ("mtty", "mtty-2")}
    assert hook_removes(fs) == []
    assert h.run("vm1", "release", "end", xml1).returncode == 0
    assert fs.devices() == {}


def test_release_is_idempotent_and_double_prepare_creates_once(gvt: tuple[Any, HookEnv]) -> None:
    fs, h = gvt
    u = uid()
    xml = mdev_xml("vm1", DOM_A, [(u, "mtty", "mtty-2")])
    assert h.run("vm1", "prepare", "begin", xml).returncode == 0
    assert h.run("vm1", "prepare", "begin", xml).returncode == 0
    assert len(hook_creates(fs)) == 1
    for _ in range(3):
        assert h.run("vm1", "release", "end", xml).returncode == 0
    assert len(hook_removes(fs)) == 1 and fs.devices() == {}


def test_existing_device_is_adopted_and_left_in_place(gvt: tuple[Any, HookEnv]) -> None:
    fs, h = gvt
    u = uid()
    fs.control(cmd="create_external", parent="mtty", type="mtty-2", uuid=u)
    xml = mdev_xml("vm1", DOM_A, [(u, "mtty", "mtty-2")])
    assert h.run("vm1", "prepare", "begin", xml).returncode == 0
    assert hook_creates(fs) == []
    assert h.run("vm1", "release", "end", xml).returncode == 0
    assert fs.devices() == {u: ("mtty", "mtty-2")} and hook_removes(fs) == []
    assert any(e["event"] == "mdev.adopted" for e in h.events())


def test_existing_device_with_other_type_fails(gvt: tuple[Any, HookEnv]) -> None:
    fs, h = gvt
    u = uid()
    fs.control(cmd="create_external", parent="mtty", type="mtty-1", uuid=u)
    r = h.run("vm1", "prepare", "begin", mdev_xml("vm1", DOM_A, [(u, "mtty", "mtty-2")]))
    assert r.returncode == 1 and "already exists as type mtty-1 on mtty" in one_line(r.stderr)
    assert fs.devices() == {u: ("mtty", "mtty-1")}


def test_unmanaged_mdev_never_touched(gvt: tuple[Any, HookEnv]) -> None:
    fs, h = gvt
    mine, theirs = uid(), uid()
    fs.control(cmd="create_external", parent="mtty", type="mtty-1", uuid=theirs)
    xml = mdev_xml("vm1", DOM_A, [(mine, "mtty", "mtty-2")], unmanaged=[theirs])
    assert h.run("vm1", "prepare", "begin", xml).returncode == 0
    assert h.run("vm1", "release", "end", xml).returncode == 0
    assert [e["uuid"] for e in hook_creates(fs)] == [mine]
    assert [e["uuid"] for e in hook_removes(fs)] == [mine]
    assert fs.devices() == {theirs: ("mtty", "mtty-1")}


def test_validation_before_any_write(gvt: tuple[Any, HookEnv]) -> None:
    fs, h = gvt
    # 1st fine, 2nd names a type the parent does not offer: nothing may be created at all
    xml = mdev_xml("vm1", DOM_A, [(uid(), "mtty", "mtty-2"), (uid(), "mtty", "mtty-9")])
    r = h.run("vm1", "prepare", "begin", xml)
    assert r.returncode == 1 and "does not offer type mtty-9" in one_line(r.stderr)
    assert hook_creates(fs) == [] and h.ledger() == []


@pytest.mark.parametrize(("mdevs", "message"), [
    ([("0000:00:09.0", "i915-GVTg_V5_4")], "parent 0000:00:09.0 not found"),
    ([(GVT, "i915-GVTg_V5_1")], "does not offer type i915-GVTg_V5_1"),
    ([(GVT, "i915-GVTg_V5_4"), (GVT, "i915-GVTg_V5_4")], "available_instances=1; this domain needs 2"),
])
def test_validation_errors(gvt: tuple[Any, HookEnv], mdevs: list[tuple[str, str]], message: str) -> None:
    fs, h = gvt
    r = h.run("vm1", "prepare", "begin", mdev_xml("vm1", DOM_A, [(uid(), p, t) for p, t in mdevs]))
    assert r.returncode == 1 and message in one_line(r.stderr)
    assert hook_creates(fs) == []


def test_no_free_instance_names_devices_in_use(gvt: tuple[Any, HookEnv]) -> None:
    fs, h = gvt
    a, b = uid(), uid()
    assert h.run("vm1", "prepare", "begin", mdev_xml("vm1", DOM_A, [(a, GVT, "i915-GVTg_V5_4")])).returncode == 0
    r = h.run("vm2", "prepare", "begin", mdev_xml("vm2", DOM_B, [(b, GVT, "i915-GVTg_V5_4")]))
    line = one_line(r.stderr)
    assert f"cannot create mdev {b} (type i915-GVTg_V5_4 on {GVT}): no free instance" in line
    assert f"available_instances=0; 1 in use: {a}" in line
    assert [e["uuid"] for e in hook_creates(fs)] == [a]


def test_nvidia_one_type_per_gpu(gvt: tuple[Any, HookEnv]) -> None:
    fs, h = gvt
    assert h.run("vm1", "prepare", "begin", mdev_xml("vm1", DOM_A, [(uid(), T4, "nvidia-222")])).returncode == 0
    r = h.run("vm2", "prepare", "begin", mdev_xml("vm2", DOM_B, [(uid(), T4, "nvidia-223")]))
    assert r.returncode == 1 and "available_instances=0" in one_line(r.stderr)
    assert len(hook_creates(fs)) == 1 and len(fs.devices()) == 1


def test_kernel_exhaustion_errno_reported(gvt: tuple[Any, HookEnv]) -> None:
    fs, h = gvt
    fs.control(cmd="fail", op="create", nth=1, errno="ENOSPC")
    u = uid()
    r = h.run("vm1", "prepare", "begin", mdev_xml("vm1", DOM_A, [(u, "mtty", "mtty-2")]))
    line = one_line(r.stderr)
    assert "no free instance" in line and "ENOSPC" in line and "available_instances=" in line
    assert fs.devices() == {} and h.ledger() == []


def test_dry_run_writes_nothing_and_fails_the_same(gvt: tuple[Any, HookEnv]) -> None:
    fs, h = gvt
    good = mdev_xml("vm1", DOM_A, [(uid(), "mtty", "mtty-2")])
    bad = mdev_xml("vm2", DOM_B, [(uid(), GVT, "i915-GVTg_V5_4"), (uid(), GVT, "i915-GVTg_V5_4")])
    real_bad = h.run("vm2", "prepare", "begin", bad)
    for env in ({"MDEV_HOOKS_DRY_RUN": "1"},):
        r = h.run("vm1", "prepare", "begin", good, **env)
        assert (r.returncode, r.stderr) == (0, b"")
        r = h.run("vm2", "prepare", "begin", bad, **env)
        assert (r.returncode, r.stderr) == (1, real_bad.stderr)
    h.write("dry_run = true")
    assert h.run("vm1", "prepare", "begin", good).returncode == 0
    assert h.run("vm1", "release", "end", good).returncode == 0
    assert hook_creates(fs) == [] and fs.devices() == {} and h.ledger() == []
    assert [e["event"] for e in h.events()].count("mdev.would_create") == 2
    # the env switch turns dry-run OFF over the config file
    assert h.run("vm1", "prepare", "begin", good, MDEV_HOOKS_DRY_RUN="0").returncode == 0
    assert len(fs.devices()) == 1


@pytest.mark.parametrize("op", [("start", "begin"), ("started", "begin"), ("stopped", "end"),
                                ("reconnect", "begin"), ("migrate", "end"), ("restore", "end"),
                                ("attach", "begin"), ("future-op", "whatever"), ("prepare", "end")])
def test_other_operations_do_nothing(gvt: tuple[Any, HookEnv], op: tuple[str, str]) -> None:
    fs, h = gvt
    r = h.run("vm1", op[0], op[1], mdev_xml("vm1", DOM_A, [(uid(), "mtty", "mtty-2")]))
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    assert fs.journal() == [] and h.ledger() == [] and not h.log_file.exists()


def test_plain_domain_fast_path_touches_nothing(gvt: tuple[Any, HookEnv]) -> None:
    fs, h = gvt
    xml = (Path(__file__).parent / "fixtures" / "libvirt-9.0" / "plain.prepare.xml").read_bytes()
    for op, sub in (("prepare", "begin"), ("release", "end")):
        r = h.run("plain", op, sub, xml)
        assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    assert fs.journal() == [] and not h.log_file.exists()


def test_lock_timeout_names_the_parent(gvt: tuple[Any, HookEnv]) -> None:
    fs, h = gvt
    h.write("lock_timeout = 1")
    h.lock_dir.mkdir(mode=0o700)
    with open(h.lock_dir / "mtty.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        t0 = time.monotonic()
        r = h.run("vm1", "prepare", "begin", mdev_xml("vm1", DOM_A, [(uid(), "mtty", "mtty-2")]))
        assert time.monotonic() - t0 < 10
    line = one_line(r.stderr)
    assert "waiting for the lock of parent mtty" in line
    assert hook_creates(fs) == []


def test_killed_holder_leaves_no_stale_lock(gvt: tuple[Any, HookEnv]) -> None:
    fs, h = gvt
    fs.control(cmd="delay", op="create", ms=3000)
    u = uid()
    xml = mdev_xml("vm1", DOM_A, [(u, "mtty", "mtty-2")])
    p = h.start("vm1", "prepare", "begin", xml)
    deadline = time.monotonic() + 10
    while f"{u}.json" not in h.ledger() and time.monotonic() < deadline:  # intent recorded: create is next
        time.sleep(0.05)
    time.sleep(0.5)  # now inside the slow create write()
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    fs.control(cmd="reset")
    time.sleep(3.5)  # the interrupted create finishes inside the "kernel"
    # a new start on the same parent is not blocked by the dead holder's lock
    h.write("lock_timeout = 2")
    other = mdev_xml("vm2", DOM_B, [(uid(), "mtty", "mtty-1")])
    assert h.run("vm2", "prepare", "begin", other).returncode == 0
    # libvirt's release for the killed start cleans up whatever the kernel created
    assert h.run("vm1", "release", "end", xml).returncode == 0
    assert u not in fs.devices()
    assert all(not name.startswith(u) for name in h.ledger())


def test_nvidia_driver_removal_is_awaited(gvt: tuple[Any, HookEnv]) -> None:
    fs, h = gvt
    h.write("nvidia_release_wait = 5")
    u = uid()
    xml = mdev_xml("vm1", DOM_A, [(u, T4, "nvidia-231")])
    assert h.run("vm1", "prepare", "begin", xml).returncode == 0
    fs.control(cmd="vanish", uuid=u, after_ms=500)
    assert h.run("vm1", "release", "end", xml).returncode == 0
    assert hook_removes(fs) == [] and fs.devices() == {} and h.ledger() == []


def test_nvidia_vendor_vfio_is_not_mdev(fakesysfs: Callable[..., Any], tmp_path: Path) -> None:
    fs = fakesysfs("nvidia-h200x-vendor-vfio")
    h = HookEnv(tmp_path, fs.root)
    r = h.run("vm1", "prepare", "begin", mdev_xml("vm1", DOM_A, [(uid(), "0000:41:00.4", "nvidia-1428")]))
    err = one_line(r.stderr)
    # an mdev hostdev cannot use it: the line says how to opt in to the vendor interface instead
    assert r.returncode == 1 and "vendor-specific vGPU interface" in err and 'kind="nvidia-vf"' in err


def test_remove_transient_busy_is_retried(gvt: tuple[Any, HookEnv]) -> None:
    fs, h = gvt
    u = uid()
    xml = mdev_xml("vm1", DOM_A, [(u, "mtty", "mtty-2")])
    assert h.run("vm1", "prepare", "begin", xml).returncode == 0
    fs.control(cmd="fail", op="remove", nth=1, errno="EAGAIN", count=2)
    assert h.run("vm1", "release", "end", xml).returncode == 0
    assert fs.devices() == {}
    assert [e["result"] for e in hook_removes(fs)] == ["EAGAIN", "EAGAIN", "ok"]


def test_remove_failure_is_one_line_and_keeps_ledger(gvt: tuple[Any, HookEnv]) -> None:
    fs, h = gvt
    u = uid()
    xml = mdev_xml("vm1", DOM_A, [(u, "mtty", "mtty-2")])
    assert h.run("vm1", "prepare", "begin", xml).returncode == 0
    fs.control(cmd="fail", op="remove", nth=1, errno="EIO", count=-1)
    r = h.run("vm1", "release", "end", xml)
    assert r.returncode == 1 and f"could not remove mdev {u}" in one_line(r.stderr)
    assert h.ledger() == [f"{u}.json"]  # kept, so a later release or gc can finish the job
    fs.control(cmd="reset")
    assert h.run("vm1", "release", "end", xml).returncode == 0 and fs.devices() == {}


def test_release_works_from_the_ledger_when_metadata_was_removed(gvt: tuple[Any, HookEnv]) -> None:
    fs, h = gvt
    u = uid()
    assert h.run("vm1", "prepare", "begin", mdev_xml("vm1", DOM_A, [(u, "mtty", "mtty-2")])).returncode == 0
    # `virsh metadata --live` emptied while the VM ran: the hostdev is still managed, its entry is gone
    stripped = mdev_xml("vm1", DOM_A, [(u, "mtty", "mtty-2")]).replace(
        f'<mdev:device uuid="{u}" parent="mtty" type="mtty-2"/>'.encode(), b"")
    r = h.run("vm1", "release", "end", stripped)
    assert (r.returncode, r.stderr) == (0, b"")
    assert fs.devices() == {} and h.ledger() == []
