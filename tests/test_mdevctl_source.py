"""mdevctl's definitions as the source of managed mdevs without metadata, through the real hook and the real
command against the FUSE fake."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.asserts import one_line
from support.common import cli, writes
from support.hookrun import HookEnv, mdev_xml
from support.ids import DOM_A, GVT, GVT_V58, MTTY, uid


@pytest.fixture
def world(fakesysfs: Callable[..., Any], tmp_path: Path) -> tuple[Any, HookEnv]:
    fs = fakesysfs(["intel-gvtg", "mtty-sample", "nvidia-tesla-t4"])
    return fs, HookEnv(tmp_path / "hook", fs.root)


FIXTURE = Path(__file__).parent / "fixtures" / "mdevctl" / "vfio_ap-defined-by-mdevctl-1.2.0.json"


def hostdev_only(name: str, dom: str, uuids: list[str], meta: list[tuple[str, str, str]] = ()) -> bytes:  # type: ignore[assignment]
    """A domain with managed mdev hostdevs for `uuids` and metadata only for `meta`."""
    xml = mdev_xml(name, dom, list(meta))
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
    xml = hostdev_only("vm1", DOM_A, [u])
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
    xml = hostdev_only("vm1", DOM_A, [u], [(u, GVT, GVT_V58)])
    file = tmp_path / "dom.xml"
    file.write_bytes(xml)
    p = cli(h, "plan", str(file))
    assert f"mdev {u}: source: metadata (the mdevctl definition {path} is ignored" in p.stdout, p.stdout
    assert h.run("vm1", "prepare", "begin", xml).returncode == 0
    assert fs.devices() == {u: (GVT, GVT_V58)}
    assert [e["path"] for e in h.events() if e["event"] == "mdev.mdevctl_ignored"] == [str(path)]


def test_no_metadata_no_definition_says_both(mworld: tuple[Any, HookEnv, Path]) -> None:
    fs, h, d = mworld
    u = uid()
    r = h.run("vm1", "prepare", "begin", hostdev_only("vm1", DOM_A, [u]))
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
    xml = hostdev_only("g1", DOM_A, [u])
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
        define(d, GVT, u, GVT_V58)
    r = h.run("vm1", "prepare", "begin", hostdev_only("vm1", DOM_A, [u]))
    assert r.returncode == 1 and r.stdout == b""
    assert expected in one_line(r.stderr.decode())
    assert writes(fs) == [] and h.ledger() == []
