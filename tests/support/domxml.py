"""The one builder of libvirt domain XML for the tests (unit, FUSE and libvirt tiers; the helpers hookrun,
nvidia_vf, attrxml and tests/libvirt/lvlab wrap it): managed/unmanaged mdev hostdevs, metadata entries (namespaced
or plain), `<attr>` children, kind="nvidia-vf" entries and managed PCI hostdevs.

Invariant: the output looks like `virsh dumpxml` (libvirt's attribute order, hex PCI addresses, single quotes) and
holds exactly the entries and hostdevs the arguments list, in their order; nothing is added on the caller's behalf.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

NS = "urn:mdev-hooks:domain:1"


@dataclass(frozen=True)
class Mdev:
    """An mdev hostdev and/or its metadata entry.

    hostdev: "yes" (managed='yes'), "no" (managed='no'), or None (no hostdev: an unused metadata entry).
    entry: whether the metadata has a `<device uuid= parent= type=>` for it (False: a managed hostdev without
    metadata, e.g. one mdevctl defines)."""

    uuid: str
    parent: str = ""
    type: str = ""
    attrs: tuple[tuple[str, str], ...] = ()
    hostdev: str | None = "yes"
    entry: bool = True
    model: str = "vfio-pci"
    display: str = "off"  # "": no display attribute (as a hand-written hostdev may leave it)
    raw: bool = False  # the entry's values are XML text already (e.g. `1&#10;2`, a character reference), not escaped


@dataclass(frozen=True)
class VgpuEntry:
    """A `<device kind="nvidia-vf" parent= type=/>` metadata entry (no hostdev: see PciHostdev)."""

    parent: str
    type: str


@dataclass(frozen=True)
class PciHostdev:
    """A `<hostdev type='pci'>` on a PCI address given as sysfs names it (DDDD:BB:SS.F)."""

    address: str
    managed: str = "yes"


def mdev(uuid: str, parent: str, type_: str, *attrs: tuple[str, str]) -> Mdev:
    """A managed mdev hostdev with its metadata entry (and <attr> children in this order)."""
    return Mdev(uuid, parent, type_, tuple(attrs))


def unmanaged(uuid: str) -> Mdev:
    """A managed='no' mdev hostdev and no metadata entry: the user's own device."""
    return Mdev(uuid, hostdev="no", entry=False)


def no_metadata(uuid: str) -> Mdev:
    """A managed='yes' mdev hostdev with no metadata entry."""
    return Mdev(uuid, entry=False)


def unused_entry(uuid: str, parent: str, type_: str) -> Mdev:
    """A metadata entry with no hostdev."""
    return Mdev(uuid, parent, type_, hostdev=None)


def pci_address(address: str) -> str:
    """libvirt's <address> of a PCI device: domain='0x0000' bus='0x41' slot='0x00' function='0x4'."""
    dom, bus, rest = address.split(":")
    slot, fn = rest.split(".")
    return f"<address domain='0x{dom}' bus='0x{bus}' slot='0x{slot}' function='0x{fn}'/>"


def _entry(item: Mdev | VgpuEntry, p: str) -> str:
    if isinstance(item, VgpuEntry):
        return f"<{p}device kind=\"nvidia-vf\" parent={quoteattr(item.parent)} type={quoteattr(item.type)}/>"
    def q(value: str) -> str:
        return f'"{value}"' if item.raw else quoteattr(value)

    head = f"<{p}device uuid={q(item.uuid)} parent={q(item.parent)} type={q(item.type)}"
    if not item.attrs:
        return head + "/>"
    attrs = "".join(f"<{p}attr name={q(n)} value={q(v)}/>" for n, v in item.attrs)
    return f"{head}>{attrs}</{p}device>"


def hostdev_xml(item: Mdev | PciHostdev) -> str:
    """One `<hostdev>` element: an mdev one (by UUID) or a PCI one (by address)."""
    if isinstance(item, PciHostdev):
        return (f"<hostdev mode='subsystem' type='pci' managed='{item.managed}'>"
                f"<source>{pci_address(item.address)}</source></hostdev>")
    display = f" display='{item.display}'" if item.display else ""
    return (f"<hostdev mode='subsystem' type='mdev' managed='{item.hostdev}' model='{item.model}'{display}>"
            f"<source><address uuid='{item.uuid}'/></source></hostdev>")


def metadata_element(items: Sequence[Mdev | VgpuEntry | PciHostdev], *, prefixed: bool = True,
                     extra_metadata: str = "") -> str:
    """Our `<mdev:mdevs>` element with the entries of `items`. prefixed: entries are `<mdev:device>` (what
    `virsh metadata --set` writes) or plain `<device>` (hand-written). extra_metadata: raw XML after the entries."""
    p = "mdev:" if prefixed else ""
    entries = "".join(_entry(i, p) for i in items
                      if isinstance(i, VgpuEntry) or (isinstance(i, Mdev) and i.entry))
    return f"<mdev:mdevs xmlns:mdev=\"{NS}\">{entries}{extra_metadata}</mdev:mdevs>"


def domain_xml(name: str, uuid: str, items: Sequence[Mdev | VgpuEntry | PciHostdev] = (), *, prefixed: bool = True,
               metadata: bool | None = None, extra_metadata: str = "", raw_metadata: str = "",
               domain_type: str = "kvm", machine: str = "pc-i440fx-7.2", devices_tail: str = "") -> bytes:
    """The domain XML. prefixed, extra_metadata: see metadata_element. metadata: force our metadata element on
    (True) or off (False); by default it is there when an item has an entry. raw_metadata: put verbatim into
    `<metadata>` instead of our element (the entries of items are then left out). domain_type, machine,
    devices_tail: what a domain real libvirt defines under TCG needs ("qemu", "pc", "<memballoon model='none'/>")."""
    has_entry = any(isinstance(i, VgpuEntry) or (isinstance(i, Mdev) and i.entry) for i in items)
    hostdevs = "".join(hostdev_xml(i) for i in items
                       if isinstance(i, PciHostdev) or (isinstance(i, Mdev) and i.hostdev is not None))
    with_meta = bool(has_entry or extra_metadata) if metadata is None else metadata
    if raw_metadata:
        meta = f"  <metadata>{raw_metadata}</metadata>\n"
    elif with_meta:
        element = metadata_element(items, prefixed=prefixed, extra_metadata=extra_metadata)
        meta = f"  <metadata>\n    {element}\n  </metadata>\n"
    else:
        meta = ""
    return (f"<domain type='{domain_type}'>\n  <name>{name}</name>\n  <uuid>{uuid}</uuid>\n{meta}"
            "  <memory unit='KiB'>65536</memory>\n"
            f"  <os><type arch='x86_64' machine='{machine}'>hvm</type></os>\n"
            f"  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator>{hostdevs}{devices_tail}</devices>\n"
            "</domain>\n").encode()
