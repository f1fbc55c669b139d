"""Edit a domain's persistent XML for `mdev-hooks add` / `drop`: the managed hostdev and our metadata entry.

Everything else in the document is kept as it is (comments included; libvirt re-formats it on define anyway).
The XML comes from `virsh dumpxml`; it is still parsed without DTDs, entities or network access.
"""

from lxml import etree

from mdev_hooks.domain import MAX_XML_BYTES, NS
from mdev_hooks.errors import HookError
from mdev_hooks.names import shown

MODELS = ("vfio-pci", "vfio-ccw", "vfio-ap")
# libvirt's order of the elements before <metadata>
_BEFORE_METADATA = ("name", "uuid", "genid", "title", "description")


def parse(data: bytes) -> etree._Element:
    if len(data) > MAX_XML_BYTES:
        raise HookError(f"domain XML is larger than {MAX_XML_BYTES >> 20} MiB")
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise HookError("domain XML contains a DTD or entity declaration; refused")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as e:
        raise HookError(f"domain XML cannot be parsed: {shown(str(e))}") from None
    if root is None or root.tag != "domain":
        raise HookError("this is not a domain XML")
    return root


def serialize(root: etree._Element) -> bytes:
    return etree.tostring(root, encoding="utf-8") + b"\n"


def domain_name(root: etree._Element) -> str:
    return (root.findtext("name") or "").strip()


def domain_uuid(root: etree._Element) -> str:
    return (root.findtext("uuid") or "").strip().lower()


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


def _entries(root: etree._Element) -> list[etree._Element]:
    return [
        child
        for top in root.iterfind(f"metadata/{{{NS}}}*")
        for child in top
        if isinstance(child.tag, str) and child.tag in ("device", f"{{{NS}}}device")
    ]


def _mdev_hostdevs(root: etree._Element, uuid: str) -> list[etree._Element]:
    found = []
    for hd in root.iterfind("devices/hostdev"):
        addr = hd.find("source/address")
        if hd.get("type") == "mdev" and addr is not None and (addr.get("uuid") or "").lower() == uuid:
            found.append(hd)
    return found


def add(root: etree._Element, uuid: str, parent: str, mtype: str, model: str) -> None:
    """Add the managed hostdev and the metadata entry for one mdev (uuid in canonical lower case)."""
    if _mdev_hostdevs(root, uuid):
        raise HookError(f"domain {domain_name(root)} already has a hostdev for mdev {uuid}")
    if any((e.get("uuid") or "").lower() == uuid for e in _entries(root)):
        raise HookError(f"domain {domain_name(root)} already has a metadata entry for mdev {uuid}; "
                        f"`mdev-hooks drop {domain_name(root)} {uuid}` first")
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
        top = etree.Element(f"{{{NS}}}mdevs", nsmap={"mdev": NS})
        _append(metadata, top, 1)
    # follow the form already there: namespaced (virsh metadata --set) or plain (hand-written)
    plain = any(isinstance(c.tag, str) and c.tag == "device" for c in top)
    entry = etree.Element("device" if plain else f"{{{NS}}}device")
    entry.set("uuid", uuid)
    entry.set("parent", parent)
    entry.set("type", mtype)
    _append(top, entry, 2)

    devices = root.find("devices")
    if devices is None:
        devices = etree.Element("devices")
        _append(root, devices, 0)
    hostdev = etree.Element("hostdev", mode="subsystem", type="mdev", managed="yes", model=model)
    source = etree.SubElement(hostdev, "source")
    etree.SubElement(source, "address", uuid=uuid)
    _append(devices, hostdev, 1)


def drop(root: etree._Element, uuid: str) -> list[str]:
    """Remove the managed hostdev and the metadata entry of one mdev. Returns what was removed."""
    removed: list[str] = []
    hostdevs = _mdev_hostdevs(root, uuid)
    unmanaged = [hd for hd in hostdevs if hd.get("managed") != "yes"]
    for hd in hostdevs:
        if hd.get("managed") == "yes":
            _remove(hd)
            removed.append(f"<hostdev type='mdev' managed='yes'> of mdev {uuid}")
    for entry in _entries(root):
        if (entry.get("uuid") or "").lower() == uuid:
            top = entry.getparent()
            _remove(entry)
            removed.append(f"metadata entry of mdev {uuid} (parent {entry.get('parent')}, type {entry.get('type')})")
            if top is not None and not any(isinstance(c.tag, str) for c in top):
                metadata = top.getparent()
                _remove(top)
                if metadata is not None and not any(isinstance(c.tag, str) for c in metadata):
                    _remove(metadata)
    if not removed:
        extra = (" (its hostdev has no managed='yes': it is not managed by mdev-hooks; "
                 "remove it with `virsh detach-device --config`)") if unmanaged else ""
        raise HookError(f"domain {domain_name(root)} has no managed mdev {uuid}{extra}")
    return removed
