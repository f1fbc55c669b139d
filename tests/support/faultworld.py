"""The shapes the fault tests share (issue 6): the mdev world every mdev scenario runs in, its factory (conftest's
`mdev_world` fixture), and the kill points of the crash tests, spelled once for both kinds.

Every mdev scenario runs next to a device of another domain and an external device on the same parents and ends
with what libvirt would do next (`release`); the fake kernel's journal and device list then say whether anything
leaked or was wrongly removed; the rows go into docs/fault-matrix.md (conftest `matrix`).

Invariant: a scenario's verdict comes from the fake kernel's journal and device list and the ledger files, never
from the hook's own view; the matrix rows built here are exactly those docs/fault-matrix.md lists.
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fakesysfs.harness import FakeSysfs

from support.faultmatrix import (
    CONFIG,
    Result,
    Tally,
    hook_created,
    hook_writes,
    inproc,
    outside_writes,
    read_claims,
    subproc,
    tally,
)
from support.hookrun import HookEnv, mdev_xml
from support.ids import DOM_A, DOM_B, GVT, uid


@dataclass
class MdevWorld:
    """Domain A (the one we break): 3 mdevs on 2 parents; domain B's device and an external one on the same
    parents (`protected`); the hook run in-process (call) or as libvirt runs it (proc)."""

    fs: FakeSysfs
    h: HookEnv
    stack: ExitStack
    a: list[tuple[str, str, str]]  # domain A (the one we break): 3 devices on 2 parents
    protected: dict[str, tuple[str, str]] = field(default_factory=dict)
    xml_b: bytes = b""
    ub: str = ""  # domain B's device
    mark: int = 0  # journal length once the background is in place
    runs: int = 0

    @property
    def xml_a(self) -> bytes:
        return mdev_xml("vmA", DOM_A, self.a)

    @property
    def uuids_a(self) -> list[str]:
        return [u for u, _, _ in self.a]

    def call(self, op: str, xml: bytes | None = None, name: str = "vmA", **env: str) -> Result:
        """The hook in-process (fast)."""
        self.runs += 1
        sub = "begin" if op in ("prepare", "start", "started", "migrate", "restore") else "end"
        return inproc(self.h, name, op, sub, self.xml_a if xml is None else xml, **env)

    def proc(self, op: str, xml: bytes | None = None, name: str = "vmA", **env: str) -> Result:
        """The hook as libvirt runs it (a subprocess with a scrubbed environment)."""
        self.runs += 1
        sub = "begin" if op == "prepare" else "end"
        return subproc(self.h, name, op, sub, self.xml_a if xml is None else xml, **env)

    def claims(self) -> dict[str, dict[str, Any]]:
        return read_claims(self.h)

    def claims_of_a(self) -> list[str]:
        return sorted(u for u, c in self.claims().items() if c.get("domain_uuid") == DOM_A)

    def writes(self) -> list[dict[str, Any]]:
        return hook_writes(self.fs, self.mark)

    def created(self) -> set[str]:
        return hook_created(self.fs, self.mark)

    def tally(self, reported: set[str] = frozenset()) -> Tally:  # type: ignore[assignment]
        assert outside_writes(self.fs) == []
        return tally(self.fs, self.protected, reported)

    def assert_clean(self) -> None:
        """Domain A has nothing left (devices, claims); B's device and the external one are intact."""
        present = self.fs.devices(include_transient=True)
        assert not set(self.uuids_a) & set(present), present
        assert self.claims_of_a() == []
        for u, pt in self.protected.items():
            assert present.get(u) == pt, (u, present)
        if self.ub:
            assert self.claims()[self.ub]["domain_uuid"] == DOM_B  # B's claim untouched

    def locks_free(self) -> None:
        """flock dies with its holder: every lock file can be taken at once, without waiting."""
        for p in self.h.lock_dir.glob("*.lock"):
            st = os.lstat(p)
            assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, (p, oct(st.st_mode))
            fd = os.open(p, os.O_RDWR | os.O_NOFOLLOW)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            finally:
                os.close(fd)


def make_world(fakesysfs: Callable[..., FakeSysfs], tmp_path: Path, stacks: ExitStack,
               before: Callable[[HookEnv, ExitStack], None] | None = None, background: bool = True) -> MdevWorld:
    """Mount the fake (mtty, GVT-g, T4), write the config, let `before` break the surroundings, then put a device
    of domain B and an external device on the parents A uses. `stacks` closes what `before` set up."""
    fs = fakesysfs(["mtty-sample", "intel-gvtg", "nvidia-tesla-t4"])
    (tmp_path / "hook").mkdir(exist_ok=True)
    h = HookEnv(tmp_path / "hook", fs.root, CONFIG)
    stack = stacks.enter_context(ExitStack())
    if before is not None:
        before(h, stack)
    a = [(uid(), "mtty", "mtty-2"), (uid(), GVT, "i915-GVTg_V5_4"), (uid(), "mtty", "mtty-1")]
    w = MdevWorld(fs, h, stack, a=a)
    if background:
        ux, ub = uid(), uid()
        fs.create_external("mtty", "mtty-1", ux)
        w.xml_b = mdev_xml("vmB", DOM_B, [(ub, "mtty", "mtty-2")])
        w.call("prepare", w.xml_b, name="vmB").ok()
        w.protected = {ux: ("mtty", "mtty-1"), ub: ("mtty", "mtty-2")}
        w.ub = ub
    w.mark = len(fs.journal())
    w.runs = 0
    return w


def no_writes_and_clean(w: MdevWorld) -> None:
    """The hook wrote nothing, A has no claim, and everything else is as it was."""
    assert w.writes() == []
    assert w.claims_of_a() == []
    w.assert_clean()


# ---- the kill points of the crash tests (mdev and nvidia_vf) -----------------------------------------------------

Kill = tuple[str, int, str]  # (MDEV_HOOKS_TEST_KILL_AT point, how many of A's devices are set when it fires, row)


@dataclass(frozen=True)
class KillWords:
    """How a kind's matrix rows name its steps; `devices`: how many devices domain A has."""

    prefix: str  # before every row ("" for mdev)
    locks: str  # what prepare and release hold
    write: str  # the step that sets a device
    verify: str  # the step that reads it back
    clear: str  # the step that unsets it
    devices: int


def _nth(n: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}[n]


def prepare_kills(k: KillWords) -> list[Kill]:
    """Every step of the 1st device, the 2nd's intent and write, the last's verify and ledger update."""
    n, p = k.devices, k.prefix
    return [
        ("locked", 0, f"{p}SIGKILL in prepare, holding {k.locks}"),
        ("intent_written", 0, f"{p}SIGKILL in prepare, after the 1st ledger intent"),
        ("created", 1, f"{p}SIGKILL in prepare, after the 1st {k.write}"),
        ("verified", 1, f"{p}SIGKILL in prepare, after the 1st {k.verify}"),
        ("ledger_updated", 1, f"{p}SIGKILL in prepare, after the 1st ledger update"),
        ("intent_written:2", 1, f"{p}SIGKILL in prepare, after the 2nd ledger intent"),
        ("created:2", 2, f"{p}SIGKILL in prepare, after the 2nd {k.write}"),
        (f"verified:{n}", n, f"{p}SIGKILL in prepare, after the {_nth(n)} {k.verify}"),
        (f"ledger_updated:{n}", n, f"{p}SIGKILL in prepare, after the last ledger update"),
    ]


def release_kills(k: KillWords) -> list[Kill]:
    """Release killed holding the locks, after its 1st and after its 2nd clear."""
    n, p = k.devices, k.prefix
    return [
        ("release_locked", n, f"{p}SIGKILL in release, holding {k.locks}"),
        ("removed", n - 1, f"{p}SIGKILL in release, after the 1st {k.clear}"),
        ("removed:2", n - 2, f"{p}SIGKILL in release, after the 2nd {k.clear}"),
    ]


MDEV_KILLS = KillWords("", "the parent locks", "create", "verify", "remove", 3)
VF_KILLS = KillWords("VF: ", "the PF lock", "type write", "read-back", "clear", 2)
