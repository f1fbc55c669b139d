"""NVIDIA vGPU 17+ VFs (kind nvidia_vf) of the fake's H200X profile as the tests use them: domain XML, what the
hook wrote, what a VF holds (ids: support.ids).

Invariant: reads only what the fake shows (its journal and VF files); writes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from support.domxml import PciHostdev, VgpuEntry, domain_xml, hostdev_xml


def pci_hostdev(addr: str, managed: str = "yes") -> str:
    """A managed PCI `<hostdev>` on a VF address (support.domxml's element)."""
    return hostdev_xml(PciHostdev(addr, managed))


def vf_xml(name: str, dom: str, entries: Sequence[tuple[str, str]], hostdevs: Sequence[str], prefixed: bool = True,
           managed: str = "yes", extra_meta: str = "") -> bytes:
    """A domain (support.domxml's builder) with PCI hostdevs (VF addresses) and kind="nvidia-vf" entries (parent,
    type); extra_meta: raw XML after the entries (prefix `mdev:`). Our metadata element is always there."""
    items = [VgpuEntry(p, t) for p, t in entries] + [PciHostdev(a, managed) for a in hostdevs]
    return domain_xml(name, dom, items, prefixed=prefixed, metadata=True, extra_metadata=extra_meta)


def vgpu_writes(fs: Any) -> list[tuple[str, str, str]]:
    """(VF, data written, result) of every write the hook made to a current_vgpu_type file (not the test's own)."""
    return [(e["parent"], e["data"], e["result"]) for e in fs.journal()
            if e.get("actor") == "user" and e["pid"] != os.getpid() and e["path"].endswith("nvidia/current_vgpu_type")]


def current(fs: Any, vf: str) -> str:
    return str(fs.read(f"bus/pci/devices/{vf}/nvidia/current_vgpu_type")).strip()


def creatable(fs: Any, vf: str) -> list[str]:
    lines = str(fs.read(f"bus/pci/devices/{vf}/nvidia/creatable_vgpu_types")).splitlines()
    return [line.split(":")[0].strip() for line in lines[1:]]
