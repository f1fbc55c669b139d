"""What the kernel's errnos mean for each write the hook makes: names, texts and the hints of the error lines.

Invariant: one table per write (create, attribute, remove, vGPU type); every error line takes its words from here.
"""

from __future__ import annotations

import errno

# "no instance left" differs per driver and kernel version (kernel-mdev-abi.md §2.2): never assume one errno
EXHAUSTED = frozenset({errno.EUSERS, errno.ENOSPC, errno.EPERM, errno.ENOMEM})
TRANSIENT = frozenset({errno.EAGAIN, errno.EBUSY})


def name(e: OSError) -> str:
    """The errno's symbolic name (ENOSPC), or its number."""
    return errno.errorcode.get(e.errno or 0, str(e.errno))


def text(e: OSError) -> str:
    """``No space left on device (ENOSPC)``: the kernel's words and the name."""
    return f"{e.strerror or 'error'} ({name(e)})"


CREATE_HINTS = {
    errno.EEXIST: "a device with this UUID appeared meanwhile (another tool or VM?); check `mdev-hooks status`",
    errno.ENODEV: "the parent is being unregistered or is not operational",
    errno.ENOENT: "the parent or type disappeared meanwhile",
    errno.EAGAIN: "the driver is busy; retry the start",
    errno.EBUSY: "the driver is busy; retry the start",
    errno.EIO: "the driver failed; see dmesg",
}

ATTR_HINTS = {
    errno.ENODEV: "the id is above the host's maximum, or the device went away",
    errno.EBUSY: "already in use by another mdev (s390: an APQN belongs to one mdev only), or the driver is busy",
    errno.EADDRNOTAVAIL: "not reserved for this driver (s390 vfio-ap: /sys/bus/ap/apmask and aqmask)",
    errno.EINVAL: "the driver refused the value",
    errno.ERANGE: "the value is out of range",
}

REMOVE_HINTS = {
    errno.EAGAIN: "still being created or in use after retrying for remove_timeout",
    errno.EBUSY: "still in use (a VFIO user?) after retrying for remove_timeout",
    errno.ENODEV: "its parent is being unregistered",
    errno.EIO: "the driver failed; see dmesg",
}

VGPU_HINTS = {
    errno.EINVAL: "the driver refused the type (not creatable on this VF now: the GPU is full or holds another "
                  "type)",
    errno.EBUSY: "the VF already has a vGPU type, or the driver is busy",
    errno.ENOENT: "the VF is no longer bound to the nvidia driver",
    errno.ENODEV: "the VF is going away",
}


def hint(table: dict[int, str], e: OSError, default: str = "see dmesg") -> str:
    return table.get(e.errno or 0, default)
