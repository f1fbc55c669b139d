"""Hostile domain XML for NVIDIA's vendor-specific interface (`kind="nvidia-vf"`), property-based (hypothesis),
against the hook and the FUSE fake's H200X profile (PF 0000:41:00.0, VFs 0000:41:00.4-.7).

Whatever the metadata entries and PCI hostdevs say (odd kinds, parents, type ids, address spellings, unmanaged or
mdev hostdevs, entries without hostdevs), the hook must exit 0 or 1 with one line, print nothing on stdout, write
only `bus/pci/devices/<VF>/nvidia/current_vgpu_type` of a VF that is the source address of one of the domain's
own `<hostdev type='pci' managed='yes'>` (the oracle reads the addresses itself, the way libvirt does), never
touch the foreign VF (its type set by someone else) or another domain's, and `release` must leave every VF it set
back at 0 with no claim left.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fakesysfs.harness import FakeSysfs
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from lxml import etree
from support.domxml import NS
from support.faultmatrix import ALLOWED_WRITE, Result, hook_writes, inproc
from support.hookrun import HookEnv, require_fuse
from support.ids import DOM_A, DOM_B, H200_1414, PF, VF0, VF1, VF2, VF3
from support.nvidia_vf import current, vf_xml

VFS = (VF0, VF1, VF2, VF3)
MINE = (VF0, VF1)  # domain A may get these; VF2 is domain B's, VF3 someone else's


@dataclass
class Stage:
    fs: FakeSysfs
    h: HookEnv

    def types(self) -> dict[str, str]:
        return {vf: current(self.fs, vf) for vf in VFS}


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    require_fuse()
    base = tmp_path_factory.mktemp("hostile-vgpu")
    fs = FakeSysfs("nvidia-h200x-vendor-vfio", base).start()
    try:
        (base / "hook").mkdir()
        h = HookEnv(base / "hook", fs.root, "lock_timeout = 2\nremove_timeout = 1\n")
        fs.write(f"bus/pci/devices/{VF3}/nvidia/current_vgpu_type", H200_1414)  # someone else's
        r = inproc(h, "vmB", "prepare", "begin", vf_xml("vmB", DOM_B, [(VF2, H200_1414)], [VF2]))
        assert r.returncode == 0, r
        yield Stage(fs, h)
    finally:
        fs.stop()


def spell(addr: str, style: str) -> tuple[str, str, str, str]:
    """A PCI address as libvirt may write it: hex with 0x, or decimal."""
    dom, bus, rest = addr.split(":")
    slot, fn = rest.split(".")
    parts = (dom, bus, slot, fn)
    if style == "dec":
        return tuple(str(int(p, 16)) for p in parts)  # type: ignore[return-value]
    return tuple(f"0x{p}" for p in parts)  # type: ignore[return-value]


ADDRESSES = st.sampled_from([*VFS, PF, "0000:42:00.0", "0000:41:00.3"])
HOSTDEV = st.tuples(ADDRESSES, st.sampled_from(["hex", "dec"]), st.sampled_from(["yes", "no", "YES", ""]),
                    st.sampled_from(["pci", "pci", "mdev", "usb"]))
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=20)  # what XML can carry
ENTRY = st.tuples(
    st.sampled_from(["nvidia-vf", "nvidia-vf", "mdev", "NVIDIA-VF", "nvidia_vf", None]),
    st.one_of(ADDRESSES, st.sampled_from(["../../..", "0000:41:00.4/..", "41:00.4", ""]), TEXT),
    st.one_of(st.sampled_from(["1414", "1428", "0", "-1", "01414", "1414 ", "99999999999", "nvidia-1414"]), TEXT),
    st.booleans())  # prefixed


def document(hostdevs: list[tuple[str, str, str, str]], entries: list[tuple[str | None, str, str, bool]]) -> bytes:
    root = etree.Element("domain", type="kvm")
    etree.SubElement(root, "name").text = "vmA"
    etree.SubElement(root, "uuid").text = DOM_A
    top = etree.SubElement(etree.SubElement(root, "metadata"), f"{{{NS}}}mdevs", nsmap={"mh": NS})
    for kind, parent, vtype, prefixed in entries:
        dev = etree.SubElement(top, f"{{{NS}}}device" if prefixed else "device")
        if kind is not None:
            dev.set("kind", kind)
        dev.set("parent", parent)
        dev.set("type", vtype)
        dev.set("uuid", str(uuidlib.uuid4()))
    devices = etree.SubElement(root, "devices")
    for addr, style, managed, htype in hostdevs:
        hd = etree.SubElement(devices, "hostdev", mode="subsystem", type=htype, managed=managed)
        d, b, s, f = spell(addr, style)
        etree.SubElement(etree.SubElement(hd, "source"), "address", domain=d, bus=b, slot=s, function=f)
    return etree.tostring(root)


def managed_pci(hostdevs: list[tuple[str, str, str, str]]) -> set[str]:
    """The oracle: the VFs the domain hands to qemu as managed PCI hostdevs (libvirt reads 'yes' exactly)."""
    return {addr for addr, _, managed, htype in hostdevs if managed == "yes" and htype == "pci"}


def call(s: Stage, op: str, xml: bytes) -> Result:
    r = inproc(s.h, "vmA", op, "begin" if op == "prepare" else "end", xml)
    assert r.returncode in (0, 1) and r.stdout == b"", r
    if r.returncode:
        r.line()
    else:
        assert r.stderr == b"", r
    return r


# well-formed pairs (a managed PCI hostdev on a VF and an entry naming it or its PF), mixed into the hostile rest so
# that starts which do set types are among the examples too
GOOD = st.tuples(st.sampled_from([VF0, VF1, VF0, VF1, VF2, VF3]), st.booleans(),
                 st.sampled_from(["1414", "1414", "1414", "1428"]))


@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(HOSTDEV, max_size=4), st.lists(ENTRY, max_size=4), st.lists(GOOD, max_size=3), st.booleans(),
       st.randoms())
def test_hostile_vgpu_entries(stage: Stage, hostdevs: list[tuple[str, str, str, str]],
                              entries: list[tuple[str | None, str, str, bool]],
                              good: list[tuple[str, bool, str]], only_good_entries: bool, rnd: Any) -> None:
    hostdevs = hostdevs + [(vf, "hex", "yes", "pci") for vf, _, _ in good]
    entries = ([] if only_good_entries else entries) + [("nvidia-vf", PF if by_pf else vf, t, True)
                                                        for vf, by_pf, t in good]
    rnd.shuffle(hostdevs)
    rnd.shuffle(entries)
    before = stage.types()
    assert before == {VF0: "0", VF1: "0", VF2: H200_1414, VF3: H200_1414}
    mark = len(stage.fs.journal())
    xml = document(hostdevs, entries)
    allowed = managed_pci(hostdevs) & set(MINE)
    prepare = call(stage, "prepare", xml)
    for e in hook_writes(stage.fs, mark):
        assert ALLOWED_WRITE.fullmatch(e["path"]) and e["path"].endswith("/nvidia/current_vgpu_type"), e
        assert e["parent"] in allowed, (e, hostdevs, entries)
    after = stage.types()
    event(f"prepare exit {prepare.returncode}, {sum(after[vf] != '0' for vf in MINE)} VF(s) set")
    assert {vf: after[vf] for vf in (VF2, VF3)} == {VF2: H200_1414, VF3: H200_1414}
    if prepare.returncode:  # a refused start left nothing behind, even before release
        assert after == before
    release = call(stage, "release", xml)
    assert release.returncode == 0, release
    assert stage.types() == before
    assert stage.h.ledger() == [f"{VF2}.json"]
