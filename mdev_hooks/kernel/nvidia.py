"""NVIDIA's vendor-specific vGPU interface (vGPU 17+, kernel >= 6.8; not mdev): a VF's ``nvidia/`` files.

Invariant: the only file written is ``bus/pci/devices/<VF>/nvidia/current_vgpu_type``, one write() of a type id
(``0`` clears), under the root.
"""

from __future__ import annotations

import errno
import os

from mdev_hooks.kernel.pci import PciFiles, pci_order
from mdev_hooks.kernel.root import read_text, readout, write_once
from mdev_hooks.names import is_valid_name


class NvidiaFiles(PciFiles):
    def vgpu_file(self, vf: str, name: str) -> str | None:
        pdir = self.pci_dir(vf)
        if pdir is None:
            return None
        path = os.path.join(pdir, "nvidia", name)
        return self.inside(path) if os.path.lexists(path) else None

    @readout(False)
    def takes_vgpu_type(self, vf: str) -> bool:
        """True if a vGPU type can be set on `vf` now: it has nvidia/current_vgpu_type (a VF bound to the nvidia
        driver). The question the nvidia_vf kind asks of the VF it writes."""
        return self.vgpu_file(vf, "current_vgpu_type") is not None

    @readout(False)
    def on_nvidia_vendor_interface(self, name: str) -> bool:
        """True if `name` is a VF of NVIDIA's vendor-specific vGPU interface (it lists nvidia/creatable_vgpu_types,
        whatever driver holds it now) or the PF of one: not an mdev parent, whatever else it is. The question the
        mdev kind asks of a parent it cannot find."""
        return any(self.vgpu_file(dev, "creatable_vgpu_types") for dev in (name, *self.vfs(name)))

    def current_vgpu_type(self, vf: str) -> str | None:
        """The vGPU type id set on a VF ("0": none), None if the VF has no such file (gone, or not bound to nvidia)."""
        path = self.vgpu_file(vf, "current_vgpu_type")
        return None if path is None else read_text(path)

    @readout(None)
    def creatable_vgpu_types(self, vf: str) -> dict[str, str] | None:
        """The type ids (-> names) the VF can take NOW (the list shrinks as the GPU fills), None if unreadable.
        Format: a header line ``ID    : vGPU Name``, then ``<id> : <name>`` lines."""
        path = self.vgpu_file(vf, "creatable_vgpu_types")
        if path is None:
            return None
        found: dict[str, str] = {}
        for line in read_text(path).splitlines():
            tid, sep, name = line.partition(":")
            if sep and tid.strip().isdigit():
                found[tid.strip()] = name.strip()
        return found

    @readout([])
    def vgpu_vfs(self) -> list[str]:
        """Every PCI device with nvidia/current_vgpu_type, in address order (for status)."""
        names = os.listdir(self.path("bus", "pci", "devices"))
        return sorted((n for n in names if is_valid_name(n) and self.takes_vgpu_type(n)), key=pci_order)

    def set_vgpu_type(self, vf: str, type_id: str) -> None:
        """One write() of the id ("0" clears), no newline, as NVIDIA's vgpu-device-manager writes it."""
        path = self.vgpu_file(vf, "current_vgpu_type")
        if path is None:
            raise FileNotFoundError(errno.ENOENT, "no nvidia/current_vgpu_type (not bound to nvidia?)", vf)
        write_once(path, type_id.encode("ascii"))
