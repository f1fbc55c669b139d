"""Domain XML -> the managed devices it asks for, from the one safe parser of untrusted XML (admin/domedit.py edits
the tree it gives, with comments kept).

Invariant: no DTD, entity, network access or oversized document is ever processed; every name that reaches a path
is validated (names.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from lxml import etree

from mdev_hooks import NS, NS_PREFIX
from mdev_hooks.enums import Kind
from mdev_hooks.errors import HookError
from mdev_hooks.names import canonical_uuid, check_attr, check_name, check_vgpu_type, is_pci_address, pci_address, shown

MAX_XML_BYTES = 16 << 20  # libvirt's own limit for a domain XML is 10 MiB
SET_HINT = (
    f"virsh metadata DOMAIN --uri {NS} --key {NS_PREFIX} --config "
    "--set '<mdevs><device uuid=\"{uuid}\" parent=\"PARENT\" type=\"TYPE\"/></mdevs>'"
)


@dataclass(frozen=True)
class ManagedDevice:
    """One device a domain asks the hook for. `key` names it on the host and in the ledger: the mdev's UUID, or
    (kind nvidia-vf) the VF's PCI address, "" until the VF is bound (core/kinds/nvidia_vf.py)."""

    key: str
    parent: str  # the parent the mdev is created on (a PF or VF for nvidia-vf, as the metadata names it)
    type: str  # the mdev type id, or the numeric vGPU type id
    # attributes written in order into bus/mdev/devices/<uuid>/<name> after create (s390 vfio-ap assign_*)
    attrs: tuple[tuple[str, str], ...] = ()
    kind: Kind = Kind.MDEV
    source: str = "metadata"  # where parent/type came from: "metadata" or "mdevctl"
    mapped_from: str = ""  # the parent the domain names, when config [parents] renamed it to `parent` on this host


@dataclass
class Domain:
    name: str
    uuid: str
    devices: list[ManagedDevice] = field(default_factory=list)
    # metadata entries with no managed hostdev: ignored, logged as a warning
    unused: list[ManagedDevice] = field(default_factory=list)
    # kind="nvidia-vf" entries (key ""), matched to pci_hostdevs with the host's PF/VF links (core/kinds/nvidia_vf.bind)
    vf_entries: list[ManagedDevice] = field(default_factory=list)
    pci_hostdevs: list[str] = field(default_factory=list)  # source addresses of <hostdev type='pci' managed='yes'>
    unmanaged_mdevs: int = 0  # mdev hostdevs without managed='yes': the user's own devices, never touched


def _parser(keep_comments: bool) -> etree.XMLParser:
    # no DTD loading, no entity expansion, no network, no huge-tree mode (libxml2's own depth/size limits apply)
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=not keep_comments,
        remove_pis=not keep_comments,
    )


def parse_xml(data: bytes, keep_comments: bool = False) -> etree._Element:
    """The root of a domain XML, parsed safely. `keep_comments`: comments and processing instructions stay in the
    tree (`mdev-hooks add`/`drop` write the document back as the admin wrote it); the hook drops them."""
    if len(data) > MAX_XML_BYTES:
        raise HookError(f"domain XML is larger than {MAX_XML_BYTES >> 20} MiB")
    # libvirt never sends a DTD; refusing it outright rules out entity tricks whatever the parser does
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise HookError("domain XML contains a DTD or entity declaration, which libvirt never sends; refused")
    try:
        root = etree.fromstring(data, _parser(keep_comments))
    except etree.XMLSyntaxError as e:
        raise HookError(f"domain XML cannot be parsed: {shown(str(e))}") from None
    if root is None:
        raise HookError("domain XML is empty")
    if root.getroottree().docinfo.doctype:  # type: ignore[union-attr]
        raise HookError("domain XML contains a DTD, which libvirt never sends; refused")
    if root.tag != "domain":
        raise HookError(f"this is not a domain XML (root element {shown(str(root.tag))})")
    return root


def metadata_devices(root: etree._Element) -> list[etree._Element]:
    """`<device>` children of our metadata element, namespaced (virsh metadata --set) or not (hand-written)."""
    found: list[etree._Element] = []
    for top in root.iterfind(f"metadata/{{{NS}}}*"):
        for child in top:
            if not isinstance(child.tag, str):
                continue
            if child.tag in ("device", f"{{{NS}}}device"):
                found.append(child)
    return found


MAX_ATTRS = 512


def _attrs(dev: etree._Element, uuid: str) -> tuple[tuple[str, str], ...]:
    """`<attr name= value=/>` children of a `<device>`, namespaced or not, in document order, validated."""
    found = [a for a in dev if isinstance(a.tag, str) and a.tag in ("attr", f"{{{NS}}}attr")]
    if len(found) > MAX_ATTRS:
        raise HookError(f"mdev {uuid}: the metadata has {len(found)} <attr> entries; at most {MAX_ATTRS}")
    return tuple(check_attr(a.get("name") or "", a.get("value") or "", uuid) for a in found)


def _vf_entry(dev: etree._Element) -> ManagedDevice:
    """A `<device kind="nvidia-vf" parent="PF or VF" type="ID"/>` entry, validated (its VF is found later)."""
    parent = (dev.get("parent") or "").strip()
    what = f"metadata <device kind=\"{Kind.NVIDIA_VF.value}\" parent={shown(parent)}>"
    if not is_pci_address(parent):
        raise HookError(f"{what}: parent must be the PCI address of the GPU's physical function or of one of its "
                        "virtual functions, as sysfs names it (e.g. 0000:41:00.0)")
    mtype = check_vgpu_type((dev.get("type") or "").strip(), what)
    if any(isinstance(a.tag, str) and a.tag in ("attr", f"{{{NS}}}attr") for a in dev):
        raise HookError(f"{what}: <attr> is for mdevs; a {Kind.NVIDIA_VF} vGPU has only its type")
    return ManagedDevice("", parent, mtype, kind=Kind.NVIDIA_VF)


def _pci_hostdevs(root: etree._Element) -> list[str]:
    """Source addresses of the managed PCI hostdevs, in document order (unparseable ones left out)."""
    found = []
    for hostdev in root.iterfind("devices/hostdev"):
        if hostdev.get("type") != "pci" or hostdev.get("managed") != "yes":
            continue
        name = hostdev_pci_address(hostdev)
        if name is not None and name not in found:
            found.append(name)
    return found


def hostdev_pci_address(hostdev: etree._Element) -> str | None:
    """A `<hostdev type='pci'>`'s source address as sysfs names it (None: absent or not an address)."""
    addr = hostdev.find("source/address")
    if addr is None:
        return None
    return pci_address(*(addr.get(k) or "0" for k in ("domain", "bus", "slot", "function")))


def _count_unmanaged(root: etree._Element) -> int:
    return sum(1 for h in root.iterfind("devices/hostdev") if h.get("type") == "mdev" and h.get("managed") != "yes")


def unmanaged_mdev_hostdevs(data: bytes) -> int:
    """How many mdev hostdevs without managed='yes' the domain has (what `plan` says of a domain the hook skips)."""
    return _count_unmanaged(parse_xml(data))


def domain_uuid(root: etree._Element) -> str:
    """The domain's own UUID, canonical (an error if it has none): also all that release needs when the rest of the
    XML no longer describes its mdevs (metadata or an mdevctl definition removed while the VM ran; the ledger still
    knows what we created)."""
    return canonical_uuid((root.findtext("uuid") or "").strip(), "domain <uuid>")


def parse(data: bytes, fallback: Callable[[str], ManagedDevice | None] | None = None,
          fallback_hint: str = "") -> Domain:
    """The domain's managed devices. A managed hostdev without a metadata entry is looked up with `fallback` (mdevctl
    definitions; `fallback_hint` says where it looked), else it is an error."""
    root = parse_xml(data)
    name = (root.findtext("name") or "").strip()
    dom_uuid = domain_uuid(root)

    # metadata entries by lower-cased UUID; names are validated only for entries a managed hostdev uses
    # (DESIGN: an entry without a managed hostdev is ignored with a warning, whatever it holds)
    entries: dict[str, list[etree._Element]] = {}
    vf_entries: list[ManagedDevice] = []
    # each <device kind=...> word to what collects its entries (mdevs by UUID, matched to hostdevs below; VFs bound to
    # their PCI hostdevs by core/kinds/nvidia_vf.bind)
    collect: dict[str, Callable[[etree._Element], None]] = {
        Kind.MDEV.value: lambda dev: entries.setdefault((dev.get("uuid") or "").strip().lower(), []).append(dev),
        Kind.NVIDIA_VF.value: lambda dev: vf_entries.append(_vf_entry(dev)),
    }
    for dev in metadata_devices(root):
        kind = dev.get("kind") or Kind.MDEV.value
        if kind not in collect:
            raise HookError(f"metadata <device kind={shown(kind)}>: unknown kind (use {Kind.MDEV.value}, the "
                            f"default, or {Kind.NVIDIA_VF.value})")
        collect[kind](dev)

    def entry(uuid: str) -> ManagedDevice | None:
        found = entries.get(uuid)
        if not found:
            return None
        if len(found) > 1:
            raise HookError(f"mdev {uuid}: the metadata has {len(found)} <device> entries for it; keep one")
        parent = check_name(found[0].get("parent") or "", "parent", uuid)
        mtype = check_name(found[0].get("type") or "", "type", uuid)
        return ManagedDevice(uuid, parent, mtype, attrs=_attrs(found[0], uuid))

    domain = Domain(name=name, uuid=dom_uuid, vf_entries=vf_entries)
    if vf_entries:
        domain.pci_hostdevs = _pci_hostdevs(root)
    seen: set[str] = set()
    domain.unmanaged_mdevs = _count_unmanaged(root)
    for hostdev in root.iterfind("devices/hostdev"):
        if hostdev.get("type") != "mdev" or hostdev.get("managed") != "yes":
            continue  # unmanaged mdevs are the user's own, pre-created devices
        addr = hostdev.find("source/address")
        raw = addr.get("uuid", "") if addr is not None else ""
        uuid = canonical_uuid(raw, "managed mdev hostdev <address uuid>")
        if uuid in seen:
            continue
        seen.add(uuid)
        wanted = entry(uuid)  # the metadata wins over a fallback definition
        if wanted is None and fallback is not None:
            wanted = fallback(uuid)
        if wanted is None:
            raise HookError(
                f"mdev {uuid}: the hostdev is managed='yes' but the domain's metadata does not say which parent "
                f"and type to create; add it with: {SET_HINT.format(uuid=uuid)}{fallback_hint.replace('{uuid}', uuid)}"
            )
        domain.devices.append(wanted)
    domain.unused = [
        ManagedDevice(shown(u), shown(d.get("parent") or ""), shown(d.get("type") or ""))
        for u, devs in entries.items() if u not in seen for d in devs
    ]
    return domain
