"""Edit a domain's persistent XML for `mdev-hooks add` / `drop`: the managed hostdev and our metadata entry (an
mdev's, or an NVIDIA vGPU's: a `<hostdev type='pci' managed='yes'>` on the VF and a kind="nvidia-vf" entry).

Invariant: everything else in the document is kept as it is (comments included); the XML, though it comes from
`virsh dumpxml`, is parsed by domain.py's one safe parser (no DTDs, entities or network access).
"""

from __future__ import annotations

from lxml import etree

from mdev_hooks import NS, NS_PREFIX
from mdev_hooks.domain import hostdev_pci_address, metadata_devices, parse_xml
from mdev_hooks.enums import Kind
from mdev_hooks.errors import HookError

MODELS = ("vfio-pci", "vfio-ccw", "vfio-ap")
# libvirt's order of the elements before <metadata>
_BEFORE_METADATA = ("name", "uuid", "genid", "title", "description")


def parse(data: bytes) -> etree._Element:
    """The domain XML from `virsh dumpxml`, by the one safe parser, comments kept."""
    return parse_xml(data, keep_comments=True)


def serialize(root: etree._Element) -> bytes:
    return etree.tostring(root, encoding="utf-8") + b"\n"


def domain_name(root: etree._Element) -> str:
    return (root.findtext("name") or "").strip()


def _append(parent: etree._Element, child: etree._Element, level: int) -> None:
    """Append child, indented like its siblings (two spaces a level, as libvirt writes it)."""
    inner = "\n" + "  " * (level + 1)
    if len(parent):
        last = parent[-1]
        child.tail = last.tail
        last.tail = parent.text if parent.text and not parent.text.strip() else inner
    else:
        parent.text = inner
        child.tail = "\n" + "  " * level
    parent.append(child)
    etree.indent(child, space="  ", level=level + 1)


def _remove(el: etree._Element) -> None:
    """Remove el (lxml takes its tail with it) and keep the closing indentation of its parent."""
    parent = el.getparent()
    if parent is None:
        return
    prev = el.getprevious()
    if el.getnext() is None:
        if prev is not None:
            prev.tail = el.tail
        elif parent.text is not None and not parent.text.strip():
            parent.text = None
    parent.remove(el)


def _is_ours(el: etree._Element) -> bool:
    return isinstance(el.tag, str) and etree.QName(el).namespace == NS


def _mdev_hostdevs(root: etree._Element, uuid: str) -> list[etree._Element]:
    found = []
    for hd in root.iterfind("devices/hostdev"):
        addr = hd.find("source/address")
        if hd.get("type") == "mdev" and addr is not None and (addr.get("uuid") or "").lower() == uuid:
            found.append(hd)
    return found


def _our_top(root: etree._Element) -> etree._Element:
    """Our element under <metadata>, created (with <metadata>, in libvirt's place) if missing."""
    metadata = root.find("metadata")
    if metadata is None:
        metadata = etree.Element("metadata")
        anchor = [c for c in root if c.tag in _BEFORE_METADATA]
        if anchor:
            anchor[-1].addnext(metadata)
            metadata.tail, anchor[-1].tail = anchor[-1].tail, "\n  "
        else:
            root.insert(0, metadata)
            metadata.tail, root.text = "\n  ", "\n  "
    top = next((c for c in metadata if _is_ours(c)), None)
    if top is None:
        top = etree.Element(f"{{{NS}}}mdevs", nsmap={NS_PREFIX: NS})
        _append(metadata, top, 1)
    return top


def _add_entry(root: etree._Element, attrs: dict[str, str]) -> None:
    top = _our_top(root)
    # follow the form already there: namespaced (virsh metadata --set) or plain (hand-written)
    plain = any(isinstance(c.tag, str) and c.tag == "device" for c in top)
    entry = etree.Element("device" if plain else f"{{{NS}}}device")
    for key, value in attrs.items():
        entry.set(key, value)
    _append(top, entry, 2)


def _add_hostdev(root: etree._Element, hostdev: etree._Element) -> None:
    devices = root.find("devices")
    if devices is None:
        devices = etree.Element("devices")
        _append(root, devices, 0)
    _append(devices, hostdev, 1)


def _remove_entry(entry: etree._Element) -> None:
    """Remove a metadata entry, and our element and <metadata> if that left them empty."""
    top = entry.getparent()
    _remove(entry)
    if top is not None and not any(isinstance(c.tag, str) for c in top):
        metadata = top.getparent()
        _remove(top)
        if metadata is not None and not any(isinstance(c.tag, str) for c in metadata):
            _remove(metadata)


def add(root: etree._Element, uuid: str, parent: str, mtype: str, model: str) -> None:
    """Add the managed hostdev and the metadata entry for one mdev (uuid in canonical lower case)."""
    if _mdev_hostdevs(root, uuid):
        raise HookError(f"domain {domain_name(root)} already has a hostdev for mdev {uuid}")
    if any((e.get("uuid") or "").lower() == uuid for e in metadata_devices(root)):
        raise HookError(f"domain {domain_name(root)} already has a metadata entry for mdev {uuid}; "
                        f"`mdev-hooks drop {domain_name(root)} {uuid}` first")
    _add_entry(root, {"uuid": uuid, "parent": parent, "type": mtype})
    hostdev = etree.Element("hostdev", mode="subsystem", type="mdev", managed="yes", model=model)
    source = etree.SubElement(hostdev, "source")
    etree.SubElement(source, "address", uuid=uuid)
    _add_hostdev(root, hostdev)


def drop(root: etree._Element, uuid: str) -> list[str]:
    """Remove the managed hostdev and the metadata entry of one mdev. Returns what was removed."""
    removed: list[str] = []
    hostdevs = _mdev_hostdevs(root, uuid)
    unmanaged = [hd for hd in hostdevs if hd.get("managed") != "yes"]
    for hd in hostdevs:
        if hd.get("managed") == "yes":
            _remove(hd)
            removed.append(f"<hostdev type='mdev' managed='yes'> of mdev {uuid}")
    for entry in metadata_devices(root):
        if (entry.get("uuid") or "").lower() == uuid:
            _remove_entry(entry)
            removed.append(f"metadata entry of mdev {uuid} (parent {entry.get('parent')}, type {entry.get('type')})")
    if not removed:
        extra = (" (its hostdev has no managed='yes': it is not managed by mdev-hooks; "
                 "remove it with `virsh detach-device --config`)") if unmanaged else ""
        raise HookError(f"domain {domain_name(root)} has no managed mdev {uuid}{extra}")
    return removed


# -- NVIDIA's vendor-specific vGPU interface: a managed PCI hostdev on the VF and a kind="nvidia-vf" entry ---------
def _pci_hostdevs_at(root: etree._Element, address: str) -> list[etree._Element]:
    """The <hostdev type='pci'> (managed or not) whose source address is `address` (as sysfs names it)."""
    return [hd for hd in root.iterfind("devices/hostdev")
            if hd.get("type") == "pci" and hostdev_pci_address(hd) == address]


def _vf_entries(root: etree._Element, parent: str) -> list[etree._Element]:
    """The kind="nvidia-vf" entries whose parent is `parent`, in document order."""
    return [e for e in metadata_devices(root)
            if e.get("kind") == Kind.NVIDIA_VF.value and (e.get("parent") or "").strip() == parent]


def libvirt_pci_address(address: str) -> dict[str, str]:
    """A sysfs PCI address (DDDD:BB:SS.F, validated) as libvirt writes <address domain= bus= slot= function=>."""
    dom, bus, rest = address.split(":")
    slot, function = rest.split(".")
    return {"domain": f"0x{dom}", "bus": f"0x{bus}", "slot": f"0x{slot}", "function": f"0x{function}"}


def has_vgpu(root: etree._Element, vf: str) -> bool:
    """True if the domain has a managed PCI hostdev on `vf` or a kind="nvidia-vf" entry naming it."""
    return any(hd.get("managed") == "yes" for hd in _pci_hostdevs_at(root, vf)) or bool(_vf_entries(root, vf))


def add_vgpu(root: etree._Element, vf: str, parent: str, type_id: str) -> None:
    """Add a managed PCI hostdev on VF `vf` and the entry `<device kind="nvidia-vf" parent= type=/>`."""
    name = domain_name(root)
    hostdevs = _pci_hostdevs_at(root, vf)
    if hostdevs:
        how = "a managed" if any(hd.get("managed") == "yes" for hd in hostdevs) else "an unmanaged"
        raise HookError(f"domain {name} already has {how} PCI hostdev for {vf}")
    if _vf_entries(root, vf):
        raise HookError(f"domain {name} already has a <device kind=\"{Kind.NVIDIA_VF}\"> entry naming VF {vf}; "
                        f"`mdev-hooks drop {name} --vf {vf}` first")
    _add_entry(root, {"kind": Kind.NVIDIA_VF.value, "parent": parent, "type": type_id})
    hostdev = etree.Element("hostdev", mode="subsystem", type="pci", managed="yes")
    source = etree.SubElement(hostdev, "source")
    etree.SubElement(source, "address", libvirt_pci_address(vf))
    _add_hostdev(root, hostdev)


PLAIN_PASSTHROUGH = ("its managed PCI hostdev is a plain passthrough, not a vGPU of mdev-hooks; remove it with "
                     "`virsh detach-device --config`")


def drop_vgpu(root: etree._Element, vf: str, bound: tuple[str, str] | None,
              unbound: str = PLAIN_PASSTHROUGH) -> list[str]:
    """Remove the managed PCI hostdev on `vf` and its kind="nvidia-vf" entry: the entries naming the VF, else one
    whose (parent, type) is `bound`, the entry naming a PF that the hook binds to this hostdev (bind() in
    core/kinds/nvidia_vf.py; alike entries are interchangeable). `unbound` says why a hostdev without an entry is
    not ours. Returns what was removed."""
    name = domain_name(root)
    on_vf = _pci_hostdevs_at(root, vf)
    hostdevs = [hd for hd in on_vf if hd.get("managed") == "yes"]
    entries = _vf_entries(root, vf)
    if not entries and hostdevs and bound is not None:
        alike = [e for e in _vf_entries(root, bound[0]) if (e.get("type") or "").strip() == bound[1]]
        entries = alike[-1:]
    if not entries:
        if hostdevs:
            raise HookError(f"domain {name} has no <device kind=\"{Kind.NVIDIA_VF}\"> entry for VF {vf}: {unbound}")
        extra = " (its PCI hostdev has no managed='yes': not a vGPU of mdev-hooks)" if on_vf else ""
        raise HookError(f"domain {name} has no NVIDIA vGPU on VF {vf}{extra}")
    removed: list[str] = []
    for hd in hostdevs:
        _remove(hd)
        removed.append(f"<hostdev type='pci' managed='yes'> of VF {vf}")
    for entry in entries:
        _remove_entry(entry)
        removed.append(f"{Kind.NVIDIA_VF} metadata entry of VF {vf} (parent {entry.get('parent')}, "
                       f"type {entry.get('type')})")
    return removed
