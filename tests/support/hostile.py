"""The hostile-XML harness of test_hostile.py (issue 6, "nobody let in"): the stage (one fake with a device of
domain B and an external one), the hook called under a watchdog, the document generators (hypothesis) and the
oracle, which parses each document itself (lxml, no DTD, no entities) and applies DESIGN.md's rules.

Invariant: the oracle is independent of mdev_hooks' parser, so a bug there cannot hide itself; every call asserts
the hook's contract (exit 0/1, nothing on stdout, one `mdev-hooks: ` line on stderr iff exit 1).
"""

from __future__ import annotations

import re
import signal
import uuid as uuidlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any
from xml.sax.saxutils import escape

from fakesysfs.harness import FakeSysfs
from hypothesis import event
from hypothesis import strategies as st
from lxml import etree

from mdev_hooks.hook import mentions_mdev
from support.domxml import NS
from support.faultmatrix import ALLOWED_WRITE, Result, hook_writes, inproc
from support.hookrun import HookEnv
from support.ids import DOM_A, DOM_B, GVT, T4

NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")  # DESIGN.md "Decisions on the details"
UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
EXHAUSTIBLE = {GVT, T4}  # small pools: a valid request may honestly fail with "no free instance"
REAL_PAIRS = [("mtty", "mtty-1"), ("mtty", "mtty-2"), (GVT, "i915-GVTg_V5_8"), (GVT, "i915-GVTg_V5_4"),
              (T4, "nvidia-231"), (T4, "nvidia-222")]
BUDGET_S = 10.0  # "never hangs": one hook call on any input


def valid_name(s: str) -> bool:
    return bool(NAME_RE.fullmatch(s)) and s not in (".", "..")


# ---- the stage: one fake for the whole module, with a device of domain B and an external device ----------------

@dataclass
class HostileStage:
    fs: FakeSysfs
    h: HookEnv
    ux: str  # external device (mtty-1), never ours
    ub: str  # domain B's device (mtty-2), created by the hook
    baseline: dict[str, tuple[str, str]] = field(default_factory=dict)
    ledger: list[str] = field(default_factory=list)

    def check_baseline(self) -> None:
        assert self.fs.devices(include_transient=True) == self.baseline
        assert self.h.ledger() == self.ledger


@contextmanager
def open_stage(base: Path) -> Iterator[HostileStage]:
    """One fake for a whole module (mtty, GVT-g, T4) with a device of domain B and an external device."""
    fs = FakeSysfs(["mtty-sample", "intel-gvtg", "nvidia-tesla-t4"], base).start()
    try:
        (base / "hook").mkdir()
        h = HookEnv(base / "hook", fs.root, "lock_timeout = 2\nremove_timeout = 1\nnvidia_release_wait = 0\n")
        ux, ub = str(uuidlib.uuid4()), str(uuidlib.uuid4())
        fs.create_external("mtty", "mtty-1", ux)
        xml_b = hostile_domain(DOM_B, [(ub, "mtty", "mtty-2")], [(ub, "yes", "mdev")])
        r = inproc(h, "vmB", "prepare", "begin", xml_b)
        assert r.returncode == 0, r
        s = HostileStage(fs, h, ux, ub)
        s.baseline = fs.devices(include_transient=True)
        s.ledger = h.ledger()
        yield s
    finally:
        fs.stop()


class Hang(BaseException):  # not an Exception: the hook's catch-all must not swallow it
    pass


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise Hang


def hostile_call(s: HostileStage, op: str, xml: bytes, sub: str | None = None) -> Result:
    """The hook in-process, with a watchdog: a hang is a failure, not a stuck test run."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, BUDGET_S)
    try:
        r = inproc(s.h, "vmA", op, sub or ("begin" if op == "prepare" else "end"), xml)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert isinstance(r.returncode, int) and r.returncode in (0, 1), r
    assert r.stdout == b"", r  # NEVER stdout (it would replace the XML of migrate/restore)
    if r.returncode == 1:
        r.line()  # exactly one prefixed line, no traceback
    else:
        assert r.stderr == b"", r
    return r


def assert_only_allowed_writes(s: HostileStage, since: int) -> list[dict[str, Any]]:
    writes = hook_writes(s.fs, since)
    for e in writes:
        assert e["op"] in ("create", "remove") and ALLOWED_WRITE.fullmatch(e["path"] or ""), e
        assert e["uuid"] not in (s.ux, s.ub) or e["op"] == "create", e  # never a remove of theirs
    return writes


# ---- building hostile documents -----------------------------------------------------------------------------------

def attr(value: str, mode: str) -> str:
    """An attribute value as it may appear in the document: escaped, as character references, or raw."""
    if mode == "charref":
        return "".join(f"&#{ord(c)};" for c in value)
    if mode == "raw":
        return value
    return escape(value, {'"': "&quot;"})


def hostile_domain(dom_uuid: str, entries: list[tuple[str, str, str]], hostdevs: list[tuple[str, str, str]], *,
           mode: str = "escape", prefixed: bool = True, ns: str = NS, nest: int = 0, extra: str = "") -> bytes:
    tag = "m:device" if prefixed else "device"
    meta = "".join(f'<{tag} uuid="{attr(u, mode)}" parent="{attr(p, mode)}" type="{attr(t, mode)}"/>'
                   for u, p, t in entries)
    meta = "<x>" * nest + meta + "</x>" * nest if nest < 0 else meta + "<j>" * nest + "</j>" * nest
    devs = "".join(f"<hostdev mode='subsystem' type=\"{attr(ty, mode)}\" managed=\"{attr(mg, mode)}\">"
                   f"<source><address uuid=\"{attr(u, mode)}\"/></source></hostdev>" for u, mg, ty in hostdevs)
    return (f"<domain type='kvm'><name>vmA</name><uuid>{attr(dom_uuid, mode)}</uuid>"
            f'<metadata><m:mdevs xmlns:m="{attr(ns, "escape")}">{meta}</m:mdevs>{extra}</metadata>'
            f"<devices>{devs}</devices></domain>").encode("utf-8", "surrogatepass")


TRICKY = [
    "..", ".", "/", "mtty/", "/mtty", "mtty/../mtty", "../mtty", "./mtty", "mtty\x00", "\x00", "mtty\n", " mtty",
    "mtty ", "\uff4d\uff54\uff54\uff59", "mtty\u200b", "mtty\u0338", "\u2024\u2024", "\u2215", "%2e%2e",
    "..%2f", "mtty%2f",
    "m" * 10000, "0" * 129, "0" * 128, ".fake-control", "subsystem", "driver", "iommu_group", "mdev_type", "physfn",
    "virtfn0", "devices", "mdev_supported_types", "create", "remove", "available_instances", "class", "bus",
    "kernel", "0000:3a:00.0", "pci0000:3a", "..\\..", "mtty\\x", "$(reboot)", "`id`", "mtty;rm -rf /", "*", "?",
    "~", "mtty\t", "\u202emtty", "mtty\ufeff", "i915-GVTg_V5_4\x00x", "0000:00:02.0/../0000:3b:00.0", "MTTY",
    "mtty-1", "nvidia-231", "i915-GVTg_V5_4", "0000:00:02.0", "0000:3b:00.0", "mtty", "\ud800", "\uffff", "\x1b[2J",
]
uuids = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),
    st.sampled_from(["00000000-0000-0000-0000-000000000000", "{" + DOM_A + "}", "urn:uuid:" + DOM_A,
                     DOM_A.replace("-", ""), DOM_A + "\n", "../" + DOM_A, DOM_A + "/remove", " " + DOM_A,
                     "\u0660" * 8 + DOM_A[8:], "\uff41" * 8 + DOM_A[8:], DOM_A[:35] + "g", "-" * 36, "x" * 10000]),
    st.text(max_size=40),
)
names = st.one_of(st.sampled_from(TRICKY), st.text(max_size=30), st.from_regex(NAME_RE, fullmatch=True))


@st.composite
def hostile_documents(draw: st.DrawFn) -> tuple[bytes, str]:
    """A domain XML with managed mdevs; the uuids of domain B and the external device are substituted later.

    Half of them are plausible (real parents and types, canonical UUIDs, at most one hostile field), so that
    creations and releases really happen; the other half are hostile everywhere."""
    if draw(st.booleans()):
        return draw(plausible_documents())
    n = draw(st.integers(0, 4))
    entries = []
    for _ in range(n):
        u = draw(st.one_of(uuids, st.sampled_from(["@X", "@B"])))
        if draw(st.booleans()):
            p, t = draw(st.sampled_from(REAL_PAIRS))
        else:
            p, t = draw(st.one_of(st.tuples(names, names), st.sampled_from(REAL_PAIRS).flatmap(
                lambda pt: st.tuples(st.just(pt[0]), names) | st.tuples(names, st.just(pt[1])))))
        entries.append((u, p, t))
    hostdevs = []
    for u, _, _ in entries:
        if draw(st.integers(0, 9)) > 0:
            hostdevs.append((u if draw(st.integers(0, 5)) else u.upper(), draw(st.sampled_from(
                ["yes", "yes", "yes", "no", "YES", " yes"])), draw(st.sampled_from(["mdev", "mdev", "pci", "MDEV"]))))
    if draw(st.integers(0, 4)) == 0:
        hostdevs.append((draw(uuids), "yes", "mdev"))  # a managed hostdev without metadata
    draw(st.randoms()).shuffle(hostdevs)
    doc = hostile_domain(
        draw(st.one_of(st.just(DOM_A), st.just(DOM_A), uuids)),
        entries, hostdevs,
        mode=draw(st.sampled_from(["escape", "escape", "charref", "raw"])),
        prefixed=draw(st.booleans()),
        ns=draw(st.sampled_from([NS, NS, NS, NS + " ", "urn:mdev-hooks:domain:2", NS.upper()])),
        nest=draw(st.sampled_from([0, 0, 3, 200, 300, -3, -300])),
        extra=draw(st.sampled_from(["", "", "<?pi x?>", "<!-- <!DOCTYPE -->", "<![CDATA[<domain/>]]>",
                                    "<xi:include xmlns:xi='http://www.w3.org/2001/XInclude' href='/etc/shadow'/>",
                                    "&amp;&lt;", "&x;", "\x00"])),
    )
    return doc, draw(st.sampled_from(["prepare", "prepare", "prepare", "release"]))


@st.composite
def plausible_documents(draw: st.DrawFn) -> tuple[bytes, str]:
    n = draw(st.integers(1, 3))
    entries = []
    for _ in range(n):
        u = draw(st.one_of(st.uuids().map(str), st.uuids().map(lambda u: str(u).upper()),
                           st.sampled_from(["@X", "@B"])))
        entries.append((u, *draw(st.sampled_from(REAL_PAIRS))))
    hostdevs = [(u, "yes", "mdev") for u, _, _ in entries]
    if draw(st.integers(0, 2)) == 0:  # one hostile field somewhere
        i, field_ = draw(st.integers(0, n - 1)), draw(st.integers(0, 2))
        bad = list(entries[i])
        bad[field_] = draw(names if field_ else uuids)
        entries[i] = (bad[0], bad[1], bad[2])
    doc = hostile_domain(DOM_A, entries, hostdevs, mode=draw(st.sampled_from(["escape", "charref"])),
                 prefixed=draw(st.booleans()), nest=draw(st.sampled_from([0, 3, 200, -3])),
                 extra=draw(st.sampled_from(["", "<?pi x?>", "<![CDATA[<domain/>]]>",
                                             "<xi:include xmlns:xi='http://www.w3.org/2001/XInclude' "
                                             "href='/etc/shadow'/>"])))
    return doc, draw(st.sampled_from(["prepare", "prepare", "prepare", "release"]))


# ---- the oracle: what DESIGN.md says the hook must do with this document -------------------------------------------

@dataclass
class Expect:
    rc: int | None  # None: 0, or 1 with "no free instance" (a small pool may honestly run out)
    managed: list[tuple[str, str, str]] = field(default_factory=list)
    parsed: bool = True  # False: the document itself is refused (prepare AND release exit 1)


def oracle(doc: bytes, s: HostileStage) -> Expect:
    # The hook's byte-level fast path (no parse) decides whether it looks at all; its one promise, checked below
    # against a real parse, is never to skip a document with a managed mdev hostdev.
    looked = mentions_mdev(doc)
    if looked and (b"<!DOCTYPE" in doc or b"<!ENTITY" in doc):
        return Expect(1, parsed=False)  # DESIGN: a DTD is refused (the hook refuses the bytes anywhere)
    try:
        parser = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True, huge_tree=False)
        root = etree.fromstring(doc, parser)
    except (etree.XMLSyntaxError, ValueError):
        return Expect(1 if looked else 0, parsed=not looked)
    if root is not None and root.tag == "domain":
        managed_hostdev = any(hd.get("type") == "mdev" and hd.get("managed") == "yes"
                              for hd in root.iterfind("devices/hostdev"))
        assert looked or not managed_hostdev, "the fast path skipped a domain with a managed mdev hostdev"
    if not looked:
        return Expect(0)
    if root is None or root.tag != "domain" or not UUID_RE.fullmatch((root.findtext("uuid") or "").strip()):
        return Expect(1, parsed=False)
    # metadata entries by lower-cased UUID; only those a managed hostdev uses must be valid (DESIGN: an entry with
    # no managed hostdev is ignored with a warning). Entry problems fail prepare; release works from the ledger.
    entries: dict[str, list[tuple[str, str]]] = {}
    for top in root.iterfind(f"metadata/{{{NS}}}*"):
        for child in top:
            if child.tag in ("device", f"{{{NS}}}device"):
                key = (child.get("uuid") or "").strip().lower()
                entries.setdefault(key, []).append((child.get("parent") or "", child.get("type") or ""))
    managed: list[tuple[str, str, str]] = []
    for hd in root.iterfind("devices/hostdev"):
        if hd.get("type") != "mdev" or hd.get("managed") != "yes":
            continue
        a = hd.find("source/address")
        u = (a.get("uuid") or "") if a is not None else ""
        if not UUID_RE.fullmatch(u):
            return Expect(1)
        found = entries.get(u.lower(), [])
        if len(found) != 1 or not valid_name(found[0][0]) or not valid_name(found[0][1]):
            return Expect(1)
        if (u.lower(), *found[0]) not in managed:
            managed.append((u.lower(), *found[0]))
    if not managed:
        return Expect(0)
    exhaustible = False
    for u, p, t in managed:
        if u == s.ub:
            return Expect(1, managed)  # the ledger gives it to domain B
        if u == s.ux:
            if (p, t) != ("mtty", "mtty-1"):
                return Expect(1, managed)
            continue  # adopted as it is
        if (p, t) not in REAL_PAIRS:
            return Expect(1, managed)
        exhaustible |= p in EXHAUSTIBLE
    return Expect(None if exhaustible else 0, managed)


# ---- the properties -------------------------------------------------------------------------------------------------

def check_document(s: HostileStage, doc: bytes, op: str) -> None:
    s.check_baseline()
    doc = doc.replace(b"@X", s.ux.encode()).replace(b"@B", s.ub.encode())
    want = oracle(doc, s)
    mark = len(s.fs.journal())
    r = hostile_call(s, op, doc)
    event(f"{op}: exit {r.returncode}" + (f", {len(want.managed)} managed" if r.returncode == 0 else ""))
    if op == "release":
        # nothing of domain A is in the ledger: release must touch nothing, whatever the XML
        assert assert_only_allowed_writes(s, mark) == []
        assert r.returncode == (0 if want.parsed else 1), (r, want)
        s.check_baseline()
        return
    if want.rc is None:
        # honest exhaustion: counted by the core/driver, or NVIDIA's one-type-per-GPU rule (EINVAL from the driver)
        assert r.returncode == 0 or "no free instance" in r.line() or "the driver refused it" in r.line(), r
    else:
        assert r.returncode == want.rc, (r, want)
    writes = assert_only_allowed_writes(s, mark)
    if r.returncode == 1:
        s.check_baseline()  # rolled back: as if it never ran
        return
    devices = s.fs.devices()
    for u, p, t in want.managed:
        assert devices.get(u) == (p, t), (u, devices)
    assert {e["uuid"] for e in writes if e["result"] == "ok"} == {u for u, _, _ in want.managed if u != s.ux}
    # the stop: release leaves the host exactly as it was
    mark = len(s.fs.journal())
    r = hostile_call(s, "release", doc)
    assert r.returncode == 0, r
    assert all(e["op"] == "remove" for e in assert_only_allowed_writes(s, mark))
    s.check_baseline()
