"""The SR-IOV VF choice (pick_vf) on a materialized A40: first VF in PCI address order with a free instance."""

from __future__ import annotations

import pytest
from support.host import UnitHost
from support.ids import A40_565, A40_566, PF, U1, U3, VF0, VF1, VF2
from support.product import Env, ManagedMdev, make_env, pick_vf, sriov_vfs, step_device


def env(host: UnitHost) -> Env:
    return make_env(str(host.sysfs), str(host.state_dir))  # pick_vf only reads: a shared host will do


def test_vfs_of_the_pf_in_pci_address_order(a40: UnitHost) -> None:
    vfs = sriov_vfs(env(a40), PF)
    assert vfs is not None and len(vfs) == 32
    assert vfs[:5] == [VF0, VF1, VF2, "0000:41:00.7", "0000:41:01.0"]  # not virtfnN name order (virtfn10 < virtfn2)
    assert sriov_vfs(env(a40), VF0) is None  # a VF is an mdev parent itself, not a PF


def test_first_free_vf_and_the_reason(a40_busy: UnitHost) -> None:
    e = env(a40_busy)
    vfs = sriov_vfs(e, PF) or []
    taken: set[str] = set()
    step = pick_vf(e, ManagedMdev(U1, PF, A40_565), vfs, taken)
    assert (step.problem, step_device(step).parent, step.pf, step.available) == (None, VF1, PF, 1)
    assert step.choice is not None and step.choice.endswith("; 1 before it taken or full")
    assert taken == {VF1}
    again = pick_vf(e, ManagedMdev(U3, PF, A40_565), vfs, taken)  # the same domain's next device
    assert step_device(again).parent == VF2 and taken == {VF1, VF2}


@pytest.mark.parametrize(("mtype", "expected"), [
    (A40_566, "no VF of PF 0000:41:00.0 has a free instance of type nvidia-566 (32 VFs; vGPUs on them: 1 x "
              "nvidia-565"),
    ("nvidia-999", "none of the 32 VFs of PF 0000:41:00.0 offers type nvidia-999"),
])
def test_no_vf_fits(a40_busy: UnitHost, mtype: str, expected: str) -> None:
    e = env(a40_busy)  # the GPU holds one vGPU type at a time
    step = pick_vf(e, ManagedMdev(U1, PF, mtype), sriov_vfs(e, PF) or [], set())
    assert step.problem is not None and expected in step.problem
    assert step_device(step).parent == PF and step.pf == PF
