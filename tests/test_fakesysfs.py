"""The fake kernel behaves like the real one (real-kernel-e2e.md §4.3, kernel-mdev-abi.md §5) through real syscalls."""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path

import pytest
from fakesysfs import parse, profiles
from fakesysfs.harness import FakeSysfs
from fakesysfs.journal import overlapping_creates
from support.ids import U1, U2

Start = Callable[..., FakeSysfs]
MTTY1, MTTY2 = ("mtty", "mtty-1"), ("mtty", "mtty-2")


def new_uuid() -> str:
    return str(uuidlib.uuid4())


def write_errno(path: str, data: bytes | str) -> int:
    """0 if one os.write() of `data` succeeded, else the errno (from open or write)."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as e:
        return e.errno or -1
    try:
        os.write(fd, data.encode() if isinstance(data, str) else data)
        return 0
    except OSError as e:
        return e.errno or -1
    finally:
        os.close(fd)


def create(fake: FakeSysfs, parent: str, type_id: str, uuid: str | bytes) -> int:
    return write_errno(fake.create_path(parent, type_id), uuid)


def avail(fake: FakeSysfs, *pairs: tuple[str, str]) -> list[int]:
    return [fake.available(p, t) for p, t in pairs]


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def run_threads(target: Callable[..., object], args: list[tuple[object, ...]]) -> None:
    threads = [threading.Thread(target=target, args=a) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)


# ---- pure model ------------------------------------------------------------------------------------------------


def test_every_type_starts_with_its_max_instances() -> None:
    raw = profiles.load_raw()
    assert len(raw) == 10 and all(p["source"] for p in raw.values())
    for name in raw:
        host = profiles.build_host([name])
        for p in host.parents.values():
            for t in p.types:
                assert profiles.available(host, {}, p.name, t.id) == t.max_instances, (name, p.name, t.id)


def test_capacity_models() -> None:
    gvt = profiles.build_host(["intel-gvtg"])
    assert profiles.available(gvt, {"0000:00:02.0": ["i915-GVTg_V5_8"]}, "0000:00:02.0", "i915-GVTg_V5_8") == 1
    assert profiles.available(gvt, {"0000:00:02.0": ["i915-GVTg_V5_8"]}, "0000:00:02.0", "i915-GVTg_V5_4") == 0
    t4 = profiles.build_host(["nvidia-tesla-t4"])
    live = {"0000:3b:00.0": ["nvidia-231"]}
    assert profiles.available(t4, live, "0000:3b:00.0", "nvidia-231") == 7
    assert profiles.available(t4, live, "0000:3b:00.0", "nvidia-222") == 0
    h200 = profiles.build_host(["nvidia-h200x-vendor-vfio"])
    mig = {f"0000:41:00.{i}": ["1414"] for i in (4, 5, 6)}
    assert profiles.available(h200, mig, "0000:41:00.7", "1414") == 1
    assert profiles.available(h200, mig, "0000:41:00.7", "1428") == 0  # a full-GPU vGPU needs an empty GPU


def test_profiles_claiming_one_device_cannot_be_combined() -> None:
    with pytest.raises(ValueError, match="defined twice"):
        profiles.build_host(["nvidia-a40-sriov", "nvidia-h200x-vendor-vfio"])
    assert len(profiles.build_host(["intel-gvtg", "nvidia-tesla-t4"], synthetic=2).parents) == 4


@pytest.mark.parametrize(
    ("data", "value"),
    [(b"1", 1), (b"1\n", 1), (b"+1", 1), (b"0x1", 1), (b"2", 2), (b"01", 1), (b"0", 0), (b"0x0", 0)]
    + [(bad, None) for bad in (b"-1", b" 1", b"yes", b"true", b"1x", b"x", b"0x", b"1\n\n")],
)
def test_kstrtoul(data: bytes, value: int | None) -> None:
    if value is None:
        with pytest.raises(OSError) as e:
            parse.kstrtoul(data)
        assert e.value.errno == errno.EINVAL
    else:
        assert parse.kstrtoul(data) == value


def test_overlap_detection() -> None:
    def rec(parent: str, t0: float, t1: float) -> dict[str, object]:
        return {"op": "create", "result": "ok", "actor": "user", "parent": parent, "t0": t0, "t1": t1}

    a, b, c, d = rec("p", 0, 2), rec("p", 1, 3), rec("q", 1, 3), rec("p", 3, 4)
    assert overlapping_creates([a, b, c, d]) == [(a, b)]


# ---- layout ----------------------------------------------------------------------------------------------------


def test_mtty_layout(fakesysfs: Start) -> None:
    fake = fakesysfs("mtty-sample")
    root = os.path.realpath(fake.root)
    assert os.readlink(fake.path("class/mdev_bus/mtty")) == "../../devices/virtual/mtty/mtty"
    assert os.path.realpath(fake.path("class/mdev_bus/mtty")) == f"{root}/devices/virtual/mtty/mtty"
    tdir = fake.path("class/mdev_bus/mtty/mdev_supported_types/mtty-2")
    assert sorted(os.listdir(tdir)) == ["available_instances", "create", "device_api", "devices", "name"]
    assert stat.S_IMODE(os.stat(f"{tdir}/create").st_mode) == 0o200
    assert stat.S_IMODE(os.stat(f"{tdir}/name").st_mode) == 0o444
    assert fake.read(f"{tdir}/name") == "Dual port serial\n"
    assert fake.read(f"{tdir}/device_api") == "vfio-pci\n"
    assert avail(fake, MTTY1, MTTY2) == [24, 12]
    assert ".fake-control" not in os.listdir(fake.root)


def test_created_device_layout(fakesysfs: Start) -> None:
    fake = fakesysfs("mtty-sample")
    root = os.path.realpath(fake.root)
    assert create(fake, *MTTY2, U1.upper() + "\n") == 0
    assert os.listdir(fake.path("bus/mdev/devices")) == [U1]  # upper case in, lower case out
    dev = fake.path("bus/mdev/devices", U1)
    assert os.readlink(dev) == f"../../../devices/virtual/mtty/mtty/{U1}"
    assert os.readlink(f"{dev}/driver") == "../../../../../bus/mdev/drivers/mtty"
    assert os.readlink(f"{dev}/iommu_group") == "../../../../../kernel/iommu_groups/0"
    assert os.readlink(f"{dev}/mdev_type") == "../mdev_supported_types/mtty-2"
    assert os.path.realpath(f"{dev}/iommu_group") == f"{root}/kernel/iommu_groups/0"
    tdev = fake.path("class/mdev_bus/mtty/mdev_supported_types/mtty-2/devices", U1)
    assert os.readlink(tdev) == f"../../../{U1}"
    assert os.path.realpath(tdev) == os.path.realpath(dev)
    assert stat.S_IMODE(os.stat(f"{dev}/remove").st_mode) == 0o200
    assert fake.read(f"{dev}/vendor/sample_mdev_dev") == f"This is MDEV {U1}\n"
    assert fake.read(f"{dev}/uevent") == "DRIVER=mtty\n"
    assert fake.devices() == {U1: MTTY2}
    assert avail(fake, MTTY1, MTTY2) == [22, 11]  # one shared pool of 24 ports


def test_combined_pci_profiles(fakesysfs: Start) -> None:
    fake = fakesysfs(["intel-gvtg", "nvidia-tesla-t4"])
    assert sorted(os.listdir(fake.path("class/mdev_bus"))) == ["0000:00:02.0", "0000:3b:00.0"]
    assert os.readlink(fake.path("bus/pci/devices/0000:00:02.0")) == "../../../devices/pci0000:00/0000:00:02.0"
    assert fake.read("bus/pci/devices/0000:00:02.0/vendor") == "0x8086\n"
    assert fake.read("bus/pci/devices/0000:3b:00.0/vendor") == "0x10de\n"
    gvt = "class/mdev_bus/0000:00:02.0/mdev_supported_types/i915-GVTg_V5_4"
    assert fake.read(f"{gvt}/description").splitlines()[0] == "low_gm_size: 128MB"
    assert fake.read(f"{gvt}/name") == "GVTg_V5_4\n"


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
    assert [create(fake, *MTTY2, new_uuid()) for _ in range(12)] == [0] * 12
    assert create(fake, *MTTY2, new_uuid()) == errno.ENOSPC
    assert create(fake, *MTTY1, new_uuid()) == errno.ENOSPC
    assert avail(fake, MTTY1, MTTY2) == [0, 0]


def test_mdpy_core_counter_is_eusers(fakesysfs: Start) -> None:
    fake = fakesysfs("mdpy-sample")
    kinds = ["mdpy-vga", "mdpy-xga", "mdpy-hd", "mdpy-vga"]
    assert [create(fake, "mdpy", k, new_uuid()) for k in kinds] == [0] * 4
    assert create(fake, "mdpy", "mdpy-hd", new_uuid()) == errno.EUSERS
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
    assert create(fake, vf0, q24, new_uuid()) == profiles.NVIDIA_EXHAUST_ERRNO  # one vGPU per VF
    assert create(fake, vf1, "nvidia-564", new_uuid()) == profiles.NVIDIA_EXHAUST_ERRNO  # one type per GPU
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
    assert [create(fake, "mbochs", "mbochs-large", new_uuid()) for _ in range(5)] == [0] * 4 + [errno.ENOSPC]
    assert avail(fake, ("mbochs", "mbochs-small")) == [0]
    (u,) = list(fake.devices())[:1]
    assert fake.read(f"bus/mdev/devices/{u}/vendor/memory") == "64 MB\n"


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
    create(fake, *MTTY1, new_uuid())
    create(fake, *MTTY1, new_uuid())
    assert fake.creates_overlapping_on_same_parent() == []  # one after the other: no overlap
    barrier = threading.Barrier(2)

    def go() -> None:
        barrier.wait()
        create(fake, *MTTY1, new_uuid())  # the same `create` file: a real sysfs lets both writes run at once

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
    assert create(fake, "mdpy", "mdpy-vga", new_uuid()) == 0  # other parent: not counted
    assert [create(fake, *MTTY1, u) for u in (new_uuid(), U1, new_uuid())] == [0, errno.EIO, 0]
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
            os.write(fd, new_uuid().encode())
        assert e.value.errno == errno.ENODEV  # a create racing the unregistration
    finally:
        os.close(fd)
    assert os.listdir(fake.path("class/mdev_bus")) == ["mdpy"]
    assert fake.devices() == {U2: ("mdpy", "mdpy-vga")}
    assert create(fake, *MTTY1, new_uuid()) == errno.ENOENT
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
    assert [create(fake, "synth3", "synth-1", new_uuid()) for _ in range(32)] == [0] * 32
    assert create(fake, "synth3", "synth-1", new_uuid()) == errno.ENOSPC
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
