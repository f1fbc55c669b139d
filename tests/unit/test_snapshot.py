"""fakesysfs.snapshot: the static copy holds the fake's layout, links and numbers, as a plain directory."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from fakesysfs.snapshot import materialize, materialize_cached
from support.host import MakeHost
from support.ids import GVT, GVT_V54, GVT_V58, H200_1414, H200_1428, MTTY, MTTY_1, MTTY_2, PF, U1, U2, VF0, VF1


def read(root: Path, rel: str) -> str:
    return (root / rel).read_text().strip()


def test_parent_and_type_layout_with_the_kernels_links(tmp_path: Path) -> None:
    root = materialize(["mtty-sample", "intel-gvtg"], tmp_path / "sys")
    link = root / "class" / "mdev_bus" / MTTY
    assert link.is_symlink() and os.readlink(link) == "../../devices/virtual/mtty/mtty"
    tdir = link / "mdev_supported_types" / MTTY_2
    assert read(tdir, "name") == "Dual port serial" and read(tdir, "device_api") == "vfio-pci"
    assert read(tdir, "available_instances") == "12"
    create = tdir / "create"
    assert stat.S_IMODE(create.stat().st_mode) == 0o200 and create.stat().st_size == 0  # write-only, like sysfs
    assert read(root, f"class/mdev_bus/{GVT}/vendor") == "0x8086"
    assert (root / "bus" / "pci" / "devices" / GVT).resolve() == (root / "class" / "mdev_bus" / GVT).resolve()
    assert not (root / ".fake-control").exists()  # the fake's hidden control file is not copied


def test_existing_devices_follow_the_fakes_capacity_model(tmp_path: Path) -> None:
    root = materialize(["mtty-sample", "intel-gvtg"], tmp_path / "sys", [(U1, MTTY, MTTY_2), (U2, GVT, GVT_V58)])
    dev = root / "bus" / "mdev" / "devices" / U1
    assert dev.resolve() == (root / "devices" / "virtual" / "mtty" / "mtty" / U1).resolve()
    assert (dev / "mdev_type").resolve().name == MTTY_2
    types = root / "class" / "mdev_bus" / MTTY / "mdev_supported_types"
    assert (read(types, f"{MTTY_2}/available_instances"), read(types, f"{MTTY_1}/available_instances")) == ("11", "22")
    assert os.listdir(types / MTTY_2 / "devices") == [U1]
    gvt = root / "class" / "mdev_bus" / GVT / "mdev_supported_types"
    assert read(gvt, f"{GVT_V54}/available_instances") == "0"  # one pool: a V5_8 leaves no room for a V5_4


def test_sriov_links_and_vendor_vgpu_files(tmp_path: Path) -> None:
    root = materialize(["nvidia-h200x-vendor-vfio"], tmp_path / "sys", vgpus={VF0: H200_1414})
    pci = root / "bus" / "pci" / "devices"
    assert (pci / PF / "virtfn0").resolve() == (pci / VF0).resolve()
    assert (pci / VF1 / "physfn").resolve() == (pci / PF).resolve()
    assert read(pci, f"{VF0}/nvidia/current_vgpu_type") == H200_1414
    assert read(pci, f"{VF1}/nvidia/current_vgpu_type") == "0"
    creatable = read(pci, f"{VF1}/nvidia/creatable_vgpu_types").splitlines()
    assert creatable[0].startswith("ID") and [c.split(":")[0].strip() for c in creatable[1:]] == [H200_1414]
    assert not (root / "class" / "mdev_bus").exists() or os.listdir(root / "class" / "mdev_bus") == []


def test_refused_vgpu_type_and_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(OSError):  # the fake's own rule: one whole-GPU type and a 1414 do not fit together
        materialize(["nvidia-h200x-vendor-vfio"], tmp_path / "a", vgpus={VF0: H200_1428, VF1: H200_1414})
    with pytest.raises(ValueError, match="no type"):
        materialize(["mtty-sample"], tmp_path / "b", available={(MTTY, "mtty-9"): 1})
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x").write_text("")
    with pytest.raises(ValueError, match="not empty"):
        materialize(["mtty-sample"], tmp_path / "c")


def test_available_override(tmp_path: Path) -> None:
    root = materialize(["intel-gvtg"], tmp_path / "sys", available={(GVT, GVT_V58): 0})
    types = root / "class" / "mdev_bus" / GVT / "mdev_supported_types"
    assert read(types, f"{GVT_V58}/available_instances") == "0"
    assert read(types, f"{GVT_V54}/available_instances") == "1"


def test_a_shared_host_cannot_be_changed(shared_host: MakeHost) -> None:
    h = shared_host(["mtty-sample"])
    with pytest.raises(RuntimeError, match="shared"):
        h.claim(U1, "5909df77-0544-4c25-b292-6027c2468ce1", "vm", MTTY, MTTY_1)
    with pytest.raises(RuntimeError, match="shared"):
        h.write_config('allowed_parents = ["x"]')
    assert list(h.state_dir.iterdir()) == [] and "allowed_parents" not in h.config.read_text()


def test_cached_tree_is_built_once_per_spec_and_stale_ones_go(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = materialize_cached(["mtty-sample"], cache)
    marker = first / "marker"
    marker.write_text("")  # a rebuild would lose it
    assert materialize_cached(["mtty-sample"], cache) == first and marker.exists()
    other = materialize_cached(["mtty-sample"], cache, [(U1, MTTY, MTTY_1)])
    assert other != first and (other / "bus" / "mdev" / "devices" / U1).is_symlink()
    old = cache / "0000-old"
    old.mkdir()
    os.utime(old, (0, 0))
    materialize_cached(["intel-gvtg"], cache)
    assert not old.exists() and first.exists()
    assert sorted(p.name.startswith(".") for p in cache.iterdir()) == [False, False, False]  # no build dir left
