"""Issue 8 item 5 under the real libvirtd: NVIDIA's vendor-specific vGPU interface (`kind="nvidia-vf"`), a managed
PCI hostdev on a VF whose vGPU type the hook sets in nvidia/current_vgpu_type.

libvirtd runs the prepare hook before it prepares the domain's host devices. This host has no VFIO, so libvirt then
refuses the PCI hostdev with its own "host doesn't support passthrough of host PCI devices" (its VFIO support check;
the VF itself exists only in the fake, libvirt would look for it in the real /sys) and runs stopped and release: the
failed-start path prepare (hook sets the type) -> libvirt fails -> stopped -> release (hook writes 0). The fake is
the H200X profile (PF 0000:41:00.0, VFs 0000:41:00.4-.7); what is checked is what libvirtd ran (its debug log),
what the fake kernel saw (its journal) and what the VF files read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import lvlab
import pytest
from lvlab import Lab, new_uuid
from support.ids import H200_1414, H200_1428, PF, VF0, VF1
from support.nvidia_vf import creatable, current

PROFILE = "nvidia-h200x-vendor-vfio"
FAILED_START = ["prepare begin", "stopped end", "release end"]
# libvirt's own refusal of a PCI hostdev on a host without VFIO (qemuHostdevPreparePCIDevicesCheckSupport)
PCI_ERROR = "error: unsupported configuration: host doesn't support passthrough of host PCI devices"
PCI_CHECK = "qemuHostdevPreparePCIDevicesCheckSupport"


@pytest.fixture(scope="module", params=["qemu", "qemu.d"])
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """conftest's `lab` (both hook layouts) with a fake of the H200X profile, which conftest's PROFILES leave out."""
    layout: str = request.param
    with lvlab.open_lab(PROFILE, layout, tmp_path_factory.mktemp(f"lab-nvidia-vf-{layout}")) as lab:
        yield lab


def _define_vf_domain(lab: Lab, name: str, named: str, vgpu_type: str, style: str) -> str:
    """A domain with a managed PCI hostdev at VF0 and one nvidia-vf entry naming `named` (PF or VF): hand-written
    into <metadata> (style `prefixed`) or set after the define with `virsh metadata --set` (style `virsh`).
    Defined with --validate: libvirt's schema accepts the domain and our metadata."""
    name = lvlab.PREFIX + name
    entry = f'device kind="nvidia-vf" parent="{named}" type="{vgpu_type}"/'
    meta = f'<mh:mdevs xmlns:mh="{lvlab.NS}"><mh:{entry}></mh:mdevs>' if style == "prefixed" else ""
    xml = lvlab.domain_xml(name, new_uuid(), metadata=meta, pci=[VF0])
    f = lab.tmp / f"{name}.xml"
    f.write_text(xml)
    lvlab.virsh_ok("define", "--validate", str(f))
    if style == "virsh":
        lvlab.virsh_ok("metadata", name, "--uri", lvlab.NS, "--key", "mdev", "--config", "--set",
                       f"<mdevs><{entry}></mdevs>")
    elif style != "prefixed":
        raise ValueError(style)
    return name


def _pid_of(lab: Lab, lmark: int, name: str, op: str) -> int:
    calls = [e for e in lab.log.since(lmark, "hook.invoked", name) if e.get("op") == op]
    assert len(calls) == 1, f"expected one {op} call for {name}, hook log: {calls}"
    return int(calls[0]["pid"])


def _ledger(lab: Lab) -> list[str]:
    return sorted(p.name for p in (lab.tmp / "state").iterdir())  # write_config's state_dir


@pytest.mark.parametrize("style", ["prefixed", "virsh"])
@pytest.mark.parametrize("named", [PF, VF0])
def test_type_set_at_prepare_and_cleared_at_release(lab: Lab, named: str, style: str) -> None:
    name = _define_vf_domain(lab, f"nvvf-{'pf' if named == PF else 'vf'}-{style}", named, H200_1428, style)
    mark, lmark, dmark = lab.jmark(), lab.log.mark(), lab.dlog.mark()
    r = lvlab.virsh("start", name)
    # libvirt's own refusal, after our prepare hook succeeded: nothing of ours in virsh's error
    assert r.rc == 1 and r.stderr == f"error: Failed to start domain '{name}'\n{PCI_ERROR}\n", str(r)
    assert "mdev-hooks:" not in r.stderr
    assert lvlab.virsh("domstate", name, "--reason").stdout.strip() == "shut off (failed)"
    # libvirtd ran prepare, refused the hostdev, then ran stopped and release
    assert lab.dlog.calls(dmark, name, lab.hook) == FAILED_START
    text = lab.dlog.text(dmark)
    at = [text.index(f"Calling hook {lab.hook} id={name} op=prepare subop=begin"), text.index(PCI_CHECK),
          text.index(f"Calling hook {lab.hook} id={name} op=stopped subop=end")]
    assert at == sorted(at), text
    assert lab.log.acting_calls(lmark, name) == ["prepare", "release"]
    # the fake kernel saw exactly two writes: the type by the prepare hook, then 0 by the release hook
    prepare_pid, release_pid = _pid_of(lab, lmark, name, "prepare"), _pid_of(lab, lmark, name, "release")
    ws = lab.any_writes(mark)
    assert [(e["op"], e["parent"], e["data"], e["result"], e["pid"]) for e in ws] == [
        ("create", VF0, repr(H200_1428.encode()), "ok", prepare_pid),
        ("remove", VF0, "b'0'", "ok", release_pid)], ws
    assert all(e["path"].endswith(f"{VF0}/nvidia/current_vgpu_type") and e["actor"] == "user" for e in ws), ws
    assert ws[0]["t1"] <= ws[1]["t0"]
    assert current(lab.fs, VF0) == "0" and creatable(lab.fs, VF1) == [H200_1428, H200_1414]  # the GPU is free again
    assert _ledger(lab) == []
    sets = [(e["vf"], e["pf"], e["type"]) for e in lab.log.since(lmark, "nvidia_vf.set", name)]
    cleared = [(e["vf"], e["pf"], e["type"]) for e in lab.log.since(lmark, "nvidia_vf.cleared", name)]
    assert sets == cleared == [(VF0, PF, H200_1428)]
    lvlab.EVIDENCE.append(
        f"[{lab.layout}] nvidia-vf naming {'PF' if named == PF else 'VF'}, metadata {style}: libvirt "
        f"{' / '.join(lab.dlog.calls(dmark, name, lab.hook))}; writes: "
        + "; ".join(f"{e['op']} {e['parent']} {e['data']} {e['result']}" for e in ws))


@pytest.mark.parametrize("named", [PF, VF0])
def test_full_gpu_refuses_start_with_the_hooks_reason_and_writes_nothing(lab: Lab, named: str) -> None:
    vf1_type = f"bus/pci/devices/{VF1}/nvidia/current_vgpu_type"
    lab.fs.write(vf1_type, H200_1414)  # another VF of the GPU holds a 1-18C slice: 141C (the whole GPU) cannot fit
    try:
        assert H200_1428 not in creatable(lab.fs, VF0)
        name = _define_vf_domain(lab, f"nvvf-full-{'pf' if named == PF else 'vf'}", named, H200_1428, "prefixed")
        mark, lmark, dmark = lab.jmark(), lab.log.mark(), lab.dlog.mark()
        r = lvlab.virsh("start", name)
        m = re.fullmatch(
            rf"error: Failed to start domain '{re.escape(name)}'\n"
            r"error: Hook script execution failed: internal error: Child process \(LC_ALL=C (?:\S+=\S* )*"
            rf"{re.escape(str(lab.hook))} {re.escape(name)} prepare begin -\) unexpected exit status 1: "
            r"mdev-hooks: ([^\n]+)\n\n", r.stderr)
        assert r.rc == 1 and m and r.stderr.count("mdev-hooks:") == 1, str(r)
        reason = m.group(1)
        on = f"VF {VF0} of PF {PF}" if named == PF else f"VF {VF0}"
        assert reason.startswith(f"cannot set NVIDIA vGPU type {H200_1428} on {on}: "
                                 f"the VF cannot take type {H200_1428} now "
                                 f"(creatable now: {H200_1414} (NVIDIA H200X-1-18C)"), reason
        assert [e["error"] for e in lab.log.since(lmark, "hook.failed", name)] == [reason]
        # libvirt gave up at the hook: it never reached its own host device checks, and still ran release
        assert lab.dlog.calls(dmark, name, lab.hook) == FAILED_START
        assert PCI_CHECK not in lab.dlog.text(dmark)
        assert lab.log.acting_calls(lmark, name) == ["prepare", "release"]
        assert lab.any_writes(mark) == []  # refused before any write; release had nothing to clear
        assert current(lab.fs, VF0) == "0" and current(lab.fs, VF1) == H200_1414  # the other VF's slice untouched
        assert _ledger(lab) == []
        lvlab.EVIDENCE.append(f"[{lab.layout}] nvidia-vf on a full GPU naming {'PF' if named == PF else 'VF'}: "
                              f"virsh start refused by the hook, 0 writes: {reason}")
    finally:
        lab.fs.write(vf1_type, "0")
