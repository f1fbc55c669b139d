"""Ordered attributes after create (s390 vfio-ap `assign_*`), through the real hook against the FUSE fake: every
name checked first, values written in document order, any refusal rolled back."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.asserts import one_line
from support.attrxml import xml
from support.common import cli_without_virsh as cli
from support.common import user_writes
from support.hookrun import HookEnv
from support.ids import AP_MATRIX, AP_PASSTHROUGH, DOM_A, DOM_B, uid


@pytest.fixture
def ap(fakesysfs: Callable[..., Any], tmp_path: Path) -> tuple[Any, HookEnv]:
    fs = fakesysfs("s390-vfio-ap")
    return fs, HookEnv(tmp_path / "hook", fs.root)


@pytest.mark.parametrize("prefixed", [True, False])
def test_attrs_written_in_document_order_after_create(ap: tuple[Any, HookEnv], prefixed: bool) -> None:
    fs, h = ap
    u = uid()
    attrs = [("assign_adapter", "5"), ("assign_domain", "0x4"), ("assign_control_domain", "4")]
    doc = xml("guest1", DOM_A, [(u, AP_MATRIX, AP_PASSTHROUGH, attrs)], prefixed=prefixed)
    r = h.run("guest1", "prepare", "begin", doc)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    assert user_writes(fs) == [("create", "create", repr(u.encode()), "ok"),
                               ("write", "assign_adapter", "b'5'", "ok"),
                               ("write", "assign_domain", "b'0x4'", "ok"),
                               ("write", "assign_control_domain", "b'4'", "ok")]
    # every attribute write went to the new device, after its create had returned
    create = next(e for e in fs.journal() if e["op"] == "create")
    for e in fs.journal():
        if e["op"] == "write":
            assert e["uuid"] == u and e["t0"] >= create["t1"]
    assert fs.read(f"bus/mdev/devices/{u}/matrix") == "05.0004\n"
    assert fs.read(f"bus/mdev/devices/{u}/control_domains") == "0004\n"
    claim = json.loads((h.state_dir / f"{u}.json").read_text())
    assert (claim["state"], claim["attrs"]) == ("created", ["assign_adapter=5", "assign_domain=0x4",
                                                            "assign_control_domain=4"])
    # status shows what was written; release removes the device (its attributes go with it)
    st = cli(h, "status")
    assert st.returncode == 0, st.stderr
    assert f"{u}: attributes written at creation: assign_adapter=5, assign_domain=0x4, assign_control_domain=4" \
        in st.stdout
    assert h.run("guest1", "release", "end", doc).returncode == 0
    assert fs.devices() == {} and h.ledger() == []
    assert [w[:2] for w in user_writes(fs)][-1] == ("remove", "remove")


def test_attr_refused_by_kernel_removes_the_device_and_names_attr_value_errno(ap: tuple[Any, HookEnv]) -> None:
    fs, h = ap
    u = uid()
    doc = xml("guest1", DOM_A, [(u, AP_MATRIX, AP_PASSTHROUGH, [("assign_adapter", "5"), ("assign_domain", "300"),
                                                 ("assign_control_domain", "4")])])
    r = h.run("guest1", "prepare", "begin", doc)
    assert r.returncode == 1 and r.stdout == b""
    err = one_line(r.stderr)
    assert f"mdev {u}" in err and "assign_domain=300" in err and "ENODEV" in err and "rolled back" in err
    # create, the first attribute, the failing one; never the third; then the device is removed
    assert [(op, name, res) for op, name, _, res in user_writes(fs)] == [
        ("create", "create", "ok"), ("write", "assign_adapter", "ok"), ("write", "assign_domain", "ENODEV"),
        ("remove", "remove", "ok")]
    assert fs.devices() == {} and h.ledger() == []
    # libvirt then runs release: nothing left to do
    assert h.run("guest1", "release", "end", doc).returncode == 0
    assert len(user_writes(fs)) == 4


def test_apqn_of_another_mdev_is_ebusy_and_only_the_new_device_goes(ap: tuple[Any, HookEnv]) -> None:
    fs, h = ap
    a, b = uid(), uid()
    apqn = [("assign_adapter", "3"), ("assign_domain", "7")]
    assert h.run("g1", "prepare", "begin", xml("g1", DOM_A, [(a, AP_MATRIX, AP_PASSTHROUGH, apqn)])).returncode == 0
    r = h.run("g2", "prepare", "begin", xml("g2", DOM_B, [(b, AP_MATRIX, AP_PASSTHROUGH, apqn)]))
    err = one_line(r.stderr)
    assert r.returncode == 1 and f"mdev {b}" in err and "assign_domain=7" in err and "EBUSY" in err
    assert fs.devices() == {a: (AP_MATRIX, AP_PASSTHROUGH)}
    assert [e["uuid"] for e in fs.journal() if e["op"] == "remove"] == [b]


@pytest.mark.parametrize("name", ["matrix", "assign_bogus"])
def test_attr_the_device_does_not_have_is_refused_before_any_write_to_it(ap: tuple[Any, HookEnv],
                                                                        name: str) -> None:
    fs, h = ap
    u = uid()
    attrs = [("assign_adapter", "1"), (name, "1")]
    r = h.run("g1", "prepare", "begin", xml("g1", DOM_A, [(u, AP_MATRIX, AP_PASSTHROUGH, attrs)]))
    err = one_line(r.stderr)
    assert r.returncode == 1 and f"no writable attribute {name}" in err and "assign_domain" in err  # what it has
    # every name is checked right after create, before the first value is written (issue 12): no assign_adapter
    assert [(op, n) for op, n, _, _ in user_writes(fs)] == [("create", "create"), ("remove", "remove")]
    assert fs.devices() == {} and h.ledger() == []


@pytest.mark.parametrize("name,value,expected", [
    ("remove", "1", "attribute name remove is not valid"),
    ("uevent", "add", "attribute name uevent is not valid"),
    ("../remove", "1", "attribute name ../remove is not valid"),
    ("nvidia/vgpu_params", "x", "attribute name nvidia/vgpu_params is not valid"),
    ("assign_adapter", "", "attribute assign_adapter value '' is not valid"),
    ("assign_adapter", "1&#10;2", "attribute assign_adapter value '1\\n2' is not valid"),
    ("assign_adapter", "9" * 257, "is not valid (1 to 256 printable ASCII characters)"),
])
def test_bad_attr_names_and_values_fail_before_any_write(ap: tuple[Any, HookEnv], name: str, value: str,
                                                         expected: str) -> None:
    fs, h = ap
    u = uid()
    r = h.run("g1", "prepare", "begin", xml("g1", DOM_A, [(u, AP_MATRIX, AP_PASSTHROUGH, [(name, value)])]))
    assert r.returncode == 1 and expected in one_line(r.stderr), r.stderr
    assert user_writes(fs) == [] and h.ledger() == []


def test_plan_shows_attrs_and_adopted_device_gets_none(ap: tuple[Any, HookEnv], tmp_path: Path) -> None:
    fs, h = ap
    new, old = uid(), uid()
    fs.create_external(AP_MATRIX, AP_PASSTHROUGH, old)
    doc = xml("g1", DOM_A, [(new, AP_MATRIX, AP_PASSTHROUGH, [("assign_adapter", "5"), ("assign_domain", "4")]),
                           (old, AP_MATRIX, AP_PASSTHROUGH, [("assign_adapter", "6")])])
    path = tmp_path / "g1.xml"
    path.write_bytes(doc)
    r = cli(h, "plan", str(path))
    assert r.returncode == 0, r.stderr
    assert (f"create mdev {new}: write it to {fs.create_path(AP_MATRIX, AP_PASSTHROUGH)}; then write, in this order, "
            f"assign_adapter=5, assign_domain=4 into {fs.root}/bus/mdev/devices/{new}/") in r.stdout
    assert f"use the existing mdev {old} as it is" in r.stdout
    assert "its <attr> values (assign_adapter=6) are NOT written: the device exists" in r.stdout
    data = json.loads(cli(h, "plan", "--json", str(path)).stdout)
    assert [m["attrs"] for m in data["mdevs"]] == [[["assign_adapter", "5"], ["assign_domain", "4"]],
                                                   [["assign_adapter", "6"]]]
    # the hook does what plan said: the adopted device gets no write
    assert h.run("g1", "prepare", "begin", doc).returncode == 0
    assert [(n, d) for op, n, d, _ in user_writes(fs) if op == "write"] == [("assign_adapter", "b'5'"),
                                                                            ("assign_domain", "b'4'")]
    assert any(e["event"] == "mdev.attrs_not_written" and e["mdev"] == old for e in h.events())


def test_attrs_dry_run_writes_nothing(ap: tuple[Any, HookEnv]) -> None:
    fs, h = ap
    u = uid()
    r = h.run("g1", "prepare", "begin", xml("g1", DOM_A, [(u, AP_MATRIX, AP_PASSTHROUGH, [("assign_adapter", "5")])]),
              MDEV_HOOKS_DRY_RUN="1")
    assert r.returncode == 0 and user_writes(fs) == []
    assert [(e["attr"], e["value"]) for e in h.events() if e["event"] == "mdev.would_write_attr"] == [
        ("assign_adapter", "5")]


def test_hook_killed_between_attrs_leaves_enough_for_release(ap: tuple[Any, HookEnv]) -> None:
    fs, h = ap
    u = uid()
    doc = xml("g1", DOM_A, [(u, AP_MATRIX, AP_PASSTHROUGH, [("assign_adapter", "5"), ("assign_domain", "4")])])
    r = h.run("g1", "prepare", "begin", doc, MDEV_HOOKS_TEST_KILL_AT="attr_written")
    assert r.returncode == -9
    assert [n for _, n, _, _ in user_writes(fs)] == ["create", "assign_adapter"]
    assert json.loads((h.state_dir / f"{u}.json").read_text())["state"] == "intent"
    assert h.run("g1", "release", "end", doc).returncode == 0
    assert fs.devices() == {} and h.ledger() == []


