"""Host profiles and the capacity model of the fake: pure data and functions, no I/O besides loading JSON.

``profiles.json`` is a verbatim copy of shared/reference/sysfs-profiles.json; everything the fake needs beyond it
(PCI ids, exhaustion errnos, paths the JSON leaves out) lives here so that the copy stays a copy.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

PROFILES_FILE = Path(__file__).with_name("profiles.json")

# Conflict models (kernel-mdev-abi.md §5.2).
EXCLUSIVE = "exclusive-per-parent"
SRIOV_EXCLUSIVE = "sriov-vf-single+exclusive-per-pf"
COUNTER = "shared-parent-counter"
POOL = "shared-resource-pool"
SRIOV_CAPACITY = "sriov-vf-single+capacity-per-pf"

VENDOR_VFIO = "nvidia-vendor-vfio"
PCI_VENDOR = {"nvidia": "0x10de", "i915": "0x8086"}
# Illustrative PCI device ids (T4, A40, H200 SXM, UHD 630): the hook only ever looks at the vendor.
PCI_DEVICE = {
    "nvidia-tesla-t4": "0x1eb8",
    "nvidia-a40-sriov": "0x2235",
    "nvidia-h200x-vendor-vfio": "0x2335",
    "intel-gvtg": "0x3e92",
    "intel-gvtg-1g-aperture": "0x3e92",
}
# The H200X profile gives no paths; put its PF and VFs where the A40 profile puts its own.
DEFAULT_PCI_BRIDGE = "/devices/pci0000:40/0000:40:01.1"
# Closed NVIDIA driver: the errno on exhaustion is unverified (kernel-mdev-abi.md §6). EINVAL is our pick, so a hook
# that reads EINVAL as "bad UUID" gets caught; control command exhaust_errno changes it per parent.
NVIDIA_EXHAUST_ERRNO = errno.EINVAL


@dataclass(frozen=True)
class TypeSpec:
    id: str
    name: str
    description: str | None
    device_api: str
    max_instances: int
    max_instances_per_pf: int | None = None
    consumes: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ParentSpec:
    name: str
    profile: str
    interface: str  # "mdev" or VENDOR_VFIO
    bus: str
    driver: str | None
    path: str  # below the sysfs root, e.g. /devices/virtual/mtty/mtty
    mdev_driver: str | None
    conflicts: str
    types: tuple[TypeSpec, ...]
    pool: Mapping[str, int] = field(default_factory=dict)
    physfn: str | None = None
    attributes: tuple[str, ...] = ()
    pci_vendor: str | None = None
    pci_device: str | None = None

    def type(self, type_id: str) -> TypeSpec | None:
        return next((t for t in self.types if t.id == type_id), None)

    @property
    def counter(self) -> int:
        """Initial value of the mdev core's per-parent counter (all types report the same)."""
        return max(t.max_instances for t in self.types)

    @property
    def is_nvidia(self) -> bool:
        return self.pci_vendor == PCI_VENDOR["nvidia"]


@dataclass(frozen=True)
class PfSpec:
    name: str
    profile: str
    path: str
    driver: str | None
    vfs: tuple[str, ...]
    total_vfs: int
    pci_vendor: str | None
    pci_device: str | None


@dataclass(frozen=True)
class Host:
    parents: Mapping[str, ParentSpec]
    pfs: Mapping[str, PfSpec]

    def siblings(self, parent: ParentSpec) -> list[ParentSpec]:
        """All VFs of the parent's PF (itself included); just the parent when it is no VF."""
        if parent.physfn is None:
            return [parent]
        return [p for p in self.parents.values() if p.physfn == parent.physfn]


def load_raw(path: Path = PROFILES_FILE) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in json.loads(path.read_text())}


def _first_word(value: str | None) -> str | None:
    # the JSON annotates driver names ("nvidia-vgpu-vfio (out-of-tree; ...)"): keep the name itself
    return value.split()[0] if value else None


def _type(raw: Mapping[str, Any]) -> TypeSpec:
    return TypeSpec(
        id=raw["id"],
        name=raw["name"],
        description=raw.get("description"),
        device_api=raw["device_api"],
        max_instances=raw["max_instances"],
        max_instances_per_pf=raw.get("max_instances_per_pf"),
        consumes=dict(raw.get("consumes") or {}),
    )


def _parents_of(raw: Mapping[str, Any]) -> tuple[list[ParentSpec], PfSpec | None]:
    name = raw["name"]
    vendor_vfio = raw["kernel_interface"] == VENDOR_VFIO
    parents = []
    for p in raw["parents"]:
        types = tuple(_type(t) for t in p["types"])
        conflicts = {t["conflicts"] for t in p["types"]}
        if len(conflicts) != 1:
            raise ValueError(f"profile {name}: parent {p['name']} mixes conflict models {sorted(conflicts)}")
        driver = p.get("driver")
        parents.append(
            ParentSpec(
                name=p["name"],
                profile=name,
                interface=raw["kernel_interface"],
                bus=p.get("bus", "virtual"),
                driver=driver,
                path=(p.get("sysfs_path") or f"/sys{DEFAULT_PCI_BRIDGE}/{p['name']}").removeprefix("/sys"),
                mdev_driver=None if vendor_vfio else _first_word(p.get("mdev_driver")) or p["name"],
                conflicts=conflicts.pop(),
                types=types,
                pool=dict(p.get("pool") or {}),
                physfn=p.get("physfn"),
                attributes=tuple(p.get("mdev_device_attributes") or ()),
                pci_vendor=PCI_VENDOR.get(driver or "") if p.get("bus") == "pci" else None,
                pci_device=PCI_DEVICE.get(name) if p.get("bus") == "pci" else None,
            )
        )
    pf = None
    if raw.get("pf"):
        r = raw["pf"]
        vfs = tuple(p.name for p in parents if p.physfn == r["name"])
        bridge = parents[0].path.rsplit("/", 1)[0]
        pf = PfSpec(
            name=r["name"],
            profile=name,
            path=f"{bridge}/{r['name']}",
            driver=r.get("driver"),
            vfs=vfs,
            total_vfs=r.get("sriov_totalvfs", len(vfs)),
            pci_vendor=PCI_VENDOR.get(r.get("driver") or ""),
            pci_device=PCI_DEVICE.get(name),
        )
    return parents, pf


def synthetic_parents(count: int, instances: int) -> list[ParentSpec]:
    """mtty-like parents synth0..synthN-1, each with one type synth-1 of `instances` (ENOSPC when used up)."""
    t = TypeSpec(
        id="synth-1",
        name="Synthetic mdev",
        description=None,
        device_api="vfio-pci",
        max_instances=instances,
        consumes={"slots": 1},
    )
    return [
        ParentSpec(
            name=f"synth{i}",
            profile="synthetic",
            interface="mdev",
            bus="virtual",
            driver=None,
            path=f"/devices/virtual/synth/synth{i}",
            mdev_driver="synth",
            conflicts=POOL,
            types=(t,),
            pool={"slots": instances},
        )
        for i in range(count)
    ]


def build_host(
    profiles: Iterable[str],
    synthetic: int = 0,
    synthetic_instances: int = 32,
    raw: Mapping[str, Mapping[str, Any]] | None = None,
) -> Host:
    """Merge profiles (and synthetic parents) into one host; two profiles may not claim one device."""
    raw = load_raw() if raw is None else raw
    parents: dict[str, ParentSpec] = {}
    pfs: dict[str, PfSpec] = {}
    paths: dict[str, str] = {}
    found: list[ParentSpec] = []
    for name in profiles:
        if name not in raw:
            raise ValueError(f"unknown profile {name!r}; known: {', '.join(sorted(raw))}")
        ps, pf = _parents_of(raw[name])
        found += ps
        if pf is not None:
            if pf.name in pfs or pf.path in paths:
                raise ValueError(f"profile {name}: PF {pf.name} ({pf.path}) is defined twice")
            pfs[pf.name] = pf
            paths[pf.path] = name
    found += synthetic_parents(synthetic, synthetic_instances)
    for p in found:
        if p.name in parents or p.path in paths or p.name in pfs:
            raise ValueError(f"profile {p.profile}: device {p.name} ({p.path}) is defined twice")
        parents[p.name] = p
        paths[p.path] = p.profile
    return Host(parents=parents, pfs=pfs)


def _fits(pool: Mapping[str, int], used: Mapping[str, int], need: Mapping[str, int]) -> int:
    return min((pool.get(k, 0) - used.get(k, 0)) // n for k, n in need.items() if n > 0)


def available(host: Host, live: Mapping[str, Sequence[str]], parent_name: str, type_id: str) -> int:
    """available_instances of (parent, type), given the type ids live (or being created/removed) per parent."""
    parent = host.parents[parent_name]
    t = parent.type(type_id)
    if t is None:
        return 0
    mine = list(live.get(parent_name, ()))
    if parent.conflicts == EXCLUSIVE:
        return 0 if any(x != type_id for x in mine) else max(0, t.max_instances - len(mine))
    if parent.conflicts == COUNTER:
        return max(0, parent.counter - len(mine))
    if parent.conflicts == POOL:
        used: dict[str, int] = {}
        for x in mine:
            xt = parent.type(x)
            for k, n in (xt.consumes if xt else {}).items():
                used[k] = used.get(k, 0) + n
        return max(0, _fits(parent.pool, used, t.consumes))
    if parent.conflicts in (SRIOV_EXCLUSIVE, SRIOV_CAPACITY):
        if mine:
            return 0
        on_pf = [x for p in host.siblings(parent) for x in live.get(p.name, ())]
        if parent.conflicts == SRIOV_EXCLUSIVE:
            cap = t.max_instances_per_pf or 1
            return int(all(x == type_id for x in on_pf) and on_pf.count(type_id) < cap)
        # Assumption (kernel-mdev-abi.md §5.3): each vGPU takes 1/max_instances_per_pf of the GPU.
        share = sum((Fraction(1, _per_pf(parent, x)) for x in on_pf), Fraction(0))
        return int(share + Fraction(1, _per_pf(parent, type_id)) <= 1)
    raise ValueError(f"parent {parent_name}: unknown conflict model {parent.conflicts!r}")


def _per_pf(parent: ParentSpec, type_id: str) -> int:
    t = parent.type(type_id)
    return (t.max_instances_per_pf if t else None) or 1


def exhaust_errno(parent: ParentSpec) -> int:
    """Errno of a create that finds no instance left (kernel-mdev-abi.md §2.2, 6.1+)."""
    if parent.conflicts == COUNTER:
        return errno.EUSERS  # mdev core counter: mdpy, vfio-ap, vfio-ccw
    if parent.conflicts == POOL:
        return errno.ENOSPC  # drivers that count themselves: mtty, mbochs, GVT-g
    return NVIDIA_EXHAUST_ERRNO
