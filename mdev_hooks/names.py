"""Validation of the names that reach file paths or error lines: UUIDs, parents, types, attributes, PCI addresses.

Invariant: pure (no I/O); a name that passes is one path component that cannot walk out of its directory.
"""

from __future__ import annotations

import re

from mdev_hooks.errors import HookError

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# parent and type are ONE path component under sysfs: no '/', no '..', nothing a shell or a path walk interprets.
_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
# a device attribute written after create (s390 vfio-ap assign_adapter, ...): one plain file name
_ATTR = re.compile(r"[A-Za-z0-9_]{1,64}")
NOT_ATTRS = ("remove", "uevent")  # files every mdev has that are not attributes to set
MAX_ATTR_VALUE = 256

MAX_SHOWN = 80  # hostile names are cut in error messages so the one-line error stays readable


def shown(value: str) -> str:
    """A printable, bounded rendering of untrusted text for error lines."""
    text = value if len(value) <= MAX_SHOWN else value[:MAX_SHOWN] + "..."
    return repr(text) if not text.isprintable() or not text or " " in text else text


def canonical_uuid(value: str, what: str) -> str:
    """The lower-case canonical form of a UUID, or HookError naming ``what`` it was."""
    if not _UUID.fullmatch(value):
        raise HookError(f"{what} {shown(value)} is not a UUID in canonical form (8-4-4-4-12 hex digits)")
    return value.lower()


def is_valid_name(value: str) -> bool:
    return bool(_NAME.fullmatch(value)) and value not in (".", "..")


def check_name(value: str, what: str, mdev: str) -> str:
    if not is_valid_name(value):
        raise HookError(
            f"mdev {mdev}: {what} {shown(value)} is not a valid name "
            f"(one path component of letters, digits and _.:-, e.g. 0000:00:02.0 or nvidia-231)"
        )
    return value


def is_valid_attr(value: str) -> bool:
    return bool(_ATTR.fullmatch(value)) and value not in NOT_ATTRS


def check_attr(name: str, value: str, mdev: str) -> tuple[str, str]:
    """An ``<attr name= value=>`` of a device: a plain file name (not remove/uevent), a bounded printable value."""
    if not is_valid_attr(name):
        raise HookError(
            f"mdev {mdev}: attribute name {shown(name)} is not valid (a file name of letters, digits and _, "
            f"not {' or '.join(NOT_ATTRS)}, e.g. assign_adapter)"
        )
    if not 1 <= len(value) <= MAX_ATTR_VALUE or not value.isascii() or not value.isprintable():
        raise HookError(
            f"mdev {mdev}: attribute {name} value {shown(value)} is not valid (1 to {MAX_ATTR_VALUE} printable "
            "ASCII characters)"
        )
    return name, value


_VGPU_TYPE = re.compile(r"[1-9][0-9]{0,9}")
_PCI_ADDR = re.compile(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]")


def check_vgpu_type(value: str, what: str) -> str:
    """An NVIDIA vGPU type id for nvidia/current_vgpu_type: a positive decimal number (0 means "none")."""
    if not _VGPU_TYPE.fullmatch(value):
        raise HookError(f"{what}: type {shown(value)} is not a vGPU type id (a positive number from the VF's "
                        "nvidia/creatable_vgpu_types, e.g. 1428)")
    return value


def pci_address(domain: str, bus: str, slot: str, function: str) -> str | None:
    """libvirt's <address domain= bus= slot= function=> (hex with 0x, or decimal, as libvirt reads it) as sysfs
    names the device (DDDD:BB:SS.F, lower-case hex); None if it is not a valid PCI address."""
    try:
        parts = [int(v, 16) if v.lower().startswith("0x") else int(v, 10) for v in (domain, bus, slot, function)]
    except ValueError:
        return None
    dom, b, s, f = parts
    if not (0 <= dom <= 0xFFFF and 0 <= b <= 0xFF and 0 <= s <= 0x1F and 0 <= f <= 7):
        return None
    return f"{dom:04x}:{b:02x}:{s:02x}.{f:x}"


def is_pci_address(value: str) -> bool:
    return bool(_PCI_ADDR.fullmatch(value))
