"""`migrate begin` / `restore begin` on the destination and config [parents], through the real hook and the
real command against the FUSE fake: checked early, read-only, silent on stdout."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.asserts import one_line
from support.common import cli, writes
from support.hookrun import HookEnv, mdev_xml
from support.ids import DOM_A, DOM_B, GVT, GVT_V54, GVT_V58, MTTY, uid


@pytest.fixture
def world(fakesysfs: Callable[..., Any], tmp_path: Path) -> tuple[Any, HookEnv]:
    fs = fakesysfs(["intel-gvtg", "mtty-sample", "nvidia-tesla-t4"])
    return fs, HookEnv(tmp_path / "hook", fs.root)


OLD = "0000:41:00.0"  # the parent as the source host (and the domain XML) names it; not on this host


def _no_trace(fs: Any, h: HookEnv) -> None:
    assert writes(fs) == [] and fs.devices() == {} and h.ledger() == []


@pytest.mark.parametrize("op", ["migrate", "restore"])
def test_incoming_ok_prints_nothing_writes_nothing(world: tuple[Any, HookEnv], op: str) -> None:
    fs, h = world
    xml = mdev_xml("vm1", DOM_A, [(uid(), GVT, GVT_V58), (uid(), MTTY, "mtty-2")])
    r = h.run("vm1", op, "begin", xml)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    _no_trace(fs, h)
    assert not h.state_dir.exists() and not h.lock_dir.exists()  # read-only: no ledger dir, no locks
    assert [e["event"] for e in h.events()][-2:] == ["incoming.checked", "hook.done"]


@pytest.mark.parametrize(("op", "make", "expected"), [
    ("migrate", lambda u: [(u, "0000:99:00.0", GVT_V54)], "parent 0000:99:00.0 not found"),
    ("restore", lambda u: [(u, GVT, GVT_V54), (uid(), GVT, GVT_V54)], "no free instance (available_instances=1; this "
                                                              "domain needs 2"),
    ("migrate", lambda u: [(u, GVT, "nvidia-231")], f"parent {GVT} does not offer type nvidia-231"),
])
def test_incoming_refused_early_with_one_line(world: tuple[Any, HookEnv], op: str,
                                               make: Callable[[str], list[tuple[str, str, str]]],
                                               expected: str) -> None:
    fs, h = world
    u = uid()
    r = h.run("vm1", op, "begin", mdev_xml("vm1", DOM_A, make(u)))
    assert r.returncode == 1 and r.stdout == b""
    line = one_line(r.stderr.decode())
    when = "before the domain came to this host" if op == "migrate" else "before the saved domain is restored"
    assert expected in line and f"(checked at {op} begin, {when})" in line, line
    _no_trace(fs, h)


def test_incoming_accepts_own_devices_refuses_anothers(world: tuple[Any, HookEnv]) -> None:
    fs, h = world
    mine, theirs = uid(), uid()
    assert h.run("vm1", "prepare", "begin", mdev_xml("vm1", DOM_A, [(mine, MTTY, "mtty-1")])).returncode == 0
    assert h.run("vm2", "prepare", "begin", mdev_xml("vm2", DOM_B, [(theirs, MTTY, "mtty-1")])).returncode == 0
    before = (fs.devices(), h.ledger(), len(writes(fs)))
    r = h.run("vm1", "migrate", "begin", mdev_xml("vm1", DOM_A, [(mine, MTTY, "mtty-1")]))
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    r = h.run("vm1", "restore", "begin", mdev_xml("vm1", DOM_A, [(theirs, MTTY, "mtty-1")]))
    assert r.returncode == 1 and r.stdout == b""
    assert f"the ledger gives it to domain vm2 ({DOM_B})" in one_line(r.stderr.decode())
    assert (fs.devices(), h.ledger(), len(writes(fs))) == before


def test_incoming_check_applies_the_policy(world: tuple[Any, HookEnv]) -> None:
    fs, h = world
    h.write('allowed_types = ["mtty-1"]\n')
    u = uid()
    r = h.run("vm1", "migrate", "begin", mdev_xml("vm1", DOM_A, [(u, MTTY, "mtty-2")]))
    assert r.returncode == 1 and "type mtty-2 is not allowed by allowed_types" in one_line(r.stderr.decode())
    _no_trace(fs, h)


def test_parents_table_renames_a_parent_for_this_host(world: tuple[Any, HookEnv], tmp_path: Path) -> None:
    fs, h = world
    u = uid()
    xml = mdev_xml("vm1", DOM_A, [(u, OLD, GVT_V58)])
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
    assert fs.devices() == {u: (GVT, GVT_V58)}
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
    r = h.run("vm1", "prepare", "begin", mdev_xml("vm1", DOM_A, [(u, OLD, GVT_V58)]))
    line = one_line(r.stderr.decode())
    assert f"mdev {u} (type {GVT_V58} on 0000:81:00.0, mapped from {OLD} by [parents])" in line
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
        r = h.run("vm1", op, "begin", mdev_xml("vm1", DOM_A, [(uid(), MTTY, "mtty-1")]))
        assert r.returncode == 1 and match in one_line(r.stderr.decode())
    _no_trace(fs, h)


