"""`restore begin` under the real libvirtd: the hook's read-only check of a saved domain restored with a new XML.

A domain with an mdev hostdev cannot run on this host (no VFIO), so it can never be saved. What can: save a plain
running domain, then `virsh restore FILE --xml EDITED` where EDITED is the saved XML plus our metadata and a
managed mdev hostdev. libvirt 9.0 (qemuDomainRestoreFlags) runs the hook with `restore begin` on that --xml
document BEFORE its own ABI-stability check of it against the saved one; that check then refuses the added
hostdev ("Target domain host device count 1 does not match source 0"), so no prepare ever follows. Observed:

- no free instance: the hook exits 1 and `virsh restore` fails with the hook's one `mdev-hooks:` line; libvirt
  calls nothing else (no ABI check, no prepare, no release), the fake sees no write, the ledger stays empty;
- all free: the hook passes (exit 0, empty stdout, so libvirt keeps the --xml) and libvirt fails on ABI
  stability; `virsh save-image-define` with the same XML fails on the same check without running the hook;
- only our metadata added (ABI unchanged): the restore runs (restore, prepare, start, started) and the running
  domain has the --xml's metadata: the hook's empty stdout left libvirt's document as it was.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import lvlab
import pytest
from lvlab import Lab, Mdev, new_uuid
from support.ids import GVT, GVT_V54

ABI_ERROR = "error: unsupported configuration: Target domain host device count 1 does not match source 0"
WHEN = "(checked at restore begin, before the saved domain is restored)"


@dataclass(frozen=True)
class Saved:
    name: str
    path: Path
    xml: str  # `virsh save-image-dumpxml`


@pytest.fixture
def saved(lab: Lab) -> Iterator[Saved]:
    """A plain 64 MiB domain started and saved to a file (it is then `shut off (saved)`); the file is removed
    afterwards (the tier's autouse cleanup undefines the domain)."""
    name = lab.define("restore")
    lvlab.virsh_ok("start", name)
    path = lab.tmp / f"{name}.save"
    lvlab.virsh_ok("save", name, str(path))
    try:
        assert lvlab.virsh("domstate", name, "--reason").stdout.strip() == "shut off (saved)"
        yield Saved(name, path, lvlab.virsh_ok("save-image-dumpxml", str(path)).stdout)
    finally:
        path.unlink(missing_ok=True)
        for f in lab.tmp.glob(f"{name}-*.xml"):
            f.unlink()


def edited(lab: Lab, s: Saved, m: Mdev, hostdev: bool) -> Path:
    """The saved XML plus our metadata naming m and, if `hostdev`, a managed mdev hostdev for it."""
    assert "<metadata" not in s.xml and s.xml.count("</uuid>") == 1 and s.xml.count("</devices>") == 1, s.xml
    xml = s.xml.replace("</uuid>", f"</uuid>\n  <metadata>{lvlab.metadata_xml([m], 'prefixed')}</metadata>")
    if hostdev:
        xml = xml.replace("</devices>", (
            "  <hostdev mode='subsystem' type='mdev' managed='yes' model='vfio-pci'>"
            f"<source><address uuid='{m.uuid}'/></source></hostdev>\n  </devices>"))
    f = lab.tmp / f"{s.name}-{'hostdev' if hostdev else 'metadata'}.xml"
    f.write_text(xml)
    return f


def test_no_free_instance_refuses_the_restore_at_restore_begin(lab: Lab, saved: Saved) -> None:
    other = new_uuid()  # someone else's device takes the only GVT-g V5_4 instance
    lab.fs.control(cmd="create_external", parent=GVT, type=GVT_V54, uuid=other)
    try:
        assert lab.fs.available(GVT, GVT_V54) == 0
        want = Mdev(new_uuid(), GVT, GVT_V54)
        xml = edited(lab, saved, want, hostdev=True)
        mark, lmark, dmark = lab.jmark(), lab.log.mark(), lab.dlog.mark()
        r = lvlab.virsh("restore", str(saved.path), "--xml", str(xml))
        reason = (f"mdev-hooks: cannot create mdev {want.uuid} (type {GVT_V54} on {GVT}): no free instance "
                  f"(available_instances=0; 1 in use: {other}) {WHEN}")
        assert r.rc == 1 and r.stdout == "\n" and re.fullmatch(
            rf"error: Failed to restore domain from {re.escape(str(saved.path))}\n"
            r"error: Hook script execution failed: internal error: Child process \(LC_ALL=C (?:\S+=\S* )*"
            rf"{re.escape(str(lab.hook))} {re.escape(saved.name)} restore begin -\) unexpected exit status 1: "
            rf"{re.escape(reason)}\n\n", r.stderr), str(r)
        assert r.stderr.count("mdev-hooks: ") == 1
        # libvirtd ran the hook once, then stopped: no ABI check, no prepare, no release
        assert lab.dlog.calls(dmark, saved.name, lab.hook) == ["restore begin"]
        assert "Target domain" not in lab.dlog.text(dmark)
        assert lab.log.events(lmark, saved.name) == ["restore hook.invoked", "restore hook.failed"]
        invoked, failed = lab.log.since(lmark, domain=saved.name)
        assert invoked["mdevs"] == [want.uuid] and f"mdev-hooks: {failed['error']}" == reason
        # read-only: not one write to the fake, no ledger entry, the other device untouched
        assert lab.any_writes(mark) == []
        assert lab.ledger_files() == []
        assert lab.device_uuids() == [other] and lab.fs.available(GVT, GVT_V54) == 0
        assert lvlab.virsh("domstate", saved.name, "--reason").stdout.strip() == "shut off (saved)"
        lab.record("restore --xml with an mdev, no free instance: refused at restore begin", mark)
    finally:
        lab.remove_external(other)


def test_free_instance_passes_restore_begin_then_libvirt_refuses_the_abi_change(lab: Lab, saved: Saved) -> None:
    free = lab.fs.available(GVT, GVT_V54)
    assert free == 1
    want = Mdev(new_uuid(), GVT, GVT_V54)
    xml = edited(lab, saved, want, hostdev=True)
    mark, lmark, dmark = lab.jmark(), lab.log.mark(), lab.dlog.mark()
    r = lvlab.virsh("restore", str(saved.path), "--xml", str(xml))
    assert r.rc == 1 and r.stdout == "\n" and r.stderr == (
        f"error: Failed to restore domain from {saved.path}\n{ABI_ERROR}\n"), str(r)
    # the hook ran on the --xml document first and passed; libvirt's ABI check came after it
    assert lab.dlog.calls(dmark, saved.name, lab.hook) == ["restore begin"]
    text = lab.dlog.text(dmark)
    call = text.index(f"Calling hook {lab.hook} id={saved.name} op=restore subop=begin extra=-")
    assert call < text.index(ABI_ERROR.removeprefix("error: "))
    assert lab.log.events(lmark, saved.name) == [
        "restore hook.invoked", "restore incoming.checked", "restore hook.done"]
    assert [e["mdevs"] for e in lab.log.since(lmark, "incoming.checked", saved.name)] == [[want.uuid]]
    # nothing was prepared, so nothing is left behind
    assert lab.any_writes(mark) == [] and lab.ledger_files() == [] and lab.device_uuids() == []
    assert lab.fs.available(GVT, GVT_V54) == free
    assert lvlab.virsh("domstate", saved.name, "--reason").stdout.strip() == "shut off (saved)"

    # the only other way to put the mdev into the image: the same ABI check, and the hook is not run at all
    dmark, lmark = lab.dlog.mark(), lab.log.mark()
    r = lvlab.virsh("save-image-define", str(saved.path), str(xml))
    assert r.rc == 1 and r.stderr == f"error: Failed to update {saved.path}\n{ABI_ERROR}\n", str(r)
    assert lab.dlog.calls(dmark, saved.name) == [] and lab.log.since(lmark) == []

    # what libvirt read back from the hook for this document: exit 0, nothing on stdout (libvirt keeps its XML)
    p = subprocess.run([str(lab.hook), saved.name, "restore", "begin", "-"], input=xml.read_bytes(),
                       capture_output=True, timeout=60, check=False,
                       env={"LC_ALL": "C", "PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    assert (p.returncode, p.stdout, p.stderr) == (0, b"", b"")
    assert lab.any_writes(mark) == [] and lab.ledger_files() == []
    lab.record("restore --xml with an mdev, all free: hook passed, libvirt refused the ABI change", mark)


def test_restore_with_our_metadata_runs_with_the_xml_given(lab: Lab, saved: Saved) -> None:
    # metadata only (no hostdev): the ABI is unchanged, so the restore goes through the hook's slow path and on
    named = Mdev(new_uuid(), GVT, GVT_V54)
    xml = edited(lab, saved, named, hostdev=False)
    mark, lmark, dmark = lab.jmark(), lab.log.mark(), lab.dlog.mark()
    r = lvlab.virsh("restore", str(saved.path), "--xml", str(xml))
    assert r.rc == 0 and r.stdout == f"Domain restored from {saved.path}\n\n" and r.stderr == "", str(r)
    assert lvlab.virsh("domstate", saved.name).stdout.strip() == "running"
    assert lab.dlog.calls(dmark, saved.name, lab.hook) == [
        "restore begin", "prepare begin", "start begin", "started begin"]
    restore = [e for e in lab.log.since(lmark, domain=saved.name) if e.get("op") == "restore"]
    assert [e["event"] for e in restore] == ["hook.invoked", "metadata.unused", "incoming.checked", "hook.done"]
    assert restore[0]["mdevs"] == [] and restore[1]["mdev"] == named.uuid and restore[2]["mdevs"] == []
    # the running domain has the --xml's metadata: libvirt used the document the hook left unchanged
    meta = lvlab.virsh_ok("metadata", saved.name, "--uri", lvlab.NS).stdout
    assert f'uuid="{named.uuid}"' in meta and f'parent="{GVT}"' in meta, meta
    dmark = lab.dlog.mark()
    lvlab.virsh_ok("destroy", saved.name)
    assert lab.dlog.calls(dmark, saved.name, lab.hook) == ["stopped end", "release end"]
    assert lab.any_writes(mark) == [] and lab.ledger_files() == [] and lab.device_uuids() == []
    lab.record("restore --xml with our metadata only: restored and running", mark)
