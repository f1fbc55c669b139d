"""Issue 8 part A ("Beyond a fixed parent"): the admin's policy (allowed_parents / allowed_types), checked through
the real hook (hooks/qemu as a subprocess, scrubbed environment) and the real `mdev-hooks` command, against the
FUSE fake of mdev sysfs. What is checked is what the fake kernel saw (its journal) and what the user sees.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hookrun import HookEnv, domain_xml

CLI = Path(sys.executable).parent / "mdev-hooks"
GVT, T4, MTTY = "0000:00:02.0", "0000:3b:00.0", "mtty"
V54, V58 = "i915-GVTg_V5_4", "i915-GVTg_V5_8"
DOM1 = "5909df77-0544-4c25-b292-6027c2468ce1"


def uid() -> str:
    return str(uuidlib.uuid4())


def one_line(err: str) -> str:
    assert err.startswith("mdev-hooks: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def writes(fs: Any) -> list[dict[str, Any]]:
    return [e for e in fs.journal() if e["op"] in ("create", "remove") and e.get("actor") == "user"]


def cli(h: HookEnv, *args: str) -> subprocess.CompletedProcess[str]:
    env = h.environ(MDEV_HOOKS_VIRSH=f"{sys.executable} {Path(__file__).parent / 'fake_virsh.py'}",
                    FAKE_VIRSH_DIR=str(h.dir / "virsh"))
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, env=env, timeout=120,
                          stdin=subprocess.DEVNULL, check=False)


@pytest.fixture
def world(fakesysfs: Callable[..., Any], tmp_path: Path) -> tuple[Any, HookEnv]:
    fs = fakesysfs(["intel-gvtg", "mtty-sample", "nvidia-tesla-t4"])
    return fs, HookEnv(tmp_path / "hook", fs.root)


# -- item 6: allowed_parents / allowed_types -------------------------------------------------------------------------
POLICY = 'allowed_parents = ["0000:00:*", "mtty"]\nallowed_types = ["i915-GVTg_V5_[8]", "mtty-*"]\n'


@pytest.mark.parametrize(("mdev", "rule"), [
    ((T4, "nvidia-222"), 'parent 0000:3b:00.0 is not allowed by allowed_parents = ["0000:00:*", "mtty"]'),
    ((GVT, V54), 'type i915-GVTg_V5_4 is not allowed by allowed_types = ["i915-GVTg_V5_[8]", "mtty-*"]'),
])
def test_policy_refuses_with_the_rule_and_writes_nothing(world: tuple[Any, HookEnv], tmp_path: Path,
                                                         mdev: tuple[str, str], rule: str) -> None:
    fs, h = world
    h.write(POLICY)
    ok, bad = uid(), uid()
    # the allowed device comes first: validation refuses the whole start before any create
    xml = domain_xml("vm1", DOM1, [(ok, MTTY, "mtty-1"), (bad, *mdev)])
    r = h.run("vm1", "prepare", "begin", xml)
    assert r.returncode == 1 and r.stdout == b""
    line = one_line(r.stderr.decode())
    assert line == f"mdev-hooks: mdev {bad} (type {mdev[1]} on {mdev[0]}): {rule} in {h.config}\n"
    assert writes(fs) == [] and fs.devices() == {} and h.ledger() == []
    refused = [e for e in h.events() if e["event"] == "mdev.policy_refused"]
    assert [e["mdev"] for e in refused] == [bad]
    # plan: the same line, and the policy in effect
    path = tmp_path / "dom.xml"
    path.write_bytes(xml)
    p = cli(h, "plan", str(path))
    assert (p.returncode, p.stderr) == (1, line)
    assert f'policy ({h.config}): allowed_parents = ["0000:00:*", "mtty"], allowed_types = ' in p.stdout
    data = json.loads(cli(h, "plan", "--json", str(path)).stdout)
    assert data["policy"] == {"config": str(h.config), "allowed_parents": ["0000:00:*", "mtty"],
                              "allowed_types": ["i915-GVTg_V5_[8]", "mtty-*"]}


def test_policy_allows_matching_devices(world: tuple[Any, HookEnv]) -> None:
    fs, h = world
    h.write(POLICY)
    a, b = uid(), uid()
    xml = domain_xml("vm1", DOM1, [(a, GVT, V58), (b, MTTY, "mtty-2")])
    r = h.run("vm1", "prepare", "begin", xml)
    assert (r.returncode, r.stderr) == (0, b""), r.stderr
    assert fs.devices() == {a: (GVT, V58), b: (MTTY, "mtty-2")}
    assert sorted(e["mdev"] for e in h.events() if e["event"] == "mdev.policy_allowed") == sorted([a, b])
    # a policy tightened while the VM runs does not stop release from removing what the hook created
    h.write('allowed_parents = []\n')
    assert h.run("vm1", "release", "end", xml).returncode == 0
    assert fs.devices() == {} and h.ledger() == []


def test_empty_policy_list_allows_nothing(world: tuple[Any, HookEnv]) -> None:
    fs, h = world
    h.write("allowed_types = []\n")
    u = uid()
    r = h.run("vm1", "prepare", "begin", domain_xml("vm1", DOM1, [(u, MTTY, "mtty-1")]))
    assert "type mtty-1 is not allowed by allowed_types = []" in one_line(r.stderr.decode())
    assert writes(fs) == []


def test_status_shows_policy_and_allowed_column(world: tuple[Any, HookEnv]) -> None:
    _, h = world
    h.write(POLICY)
    r = cli(h, "status")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "ALLOWED" in out and f"policy ({h.config}): allowed_parents" in out
    assert re.search(rf"^  {re.escape(GVT)}\s+{V58}\s+GVTg_V5_8\s+\d+\s+0\s+yes\s", out, re.M), out
    assert re.search(rf"^  {re.escape(GVT)}\s+{V54}\s+GVTg_V5_4\s+\d+\s+0\s+no\s", out, re.M), out
    assert re.search(rf"^  {re.escape(T4)}\s+nvidia-222\s+.*\s0\s+no\s", out, re.M), out
    data = json.loads(cli(h, "status", "--json").stdout)
    types = {(p["parent"], t["type"]): t["allowed"] for p in data["parents"] for t in p["types"]}
    assert types[(MTTY, "mtty-1")] is True and types[(T4, "nvidia-222")] is False
    # without a policy: no column, no allowed key
    h.write("")
    r = cli(h, "status")
    assert "ALLOWED" not in r.stdout and "policy (" not in r.stdout


@pytest.mark.parametrize(("text", "match"), [
    ('allowed_parents = "0000:00:02.0"', "allowed_parents must be a list of strings"),
    ("allowed_types = [1, 2]", "allowed_types must be a list of strings"),
    ('allowed_parents = ["a b"]', "is not a glob of a device name"),
    ('allowed_parents = ["../x"]', "is not a glob of a device name"),
    ('allowed_types = [""]', "is not a glob of a device name"),
])
def test_bad_policy_fails_prepare_with_one_line(world: tuple[Any, HookEnv], text: str, match: str) -> None:
    fs, h = world
    h.write(text)
    r = h.run("vm1", "prepare", "begin", domain_xml("vm1", DOM1, [(uid(), MTTY, "mtty-1")]))
    assert r.returncode == 1 and match in one_line(r.stderr.decode())
    assert writes(fs) == []


# -- item 4: migrate/restore begin on the destination, and config [parents] ----------------------------------------
DOM2 = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
OLD = "0000:41:00.0"  # the parent as the source host (and the domain XML) names it; not on this host


def _no_trace(fs: Any, h: HookEnv) -> None:
    assert writes(fs) == [] and fs.devices() == {} and h.ledger() == []


@pytest.mark.parametrize("op", ["migrate", "restore"])
def test_incoming_ok_prints_nothing_writes_nothing(world: tuple[Any, HookEnv], op: str) -> None:
    fs, h = world
    xml = domain_xml("vm1", DOM1, [(uid(), GVT, V58), (uid(), MTTY, "mtty-2")])
    r = h.run("vm1", op, "begin", xml)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    _no_trace(fs, h)
    assert not h.state_dir.exists() and not h.lock_dir.exists()  # read-only: no ledger dir, no locks
    assert [e["event"] for e in h.events()][-2:] == ["incoming.checked", "hook.done"]


@pytest.mark.parametrize(("op", "make", "expected"), [
    ("migrate", lambda u: [(u, "0000:99:00.0", V54)], "parent 0000:99:00.0 not found"),
    ("restore", lambda u: [(u, GVT, V54), (uid(), GVT, V54)], "no free instance (available_instances=1; this "
                                                              "domain needs 2"),
    ("migrate", lambda u: [(u, GVT, "nvidia-231")], f"parent {GVT} does not offer type nvidia-231"),
])
def test_incoming_refused_early_with_one_line(world: tuple[Any, HookEnv], op: str,
                                               make: Callable[[str], list[tuple[str, str, str]]],
                                               expected: str) -> None:
    fs, h = world
    u = uid()
    r = h.run("vm1", op, "begin", domain_xml("vm1", DOM1, make(u)))
    assert r.returncode == 1 and r.stdout == b""
    line = one_line(r.stderr.decode())
    when = "before the domain came to this host" if op == "migrate" else "before the saved domain is restored"
    assert expected in line and f"(checked at {op} begin, {when})" in line, line
    _no_trace(fs, h)


def test_incoming_accepts_own_devices_refuses_anothers(world: tuple[Any, HookEnv]) -> None:
    fs, h = world
    mine, theirs = uid(), uid()
    assert h.run("vm1", "prepare", "begin", domain_xml("vm1", DOM1, [(mine, MTTY, "mtty-1")])).returncode == 0
    assert h.run("vm2", "prepare", "begin", domain_xml("vm2", DOM2, [(theirs, MTTY, "mtty-1")])).returncode == 0
    before = (fs.devices(), h.ledger(), len(writes(fs)))
    r = h.run("vm1", "migrate", "begin", domain_xml("vm1", DOM1, [(mine, MTTY, "mtty-1")]))
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    r = h.run("vm1", "restore", "begin", domain_xml("vm1", DOM1, [(theirs, MTTY, "mtty-1")]))
    assert r.returncode == 1 and r.stdout == b""
    assert f"the ledger gives it to domain vm2 ({DOM2})" in one_line(r.stderr.decode())
    assert (fs.devices(), h.ledger(), len(writes(fs))) == before


def test_incoming_check_applies_the_policy(world: tuple[Any, HookEnv]) -> None:
    fs, h = world
    h.write('allowed_types = ["mtty-1"]\n')
    u = uid()
    r = h.run("vm1", "migrate", "begin", domain_xml("vm1", DOM1, [(u, MTTY, "mtty-2")]))
    assert r.returncode == 1 and "type mtty-2 is not allowed by allowed_types" in one_line(r.stderr.decode())
    _no_trace(fs, h)


def test_parents_table_renames_a_parent_for_this_host(world: tuple[Any, HookEnv], tmp_path: Path) -> None:
    fs, h = world
    u = uid()
    xml = domain_xml("vm1", DOM1, [(u, OLD, V58)])
    # without the table: the source host's parent does not exist here
    r = h.run("vm1", "migrate", "begin", xml)
    assert r.returncode == 1 and f"parent {OLD} not found" in one_line(r.stderr.decode())
    h.write(f'[parents]\n"{OLD}" = "{GVT}"\n')
    r = h.run("vm1", "migrate", "begin", xml)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    path = tmp_path / "dom.xml"
    path.write_bytes(xml)
    p = cli(h, "plan", str(path))
    assert p.returncode == 0, p.stderr
    row = next(line for line in p.stdout.splitlines() if line.strip().startswith(u)).split()
    assert row[:4] == [u, OLD, "->", GVT], row
    assert f"parent mapped: mdev {u}: the domain's {OLD} is {GVT} on this host ([parents] in {h.config})" in p.stdout
    assert json.loads(cli(h, "plan", "--json", str(path)).stdout)["mdevs"][0]["domain_parent"] == OLD
    s = cli(h, "status")
    assert f"[parents]: a domain's {OLD} -> {GVT} on this host" in s.stdout, s.stdout
    r = h.run("vm1", "prepare", "begin", xml)
    assert (r.returncode, r.stderr) == (0, b""), r.stderr
    assert fs.devices() == {u: (GVT, V58)}
    assert json.loads((h.state_dir / f"{u}.json").read_text())["parent"] == GVT  # the ledger records the real one
    mapped = [e for e in h.events() if e["event"] == "mdev.parent_mapped"]
    assert {(e["domain_parent"], e["host_parent"]) for e in mapped} == {(OLD, GVT)}
    # release goes by the ledger: it removes the device even if the table changed meanwhile
    h.write("")
    assert h.run("vm1", "release", "end", xml).returncode == 0
    assert fs.devices() == {} and h.ledger() == []


def test_mapped_parent_missing_names_both(world: tuple[Any, HookEnv]) -> None:
    fs, h = world
    h.write(f'[parents]\n"{OLD}" = "0000:81:00.0"\n')
    u = uid()
    r = h.run("vm1", "prepare", "begin", domain_xml("vm1", DOM1, [(u, OLD, V58)]))
    line = one_line(r.stderr.decode())
    assert f"mdev {u} (type {V58} on 0000:81:00.0, mapped from {OLD} by [parents])" in line
    assert "parent 0000:81:00.0 not found" in line
    _no_trace(fs, h)


@pytest.mark.parametrize(("text", "match"), [
    ('parents = "x"', "parents must be a table"),
    ('[parents]\n"../x" = "mtty"', "is not a parent name mapped to a parent name"),
    ('[parents]\n"mtty" = "a/b"', "is not a parent name mapped to a parent name"),
    ('[parents]\n"mtty" = 3', "is not a parent name mapped to a parent name"),
])
def test_bad_parents_table_is_one_line(world: tuple[Any, HookEnv], text: str, match: str) -> None:
    fs, h = world
    h.write(text)
    for op in ("prepare", "migrate"):
        r = h.run("vm1", op, "begin", domain_xml("vm1", DOM1, [(uid(), MTTY, "mtty-1")]))
        assert r.returncode == 1 and match in one_line(r.stderr.decode())
    _no_trace(fs, h)


# -- item 3: mdevctl definitions as a source -------------------------------------------------------------------------
FIXTURE = Path(__file__).parent / "fixtures" / "mdevctl" / "vfio_ap-defined-by-mdevctl-1.2.0.json"


def hostdev_only(name: str, dom: str, uuids: list[str], meta: list[tuple[str, str, str]] = ()) -> bytes:  # type: ignore[assignment]
    """A domain with managed mdev hostdevs for `uuids` and metadata only for `meta`."""
    xml = domain_xml(name, dom, list(meta))
    extra = "".join(f"<hostdev mode='subsystem' type='mdev' managed='yes' model='vfio-pci'><source>"
                    f"<address uuid='{u}'/></source></hostdev>" for u in uuids if u not in {m[0] for m in meta})
    return xml.replace(b"</devices>", extra.encode() + b"</devices>")


def define(d: Path, parent: str, u: str, mtype: str, attrs: list[dict[str, str]] = (),  # type: ignore[assignment]
           start: str = "manual") -> Path:
    """What `mdevctl define` writes (tests/fixtures/mdevctl has one it wrote)."""
    (d / parent).mkdir(parents=True, exist_ok=True)
    path = d / parent / u
    path.write_text(json.dumps({"mdev_type": mtype, "start": start, "attrs": list(attrs)}, indent=2) + "\n")
    return path


@pytest.fixture
def mworld(world: tuple[Any, HookEnv]) -> tuple[Any, HookEnv, Path]:
    fs, h = world
    d = h.dir / "mdevctl.d"
    (d / "scripts.d" / "callouts").mkdir(parents=True)  # what the mdevctl package installs there
    h.write(f'mdevctl_dir = "{d}"\n')
    return fs, h, d


def test_mdevctl_definition_is_created_on_demand_and_removed(mworld: tuple[Any, HookEnv, Path],
                                                             tmp_path: Path) -> None:
    fs, h, d = mworld
    u = uid()
    path = define(d, MTTY, u, "mtty-2", start="auto")
    xml = hostdev_only("vm1", DOM1, [u])
    file = tmp_path / "dom.xml"
    file.write_bytes(xml)
    p = cli(h, "plan", str(file))
    assert p.returncode == 0, p.stderr
    assert f"mdev {u}: source: mdevctl {path} (the domain has no metadata for it" in p.stdout
    assert json.loads(cli(h, "plan", "--json", str(file)).stdout)["mdevs"][0]["source"] == "mdevctl"
    r = h.run("vm1", "prepare", "begin", xml)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    assert fs.devices() == {u: (MTTY, "mtty-2")}
    assert [(e["path"], e["type"]) for e in h.events() if e["event"] == "mdev.from_mdevctl"] == [(str(path), "mtty-2")]
    assert h.run("vm1", "release", "end", xml).returncode == 0
    assert fs.devices() == {} and h.ledger() == [] and path.exists()  # the definition itself is never touched


def test_metadata_wins_over_mdevctl(mworld: tuple[Any, HookEnv, Path], tmp_path: Path) -> None:
    fs, h, d = mworld
    u = uid()
    path = define(d, MTTY, u, "mtty-2")
    xml = hostdev_only("vm1", DOM1, [u], [(u, GVT, V58)])
    file = tmp_path / "dom.xml"
    file.write_bytes(xml)
    p = cli(h, "plan", str(file))
    assert f"mdev {u}: source: metadata (the mdevctl definition {path} is ignored" in p.stdout, p.stdout
    assert h.run("vm1", "prepare", "begin", xml).returncode == 0
    assert fs.devices() == {u: (GVT, V58)}
    assert [e["path"] for e in h.events() if e["event"] == "mdev.mdevctl_ignored"] == [str(path)]


def test_no_metadata_no_definition_says_both(mworld: tuple[Any, HookEnv, Path]) -> None:
    fs, h, d = mworld
    u = uid()
    r = h.run("vm1", "prepare", "begin", hostdev_only("vm1", DOM1, [u]))
    line = one_line(r.stderr.decode())
    assert "does not say which parent and type to create; add it with: virsh metadata" in line
    assert f"(or define it with mdevctl: there is no {d}/*/{u})" in line
    assert writes(fs) == []


def test_mdevctl_attrs_in_order_real_definition(fakesysfs: Callable[..., Any], tmp_path: Path) -> None:
    """A definition `mdevctl define` + `mdevctl modify --addattr` wrote (mdevctl 1.2.0), on the s390 vfio-ap fake."""
    fs = fakesysfs("s390-vfio-ap")
    h = HookEnv(tmp_path / "hook", fs.root)
    d = h.dir / "mdevctl.d"
    (d / "matrix").mkdir(parents=True)
    u = "783e6dbb-ea0e-411f-94e2-717eaad438bf"
    (d / "matrix" / u).write_bytes(FIXTURE.read_bytes())
    h.write(f'mdevctl_dir = "{d}"\n')
    xml = hostdev_only("g1", DOM1, [u])
    r = h.run("g1", "prepare", "begin", xml)
    assert (r.returncode, r.stderr) == (0, b""), r.stderr
    ops = [(e["op"], os.path.basename(e["path"]), e.get("data")) for e in fs.journal()
           if e.get("actor") == "user" and e["op"] in ("create", "write")]
    assert [(o, n) for o, n, _ in ops] == [("create", "create"), ("write", "assign_adapter"),
                                           ("write", "assign_domain")]
    assert fs.devices() == {u: ("matrix", "vfio_ap-passthrough")}
    assert h.run("g1", "release", "end", xml).returncode == 0 and fs.devices() == {}


@pytest.mark.parametrize(("setup", "expected"), [
    ("symlink file", "there is no"),  # a symlinked definition is not a definition
    ("symlink parent dir", "there is no"),
    ("invalid parent dir name", "there is no"),
    ("directory named like the uuid", "there is no"),
    ("not JSON", "is not valid JSON"),
    ("type with a slash", "has no valid mdev_type"),
    ("attrs not single-key", "must be an object with one key"),
    ("attr name remove", "attribute name remove is not valid"),
    ("too large", "is larger than 64 KiB"),
    ("defined twice", "mdevctl defines it 2 times"),
])
def test_hostile_mdevctl_definitions(mworld: tuple[Any, HookEnv, Path], tmp_path: Path, setup: str,
                                     expected: str) -> None:
    fs, h, d = mworld
    u = uid()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / u).write_text(json.dumps({"mdev_type": "mtty-1", "start": "manual", "attrs": []}))
    if setup == "symlink file":
        (d / MTTY).mkdir()
        (d / MTTY / u).symlink_to(outside / u)
    elif setup == "symlink parent dir":
        (d / MTTY).symlink_to(outside)
    elif setup == "invalid parent dir name":
        (d / "mt ty").mkdir()
        (d / "mt ty" / u).write_text((outside / u).read_text())
    elif setup == "directory named like the uuid":
        (d / MTTY / u).mkdir(parents=True)
    elif setup == "not JSON":
        (d / MTTY).mkdir()
        (d / MTTY / u).write_text("{mdev_type: mtty-1")
    elif setup == "type with a slash":
        define(d, MTTY, u, "../mtty-1")
    elif setup == "attrs not single-key":
        define(d, MTTY, u, "mtty-1", [{"a": "1", "b": "2"}])
    elif setup == "attr name remove":
        define(d, MTTY, u, "mtty-1", [{"remove": "1"}])
    elif setup == "too large":
        define(d, MTTY, u, "mtty-1", [{"x": "1"}] * 8000)
    elif setup == "defined twice":
        define(d, MTTY, u, "mtty-1")
        define(d, GVT, u, V58)
    r = h.run("vm1", "prepare", "begin", hostdev_only("vm1", DOM1, [u]))
    assert r.returncode == 1 and r.stdout == b""
    assert expected in one_line(r.stderr.decode())
    assert writes(fs) == [] and h.ledger() == []
