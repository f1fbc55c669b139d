"""The admin's policy (allowed_parents / allowed_types), through the real hook and the real `mdev-hooks`
command against the FUSE fake: a refusal names the rule and writes nothing."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.asserts import one_line
from support.common import cli, writes
from support.hookrun import HookEnv, mdev_xml
from support.ids import DOM_A, GVT, GVT_V54, GVT_V58, MTTY, T4, uid


@pytest.fixture
def world(fakesysfs: Callable[..., Any], tmp_path: Path) -> tuple[Any, HookEnv]:
    fs = fakesysfs(["intel-gvtg", "mtty-sample", "nvidia-tesla-t4"])
    return fs, HookEnv(tmp_path / "hook", fs.root)


POLICY = 'allowed_parents = ["0000:00:*", "mtty"]\nallowed_types = ["i915-GVTg_V5_[8]", "mtty-*"]\n'


@pytest.mark.parametrize(("mdev", "rule"), [
    ((T4, "nvidia-222"), 'parent 0000:3b:00.0 is not allowed by allowed_parents = ["0000:00:*", "mtty"]'),
    ((GVT, GVT_V54), 'type i915-GVTg_V5_4 is not allowed by allowed_types = ["i915-GVTg_V5_[8]", "mtty-*"]'),
])
def test_policy_refuses_with_the_rule_and_writes_nothing(world: tuple[Any, HookEnv], tmp_path: Path,
                                                         mdev: tuple[str, str], rule: str) -> None:
    fs, h = world
    h.write(POLICY)
    ok, bad = uid(), uid()
    # the allowed device comes first: validation refuses the whole start before any create
    xml = mdev_xml("vm1", DOM_A, [(ok, MTTY, "mtty-1"), (bad, *mdev)])
    r = h.run("vm1", "prepare", "begin", xml)
    assert r.returncode == 1 and r.stdout == b""
    line = one_line(r.stderr.decode())
    assert line == f"mdev {bad} (type {mdev[1]} on {mdev[0]}): {rule} in {h.config}"
    assert writes(fs) == [] and fs.devices() == {} and h.ledger() == []
    refused = [e for e in h.events() if e["event"] == "mdev.policy_refused"]
    assert [e["mdev"] for e in refused] == [bad]
    # plan: the same line, and the policy in effect
    path = tmp_path / "dom.xml"
    path.write_bytes(xml)
    p = cli(h, "plan", str(path))
    assert (p.returncode, p.stderr) == (1, f"mdev-hooks: {line}\n")
    assert f'policy ({h.config}): allowed_parents = ["0000:00:*", "mtty"], allowed_types = ' in p.stdout
    data = json.loads(cli(h, "plan", "--json", str(path)).stdout)
    assert data["policy"] == {"config": str(h.config), "allowed_parents": ["0000:00:*", "mtty"],
                              "allowed_types": ["i915-GVTg_V5_[8]", "mtty-*"]}


def test_policy_allows_matching_devices(world: tuple[Any, HookEnv]) -> None:
    fs, h = world
    h.write(POLICY)
    a, b = uid(), uid()
    xml = mdev_xml("vm1", DOM_A, [(a, GVT, GVT_V58), (b, MTTY, "mtty-2")])
    r = h.run("vm1", "prepare", "begin", xml)
    assert (r.returncode, r.stderr) == (0, b""), r.stderr
    assert fs.devices() == {a: (GVT, GVT_V58), b: (MTTY, "mtty-2")}
    assert sorted(e["mdev"] for e in h.events() if e["event"] == "mdev.policy_allowed") == sorted([a, b])
    # a policy tightened while the VM runs does not stop release from removing what the hook created
    h.write('allowed_parents = []\n')
    assert h.run("vm1", "release", "end", xml).returncode == 0
    assert fs.devices() == {} and h.ledger() == []


def test_empty_policy_list_allows_nothing(world: tuple[Any, HookEnv]) -> None:
    fs, h = world
    h.write("allowed_types = []\n")
    u = uid()
    r = h.run("vm1", "prepare", "begin", mdev_xml("vm1", DOM_A, [(u, MTTY, "mtty-1")]))
    assert "type mtty-1 is not allowed by allowed_types = []" in one_line(r.stderr.decode())
    assert writes(fs) == []


def test_status_shows_policy_and_allowed_column(world: tuple[Any, HookEnv]) -> None:
    _, h = world
    h.write(POLICY)
    r = cli(h, "status")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "ALLOWED" in out and f"policy ({h.config}): allowed_parents" in out
    assert re.search(rf"^  {re.escape(GVT)}\s+{GVT_V58}\s+GVTg_V5_8\s+\d+\s+0\s+yes\s", out, re.M), out
    assert re.search(rf"^  {re.escape(GVT)}\s+{GVT_V54}\s+GVTg_V5_4\s+\d+\s+0\s+no\s", out, re.M), out
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
    r = h.run("vm1", "prepare", "begin", mdev_xml("vm1", DOM_A, [(uid(), MTTY, "mtty-1")]))
    assert r.returncode == 1 and match in one_line(r.stderr.decode())
    assert writes(fs) == []


