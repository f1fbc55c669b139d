"""The fault scenarios of test_faults_mdev_*.py for NVIDIA's vendor interface (kind="nvidia-vf") on an H200X: a
two-VF domain next to a VF of another domain and a VF set by someone else on the same GPU, the hook always run as
libvirt runs it; killed at every step, every errno of the type write and the clear, a VF unbound from nvidia.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fakesysfs.harness import FakeSysfs
from support.faultmatrix import (
    CONFIG,
    KILLED,
    Matrix,
    Result,
    Tally,
    expect,
    outside_writes,
    read_claims,
    subproc,
    vf_tally,
    vf_type,
    vf_writes,
)
from support.faultworld import VF_KILLS, prepare_kills, release_kills
from support.hookrun import HookEnv
from support.ids import DOM_A, DOM_B, H200_1414, PF, VF0, VF1, VF2, VF3
from support.nvidia_vf import vf_xml

# ---- 4. NVIDIA's vendor vGPU interface (kind="nvidia-vf") ---------------------------------------------------------

VGPU = "bus/pci/devices/{}/nvidia/current_vgpu_type"
A_VFS = (VF0, VF1)  # domain A's: VF0 named by its entry, VF1 taken by the entry naming the PF


@dataclass
class VfWorld:
    """An H200X (PF, 4 VFs): domain A (the one we break) has VF0 and VF1, domain B has VF2 (set by the hook), and
    someone else set VF3 (the test's own write). All four hold the 1-18C slice type, the only one that fits them
    all on one GPU. The hook is always a subprocess: its journaled pid is never the test's."""

    fs: FakeSysfs
    h: HookEnv
    protected: dict[str, str] = field(default_factory=dict)  # VF -> type it must keep
    mark: int = 0
    runs: int = 0
    xml_a: bytes = vf_xml("vmA", DOM_A, [(VF0, H200_1414), (PF, H200_1414)], list(A_VFS))
    xml_b: bytes = vf_xml("vmB", DOM_B, [(VF2, H200_1414)], [VF2])

    def proc(self, op: str, **env: str) -> Result:
        self.runs += 1
        return subproc(self.h, "vmA", op, "begin" if op == "prepare" else "end", self.xml_a, **env)

    def set_of_a(self) -> list[str]:
        """A's VFs that hold a vGPU type now (as the fake reads them)."""
        return [vf for vf in A_VFS if vf_type(self.fs, vf) != "0"]

    def claims_of_a(self) -> list[str]:
        return sorted(k for k, c in read_claims(self.h).items() if c.get("domain_uuid") == DOM_A)

    def writes(self) -> list[tuple[str, str, str]]:
        """(VF, data, result) of the hook's current_vgpu_type writes in the scenario."""
        return [(e["parent"], e["data"], e["result"]) for e in vf_writes(self.fs, self.mark)]

    def tally(self) -> Tally:
        assert outside_writes(self.fs) == []
        return vf_tally(self.fs, self.protected, self.mark)

    def assert_clean(self) -> None:
        """A's VFs back at 0 and no claim of A; B's VF and the foreign one as they were, B's claim untouched."""
        assert self.set_of_a() == [] and self.claims_of_a() == []
        assert {vf: vf_type(self.fs, vf) for vf in self.protected} == self.protected
        assert read_claims(self.h)[VF2]["domain_uuid"] == DOM_B


@pytest.fixture
def vf_world(fakesysfs: Callable[..., FakeSysfs], tmp_path: Path) -> VfWorld:
    fs = fakesysfs("nvidia-h200x-vendor-vfio")
    h = HookEnv(tmp_path / "hook", fs.root, CONFIG)
    w = VfWorld(fs, h)
    fs.write(VGPU.format(VF3), H200_1414)  # someone else's (another tool): no claim
    subproc(h, "vmB", "prepare", "begin", w.xml_b).ok()
    w.protected = {VF2: H200_1414, VF3: H200_1414}
    w.mark = len(fs.journal())
    return w


# (kill point, how many of A's VFs hold a type when it fires, matrix row)
VF_PREPARE_KILLS = prepare_kills(VF_KILLS)
VF_RELEASE_KILLS = release_kills(VF_KILLS)
expect(*(row for _, _, row in VF_PREPARE_KILLS),
       "VF: SIGKILL in prepare, during rollback (after clearing the 1st)",
       "VF: SIGKILL inside the type write() (the kernel finishes it)",
       *(row for _, _, row in VF_RELEASE_KILLS))


@pytest.mark.parametrize(("point", "alive", "row"), VF_PREPARE_KILLS, ids=[p for p, _, _ in VF_PREPARE_KILLS])
def test_vf_sigkill_in_prepare_then_release(vf_world: VfWorld, matrix: Matrix, point: str, alive: int,
                                            row: str) -> None:
    w = vf_world
    r = w.proc("prepare", MDEV_HOOKS_TEST_KILL_AT=point)
    assert r.returncode == KILLED and r.stdout == b"", r
    assert len(w.set_of_a()) == alive  # the kill point fired where it says
    w.proc("release").ok()  # libvirt: a failed prepare is followed by `release end`
    w.assert_clean()
    w.proc("prepare").ok()  # and the domain starts again
    assert w.set_of_a() == list(A_VFS)
    w.proc("release").ok()
    w.assert_clean()
    matrix.record("nvidia-vf", row, w.tally(), injected=1, runs=w.runs,
                  outcome="killed; release exit 0, next start exit 0")


def test_vf_sigkill_during_rollback(vf_world: VfWorld, matrix: Matrix) -> None:
    w = vf_world
    w.fs.control(cmd="fail", op="create", parent=VF1, errno="EIO")
    r = w.proc("prepare", MDEV_HOOKS_TEST_KILL_AT="rolled_back")
    assert r.returncode == KILLED, r
    assert w.writes() == [(VF0, "b'1414'", "ok"), (VF1, "b'1414'", "EIO"), (VF0, "b'0'", "ok")]
    assert w.claims_of_a() == [VF0, VF1]  # killed between the clear of VF0 and the drop of the claims
    w.proc("release").ok()
    w.assert_clean()
    assert len(w.writes()) == 3  # nothing left to clear
    matrix.record("nvidia-vf", "VF: SIGKILL in prepare, during rollback (after clearing the 1st)", w.tally(),
                  injected=2, runs=w.runs, outcome="killed; release exit 0")


def test_vf_sigkill_inside_the_type_write(vf_world: VfWorld, matrix: Matrix) -> None:
    """SIGKILL while the hook is inside the write() of the type id: the driver finishes it, the hook never sees
    the answer; only an intent is in the ledger when libvirt's release runs."""
    w = vf_world
    w.fs.control(cmd="delay", op="create", parent=VF0, ms=800)
    w.runs += 1
    p = w.h.start("vmA", "prepare", "begin", w.xml_a)
    deadline = time.monotonic() + 10
    while vf_type(w.fs, VF0) != H200_1414:  # set; the write() has not returned yet
        assert time.monotonic() < deadline and p.poll() is None
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL)
    assert p.wait() == KILLED
    w.fs.control(cmd="reset")
    assert read_claims(w.h)[VF0]["state"] == "intent" and w.set_of_a() == [VF0]
    w.proc("release").ok()
    w.assert_clean()
    assert w.writes()[-1] == (VF0, "b'0'", "ok")
    matrix.record("nvidia-vf", "VF: SIGKILL inside the type write() (the kernel finishes it)", w.tally(),
                  injected=1, runs=w.runs, outcome="release clears it (intent in the ledger); exit 0")


@pytest.mark.parametrize(("point", "alive", "row"), VF_RELEASE_KILLS, ids=[p for p, _, _ in VF_RELEASE_KILLS])
def test_vf_sigkill_in_release_then_release_again(vf_world: VfWorld, matrix: Matrix, point: str, alive: int,
                                                  row: str) -> None:
    w = vf_world
    w.proc("prepare").ok()
    r = w.proc("release", MDEV_HOOKS_TEST_KILL_AT=point)
    assert r.returncode == KILLED, r
    assert len(w.set_of_a()) == alive
    w.proc("release").ok()  # e.g. `mdev-hooks gc`, or the release of the next stop
    w.assert_clean()
    matrix.record("nvidia-vf", row, w.tally(), injected=1, runs=w.runs, outcome="killed; release again exit 0")


SET_ERRNOS = ["EINVAL", "EBUSY", "EIO", "ENODEV"]
CLEAR_TRANSIENT = ["EBUSY", "EAGAIN"]
expect(*(f"VF: type write fails {e} (2nd of 2 VFs)" for e in SET_ERRNOS),
       *(f"VF: clear (write 0) fails {e} twice (transient)" for e in CLEAR_TRANSIENT),
       "VF: clear fails EBUSY until remove_timeout",
       "VF: clear fails EIO (persistent) until lifted",
       "VF: unbound from nvidia (on vfio-pci) at release",
       "VF: unbound from nvidia at prepare",
       "VF: unbound from nvidia while its type write is in flight")


@pytest.mark.parametrize("name", SET_ERRNOS)
def test_vf_type_write_errno_rolls_back_the_first(vf_world: VfWorld, matrix: Matrix, name: str) -> None:
    w = vf_world
    w.fs.control(cmd="fail", op="create", parent=VF1, errno=name)
    r = w.proc("prepare")
    assert r.returncode == 1 and r.stdout == b""
    line = r.line()
    assert f"VF {VF1}" in line and f"({name})" in line and "current_vgpu_type" in line, line
    assert w.writes() == [(VF0, "b'1414'", "ok"), (VF1, "b'1414'", name), (VF0, "b'0'", "ok")]
    assert w.claims_of_a() == []
    w.proc("release").ok()  # what libvirt sends next: nothing left to do
    assert len(w.writes()) == 3
    w.assert_clean()
    matrix.record("nvidia-vf", f"VF: type write fails {name} (2nd of 2 VFs)", w.tally(), injected=1, runs=w.runs,
                  outcome="exit 1, one line; 1st VF cleared")


@pytest.mark.parametrize("name", CLEAR_TRANSIENT)
def test_vf_clear_transient_errors_are_retried(vf_world: VfWorld, matrix: Matrix, name: str) -> None:
    w = vf_world
    w.proc("prepare").ok()
    w.fs.control(cmd="fail", op="remove", parent=VF0, errno=name, count=2)
    w.proc("release").ok()
    w.assert_clean()
    assert [x[1:] for x in w.writes() if x[0] == VF0][1:] == [("b'0'", name), ("b'0'", name), ("b'0'", "ok")]
    matrix.record("nvidia-vf", f"VF: clear (write 0) fails {name} twice (transient)", w.tally(), injected=2,
                  runs=w.runs, outcome="retried with backoff; exit 0")


def test_vf_clear_ebusy_is_bounded_by_remove_timeout(vf_world: VfWorld, matrix: Matrix) -> None:
    w = vf_world
    w.proc("prepare").ok()
    w.h.write(CONFIG.replace("remove_timeout = 2", "remove_timeout = 0.5"))
    w.fs.control(cmd="fail", op="remove", parent=VF0, errno="EBUSY", count=-1)
    r = w.proc("release")
    assert r.returncode == 1
    line = r.line()
    tries = [x for x in w.writes() if x[0] == VF0 and x[1] == "b'0'"]
    assert 2 <= len(tries) <= 8 and all(x[2] == "EBUSY" for x in tries), tries
    assert f"could not clear vGPU type {H200_1414} on VF {VF0}" in line and "EBUSY" in line, line
    assert w.claims_of_a() == [VF0] and w.set_of_a() == [VF0]  # kept; VF1 cleared
    w.fs.control(cmd="reset")
    w.proc("release").ok()
    w.assert_clean()
    matrix.record("nvidia-vf", "VF: clear fails EBUSY until remove_timeout", w.tally(), injected=len(tries),
                  runs=w.runs, outcome="exit 1 after remove_timeout, claim kept; next release exit 0")


def test_vf_clear_eio_keeps_the_claim_until_the_next_release(vf_world: VfWorld, matrix: Matrix) -> None:
    w = vf_world
    w.proc("prepare").ok()
    w.fs.control(cmd="fail", op="remove", parent=VF0, errno="EIO", count=-1)
    r = w.proc("release")
    assert r.returncode == 1
    line = r.line()
    assert f"could not clear vGPU type {H200_1414} on VF {VF0}" in line and "(EIO" in line, line
    assert f"echo 0 > /sys/bus/pci/devices/{VF0}/nvidia/current_vgpu_type" in line, line
    assert w.writes()[2:] == [(VF1, "b'0'", "ok"), (VF0, "b'0'", "EIO")]  # no retry; the other VF still cleared
    assert w.claims_of_a() == [VF0] and w.set_of_a() == [VF0]
    again = w.proc("release")  # still failing: the same line, nothing forgotten
    assert again.returncode == 1 and again.line() == line and w.claims_of_a() == [VF0]
    failed = [x for x in w.writes() if x[2] != "ok"]
    assert failed == [(VF0, "b'0'", "EIO")] * 2
    w.fs.control(cmd="reset")  # the fault is lifted
    w.proc("release").ok()  # the retry the line asks for
    w.assert_clean()
    matrix.record("nvidia-vf", "VF: clear fails EIO (persistent) until lifted", w.tally(), injected=len(failed),
                  runs=w.runs, outcome="exit 1, one line, claim kept, other VF cleared; release after exit 0")


def test_vf_unbound_at_release(vf_world: VfWorld, matrix: Matrix) -> None:
    w = vf_world
    w.proc("prepare").ok()
    w.fs.control(cmd="unbind", vf=VF0)  # libvirt could not give it back to nvidia after the VM
    r = w.proc("release")
    assert r.returncode == 1
    line = r.line()
    assert f"could not clear vGPU type {H200_1414} on VF {VF0}" in line, line
    assert "virsh nodedev-reattach pci_0000_41_00_4" in line, line
    assert w.writes()[2:] == [(VF1, "b'0'", "ok")] and w.claims_of_a() == [VF0]
    w.fs.control(cmd="bind", vf=VF0)  # reattached
    assert vf_type(w.fs, VF0) == H200_1414
    w.proc("release").ok()
    w.assert_clean()
    matrix.record("nvidia-vf", "VF: unbound from nvidia (on vfio-pci) at release", w.tally(), injected=1,
                  runs=w.runs, outcome="exit 1, one line (reattach), claim kept; release after bind exit 0")


def test_vf_unbound_at_prepare(vf_world: VfWorld, matrix: Matrix) -> None:
    w = vf_world
    w.fs.control(cmd="unbind", vf=VF1)
    r = w.proc("prepare")
    assert r.returncode == 1 and f"{VF1} has no nvidia/current_vgpu_type" in r.line()
    assert w.writes() == [] and w.claims_of_a() == []
    w.proc("release").ok()
    w.fs.control(cmd="bind", vf=VF1)
    w.assert_clean()
    matrix.record("nvidia-vf", "VF: unbound from nvidia at prepare", w.tally(), injected=1, runs=w.runs,
                  outcome="exit 1, one line; no sysfs write")


def test_vf_unbound_while_its_type_write_is_in_flight(vf_world: VfWorld, matrix: Matrix) -> None:
    """VF1 leaves the nvidia driver while the hook is inside its write: the read-back fails; the rollback clears VF0
    but must not take VF1's missing file for "cleared" (its type is still set): the claim stays, release names the
    reattach command, and after the bind release clears it."""
    w = vf_world
    w.fs.control(cmd="delay", op="create", parent=VF1, ms=800)
    w.runs += 1
    p = w.h.start("vmA", "prepare", "begin", w.xml_a)
    deadline = time.monotonic() + 30
    while vf_type(w.fs, VF1) != H200_1414 and time.monotonic() < deadline:
        time.sleep(0.01)
    w.fs.control(cmd="unbind", vf=VF1)
    assert p.wait(60) == 1
    assert vf_type(w.fs, VF0) == "0" and w.claims_of_a() == [VF1]
    r = w.proc("release")
    assert r.returncode == 1 and "virsh nodedev-reattach pci_0000_41_00_5" in r.line()
    w.fs.control(cmd="bind", vf=VF1)
    w.proc("release").ok()
    w.assert_clean()
    matrix.record("nvidia-vf", "VF: unbound from nvidia while its type write is in flight", w.tally(), injected=1,
                  runs=w.runs, outcome="exit 1, VF0 rolled back, VF1's claim kept; release after bind exit 0")

