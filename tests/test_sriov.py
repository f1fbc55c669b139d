"""SR-IOV physical functions as mdev parents (NVIDIA A40: each VF a parent with one instance), through the real
hook and command against the FUSE fake: the first free VF in address order, under the PF's lock."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.asserts import one_line
from support.attrxml import xml
from support.common import cli_without_virsh as cli
from support.hookrun import HookEnv
from support.ids import DOM_A, DOM_B, PF, dom_uuid, uid

VFS = [f"0000:41:0{i // 8}.{i % 8}" for i in range(4, 36)]  # 0000:41:00.4 .. 0000:41:04.3, address order
A40_2Q, A40_24Q, A40_48Q = "nvidia-558", "nvidia-565", "nvidia-566"


def doc(name: str, dom: str, mdevs: list[tuple[str, str]], parent: str = PF) -> bytes:
    return xml(name, dom, [(u, parent, t, []) for u, t in mdevs])


def creates(fs: Any) -> list[dict[str, Any]]:
    return [e for e in fs.journal() if e["op"] == "create" and e["actor"] == "user"]


@pytest.fixture
def a40(fakesysfs: Callable[..., Any], tmp_path: Path) -> tuple[Any, HookEnv]:
    fs = fakesysfs("nvidia-a40-sriov")
    return fs, HookEnv(tmp_path / "hook", fs.root, "nvidia_release_wait = 0\nlock_timeout = 20")


def test_pf_parent_takes_the_first_free_vfs_in_address_order(a40: tuple[Any, HookEnv], tmp_path: Path) -> None:
    fs, h = a40
    assert sorted(fs.devices()) == [] and VFS[10] == "0000:41:01.6"
    for vf in VFS[:3]:  # virtfn0..2 busy: by link name virtfn10 (0000:41:01.6) would come next, by address .7
        fs.create_external(vf, A40_2Q, uid())
    a, b = uid(), uid()
    d = doc("vdi1", DOM_A, [(a, A40_2Q), (b, A40_2Q)])
    path = tmp_path / "vdi1.xml"
    path.write_bytes(d)
    plan = cli(h, "plan", str(path))
    assert plan.returncode == 0, plan.stderr
    for u, vf in ((a, VFS[3]), (b, VFS[4])):
        row = next(line.split() for line in plan.stdout.splitlines() if line.strip().startswith(u))
        assert row[1:5] == [vf, "(VF", "of", f"{PF})"]
        assert (f"create mdev {u} on VF {vf} of PF {PF} (the first of the 32 VFs of PF {PF}, in address order, "
                f"with a free instance of {A40_2Q};") in plan.stdout
        assert fs.create_path(vf, A40_2Q) in plan.stdout
    assert json.loads(cli(h, "plan", "--json", str(path)).stdout)["mdevs"][0]["pf"] == PF

    r = h.run("vdi1", "prepare", "begin", d)
    assert (r.returncode, r.stderr) == (0, b"")
    assert [(e["parent"], e["uuid"]) for e in creates(fs)] == [(VFS[3], a), (VFS[4], b)]
    assert {u: fs.devices()[u] for u in (a, b)} == {a: (VFS[3], A40_2Q), b: (VFS[4], A40_2Q)}
    claim = json.loads((h.state_dir / f"{a}.json").read_text())
    assert (claim["parent"], claim["pf"], claim["state"]) == (VFS[3], PF, "created")
    chosen = [(e["vf"], e["pf"]) for e in h.events() if e["event"] == "mdev.vf_chosen"]
    assert chosen == [(VFS[3], PF), (VFS[4], PF)]
    assert os.listdir(h.lock_dir) == [f"{PF}.lock"]
    st = cli(h, "status")
    assert f"{a}  {VFS[3]} (VF of {PF})  {A40_2Q}" in st.stdout
    # a second prepare of the same domain keeps what it has; plan says keep
    assert h.run("vdi1", "prepare", "begin", d).returncode == 0 and len(creates(fs)) == 2
    assert f"keep mdev {a}" in cli(h, "plan", str(path)).stdout
    # release removes from the VFs the ledger names, and nothing else
    assert h.run("vdi1", "release", "end", d).returncode == 0
    assert [(e["parent"], e["uuid"]) for e in fs.journal() if e["op"] == "remove" and e["actor"] == "user"] == [
        (VFS[4], b), (VFS[3], a)]
    assert len(fs.devices()) == 3 and h.ledger() == []


def test_concurrent_starts_on_one_pf_get_different_vfs(a40: tuple[Any, HookEnv]) -> None:
    fs, h = a40
    fs.control(cmd="delay", op="create", ms=60)
    n = 10
    mdevs = [uid() for _ in range(n)]
    docs = [doc(f"vm{i}", dom_uuid(i), [(mdevs[i], A40_2Q)]) for i in range(n)]
    procs = [h.start(f"vm{i}", "prepare", "begin", docs[i]) for i in range(n)]
    results = [(p.wait(120), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    assert results == [(0, b"")] * n
    devices = fs.devices()
    assert sorted(devices) == sorted(mdevs)
    used = [devices[u][0] for u in mdevs]
    assert sorted(used) == VFS[:n]  # each a different VF, the first n in address order
    # under the PF's lock: no two creates on the PF at the same time
    spans = sorted((e["t0"], e["t1"]) for e in creates(fs))
    assert len(spans) == n and all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    procs = [h.start(f"vm{i}", "release", "end", docs[i]) for i in range(n)]
    assert [(p.wait(120), p.stderr.read()) for p in procs] == [(0, b"")] * n  # type: ignore[union-attr]
    assert fs.devices() == {} and h.ledger() == []


def test_no_vf_with_a_free_instance_is_one_line_naming_pf_and_type(a40: tuple[Any, HookEnv]) -> None:
    fs, h = a40
    a, b = uid(), uid()
    assert h.run("vm1", "prepare", "begin", doc("vm1", DOM_A, [(a, A40_24Q), (b, A40_24Q)])).returncode == 0
    assert [e["parent"] for e in creates(fs)] == VFS[:2]  # A40-24Q: 2 per GPU
    for dom, t in ((DOM_B, A40_24Q), (dom_uuid(3), A40_2Q)):  # the cap, then another type on a time-sliced GPU
        r = h.run("vm2", "prepare", "begin", doc("vm2", dom, [(uid(), t)]))
        err = one_line(r.stderr)
        assert r.returncode == 1 and f"no VF of PF {PF} has a free instance of type {t}" in err
        assert f"2 x {A40_24Q}" in err and "(32 VFs;" in err
    assert len(creates(fs)) == 2
    # the per-GPU maximum is not visible per VF before a create: a domain asking for 3 gets 2, the kernel refuses
    # the 3rd; the line still names the PF, and the two are rolled back
    assert h.run("vm1", "release", "end", doc("vm1", DOM_A, [(a, A40_24Q), (b, A40_24Q)])).returncode == 0
    three = [uid() for _ in range(3)]
    r = h.run("vm3", "prepare", "begin", doc("vm3", dom_uuid(4), [(u, A40_24Q) for u in three]))
    err = one_line(r.stderr)
    assert r.returncode == 1 and f"no VF of PF {PF} has a free instance of type {A40_24Q}" in err
    assert f"VF {VFS[2]} refused it: " in err and "EINVAL" in err
    assert [(e["parent"], e["uuid"], e["result"]) for e in creates(fs)[2:]] == [
        (VFS[0], three[0], "ok"), (VFS[1], three[1], "ok"), (VFS[2], three[2], "EINVAL")]
    removes = [e["uuid"] for e in fs.journal() if e["op"] == "remove" and e["actor"] == "user"]
    assert removes[-2:] == [three[1], three[0]] and fs.devices() == {} and h.ledger() == []


def test_pf_whose_vfs_do_not_offer_the_type(a40: tuple[Any, HookEnv]) -> None:
    fs, h = a40
    r = h.run("vm1", "prepare", "begin", doc("vm1", DOM_A, [(uid(), "nvidia-999")]))
    err = one_line(r.stderr)
    assert r.returncode == 1 and f"none of the 32 VFs of PF {PF} offers type nvidia-999" in err
    assert f"mdev-hooks types --parent {VFS[0]}" in err and creates(fs) == []


@pytest.mark.parametrize("parent", [PF, VFS[7]])
def test_pf_and_its_vfs_are_used_under_the_pf_lock(a40: tuple[Any, HookEnv], parent: str) -> None:
    import fcntl

    fs, h = a40
    h.write("nvidia_release_wait = 0\nlock_timeout = 1")
    h.lock_dir.mkdir(mode=0o700)
    with open(h.lock_dir / f"{PF}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        r = h.run("vm1", "prepare", "begin", doc("vm1", DOM_A, [(uid(), A40_48Q)], parent=parent))
    assert r.returncode == 1 and f"waiting for the lock of parent {PF}" in one_line(r.stderr)
    assert creates(fs) == []


def test_add_accepts_a_pf_whose_vfs_offer_the_type(fakesysfs: Callable[..., Any], tmp_path: Path) -> None:
    from support.cliworld import PLAIN, World

    w = World(fakesysfs("nvidia-a40-sriov"), tmp_path)
    (w.virsh_dir / "domains" / "plain.xml").write_bytes(PLAIN)
    u = uid()
    r = w.cli("add", "plain", "--parent", PF, "--type", A40_2Q, "--uuid", u)
    assert r.returncode == 0, r.stderr
    assert f"added mdev {u} (type {A40_2Q} on {PF}" in r.stdout
    r = w.cli("add", "plain", "--parent", PF, "--type", "nvidia-999")
    assert r.returncode == 1 and f"none of the 32 VFs of PF {PF} offers type nvidia-999" in one_line(r.stderr)


def test_pf_dry_run_logs_the_vf_and_writes_nothing(a40: tuple[Any, HookEnv]) -> None:
    fs, h = a40
    r = h.run("vm1", "prepare", "begin", doc("vm1", DOM_A, [(uid(), A40_2Q)]), MDEV_HOOKS_DRY_RUN="1")
    assert (r.returncode, r.stderr) == (0, b"") and creates(fs) == [] and h.ledger() == []
    assert [(e["vf"], e["pf"]) for e in h.events() if e["event"] == "mdev.vf_chosen"] == [(VFS[0], PF)]
