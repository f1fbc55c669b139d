"""One domain at a time, driven only through virsh, with the hook installed in the real libvirtd.

This host has no VFIO, so libvirt refuses every mdev hostdev right after `prepare`: the tests exercise the
failed-start path prepare (hook creates) -> libvirt fails -> stopped -> release (hook removes).
"""

from __future__ import annotations

import re
from typing import Any

import lvlab
import pytest
from lvlab import Lab, Mdev, new_uuid
from support.ids import GVT, T4

EXAMPLES = lvlab.REPO / "examples"


def _creates_removes(lab: Lab, mark: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    ws = lab.writes(mark)
    return [e for e in ws if e["op"] == "create"], [e for e in ws if e["op"] == "remove"]


def _pid_of(lab: Lab, mark: int, name: str, op: str) -> int:
    calls = [e for e in lab.log.since(mark, "hook.invoked", name) if e.get("op") == op]
    assert len(calls) == 1, f"expected one {op} call for {name}, hook log: {calls}"
    return int(calls[0]["pid"])


def assert_created_in_prepare_removed_in_release(lab: Lab, mark: int, lmark: int, name: str,
                                                 mdevs: list[Mdev]) -> None:
    """The journal shows one successful create per mdev (UUID, parent and type from the XML) written by the
    prepare hook's process, then one successful remove per mdev written by the release hook's process."""
    creates, removes = _creates_removes(lab, mark)
    want = sorted((m.uuid, m.parent, m.type) for m in mdevs)
    assert sorted((e["uuid"], e["parent"], e["type"]) for e in creates) == want, creates
    assert all(e["result"] == "ok" for e in creates + removes), creates + removes
    assert sorted(e["uuid"] for e in removes) == sorted(m.uuid for m in mdevs), removes
    prepare_pid, release_pid = _pid_of(lab, lmark, name, "prepare"), _pid_of(lab, lmark, name, "release")
    assert {e["pid"] for e in creates} == {prepare_pid}
    assert {e["pid"] for e in removes} == {release_pid}
    assert max(e["t1"] for e in creates) <= min(e["t0"] for e in removes)
    want_uuids = sorted(m.uuid for m in mdevs)
    assert sorted(e["mdev"] for e in lab.log.since(lmark, "mdev.created", name)) == want_uuids
    assert sorted(e["mdev"] for e in lab.log.since(lmark, "mdev.removed", name)) == want_uuids


FAILED_START = ["prepare begin", "stopped end", "release end"]


def test_plain_domain_runs_and_libvirt_calls_the_hook_five_times(lab: Lab) -> None:
    mark, lmark, dmark = lab.jmark(), lab.log.mark(), lab.dlog.mark()
    name = lab.define("plain")
    r = lvlab.virsh("start", name)
    assert r.rc == 0 and r.stdout == f"Domain '{name}' started\n\n", str(r)
    assert lvlab.virsh("domstate", name).stdout.strip() == "running"
    r = lvlab.virsh("destroy", name)
    assert r.rc == 0 and r.stdout == f"Domain '{name}' destroyed\n\n", str(r)
    assert lvlab.virsh("domstate", name, "--reason").stdout.strip() == "shut off (destroyed)"
    # libvirtd ran our hook five times, every run exited 0 (a failing prepare/start/started fails the start)
    assert lab.dlog.calls(dmark, name, lab.hook) == [
        "prepare begin", "start begin", "started begin", "stopped end", "release end"]
    assert lab.any_writes(mark) == []  # not one write to (fake) sysfs
    # the hook's own log: at most the invocations (its fast path skips a domain without managed mdevs)
    assert {e["event"] for e in lab.log.since(lmark, domain=name)} <= {"hook.invoked", "hook.done"}
    lab.record("plain domain start+destroy (libvirt ran the hook 5 times)", mark)


@pytest.mark.parametrize(("count", "style"), [(1, "virsh"), (3, "virsh"), (1, "bare"), (3, "prefixed")])
def test_managed_mdevs_created_at_prepare_removed_at_release(lab: Lab, count: int, style: str) -> None:
    # three devices span two parents (two mtty-2 and one GVT-g): locks are taken per parent, in order
    choices = [Mdev(new_uuid(), "mtty", "mtty-2"), Mdev(new_uuid(), GVT, "i915-GVTg_V5_4"),
               Mdev(new_uuid(), "mtty", "mtty-2")]
    mdevs = choices[:count]
    before = {(m.parent, m.type): lab.fs.available(m.parent, m.type) for m in mdevs}
    name = lab.define(f"managed{count}-{style}", managed=mdevs, style=style)
    mark, lmark, dmark = lab.jmark(), lab.log.mark(), lab.dlog.mark()
    r = lvlab.virsh("start", name)
    assert lvlab.start_failed_on_vfio(r, name), str(r)
    assert lvlab.virsh("domstate", name, "--reason").stdout.strip() == "shut off (failed)"
    assert lab.dlog.calls(dmark, name, lab.hook) == FAILED_START
    assert lab.log.acting_calls(lmark, name) == ["prepare", "release"]
    assert_created_in_prepare_removed_in_release(lab, mark, lmark, name, mdevs)
    assert lab.device_uuids() == []
    assert {k: lab.fs.available(*k) for k in before} == before
    lab.record(f"{count} managed mdev(s), metadata {style}", mark)


def _hook_error_re(lab: Lab, name: str) -> re.Pattern[str]:
    return re.compile(
        rf"error: Failed to start domain '{re.escape(name)}'\n"
        r"error: Hook script execution failed: internal error: Child process \(LC_ALL=C (?:\S+=\S* )*"
        rf"{re.escape(str(lab.hook))} {re.escape(name)} prepare begin -\) unexpected exit status 1: "
        r"(mdev-hooks: [^\n]+)\n\n",
    )


def test_no_free_instance_fails_start_with_the_hooks_reason(lab: Lab) -> None:
    # GVT-g V5_4: one instance on this host profile; a device someone else made takes it
    other = new_uuid()
    lab.fs.control(cmd="create_external", parent=GVT, type="i915-GVTg_V5_4", uuid=other)
    try:
        assert lab.fs.available(GVT, "i915-GVTg_V5_4") == 0
        want = Mdev(new_uuid(), GVT, "i915-GVTg_V5_4")
        name = lab.define("exhausted", managed=[want])
        mark, lmark, dmark = lab.jmark(), lab.log.mark(), lab.dlog.mark()
        r = lvlab.virsh("start", name)
        m = _hook_error_re(lab, name).fullmatch(r.stderr)
        assert r.rc == 1 and m, str(r)
        reason = m.group(1)
        assert r.stderr.count("mdev-hooks: ") == 1
        assert want.uuid in reason and GVT in reason and "i915-GVTg_V5_4" in reason, reason
        assert "no free instance" in reason and "available_instances=0" in reason, reason
        failed = lab.log.since(lmark, "hook.failed", name)
        assert [f"mdev-hooks: {e['error']}" for e in failed] == [reason]
        assert lab.dlog.calls(dmark, name, lab.hook) == FAILED_START
        assert lab.log.acting_calls(lmark, name) == ["prepare", "release"]
        assert lab.writes(mark) == []  # validated before any write: nothing created, nothing to remove
        assert lab.device_uuids() == [other]
        lab.record("no free instance (GVT-g V5_4 taken by an external device)", mark)
    finally:
        lab.remove_external(other)


def test_unmanaged_mdev_is_never_touched(lab: Lab) -> None:
    theirs = new_uuid()
    lab.fs.control(cmd="create_external", parent="mtty", type="mtty-1", uuid=theirs)
    try:
        ours = Mdev(new_uuid(), "mtty", "mtty-2")
        # the metadata names both; only the managed='yes' hostdev is acted on
        name = lvlab.PREFIX + "mixed"
        meta = lvlab.metadata_xml([ours, Mdev(theirs, "mtty", "mtty-1")], "prefixed")
        lvlab.define(lvlab.domain_xml(name, new_uuid(), [ours], [theirs], meta), lab.tmp)
        mark, lmark = lab.jmark(), lab.log.mark()
        r = lvlab.virsh("start", name)
        assert lvlab.start_failed_on_vfio(r, name), str(r)
        creates, removes = _creates_removes(lab, mark)
        assert [e["uuid"] for e in creates] == [ours.uuid]
        assert [e["uuid"] for e in removes] == [ours.uuid]
        assert lab.device_uuids() == [theirs]
        unused = [e.get("mdev") for e in lab.log.since(lmark, "metadata.unused", name) if e.get("op") == "prepare"]
        assert unused == [theirs]
        lab.record("unmanaged + managed in one domain", mark)
    finally:
        lab.remove_external(theirs)


@pytest.mark.parametrize(("example", "parent", "mtype"), [
    ("gvtg-desktop", GVT, "i915-GVTg_V5_4"), ("t4-workstation", T4, "nvidia-231")])
def test_examples_create_and_remove_their_device(lab: Lab, example: str, parent: str, mtype: str) -> None:
    # own name and domain UUID, so a copy defined by the demo or a user does not collide
    name = lvlab.PREFIX + example
    xml = re.sub(r"<uuid>[^<]+</uuid>", f"<uuid>{new_uuid()}</uuid>", (EXAMPLES / f"{example}.xml").read_text())
    xml = xml.replace(f"<name>{example}<", f"<name>{name}<")
    lvlab.define(xml, lab.tmp)
    found = re.search(r"<address uuid='([0-9a-f-]+)'/>", xml)
    assert found, example
    uuid = found.group(1)
    mark, lmark = lab.jmark(), lab.log.mark()
    r = lvlab.virsh("start", name)
    assert lvlab.start_failed_on_vfio(r, name), str(r)
    assert_created_in_prepare_removed_in_release(lab, mark, lmark, name, [Mdev(uuid, parent, mtype)])
    assert lab.device_uuids() == []
    lab.record(f"examples/{example}.xml", mark)
