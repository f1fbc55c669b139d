"""The fake kernel behaves like the real one (real-kernel-e2e.md §4.3, kernel-mdev-abi.md §5) through real syscalls:
its capacity model and profiles, and the sysfs layout it mounts.
"""

from __future__ import annotations

import errno
import os
import stat

import pytest
from fakesysfs import parse, profiles
from fakesysfs.journal import overlapping_creates
from support.fakeio import MTTY1, MTTY2, Start, avail, create
from support.ids import U1

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
