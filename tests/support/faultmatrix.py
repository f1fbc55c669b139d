"""Helpers for the fault tests (issue 6): a "world" around the FUSE fake, the hook run in-process or as libvirt
runs it, mounts that break the hook's surroundings, and the fault-matrix collector that writes
docs/fault-matrix.md from a real run.

Counting is done from what the fake kernel saw (its journal and its device list), never from the hook's own view:

- leaked: a device the hook created (a successful `create` write by the hook) that still exists when the scenario
  is over (after the `release` libvirt sends, and the retry the error line asks for, if any); for NVIDIA's vendor
  interface (kind="nvidia-vf"), a VF the hook set (a successful write of a type id into its
  nvidia/current_vgpu_type) whose current_vgpu_type does not read 0 then.
- wrongly removed: a `remove` write by the hook for a device it must not touch (another domain's, an external
  one), or such a device missing at the end; for VFs, a hook write of 0 to a VF it had not set in the scenario,
  or a VF of another domain or set by someone else whose type changed.
- left, reported: a device the hook could not prove it owns (e.g. its ledger entry is corrupt): left in place and
  named in a one-line error; listed apart, never silently.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fakesysfs.harness import FakeSysfs

from support.asserts import one_line
from support.hookrun import REPO, HookEnv

MATRIX_DOC = REPO / "docs" / "fault-matrix.md"

# The only sysfs files the hook may ever write (paths as the fake sees them, symlinks resolved).
ALLOWED_WRITE = re.compile(
    r"devices/(?:[A-Za-z0-9_.:-]+/)+mdev_supported_types/[A-Za-z0-9_.:-]+/create"
    r"|devices/(?:[A-Za-z0-9_.:-]+/)+[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/remove"
    r"|devices/(?:[A-Za-z0-9_.:-]+/)+[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]/nvidia/current_vgpu_type"
)
VGPU_FILE = "nvidia/current_vgpu_type"


# ---- running the hook ---------------------------------------------------------------------------------------------

@dataclass
class Result:
    returncode: int
    stdout: bytes
    stderr: bytes
    seconds: float

    def line(self) -> str:
        """The one error line's message (asserts.one_line: exactly one line, prefixed, no traceback)."""
        return one_line(self.stderr)

    def ok(self) -> None:
        assert (self.returncode, self.stdout, self.stderr) == (0, b"", b""), self


def inproc(h: HookEnv, domain: str, op: str, sub: str, xml: bytes, **env: str) -> Result:
    """mdev_hooks.hook.main in this process, with the config of `h` (fast; no SIGKILL possible)."""
    from mdev_hooks.hook import main

    saved = {k: os.environ.get(k) for k in ("MDEV_HOOKS_CONFIG", "MDEV_HOOKS_DRY_RUN", *env)}
    os.environ["MDEV_HOOKS_CONFIG"] = str(h.config)
    os.environ.pop("MDEV_HOOKS_DRY_RUN", None)
    os.environ.update(env)
    out, err = io.StringIO(), io.StringIO()
    t0 = time.monotonic()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main([domain, op, sub, "-"], stdin=io.BytesIO(xml))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return Result(rc, out.getvalue().encode(), err.getvalue().encode(), time.monotonic() - t0)


def subproc(h: HookEnv, domain: str, op: str, sub: str, xml: bytes, timeout: float = 60, **env: str) -> Result:
    t0 = time.monotonic()
    r = h.run(domain, op, sub, xml, timeout=timeout, **env)
    return Result(r.returncode, r.stdout, r.stderr, time.monotonic() - t0)


# ---- what the fake kernel saw -------------------------------------------------------------------------------------

def hook_writes(fs: FakeSysfs, since: int = 0) -> list[dict[str, Any]]:
    """Every write() the hook made (not the test's control writes, not external/driver actions)."""
    return [e for e in fs.journal()[since:] if e.get("actor") == "user" and e.get("op") != "control"]


def hook_created(fs: FakeSysfs, since: int = 0) -> set[str]:
    """mdevs (by UUID) the hook created; VFs it set are vf_set()."""
    return {e["uuid"] for e in hook_writes(fs, since) if e["op"] == "create" and e["result"] == "ok" and e["uuid"]}


def hook_removed(fs: FakeSysfs, since: int = 0) -> list[str]:
    return [e["uuid"] for e in hook_writes(fs, since)
            if e["op"] == "remove" and e["result"] == "ok" and not e.get("noop") and e["uuid"]]


def outside_writes(fs: FakeSysfs, since: int = 0) -> list[dict[str, Any]]:
    return [e for e in hook_writes(fs, since)
            if e["op"] not in ("create", "remove") or not ALLOWED_WRITE.fullmatch(e.get("path") or "")]


# NVIDIA's vendor interface: the fake journals a write of a type id into a VF's nvidia/current_vgpu_type as op
# "create" and a write of 0 as op "remove", with parent = the VF. The test sets foreign types through the same file
# (FakeSysfs.write): those writes carry this process's pid, the hook's (a subprocess) never do.

def vf_type(fs: FakeSysfs, vf: str) -> str | None:
    """What the VF's current_vgpu_type reads now ("0": none); None if the VF has no nvidia/ directory (unbound)."""
    try:
        return fs.read(f"bus/pci/devices/{vf}/{VGPU_FILE}").strip()
    except FileNotFoundError:
        return None


def vf_writes(fs: FakeSysfs, since: int = 0) -> list[dict[str, Any]]:
    """Every write the hook (run as a subprocess) made to a VF's current_vgpu_type, whatever its outcome."""
    me = os.getpid()
    return [e for e in hook_writes(fs, since) if (e.get("path") or "").endswith(VGPU_FILE) and e["pid"] != me]


def vf_set(fs: FakeSysfs, since: int = 0) -> set[str]:
    """VFs the hook set: a successful write of a type id."""
    return {e["parent"] for e in vf_writes(fs, since) if e["op"] == "create" and e["result"] == "ok"}


def vf_cleared(fs: FakeSysfs, since: int = 0) -> set[str]:
    """VFs the hook wrote 0 to (tried to clear), whatever the outcome."""
    return {e["parent"] for e in vf_writes(fs, since) if e["op"] == "remove"}


@dataclass
class Tally:
    leaked: set[str]
    wrongly_removed: set[str]
    left_reported: set[str]


def tally(fs: FakeSysfs, protected: dict[str, tuple[str, str]], reported: set[str] = frozenset(),  # type: ignore[assignment]
          since: int = 0) -> Tally:
    present = fs.devices(include_transient=True)
    created = hook_created(fs, since) - set(protected)
    left = created & set(present)
    wrong = {u for u in hook_removed(fs, since) if u in protected}
    wrong |= {u for u, pt in protected.items() if present.get(u) != pt}
    return Tally(leaked=left - reported, wrongly_removed=wrong, left_reported=left & reported)


def vf_tally(fs: FakeSysfs, protected: dict[str, str], since: int = 0) -> Tally:
    """The VF side of a scenario from `since` (the journal length once the background was in place). `protected`:
    {VF: type} of VFs set by another domain or by someone else, which must read the same at the end."""
    made = vf_set(fs, since)
    leaked = {vf for vf in made - set(protected) if vf_type(fs, vf) != "0"}
    wrong = vf_cleared(fs, since) - made
    wrong |= {vf for vf, t in protected.items() if vf_type(fs, vf) != t}
    return Tally(leaked=leaked, wrongly_removed=wrong, left_reported=set())


# ---- breaking the surroundings ------------------------------------------------------------------------------------

def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def _umount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    """A small tmpfs at `path` (created if needed), e.g. options="size=8k,mode=0700"; unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", options, "mdev-hooks-test", str(path))
    try:
        yield path
    finally:
        _umount(path)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """`path` (a directory) made read-only with a bind mount over itself: root cannot write it either."""
    _mount("--bind", str(path), str(path))
    try:
        _mount("-o", "remount,bind,ro", str(path))
        yield path
    finally:
        _umount(path)


# ---- the fault matrix ---------------------------------------------------------------------------------------------

# Every row the fault module must produce: the document is written only when all of them were measured.
EXPECTED_ROWS: list[str] = []


def expect(*names: str) -> None:
    EXPECTED_ROWS.extend(n for n in names if n not in EXPECTED_ROWS)


@dataclass
class Row:
    area: str
    fault: str
    injected: int = 0
    runs: int = 0
    leaked: int = 0
    wrongly_removed: int = 0
    left_reported: int = 0
    outcome: str = ""


@dataclass
class Matrix:
    rows: dict[str, Row] = field(default_factory=dict)

    def record(self, area: str, fault: str, t: Tally, *, injected: int, runs: int, outcome: str) -> None:
        assert fault in EXPECTED_ROWS, f"row {fault!r} missing from EXPECTED_ROWS"
        row = self.rows.setdefault(fault, Row(area, fault))
        row.injected += injected
        row.runs += runs
        row.leaked += len(t.leaked)
        row.wrongly_removed += len(t.wrongly_removed)
        row.left_reported += len(t.left_reported)
        row.outcome = outcome
        # the promise, per scenario: nothing lost, nothing leaked
        assert not t.leaked, f"{fault}: leaked {sorted(t.leaked)}"
        assert not t.wrongly_removed, f"{fault}: wrongly removed {sorted(t.wrongly_removed)}"

    def complete(self) -> bool:
        return set(EXPECTED_ROWS) <= set(self.rows)

    def render(self) -> str:
        head = (
            "# Fault matrix\n\n"
            "GENERATED by `python3 -m pytest tests/test_faults_mdev_*.py tests/test_faults_nvidia_vf.py`\n"
            "(tests/support/faultmatrix.py) from a real run against the FUSE fake of mdev sysfs (and of NVIDIA's\n"
            "vendor vGPU files); do not edit by hand. Written only when every row below was measured and none leaked\n"
            "or wrongly removed a device or a VF's vGPU type.\n\n"
            "- *injected*: faults injected (kills, failed writes, unbound VFs, broken files or mounts, held locks).\n"
            "- *runs*: hook invocations (prepare/release/retries) in the scenarios of the row.\n"
            "- *leaked*: devices the hook created that still existed when the scenario was over (after the\n"
            "  `release` libvirt sends and the retry the error line asks for); area nvidia-vf: VFs the hook set\n"
            "  (a type id written into nvidia/current_vgpu_type) whose current_vgpu_type did not read 0 then.\n"
            "- *wrongly removed*: `remove` writes for, or loss of, a device of another domain or an external one\n"
            "  (every scenario has both on the same parents); area nvidia-vf: writes of 0 to a VF the hook had not\n"
            "  set in the scenario, or a changed type on a VF of another domain or set by someone else (every\n"
            "  scenario has both on the same GPU).\n"
            "- *left, reported*: devices the hook could not prove it owns, left in place and named in its error.\n\n"
            "| area | fault | injected | runs | leaked | wrongly removed | left, reported | outcome |\n"
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |\n"
        )
        body = "".join(
            f"| {r.area} | {r.fault} | {r.injected} | {r.runs} | {r.leaked} | {r.wrongly_removed} | "
            f"{r.left_reported} | {r.outcome} |\n"
            for r in (self.rows[name] for name in EXPECTED_ROWS)
        )
        total = Row("", "", sum(r.injected for r in self.rows.values()), sum(r.runs for r in self.rows.values()),
                    sum(r.leaked for r in self.rows.values()), sum(r.wrongly_removed for r in self.rows.values()),
                    sum(r.left_reported for r in self.rows.values()))
        foot = (f"| **total** | {len(self.rows)} faults | {total.injected} | {total.runs} | {total.leaked} | "
                f"{total.wrongly_removed} | {total.left_reported} | |\n")
        return head + body + foot

    def write(self, path: Path = MATRIX_DOC) -> bool:
        if not self.complete() or any(r.leaked or r.wrongly_removed for r in self.rows.values()):
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".md.tmp")
        tmp.write_text(self.render())
        tmp.replace(path)
        return True


# ---- what every fault scenario shares -------------------------------------------------------------------------
CONFIG = "lock_timeout = 3\nremove_timeout = 2\nnvidia_release_wait = 1\n"
KILLED = -signal.SIGKILL


def read_claims(h: HookEnv) -> dict[str, dict[str, Any]]:
    """The ledger as files: {mdev or VF: claim or {"corrupt": text}} (temp files left out)."""
    out: dict[str, dict[str, Any]] = {}
    if not h.state_dir.is_dir():
        return out
    for p in h.state_dir.iterdir():
        if p.name.endswith(".json") and not p.name.startswith("."):
            try:
                out[p.name[:-5]] = json.loads(p.read_text())
            except ValueError:
                out[p.name[:-5]] = {"corrupt": p.read_text()}
    return out


MATRIX = Matrix()  # one matrix for every fault module; conftest's `matrix` fixture writes it at the end
