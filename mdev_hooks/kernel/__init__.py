"""The kernel's files under a configurable root, as one object: the mdev core, PCI links, NVIDIA's vendor files.

Invariant: speaks OSError, never policy (the convention is in root.py); nothing outside the root is touched.
"""

from __future__ import annotations

from mdev_hooks.kernel.mdev import MdevDevice, MdevFiles, TypeInfo
from mdev_hooks.kernel.nvidia import NvidiaFiles
from mdev_hooks.kernel.pci import pci_order
from mdev_hooks.kernel.root import OutsideRoot, write_once

__all__ = ["MdevDevice", "OutsideRoot", "Sysfs", "TypeInfo", "pci_order", "write_once"]


class Sysfs(MdevFiles, NvidiaFiles):
    """All of kernel/ over one root: `Sysfs(cfg.sysfs_root)`."""
