"""`mdev-hooks add --vf` / `drop --vf`: an NVIDIA vGPU 17+ (vendor-specific interface, kind="nvidia-vf", not mdev)
added to and dropped from a domain's persistent definition, through the fake virsh, against the FUSE fake's H200X
profile (PF 0000:41:00.0, VFs 0000:41:00.4-.7). What is checked: what the user sees, what was defined, and that the
real hook then sets the type at prepare and clears it at release (the fake kernel's journal).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from support.asserts import one_line
from support.cliworld import PLAIN, World, canonical
from support.common import CLI
from support.ids import DOM_B, H200_1414, H200_1428, PF, VF0, VF1, VF2, uid
from support.nvidia_vf import current, pci_hostdev, vf_xml, vgpu_writes

from mdev_hooks import domain
from mdev_hooks.domain import ManagedDevice
from mdev_hooks.enums import Kind

PLAIN_UUID = "55cfeeeb-a20e-4024-aaec-7f05eef1e1de"
SLICE_NAME = "NVIDIA H200X-1-18C"


@pytest.fixture
def h200(fakesysfs: Callable[..., Any], tmp_path: Path) -> World:
    w = World(fakesysfs("nvidia-h200x-vendor-vfio"), tmp_path)
    define(w, "plain", PLAIN)
    return w


def define(w: World, name: str, xml: bytes) -> None:
    (w.virsh_dir / "domains" / f"{name}.xml").write_bytes(xml)


def defined(w: World, name: str = "plain") -> bytes:
    return (w.virsh_dir / "domains" / f"{name}.xml").read_bytes()


def entry(parent: str, type_id: str) -> ManagedDevice:
    return ManagedDevice("", parent, type_id, kind=Kind.NVIDIA_VF)


def start_and_stop(w: World, name: str, xml: bytes, vf: str, type_id: str) -> None:
    """The real hook, given what add defined: the type on the VF at prepare, 0 at release, no claim left."""
    writes = len(vgpu_writes(w.fs))
    r = w.hook.run(name, "prepare", "begin", xml)
    assert (r.returncode, r.stderr) == (0, b""), r.stderr
    assert vgpu_writes(w.fs)[writes:] == [(vf, repr(type_id.encode()), "ok")]
    assert current(w.fs, vf) == type_id and w.hook.ledger() == [f"{vf}.json"]
    assert w.hook.run(name, "release", "end", xml).returncode == 0
    assert vgpu_writes(w.fs)[writes + 1:] == [(vf, "b'0'", "ok")]
    assert current(w.fs, vf) == "0" and w.hook.ledger() == []


def test_add_vf_only_names_the_pf_and_the_hook_sets_then_clears_it(h200: World) -> None:
    r = h200.cli("add", "plain", "--vf", VF0, "--type", H200_1414)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    assert r.stdout.splitlines() == [
        f"added NVIDIA vGPU type {H200_1414} ({SLICE_NAME}) on VF {VF0} of PF {PF} to domain plain",
        f"VF {VF0} can take type {H200_1414} now"]
    xml = defined(h200)
    parsed = domain.parse(xml)
    assert (parsed.vf_entries, parsed.pci_hostdevs, parsed.devices) == ([entry(PF, H200_1414)], [VF0], [])
    [hostdev] = etree.fromstring(xml).iterfind("devices/hostdev")
    assert dict(hostdev.attrib) == {"mode": "subsystem", "type": "pci", "managed": "yes"}
    address = hostdev.find("source/address")
    assert address is not None
    assert dict(address.attrib) == {"domain": "0x0000", "bus": "0x41", "slot": "0x00", "function": "0x4"}
    assert [c[2] for c in h200.calls()] == ["dumpxml", "define", "dumpxml", "list"]
    assert h200.cli("plan", "-", stdin=xml).returncode == 0
    start_and_stop(h200, "plain", xml, VF0, H200_1414)


@pytest.mark.parametrize("parent", [PF, VF1])
def test_add_with_parent_names_it(h200: World, parent: str) -> None:
    r = h200.cli("add", "plain", "--vf", VF1, "--type", H200_1428, "--parent", parent)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"added NVIDIA vGPU type {H200_1428} (NVIDIA H200X-141C) on VF {VF1} of PF {PF} to "
                               "domain plain\n")
    parsed = domain.parse(defined(h200))
    assert (parsed.vf_entries, parsed.pci_hostdevs) == ([entry(parent, H200_1428)], [VF1])
    start_and_stop(h200, "plain", defined(h200), VF1, H200_1428)


def test_add_names_the_vf_when_the_pf_would_bind_another_entry(h200: World) -> None:
    # an entry naming the PF without its hostdev (unused): naming the PF again, the hook would give VF0 that one
    define(h200, "ml1", vf_xml("ml1", DOM_B, [(PF, H200_1428)], []))
    r = h200.cli("add", "ml1", "--vf", VF0, "--type", H200_1414, "--parent", PF)
    assert r.returncode == 1
    err = one_line(r.stderr)
    assert f"the hook would give VF {VF0} another entry of this domain (parent {PF}, type {H200_1428})" in err
    assert f"(--parent {VF0} names the VF itself)" in err and "define" not in [c[2] for c in h200.calls()]
    r = h200.cli("add", "ml1", "--vf", VF0, "--type", H200_1414)
    assert r.returncode == 0, r.stderr
    assert "note: the metadata entry names the VF itself, not its PF: with an entry naming parent" in r.stdout
    parsed = domain.parse(defined(h200, "ml1"))
    assert parsed.vf_entries == [entry(PF, H200_1428), entry(VF0, H200_1414)]
    start_and_stop(h200, "ml1", defined(h200, "ml1"), VF0, H200_1414)


def _policy(w: World) -> None:
    w.hook.write('allowed_parents = ["0000:81:*"]')


def _other_domain_owns_vf0(w: World) -> None:
    assert w.hook.run("other", "prepare", "begin", vf_xml("other", DOM_B, [(VF0, H200_1414)], [VF0])).returncode == 0


def _set_by_someone_else(w: World) -> None:
    w.fs.write(f"bus/pci/devices/{VF0}/nvidia/current_vgpu_type", H200_1428)


def _domain_has_vf0(w: World) -> None:
    define(w, "plain", PLAIN.replace(b"</devices>", pci_hostdev(VF0).encode() + b"</devices>"))


def _domain_names_vf0(w: World) -> None:
    define(w, "plain", PLAIN.replace(b"<memory", b'<metadata><mh:mdevs xmlns:mh="urn:mdev-hooks:domain:1">'
                                     b'<mh:device kind="nvidia-vf" parent="0000:41:00.4" type="1414"/></mh:mdevs>'
                                     b"</metadata><memory"))


REFUSALS: dict[str, tuple[list[str], Callable[[World], None] | None, str]] = {
    "PF given as --vf": (["--vf", PF], None, f"--vf {PF} is a physical function, not a VF: choose one of its VFs "
                                             f"({VF0}, {VF1}, {VF2}, 0000:41:00.7;"),
    "unknown VF": (["--vf", "0000:41:01.4"], None, "VF 0000:41:01.4 not found under "),
    "non-numeric type": (["--vf", VF0, "--type", "nvidia-1414"], None,
                         "--type: type nvidia-1414 is not a vGPU type id"),
    "parent not its PF": (["--vf", VF0, "--parent", "0000:42:00.0"], None,
                          f"--parent 0000:42:00.0 is neither VF {VF0}'s physical function ({PF}) nor the VF itself"),
    "policy": (["--vf", VF0], _policy, f"parent {PF} is not allowed by allowed_parents"),
    "ledger": (["--vf", VF0], _other_domain_owns_vf0, f"VF {VF0}: the ledger gives it to domain other ({DOM_B})"),
    "type set by someone else": (["--vf", VF0], _set_by_someone_else, f"VF {VF0} already has vGPU type {H200_1428}"),
    "hostdev already there": (["--vf", VF0], _domain_has_vf0,
                              f"domain plain already has a managed PCI hostdev for {VF0}"),
    "entry already there": (["--vf", VF0], _domain_names_vf0,
                            f"`mdev-hooks drop plain --vf {VF0}` first"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_add_refusals_are_one_line_and_define_nothing(h200: World, case: str) -> None:
    args, setup, expected = REFUSALS[case]
    if setup is not None:
        setup(h200)
    before = defined(h200)
    r = h200.cli("add", "plain", *args, *([] if "--type" in args else ["--type", H200_1414]))
    assert r.returncode == 1 and r.stdout == ""
    assert expected in one_line(r.stderr)
    assert "define" not in [c[2] for c in h200.calls()] and defined(h200) == before


def test_add_when_the_gpu_cannot_take_the_type_now_is_a_note(h200: World) -> None:
    h200.fs.write(f"bus/pci/devices/{VF1}/nvidia/current_vgpu_type", H200_1414)  # the GPU holds 1-18C slices now
    r = h200.cli("add", "plain", "--vf", VF0, "--type", H200_1428)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    assert r.stdout.splitlines() == [
        f"added NVIDIA vGPU type {H200_1428} on VF {VF0} of PF {PF} to domain plain",  # no VF lists 141C now: no name
        f"note: VF {VF0} cannot take type {H200_1428} now (creatable now: {H200_1414} ({SLICE_NAME})): "
        "a start fails until it "
        "can (the list shrinks as the GPU fills, and a GPU holds one vGPU type at a time)"]
    r = h200.hook.run("plain", "prepare", "begin", defined(h200))
    assert r.returncode == 1 and f"cannot take type {H200_1428} now" in one_line(r.stderr.decode())
    h200.fs.write(f"bus/pci/devices/{VF1}/nvidia/current_vgpu_type", "0")  # room again: it starts
    start_and_stop(h200, "plain", defined(h200), VF0, H200_1428)


def test_drop_restores_the_domain_and_says_the_type_is_cleared_at_stop(h200: World) -> None:
    assert h200.cli("add", "plain", "--vf", VF0, "--type", H200_1414).returncode == 0
    xml = defined(h200)
    assert h200.hook.run("plain", "prepare", "begin", xml).returncode == 0
    r = h200.cli("drop", "plain", "--vf", VF0)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    assert r.stdout.splitlines() == [
        f"removed <hostdev type='pci' managed='yes'> of VF {VF0} from domain plain",
        f"removed nvidia-vf metadata entry of VF {VF0} (parent {PF}, type {H200_1414}) from domain plain",
        f"the ledger says the hook set vGPU type {H200_1414} on VF {VF0} for domain plain: it stays set until the "
        "domain stops, then the hook writes 0"]
    assert canonical(defined(h200)) == canonical(PLAIN)
    assert current(h200.fs, VF0) == H200_1414
    # the running domain's own XML still names it: its release clears it
    assert h200.hook.run("plain", "release", "end", xml).returncode == 0
    assert current(h200.fs, VF0) == "0" and h200.hook.ledger() == []
    r = h200.cli("drop", "plain", "--vf", VF0)
    assert r.returncode == 1 and f"domain plain has no NVIDIA vGPU on VF {VF0}" in one_line(r.stderr)


def test_drop_removes_the_pf_entry_the_hook_binds_to_that_vf(h200: World) -> None:
    # entries naming the PF take its VFs in document order: 1-18C goes to VF2, 141C to VF0
    define(h200, "ml1", vf_xml("ml1", DOM_B, [(PF, H200_1414), (PF, H200_1428)], [VF2, VF0]))
    r = h200.cli("drop", "ml1", "--vf", VF0)
    assert r.returncode == 0, r.stderr
    assert f"removed nvidia-vf metadata entry of VF {VF0} (parent {PF}, type {H200_1428}) from domain ml1" in r.stdout
    parsed = domain.parse(defined(h200, "ml1"))
    assert (parsed.vf_entries, parsed.pci_hostdevs) == ([entry(PF, H200_1414)], [VF2])
    start_and_stop(h200, "ml1", defined(h200, "ml1"), VF2, H200_1414)


def test_drop_refuses_a_plain_passthrough_vf(h200: World) -> None:
    define(h200, "ml1", vf_xml("ml1", DOM_B, [(VF0, H200_1414)], [VF0, VF1]))
    before = defined(h200, "ml1")
    r = h200.cli("drop", "ml1", "--vf", VF1)
    assert r.returncode == 1
    assert f"no <device kind=\"nvidia-vf\"> entry for VF {VF1}: its managed PCI hostdev is a plain passthrough" \
        in one_line(r.stderr)
    assert defined(h200, "ml1") == before


@pytest.mark.parametrize("args", [
    ["add", "vm1", "--vf", VF0, "--type", H200_1414, "--uuid", "4b20d080-1b54-4048-85b3-a6a62d165c01"],
    ["add", "vm1", "--vf", VF0, "--type", H200_1414, "--model", "vfio-pci"],
    ["add", "vm1", "--vf", "41:00.4", "--type", H200_1414],
    ["drop", "vm1"],
    ["drop", "vm1", uid(), "--vf", VF0],
])
def test_vf_usage_errors_exit_2(args: list[str]) -> None:
    r = subprocess.run([str(CLI), *args], capture_output=True, text=True, check=False)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert f"usage: mdev-hooks {args[0]}" in r.stderr and "Traceback" not in r.stderr
