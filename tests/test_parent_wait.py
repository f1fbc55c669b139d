"""parent_wait: a start whose parent is not registered yet (a domain autostarted at boot, before the vGPU manager or
GVT driver) waits for it, polling sysfs and holding no lock, instead of failing at once. The "driver" here is the
FUSE fake of mdev sysfs mounted on the hook's sysfs_root while the hook already runs."""

from __future__ import annotations

import time
from pathlib import Path

from fakesysfs.harness import FakeSysfs
from support.asserts import one_line
from support.hookrun import HookEnv, mdev_xml, require_fuse
from support.ids import DOM_A, MTTY, uid


def test_a_parent_registered_while_the_start_waits_gets_its_device(tmp_path: Path) -> None:
    require_fuse()
    fake = FakeSysfs("mtty-sample", tmp_path / "fake")
    fake.mountpoint.mkdir(parents=True)  # sysfs_root exists, empty: no mdev_bus, no mtty yet
    h = HookEnv(tmp_path / "hook", fake.root, "parent_wait = 30")
    u = uid()
    p = h.start("vm1", "prepare", "begin", mdev_xml("vm1", DOM_A, [(u, MTTY, "mtty-2")]))
    try:
        # until the hook says it waits: its start-up alone can take seconds on a loaded host, and a fixed sleep
        # counted from the process start then saw it wait less than that sleep
        deadline = time.monotonic() + 60
        while not (h.log_file.exists() and '"parent.waiting"' in h.log_file.read_text()):
            assert p.poll() is None, p.stderr.read() if p.stderr else ""
            assert time.monotonic() < deadline, "the hook never logged parent.waiting"
            time.sleep(0.1)
        time.sleep(1)
        assert p.poll() is None, p.stderr.read() if p.stderr else ""  # still waiting
        assert not (h.lock_dir / f"{MTTY}.lock").exists()  # waiting holds no lock
        fake.start()  # the driver registers its parent
        p.wait(timeout=60)
        out, err = (p.stdout.read() if p.stdout else b""), (p.stderr.read() if p.stderr else b"")
        assert (p.returncode, out, err) == (0, b"", b""), err
        assert fake.devices() == {u: (MTTY, "mtty-2")}
        waited = [e for e in h.events() if e["event"] == "parent.waited"]
        # it waited at least the second above, and returned when the parent came, not at parent_wait's end
        assert waited and waited[0]["appeared"] is True and 1000 <= waited[0]["duration_ms"] < 30000
        assert h.run("vm1", "release", "end", mdev_xml("vm1", DOM_A, [(u, MTTY, "mtty-2")])).returncode == 0
        assert fake.devices() == {}
    finally:
        if p.poll() is None:
            p.kill()
        fake.stop()


def test_a_parent_that_never_comes_fails_after_parent_wait_with_the_usual_line(tmp_path: Path) -> None:
    require_fuse()
    (tmp_path / "sys").mkdir()
    h = HookEnv(tmp_path / "hook", str(tmp_path / "sys"), "parent_wait = 1.5")
    u = uid()
    t0 = time.monotonic()
    r = h.run("vm1", "prepare", "begin", mdev_xml("vm1", DOM_A, [(u, MTTY, "mtty-2")]))
    elapsed = time.monotonic() - t0
    assert r.returncode == 1 and "parent mtty not found under /sys/class/mdev_bus" in one_line(r.stderr)
    assert elapsed >= 1.5  # it waited; the line is the one without a wait
    assert [e["appeared"] for e in h.events() if e["event"] == "parent.waited"] == [False]
    assert h.ledger() == []


def test_parent_wait_0_fails_at_once(tmp_path: Path) -> None:
    (tmp_path / "sys").mkdir()
    h = HookEnv(tmp_path / "hook", str(tmp_path / "sys"), "parent_wait = 0")
    r = h.run("vm1", "prepare", "begin", mdev_xml("vm1", DOM_A, [(uid(), MTTY, "mtty-2")]))
    assert r.returncode == 1 and "parent mtty not found" in one_line(r.stderr)
    assert not [e for e in h.events() if e["event"].startswith("parent.wait")]
