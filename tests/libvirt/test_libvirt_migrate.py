"""`migrate begin` under the real libvirtd: the destination's read-only check of an incoming domain, and `[parents]`.

A second libvirtd host is not needed to reach the destination side. An offline migration (`virsh migrate --offline
--persistent NAME qemu:///system`) of a defined, inactive domain to the same daemon makes libvirt 9.0 run the
destination's Prepare (qemuMigrationDstPrepareAny): it calls the hook with `migrate begin` and the incoming XML,
and only afterwards refuses with "Attempt to migrate guest to the same host". So:

- the hook refuses (exit 1): `virsh migrate` fails with the hook's one `mdev-hooks:` line, libvirt never reaches
  its same-host check; nothing written, no ledger entry;
- the hook passes (exit 0, empty stdout: libvirt keeps the XML): libvirt's own same-host error follows.

A live migration of a domain with an mdev cannot be tried here (it cannot run without VFIO); it goes through the
same Prepare and the same hook call with the live XML.
"""

from __future__ import annotations

import re

import lvlab
from lvlab import Lab, Mdev, new_uuid
from support.ids import GVT, GVT_V54

SOURCE_PARENT = "0000:41:00.0"  # the source host's name for its GPU: absent here
SAME_HOST = re.compile(r"error: internal error: Attempt to migrate guest to the same host [0-9a-f-]{36}\n")
WHEN = "(checked at migrate begin, before the domain came to this host)"


def migrate(name: str) -> lvlab.Run:
    return lvlab.virsh("migrate", "--offline", "--persistent", name, "qemu:///system")


def hook_error(lab: Lab, name: str, reason: str) -> re.Pattern[str]:
    return re.compile(
        r"error: Hook script execution failed: internal error: Child process \(LC_ALL=C (?:\S+=\S* )*"
        rf"{re.escape(str(lab.hook))} {re.escape(name)} migrate begin -\) unexpected exit status 1: "
        rf"{re.escape(reason)}\n\n")


def nothing_left(lab: Lab, mark: int, name: str) -> None:
    assert lab.any_writes(mark) == []
    assert lab.ledger_files() == []
    assert lvlab.virsh("domstate", name).stdout.strip() == "shut off"  # still defined on the source


def test_no_free_instance_refuses_the_incoming_migration(lab: Lab) -> None:
    other = new_uuid()  # someone else's device takes the only GVT-g V5_4 instance
    lab.fs.control(cmd="create_external", parent=GVT, type=GVT_V54, uuid=other)
    try:
        want = Mdev(new_uuid(), GVT, GVT_V54)
        name = lab.define("migfull", managed=[want])
        mark, lmark, dmark = lab.jmark(), lab.log.mark(), lab.dlog.mark()
        r = migrate(name)
        reason = (f"mdev-hooks: cannot create mdev {want.uuid} (type {GVT_V54} on {GVT}): no free instance "
                  f"(available_instances=0; 1 in use: {other}) {WHEN}")
        assert r.rc == 1 and hook_error(lab, name, reason).fullmatch(r.stderr), str(r)
        assert r.stderr.count("mdev-hooks: ") == 1
        # libvirt ran the hook once and stopped there: its same-host check never came
        assert lab.dlog.calls(dmark, name, lab.hook) == ["migrate begin"]
        assert "same host" not in lab.dlog.text(dmark)
        assert lab.log.events(lmark, name) == ["migrate hook.invoked", "migrate hook.failed"]
        nothing_left(lab, mark, name)
        assert lab.device_uuids() == [other]
        lab.record("offline migrate, no free instance: refused at migrate begin", mark)
    finally:
        lab.remove_external(other)


def test_free_instance_passes_then_libvirt_refuses_the_same_host(lab: Lab) -> None:
    want = Mdev(new_uuid(), GVT, GVT_V54)
    name = lab.define("migfree", managed=[want])
    mark, lmark, dmark = lab.jmark(), lab.log.mark(), lab.dlog.mark()
    r = migrate(name)
    assert r.rc == 1 and SAME_HOST.fullmatch(r.stderr), str(r)
    text = lab.dlog.text(dmark)
    assert lab.dlog.calls(dmark, name, lab.hook) == ["migrate begin"]
    assert text.index(f"Calling hook {lab.hook} id={name} op=migrate subop=begin") < text.index("same host")
    assert lab.log.events(lmark, name) == ["migrate hook.invoked", "migrate incoming.checked", "migrate hook.done"]
    assert [e["mdevs"] for e in lab.log.since(lmark, "incoming.checked", name)] == [[want.uuid]]
    nothing_left(lab, mark, name)
    assert lab.fs.available(GVT, GVT_V54) == 1
    lab.record("offline migrate, all free: hook passed, libvirt refused the same host", mark)


def test_parents_table_renames_the_source_hosts_parent(lab: Lab, config: None) -> None:
    want = Mdev(new_uuid(), SOURCE_PARENT, GVT_V54)  # as the source host named it
    name = lab.define("migmap", managed=[want])
    # without the table: this host has no such parent
    mark, lmark = lab.jmark(), lab.log.mark()
    r = migrate(name)
    assert r.rc == 1 and f"parent {SOURCE_PARENT} not found under /sys/class/mdev_bus" in r.stderr, str(r)
    assert r.stderr.count("mdev-hooks: ") == 1 and r.stderr.endswith(f"{WHEN}\n\n"), str(r)
    assert lab.log.events(lmark, name) == ["migrate hook.invoked", "migrate hook.failed"]
    nothing_left(lab, mark, name)
    # with it (a TOML table: after every plain key), the hook checks this host's GPU and passes
    with lvlab.CONFIG_FILE.open("a") as f:
        f.write(f'[parents]\n"{SOURCE_PARENT}" = "{GVT}"\n')
    lmark, dmark = lab.log.mark(), lab.dlog.mark()
    r = migrate(name)
    assert r.rc == 1 and SAME_HOST.fullmatch(r.stderr), str(r)
    assert lab.dlog.calls(dmark, name, lab.hook) == ["migrate begin"]
    mapped = lab.log.since(lmark, "mdev.parent_mapped", name)
    assert [(e["domain_parent"], e["host_parent"]) for e in mapped] == [(SOURCE_PARENT, GVT)]
    assert lab.log.events(lmark, name)[-2:] == ["migrate incoming.checked", "migrate hook.done"]
    nothing_left(lab, mark, name)
    lab.record("offline migrate, [parents] renames the source host's parent: passed", mark)
