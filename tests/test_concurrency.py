"""Concurrent hook runs against the FUSE fake: per-parent serialisation, parallel parents, no leaks."""

from __future__ import annotations

import time
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support.asserts import one_line
from support.hookrun import HookEnv, mdev_xml


def dom(i: int) -> str:
    return str(uuidlib.UUID(int=0x1000 + i))


def test_33_prepares_on_32_instances(fakesysfs: Callable[..., Any], tmp_path: Path) -> None:
    fs = fakesysfs([], synthetic_parents=1, synthetic_instances=32)
    h = HookEnv(tmp_path / "hook", fs.root)
    xmls = [mdev_xml(f"vm{i}", dom(i), [(str(uuidlib.uuid4()), "synth0", "synth-1")]) for i in range(33)]
    procs = [h.start(f"vm{i}", "prepare", "begin", x) for i, x in enumerate(xmls)]
    results = [(p.wait(120), p.stdout.read(), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    ok = [r for r in results if r[0] == 0]
    failed = [r for r in results if r[0] != 0]
    assert len(ok) == 32 and len(failed) == 1
    assert "no free instance" in one_line(failed[0][2])
    assert all(r[1] == b"" for r in results)
    assert len(fs.devices()) == 32 and len(h.ledger()) == 32
    assert fs.creates_overlapping_on_same_parent() == []
    # libvirt releases every domain (the failed one too): zero leaks
    procs = [h.start(f"vm{i}", "release", "end", x) for i, x in enumerate(xmls)]
    assert [p.wait(120) for p in procs] == [0] * 33
    assert fs.devices() == {} and h.ledger() == []


def _timed_starts(fs: Any, h: HookEnv, parents: list[str]) -> float:
    xmls = [mdev_xml(f"vm{i}", dom(i), [(str(uuidlib.uuid4()), p, "synth-1")]) for i, p in enumerate(parents)]
    t0 = time.monotonic()
    procs = [h.start(f"vm{i}", "prepare", "begin", x) for i, x in enumerate(xmls)]
    assert [p.wait(120) for p in procs] == [0] * len(procs)
    return time.monotonic() - t0


def test_different_parents_are_not_serialised(fakesysfs: Callable[..., Any], tmp_path: Path) -> None:
    fs = fakesysfs([], synthetic_parents=2, synthetic_instances=4)
    h = HookEnv(tmp_path / "hook", fs.root)
    fs.control(cmd="delay", op="create", ms=1500)
    _timed_starts(fs, h, ["synth0", "synth1"])
    creates = [e for e in fs.journal() if e["op"] == "create" and e["result"] == "ok"]
    a, b = sorted(creates, key=lambda e: e["t0"])
    assert b["t0"] < a["t1"], "creates on two different parents must overlap in time"


def test_same_parent_is_serialised(fakesysfs: Callable[..., Any], tmp_path: Path) -> None:
    fs = fakesysfs([], synthetic_parents=1, synthetic_instances=4)
    h = HookEnv(tmp_path / "hook", fs.root)
    fs.control(cmd="delay", op="create", ms=300)
    _timed_starts(fs, h, ["synth0"] * 4)
    creates = [e for e in fs.journal() if e["op"] == "create" and e["result"] == "ok"]
    assert len(creates) == 4
    assert fs.creates_overlapping_on_same_parent() == []


def test_multi_parent_domains_take_locks_in_order(fakesysfs: Callable[..., Any], tmp_path: Path) -> None:
    # two domains needing the same two parents in opposite document order: sorted locking, no deadlock
    fs = fakesysfs([], synthetic_parents=2, synthetic_instances=4)
    h = HookEnv(tmp_path / "hook", fs.root)
    h.write("lock_timeout = 20")
    fs.control(cmd="delay", op="create", ms=200)
    x1 = mdev_xml("a", dom(1), [(str(uuidlib.uuid4()), "synth0", "synth-1"),
                                  (str(uuidlib.uuid4()), "synth1", "synth-1")])
    x2 = mdev_xml("b", dom(2), [(str(uuidlib.uuid4()), "synth1", "synth-1"),
                                  (str(uuidlib.uuid4()), "synth0", "synth-1")])
    procs = [h.start("a", "prepare", "begin", x1), h.start("b", "prepare", "begin", x2)]
    assert [p.wait(60) for p in procs] == [0, 0]
    assert len(fs.devices()) == 4 and fs.creates_overlapping_on_same_parent() == []
