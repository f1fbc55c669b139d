"""`mdev-hooks plan` for NVIDIA GPUs: an SR-IOV PF as parent (which VF, and why) and vGPU 17+ VFs (kind="nvidia-vf").

The A40 (32 VFs) hosts are shared read-only between tests (fixtures a40, a40_busy): plan only reads."""

from __future__ import annotations

import json

from support.asserts import one_line
from support.domxml import PciHostdev, VgpuEntry, domain_xml, mdev
from support.host import MakeHost, UnitHost
from support.ids import A40_565, A40_566, DOM_A, DOM_B, H200_1414, H200_1428, NAME_A, NAME_B, PF, U1, U2, U3, VF0, VF1

H200 = ["nvidia-h200x-vendor-vfio"]
WHY = "the first of the 32 VFs of PF 0000:41:00.0, in address order, with a free instance of {t}{before}"


def test_pf_parent_takes_the_first_vf_with_a_free_instance(a40: UnitHost) -> None:
    r = a40.plan(domain_xml(NAME_A, DOM_A, [mdev(U1, PF, A40_565)]), "--json")
    assert (r.code, r.err) == (0, ""), r
    [m] = json.loads(r.out)["mdevs"]
    assert (m["parent"], m["pf"], m["vf_choice"]) == (VF0, PF, WHY.format(t=A40_565, before=""))


def test_pf_parent_skips_a_vf_in_use_and_says_so(a40_busy: UnitHost) -> None:
    h = a40_busy
    r = h.plan(domain_xml(NAME_A, DOM_A, [mdev(U1, PF, A40_565)]))
    assert (r.code, r.err) == (0, ""), r
    why = WHY.format(t=A40_565, before="; 1 before it taken or full")
    assert f"create mdev {U1} on VF {VF1} of PF {PF} ({why}): write it to {h.sysfs}/class/mdev_bus/{VF1}/" in r.out


def test_pf_parent_two_devices_of_one_domain_get_two_vfs(a40: UnitHost) -> None:
    r = a40.plan(domain_xml(NAME_A, DOM_A, [mdev(U1, PF, A40_565), mdev(U2, PF, A40_565)]), "--json")
    assert r.code == 0, r
    assert [m["parent"] for m in json.loads(r.out)["mdevs"]] == [VF0, VF1]


def test_pf_parent_gpu_holding_another_type(a40_busy: UnitHost) -> None:
    r = a40_busy.plan(domain_xml(NAME_A, DOM_A, [mdev(U1, PF, A40_566)]))  # 566 is the whole GPU; 565 is on it
    assert r.code == 1
    assert one_line(r.err) == (
        f"cannot create mdev {U1} (type {A40_566} on PF {PF}): no VF of PF {PF} has a free instance of type "
        f"{A40_566} (32 VFs; vGPUs on them: 1 x {A40_565}; on NVIDIA: per-GPU maximum reached, or another type "
        "already on the GPU)")


def test_pf_parent_existing_device_on_a_vf_is_adopted_there(a40_busy: UnitHost) -> None:
    r = a40_busy.plan(domain_xml(NAME_A, DOM_A, [mdev(U2, PF, A40_565)]), "--json")
    assert r.code == 0, r
    [m] = json.loads(r.out)["mdevs"]
    assert (m["parent"], m["action"], m["vf_choice"]) == (VF0, "adopt", f"the device exists on VF {VF0} of PF {PF}")


def test_pf_parent_type_offered_by_no_vf(a40: UnitHost) -> None:
    r = a40.plan(domain_xml(NAME_A, DOM_A, [mdev(U1, PF, "nvidia-999")]))
    assert r.code == 1
    assert f"none of the 32 VFs of PF {PF} offers type nvidia-999 (offered: nvidia-555, " in one_line(r.err)


def vgpu_dom(type_id: str, vf: str = VF0, parent: str = PF) -> bytes:
    return domain_xml(NAME_A, DOM_A, [VgpuEntry(parent, type_id), PciHostdev(vf)])


def test_nvidia_vf_sets_the_type_on_the_domains_vf(make_host: MakeHost) -> None:
    h = make_host(H200)
    r = h.plan(vgpu_dom(H200_1414, VF1))
    assert (r.code, r.err) == (0, ""), r
    assert (f"1. set NVIDIA vGPU type {H200_1414} on VF {VF1} of PF {PF}: write {H200_1414} to "
            f"{h.sysfs}/bus/pci/devices/{VF1}/nvidia/current_vgpu_type; libvirt then gives the VF to the VM") in r.out


def test_nvidia_vf_bound_to_a_type_already_is_adopted_or_kept(make_host: MakeHost) -> None:
    h = make_host(H200, vgpus={VF0: H200_1414})
    r = h.plan(vgpu_dom(H200_1414), "--json")
    assert r.code == 0, r
    assert json.loads(r.out)["mdevs"][0]["action"] == "adopt"
    h.claim(VF0, DOM_A, NAME_A, VF0, H200_1414, kind="nvidia-vf", pf=PF)
    r = h.plan(vgpu_dom(H200_1414))
    assert r.code == 0, r
    assert f"keep vGPU type {H200_1414} on VF {VF0} of PF {PF}: the hook already set it for this domain" in r.out


def test_nvidia_vf_not_creatable_now(make_host: MakeHost) -> None:
    r = make_host(H200, vgpus={VF1: H200_1428}).plan(vgpu_dom(H200_1414))
    assert r.code == 1
    assert one_line(r.err) == (
        f"cannot set NVIDIA vGPU type {H200_1414} on VF {VF0} of PF {PF}: the VF cannot take type {H200_1414} now "
        "(creatable now: none: the GPU is full; the list shrinks as the GPU fills, and a GPU holds one vGPU type at "
        "a time)")


def test_nvidia_vf_owned_by_another_domain(make_host: MakeHost) -> None:
    h = make_host(H200, vgpus={VF0: H200_1414})
    h.claim(VF0, DOM_B, NAME_B, VF0, H200_1414, kind="nvidia-vf", pf=PF)
    r = h.plan(vgpu_dom(H200_1414))
    assert r.code == 1
    assert one_line(r.err) == (f"cannot use VF {VF0}: the ledger gives it to domain {NAME_B} ({DOM_B}); two domains "
                               "cannot share a VF")


def test_mdev_hostdev_on_a_vendor_vfio_vf_says_how_to_opt_in(make_host: MakeHost) -> None:
    r = make_host(H200).plan(domain_xml(NAME_A, DOM_A, [mdev(U3, VF0, "nvidia-1428")]))
    assert r.code == 1
    line = one_line(r.err)
    assert f"{VF0} uses NVIDIA's vendor-specific vGPU interface" in line and 'kind="nvidia-vf"' in line
    assert "not found" not in line
