"""The helpers themselves: golden normalisation, the one-line assertion, the domain-XML builder."""

from __future__ import annotations

import pytest
from lxml import etree
from support.asserts import one_line
from support.domxml import NS, PciHostdev, VgpuEntry, domain_xml, mdev, no_metadata, unmanaged, unused_entry
from support.golden import normalise
from support.ids import AP_MATRIX, DOM_A, NAME_A, PF, U1, U2, U3, U4, VF0


def test_normalise_replaces_the_longest_path_first() -> None:
    paths = {"/tmp/x": "<TMP>", "/tmp/x/sys": "<SYSFS>"}
    assert normalise("/tmp/x/sys/class and /tmp/x/state", paths) == "<SYSFS>/class and <TMP>/state"


@pytest.mark.parametrize("text", ["", "mdev-hooks: a\nmdev-hooks: b\n", "error: x\n", "mdev-hooks: x\nTraceback\n",
                                  "\nmdev-hooks: x\n", "mdev-hooks: x\n\n", "mdev-hooks: x", b"mdev-hooks: a\nb\n"])
def test_one_line_rejects(text: str | bytes) -> None:
    with pytest.raises(AssertionError):
        one_line(text)


def test_one_line_returns_the_message() -> None:
    assert one_line("mdev-hooks: cannot create mdev X\n") == one_line(b"mdev-hooks: cannot create mdev X\n") \
        == "cannot create mdev X"


def test_domain_xml_holds_exactly_what_was_asked() -> None:
    xml = domain_xml(NAME_A, DOM_A, [mdev(U1, AP_MATRIX, "t", ("assign_adapter", "5")), unmanaged(U2), no_metadata(U3),
                                     unused_entry(U4, AP_MATRIX, "t"), VgpuEntry(PF, "1414"), PciHostdev(VF0)])
    root = etree.fromstring(xml)
    assert (root.findtext("name"), root.findtext("uuid")) == (NAME_A, DOM_A)
    entries = root.findall(f"metadata/{{{NS}}}mdevs/{{{NS}}}device")
    assert [(e.get("uuid"), e.get("kind")) for e in entries] == [(U1, None), (U4, None), (None, "nvidia-vf")]
    assert [(a.get("name"), a.get("value")) for a in entries[0]] == [("assign_adapter", "5")]
    hostdevs = root.findall("devices/hostdev")
    assert [(h.get("type"), h.get("managed")) for h in hostdevs] == [
        ("mdev", "yes"), ("mdev", "no"), ("mdev", "yes"), ("pci", "yes")]
    addresses = [h.find("source/address") for h in hostdevs]
    assert [a.get("uuid") for a in addresses[:3] if a is not None] == [U1, U2, U3]
    pci = addresses[3]
    assert pci is not None
    assert [pci.get(k) for k in ("domain", "bus", "slot", "function")] == ["0x0000", "0x41", "0x00", "0x4"]


def test_domain_xml_plain_entries_and_no_metadata() -> None:
    plain = etree.fromstring(domain_xml(NAME_A, DOM_A, [mdev(U1, AP_MATRIX, "t")], prefixed=False))
    assert plain.find(f"metadata/{{{NS}}}mdevs/device") is not None  # hand-written: children without namespace
    bare = etree.fromstring(domain_xml(NAME_A, DOM_A, [unmanaged(U2)]))
    assert bare.find("metadata") is None
