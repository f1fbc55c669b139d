"""Issue 6, "nobody let in": hostile domain XML (property-based, hypothesis) against the hook and the FUSE fake.

A user allowed to define domains is not root; the hook is. Whatever the XML says, the hook must never raise, never
hang, never print to stdout, exit with the documented code (one `mdev-hooks: ` line on stderr iff exit 1), never
write a sysfs file other than `class/mdev_bus/*/mdev_supported_types/*/create` and `bus/mdev/devices/<uuid>/remove`
(checked on the fake's journal, paths as the kernel resolves them), never touch another domain's or an external
device, and `release` must leave the host as it was.

The harness is tests/support/hostile.py; its oracle is independent of mdev_hooks: it parses the document itself
(lxml, no DTD, no entities) and applies DESIGN.md's rules (name and UUID syntax, managed='yes' + type='mdev',
metadata by namespace URI).
"""

from __future__ import annotations

import time
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.domxml import NS
from support.faultmatrix import hook_writes, inproc, subproc
from support.hookrun import HookEnv, require_fuse
from support.hostile import (
    HostileStage,
    assert_only_allowed_writes,
    check_document,
    hostile_call,
    hostile_documents,
    hostile_domain,
    open_stage,
    oracle,
)
from support.ids import DOM_A


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileStage]:
    require_fuse()
    with open_stage(tmp_path_factory.mktemp("hostile")) as s:
        yield s


HYPO = settings(max_examples=200, deadline=None, database=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


@HYPO
@given(hostile_documents())
def test_hostile_structured_xml(stage: HostileStage, case: tuple[bytes, str]) -> None:
    check_document(stage, *case)


VALID = hostile_domain(DOM_A, [("4b20d080-1b54-4048-85b3-a6a62d165c01", "mtty", "mtty-2")],
               [("4b20d080-1b54-4048-85b3-a6a62d165c01", "yes", "mdev")])


@settings(HYPO, max_examples=150)
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 8), st.binary(max_size=12)),
                min_size=1, max_size=6),
       st.sampled_from(["prepare", "release"]))
def test_mutated_xml(stage: HostileStage, cuts: list[tuple[int, int, bytes]], op: str) -> None:
    """Byte-level mutations of a valid document: whatever they produce, the rules hold."""
    doc = bytearray(VALID)
    for pos, drop, insert in cuts:
        pos = min(pos, len(doc))
        doc[pos:pos + drop] = insert
    check_document(stage, bytes(doc), op)


@settings(HYPO, max_examples=60)
@given(st.binary(max_size=2000), st.sampled_from([b"urn:mdev-hooks:domain:1", b"'mdev'", b'"mdev"']),
       st.sampled_from(["prepare", "release", "start", "migrate", "restore", "stopped", "nonsense"]))
def test_binary_garbage(stage: HostileStage, junk: bytes, needle: bytes, op: str) -> None:
    s = stage
    s.check_baseline()
    mark = len(s.fs.journal())
    doc = junk[:100] + needle + junk[100:]
    r = hostile_call(s, op, doc, "begin" if op != "release" else "end")
    if op in ("prepare", "release", "migrate", "restore"):  # migrate/restore begin: prepare's validation, read-only
        assert r.returncode == oracle(doc, s).rc, r
    else:
        assert (r.returncode, r.stderr) == (0, b"")
    assert hook_writes(s.fs, mark) == []
    s.check_baseline()


# ---- targeted documents --------------------------------------------------------------------------------------------

U = "4b20d080-1b54-4048-85b3-a6a62d165c01"
BILLION_LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE domain [<!ENTITY a "aaaaaaaaaa">'
                  + b"".join(b'<!ENTITY %c "%s">' % (98 + i, (b"&%c;" % (97 + i)) * 10) for i in range(9))
                  + b"]><domain><name>&j;</name><uuid>" + DOM_A.encode() + b"</uuid><metadata><m:mdevs xmlns:m='"
                  + NS.encode() + b"'/></metadata></domain>")
XXE = (b'<?xml version="1.0"?><!DOCTYPE domain [<!ENTITY p SYSTEM "file:///etc/hostname">]>'
       + hostile_domain(DOM_A, [(U, "&p;", "mtty-2")], [(U, "yes", "mdev")], mode="raw"))
PARAM = (b'<!DOCTYPE domain [<!ENTITY % x SYSTEM "http://127.0.0.1:9/x.dtd"> %x;]>'
         + hostile_domain(DOM_A, [(U, "mtty", "mtty-2")], [(U, "yes", "mdev")]))
DOCTYPE_LATE = hostile_domain(DOM_A, [(U, "mtty", "mtty-2")], [(U, "yes", "mdev")]).replace(
    b"<domain", b"<!DOCTYPE domain SYSTEM 'file:///dev/zero'><domain", 1)
TARGETED = {
    "billion laughs": (BILLION_LAUGHS, 1),
    "external entity in parent": (XXE, 1),
    "parameter entity, network": (PARAM, 1),
    "doctype to /dev/zero": (DOCTYPE_LATE, 1),
    "charref dot-dot parent": (hostile_domain(DOM_A, [(U, "..", "mtty-2")], [(U, "yes", "mdev")], mode="charref"), 1),
    "charref slash type": (hostile_domain(DOM_A, [(U, "mtty", "mtty-2/../mtty-1")], [(U, "yes", "mdev")],
                                  mode="charref"), 1),
    "10k-character parent": (hostile_domain(DOM_A, [(U, "p" * 10000, "mtty-2")], [(U, "yes", "mdev")]), 1),
    "10k-character uuid": (hostile_domain(DOM_A, [("a" * 10000, "mtty", "mtty-2")], [(U, "yes", "mdev")]), 1),
    "nested 255 deep": (hostile_domain(DOM_A, [(U, "mtty", "mtty-2")], [(U, "yes", "mdev")], nest=250), 0),
    "nested 100000 deep": (hostile_domain(DOM_A, [(U, "mtty", "mtty-2")], [(U, "yes", "mdev")], nest=100000), 1),
    "17 MiB document": (hostile_domain(DOM_A, [(U, "mtty", "mtty-2")], [(U, "yes", "mdev")],
                               extra="<!--" + "x" * (17 << 20) + "-->"), 1),
    "fullwidth parent": (hostile_domain(DOM_A, [(U, "\uff4d\uff54\uff54\uff59", "mtty-2")], [(U, "yes", "mdev")]), 1),
    "arabic-indic digits uuid": (hostile_domain(DOM_A, [("\u0664" + U[1:], "mtty", "mtty-2")],
                                        [("\u0664" + U[1:], "yes", "mdev")]), 1),
    "not a domain": (b"<network xmlns:m='" + NS.encode() + b"'/>", 1),
    "unparseable managed hostdev": (b"<hostdev type='mdev' managed='yes'", 1),
    "upper-case hostdev uuid": (hostile_domain(DOM_A, [(U, "mtty", "mtty-2")], [(U.upper(), "yes", "mdev")]), 0),
}


@pytest.mark.parametrize("name", list(TARGETED))
def test_targeted_documents(stage: HostileStage, name: str) -> None:
    doc, rc = TARGETED[name]
    s = stage
    s.check_baseline()
    mark = len(s.fs.journal())
    t0 = time.monotonic()
    r = hostile_call(s, "prepare", doc)
    assert time.monotonic() - t0 < 5
    assert r.returncode == rc, r
    if rc == 1:
        assert len(r.stderr) < 1000  # hostile names are cut in the one line
        assert hook_writes(s.fs, mark) == []
    else:
        assert_only_allowed_writes(s, mark)
        assert hostile_call(s, "release", doc).returncode == 0
    s.check_baseline()


@pytest.mark.parametrize("op", ["start", "started", "stopped", "reconnect", "attach", "prepare-ish", "release"])
def test_other_operations_ignore_hostile_xml(stage: HostileStage, op: str) -> None:
    s = stage
    mark = len(s.fs.journal())
    for doc, _ in TARGETED.values():
        r = hostile_call(s, op, doc, "begin")  # `release begin` is not ours either
        assert (r.returncode, r.stderr) == (0, b"")
    assert hook_writes(s.fs, mark) == []
    s.check_baseline()


@pytest.mark.parametrize("op", ["migrate", "restore"])
def test_incoming_check_of_hostile_xml_writes_nothing(stage: HostileStage, op: str) -> None:
    """`migrate begin` / `restore begin` validate (read-only): a hostile document is refused or passes, with one
    line and nothing on stdout (hostile_call() checks both), and never a write to sysfs or the ledger."""
    s = stage
    mark = len(s.fs.journal())
    for doc, _ in TARGETED.values():
        hostile_call(s, op, doc, "begin")
    assert hook_writes(s.fs, mark) == []
    s.check_baseline()


SUBPROCESS_CASES = ["billion laughs", "external entity in parent", "nested 100000 deep", "17 MiB document",
                    "charref dot-dot parent", "upper-case hostdev uuid"]


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_real_hook_process(stage: HostileStage, name: str) -> None:
    """The same documents through hooks/qemu as libvirt runs it (scrubbed env, stdin, exit status)."""
    doc, rc = TARGETED[name]
    s = stage
    mark = len(s.fs.journal())
    r = subproc(s.h, "vmA", "prepare", "begin", doc, timeout=30)
    assert r.returncode == rc and r.stdout == b"", r
    if rc:
        r.line()
        assert hook_writes(s.fs, mark) == []
    else:
        assert r.stderr == b""
        assert_only_allowed_writes(s, mark)
        r = subproc(s.h, "vmA", "release", "end", doc, timeout=30)
        assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    s.check_baseline()


def test_symlink_out_of_sysfs_root_is_never_written(tmp_path: Path) -> None:
    """A parent or device link planted to point outside sysfs_root (a plain directory tree stands in for sysfs):
    the file behind it is never opened for writing."""
    root, outside = tmp_path / "sys", tmp_path / "outside"
    tdir = outside / "mdev_supported_types" / "evil-1"
    (tdir / "devices").mkdir(parents=True)
    (tdir / "create").write_text("untouched")
    (tdir / "available_instances").write_text("4\n")
    (root / "class" / "mdev_bus").mkdir(parents=True)
    (root / "bus" / "mdev" / "devices").mkdir(parents=True)
    (root / "class" / "mdev_bus" / "evil").symlink_to(outside)
    dev = outside / U
    dev.mkdir()
    (dev / "remove").write_text("untouched")
    (dev / "mdev_type").symlink_to(tdir)
    (root / "bus" / "mdev" / "devices" / U).symlink_to(dev)
    (tmp_path / "hook").mkdir()
    h = HookEnv(tmp_path / "hook", str(root))
    other = str(uuidlib.uuid4())
    for u in (U, other):  # a planted device link; a planted parent link
        xml = hostile_domain(DOM_A, [(u, "evil", "evil-1")], [(u, "yes", "mdev")])
        r = inproc(h, "vmA", "prepare", "begin", xml)
        assert r.returncode == 1 and r.stdout == b"" and "outside sysfs_root" in r.line(), r
        inproc(h, "vmA", "release", "end", xml).ok()
    assert (tdir / "create").read_text() == "untouched" and (dev / "remove").read_text() == "untouched"
    assert h.ledger() == []
