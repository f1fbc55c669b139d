"""`mdev-hooks plan` run as the administrator runs it against the FUSE fake, the real hook and a fake virsh: the
table, actions and verdict, the hook's own error line, and --json.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.asserts import one_line
from support.cliworld import World, write_xml
from support.common import REPO
from support.hookrun import mdev_xml
from support.ids import DOM_A, DOM_B, GVT, GVT_V54, GVT_V58, MTTY, VF0, uid


# -- plan ------------------------------------------------------------------------------------------------------------
def test_plan_success_shows_table_and_actions_and_changes_nothing(cli_world: World, tmp_path: Path) -> None:
    a, b = uid(), uid()
    xml = mdev_xml("vm1", DOM_A, [(a, GVT, GVT_V58), (b, GVT, GVT_V58)])
    r = cli_world.cli("plan", write_xml(tmp_path, xml))
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    out = r.stdout
    assert f"domain vm1 ({DOM_A})" in out
    for u in (a, b):
        row = next(line for line in out.splitlines() if line.strip().startswith(u))
        assert row.split()[:4] == [u, GVT, GVT_V58, "GVTg_V5_8"]
        assert row.split()[-3:] == ["2", "create", "ok"]
        assert f"create mdev {u}: write it to {cli_world.fs.create_path(GVT, GVT_V58)}" in out
    assert out.rstrip().endswith("verdict: a start would succeed")
    # plan only reads: no write reached the fake kernel, no ledger appeared
    assert all(e["op"] not in ("create", "remove") for e in cli_world.fs.journal())
    assert cli_world.fs.devices() == {} and cli_world.hook.ledger() == []


def test_plan_reads_stdin_and_reports_adopt_and_keep(cli_world: World) -> None:
    mine, theirs = uid(), uid()
    cli_world.prepare("vm1", DOM_A, [(mine, GVT, GVT_V58)])  # created by the hook for vm1: plan says keep
    cli_world.fs.create_external(GVT, GVT_V58, theirs)  # exists, owned by nobody: plan says adopt
    xml = mdev_xml("vm1", DOM_A, [(mine, GVT, GVT_V58), (theirs, GVT, GVT_V58)])
    r = cli_world.cli("plan", "-", stdin=xml)
    assert r.returncode == 0, r.stderr
    assert f"keep mdev {mine}: the hook already created it for this domain" in r.stdout
    assert f"use the existing mdev {theirs} as it is" in r.stdout


def test_plan_domain_without_mdevs(cli_world: World, tmp_path: Path) -> None:
    r = cli_world.cli("plan", str(REPO / "examples" / "plain.xml"))
    assert r.returncode == 0 and "the hook ignores this domain" in r.stdout


def _owned_by_other(w: World, u: str) -> bytes:
    w.prepare("other", DOM_B, [(u, MTTY, "mtty-1")])  # the real hook gives u to another domain
    return mdev_xml("vm1", DOM_A, [(u, MTTY, "mtty-1")])


def _exists_as_other_type(w: World, u: str) -> bytes:
    w.fs.create_external(GVT, GVT_V58, u)
    return mdev_xml("vm1", DOM_A, [(u, GVT, GVT_V54)])


FAILURES: dict[str, tuple[Callable[[World, str], bytes], str]] = {
    "parent missing": (lambda w, u: mdev_xml("vm1", DOM_A, [(u, "0000:99:00.0", GVT_V54)]),
                       "parent 0000:99:00.0 not found under /sys/class/mdev_bus"),
    "type not offered": (lambda w, u: mdev_xml("vm1", DOM_A, [(u, GVT, "i915-GVTg_V5_1")]),
                         "does not offer type i915-GVTg_V5_1"),
    "no free instance": (lambda w, u: mdev_xml("vm1", DOM_A, [(u, GVT, GVT_V54), (uid(), GVT, GVT_V54)]),
                         "no free instance (available_instances=1; this domain needs 2"),
    "owned by another domain": (_owned_by_other, f"the ledger gives it to domain other ({DOM_B})"),
    "exists with another type": (_exists_as_other_type,
                                 f"it already exists as type {GVT_V58} on {GVT}, not {GVT_V54} on {GVT}"),
    "managed hostdev without metadata": (
        lambda w, u: mdev_xml("vm1", DOM_A, []).replace(
            b"</devices>", f"<hostdev mode='subsystem' type='mdev' managed='yes' model='vfio-pci'><source>"
                           f"<address uuid='{u}'/></source></hostdev></devices>".encode()),
        "does not say which parent and type to create; add it with: virsh metadata"),
}


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_plan_fails_with_the_hooks_own_line(cli_world: World, tmp_path: Path, case: str) -> None:
    make, expected = FAILURES[case]
    u = uid()
    xml = make(cli_world, u)
    before_devices, before_ledger = cli_world.fs.devices(), cli_world.hook.ledger()
    r = cli_world.cli("plan", write_xml(tmp_path, xml))
    assert r.returncode == 1
    err = one_line(r.stderr)
    assert expected in err, err
    assert "verdict: a start would FAIL" in r.stdout
    assert (cli_world.fs.devices(), cli_world.hook.ledger()) == (before_devices, before_ledger)
    # the hook itself, given the same domain, refuses the start with exactly this line
    hook = cli_world.hook.run("vm1", "prepare", "begin", xml)
    assert (hook.returncode, hook.stderr.decode()) == (1, f"mdev-hooks: {err}\n")


def test_plan_nvidia_vendor_vfio_parent(fakesysfs: Callable[..., Any], tmp_path: Path) -> None:
    w = World(fakesysfs("nvidia-h200x-vendor-vfio"), tmp_path)
    xml = mdev_xml("vm1", DOM_A, [(uid(), VF0, "nvidia-1428")])
    r = w.cli("plan", write_xml(tmp_path, xml))
    assert r.returncode == 1
    err = one_line(r.stderr)
    assert f"{VF0} uses NVIDIA's vendor-specific vGPU interface" in err and "not found" not in err
    assert w.hook.run("vm1", "prepare", "begin", xml).stderr.decode() == f"mdev-hooks: {err}\n"


def test_plan_json(cli_world: World, tmp_path: Path) -> None:
    u = uid()
    r = cli_world.cli("plan", "--json", write_xml(tmp_path, mdev_xml("vm1", DOM_A, [(u, GVT, GVT_V54)])))
    assert r.returncode == 0
    data = json.loads(r.stdout)
    assert data["ok"] is True and data["problem"] is None
    assert data["domain"] == {"name": "vm1", "uuid": DOM_A}
    [m] = data["mdevs"]
    assert (m["uuid"], m["parent"], m["type"], m["type_name"], m["available"], m["action"], m["verdict"]) == (
        u, GVT, GVT_V54, "GVTg_V5_4", 1, "create", "ok")
    assert "fence: 4" in m["description"] and len(data["actions"]) == 1

    bad = mdev_xml("vm1", DOM_A, [(u, GVT, "nope")])
    r = cli_world.cli("plan", "--json", write_xml(tmp_path, bad))
    assert r.returncode == 1
    data = json.loads(r.stdout)
    assert data["ok"] is False and data["mdevs"][0]["verdict"] == "fail" and data["actions"] == []
    assert r.stderr == f"mdev-hooks: {data['problem']}\n"
