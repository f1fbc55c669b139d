"""NVIDIA vGPU 17+ VFs of the fake's H200X profile as the tests use them: ids, domain XML, what the hook wrote.

Invariant: reads only what the fake shows (its journal and VF files); writes nothing.
"""

from __future__ import annotations

import os
from typing import Any

PF = "0000:41:00.0"
VF0, VF1, VF2, VF3 = "0000:41:00.4", "0000:41:00.5", "0000:41:00.6", "0000:41:00.7"
FULL, SLICE = "1428", "1414"  # NVIDIA H200X-141C (one per GPU), NVIDIA H200X-1-18C (7 per GPU)


def pci_hostdev(addr: str, managed: str = "yes") -> str:
    dom, bus, rest = addr.split(":")
    slot, fn = rest.split(".")
    return (f"<hostdev mode='subsystem' type='pci' managed='{managed}'><source>"
            f"<address domain='0x{dom}' bus='0x{bus}' slot='0x{slot}' function='0x{fn}'/></source></hostdev>")


def vf_xml(name: str, dom: str, entries: list[tuple[str, str]], hostdevs: list[str], prefixed: bool = True,
           managed: str = "yes", extra_meta: str = "") -> bytes:
    """A domain with managed PCI hostdevs (VF addresses) and kind="nvidia-vf" entries (parent, type)."""
    p = "mh:" if prefixed else ""
    meta = "".join(f'<{p}device kind="nvidia-vf" parent="{par}" type="{t}"/>' for par, t in entries)
    devs = "".join(pci_hostdev(a, managed) for a in hostdevs)
    return f"""<domain type='kvm'><name>{name}</name><uuid>{dom}</uuid>
  <metadata><mh:mdevs xmlns:mh="urn:mdev-hooks:domain:1">{meta}{extra_meta}</mh:mdevs></metadata>
  <devices>{devs}</devices></domain>""".encode()


def vgpu_writes(fs: Any) -> list[tuple[str, str, str]]:
    """(VF, data written, result) of every write the hook made to a current_vgpu_type file (not the test's own)."""
    return [(e["parent"], e["data"], e["result"]) for e in fs.journal()
            if e.get("actor") == "user" and e["pid"] != os.getpid() and e["path"].endswith("nvidia/current_vgpu_type")]


def current(fs: Any, vf: str) -> str:
    return str(fs.read(f"bus/pci/devices/{vf}/nvidia/current_vgpu_type")).strip()


def creatable(fs: Any, vf: str) -> list[str]:
    lines = str(fs.read(f"bus/pci/devices/{vf}/nvidia/creatable_vgpu_types")).splitlines()
    return [line.split(":")[0].strip() for line in lines[1:]]
