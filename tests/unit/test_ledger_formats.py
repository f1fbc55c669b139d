"""Claims of every released format (tests/unit/fixtures/ledger/) are released by the current code, and
`mdev-hooks ledger downgrade --format 1` rewrites them so that 0.2.0's own reader (its files as of commit 4b8084a,
kept in fixtures/ledger/reader-0.2.0/) takes every one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.host import MakeHost, UnitHost
from support.ids import AP_MATRIX, AP_PASSTHROUGH, H200_1414, MTTY, MTTY_1, MTTY_2, VF0, VF1, VF2

from mdev_hooks.core.ledger import FORMAT, Ledger, to_json
from mdev_hooks.core.ledger import from_json as claim_from_json

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ledger"
READER_020 = FIXTURES / "reader-0.2.0"
RELEASE_020 = "4b8084a"  # the commit 0.2.0 was built from
NO_WAIT = "nvidia_release_wait = 0\n"


def fixture(name: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((FIXTURES / name).read_text())
    return data


def key_of(data: dict[str, object]) -> str:
    return str(data.get("key", data.get("mdev")))


def place(host: UnitHost, name: str) -> Path:
    """The fixture as a claim file in the host's ledger, byte for byte."""
    data = fixture(name)
    dest = host.state_dir / f"{key_of(data)}.json"
    shutil.copyfile(FIXTURES / name, dest)
    return dest


# (fixture, profiles, existing devices, vGPU types set on VFs): the device each claim names exists on that host
HOSTS = {
    "0.1.0-first.json": (["intel-gvtg"], [("4b20d080-1b54-4048-85b3-a6a62d165c01", "0000:00:02.0",
                                           "i915-GVTg_V5_4")], {}),
    "0.1.0.json": (["mtty-sample"], [("9a0c7c5e-3f0e-4d6b-9b8e-2c1d0f6a7e11", MTTY, MTTY_1)], {}),
    "0.1.0-nvidia-vf.json": (["nvidia-h200x-vendor-vfio"], [], {VF0: H200_1414}),
    "0.2.0.json": (["s390-vfio-ap"], [("8d3a3c56-7f1b-4a5e-9c1d-2b6f0e4a9d10", AP_MATRIX, AP_PASSTHROUGH)], {}),
    "0.2.0-nvidia-vf.json": (["nvidia-h200x-vendor-vfio"], [], {VF1: H200_1414}),
    "0.3.0.json": (["mtty-sample"], [("3c1e7a40-22b5-4d7e-8f60-9a1b2c3d4e5f", MTTY, MTTY_2)], {}),
    "0.3.0-nvidia-vf.json": (["nvidia-h200x-vendor-vfio"], [], {VF2: H200_1414}),
}


def test_there_is_a_fixture_of_every_released_format() -> None:
    names = sorted(p.name for p in FIXTURES.glob("*.json"))
    assert names == sorted(HOSTS)
    assert {n.split("-")[0].removesuffix(".json") for n in names} == {"0.1.0", "0.2.0", "0.3.0"}
    assert "mdev" in fixture("0.1.0.json") and "key" in fixture("0.2.0.json")
    assert "format" not in fixture("0.2.0.json") and fixture("0.3.0.json")["format"] == FORMAT == 2


def test_the_newest_fixture_holds_every_field_the_current_code_writes() -> None:
    """A field added to claims must appear in the fixture of the current format (and so in the downgrade tests)."""
    written = to_json(claim_from_json(fixture("0.3.0.json")))
    assert set(written) <= set(fixture("0.3.0.json")), set(written) - set(fixture("0.3.0.json"))
    assert written["format"] == FORMAT


@pytest.mark.parametrize("name", sorted(HOSTS))
def test_the_current_code_releases_a_claim_of_each_format(make_host: MakeHost, name: str) -> None:
    profiles, devices, vgpus = HOSTS[name]
    host = make_host(profiles, devices=devices, vgpus=vgpus, config=NO_WAIT)
    claim = place(host, name)
    data = fixture(name)
    got = Ledger(str(host.state_dir)).get(key_of(data))
    assert got is not None and (got.domain_uuid, got.parent, got.type) == (
        data["domain_uuid"], data["parent"], data["type"])
    host.running()  # no domain runs: gc does the hook's own release
    r = host.cli("gc")
    assert r.code == 0 and r.err == "", r
    assert not claim.exists()
    if data["kind"] == "nvidia-vf" if "kind" in data else False:
        vf = host.sysfs / "bus" / "pci" / "devices" / key_of(data) / "nvidia" / "current_vgpu_type"
        assert vf.read_text().strip() == "0414"  # "0" written over the static tree's "1414", not truncated
    else:
        remove = host.sysfs / "bus" / "mdev" / "devices" / key_of(data) / "remove"
        assert remove.read_text().strip() == "1"


def _read_with_020(state_dir: Path, tmp: Path) -> tuple[list[dict[str, object]], list[str]]:
    """Ledger(state_dir).all() by 0.2.0's own code, in a child Python that sees no other mdev_hooks."""
    tree = tmp / "reader-0.2.0"
    for src in READER_020.rglob("*.py.txt"):
        dest = tree / "mdev_hooks" / src.relative_to(READER_020).with_suffix("")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    code = ("import dataclasses, json, sys; sys.path.insert(0, sys.argv[1])\n"
            "from mdev_hooks.core.ledger import Ledger\n"
            "import mdev_hooks; assert mdev_hooks.__version__ == '0.2.0', mdev_hooks.__file__\n"
            "claims, problems = Ledger(sys.argv[2]).all()\n"
            "print(json.dumps([[dataclasses.asdict(c) for c in claims], problems]))\n")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(tree), str(state_dir)],
                         capture_output=True, text=True, check=True).stdout
    claims, problems = json.loads(out)
    return claims, problems


def test_reader_020_is_the_released_text() -> None:
    """The copy of 0.2.0's reader is byte for byte what commit 4b8084a holds."""
    repo = Path(__file__).resolve().parents[2]
    for src in sorted(READER_020.rglob("*.py.txt")):
        path = "mdev_hooks/" + src.relative_to(READER_020).with_suffix("").as_posix()
        released = subprocess.run(["git", "-C", str(repo), "show", f"{RELEASE_020}:{path}"],
                                  capture_output=True, check=True).stdout
        assert src.read_bytes() == released, path


def test_reader_020_refuses_a_format_2_claim(make_host: MakeHost, tmp_path: Path) -> None:
    """Why the downgrade exists: 0.2.0 calls a claim with a field it does not know corrupt."""
    host = make_host(["mtty-sample"])
    place(host, "0.3.0.json")
    claims, problems = _read_with_020(host.state_dir, tmp_path)
    assert claims == [] and len(problems) == 1 and "corrupt" in problems[0]


def test_downgrade_rewrites_every_claim_so_020_reads_them_all(make_host: MakeHost, tmp_path: Path) -> None:
    host = make_host(["mtty-sample"])
    files = {name: place(host, name) for name in HOSTS}
    before = {name: path.read_bytes() for name, path in files.items()}
    r = host.cli("ledger", "downgrade", "--format", "1")
    assert r.code == 0 and r.err == "", r
    assert r.out == f"rewrote 2 claim(s) in format 1, 5 already were: mdev-hooks 0.2 can read the ledger " \
                    f"({host.state_dir})\n"
    for name, path in files.items():
        if name.startswith("0.3.0"):
            data = json.loads(path.read_text())
            assert "format" not in data and "pool" not in data
            assert {k: v for k, v in fixture(name).items() if k not in ("format", "pool")} == data
        else:
            assert path.read_bytes() == before[name], name  # format 1 already: left byte for byte
    assert sorted(p.name for p in host.state_dir.iterdir()) == sorted(p.name for p in files.values())
    claims, problems = _read_with_020(host.state_dir, tmp_path)
    assert problems == []
    assert sorted(c["key"] for c in claims) == sorted(key_of(fixture(n)) for n in HOSTS)
    again = host.cli("ledger", "downgrade", "--format", "1")
    assert again.code == 0 and again.out.startswith("rewrote 0 claim(s) in format 1, 7 already were"), again


def test_downgrade_dry_run_changes_nothing(make_host: MakeHost) -> None:
    host = make_host(["mtty-sample"])
    path = place(host, "0.3.0.json")
    r = host.cli("ledger", "downgrade", "--format", "1", "--dry-run")
    assert r.code == 0 and r.out.startswith("would rewrite 1 claim(s) in format 1, 0 already were"), r
    assert path.read_bytes() == (FIXTURES / "0.3.0.json").read_bytes()


@pytest.mark.parametrize(("change", "says"), [
    ({"kind": "mdev-next"}, "has kind 'mdev-next', which mdev-hooks 0.2 does not know"),
    ({"state": "releasing"}, "has state 'releasing', which mdev-hooks 0.2 does not know"),
    ({"format": 3, "placement": "numa0"}, "has placement='numa0', which format 1 cannot hold"),
])
def test_downgrade_refuses_a_claim_format_1_cannot_hold(make_host: MakeHost, change: dict[str, object],
                                                        says: str) -> None:
    host = make_host(["mtty-sample"])
    ok = place(host, "0.3.0-nvidia-vf.json")
    bad = host.state_dir / "6f1d5c1e-0b8a-4c4e-9d55-1e2f3a4b5c6d.json"
    data = {**fixture("0.3.0.json"), "key": bad.stem, **change}
    bad.write_text(json.dumps(data, sort_keys=True) + "\n")
    before = {p: p.read_bytes() for p in (ok, bad)}
    r = host.cli("ledger", "downgrade", "--format", "1")
    assert r.code == 1 and r.out == "", r
    assert r.err == (f"mdev-hooks: cannot rewrite the ledger in format 1: claim {bad} ({data['kind']} {bad.stem} "
                     f"of domain vm-a 5909df77-0544-4c25-b292-6027c2468ce1) {says}; nothing was rewritten\n")
    assert {p: p.read_bytes() for p in (ok, bad)} == before


def test_downgrade_takes_the_parents_lock(make_host: MakeHost) -> None:
    """A claim is rewritten only under the lock its parent is used under: while another process holds mtty's
    lock, the downgrade waits lock_timeout and fails with the lock's line, the claim untouched."""
    host = make_host(["mtty-sample"], config="lock_timeout = 0.3\n")
    path = place(host, "0.3.0.json")
    lock_dir = host.tmp / "lock"
    lock_dir.mkdir(mode=0o700)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
         "print('held', flush=True); sys.stdin.read()", str(lock_dir / f"{MTTY}.lock")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        r = host.cli("ledger", "downgrade", "--format", "1")
    finally:
        holder.communicate("")
    assert r.code == 1 and "waiting for the lock of parent mtty" in r.err, r
    assert path.read_bytes() == (FIXTURES / "0.3.0.json").read_bytes()


def test_a_later_format_is_read_and_its_new_fields_ignored(make_host: MakeHost) -> None:
    """Claims outlive a downgrade from a later version too: its added fields must not make a claim corrupt."""
    host = make_host(["mtty-sample"])
    data = {**fixture("0.3.0.json"), "format": FORMAT + 1, "placement": {"numa": 1}, "note": "from the future"}
    (host.state_dir / f"{key_of(data)}.json").write_text(json.dumps(data))
    got = Ledger(str(host.state_dir)).get(key_of(data))
    assert got is not None
    written = json.loads(json.dumps(to_json(got)))  # what this version writes back: its own fields, its format
    assert written == {**{k: v for k, v in data.items() if k in written}, "format": FORMAT}
