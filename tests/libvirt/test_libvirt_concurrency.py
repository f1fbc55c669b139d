"""Several domains at once: libvirtd runs their hooks in parallel worker threads; the hook's per-parent locks
must serialise work on one parent and leave other parents alone."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lvlab
from lvlab import Lab, Mdev, new_uuid
from support.ids import GVT


def _writes(lab: Lab, mark: int, op: str, uuid: str) -> list[dict[str, Any]]:
    return [e for e in lab.writes(mark) if e["op"] == op and e["uuid"] == uuid]


def _one(lab: Lab, mark: int, op: str, uuid: str) -> dict[str, Any]:
    found = _writes(lab, mark, op, uuid)
    assert len(found) == 1 and found[0]["result"] == "ok", f"{op} {uuid}: {found}"
    return found[0]


def test_two_domains_started_together_on_one_parent(lab: Lab) -> None:
    a, b = Mdev(new_uuid(), "mtty", "mtty-2"), Mdev(new_uuid(), "mtty", "mtty-2")
    na, nb = lab.define("together-a", managed=[a]), lab.define("together-b", managed=[b])
    mark, lmark = lab.jmark(), lab.log.mark()
    # a slow create makes an unlocked overlap visible
    lab.fs.control(cmd="delay", op="create", ms=1500, parent="mtty")
    try:
        pa, pb = lvlab.virsh_start_async(na), lvlab.virsh_start_async(nb)
        ra, rb = lvlab.finish(pa), lvlab.finish(pb)
    finally:
        lab.fs.control(cmd="delay", op="create", ms=0, parent="mtty")
    assert lvlab.start_failed_on_vfio(ra, na), str(ra)
    assert lvlab.start_failed_on_vfio(rb, nb), str(rb)
    ca, cb = _one(lab, mark, "create", a.uuid), _one(lab, mark, "create", b.uuid)
    first, second = sorted([ca, cb], key=lambda e: e["t0"])
    # both prepare hooks ran at the same time: one of them waited for the parent's lock ...
    waits = sorted(e["waited_ms"] for e in lab.log.since(lmark, "lock.acquired")
                   if e.get("op") == "prepare" and e.get("parent") == "mtty")
    assert len(waits) == 2 and waits[1] >= 200, waits
    # ... and the creates on the parent never overlap
    assert second["t0"] >= first["t1"], (first, second)
    _one(lab, mark, "remove", a.uuid)
    _one(lab, mark, "remove", b.uuid)
    assert not lab.fs.devices()
    lab.record(f"two domains started together on mtty (create delay 1.5 s): lock waits {waits} ms", mark)


def test_start_while_another_domains_release_runs(lab: Lab) -> None:
    """A's release is slow (remove on mtty delayed 4 s). B on the same parent waits for it; C on another
    parent does not."""
    a = Mdev(new_uuid(), "mtty", "mtty-2")
    b = Mdev(new_uuid(), "mtty", "mtty-1")
    c = Mdev(new_uuid(), GVT, "i915-GVTg_V5_8")
    na, nb, nc = (lab.define(n, managed=[m]) for n, m in (("rel-a", a), ("rel-b", b), ("rel-c", c)))
    mark, lmark = lab.jmark(), lab.log.mark()
    lab.fs.control(cmd="delay", op="remove", ms=4000, parent="mtty")
    try:
        pa = lvlab.virsh_start_async(na)
        # A's remove has begun when its device is still listed but has lost its mdev_type link
        dev = Path(lab.fs.root, "bus", "mdev", "devices", a.uuid)
        deadline = time.monotonic() + 30
        while not (dev.exists() and not (dev / "mdev_type").exists()):
            assert time.monotonic() < deadline and pa.poll() is None, "A's release never began its remove"
            time.sleep(0.02)
        pb, pc = lvlab.virsh_start_async(nb), lvlab.virsh_start_async(nc)
        ra, rb, rc = lvlab.finish(pa), lvlab.finish(pb), lvlab.finish(pc)
    finally:
        lab.fs.control(cmd="delay", op="remove", ms=0, parent="mtty")
    for r, n in ((ra, na), (rb, nb), (rc, nc)):
        assert lvlab.start_failed_on_vfio(r, n), str(r)
    rem_a = _one(lab, mark, "remove", a.uuid)
    assert rem_a["t1"] - rem_a["t0"] >= 3.9
    cre_b, cre_c = _one(lab, mark, "create", b.uuid), _one(lab, mark, "create", c.uuid)
    assert cre_b["t0"] >= rem_a["t1"], "B created on mtty while A's release still held its lock"
    assert rem_a["t0"] <= cre_c["t0"] and cre_c["t1"] <= rem_a["t1"], "C (other parent) waited for A's release"
    waited = {e["domain"]: e["waited_ms"] for e in lab.log.since(lmark, "lock.acquired") if e.get("op") == "prepare"}
    assert waited[nb] >= 300 and waited[nc] < 300, waited
    _one(lab, mark, "remove", b.uuid)
    _one(lab, mark, "remove", c.uuid)
    assert not lab.fs.devices()
    lab.record(f"start during another domain's release (mtty remove delay 4 s): B waited {waited[nb]:.0f} ms "
               f"for mtty, C on GVT-g {waited[nc]:.0f} ms", mark)
