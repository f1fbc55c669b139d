"""Issue 8 item 5: NVIDIA's vendor-specific vGPU interface (vGPU 17+, kernel >= 6.8; not mdev), behind the opt-in
`<device kind="nvidia-vf" parent="PF or VF" type="ID"/>` for a `<hostdev type='pci' managed='yes'>`.

The real hook (subprocess, libvirt's environment) and the real CLI against the FUSE fake's H200X profile: VFs
0000:41:00.4-.7 of PF 0000:41:00.0, each with nvidia/creatable_vgpu_types (shrinks as the GPU fills) and
nvidia/current_vgpu_type. What is checked is what the fake kernel saw (its journal) and what the VF files read.
The fake's errnos for current_vgpu_type (EINVAL: not creatable now, EBUSY: a type is already set) are our guess:
NVIDIA documents none.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.asserts import one_line
from support.common import cli_without_virsh as cli
from support.hookrun import HookEnv
from support.ids import DOM_A, DOM_B, H200_1414, H200_1428, PF, VF0, VF1, VF2, VF3
from support.nvidia_vf import creatable, current, vf_xml, vgpu_writes


@pytest.fixture
def h200(fakesysfs: Callable[..., Any], tmp_path: Path) -> tuple[Any, HookEnv]:
    fs = fakesysfs("nvidia-h200x-vendor-vfio")
    return fs, HookEnv(tmp_path / "hook", fs.root)


@pytest.mark.parametrize("named", [VF0, PF])
@pytest.mark.parametrize("prefixed", [True, False])
def test_type_written_before_start_and_zero_after_stop(h200: tuple[Any, HookEnv], named: str,
                                                       prefixed: bool) -> None:
    fs, h = h200
    doc = vf_xml("guest1", DOM_A, [(named, H200_1428)], [VF0], prefixed=prefixed)
    r = h.run("guest1", "prepare", "begin", doc)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    assert vgpu_writes(fs) == [(VF0, repr(H200_1428.encode()), "ok")]  # the id, no newline (vgpu-device-manager)
    assert current(fs, VF0) == H200_1428
    assert creatable(fs, VF1) == []  # 141C takes the whole GPU: the other VFs can take nothing now
    claim = json.loads((h.state_dir / f"{VF0}.json").read_text())
    assert {k: claim[k] for k in ("key", "kind", "parent", "pf", "type", "state", "domain_uuid")} == {
        "key": VF0, "kind": "nvidia-vf", "parent": VF0, "pf": PF, "type": H200_1428, "state": "created",
        "domain_uuid": DOM_A}
    st = cli(h, "status")
    assert st.returncode == 0, st.stderr
    row = next(line for line in st.stdout.splitlines() if line.strip().startswith(VF0) and "guest1" in line)
    assert f"VF of {PF}" in row and f"vGPU {H200_1428}" in row and "created" in row
    # libvirt's other calls for the domain touch nothing
    for op, sub in (("start", "begin"), ("started", "begin"), ("stopped", "end")):
        assert h.run("guest1", op, sub, doc).returncode == 0
    assert h.run("guest1", "release", "end", doc).returncode == 0
    assert vgpu_writes(fs)[1:] == [(VF0, "b'0'", "ok")]
    assert current(fs, VF0) == "0" and creatable(fs, VF1) == [H200_1428, H200_1414]
    assert h.ledger() == []
    events = [e["event"] for e in h.events()]
    assert "nvidia_vf.set" in events and "nvidia_vf.cleared" in events
    # release is idempotent: nothing more is written
    assert h.run("guest1", "release", "end", doc).returncode == 0 and len(vgpu_writes(fs)) == 2


def test_pf_entries_take_the_domains_vfs_in_document_order(h200: tuple[Any, HookEnv]) -> None:
    fs, h = h200
    # three 1-18C slices on one GPU: the domain's hostdevs say which VFs (the hook never picks a VF itself)
    doc = vf_xml("guest1", DOM_A, [(PF, H200_1414), (PF, H200_1414), (VF1, H200_1414)], [VF2, VF1, VF3])
    r = h.run("guest1", "prepare", "begin", doc)
    assert r.returncode == 0, r.stderr
    # VF1 is named by its own entry; the PF entries take the remaining hostdevs in document order (VF2, VF3);
    # the writes go in the hostdevs' document order
    assert vgpu_writes(fs) == [(VF2, "b'1414'", "ok"), (VF1, "b'1414'", "ok"), (VF3, "b'1414'", "ok")]
    assert [current(fs, v) for v in (VF0, VF1, VF2, VF3)] == ["0", H200_1414, H200_1414, H200_1414]
    assert creatable(fs, VF0) == [H200_1414]  # one type per GPU: 141C no longer fits
    assert h.run("guest1", "release", "end", doc).returncode == 0
    # removal in reverse order of creation
    assert [w[0] for w in vgpu_writes(fs)[3:]] == [VF3, VF1, VF2]
    assert [current(fs, v) for v in (VF0, VF1, VF2, VF3)] == ["0"] * 4 and h.ledger() == []


def test_type_not_creatable_now_fails_with_what_is_creatable_and_writes_nothing(h200: tuple[Any, HookEnv]) -> None:
    fs, h = h200
    assert h.run("a", "prepare", "begin", vf_xml("a", DOM_A, [(VF0, H200_1414)], [VF0])).returncode == 0
    r = h.run("b", "prepare", "begin", vf_xml("b", DOM_B, [(PF, H200_1428)], [VF1]))
    err = one_line(r.stderr)
    assert r.returncode == 1 and r.stdout == b""
    assert f"NVIDIA vGPU type {H200_1428} on VF {VF1} of PF {PF}" in err and "cannot take type 1428 now" in err
    assert f"creatable now: {H200_1414} (NVIDIA H200X-1-18C)" in err
    assert len(vgpu_writes(fs)) == 1 and current(fs, VF1) == "0"
    assert h.ledger() == [f"{VF0}.json"]


def test_rollback_of_second_vf_clears_the_first_and_names_the_errno(h200: tuple[Any, HookEnv]) -> None:
    fs, h = h200
    fs.control(cmd="fail", op="create", parent=VF1, errno="EIO")
    doc = vf_xml("guest1", DOM_A, [(VF0, H200_1414), (VF1, H200_1414), (VF2, H200_1414)], [VF0, VF1, VF2])
    r = h.run("guest1", "prepare", "begin", doc)
    err = one_line(r.stderr)
    assert r.returncode == 1 and f"VF {VF1}" in err and "EIO" in err and "current_vgpu_type" in err
    assert vgpu_writes(fs) == [(VF0, "b'1414'", "ok"), (VF1, "b'1414'", "EIO"), (VF0, "b'0'", "ok")]
    assert [current(fs, v) for v in (VF0, VF1, VF2)] == ["0", "0", "0"] and h.ledger() == []
    assert h.run("guest1", "release", "end", doc).returncode == 0 and len(vgpu_writes(fs)) == 3


def test_busy_vf_set_by_someone_else_is_refused_and_never_cleared(h200: tuple[Any, HookEnv]) -> None:
    fs, h = h200
    fs.write(f"bus/pci/devices/{VF0}/nvidia/current_vgpu_type", H200_1414)  # another tool set it (actor external)
    r = h.run("guest1", "prepare", "begin", vf_xml("guest1", DOM_A, [(VF0, H200_1428)], [VF0]))
    err = one_line(r.stderr)
    assert r.returncode == 1 and f"already has vGPU type {H200_1414}" in err
    assert h.run("guest1", "release", "end", vf_xml("guest1", DOM_A, [(VF0, H200_1428)], [VF0])).returncode == 0
    assert vgpu_writes(fs) == [] and current(fs, VF0) == H200_1414


def test_vf_already_set_to_the_type_is_adopted_and_left_set(h200: tuple[Any, HookEnv]) -> None:
    fs, h = h200
    fs.write(f"bus/pci/devices/{VF0}/nvidia/current_vgpu_type", H200_1414)
    doc = vf_xml("guest1", DOM_A, [(PF, H200_1414)], [VF0])
    assert h.run("guest1", "prepare", "begin", doc).returncode == 0
    assert json.loads((h.state_dir / f"{VF0}.json").read_text())["state"] == "adopted"
    assert h.run("guest1", "release", "end", doc).returncode == 0
    assert vgpu_writes(fs) == [] and current(fs, VF0) == H200_1414 and h.ledger() == []


def test_two_domains_cannot_share_a_vf(h200: tuple[Any, HookEnv]) -> None:
    fs, h = h200
    assert h.run("a", "prepare", "begin", vf_xml("a", DOM_A, [(VF0, H200_1414)], [VF0])).returncode == 0
    r = h.run("b", "prepare", "begin", vf_xml("b", DOM_B, [(VF0, H200_1414)], [VF0]))
    err = one_line(r.stderr)
    assert r.returncode == 1 and f"VF {VF0}" in err and "ledger gives it to domain a" in err
    # b's release (libvirt runs it after the failed start) must not clear a's vGPU
    assert h.run("b", "release", "end", vf_xml("b", DOM_B, [(VF0, H200_1414)], [VF0])).returncode == 0
    assert current(fs, VF0) == H200_1414 and len(vgpu_writes(fs)) == 1


def test_concurrent_starts_on_one_gpu_are_serialised_by_the_pf_lock(h200: tuple[Any, HookEnv]) -> None:
    fs, h = h200
    fs.control(cmd="delay", op="create", ms=400)
    doms = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(4)]
    # each domain one 1-18C slice on its own VF; two name the VF, two the PF
    docs = [vf_xml(f"g{i}", d, [(PF if i % 2 else vf, H200_1414)], [vf])
            for i, (d, vf) in enumerate(zip(doms, (VF0, VF1, VF2, VF3)))]
    procs = [h.start(f"g{i}", "prepare", "begin", doc) for i, doc in enumerate(docs)]
    results = [(p.wait(60), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    assert all(rc == 0 for rc, _ in results), results
    sets = sorted((e for e in fs.journal() if e["op"] == "create" and e.get("actor") == "user"),
                  key=lambda e: e["t0"])
    assert len(sets) == 4
    for a, b in zip(sets, sets[1:]):
        assert b["t0"] >= a["t1"], "two vGPU type writes on one GPU overlapped: the PF lock did not hold"
    threads = [threading.Thread(target=h.run, args=(f"g{i}", "release", "end", doc)) for i, doc in enumerate(docs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [current(fs, v) for v in (VF0, VF1, VF2, VF3)] == ["0"] * 4 and h.ledger() == []


@pytest.mark.parametrize("point", ["locked", "intent_written", "intent_written:2", "created", "created:2",
                                   "verified", "ledger_updated", "rolled_back"])
def test_prepare_killed_at_any_step_leaves_nothing_after_release(h200: tuple[Any, HookEnv], point: str) -> None:
    """SIGKILL at each step of a two-VF prepare (rolled_back: during the rollback after the 2nd VF's EIO), then
    libvirt's release: every VF back at 0, no claim left; a VF set by someone else never touched."""
    fs, h = h200
    fs.write(f"bus/pci/devices/{VF3}/nvidia/current_vgpu_type", H200_1414)  # not ours
    if point == "rolled_back":
        fs.control(cmd="fail", op="create", parent=VF1, errno="EIO")
    doc = vf_xml("guest1", DOM_A, [(VF0, H200_1414), (PF, H200_1414)], [VF0, VF1])
    r = h.run("guest1", "prepare", "begin", doc, MDEV_HOOKS_TEST_KILL_AT=point)
    assert r.returncode == -9, (point, r.stderr)
    assert h.run("guest1", "release", "end", doc).returncode == 0
    assert [current(fs, v) for v in (VF0, VF1, VF2, VF3)] == ["0", "0", "0", H200_1414] and h.ledger() == []
    # and the domain starts again afterwards
    assert h.run("guest1", "prepare", "begin", doc).returncode == 0
    assert [current(fs, v) for v in (VF0, VF1)] == [H200_1414, H200_1414]


@pytest.mark.parametrize("point", ["release_locked", "removed"])
def test_release_killed_midway_is_finished_by_the_next_release(h200: tuple[Any, HookEnv], point: str) -> None:
    fs, h = h200
    doc = vf_xml("guest1", DOM_A, [(VF0, H200_1414), (VF1, H200_1414)], [VF0, VF1])
    assert h.run("guest1", "prepare", "begin", doc).returncode == 0
    assert h.run("guest1", "release", "end", doc, MDEV_HOOKS_TEST_KILL_AT=point).returncode == -9
    assert h.run("guest1", "release", "end", doc).returncode == 0
    assert [current(fs, v) for v in (VF0, VF1)] == ["0", "0"] and h.ledger() == []


@pytest.mark.parametrize(("entries", "hostdevs", "managed", "why"), [
    ([("0000:42:00.0", H200_1428)], [VF0], "yes", "a PF the hostdev's VF does not belong to"),
    ([(VF1, H200_1428)], [VF0], "yes", "a VF the domain has no hostdev for"),
    ([(VF0, H200_1428)], [VF0], "no", "an unmanaged hostdev: the user's own"),
])
def test_entry_without_its_managed_hostdev_is_ignored_with_a_warning(
        h200: tuple[Any, HookEnv], entries: list[tuple[str, str]], hostdevs: list[str], managed: str,
        why: str) -> None:
    fs, h = h200
    doc = vf_xml("guest1", DOM_A, entries, hostdevs, managed=managed)
    assert h.run("guest1", "prepare", "begin", doc).returncode == 0, why
    assert vgpu_writes(fs) == [] and h.ledger() == []
    assert any(e["event"] == "metadata.unused" and e.get("kind") == "nvidia-vf" for e in h.events()), why


@pytest.mark.parametrize(("entry", "expect"), [
    ('<mdev:device kind="nvidia-vf" parent="0000:41:00.4" type="nvidia-1428"/>', "is not a vGPU type id"),
    ('<mdev:device kind="nvidia-vf" parent="0000:41:00.4" type="0"/>', "is not a vGPU type id"),
    ('<mdev:device kind="nvidia-vf" parent="../../../etc" type="1428"/>', "parent must be the PCI address"),
    ('<mdev:device kind="nvidia-vf" parent="0000:41:00.4" type="1428"><mdev:attr name="a" value="1"/></mdev:device>',
     "<attr> is for mdevs"),
    ('<mdev:device kind="nvidia_vf" parent="0000:41:00.4" type="1428"/>', "unknown kind"),
])
def test_bad_entries_are_one_line_errors(h200: tuple[Any, HookEnv], entry: str, expect: str) -> None:
    fs, h = h200
    doc = vf_xml("guest1", DOM_A, [], [VF0], extra_meta=entry)
    r = h.run("guest1", "prepare", "begin", doc)
    assert r.returncode == 1 and expect in one_line(r.stderr)
    assert vgpu_writes(fs) == []


def test_two_entries_for_one_vf_is_an_error(h200: tuple[Any, HookEnv]) -> None:
    fs, h = h200
    r = h.run("guest1", "prepare", "begin", vf_xml("guest1", DOM_A, [(VF0, H200_1428), (VF0, H200_1414)], [VF0]))
    assert r.returncode == 1 and "more than one" in one_line(r.stderr) and vgpu_writes(fs) == []


def test_dry_run_writes_nothing(h200: tuple[Any, HookEnv]) -> None:
    fs, h = h200
    h.write("dry_run = true")
    doc = vf_xml("guest1", DOM_A, [(PF, H200_1428)], [VF0])
    assert h.run("guest1", "prepare", "begin", doc).returncode == 0
    assert vgpu_writes(fs) == [] and h.ledger() == []
    assert any(e["event"] == "nvidia_vf.would_set" and e["vf"] == VF0 for e in h.events())


def test_plan_shows_the_vf_the_type_and_the_file_it_writes(h200: tuple[Any, HookEnv], tmp_path: Path) -> None:
    fs, h = h200
    path = tmp_path / "d.xml"
    path.write_bytes(vf_xml("guest1", DOM_A, [(PF, H200_1428)], [VF0]))
    r = cli(h, "plan", str(path))
    assert r.returncode == 0, r.stderr
    assert f"set NVIDIA vGPU type {H200_1428} on VF {VF0} of PF {PF}: write {H200_1428} to " \
        f"{fs.root}/bus/pci/devices/{VF0}/nvidia/current_vgpu_type" in r.stdout
    assert "NVIDIA H200X-141C" in r.stdout and "verdict: a start would succeed" in r.stdout
    j = json.loads(cli(h, "plan", "--json", str(path)).stdout)
    assert {k: j["mdevs"][0][k] for k in ("kind", "vf", "pf", "type", "action", "verdict")} == {
        "kind": "nvidia-vf", "vf": VF0, "pf": PF, "type": H200_1428, "action": "create", "verdict": "ok"}
    assert vgpu_writes(fs) == []
    # a GPU that cannot take it: plan says why, exit 1
    fs.write(f"bus/pci/devices/{VF1}/nvidia/current_vgpu_type", H200_1414)
    r = cli(h, "plan", str(path))
    assert r.returncode == 1 and "cannot take type 1428 now" in r.stdout


def test_policy_applies_to_the_named_parent(h200: tuple[Any, HookEnv]) -> None:
    fs, h = h200
    h.write('allowed_parents = ["0000:81:*"]')
    r = h.run("guest1", "prepare", "begin", vf_xml("guest1", DOM_A, [(PF, H200_1428)], [VF0]))
    assert r.returncode == 1 and "is not allowed by allowed_parents" in one_line(r.stderr)
    assert vgpu_writes(fs) == []


def test_status_lists_vendor_vfs_and_marks_external_types(h200: tuple[Any, HookEnv]) -> None:
    fs, h = h200
    fs.write(f"bus/pci/devices/{VF3}/nvidia/current_vgpu_type", H200_1414)
    assert h.run("g", "prepare", "begin", vf_xml("g", DOM_A, [(PF, H200_1414)], [VF0])).returncode == 0
    j = json.loads(cli(h, "status", "--json").stdout)
    by_vf = {v["vf"]: v for v in j["vgpu_vfs"]}
    assert set(by_vf) == {VF0, VF1, VF2, VF3} and by_vf[VF0]["current_type"] == H200_1414
    assert [c["type"] for c in by_vf[VF1]["creatable"]] == [H200_1414]
    owners = {d["uuid"]: d["owner"] for d in j["devices"] if d["kind"] == "nvidia-vf"}
    assert owners == {VF0: f"g ({DOM_A})", VF3: "external"}


def test_types_lists_what_each_vf_can_take_now(h200: tuple[Any, HookEnv]) -> None:
    fs, h = h200
    fs.write(f"bus/pci/devices/{VF0}/nvidia/current_vgpu_type", H200_1414)
    r = cli(h, "types", "--parent", PF)
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line for line in r.stdout.splitlines()[2:]}
    assert list(rows) == [VF0, VF1, VF2, VF3]
    assert rows[VF0].split()[2] == H200_1414 and "1414 NVIDIA H200X-1-18C" in rows[VF1] and "141C" not in rows[VF1]
    one = json.loads(cli(h, "types", "--json", "--parent", VF1).stdout)
    assert one == [{"vf": VF1, "pf": PF, "current_type": "0",
                    "creatable": [{"type": H200_1414, "name": "NVIDIA H200X-1-18C"}]}]


def test_release_while_the_vf_is_still_bound_to_vfio_pci_keeps_the_claim_and_says_what_to_do(
        h200: tuple[Any, HookEnv]) -> None:
    fs, h = h200
    doc = vf_xml("guest1", DOM_A, [(VF0, H200_1414)], [VF0])
    assert h.run("guest1", "prepare", "begin", doc).returncode == 0
    fs.control(cmd="unbind", vf=VF0)  # libvirt detached it for the VM and could not give it back to nvidia
    r = h.run("guest1", "release", "end", doc)
    err = one_line(r.stderr)
    assert r.returncode == 1 and f"could not clear vGPU type {H200_1414} on VF {VF0}" in err
    assert "virsh nodedev-reattach pci_0000_41_00_4" in err
    assert h.ledger() == [f"{VF0}.json"] and len(vgpu_writes(fs)) == 1
    fs.control(cmd="bind", vf=VF0)  # reattached: release (or gc) now clears it
    assert current(fs, VF0) == H200_1414
    assert h.run("guest1", "release", "end", doc).returncode == 0
    assert current(fs, VF0) == "0" and h.ledger() == []


def test_transient_ebusy_on_clear_is_retried(h200: tuple[Any, HookEnv]) -> None:
    fs, h = h200
    doc = vf_xml("guest1", DOM_A, [(VF0, H200_1414)], [VF0])
    assert h.run("guest1", "prepare", "begin", doc).returncode == 0
    fs.control(cmd="fail", op="remove", parent=VF0, errno="EBUSY", count=2)
    assert h.run("guest1", "release", "end", doc).returncode == 0
    assert [w[1:] for w in vgpu_writes(fs)[1:]] == [("b'0'", "EBUSY"), ("b'0'", "EBUSY"), ("b'0'", "ok")]
    assert current(fs, VF0) == "0" and h.ledger() == []


def test_persistent_clear_failure_is_one_line_with_the_command_and_keeps_the_claim(
        h200: tuple[Any, HookEnv]) -> None:
    fs, h = h200
    h.write("remove_timeout = 0.5")
    doc = vf_xml("guest1", DOM_A, [(VF0, H200_1414)], [VF0])
    assert h.run("guest1", "prepare", "begin", doc).returncode == 0
    fs.control(cmd="fail", op="remove", parent=VF0, errno="EIO", count=1)
    r = h.run("guest1", "release", "end", doc)
    err = one_line(r.stderr)
    assert r.returncode == 1 and "EIO" in err and f"echo 0 > /sys/bus/pci/devices/{VF0}/nvidia/current_vgpu_type" in err
    assert h.ledger() == [f"{VF0}.json"]


@pytest.mark.parametrize("op", ["migrate", "restore"])
def test_incoming_check_refuses_a_full_gpu_early_and_silently_on_stdout(h200: tuple[Any, HookEnv], op: str) -> None:
    fs, h = h200
    doc = vf_xml("guest1", DOM_A, [(PF, H200_1428)], [VF0])
    r = h.run("guest1", op, "begin", doc)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    fs.write(f"bus/pci/devices/{VF2}/nvidia/current_vgpu_type", H200_1414)
    r = h.run("guest1", op, "begin", doc)
    err = one_line(r.stderr)
    assert r.returncode == 1 and r.stdout == b"" and "cannot take type 1428 now" in err and f"at {op} begin" in err
    assert vgpu_writes(fs) == [] and h.ledger() == []


def test_gc_clears_the_vgpu_of_a_domain_that_is_not_running(fakesysfs: Callable[..., Any], tmp_path: Path) -> None:
    from support.cliworld import World

    w = World(fakesysfs("nvidia-h200x-vendor-vfio"), tmp_path)
    doc = vf_xml("gone", DOM_A, [(PF, H200_1414)], [VF0])
    assert w.hook.run("gone", "prepare", "begin", doc).returncode == 0  # then libvirtd died: no release
    w.fs.write(f"bus/pci/devices/{VF1}/nvidia/current_vgpu_type", H200_1414)  # someone else's: never touched
    r = w.cli("gc", "--dry-run")
    assert r.returncode == 0 and f"would remove vGPU type {H200_1414} on VF {VF0} of domain gone ({DOM_A})" in r.stdout
    assert current(w.fs, VF0) == H200_1414
    r = w.cli("gc")
    assert r.returncode == 0, r.stderr
    assert f"removed vGPU type {H200_1414} on VF {VF0} of domain gone ({DOM_A})" in r.stdout
    assert (current(w.fs, VF0), current(w.fs, VF1)) == ("0", H200_1414) and w.hook.ledger() == []


def test_vf_unbound_during_prepare_is_rolled_back_only_when_it_can_be_cleared(h200: tuple[Any, HookEnv]) -> None:
    """The 2nd VF leaves the nvidia driver while the hook is inside its write: the read-back fails, and the
    rollback must not take the missing file for "cleared" (the type is still set): the claim stays, release says
    what to do, and once the VF is back on nvidia, release clears it."""
    fs, h = h200
    doc = vf_xml("guest1", DOM_A, [(VF0, H200_1414), (PF, H200_1414)], [VF0, VF1])
    fs.control(cmd="delay", op="create", parent=VF1, ms=800)
    p = h.start("guest1", "prepare", "begin", doc)
    while current(fs, VF1) != H200_1414:
        time.sleep(0.01)
    fs.control(cmd="unbind", vf=VF1)
    assert p.wait(60) == 1
    assert current(fs, VF0) == "0" and h.ledger() == [f"{VF1}.json"]
    r = h.run("guest1", "release", "end", doc)
    assert r.returncode == 1 and "virsh nodedev-reattach pci_0000_41_00_5" in one_line(r.stderr)
    fs.control(cmd="bind", vf=VF1)
    assert current(fs, VF1) == H200_1414
    assert h.run("guest1", "release", "end", doc).returncode == 0
    assert current(fs, VF1) == "0" and h.ledger() == []


def test_release_after_the_entries_became_contradictory_still_clears(h200: tuple[Any, HookEnv]) -> None:
    """The metadata was edited while the VM ran (two entries for its VF now): release works from the ledger."""
    fs, h = h200
    assert h.run("guest1", "prepare", "begin", vf_xml("guest1", DOM_A, [(VF0, H200_1414)], [VF0])).returncode == 0
    edited = vf_xml("guest1", DOM_A, [(VF0, H200_1414), (VF0, H200_1428)], [VF0])
    assert h.run("guest1", "prepare", "begin", edited).returncode == 1  # a start of it is refused
    r = h.run("guest1", "release", "end", edited)
    assert (r.returncode, r.stderr) == (0, b"")
    assert current(fs, VF0) == "0" and h.ledger() == []
    assert any(e["event"] == "release.xml_incomplete" for e in h.events())
