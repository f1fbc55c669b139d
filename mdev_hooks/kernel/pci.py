"""PCI functions under the root: whether a device exists, SR-IOV links between a PF and its VFs, address order.

Invariant: reads only, and only under the root; every link followed must resolve inside it.
"""

from __future__ import annotations

import os

from mdev_hooks.kernel.root import SysRoot, readout
from mdev_hooks.names import is_valid_name


def pci_order(name: str) -> tuple[int, ...] | tuple[int, str]:
    """Sort key of PCI addresses (DDDD:BB:DD.F, hex) in address order; other names after them, by name."""
    try:
        dom, bus, rest = name.split(":")
        dev, fn = rest.split(".")
        return (0, int(dom, 16), int(bus, 16), int(dev, 16), int(fn, 16))
    except ValueError:
        return (1, name)


class PciFiles(SysRoot):
    def pci_dir(self, name: str) -> str | None:
        """The real directory of bus/pci/devices/<name>, None if there is none."""
        return self.resolve("bus", "pci", "devices", name) if is_valid_name(name) else None

    @readout(False)
    def is_pci_device(self, name: str) -> bool:
        return self.pci_dir(name) is not None

    @readout([])
    def vfs(self, pf: str) -> list[str]:
        """The VFs of a PCI physical function (its virtfnN links), in PCI address order; [] if it has none."""
        pdir = self.pci_dir(pf)
        if pdir is None:
            return []
        found = set()
        for link in os.listdir(pdir):
            if not (link.startswith("virtfn") and link[6:].isdigit()):
                continue
            try:
                name = os.path.basename(self.inside(os.path.join(pdir, link)))
            except OSError:
                continue
            if is_valid_name(name):
                found.add(name)
        return sorted(found, key=pci_order)

    @readout(None)
    def physfn(self, name: str) -> str | None:
        """The PF of a PCI virtual function (its physfn link), None for anything else."""
        pdir = self.pci_dir(name)
        if pdir is None or not os.path.lexists(os.path.join(pdir, "physfn")):
            return None
        pf = os.path.basename(self.inside(os.path.join(pdir, "physfn")))
        return pf if is_valid_name(pf) else None
