"""The `mdev-hooks` console script, run as the administrator runs it (a subprocess of the installed entry point),
against the FUSE fake of mdev sysfs, the real hook (hooks/qemu) and a fake `virsh` (tests/support/fake_virsh.py; the
real libvirt is exercised by tests/libvirt/). What is checked is what the fake kernel saw (its journal), what the fake
virsh was asked, and what the user sees (exit code, stdout, stderr).
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.cliworld import PLAIN, World, canonical, write_xml
from support.common import CLI, DOM1, DOM2, DOM3, GVT, H200_VF, MTTY, REPO, T4, V54, V58, one_line, uid
from support.hookrun import HookEnv, domain_xml

from mdev_hooks import domain
from mdev_hooks.admin import front
from mdev_hooks.admin.install_cmd import MARKER, default_config_text, launcher_text


@pytest.fixture
def world(fakesysfs: Callable[..., Any], tmp_path: Path) -> World:
    return World(fakesysfs(["intel-gvtg", "mtty-sample", "nvidia-tesla-t4"]), tmp_path)


# -- the command line itself ---------------------------------------------------------------------------------------
def test_console_script_is_the_installed_entry_point() -> None:
    assert CLI.exists(), f"{CLI}: run `pip install -e .` (scripts/setup)"
    r = subprocess.run([str(CLI), "--version"], capture_output=True, text=True, check=False)
    from mdev_hooks import __version__

    assert (r.returncode, r.stdout.strip()) == (0, f"mdev-hooks {__version__}")


@pytest.mark.parametrize("command", ["install", "uninstall", "plan", "status", "gc", "types", "add", "drop"])
def test_every_command_has_help_with_an_example_and_exit_codes(command: str) -> None:
    r = subprocess.run([str(CLI), command, "--help"], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^examples?:\n(  .*\n)*?  .*\bmdev-hooks " + command, r.stdout, re.M), r.stdout
    assert "exit status:" in r.stdout and "2  usage error" in r.stdout


@pytest.mark.parametrize("args", [[], ["frobnicate"], ["add", "vm1", "--type", V54], ["types", "--parent", "../x"],
                                  ["drop", "vm1", "not-a-uuid"], ["plan", "--bogus"]])
def test_usage_errors_exit_2(args: list[str]) -> None:
    r = subprocess.run([str(CLI), *args], capture_output=True, text=True, check=False)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "usage: mdev-hooks" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("op", ["prepare begin", "release end", "migrate begin", "restore begin", "start begin",
                                "started begin", "stopped end", "reconnect begin", "attach begin"])
def test_hook_never_imports_the_admin_package(tmp_path: Path, op: str) -> None:
    """The hook's import graph, for every operation and on its slow path too (a managed mdev and a vGPU VF in the
    domain, failing or not), contains nothing under mdev_hooks.admin: checked by prefix, not by a list."""
    (tmp_path / "h").mkdir()
    h = HookEnv(tmp_path / "h", str(tmp_path / "nosys"))
    vf = ('<metadata><mdev:mdevs xmlns:mdev="urn:mdev-hooks:domain:1"><mdev:device kind="nvidia-vf" '
          'parent="0000:41:00.0" type="1414"/></mdev:mdevs></metadata>')
    xmls = [domain_xml("vm1", DOM1, []), domain_xml("vm1", DOM1, [(uid(), "mtty", "mtty-1")]),
            domain_xml("vm1", DOM1, []).replace(b"<metadata>", vf.encode() + b"<metadata>")]
    code = (
        "import io, sys\n"
        "from mdev_hooks import hook\n"
        f"for xml in {xmls!r}:\n"
        f"    hook.main(['vm1', *{op.split()!r}, '-'], io.BytesIO(xml))\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('mdev_hooks'))))\n"
    )
    r = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, env=h.environ(),
                       check=False)
    assert r.returncode == 0, r.stderr
    loaded = set(r.stdout.split())
    assert "mdev_hooks.hook" in loaded
    if op in ("prepare begin", "release end", "migrate begin", "restore begin"):
        assert "mdev_hooks.core.plan" in loaded  # the slow path really ran
    else:
        assert loaded == {"mdev_hooks", "mdev_hooks.hook"}  # the no-op path: nothing else at all
    assert not [m for m in loaded if m == "mdev_hooks.admin" or m.startswith("mdev_hooks.admin.")]


# -- plan ------------------------------------------------------------------------------------------------------------
def test_plan_success_shows_table_and_actions_and_changes_nothing(world: World, tmp_path: Path) -> None:
    a, b = uid(), uid()
    xml = domain_xml("vm1", DOM1, [(a, GVT, V58), (b, GVT, V58)])
    r = world.cli("plan", write_xml(tmp_path, xml))
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    out = r.stdout
    assert f"domain vm1 ({DOM1})" in out
    for u in (a, b):
        row = next(line for line in out.splitlines() if line.strip().startswith(u))
        assert row.split()[:4] == [u, GVT, V58, "GVTg_V5_8"]
        assert row.split()[-3:] == ["2", "create", "ok"]
        assert f"create mdev {u}: write it to {world.fs.create_path(GVT, V58)}" in out
    assert out.rstrip().endswith("verdict: a start would succeed")
    # plan only reads: no write reached the fake kernel, no ledger appeared
    assert all(e["op"] not in ("create", "remove") for e in world.fs.journal())
    assert world.fs.devices() == {} and world.hook.ledger() == []


def test_plan_reads_stdin_and_reports_adopt_and_keep(world: World) -> None:
    mine, theirs = uid(), uid()
    world.prepare("vm1", DOM1, [(mine, GVT, V58)])  # created by the hook for vm1: plan says keep
    world.fs.create_external(GVT, V58, theirs)  # exists, owned by nobody: plan says adopt
    xml = domain_xml("vm1", DOM1, [(mine, GVT, V58), (theirs, GVT, V58)])
    r = world.cli("plan", "-", stdin=xml)
    assert r.returncode == 0, r.stderr
    assert f"keep mdev {mine}: the hook already created it for this domain" in r.stdout
    assert f"use the existing mdev {theirs} as it is" in r.stdout


def test_plan_domain_without_mdevs(world: World, tmp_path: Path) -> None:
    r = world.cli("plan", str(REPO / "examples" / "plain.xml"))
    assert r.returncode == 0 and "the hook ignores this domain" in r.stdout


def _owned_by_other(w: World, u: str) -> bytes:
    w.prepare("other", DOM2, [(u, MTTY, "mtty-1")])  # the real hook gives u to another domain
    return domain_xml("vm1", DOM1, [(u, MTTY, "mtty-1")])


def _exists_as_other_type(w: World, u: str) -> bytes:
    w.fs.create_external(GVT, V58, u)
    return domain_xml("vm1", DOM1, [(u, GVT, V54)])


FAILURES: dict[str, tuple[Callable[[World, str], bytes], str]] = {
    "parent missing": (lambda w, u: domain_xml("vm1", DOM1, [(u, "0000:99:00.0", V54)]),
                       "parent 0000:99:00.0 not found under /sys/class/mdev_bus"),
    "type not offered": (lambda w, u: domain_xml("vm1", DOM1, [(u, GVT, "i915-GVTg_V5_1")]),
                         "does not offer type i915-GVTg_V5_1"),
    "no free instance": (lambda w, u: domain_xml("vm1", DOM1, [(u, GVT, V54), (uid(), GVT, V54)]),
                         "no free instance (available_instances=1; this domain needs 2"),
    "owned by another domain": (_owned_by_other, f"the ledger gives it to domain other ({DOM2})"),
    "exists with another type": (_exists_as_other_type,
                                 f"it already exists as type {V58} on {GVT}, not {V54} on {GVT}"),
    "managed hostdev without metadata": (
        lambda w, u: domain_xml("vm1", DOM1, []).replace(
            b"</devices>", f"<hostdev mode='subsystem' type='mdev' managed='yes' model='vfio-pci'><source>"
                           f"<address uuid='{u}'/></source></hostdev></devices>".encode()),
        "does not say which parent and type to create; add it with: virsh metadata"),
}


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_plan_fails_with_the_hooks_own_line(world: World, tmp_path: Path, case: str) -> None:
    make, expected = FAILURES[case]
    u = uid()
    xml = make(world, u)
    before_devices, before_ledger = world.fs.devices(), world.hook.ledger()
    r = world.cli("plan", write_xml(tmp_path, xml))
    assert r.returncode == 1
    err = one_line(r.stderr)
    assert expected in err, err
    assert "verdict: a start would FAIL" in r.stdout
    assert (world.fs.devices(), world.hook.ledger()) == (before_devices, before_ledger)
    # the hook itself, given the same domain, refuses the start with exactly this line
    hook = world.hook.run("vm1", "prepare", "begin", xml)
    assert (hook.returncode, hook.stderr.decode()) == (1, err)


def test_plan_nvidia_vendor_vfio_parent(fakesysfs: Callable[..., Any], tmp_path: Path) -> None:
    w = World(fakesysfs("nvidia-h200x-vendor-vfio"), tmp_path)
    xml = domain_xml("vm1", DOM1, [(uid(), H200_VF, "nvidia-1428")])
    r = w.cli("plan", write_xml(tmp_path, xml))
    assert r.returncode == 1
    err = one_line(r.stderr)
    assert f"{H200_VF} uses NVIDIA's vendor-specific vGPU interface" in err and "not found" not in err
    assert w.hook.run("vm1", "prepare", "begin", xml).stderr.decode() == err


def test_plan_json(world: World, tmp_path: Path) -> None:
    u = uid()
    r = world.cli("plan", "--json", write_xml(tmp_path, domain_xml("vm1", DOM1, [(u, GVT, V54)])))
    assert r.returncode == 0
    data = json.loads(r.stdout)
    assert data["ok"] is True and data["problem"] is None
    assert data["domain"] == {"name": "vm1", "uuid": DOM1}
    [m] = data["mdevs"]
    assert (m["uuid"], m["parent"], m["type"], m["type_name"], m["available"], m["action"], m["verdict"]) == (
        u, GVT, V54, "GVTg_V5_4", 1, "create", "ok")
    assert "fence: 4" in m["description"] and len(data["actions"]) == 1

    bad = domain_xml("vm1", DOM1, [(u, GVT, "nope")])
    r = world.cli("plan", "--json", write_xml(tmp_path, bad))
    assert r.returncode == 1
    data = json.loads(r.stdout)
    assert data["ok"] is False and data["mdevs"][0]["verdict"] == "fail" and data["actions"] == []
    assert r.stderr == f"mdev-hooks: {data['problem']}\n"


# -- status and gc ---------------------------------------------------------------------------------------------------
def populate(world: World) -> dict[str, str]:
    """vm1 running with a device; vm2 stopped but its device still there; vm3's device removed behind our back;
    an external device; vm4 adopted an external device and is not running."""
    d = {"owned": uid(), "orphan": uid(), "gone": uid(), "external": uid(), "adopted": uid()}
    world.prepare("vm1", DOM1, [(d["owned"], GVT, V58)])
    world.prepare("vm2", DOM2, [(d["orphan"], MTTY, "mtty-2")])
    world.prepare("vm3", DOM3, [(d["gone"], MTTY, "mtty-1")])
    world.fs.remove_external(d["gone"])
    world.fs.create_external(GVT, V58, d["external"])
    world.fs.create_external(MTTY, "mtty-1", d["adopted"])
    world.prepare("vm4", "44444444-4444-4444-8444-444444444444", [(d["adopted"], MTTY, "mtty-1")])
    world.running(DOM1)
    return d


def test_status_owned_external_and_orphans(world: World) -> None:
    d = populate(world)
    r = world.cli("status")
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    lines = r.stdout.splitlines()

    def row(u: str, section: str) -> list[str]:
        start = next(i for i, line in enumerate(lines) if line.startswith(section))
        return next(line for line in lines[start:] if line.strip().startswith(u)).split()

    assert row(d["owned"], "mdevs")[:6] == [d["owned"], GVT, V58, "vm1", f"({DOM1})", "created"]
    assert row(d["owned"], "mdevs")[-1] == "yes"
    assert row(d["external"], "mdevs")[3] == "external"
    assert row(d["orphan"], "mdevs")[-1] == "no"
    assert " ".join(row(d["orphan"], "orphaned"))[-len("domain not running"):] == "domain not running"
    assert " ".join(row(d["gone"], "orphaned")).endswith("device gone")
    assert not any(line.strip().startswith(d["owned"]) for line in lines[next(
        i for i, line in enumerate(lines) if line.startswith("orphaned")):])
    assert re.search(rf"^  {re.escape(GVT)}\s+{V58}\s+GVTg_V5_8\s+0\s+2\s", r.stdout, re.M), r.stdout
    assert re.search(r"^  mtty\s+mtty-1\s+Single port serial\s+\d+\s+1\s", r.stdout, re.M), r.stdout

    data = json.loads(world.cli("status", "--json").stdout)
    owners = {x["uuid"]: x["owner"] for x in data["devices"]}
    assert owners == {d["owned"]: f"vm1 ({DOM1})", d["orphan"]: f"vm2 ({DOM2})", d["external"]: "external",
                      d["adopted"]: "vm4 (44444444-4444-4444-8444-444444444444)"}
    assert {o["mdev"]: o["reason"] for o in data["orphans"]} == {
        d["orphan"]: "domain not running", d["gone"]: "device gone", d["adopted"]: "domain not running"}
    gvt = next(p for p in data["parents"] if p["parent"] == GVT)
    assert {t["type"]: (t["available"], t["in_use"]) for t in gvt["types"]} == {V54: (0, 0), V58: (0, 2)}
    assert data["running_known"] is True


def test_status_without_virsh_says_unknown(world: World) -> None:
    d = populate(world)
    (world.virsh_dir / "broken").touch()
    r = world.cli("status")
    assert r.returncode == 0, r.stderr
    assert "domains running: unknown (`" in r.stdout and "failed to connect to the hypervisor" in r.stdout
    data = json.loads(world.cli("status", "--json").stdout)
    assert data["running_known"] is False
    assert [o["mdev"] for o in data["orphans"]] == [d["gone"]]
    assert {x["running"] for x in data["devices"] if x["owner"] != "external"} == {None}


def test_gc_removes_only_orphans_never_external(world: World) -> None:
    d = populate(world)
    state = world.hook.state_dir
    stale_tmp = state / f".{d['owned']}.999999999.1.tmp"
    stale_tmp.write_text("{}")
    live_tmp = state / f".{d['owned']}.{os.getpid()}.2.tmp"  # a writer that is alive and recent: kept
    live_tmp.write_text("{}")
    ledger_before = world.hook.ledger()
    removes_before = world.removes()

    r = world.cli("gc", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert f"would remove mdev {d['orphan']} (type mtty-2 on mtty) of domain vm2 ({DOM2}): domain not running" \
        in r.stdout
    assert f"would forget mdev {d['gone']}" in r.stdout and f"would forget mdev {d['adopted']}" in r.stdout
    assert f"would delete stale ledger temp file {stale_tmp}" in r.stdout
    assert (world.removes(), world.hook.ledger(), stale_tmp.exists()) == (removes_before, ledger_before, True)

    r = world.cli("gc")
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    assert world.removes() == [*removes_before, d["orphan"]]  # the kernel saw exactly one remove: the orphan's
    assert world.fs.devices() == {d["owned"]: (GVT, V58), d["external"]: (GVT, V58), d["adopted"]: (MTTY, "mtty-1")}
    assert world.hook.ledger() == sorted([f"{d['owned']}.json", live_tmp.name])
    assert not stale_tmp.exists()
    assert f"removed mdev {d['orphan']}" in r.stdout and f"forgot mdev {d['gone']}" in r.stdout
    assert any(e["event"] == "mdev.removed" and e["mdev"] == d["orphan"] and e.get("op") == "gc"
               for e in world.hook.events())

    r = world.cli("gc")
    assert (r.returncode, r.stdout.strip()) == (0, "nothing to clean up")


def test_gc_drops_gone_device_of_running_domain_and_keeps_its_live_one(world: World) -> None:
    a, b = uid(), uid()
    world.prepare("vm1", DOM1, [(a, GVT, V58), (b, MTTY, "mtty-1")])
    world.fs.remove_external(b)
    world.running(DOM1)
    r = world.cli("gc")
    assert r.returncode == 0, r.stderr
    assert f"forgot mdev {b}" in r.stdout and "(domain running)" in r.stdout
    assert world.hook.ledger() == [f"{a}.json"] and world.fs.devices() == {a: (GVT, V58)}


def test_gc_refuses_without_virsh(world: World) -> None:
    d = populate(world)
    (world.virsh_dir / "broken").touch()
    ledger = world.hook.ledger()
    r = world.cli("gc")
    assert r.returncode == 1
    assert "cannot tell which domains are running, so nothing was removed" in one_line(r.stderr)
    assert d["orphan"] in world.fs.devices() and world.hook.ledger() == ledger
    r = world.cli("gc", MDEV_HOOKS_VIRSH="/nonexistent/virsh")
    assert r.returncode == 1 and "not found" in r.stderr


def test_gc_skips_a_domain_whose_claim_is_newer_than_the_question(world: World) -> None:
    """A claim written after `virsh list` answered belongs to a start gc knows nothing about."""
    u = uid()
    world.prepare("vm2", DOM2, [(u, MTTY, "mtty-2")])
    path = world.hook.state_dir / f"{u}.json"
    claim = json.loads(path.read_text())
    claim["time"] = time.time() + 3600
    path.write_text(json.dumps(claim))
    r = world.cli("gc")
    assert r.returncode == 0
    assert f"warning: domain vm2 ({DOM2}) changed while gc ran" in r.stdout
    assert u in world.fs.devices() and world.removes() == []


# -- types -----------------------------------------------------------------------------------------------------------
def test_types(world: World) -> None:
    world.prepare("vm1", DOM1, [(uid(), GVT, V58)])
    r = world.cli("types", "--parent", GVT)
    assert r.returncode == 0
    assert r.stdout.splitlines()[:8] == [
        GVT, f"  {V54}", "    Available instances: 0", "    In use: 0", "    Device API: vfio-pci",
        "    Name: GVTg_V5_4",
        "    Description: low_gm_size: 128MB, high_gm_size: 512MB, fence: 4, resolution: 1920x1200, weight: 4",
        f"  {V58}"]
    assert "    In use: 1" in r.stdout
    r = world.cli("types")
    assert [line for line in r.stdout.splitlines() if not line.startswith(" ")] == [GVT, T4, MTTY]
    assert "  nvidia-222" in r.stdout
    data = json.loads(world.cli("types", "--json", "--parent", MTTY).stdout)
    assert [t["type"] for t in data[0]["types"]] == ["mtty-1", "mtty-2"]
    r = world.cli("types", "--parent", "0000:99:00.0")
    assert r.returncode == 1 and "parent 0000:99:00.0 not found" in one_line(r.stderr)


# -- add / drop ------------------------------------------------------------------------------------------------------
def test_add_then_drop_through_virsh(world: World) -> None:
    (world.virsh_dir / "domains" / "plain.xml").write_bytes(PLAIN)
    u = uid()
    r = world.cli("add", "plain", "--parent", GVT, "--type", V54, "--uuid", u.upper())
    assert r.returncode == 0, r.stderr
    assert f"added mdev {u} (type {V54} on {GVT}, model vfio-pci) to domain plain" in r.stdout
    defined = (world.virsh_dir / "domains" / "plain.xml").read_bytes()
    parsed = domain.parse(defined)
    assert [(m.key, m.parent, m.type) for m in parsed.devices] == [(u, GVT, V54)]
    assert b"passwd='s3cret'" in defined or b'passwd="s3cret"' in defined
    assert b"<!-- keep me -->" in defined
    calls = [c[2:] for c in world.calls()]
    assert calls[0] == ["dumpxml", "--inactive", "--security-info", "plain"]
    assert calls[1][0] == "define" and all(c[:2] == ["-c", "qemu:///system"] for c in world.calls())
    # the hook accepts what add wrote
    assert world.cli("plan", "-", stdin=defined).returncode == 0

    r = world.cli("drop", "plain", u)
    assert r.returncode == 0, r.stderr
    assert f"removed <hostdev type='mdev' managed='yes'> of mdev {u} from domain plain" in r.stdout
    assert canonical((world.virsh_dir / "domains" / "plain.xml").read_bytes()) == canonical(PLAIN)

    r = world.cli("drop", "plain", u)
    assert r.returncode == 1 and f"domain plain has no managed mdev {u}" in one_line(r.stderr)


def test_add_keeps_existing_entries_and_generates_uuid(world: World) -> None:
    (world.virsh_dir / "domains" / "gvtg.xml").write_bytes((REPO / "examples" / "gvtg-desktop.xml").read_bytes())
    r = world.cli("add", "gvtg-desktop", "--parent", MTTY, "--type", "mtty-2", "--connect", "qemu:///session")
    assert r.returncode == 0, r.stderr
    new = re.search(r"added mdev ([0-9a-f-]{36}) ", r.stdout)
    assert new is not None
    xml = (world.virsh_dir / "domains" / "gvtg-desktop.xml").read_bytes()
    parsed = domain.parse(xml)
    assert [(m.parent, m.type) for m in parsed.devices] == [(GVT, V54), (MTTY, "mtty-2")]
    assert parsed.devices[1].key == new.group(1)
    assert xml.count(b"urn:mdev-hooks:domain:1") == 1  # one metadata element per namespace
    assert world.calls()[0][:2] == ["-c", "qemu:///session"]


@pytest.mark.parametrize(("parent", "mtype", "expected"), [
    (GVT, "i915-GVTg_V5_1", "does not offer type i915-GVTg_V5_1"),
    ("0000:99:00.0", V54, "parent 0000:99:00.0 not found"),
])
def test_add_refuses_what_this_host_cannot_create(world: World, parent: str, mtype: str, expected: str) -> None:
    (world.virsh_dir / "domains" / "plain.xml").write_bytes(PLAIN)
    r = world.cli("add", "plain", "--parent", parent, "--type", mtype)
    assert r.returncode == 1 and expected in one_line(r.stderr)
    assert [c[2] for c in world.calls()] == ["dumpxml"]  # nothing defined
    assert (world.virsh_dir / "domains" / "plain.xml").read_bytes() == PLAIN


def test_add_refuses_a_uuid_of_another_domain(world: World) -> None:
    (world.virsh_dir / "domains" / "plain.xml").write_bytes(PLAIN)
    u = uid()
    world.prepare("other", DOM2, [(u, MTTY, "mtty-1")])
    r = world.cli("add", "plain", "--parent", MTTY, "--type", "mtty-1", "--uuid", u)
    assert r.returncode == 1 and f"the ledger gives it to domain other ({DOM2})" in one_line(r.stderr)
    r = world.cli("add", "nosuch", "--parent", MTTY, "--type", "mtty-1")
    assert r.returncode == 1 and "failed to get domain 'nosuch'" in one_line(r.stderr)


# -- install / uninstall ---------------------------------------------------------------------------------------------
FOREIGN = "#!/bin/sh\n# a user's own dispatcher\nexec /usr/local/bin/dispatch \"$@\"\n"


def test_launcher_is_the_repositorys_hook() -> None:
    """One source: hooks/qemu is the package's launcher, and what install writes is it with the marker, the
    interpreter and its paths changed (tests/test_sh_front.py: the rest of the front)."""
    repo_hook = REPO / "hooks" / "qemu"
    assert repo_hook.resolve() == (REPO / "mdev_hooks" / "share" / "qemu-hook").resolve()
    assert repo_hook.read_text() == front.template()
    assert launcher_text("/usr/bin/python3").split("\n", 2)[2] == written_body("/usr/bin/python3", None)


def script_python(script: Path) -> str:
    """The interpreter a console script runs with (its #! line): the one `install` must name."""
    return script.read_text().split("\n", 1)[0][2:].strip()


def install(w: World, hooks: Path, *args: str, python: str = str(CLI)) -> subprocess.CompletedProcess[str]:
    return subprocess.run([python, "install", "--hooks-dir", str(hooks), "--config-dir", str(hooks.parent / "etc"),
                           "--share-dir", str(hooks.parent / "share"), "--logrotate-dir", str(hooks.parent / "lr"),
                           *args], capture_output=True, text=True, env=w.env(), timeout=120, check=False)


def uninstall(w: World, hooks: Path) -> subprocess.CompletedProcess[str]:
    return w.cli("uninstall", "--hooks-dir", str(hooks), "--config-dir", str(hooks.parent / "etc"),
                 "--share-dir", str(hooks.parent / "share"), "--logrotate-dir", str(hooks.parent / "lr"))


def written_body(python: str, paths: list[str] | None) -> str:
    """The template after its first two lines, with the lines install writes for `python` (and `paths`: -I -S)."""
    body = (REPO / "hooks" / "qemu").read_text().split("\n", 2)[2]
    body = body.replace(front.PYTHON_LINE, f"python={python}")
    body = body.replace(front.EXEC_LINE, front.EXEC_LINE.replace('"$0"', "-I -S \"$0\"" if paths else '-I "$0"'))
    return body.replace(front.PATHS_LINE, f"PATHS = {paths or []!r}")


def check_launcher(path: Path, python: str) -> None:
    text = path.read_text()
    first, marker, body = text.split("\n", 2)
    assert (first, marker, body) == ("#!/bin/sh", MARKER, written_body(python, front.site_paths(python)))
    assert stat.S_IMODE(path.stat().st_mode) == 0o755


def hook_works(w: World, hook: Path) -> None:
    """The installed file, run as libvirt runs it (exec, scrubbed env), creates and removes a device."""
    u = uid()
    xml = domain_xml("vm9", DOM3, [(u, MTTY, "mtty-1")])
    for op, sub in (("prepare", "begin"), ("release", "end")):
        r = subprocess.run([str(hook), "vm9", op, sub, "-"], input=xml, capture_output=True, env=w.hook.environ(),
                           timeout=60, cwd="/", check=False)
        assert (r.returncode, r.stdout, r.stderr) == (0, b"", b""), r.stderr
        assert (u in w.fs.devices()) == (op == "prepare")


def test_install_fresh_update_uninstall(world: World, tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    r = install(world, hooks)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    check_launcher(hooks / "qemu", script_python(CLI))
    assert (hooks.parent / "etc" / "config.toml").read_text() == default_config_text()
    assert f"installed {hooks / 'qemu'} (interpreter {script_python(CLI)})" in r.stdout
    # a hook that did not exist before: say how to make libvirt see it (or that no daemon runs)
    assert re.search(r"run:\n    (systemctl reload (libvirtd|virtqemud)|kill -HUP \$\(pidof (libvirtd|virtqemud)\))$"
                     r"|no libvirt daemon \(libvirtd, virtqemud\) is running", r.stdout, re.M), r.stdout
    hook_works(world, hooks / "qemu")

    r = install(world, hooks)
    assert r.returncode == 0 and f"updated {hooks / 'qemu'}" in r.stdout
    assert "kept the existing config" in r.stdout and "nothing to reload" in r.stdout
    assert sorted(p.name for p in hooks.iterdir()) == ["qemu"]  # no temp file left behind

    r = uninstall(world, hooks)
    assert r.returncode == 0, r.stderr
    assert not (hooks / "qemu").exists() and not (hooks.parent / "etc").exists()
    assert uninstall(world, hooks).stdout.startswith(f"mdev-hooks is not installed in {hooks}")


def test_install_refuses_a_foreign_hook_then_qemu_d(world: World, tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "qemu").write_text(FOREIGN)
    (hooks / "qemu").chmod(0o755)
    r = install(world, hooks)
    assert r.returncode == 1
    assert r.stderr.startswith(f"mdev-hooks: {hooks / 'qemu'} exists and was not written by mdev-hooks")
    assert "mdev-hooks install --qemu-d" in r.stderr and "mdev-hooks install --force" in r.stderr
    assert (hooks / "qemu").read_text() == FOREIGN and sorted(p.name for p in hooks.iterdir()) == ["qemu"]

    r = install(world, hooks, "--qemu-d")
    assert r.returncode == 0, r.stderr
    check_launcher(hooks / "qemu.d" / "50-mdev-hooks", script_python(CLI))
    assert (hooks / "qemu").read_text() == FOREIGN
    assert f"already calls qemu hooks ({hooks / 'qemu'} exists)" in r.stdout or "no libvirt daemon" in r.stdout
    assert os.listdir(hooks / "qemu.d") == ["50-mdev-hooks"]
    hook_works(world, hooks / "qemu.d" / "50-mdev-hooks")
    # installing it a second time as hooks/qemu would run the hook twice
    r = install(world, hooks, "--force")
    assert r.returncode == 1 and "already installed as" in r.stderr
    assert (hooks / "qemu").read_text() == FOREIGN

    r = uninstall(world, hooks)
    assert r.returncode == 0 and f"removed {hooks / 'qemu.d' / '50-mdev-hooks'}" in r.stdout
    assert (hooks / "qemu").read_text() == FOREIGN and os.listdir(hooks / "qemu.d") == []


def test_install_force_saves_and_uninstall_restores(world: World, tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "qemu").write_text(FOREIGN)
    (hooks / "qemu").chmod(0o750)
    (hooks.parent / "etc").mkdir()
    (hooks.parent / "etc" / "config.toml").write_text("dry_run = true\n")
    r = install(world, hooks, "--force")
    assert r.returncode == 0, r.stderr
    backup = hooks / "qemu.mdev-hooks-backup"
    assert f"saved {hooks / 'qemu'} as {backup}" in r.stdout and "replaced" in r.stdout
    assert backup.read_text() == FOREIGN and stat.S_IMODE(backup.stat().st_mode) == 0o750
    check_launcher(hooks / "qemu", script_python(CLI))
    assert "kept the existing config" in r.stdout and "nothing to reload" in r.stdout
    hook_works(world, hooks / "qemu")

    r = uninstall(world, hooks)
    assert r.returncode == 0, r.stderr
    assert f"restored {hooks / 'qemu'} from {backup}" in r.stdout
    assert (hooks / "qemu").read_text() == FOREIGN and stat.S_IMODE((hooks / "qemu").stat().st_mode) == 0o750
    assert not backup.exists()
    assert (hooks.parent / "etc" / "config.toml").read_text() == "dry_run = true\n"  # edited: kept
    assert "it was edited" in r.stdout


def test_install_from_a_venv_names_the_venvs_python(world: World, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300)
    # the dependencies as this interpreter has them (when it is itself a venv, --system-site-packages misses them)
    import site
    import sysconfig

    purelib = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path("
                              "'purelib'))"], capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "parent-site.pth").write_text("\n".join([*site.getsitepackages(), sysconfig.get_path("purelib")]))
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", "--disable-pip-version-check",
                          "-e", str(REPO)], capture_output=True, text=True, timeout=600, check=False)
    assert pip.returncode == 0, pip.stderr
    script = venv / "bin" / "mdev-hooks"
    python = script_python(script)
    assert python.startswith(str(venv / "bin" / "python")), python
    hooks = tmp_path / "hooks"
    r = install(world, hooks, python=str(script))
    assert r.returncode == 0, r.stderr
    check_launcher(hooks / "qemu", python)
    hook_works(world, hooks / "qemu")
