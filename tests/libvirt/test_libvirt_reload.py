"""libvirtd looks for hook scripts when it starts and on SIGHUP (`systemctl reload libvirtd`), not when a
script appears: a hook installed into a running daemon that had none is ignored until the reload."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import lvlab
import pytest
from fakesysfs.harness import FakeSysfs
from lvlab import Mdev, new_uuid


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeSysfs]:
    with FakeSysfs(["mtty-sample"], tmp_path / "fake") as fs:
        try:
            yield fs
        finally:
            lvlab.remove_hooks()
            lvlab.CONFIG_FILE.unlink(missing_ok=True)


def test_hook_installed_into_running_daemon_needs_reload(fake: FakeSysfs, tmp_path: Path) -> None:
    fs, dlog = fake, lvlab.daemon_log()
    log = lvlab.HookLog(lvlab.write_config(fs.root, tmp_path)["log_file"])
    m = Mdev(new_uuid(), "mtty", "mtty-2")
    name = lvlab.PREFIX + "reload"
    lvlab.define(lvlab.domain_xml(name, new_uuid(), [m], [], lvlab.metadata_xml([m], "prefixed")), tmp_path)

    # a daemon that knows of no qemu hook (as after a boot without mdev-hooks)
    lvlab.remove_hooks()
    found = lvlab.reload_daemon()
    assert "No hook script /etc/libvirt/hooks/qemu" in found, found
    hook = lvlab.install_hook("qemu")

    mark, lmark, dmark = len(fs.journal()), log.mark(), dlog.mark()
    r = lvlab.virsh("start", name)
    # not called; libvirt's own VFIO check fails the start (with VFIO it would be "mediated device ... not found")
    assert lvlab.start_failed_on_vfio(r, name), str(r)
    assert dlog.calls(dmark, name) == []
    assert log.since(lmark) == []
    assert [e for e in fs.journal()[mark:] if e.get("op") in lvlab.WRITE_OPS] == []
    lvlab.EVIDENCE.append(f"[reload] {hook} installed into the running daemon, no SIGHUP: 0 hook runs, 0 writes")

    found = lvlab.reload_daemon()
    assert f"Found hook script {hook}" in found, found
    mark, lmark, dmark = len(fs.journal()), log.mark(), dlog.mark()
    r = lvlab.virsh("start", name)
    assert lvlab.start_failed_on_vfio(r, name), str(r)
    assert dlog.calls(dmark, name, hook) == ["prepare begin", "stopped end", "release end"]
    assert log.acting_calls(lmark, name) == ["prepare", "release"]
    writes = [(e["op"], e["uuid"], e["result"]) for e in fs.journal()[mark:] if e.get("op") in lvlab.WRITE_OPS]
    assert writes == [("create", m.uuid, "ok"), ("remove", m.uuid, "ok")]
    lvlab.EVIDENCE.append(f"[reload] after SIGHUP: 3 hook runs; create {m.uuid[:8]} ok; remove {m.uuid[:8]} ok")

    # once libvirtd knows of a qemu hook it re-checks the files on every call: removal needs no reload
    lvlab.remove_hooks()
    dmark = dlog.mark()
    r = lvlab.virsh("start", name)
    assert lvlab.start_failed_on_vfio(r, name), str(r)
    assert dlog.calls(dmark, name) == []
