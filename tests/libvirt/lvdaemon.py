"""The libvirt tier's commands and logs: virsh and scripts/libvirtd-ctl as subprocesses, the hook's JSON log, and
libvirtd's own debug log of the hook calls (virt-admin filters, saved and restored).

Invariant: everything goes through the real system daemon's tools (virsh, virt-admin, libvirtd-ctl); no libvirt
API bindings, so the tier sees what an admin sees.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CTL = REPO / "scripts" / "libvirtd-ctl"
URI = "qemu:///system"


@dataclass(frozen=True)
class Run:
    argv: list[str]
    rc: int
    stdout: str
    stderr: str
    seconds: float

    def __str__(self) -> str:
        return (f"$ {' '.join(self.argv)}\nrc={self.rc} ({self.seconds:.2f}s)\n"
                f"stdout={self.stdout!r}\nstderr={self.stderr!r}")



def run(argv: Sequence[str], timeout: float = 120, stdin: str | None = None) -> Run:
    t0 = time.monotonic()
    p = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, input=stdin, check=False)
    return Run(list(argv), p.returncode, p.stdout, p.stderr, time.monotonic() - t0)


def virsh(*args: str, timeout: float = 120) -> Run:
    return run(["virsh", "-c", URI, *args], timeout=timeout)


def virsh_ok(*args: str, timeout: float = 120) -> Run:
    r = virsh(*args, timeout=timeout)
    assert r.rc == 0, str(r)
    return r


@dataclass
class Started:
    argv: list[str]
    proc: subprocess.Popen[str]
    t0: float

    def poll(self) -> int | None:
        return self.proc.poll()


def virsh_start_async(name: str) -> Started:
    argv = ["virsh", "-c", URI, "start", name]
    t0 = time.monotonic()
    return Started(argv, subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), t0)


def finish(s: Started, timeout: float = 120) -> Run:
    out, err = s.proc.communicate(timeout=timeout)
    return Run(s.argv, s.proc.returncode, out, err, time.monotonic() - s.t0)


def ctl(verb: str) -> Run:
    return run([str(CTL), verb], timeout=90)


class HookLog:
    """The hook's JSON-lines log; `mark()` then `since()` gives what one scenario wrote."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def all(self) -> list[dict[str, Any]]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def mark(self) -> int:
        return len(self.all())

    def since(self, mark: int, event: str | None = None, domain: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.all()[mark:]
                if (event is None or e.get("event") == event) and (domain is None or e.get("domain") == domain)]

    def calls(self, mark: int, domain: str) -> list[str]:
        """`op subop` of every hook.invoked for domain since mark, in order."""
        return [f"{e.get('op')} {e.get('subop', '?')}" for e in self.since(mark, "hook.invoked", domain)]

    def events(self, mark: int, domain: str) -> list[str]:
        """`op event` of everything the hook logged for domain since mark, in order."""
        return [f"{e.get('op')} {e['event']}" for e in self.since(mark, domain=domain)]

    def acting_calls(self, mark: int, domain: str) -> list[str]:
        """The ops that act on mdevs (prepare, release) among the hook.invoked for domain since mark."""
        return [e["op"] for e in self.since(mark, "hook.invoked", domain) if e.get("op") in ("prepare", "release")]


@dataclass(frozen=True)
class HookCall:
    """One hook run in libvirtd's log: when (seconds since the epoch), which script, op, subop, extra."""

    time: float
    hook: Path
    op: str
    subop: str
    extra: str


class DaemonLog:
    """libvirtd's own record of hook activity: `virt-admin` turns on debug logging of util.hook into a file of
    ours while the daemon runs (no restart, no libvirtd.conf change). It shows every rescan of the hooks
    directory (virHookCheck) and every hook run (`Calling hook PATH id=DOMAIN op=OP subop=SUBOP extra=X`)."""

    CALL = re.compile(r"Calling hook (\S+) id=(\S+) op=(\S+) subop=(\S+) extra=(\S*)")
    # "2026-11-25 18:41:32.288+0000: 5983: debug : virRunScript:279 : Calling hook PATH id=..."
    TIMED_CALL = re.compile(r"^(\S+ \S+): \d+: debug : \S+ : " + CALL.pattern, re.MULTILINE)

    def __init__(self, path: Path) -> None:
        self.path = path
        self._saved: tuple[str, str] | None = None
        self.started = False  # daemon_session started the daemon (and will stop it)

    @staticmethod
    def _setting(what: str) -> str:
        r = run(["virt-admin", f"daemon-log-{what}"], timeout=30)
        assert r.rc == 0, str(r)
        return r.stdout.split(":", 1)[1].strip()

    @staticmethod
    def unwrap_filters(shown: str) -> str:
        """The filters as they were set: libvirt shows each one's match as `*match*` (it adds the stars when it
        parses a filter), so setting what it shows would add two more stars at every save and restore."""
        return " ".join(re.sub(r"^(\d+:\+?)\*(.*)\*$", r"\1\2", f) for f in shown.split())

    def enable(self) -> None:
        self._saved = (self.unwrap_filters(self._setting("filters")), self._setting("outputs"))
        for argv in (["daemon-log-filters", "1:util.hook"],
                     ["daemon-log-outputs", f"{self._saved[1]} 1:file:{self.path}".strip()]):
            r = run(["virt-admin", *argv], timeout=30)
            assert r.rc == 0, str(r)

    def restore(self) -> None:
        if self._saved is not None:
            run(["virt-admin", "daemon-log-filters", self._saved[0]], timeout=30)
            run(["virt-admin", "daemon-log-outputs", self._saved[1]], timeout=30)

    def mark(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def text(self, mark: int) -> str:
        try:
            with self.path.open("rb") as f:
                f.seek(mark)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def calls(self, mark: int, domain: str, hook: Path | None = None) -> list[str]:
        """`op subop` of every hook run libvirtd made for domain since mark (of `hook` only, if given)."""
        return [f"{m[3]} {m[4]}" for m in self.CALL.finditer(self.text(mark))
                if m[2] == domain and (hook is None or m[1] == str(hook))]

    def timed_calls(self, mark: int, domain: str) -> list[HookCall]:
        """Every hook run libvirtd made for domain since mark, with libvirtd's timestamp of it."""
        return [HookCall(datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S.%f%z").timestamp(), Path(m[2]), m[4], m[5], m[6])
                for m in self.TIMED_CALL.finditer(self.text(mark)) if m[3] == domain]

    def reload(self, timeout: float = 15.0) -> str:
        """SIGHUP libvirtd and wait until its rescan of the hooks directory has passed the qemu driver (the
        reload runs in a thread of its own). Returns what it found for qemu ("Found hook script ..." or not)."""
        mark = self.mark()
        r = ctl("reload")
        assert r.rc == 0, str(r)
        deadline = time.monotonic() + timeout
        while True:
            text = self.text(mark)
            checks = [m[1] for m in re.finditer(r"virHookCheck:\d+ : (.*)", text)]
            qemu = next((i for i, c in enumerate(checks) if "/hooks/qemu" in c), None)
            # the drivers are scanned in order: a line about lxc means qemu's verdict is in
            if qemu is not None and any("/hooks/lxc" in c for c in checks[qemu:]):
                return "; ".join(c for c in checks[qemu:] if "/hooks/qemu" in c)
            assert time.monotonic() < deadline, f"libvirtd did not rescan its hooks within {timeout}s:\n{text}"
            time.sleep(0.02)


_daemon_log: DaemonLog | None = None


def daemon_log() -> DaemonLog:
    assert _daemon_log is not None, "the libvirtd session fixture enables the daemon log"
    return _daemon_log


def set_daemon_log(log: DaemonLog | None) -> None:
    global _daemon_log
    _daemon_log = log


def reload_daemon() -> str:
    """SIGHUP, waited for (see DaemonLog.reload); with no daemon log (benchmark teardown) just SIGHUP."""
    if _daemon_log is None:
        r = ctl("reload")
        assert r.rc == 0, str(r)
        return ""
    return _daemon_log.reload()
