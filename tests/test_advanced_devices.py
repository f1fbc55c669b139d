"""Issue 8 part B ("beyond a fixed parent"), through the real hook (subprocess, HookEnv) and the real CLI
(`mdev-hooks plan`/`status`) against the FUSE fake: ordered attributes after create (s390 vfio-ap), SR-IOV PF
parents (NVIDIA A40: the hook picks a VF). What is checked is what the fake kernel saw (its journal)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hookrun import HookEnv

CLI = Path(sys.executable).parent / "mdev-hooks"
AP, AP_TYPE = "matrix", "vfio_ap-passthrough"
DOM1 = "5909df77-0544-4c25-b292-6027c2468ce1"
DOM2 = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


def uid() -> str:
    return str(uuidlib.uuid4())


def dom_uuid(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


def xml(name: str, dom: str, devices: list[tuple[str, str, str, list[tuple[str, str]]]], prefixed: bool = True,
        managed: bool = True) -> bytes:
    """A domain with managed mdev hostdevs; each device (uuid, parent, type, [(attr, value), ...])."""
    p = "mdev:" if prefixed else ""
    meta = "".join(
        f'<{p}device uuid="{u}" parent="{par}" type="{t}">'
        + "".join(f'<{p}attr name="{n}" value="{v}"/>' for n, v in attrs) + f"</{p}device>"
        for u, par, t, attrs in devices)
    model = "vfio-ap" if any(t == AP_TYPE for _, _, t, _ in devices) else "vfio-pci"
    hostdevs = "".join(
        f"<hostdev mode='subsystem' type='mdev' managed='{'yes' if managed else 'no'}' model='{model}'>"
        f"<source><address uuid='{u}'/></source></hostdev>" for u, _, _, _ in devices)
    return f"""<domain type='kvm'><name>{name}</name><uuid>{dom}</uuid>
  <metadata><mdev:mdevs xmlns:mdev="urn:mdev-hooks:domain:1">{meta}</mdev:mdevs></metadata>
  <devices>{hostdevs}</devices></domain>""".encode()


def user_writes(fs: Any) -> list[tuple[str, str, str, str]]:
    """(op, last path component, data, result) of every write the hook (actor user) made."""
    return [(e["op"], os.path.basename(e["path"]), e["data"], e["result"]) for e in fs.journal()
            if e.get("actor") == "user" and e["op"] != "control"]


def one_line(err: bytes | str) -> str:
    text = err.decode() if isinstance(err, bytes) else err
    assert text.startswith("mdev-hooks: ") and text.count("\n") == 1 and "Traceback" not in text, text
    return text


def cli(h: HookEnv, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("MDEV_HOOKS_DRY_RUN", None)
    env["MDEV_HOOKS_CONFIG"] = str(h.config)
    env["MDEV_HOOKS_VIRSH"] = "/bin/false"  # status: running domains unknown
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, env=env, timeout=120,
                          stdin=subprocess.DEVNULL, check=False)


# -- item 2: ordered attributes after create ---------------------------------------------------------------------
@pytest.fixture
def ap(fakesysfs: Callable[..., Any], tmp_path: Path) -> tuple[Any, HookEnv]:
    fs = fakesysfs("s390-vfio-ap")
    return fs, HookEnv(tmp_path / "hook", fs.root)


@pytest.mark.parametrize("prefixed", [True, False])
def test_attrs_written_in_document_order_after_create(ap: tuple[Any, HookEnv], prefixed: bool) -> None:
    fs, h = ap
    u = uid()
    attrs = [("assign_adapter", "5"), ("assign_domain", "0x4"), ("assign_control_domain", "4")]
    doc = xml("guest1", DOM1, [(u, AP, AP_TYPE, attrs)], prefixed=prefixed)
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
    doc = xml("guest1", DOM1, [(u, AP, AP_TYPE, [("assign_adapter", "5"), ("assign_domain", "300"),
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
    assert h.run("g1", "prepare", "begin", xml("g1", DOM1, [(a, AP, AP_TYPE, apqn)])).returncode == 0
    r = h.run("g2", "prepare", "begin", xml("g2", DOM2, [(b, AP, AP_TYPE, apqn)]))
    err = one_line(r.stderr)
    assert r.returncode == 1 and f"mdev {b}" in err and "assign_domain=7" in err and "EBUSY" in err
    assert fs.devices() == {a: (AP, AP_TYPE)}
    assert [e["uuid"] for e in fs.journal() if e["op"] == "remove"] == [b]


@pytest.mark.parametrize("name", ["matrix", "assign_bogus"])
def test_attr_the_device_does_not_have_is_refused_before_any_write_to_it(ap: tuple[Any, HookEnv],
                                                                        name: str) -> None:
    fs, h = ap
    u = uid()
    r = h.run("g1", "prepare", "begin", xml("g1", DOM1, [(u, AP, AP_TYPE, [("assign_adapter", "1"), (name, "1")])]))
    err = one_line(r.stderr)
    assert r.returncode == 1 and f"no writable attribute {name}" in err and "assign_domain" in err  # what it has
    assert [(op, n) for op, n, _, _ in user_writes(fs)] == [("create", "create"), ("write", "assign_adapter"),
                                                          ("remove", "remove")]
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
    r = h.run("g1", "prepare", "begin", xml("g1", DOM1, [(u, AP, AP_TYPE, [(name, value)])]))
    assert r.returncode == 1 and expected in one_line(r.stderr), r.stderr
    assert user_writes(fs) == [] and h.ledger() == []


def test_plan_shows_attrs_and_adopted_device_gets_none(ap: tuple[Any, HookEnv], tmp_path: Path) -> None:
    fs, h = ap
    new, old = uid(), uid()
    fs.create_external(AP, AP_TYPE, old)
    doc = xml("g1", DOM1, [(new, AP, AP_TYPE, [("assign_adapter", "5"), ("assign_domain", "4")]),
                           (old, AP, AP_TYPE, [("assign_adapter", "6")])])
    path = tmp_path / "g1.xml"
    path.write_bytes(doc)
    r = cli(h, "plan", str(path))
    assert r.returncode == 0, r.stderr
    assert (f"create mdev {new}: write it to {fs.create_path(AP, AP_TYPE)}; then write, in this order, "
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
    r = h.run("g1", "prepare", "begin", xml("g1", DOM1, [(u, AP, AP_TYPE, [("assign_adapter", "5")])]),
              MDEV_HOOKS_DRY_RUN="1")
    assert r.returncode == 0 and user_writes(fs) == []
    assert [(e["attr"], e["value"]) for e in h.events() if e["event"] == "mdev.would_write_attr"] == [
        ("assign_adapter", "5")]


def test_hook_killed_between_attrs_leaves_enough_for_release(ap: tuple[Any, HookEnv]) -> None:
    fs, h = ap
    u = uid()
    doc = xml("g1", DOM1, [(u, AP, AP_TYPE, [("assign_adapter", "5"), ("assign_domain", "4")])])
    r = h.run("g1", "prepare", "begin", doc, MDEV_HOOKS_TEST_KILL_AT="attr_written")
    assert r.returncode == -9
    assert [n for _, n, _, _ in user_writes(fs)] == ["create", "assign_adapter"]
    assert json.loads((h.state_dir / f"{u}.json").read_text())["state"] == "intent"
    assert h.run("g1", "release", "end", doc).returncode == 0
    assert fs.devices() == {} and h.ledger() == []


# -- item 1: SR-IOV physical function as the parent (NVIDIA A40: each VF is an mdev parent with one instance) -----
PF = "0000:41:00.0"
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
    d = doc("vdi1", DOM1, [(a, A40_2Q), (b, A40_2Q)])
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
    assert h.run("vm1", "prepare", "begin", doc("vm1", DOM1, [(a, A40_24Q), (b, A40_24Q)])).returncode == 0
    assert [e["parent"] for e in creates(fs)] == VFS[:2]  # A40-24Q: 2 per GPU
    for dom, t in ((DOM2, A40_24Q), (dom_uuid(3), A40_2Q)):  # the cap, then another type on a time-sliced GPU
        r = h.run("vm2", "prepare", "begin", doc("vm2", dom, [(uid(), t)]))
        err = one_line(r.stderr)
        assert r.returncode == 1 and f"no VF of PF {PF} has a free instance of type {t}" in err
        assert f"2 x {A40_24Q}" in err and "(32 VFs;" in err
    assert len(creates(fs)) == 2
    # the per-GPU maximum is not visible per VF before a create: a domain asking for 3 gets 2, the kernel refuses
    # the 3rd; the line still names the PF, and the two are rolled back
    assert h.run("vm1", "release", "end", doc("vm1", DOM1, [(a, A40_24Q), (b, A40_24Q)])).returncode == 0
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
    r = h.run("vm1", "prepare", "begin", doc("vm1", DOM1, [(uid(), "nvidia-999")]))
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
        r = h.run("vm1", "prepare", "begin", doc("vm1", DOM1, [(uid(), A40_48Q)], parent=parent))
    assert r.returncode == 1 and f"waiting for the lock of parent {PF}" in one_line(r.stderr)
    assert creates(fs) == []


def test_add_accepts_a_pf_whose_vfs_offer_the_type(fakesysfs: Callable[..., Any], tmp_path: Path) -> None:
    from test_cli import PLAIN, World

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
    r = h.run("vm1", "prepare", "begin", doc("vm1", DOM1, [(uid(), A40_2Q)]), MDEV_HOOKS_DRY_RUN="1")
    assert (r.returncode, r.stderr) == (0, b"") and creates(fs) == [] and h.ledger() == []
    assert [(e["vf"], e["pf"]) for e in h.events() if e["event"] == "mdev.vf_chosen"] == [(VFS[0], PF)]
