"""The fake kernel behaves like the real one (real-kernel-e2e.md §4.3, kernel-mdev-abi.md §5) through real syscalls:
the errno matrix of create writes, and removes.
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest
from fakesysfs import profiles
from support.fakeio import MTTY1, MTTY2, Start, avail, create, run_threads, write_errno
from support.ids import U1, U2, uid

# ---- create: the errno matrix ------------------------------------------------------------------------------------


BAD_UUIDS = [
    "not-a-uuid",
    "\n",
    U1[:35],
    U1.replace("-", ""),
    "{" + U1 + "}",
    U1 + "\r\n",
    " " + U1,
    "urn:uuid:" + U1,
    "g" + U1[1:],
    U1[:8] + "_" + U1[9:],
]


def test_create_einval(fakesysfs: Start) -> None:
    fake = fakesysfs("mtty-sample")
    assert {data: create(fake, *MTTY1, data) for data in BAD_UUIDS} == dict.fromkeys(BAD_UUIDS, errno.EINVAL)
    assert fake.devices() == {} and avail(fake, MTTY1) == [24]


def test_create_accepts_37th_byte_and_any_hex(fakesysfs: Start) -> None:
    fake = fakesysfs("mtty-sample")
    odd = ["00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"]
    assert [create(fake, *MTTY1, u) for u in (U1 + "X", U2 + " ", *odd)] == [0, 0, 0, 0]
    assert set(fake.devices()) == {U1, U2, *odd}


def test_create_eexist_across_types_and_case(fakesysfs: Start) -> None:
    fake = fakesysfs("mtty-sample")
    assert create(fake, *MTTY1, U1) == 0
    assert create(fake, *MTTY1, U1) == errno.EEXIST
    assert create(fake, *MTTY2, U1) == errno.EEXIST
    assert create(fake, *MTTY1, U1.upper()) == errno.EEXIST
    assert fake.devices() == {U1: MTTY1}


def test_split_write_is_einval_twice(fakesysfs: Start) -> None:
    fake = fakesysfs("mtty-sample")
    fd = os.open(fake.create_path(*MTTY1), os.O_WRONLY)
    try:
        for part in (U1[:20], U1[20:]):
            with pytest.raises(OSError) as e:
                os.write(fd, part.encode())
            assert e.value.errno == errno.EINVAL
    finally:
        os.close(fd)
    assert fake.devices() == {}


def test_text_mode_write_reports_at_close(fakesysfs: Start) -> None:
    fake = fakesysfs("mtty-sample")
    Path(fake.create_path(*MTTY1)).write_text(U1)
    with pytest.raises(OSError) as e, open(fake.create_path(*MTTY1), "w") as f:
        f.write(U1)
    assert e.value.errno == errno.EEXIST


def test_unknown_type_is_enoent(fakesysfs: Start) -> None:
    fake = fakesysfs("mtty-sample")
    assert create(fake, "mtty", "mtty-9", U1) == errno.ENOENT
    assert not os.path.exists(fake.path("bus/mdev/devices", U1))


def test_mtty_exhaustion_is_enospc(fakesysfs: Start) -> None:
    fake = fakesysfs("mtty-sample")
    assert [create(fake, *MTTY2, uid()) for _ in range(12)] == [0] * 12
    assert create(fake, *MTTY2, uid()) == errno.ENOSPC
    assert create(fake, *MTTY1, uid()) == errno.ENOSPC
    assert avail(fake, MTTY1, MTTY2) == [0, 0]


def test_mdpy_core_counter_is_eusers(fakesysfs: Start) -> None:
    fake = fakesysfs("mdpy-sample")
    kinds = ["mdpy-vga", "mdpy-xga", "mdpy-hd", "mdpy-vga"]
    assert [create(fake, "mdpy", k, uid()) for k in kinds] == [0] * 4
    assert create(fake, "mdpy", "mdpy-hd", uid()) == errno.EUSERS
    assert fake.read("class/mdev_bus/mdpy/mdev_supported_types/mdpy-vga/description").startswith("virtual display")


def test_gvtg_pool(fakesysfs: Start) -> None:
    fake = fakesysfs("intel-gvtg")
    v8, v4 = ("0000:00:02.0", "i915-GVTg_V5_8"), ("0000:00:02.0", "i915-GVTg_V5_4")
    assert avail(fake, v8, v4) == [2, 1]
    assert create(fake, *v8, U1) == 0
    assert avail(fake, v8, v4) == [1, 0]
    assert create(fake, *v4, U2) == errno.ENOSPC


def test_t4_one_type_per_gpu(fakesysfs: Start) -> None:
    fake = fakesysfs("nvidia-tesla-t4")
    gpu = "0000:3b:00.0"
    assert avail(fake, (gpu, "nvidia-231"), (gpu, "nvidia-222")) == [8, 16]
    assert create(fake, gpu, "nvidia-231", U1) == 0
    assert avail(fake, (gpu, "nvidia-231"), (gpu, "nvidia-222")) == [7, 0]
    assert create(fake, gpu, "nvidia-222", U2) == profiles.NVIDIA_EXHAUST_ERRNO
    assert fake.read(f"bus/mdev/devices/{U1}/nvidia/vgpu_params") == ""
    fake.write(f"bus/mdev/devices/{U1}/nvidia/vgpu_params", "frame_rate_limiter=0\n")
    assert fake.read(f"bus/mdev/devices/{U1}/nvidia/vgpu_params") == "frame_rate_limiter=0\n"
    fake.write(fake.remove_path(U1), "1")
    assert create(fake, gpu, "nvidia-222", U2) == 0


def test_a40_vfs(fakesysfs: Start) -> None:
    fake = fakesysfs("nvidia-a40-sriov")
    vf0, vf1, vf2 = "0000:41:00.4", "0000:41:00.5", "0000:41:00.6"
    pf = fake.path("bus/pci/devices/0000:41:00.0")
    assert not os.path.exists(f"{pf}/mdev_supported_types") and "0000:41:00.0" not in os.listdir(
        fake.path("class/mdev_bus")
    )
    assert os.path.realpath(f"{pf}/virtfn1") == os.path.realpath(fake.path("class/mdev_bus", vf1))
    assert os.readlink(fake.path("bus/pci/devices", vf1, "physfn")) == "../0000:41:00.0"
    assert fake.read(f"{pf}/sriov_totalvfs") == "32\n"
    q24 = "nvidia-565"  # A40-24Q: two per GPU
    assert create(fake, vf0, q24, U1) == 0
    assert avail(fake, (vf0, q24), (vf1, q24), (vf1, "nvidia-564")) == [0, 1, 0]
    assert create(fake, vf0, q24, uid()) == profiles.NVIDIA_EXHAUST_ERRNO  # one vGPU per VF
    assert create(fake, vf1, "nvidia-564", uid()) == profiles.NVIDIA_EXHAUST_ERRNO  # one type per GPU
    assert create(fake, vf1, q24, U2) == 0
    assert avail(fake, (vf2, q24)) == [0]  # the per-GPU maximum is reached


# ---- remove ----------------------------------------------------------------------------------------------------


def test_remove_values(fakesysfs: Start) -> None:
    fake = fakesysfs("mtty-sample")
    for value in ("1", "1\n", "+1", "0x1", "2", "01"):
        create(fake, *MTTY1, U1)
        assert write_errno(fake.remove_path(U1), value) == 0, value
        assert fake.devices() == {} and not os.path.exists(fake.path("bus/mdev/devices", U1))
    assert avail(fake, MTTY1) == [24]
    create(fake, *MTTY1, U1)
    for value in ("0", "0x0", ""):
        assert write_errno(fake.remove_path(U1), value) == 0, value  # accepted, nothing removed
    for value in ("-1", " 1", "yes", "true", "1x", "x"):
        assert write_errno(fake.remove_path(U1), value) == errno.EINVAL, value
    assert fake.devices() == {U1: MTTY1}


def test_second_remove_is_enoent_and_uuid_is_reusable(fakesysfs: Start) -> None:
    fake = fakesysfs("mtty-sample")
    create(fake, *MTTY1, U1)
    assert write_errno(fake.remove_path(U1), "1") == 0
    assert write_errno(fake.remove_path(U1), "1") == errno.ENOENT
    assert create(fake, *MTTY2, U1) == 0
    assert fake.devices() == {U1: MTTY2}


def test_reading_create_remove_and_writing_readonly_is_eacces(fakesysfs: Start) -> None:
    fake = fakesysfs("mtty-sample")
    create(fake, *MTTY1, U1)
    for path in (fake.create_path(*MTTY1), fake.remove_path(U1)):
        with pytest.raises(PermissionError):
            open(path).close()
    tdir = os.path.dirname(fake.create_path(*MTTY1))
    assert write_errno(f"{tdir}/name", "x") == errno.EACCES
    assert write_errno(f"{tdir}/available_instances", "5") == errno.EACCES
    assert write_errno(fake.path("nonexistent"), "1") == errno.ENOENT


def test_concurrent_removers(fakesysfs: Start) -> None:
    """Removers that opened `remove` before the first write: one removes, the others wait and succeed."""
    fake = fakesysfs("mtty-sample")
    create(fake, *MTTY1, U1)
    fake.control(cmd="delay", op="remove", ms=800)
    fds = [os.open(fake.remove_path(U1), os.O_WRONLY) for _ in range(4)]
    barrier = threading.Barrier(4)
    results: list[int] = []

    def remove(fd: int) -> None:
        barrier.wait()
        try:
            os.write(fd, b"1")
            results.append(0)
        except OSError as e:
            results.append(e.errno or -1)
        finally:
            os.close(fd)

    run_threads(remove, [(fd,) for fd in fds])
    assert results == [0, 0, 0, 0] and fake.devices(include_transient=True) == {}
    removes = [r for r in fake.journal() if r["op"] == "remove"]
    assert [r.get("noop", False) for r in removes].count(False) == 1
    assert write_errno(fake.remove_path(U1), "1") == errno.ENOENT


def test_removers_racing_from_open(fakesysfs: Start) -> None:
    """The real-kernel row: removers that open at the same time; one removes, late openers get ENOENT."""
    fake = fakesysfs("mtty-sample")
    create(fake, *MTTY1, U1)
    barrier = threading.Barrier(4)
    results: list[int] = []

    def remove() -> None:
        barrier.wait()
        results.append(write_errno(fake.remove_path(U1), "1"))

    run_threads(remove, [()] * 4)
    assert results.count(0) >= 1 and set(results) <= {0, errno.ENOENT, errno.ENODEV}
    removes = [r for r in fake.journal() if r["op"] == "remove" and r["result"] == "ok" and not r.get("noop")]
    assert len(removes) == 1 and fake.devices(include_transient=True) == {}


def test_mbochs_pool(fakesysfs: Start) -> None:
    fake = fakesysfs("mbochs-sample")
    assert [create(fake, "mbochs", "mbochs-large", uid()) for _ in range(5)] == [0] * 4 + [errno.ENOSPC]
    assert avail(fake, ("mbochs", "mbochs-small")) == [0]
    (u,) = list(fake.devices())[:1]
    assert fake.read(f"bus/mdev/devices/{u}/vendor/memory") == "64 MB\n"
