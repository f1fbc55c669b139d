"""The fake kernel behaves like the real one (real-kernel-e2e.md §4.3, kernel-mdev-abi.md §5) through real syscalls:
concurrent writers and the journal, fault injection, and the vendor specifics (vfio-ap, NVIDIA's vendor interface).
"""

from __future__ import annotations

import errno
import os
import threading
import time

import pytest
from support.fakeio import MTTY1, MTTY2, Start, avail, create, run_threads, wait_for, write_errno
from support.ids import U1, U2, uid

# ---- concurrency and the journal ---------------------------------------------------------------------------------


def test_same_uuid_from_eight_threads(fakesysfs: Start) -> None:
    fake = fakesysfs("mtty-sample")
    fake.control(cmd="delay", op="create", ms=100)  # the UUID is "being created" while the others try
    barrier = threading.Barrier(8)
    results: list[int] = []

    def go() -> None:
        barrier.wait()
        results.append(create(fake, *MTTY1, U1))

    run_threads(go, [()] * 8)
    assert sorted(results) == [0] + [errno.EEXIST] * 7
    assert fake.devices() == {U1: MTTY1}


def test_creates_overlap_and_the_journal_shows_it(fakesysfs: Start) -> None:
    fake = fakesysfs("mtty-sample")
    fake.control(cmd="delay", op="create", ms=300)
    create(fake, *MTTY1, uid())
    create(fake, *MTTY1, uid())
    assert fake.creates_overlapping_on_same_parent() == []  # one after the other: no overlap
    barrier = threading.Barrier(2)

    def go() -> None:
        barrier.wait()
        create(fake, *MTTY1, uid())  # the same `create` file: a real sysfs lets both writes run at once

    run_threads(go, [()] * 2)
    assert len(fake.creates_overlapping_on_same_parent()) == 1


def test_remove_while_creating_is_eagain(fakesysfs: Start) -> None:
    fake = fakesysfs("mtty-sample")
    fake.control(cmd="delay", op="create", ms=1000)
    creator = threading.Thread(target=create, args=(fake, *MTTY1, U1))
    creator.start()
    assert wait_for(lambda: os.path.exists(fake.remove_path(U1)))
    assert fake.devices(include_transient=True) == {U1: ("mtty", "")}  # no mdev_type link before the probe
    assert create(fake, *MTTY2, U1) == errno.EEXIST
    assert write_errno(fake.remove_path(U1), "1") == errno.EAGAIN
    creator.join(10)
    assert fake.devices() == {U1: MTTY1}
    assert not os.path.exists(fake.remove_path(U1))  # kernel quirk: the remove file went anyway


def test_journal_records(fakesysfs: Start) -> None:
    fake = fakesysfs("mtty-sample")
    create(fake, *MTTY1, U1 + "\n")
    create(fake, *MTTY1, U1)
    write_errno(fake.remove_path(U1), "1")
    recs = fake.journal()
    assert [(r["op"], r["result"]) for r in recs] == [("create", "ok"), ("create", "EEXIST"), ("remove", "ok")]
    assert [r["seq"] for r in recs] == [1, 2, 3]
    first = recs[0]
    assert first["pid"] == os.getpid() and first["t0"] <= first["t1"] <= time.monotonic()
    assert (first["parent"], first["type"], first["uuid"], first["actor"]) == ("mtty", "mtty-1", U1, "user")
    assert first["data"] == repr((U1 + "\n").encode())
    assert first["path"] == "devices/virtual/mtty/mtty/mdev_supported_types/mtty-1/create"


# ---- fault injection -------------------------------------------------------------------------------------------


def test_fail_nth_create(fakesysfs: Start) -> None:
    fake = fakesysfs(["mtty-sample", "mdpy-sample"])
    fake.control(cmd="fail", op="create", errno="EIO", nth=2, parent="mtty", count=1)
    assert create(fake, "mdpy", "mdpy-vga", uid()) == 0  # other parent: not counted
    assert [create(fake, *MTTY1, u) for u in (uid(), U1, uid())] == [0, errno.EIO, 0]
    assert [r["uuid"] for r in fake.journal() if r["result"] == "EIO"] == [U1]
    fake.control(cmd="fail", op="remove", errno="EBUSY", count=-1)
    (u,) = [u for u, pt in fake.devices().items() if pt == MTTY1][:1]
    assert [write_errno(fake.remove_path(u), "1") for _ in range(2)] == [errno.EBUSY] * 2
    fake.control(cmd="reset")
    assert write_errno(fake.remove_path(u), "1") == 0


def test_busy_blocks_remove_until_released(fakesysfs: Start) -> None:
    fake = fakesysfs("mtty-sample")
    create(fake, *MTTY1, U1)
    fake.control(cmd="busy", uuid=U1, on=True)
    done: list[int] = []
    remover = threading.Thread(target=lambda: done.append(write_errno(fake.remove_path(U1), "1")))
    remover.start()
    time.sleep(0.3)
    assert done == [] and remover.is_alive()
    dev = fake.path("bus/mdev/devices", U1)
    assert os.path.isdir(dev) and not os.path.exists(f"{dev}/remove") and not os.path.exists(f"{dev}/mdev_type")
    assert create(fake, *MTTY1, U1) == errno.EEXIST and avail(fake, MTTY1) == [23]
    fake.control(cmd="busy", uuid=U1, on=False)
    remover.join(5)
    assert done == [0] and fake.devices(include_transient=True) == {}


def test_busy_ebusy_mode(fakesysfs: Start) -> None:
    fake = fakesysfs("mtty-sample")
    create(fake, *MTTY1, U1)
    fake.control(cmd="busy", uuid=U1, mode="ebusy")
    assert write_errno(fake.remove_path(U1), "1") == errno.EBUSY
    assert fake.devices() == {U1: MTTY1} and os.path.exists(fake.remove_path(U1))


def test_vanish_and_external_devices(fakesysfs: Start) -> None:
    fake = fakesysfs("nvidia-tesla-t4")
    gpu = "0000:3b:00.0"
    fake.create_external(gpu, "nvidia-231", U1)
    assert create(fake, gpu, "nvidia-231", U1) == errno.EEXIST
    assert create(fake, gpu, "nvidia-231", U2) == 0
    fake.control(cmd="vanish", uuid=U2, after_ms=100)
    assert wait_for(lambda: U2 not in fake.devices())
    assert fake.devices() == {U1: (gpu, "nvidia-231")}
    fake.remove_external(U1)
    assert fake.devices() == {}
    with pytest.raises(OSError) as e:
        fake.remove_external(U1)
    assert e.value.errno == errno.ENODEV
    actors = [(r["op"], r["actor"], r["result"]) for r in fake.journal() if r["op"] != "control"]
    assert actors == [
        ("create", "external", "ok"),
        ("create", "user", "EEXIST"),
        ("create", "user", "ok"),
        ("remove", "driver", "ok"),
        ("remove", "external", "ok"),
        ("remove", "external", "ENODEV"),
    ]


def test_unregister_parent(fakesysfs: Start) -> None:
    fake = fakesysfs(["mtty-sample", "mdpy-sample"])
    create(fake, *MTTY1, U1)
    create(fake, "mdpy", "mdpy-vga", U2)
    fd = os.open(fake.create_path(*MTTY1), os.O_WRONLY)
    try:
        fake.control(cmd="unregister", parent="mtty")
        with pytest.raises(OSError) as e:
            os.write(fd, uid().encode())
        assert e.value.errno == errno.ENODEV  # a create racing the unregistration
    finally:
        os.close(fd)
    assert os.listdir(fake.path("class/mdev_bus")) == ["mdpy"]
    assert fake.devices() == {U2: ("mdpy", "mdpy-vga")}
    assert create(fake, *MTTY1, uid()) == errno.ENOENT
    assert [r["actor"] for r in fake.journal() if r["op"] == "remove"] == ["unregister"]


def test_exhaust_errno_override_and_bad_control(fakesysfs: Start) -> None:
    fake = fakesysfs("s390-vfio-ccw")
    sch = ("0.0.0313", "vfio_ccw-io")
    assert create(fake, *sch, U1) == 0
    assert create(fake, *sch, U2) == errno.EUSERS
    fake.control(cmd="exhaust_errno", parent="0.0.0313", errno="EPERM")  # a pre-6.1 kernel
    assert create(fake, *sch, U2) == errno.EPERM
    for bad in (b"{", b"[]", b'{"cmd":"nope"}', b'{"cmd":"fail","op":"create","errno":"ENOTANERRNO"}'):
        assert write_errno(fake.path(".fake-control"), bad) == errno.EINVAL


def test_synthetic_parents(fakesysfs: Start) -> None:
    fake = fakesysfs([], synthetic_parents=8, synthetic_instances=32)
    assert sorted(os.listdir(fake.path("class/mdev_bus"))) == [f"synth{i}" for i in range(8)]
    assert [create(fake, "synth3", "synth-1", uid()) for _ in range(32)] == [0] * 32
    assert create(fake, "synth3", "synth-1", uid()) == errno.ENOSPC
    assert avail(fake, ("synth3", "synth-1"), ("synth4", "synth-1")) == [0, 32]


# ---- vendor specifics ------------------------------------------------------------------------------------------


def test_vfio_ap_matrix(fakesysfs: Start) -> None:
    fake = fakesysfs("s390-vfio-ap")
    tdir = os.path.dirname(fake.create_path("matrix", "vfio_ap-passthrough"))
    assert not os.path.exists(f"{tdir}/description")
    assert fake.available("matrix", "vfio_ap-passthrough") == 65536
    create(fake, "matrix", "vfio_ap-passthrough", U1)
    create(fake, "matrix", "vfio_ap-passthrough", U2)
    m1, m2 = fake.path("bus/mdev/devices", U1), fake.path("bus/mdev/devices", U2)
    assert write_errno(f"{m1}/assign_adapter", "3") == 0
    assert fake.read(f"{m1}/matrix") == "03.\n"
    assert write_errno(f"{m1}/assign_domain", "0x4\n") == 0
    assert fake.read(f"{m1}/matrix") == fake.read(f"{m1}/guest_matrix") == "03.0004\n"
    assert write_errno(f"{m1}/assign_domain", "256") == errno.ENODEV
    assert write_errno(f"{m1}/assign_adapter", "three") == errno.EINVAL
    assert write_errno(f"{m2}/assign_domain", "4") == 0
    assert write_errno(f"{m2}/assign_adapter", "3") == errno.EBUSY  # APQN 03.0004 belongs to U1
    assert write_errno(f"{m1}/unassign_adapter", "3") == 0
    assert write_errno(f"{m2}/assign_adapter", "3") == 0
    assert write_errno(f"{m2}/assign_control_domain", "0x0a") == 0
    assert fake.read(f"{m2}/control_domains") == "000a\n"
    assert fake.read(f"{m1}/matrix") == ".0004\n"


def test_nvidia_vendor_vfio(fakesysfs: Start) -> None:
    fake = fakesysfs("nvidia-h200x-vendor-vfio")
    assert os.listdir(fake.path("class/mdev_bus")) == []
    vf = [fake.path("bus/pci/devices", f"0000:41:00.{i}", "nvidia") for i in (4, 5, 6, 7)]
    assert not os.path.exists(fake.path("bus/pci/devices/0000:41:00.4/mdev_supported_types"))
    full = "ID    : vGPU Name\n1428  : NVIDIA H200X-141C\n1414  : NVIDIA H200X-1-18C\n"
    assert fake.read(f"{vf[0]}/creatable_vgpu_types") == full
    assert fake.read(f"{vf[0]}/current_vgpu_type") == "0\n"
    assert write_errno(f"{vf[0]}/current_vgpu_type", "1414") == 0
    assert fake.read(f"{vf[0]}/current_vgpu_type") == "1414\n"
    assert fake.read(f"{vf[0]}/creatable_vgpu_types") == "ID    : vGPU Name\n"  # the VF is taken
    assert fake.read(f"{vf[1]}/creatable_vgpu_types") == "ID    : vGPU Name\n1414  : NVIDIA H200X-1-18C\n"
    assert write_errno(f"{vf[1]}/current_vgpu_type", "1428") == errno.EINVAL  # not creatable now
    assert write_errno(f"{vf[0]}/current_vgpu_type", "1414") == errno.EBUSY  # a type is already set
    assert write_errno(f"{vf[0]}/current_vgpu_type", "0") == 0
    assert fake.read(f"{vf[1]}/creatable_vgpu_types") == full
    assert [(r["op"], r["type"], r["result"]) for r in fake.journal()] == [
        ("create", "1414", "ok"),
        ("create", "1428", "EINVAL"),
        ("create", "1414", "EBUSY"),
        ("remove", "1414", "ok"),
    ]
