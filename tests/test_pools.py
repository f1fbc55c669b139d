"""Parent pools through the real hook against the FUSE fake (three Tesla T4s, mtty, an A40 PF): first fit in listed
order, the members passed over, a full pool leaving nothing, concurrent starts, reuse, release after [pools] was
edited, the bad entries, SR-IOV and [parents]-mapped members."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakesysfs.harness import FakeSysfs
from support.asserts import one_line
from support.common import writes
from support.hookrun import HookEnv, require_fuse
from support.ids import DOM_A, DOM_B, DOM_C, MTTY, PF, dom_uuid, uid
from support.pools import ABSENT, T4_1B, T4_2Q, T4_16Q, T4S, T4X3, pool_xml, pooled, pools_toml, profiles_file

pytestmark = pytest.mark.fuse  # every test here mounts the fake (start_fake)


def start_fake(tmp: Path, profiles: list[str]) -> FakeSysfs:
    require_fuse()
    return FakeSysfs(profiles, tmp / "fake", profiles_file=profiles_file(tmp / "profiles.json")).start()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[FakeSysfs, HookEnv]]:
    fs = start_fake(tmp_path, [T4X3, "mtty-sample"])
    try:
        yield fs, HookEnv(tmp_path / "hook", fs.root, pools_toml(gpu=T4S))
    finally:
        fs.stop()


def claim(h: HookEnv, key: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((h.state_dir / f"{key}.json").read_text())
    return data


def placed(h: HookEnv) -> list[tuple[Any, ...]]:
    return [(e["mdev"], e["member"], e["reason"], tuple(e["passed"])) for e in h.events()  # type: ignore[arg-type]
            if e["event"] == "pool.placed"]


def test_first_fit_in_listed_order_and_the_ledger_records_member_and_pool(world: tuple[FakeSysfs, HookEnv]) -> None:
    fs, h = world
    order = [T4S[1], T4S[2], T4S[0]]  # listed order, not address order
    h.write(pools_toml(gpu=order))
    a, b, c = uid(), uid(), uid()
    r = h.run("vm1", "prepare", "begin", pooled("vm1", DOM_A, [a, b], T4_16Q))  # one instance per GPU
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    assert h.run("vm2", "prepare", "begin", pooled("vm2", DOM_B, [c], T4_16Q)).returncode == 0
    assert fs.devices() == {a: (order[0], T4_16Q), b: (order[1], T4_16Q), c: (order[2], T4_16Q)}
    assert [(claim(h, u)["parent"], claim(h, u)["pool"], claim(h, u)["state"]) for u in (a, b, c)] == [
        (order[0], "gpu", "created"), (order[1], "gpu", "created"), (order[2], "gpu", "created")]
    got = placed(h)
    assert [g[:2] for g in got] == [(a, order[0]), (b, order[1]), (c, order[2])]
    assert got[1][3] == (f"{order[0]}: full (available_instances=1, this start places 1 there)",)
    assert got[2][3] == (f"{order[0]}: full (available_instances=0)", f"{order[1]}: full (available_instances=0)")
    # every member's lock, whichever is chosen
    assert sorted(p.name for p in h.lock_dir.iterdir()) == sorted(f"{t}.lock" for t in T4S)
    assert h.run("vm1", "release", "end", pooled("vm1", DOM_A, [a, b], T4_16Q)).returncode == 0
    assert fs.devices() == {c: (order[2], T4_16Q)} and h.ledger() == [f"{c}.json"]


def test_full_unregistered_exclusive_busy_and_other_type_members_are_passed_over(
        world: tuple[FakeSysfs, HookEnv]) -> None:
    fs, h = world
    h.write(pools_toml(gpu=[ABSENT, MTTY, T4S[0], T4S[1], T4S[2]]))
    fs.create_external(T4S[0], T4_16Q, uid())  # full
    fs.create_external(T4S[1], T4_2Q, uid())  # time-sliced: busy with another type, so it offers 0 of T4_16Q
    u = uid()
    assert h.run("vm1", "prepare", "begin", pooled("vm1", DOM_A, [u], T4_16Q)).returncode == 0
    assert fs.devices()[u] == (T4S[2], T4_16Q)
    assert placed(h) == [(u, T4S[2], f"the first member in listed order with a free instance of {T4_16Q}", (
        f"{ABSENT}: not registered", f"{MTTY}: type not offered", f"{T4S[0]}: full (available_instances=0)",
        f"{T4S[1]}: busy with another type ({T4_2Q})"))]


def test_a_time_sliced_member_this_start_gave_another_type_is_busy(world: tuple[FakeSysfs, HookEnv]) -> None:
    fs, h = world
    a, b = uid(), uid()
    d = pool_xml("vm1", DOM_A, [(a, 'pool="gpu"', T4_2Q), (b, 'pool="gpu"', T4_1B)])
    assert h.run("vm1", "prepare", "begin", d).returncode == 0
    assert fs.devices() == {a: (T4S[0], T4_2Q), b: (T4S[1], T4_1B)}
    assert placed(h)[1][3] == (f"{T4S[0]}: busy with another type (this start places {T4_2Q} there)",)


@pytest.mark.parametrize("second_fits", [False, True])
def test_a_full_pool_fails_with_one_line_and_leaves_nothing(world: tuple[FakeSysfs, HookEnv],
                                                             second_fits: bool) -> None:
    fs, h = world
    h.write(pools_toml(gpu=T4S[:2]))
    others = [uid(), uid()]
    for t, u in zip(T4S, others):
        fs.create_external(t, T4_16Q, u)
    first, second = uid(), uid()
    # a domain whose first device fits (on mtty, by parent) and whose second does not; or a pool device that fits,
    # then one that does not
    entries = [(first, f'parent="{MTTY}"', "mtty-2"), (second, 'pool="gpu"', T4_16Q)]
    if second_fits:
        h.write(pools_toml(gpu=T4S))
        entries = [(first, 'pool="gpu"', T4_16Q), (second, 'pool="gpu"', T4_16Q)]
    r = h.run("vm1", "prepare", "begin", pool_xml("vm1", DOM_A, entries))
    err = one_line(r.stderr)
    assert r.returncode == 1 and r.stdout == b""
    assert f"cannot create mdev {second}: no member of pool gpu has a free instance of type {T4_16Q}" in err
    assert f"{T4S[1]}: full (available_instances=0)" in err
    if second_fits:
        assert f"{T4S[2]}: full (available_instances=1, this start places 1 there)" in err
    assert writes(fs) == [] and h.ledger() == [] and sorted(fs.devices()) == sorted(others)
    assert [e["mdev"] for e in h.events() if e["event"] == "pool.full"] == [second]


def test_four_concurrent_starts_on_three_one_instance_members(world: tuple[FakeSysfs, HookEnv]) -> None:
    fs, h = world
    fs.control(cmd="delay", op="create", ms=150)  # each start holds the members' locks a while
    mdevs = [uid() for _ in range(4)]
    docs = [pooled(f"vm{i}", dom_uuid(i), [mdevs[i]], T4_16Q) for i in range(4)]
    procs = [h.start(f"vm{i}", "prepare", "begin", docs[i]) for i in range(4)]
    results = [(p.wait(120), p.stdout.read(), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    ok = [i for i, (rc, _, _) in enumerate(results) if rc == 0]
    failed = [i for i, (rc, _, _) in enumerate(results) if rc != 0]
    assert len(ok) == 3 and len(failed) == 1, results
    assert all(results[i][1:] == (b"", b"") for i in ok)
    lost = failed[0]
    err = one_line(results[lost][2])
    assert results[lost][0] == 1 and results[lost][1] == b""
    assert f"cannot create mdev {mdevs[lost]}: no member of pool gpu has a free instance of type {T4_16Q}" in err
    devices = fs.devices()
    assert sorted(devices) == sorted(mdevs[i] for i in ok)
    assert sorted(devices[mdevs[i]][0] for i in ok) == T4S  # each on a different member
    assert fs.creates_overlapping_on_same_parent() == []
    assert sorted(h.ledger()) == sorted(f"{mdevs[i]}.json" for i in ok)


def test_release_after_pools_was_edited_removes_from_the_member_the_ledger_names(
        world: tuple[FakeSysfs, HookEnv]) -> None:
    fs, h = world
    u = uid()
    d = pooled("vm1", DOM_A, [u], T4_16Q)
    assert h.run("vm1", "prepare", "begin", d).returncode == 0 and fs.devices() == {u: (T4S[0], T4_16Q)}
    for edit in (pools_toml(gpu=[T4S[2]]), ""):  # the member dropped from the pool, then the pool itself
        h.write(edit)
        r = h.run("vm1", "release", "end", d)
        assert (r.returncode, r.stderr) == (0, b"")
        assert fs.devices() == {} and h.ledger() == []
        assert h.run("vm1", "prepare", "begin", d).returncode == (0 if edit else 1)
    assert fs.devices() == {}
    removes = [(e["uuid"], e["parent"]) for e in fs.journal() if e["op"] == "remove" and e["actor"] == "user"]
    assert removes == [(u, T4S[0]), (u, T4S[2])]


def test_an_existing_device_with_the_domains_uuid_on_a_member_is_used_where_it_is(
        world: tuple[FakeSysfs, HookEnv]) -> None:
    fs, h = world
    u = uid()
    fs.create_external(T4S[2], T4_16Q, u)
    assert h.run("vm1", "prepare", "begin", pooled("vm1", DOM_A, [u], T4_16Q)).returncode == 0
    assert writes(fs) == [] and fs.devices() == {u: (T4S[2], T4_16Q)}
    c = claim(h, u)
    assert (c["parent"], c["pool"], c["state"]) == (T4S[2], "gpu", "adopted")
    assert placed(h) == [(u, T4S[2], "the device exists there", ())]
    # the hook's own device, at the next start: kept where it is
    h2 = HookEnv(h.dir.parent / "hook2", fs.root, pools_toml(gpu=T4S))
    v = uid()
    assert h2.run("vm2", "prepare", "begin", pooled("vm2", DOM_B, [v], T4_16Q)).returncode == 0
    assert h2.run("vm2", "prepare", "begin", pooled("vm2", DOM_B, [v], T4_16Q)).returncode == 0
    assert fs.devices()[v] == (T4S[0], T4_16Q) and len(writes(fs)) == 1


@pytest.mark.parametrize(("what", "expected"), [
    (f'parent="{T4S[0]}" pool="gpu"',
     "the metadata names both parent={p} and pool=gpu; give one: a pool to place it on a member with room, "
     "or a parent"),
    ("", "the metadata entry needs a parent (or a pool from [pools] in the config)"),
    ('pool="vdi"', "pool vdi is not in [pools] of {config} (pools on this host: gpu)"),
])
def test_the_three_bad_entries_fail_before_any_write(world: tuple[FakeSysfs, HookEnv], what: str,
                                                     expected: str) -> None:
    fs, h = world
    first, u = uid(), uid()
    d = pool_xml("vm1", DOM_A, [(first, 'pool="gpu"', T4_16Q), (u, what, T4_16Q)])
    r = h.run("vm1", "prepare", "begin", d)
    assert r.returncode == 1
    assert one_line(r.stderr) == f"mdev {u}: {expected.format(p=T4S[0], config=h.config)}"
    assert writes(fs) == [] and h.ledger() == []


def test_a_member_mapped_by_parents(world: tuple[FakeSysfs, HookEnv]) -> None:
    fs, h = world
    h.write(f'[parents]\n"0000:01:00.0" = "{T4S[1]}"\n' + pools_toml(gpu=[ABSENT, "0000:01:00.0"]))
    u = uid()
    assert h.run("vm1", "prepare", "begin", pooled("vm1", DOM_A, [u], T4_16Q)).returncode == 0
    assert fs.devices() == {u: (T4S[1], T4_16Q)} and claim(h, u)["parent"] == T4S[1]
    assert sorted(p.name for p in h.lock_dir.iterdir()) == sorted([f"{ABSENT}.lock", f"{T4S[1]}.lock"])
    assert h.run("vm1", "release", "end", pooled("vm1", DOM_A, [u], T4_16Q)).returncode == 0
    assert fs.devices() == {} and h.ledger() == []


def test_an_sriov_pf_member_gets_the_usual_vf_choice(tmp_path: Path) -> None:
    from support.pools import A40_558

    fs = start_fake(tmp_path, [T4X3, "nvidia-a40-sriov"])
    try:
        h = HookEnv(tmp_path / "hook", fs.root, "nvidia_release_wait = 0\n" + pools_toml(gpu=[T4S[0], PF]))
        a, b = uid(), uid()
        d = pooled("vm1", DOM_C, [a, b], A40_558)
        assert h.run("vm1", "prepare", "begin", d).returncode == 0
        assert fs.devices() == {a: ("0000:41:00.4", A40_558), b: ("0000:41:00.5", A40_558)}
        c = claim(h, b)
        assert (c["parent"], c["pf"], c["pool"]) == ("0000:41:00.5", PF, "gpu")
        assert [g[1] for g in placed(h)] == [PF, PF] and placed(h)[0][3] == (f"{T4S[0]}: type not offered",)
        assert f"{PF}.lock" in [p.name for p in h.lock_dir.iterdir()]
        assert h.run("vm1", "release", "end", d).returncode == 0 and fs.devices() == {} and h.ledger() == []
    finally:
        fs.stop()
