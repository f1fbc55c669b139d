"""`mdev-hooks status` and `mdev-hooks gc` run as the administrator runs them against the FUSE fake and a fake
virsh: owned, external and orphaned devices, and what gc removes (only orphans) or refuses.
"""

from __future__ import annotations

import json
import os
import re
import time

from support.asserts import one_line
from support.cliworld import World
from support.ids import DOM_A, DOM_B, DOM_C, GVT, GVT_V54, GVT_V58, MTTY, uid


# -- status and gc ---------------------------------------------------------------------------------------------------
def populate(cli_world: World) -> dict[str, str]:
    """vm1 running with a device; vm2 stopped but its device still there; vm3's device removed behind our back;
    an external device; vm4 adopted an external device and is not running."""
    d = {"owned": uid(), "orphan": uid(), "gone": uid(), "external": uid(), "adopted": uid()}
    cli_world.prepare("vm1", DOM_A, [(d["owned"], GVT, GVT_V58)])
    cli_world.prepare("vm2", DOM_B, [(d["orphan"], MTTY, "mtty-2")])
    cli_world.prepare("vm3", DOM_C, [(d["gone"], MTTY, "mtty-1")])
    cli_world.fs.remove_external(d["gone"])
    cli_world.fs.create_external(GVT, GVT_V58, d["external"])
    cli_world.fs.create_external(MTTY, "mtty-1", d["adopted"])
    cli_world.prepare("vm4", "44444444-4444-4444-8444-444444444444", [(d["adopted"], MTTY, "mtty-1")])
    cli_world.running(DOM_A)
    return d


def test_status_owned_external_and_orphans(cli_world: World) -> None:
    d = populate(cli_world)
    r = cli_world.cli("status")
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    lines = r.stdout.splitlines()

    def row(u: str, section: str) -> list[str]:
        start = next(i for i, line in enumerate(lines) if line.startswith(section))
        return next(line for line in lines[start:] if line.strip().startswith(u)).split()

    assert row(d["owned"], "mdevs")[:6] == [d["owned"], GVT, GVT_V58, "vm1", f"({DOM_A})", "created"]
    assert row(d["owned"], "mdevs")[-1] == "yes"
    assert row(d["external"], "mdevs")[3] == "external"
    assert row(d["orphan"], "mdevs")[-1] == "no"
    assert " ".join(row(d["orphan"], "orphaned"))[-len("domain not running"):] == "domain not running"
    assert " ".join(row(d["gone"], "orphaned")).endswith("device gone")
    assert not any(line.strip().startswith(d["owned"]) for line in lines[next(
        i for i, line in enumerate(lines) if line.startswith("orphaned")):])
    assert re.search(rf"^  {re.escape(GVT)}\s+{GVT_V58}\s+GVTg_V5_8\s+0\s+2\s", r.stdout, re.M), r.stdout
    assert re.search(r"^  mtty\s+mtty-1\s+Single port serial\s+\d+\s+1\s", r.stdout, re.M), r.stdout

    data = json.loads(cli_world.cli("status", "--json").stdout)
    owners = {x["uuid"]: x["owner"] for x in data["devices"]}
    assert owners == {d["owned"]: f"vm1 ({DOM_A})", d["orphan"]: f"vm2 ({DOM_B})", d["external"]: "external",
                      d["adopted"]: "vm4 (44444444-4444-4444-8444-444444444444)"}
    assert {o["mdev"]: o["reason"] for o in data["orphans"]} == {
        d["orphan"]: "domain not running", d["gone"]: "device gone", d["adopted"]: "domain not running"}
    gvt = next(p for p in data["parents"] if p["parent"] == GVT)
    assert {t["type"]: (t["available"], t["in_use"]) for t in gvt["types"]} == {GVT_V54: (0, 0), GVT_V58: (0, 2)}
    assert data["running_known"] is True


def test_status_without_virsh_says_unknown(cli_world: World) -> None:
    d = populate(cli_world)
    (cli_world.virsh_dir / "broken").touch()
    r = cli_world.cli("status")
    assert r.returncode == 0, r.stderr
    assert "domains running: unknown (`" in r.stdout and "failed to connect to the hypervisor" in r.stdout
    data = json.loads(cli_world.cli("status", "--json").stdout)
    assert data["running_known"] is False
    assert [o["mdev"] for o in data["orphans"]] == [d["gone"]]
    assert {x["running"] for x in data["devices"] if x["owner"] != "external"} == {None}


def test_gc_removes_only_orphans_never_external(cli_world: World) -> None:
    d = populate(cli_world)
    state = cli_world.hook.state_dir
    stale_tmp = state / f".{d['owned']}.999999999.1.tmp"
    stale_tmp.write_text("{}")
    live_tmp = state / f".{d['owned']}.{os.getpid()}.2.tmp"  # a writer that is alive and recent: kept
    live_tmp.write_text("{}")
    ledger_before = cli_world.hook.ledger()
    removes_before = cli_world.removes()

    r = cli_world.cli("gc", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert f"would remove mdev {d['orphan']} (type mtty-2 on mtty) of domain vm2 ({DOM_B}): domain not running" \
        in r.stdout
    assert f"would forget mdev {d['gone']}" in r.stdout and f"would forget mdev {d['adopted']}" in r.stdout
    assert f"would delete stale ledger temp file {stale_tmp}" in r.stdout
    assert (cli_world.removes(), cli_world.hook.ledger(), stale_tmp.exists()) == (removes_before, ledger_before, True)

    r = cli_world.cli("gc")
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    assert cli_world.removes() == [*removes_before, d["orphan"]]  # the kernel saw exactly one remove: the orphan's
    assert cli_world.fs.devices() == {d["owned"]: (GVT, GVT_V58), d["external"]: (GVT, GVT_V58),
                                  d["adopted"]: (MTTY, "mtty-1")}
    assert cli_world.hook.ledger() == sorted([f"{d['owned']}.json", live_tmp.name])
    assert not stale_tmp.exists()
    assert f"removed mdev {d['orphan']}" in r.stdout and f"forgot mdev {d['gone']}" in r.stdout
    assert any(e["event"] == "mdev.removed" and e["mdev"] == d["orphan"] and e.get("op") == "gc"
               for e in cli_world.hook.events())

    r = cli_world.cli("gc")
    assert (r.returncode, r.stdout.strip()) == (0, "nothing to clean up")


def test_gc_drops_gone_device_of_running_domain_and_keeps_its_live_one(cli_world: World) -> None:
    a, b = uid(), uid()
    cli_world.prepare("vm1", DOM_A, [(a, GVT, GVT_V58), (b, MTTY, "mtty-1")])
    cli_world.fs.remove_external(b)
    cli_world.running(DOM_A)
    r = cli_world.cli("gc")
    assert r.returncode == 0, r.stderr
    assert f"forgot mdev {b}" in r.stdout and "(domain running)" in r.stdout
    assert cli_world.hook.ledger() == [f"{a}.json"] and cli_world.fs.devices() == {a: (GVT, GVT_V58)}


def test_gc_refuses_without_virsh(cli_world: World) -> None:
    d = populate(cli_world)
    (cli_world.virsh_dir / "broken").touch()
    ledger = cli_world.hook.ledger()
    r = cli_world.cli("gc")
    assert r.returncode == 1
    assert "cannot tell which domains are running, so nothing was removed" in one_line(r.stderr)
    assert d["orphan"] in cli_world.fs.devices() and cli_world.hook.ledger() == ledger
    r = cli_world.cli("gc", MDEV_HOOKS_VIRSH="/nonexistent/virsh")
    assert r.returncode == 1 and "not found" in r.stderr


def test_gc_skips_a_domain_whose_claim_is_newer_than_the_question(cli_world: World) -> None:
    """A claim written after `virsh list` answered belongs to a start gc knows nothing about."""
    u = uid()
    cli_world.prepare("vm2", DOM_B, [(u, MTTY, "mtty-2")])
    path = cli_world.hook.state_dir / f"{u}.json"
    claim = json.loads(path.read_text())
    claim["time"] = time.time() + 3600
    path.write_text(json.dumps(claim))
    r = cli_world.cli("gc")
    assert r.returncode == 0
    assert f"warning: domain vm2 ({DOM_B}) changed while gc ran" in r.stdout
    assert u in cli_world.fs.devices() and cli_world.removes() == []
