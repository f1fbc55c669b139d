"""Unit tests of the pure XML -> managed mdev logic (domain.py, names.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.ids import DOM_A, U1, U2

from mdev_hooks.domain import ManagedDevice, parse
from mdev_hooks.errors import HookError
from mdev_hooks.hook import mentions_mdev

FIX = Path(__file__).parent / "fixtures" / "libvirt-9.0"


def doc(metadata: str = "", hostdevs: str = "", uuid: str = DOM_A) -> bytes:
    return f"""<domain type='qemu'><name>vm1</name><uuid>{uuid}</uuid>
<metadata>{metadata}</metadata><devices>{hostdevs}</devices></domain>""".encode()


def hostdev(uuid: str, managed: str = "yes", type_: str = "mdev") -> str:
    return (f"<hostdev mode='subsystem' type='{type_}' managed='{managed}' model='vfio-pci'>"
            f"<source><address uuid='{uuid}'/></source></hostdev>")


def meta(*devices: tuple[str, str, str], prefixed: bool = True) -> str:
    if prefixed:
        body = "".join(f'<m:device uuid="{u}" parent="{p}" type="{t}"/>' for u, p, t in devices)
        return f'<m:mdevs xmlns:m="urn:mdev-hooks:domain:1">{body}</m:mdevs>'
    body = "".join(f'<device uuid="{u}" parent="{p}" type="{t}"/>' for u, p, t in devices)
    return f'<m:mdevs xmlns:m="urn:mdev-hooks:domain:1">{body}</m:mdevs>'


def test_real_libvirt_prepare_xml() -> None:
    d = parse((FIX / "gvtg-desktop.prepare.xml").read_bytes())
    assert d.name == "gvtg-desktop"
    assert d.uuid == DOM_A
    assert d.devices == [ManagedDevice(U1, "0000:00:02.0", "i915-GVTg_V5_4")]


def test_real_libvirt_release_xml_same_answer() -> None:
    assert parse((FIX / "gvtg-desktop.release.xml").read_bytes()).devices == [
        ManagedDevice(U1, "0000:00:02.0", "i915-GVTg_V5_4")
    ]


def test_plain_domain_is_not_ours() -> None:
    data = (FIX / "plain.prepare.xml").read_bytes()
    assert not mentions_mdev(data)
    assert parse(data).devices == []


@pytest.mark.parametrize("prefixed", [True, False])
def test_metadata_children_with_or_without_namespace(prefixed: bool) -> None:
    d = parse(doc(meta((U1, "mtty", "mtty-2"), prefixed=prefixed), hostdev(U1)))
    assert d.devices == [ManagedDevice(U1, "mtty", "mtty-2")]


def test_default_namespace_and_any_prefix() -> None:
    m = f'<mdevs xmlns="urn:mdev-hooks:domain:1"><device uuid="{U1}" parent="mtty" type="mtty-1"/></mdevs>'
    assert parse(doc(m, hostdev(U1))).devices == [ManagedDevice(U1, "mtty", "mtty-1")]
    other = f'<zz:mdevs xmlns:zz="urn:other"><zz:device uuid="{U1}" parent="mtty" type="mtty-1"/></zz:mdevs>'
    with pytest.raises(HookError, match="metadata does not say"):
        parse(doc(other, hostdev(U1)))


def test_unmanaged_and_pci_hostdevs_are_ignored() -> None:
    d = parse(doc(meta((U1, "mtty", "mtty-2")), hostdev(U1, managed="no") + hostdev(U2, type_="pci")))
    assert d.devices == []
    assert d.unused == [ManagedDevice(U1, "mtty", "mtty-2")]


def test_uuid_case_is_folded() -> None:
    d = parse(doc(meta((U1.upper(), "mtty", "mtty-2")), hostdev(U1)))
    assert d.devices[0].key == U1


def test_managed_without_metadata_says_what_to_add() -> None:
    with pytest.raises(HookError) as e:
        parse(doc("", hostdev(U1)))
    assert U1 in str(e.value) and "virsh metadata" in str(e.value)


def test_duplicate_metadata_entries() -> None:
    with pytest.raises(HookError, match="2 <device> entries"):
        parse(doc(meta((U1, "mtty", "mtty-2"), (U1, "mtty", "mtty-1")), hostdev(U1)))


@pytest.mark.parametrize("parent", ["..", ".", "a/b", "../../etc", "", "mtty&#9;x", "x" * 200, "gpu\u2215x", "a b"])
def test_hostile_parent_refused(parent: str) -> None:
    with pytest.raises(HookError, match="not a valid name"):
        parse(doc(meta((U1, parent, "t")), hostdev(U1)))


@pytest.mark.parametrize("uuid", ["{" + U1 + "}", U1 + "x", U1[:-1], "urn:uuid:" + U1, U1.replace("-", "")])
def test_non_canonical_uuid_refused(uuid: str) -> None:
    with pytest.raises(HookError, match="not a UUID"):
        parse(doc(meta((U1, "mtty", "mtty-1")), hostdev(uuid)))
    # in the metadata it matches no managed hostdev: the hostdev then lacks its entry
    with pytest.raises(HookError, match="metadata does not say"):
        parse(doc(meta((uuid, "mtty", "mtty-1")), hostdev(U1)))


def test_unused_metadata_entry_is_only_a_warning_whatever_it_holds() -> None:
    d = parse(doc(meta((U2, "../../etc", "x/y"), ("not-a-uuid", "mtty", "mtty-1")), ""))
    assert d.devices == [] and len(d.unused) == 2


def test_dtd_and_entities_refused() -> None:
    evil = b"""<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/shadow">]>
<domain><name>&x;</name><uuid>""" + DOM_A.encode() + b"""</uuid></domain>"""
    with pytest.raises(HookError, match="DTD"):
        parse(evil)


def test_malformed_and_empty() -> None:
    for bad in (b"", b"<domain>", b"\xff\xfe<", b"<notdomain/>"):
        with pytest.raises(HookError):
            parse(bad)


# -- kind="nvidia-vf" (NVIDIA's vendor-specific interface): parsing and matching to managed PCI hostdevs ---------
def pci(addr: tuple[str, str, str, str], managed: str = "yes") -> str:
    d, b, s, f = addr
    return (f"<hostdev mode='subsystem' type='pci' managed='{managed}'><source>"
            f"<address domain='{d}' bus='{b}' slot='{s}' function='{f}'/></source></hostdev>")


def vf_meta(*entries: tuple[str, str]) -> str:
    body = "".join(f'<m:device kind="nvidia-vf" parent="{p}" type="{t}"/>' for p, t in entries)
    return f'<m:mdevs xmlns:m="urn:mdev-hooks:domain:1">{body}</m:mdevs>'


@pytest.mark.parametrize(("raw", "want"), [
    (("0x0000", "0x41", "0x00", "0x4"), "0000:41:00.4"),
    (("0", "65", "0", "4"), "0000:41:00.4"),  # libvirt also reads decimal
    (("0x0001", "0xAF", "0x1f", "0x7"), "0001:af:1f.7"),
    (("0x0000", "0x100", "0x00", "0x0"), None),  # bus > 0xff
    (("0x0000", "0x41", "0x20", "0x0"), None),  # slot > 0x1f
    (("0x0000", "0x41", "0x00", "0x8"), None),  # function > 7
    (("0x0000", "0x41", "0x00", "x"), None),
])
def test_pci_address(raw: tuple[str, str, str, str], want: str | None) -> None:
    from mdev_hooks.names import pci_address

    assert pci_address(*raw) == want


def test_vf_entries_and_managed_pci_hostdevs_are_collected() -> None:
    d = parse(doc(vf_meta(("0000:41:00.0", "1414"), ("0000:41:00.5", "1428")),
                  pci(("0x0000", "0x41", "0x00", "0x4")) + pci(("0x0000", "0x41", "0x00", "0x5"))
                  + pci(("0x0000", "0x41", "0x00", "0x6"), managed="no") + hostdev(U1, managed="no")))
    assert d.devices == [] and d.unused == []
    assert [(e.kind, e.parent, e.type, e.key) for e in d.vf_entries] == [
        ("nvidia-vf", "0000:41:00.0", "1414", ""), ("nvidia-vf", "0000:41:00.5", "1428", "")]
    assert d.pci_hostdevs == ["0000:41:00.4", "0000:41:00.5"]  # the unmanaged one is the user's own


def test_no_vf_entry_no_pci_scan() -> None:
    assert parse(doc(meta((U1, "p", "t")), hostdev(U1) + pci(("0", "1", "0", "0")))).pci_hostdevs == []


@pytest.mark.parametrize(("entry", "expect"), [
    ('<m:device kind="nvidia-vf" parent="0000:41:00.4" type="-1"/>', "not a vGPU type id"),
    ('<m:device kind="nvidia-vf" parent="0000:41:00.4"/>', "not a vGPU type id"),
    ('<m:device kind="nvidia-vf" parent="41:00.4" type="1"/>', "parent must be the PCI address"),
    ('<m:device kind="nvidia-vf" parent="0000:41:00.4/../x" type="1"/>', "parent must be the PCI address"),
    ('<m:device kind="gpu" uuid="' + U1 + '" parent="p" type="t"/>', "unknown kind"),
])
def test_bad_vf_entries(entry: str, expect: str) -> None:
    with pytest.raises(HookError, match=expect):
        parse(doc(f'<m:mdevs xmlns:m="urn:mdev-hooks:domain:1">{entry}</m:mdevs>', hostdev(U1)))
