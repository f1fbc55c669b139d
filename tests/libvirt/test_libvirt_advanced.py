"""Issue 8 part A under the real libvirtd: the admin's policy refusing a start (the rule in `virsh start`'s error),
and a managed mdev with no metadata created from an mdevctl definition. The config file is rewritten for each test
(the hook reads it at every call) and put back afterwards.
"""

from __future__ import annotations

import json
import re

import lvlab
from lvlab import Lab, Mdev, new_uuid


def test_policy_refusal_is_virsh_starts_error(lab: Lab, config: None) -> None:
    lvlab.write_config(lab.fs.root, lab.tmp, nvidia_release_wait=0.5, allowed_parents=["mtty"])
    want = Mdev(new_uuid(), "0000:00:02.0", "i915-GVTg_V5_4")
    name = lab.define("policy", managed=[want])
    mark, lmark = lab.jmark(), lab.log.mark()
    r = lvlab.virsh("start", name)
    rule = (f"mdev-hooks: mdev {want.uuid} (type i915-GVTg_V5_4 on 0000:00:02.0): parent 0000:00:02.0 is not "
            f'allowed by allowed_parents = ["mtty"] in {lvlab.CONFIG_FILE}')
    assert r.rc == 1 and re.fullmatch(
        rf"error: Failed to start domain '{re.escape(name)}'\n"
        r"error: Hook script execution failed: internal error: Child process \(.*prepare begin -\) "
        rf"unexpected exit status 1: {re.escape(rule)}\n\n", r.stderr), str(r)
    assert lab.writes(mark) == []
    assert [e["mdev"] for e in lab.log.since(lmark, "mdev.policy_refused", name)] == [want.uuid]
    lab.record("policy refusal (allowed_parents)", mark)


def test_mdevctl_definition_created_and_removed(lab: Lab, config: None) -> None:
    d = lab.tmp / "mdevctl.d"
    u = new_uuid()
    (d / "mtty").mkdir(parents=True, exist_ok=True)
    (d / "mtty" / u).write_text(json.dumps({"mdev_type": "mtty-2", "start": "manual", "attrs": []}, indent=2))
    lvlab.write_config(lab.fs.root, lab.tmp, nvidia_release_wait=0.5, mdevctl_dir=str(d))
    name = lvlab.PREFIX + "mdevctl"
    lvlab.define(lvlab.domain_xml(name, new_uuid(), [Mdev(u, "mtty", "mtty-2")]), lab.tmp)  # no metadata
    mark, lmark = lab.jmark(), lab.log.mark()
    r = lvlab.virsh("start", name)
    assert lvlab.start_failed_on_vfio(r, name), str(r)  # the hook created it; libvirt then needs VFIO
    ws = [(e["op"], e["uuid"], e.get("parent"), e.get("type"), e["result"]) for e in lab.writes(mark)]
    assert ws == [("create", u, "mtty", "mtty-2", "ok"), ("remove", u, "mtty", "mtty-2", "ok")], ws
    assert [e["path"] for e in lab.log.since(lmark, "mdev.from_mdevctl", name)] == [str(d / "mtty" / u)] * 2
    lab.record("managed mdev from an mdevctl definition", mark)
