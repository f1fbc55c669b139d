#!/usr/bin/env python3
"""What the hook costs at every VM operation: no-op path, managed path, parallel parents, scale, memory.

    python3 benchmarks/run.py [--reps 30] [--quick] [--keep]

Measures the hook the way an admin installs it: a venv (cached under /var/tmp/mdev-hooks-bench, rebuilt when the
sources change) with mdev-hooks installed NON-editable plus its dependencies, and the launcher written by that
venv's `mdev-hooks install` (`#!<venv>/bin/python3 -I`), executed directly as libvirt does (execve, scrubbed
environment, XML on stdin). An editable install's path finder and this machine's site-packages .pth files would
add tens of ms to every interpreter start, the baselines included, and hide what the hook itself costs.
Baselines run on the same venv interpreter with the same flags: `python3 -I -c pass` (interpreter start) and
`python3 -I -c "import lxml.etree, structlog, filelock"` (the import floor of the managed path).

sysfs is the FUSE fake (tests/fakesysfs, 8 synthetic parents synth0..7 with 32 instances of synth-1), state and
lock dirs are on tmpfs (/dev/shm, as /run is on a host), the log file on disk. Compared commands alternate run by
run (hyperfine-like interleaving, order rotated every run) so drift on this shared machine hits all alike;
figures are medians. Not a pass/fail test: tests/test_benchmarks_smoke.py only checks that this runs without
leaks.

Last line (machine-readable):
noop_ratio=… big_noop_ratio=… managed_ratio=… parallel_ratio=… serial_ratio=… leaks=…
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from fakesysfs.harness import FakeSysfs  # noqa: E402

CACHE = Path(os.environ.get("MDEV_HOOKS_BENCH_CACHE", "/var/tmp/mdev-hooks-bench"))
NS = "urn:mdev-hooks:domain:1"
SCRUBBED_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TYPE = "synth-1"


def say(*a: object) -> None:
    print(*a, flush=True)


# ---- the installed hook -----------------------------------------------------------------------------------------


def _source_files() -> list[Path]:
    package = sorted(p for p in (REPO / "mdev_hooks").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return [REPO / "pyproject.toml", REPO / "README.md", *package]


def build_venv(python: str) -> Path:
    """A venv with mdev-hooks installed non-editable (pip install of a copy of the sources), cached by content."""
    h = hashlib.sha256(os.path.realpath(python).encode())
    for f in _source_files():
        h.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes() + b"\0")
    venv = CACHE / f"venv-{h.hexdigest()[:16]}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (venv / ".complete").exists():
            (venv / ".complete").touch()
            return venv
        for old in CACHE.glob("venv-*"):  # venvs of older sources, unused for an hour, go
            done = old / ".complete"
            if not done.exists() or time.time() - done.stat().st_mtime > 3600:
                shutil.rmtree(old, ignore_errors=True)
        say(f"# building {venv} (python -m venv + pip install of the sources, non-editable) ...")
        with tempfile.TemporaryDirectory(prefix="mdev-hooks-src.") as stage:
            for f in _source_files():
                dest = Path(stage) / f.relative_to(REPO)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, dest)
            subprocess.run([python, "-m", "venv", str(venv)], check=True)
            pip = subprocess.run([str(venv / "bin" / "pip"), "install", "--no-input", "-q", stage],
                                 capture_output=True, text=True)
            if pip.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                sys.exit(f"pip install failed:\n{pip.stdout}{pip.stderr}")
        (venv / ".complete").touch()
    return venv


# ---- XML ----------------------------------------------------------------------------------------------------------


def _hostdev(u: str, managed: bool, slot: int) -> str:
    return (f"    <hostdev mode='subsystem' type='mdev' managed='{'yes' if managed else 'no'}' model='vfio-pci' "
            f"display='off'>\n      <source>\n        <address uuid='{u}'/>\n      </source>\n"
            f"      <address type='pci' domain='0x0000' bus='0x01' slot='{slot:#04x}' function='0x0'/>\n"
            f"    </hostdev>\n")


def _disk(i: int) -> str:
    dev = "vd" + "".join(chr(97 + d) for d in _digits(i))
    return (f"    <disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2' cache='none' io='native' "
            f"discard='unmap'/>\n      <source file='/var/lib/libvirt/images/bench-{i:04d}.qcow2' index='{i + 1}'/>\n"
            f"      <backingStore/>\n      <target dev='{dev}' bus='virtio'/>\n"
            f"      <serial>bench-disk-{i:04d}</serial>\n"
            f"      <alias name='virtio-disk{i}'/>\n      <address type='pci' domain='0x0000' bus='{2 + i // 32:#04x}' "
            f"slot='{i % 32:#04x}' function='0x0'/>\n    </disk>\n")


def _nic(i: int) -> str:
    return (f"    <interface type='network'>\n      <mac address='52:54:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:"
            f"{i & 255:02x}'/>\n      <source network='default' portid='{uuidlib.UUID(int=i)}' bridge='virbr0'/>\n"
            f"      <target dev='vnet{i}'/>\n      <model type='virtio'/>\n      <alias name='net{i}'/>\n"
            f"      <address type='pci' domain='0x0000' bus='{0x40 + i // 32:#04x}' slot='{i % 32:#04x}' "
            f"function='0x0'/>\n    </interface>\n")


def _digits(i: int) -> list[int]:
    out = [i % 26]
    i //= 26
    while i:
        i -= 1
        out.insert(0, i % 26)
        i //= 26
    return out


def domain_xml(name: str, dom_uuid: str, managed: Sequence[tuple[str, str]] = (), unmanaged: Sequence[str] = (),
               fill_to: int = 0) -> bytes:
    """A libvirt-9.0-like live XML (as `prepare begin` gets it); managed: [(mdev uuid, parent)] of type synth-1.

    fill_to: add disks and NICs (alternating) until the document is at least that many bytes."""
    meta = ""
    if managed:
        meta = ("  <metadata>\n    <mdev:mdevs xmlns:mdev=\"" + NS + "\">\n" + "".join(
            f"      <mdev:device uuid=\"{u}\" parent=\"{p}\" type=\"{TYPE}\"/>\n" for u, p in managed)
            + "    </mdev:mdevs>\n  </metadata>\n")
    head = f"""<domain type='kvm' id='7'>
  <name>{name}</name>
  <uuid>{dom_uuid}</uuid>
{meta}  <memory unit='KiB'>4194304</memory>
  <currentMemory unit='KiB'>4194304</currentMemory>
  <vcpu placement='static'>4</vcpu>
  <resource>
    <partition>/machine</partition>
  </resource>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <boot dev='hd'/>
  </os>
  <features>
    <acpi/>
    <apic/>
  </features>
  <cpu mode='host-passthrough' check='none' migratable='on'/>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
"""
    body = [_hostdev(u, True, 1 + i) for i, (u, _) in enumerate(managed)]
    body += [_hostdev(u, False, 0x10 + i) for i, u in enumerate(unmanaged)]
    tail = """    <controller type='pci' index='0' model='pcie-root'>
      <alias name='pcie.0'/>
    </controller>
    <input type='keyboard' bus='ps2'/>
    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'>
      <listen type='address' address='127.0.0.1'/>
    </graphics>
    <video>
      <model type='virtio' heads='1' primary='yes'/>
    </video>
    <memballoon model='virtio'/>
  </devices>
  <seclabel type='dynamic' model='dac' relabel='yes'/>
</domain>
"""
    size = len(head) + sum(map(len, body)) + len(tail)
    fill: list[str] = []
    i = 0
    while size < fill_to:
        item = _disk(i // 2) if i % 2 == 0 else _nic(i // 2)
        fill.append(item)
        size += len(item)
        i += 1
    # devices the hook cares about go last: a scanner has to walk the whole document to find them
    return (head + "".join(fill) + "".join(body) + tail).encode()


def dom_uuid(i: int) -> str:
    return str(uuidlib.UUID(int=0xB0000 + i))


def mdev_uuid(i: int) -> str:
    return str(uuidlib.UUID(int=(0x6D646576 << 64) + i))


# ---- running processes ----------------------------------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    maxrss_kib: int
    rc: int
    cpu: float = 0.0  # user + system seconds


# The hooks are started by a small helper process (python -I -S), not by this one, and with fork(), not
# posix_spawn()/vfork(): a child's ru_maxrss keeps the high-water mark of the address space it ran in before
# exec, which with vfork is the parent's whole RSS, with fork the (copied) anonymous memory of a small process.
# So every peak RSS below is max(the hook's own, the helper's floor), the floor (/bin/true) is shown, and it is
# below `python3 -I -c pass`. The helper also times each child from fork to wait4, with nothing of ours between.
SPAWNER = r"""
import json, os, sys, time
env = json.loads(sys.stdin.readline())
W = os.O_WRONLY | os.O_CREAT


def start(argv, inp, outp, errp):
    pid = os.fork()
    if pid == 0:
        try:
            for fd, path, flags in ((0, inp, os.O_RDONLY), (1, outp, W | os.O_APPEND), (2, errp, W | os.O_TRUNC)):
                os.dup2(os.open(path, flags, 0o600), fd)
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    return pid


for line in sys.stdin:
    jobs = json.loads(line)
    started = {}
    t_all = time.perf_counter()
    for k, job in enumerate(jobs):
        t0 = time.perf_counter()
        started[start(*job)] = (k, t0)
    res = [None] * len(jobs)
    while started:
        pid, status, ru = os.wait4(-1, 0)
        k, t0 = started.pop(pid)
        res[k] = [time.perf_counter() - t0, ru.ru_maxrss, os.waitstatus_to_exitcode(status), ru.ru_utime + ru.ru_stime]
    sys.stdout.write(json.dumps([time.perf_counter() - t_all, res]) + "\n")
    sys.stdout.flush()
"""


class Runner:
    """Runs commands through SPAWNER: each child's wall time (spawn to reaped) and peak RSS; stdin from a file."""

    def __init__(self, work: Path, env: dict[str, str], python: str) -> None:
        self.stdout = work / "stdout.all"  # everything any hook ever wrote to stdout: must stay empty
        self.stderr_dir = work / "stderr"
        self.stderr_dir.mkdir()
        self.xml_dir = work / "xml"
        self.xml_dir.mkdir()
        self._xml: dict[bytes, str] = {}
        self._n = 0
        self.proc = subprocess.Popen([python, "-I", "-S", "-c", SPAWNER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd="/")
        self._send(env)

    def _send(self, obj: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()

    def rss_floor_kib(self) -> int:
        return self.run(["/bin/true"]).maxrss_kib

    def xml_file(self, xml: bytes) -> str:
        path = self._xml.get(xml)
        if path is None:
            path = str(self.xml_dir / f"{len(self._xml)}.xml")
            Path(path).write_bytes(xml)
            self._xml[xml] = path
        return path

    def run_many(self, jobs: Sequence[tuple[Sequence[str], bytes]], want_rc: int = 0) -> tuple[float, list[Run]]:
        """Start every job at once; (wall time until the last one exits, each one's Run)."""
        specs: list[tuple[list[str], str, str, str]] = []
        for argv, xml in jobs:
            self._n += 1
            specs.append((list(argv), self.xml_file(xml), str(self.stdout), str(self.stderr_dir / str(self._n % 64))))
        self._send(specs)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the spawner died (exit {self.proc.wait()})")
        wall, res = json.loads(line)
        runs = [Run(*r) for r in res]
        for (argv, *_), r, spec in zip(jobs, runs, specs):
            if r.rc != want_rc:
                text = Path(spec[3]).read_text(errors="replace").strip()
                raise SystemExit(f"{' '.join(argv[1:4])}: exit {r.rc}, expected {want_rc}: {text}")
        return wall, runs

    def run(self, argv: Sequence[str], xml: bytes = b"", want_rc: int = 0) -> Run:
        return self.run_many([(argv, xml)], want_rc)[1][0]

    def stdout_bytes(self) -> int:
        return self.stdout.stat().st_size if self.stdout.exists() else 0


def interleave(runner: Runner, cases: dict[str, Callable[[], Run]], reps: int) -> dict[str, list[Run]]:
    """Run every case once per rep, the order rotated every rep (hyperfine-like alternation)."""
    names = list(cases)
    out: dict[str, list[Run]] = {n: [] for n in names}
    for rep in range(reps):
        k = rep % len(names)
        order = names[k:] + names[:k]
        if rep % 2:
            order.reverse()
        for n in order:
            out[n].append(cases[n]())
    return out


def med_ms(runs: Sequence[Run]) -> float:
    return statistics.median(r.seconds for r in runs) * 1000


def med_rss(runs: Sequence[Run]) -> int:
    return int(statistics.median(r.maxrss_kib for r in runs))


def med_cpu(runs: Sequence[Run]) -> float:
    return statistics.median(r.cpu for r in runs) * 1000


def row(label: str, runs: Sequence[Run], base: float, width: int = 58) -> str:
    return (f"  {label:<{width}} {med_ms(runs):8.2f} {med_ms(runs) / base:6.2f}x {med_cpu(runs):8.2f} "
            f"{med_rss(runs):7d}")


def peak_inflight(journal: list[dict[str, Any]], since: float) -> int:
    """The most user creates the fake was running at one time, among those started after `since`."""
    events: list[tuple[float, int]] = []
    for r in journal:
        if r.get("op") == "create" and r.get("actor") == "user" and r.get("t1") and r["t0"] >= since:
            events += [(r["t0"], 1), (r["t1"], -1)]
    peak = now = 0
    for _, step in sorted(events):
        now += step
        peak = max(peak, now)
    return peak


def linear_fit(points: Sequence[tuple[float, float]]) -> tuple[float, float, float]:
    """Least squares y = a + b x: (a, b, R^2)."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    b = sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0
    a = my - b * mx
    ss = sum((y - my) ** 2 for _, y in points)
    res = sum((y - a - b * x) ** 2 for x, y in points)
    return a, b, 1 - res / ss if ss else 1.0


def pct(values: Sequence[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


# ---- the benchmark --------------------------------------------------------------------------------------------------


@dataclass
class Bench:
    venv: Path
    hook: str
    fs: FakeSysfs
    runner: Runner
    state_dir: Path
    reps: int
    quick: bool
    result: dict[str, float] = field(default_factory=dict)
    leaks: int = 0

    @property
    def py(self) -> str:
        return str(self.venv / "bin" / "python3")

    def hook_argv(self, name: str, op: str, sub: str) -> list[str]:
        return [self.hook, name, op, sub, "-"]

    def call(self, name: str, op: str, sub: str, xml: bytes) -> Run:
        return self.runner.run(self.hook_argv(name, op, sub), xml)

    def caller(self, name: str, op: str, sub: str, xml: bytes) -> Callable[[], Run]:
        return lambda: self.call(name, op, sub, xml)

    def check_leaks(self, what: str) -> int:
        devs = self.fs.devices(include_transient=True)
        ledger = [p.name for p in self.state_dir.iterdir()] if self.state_dir.exists() else []
        n = len(devs) + len(ledger)
        if n:
            say(f"# LEAK after {what}: devices {sorted(devs)} ledger {ledger}")
            for u in devs:  # clean up so the next section starts from zero
                with contextlib.suppress(OSError):
                    self.fs.write(self.fs.remove_path(u), "1")
            for p in ledger:
                (self.state_dir / p).unlink()
        self.leaks += n
        return n

    # -- 1 + 5: no-op path ------------------------------------------------------------------------------------------
    def noop(self) -> None:
        managed = domain_xml("vm-managed", dom_uuid(1), [(mdev_uuid(1), "synth0")])
        plain = (REPO / "tests" / "fixtures" / "libvirt-9.0" / "plain.prepare.xml").read_bytes()
        unmanaged = domain_xml("vm-own-mdev", dom_uuid(2), unmanaged=[mdev_uuid(2)])
        big_plain = domain_xml("vm-big", dom_uuid(3), fill_to=1 << 20)
        big_unmanaged = domain_xml("vm-big-own-mdev", dom_uuid(4), unmanaged=[mdev_uuid(4)], fill_to=1 << 20)
        base = [self.py, "-I", "-c", "pass"]
        small = {
            "plain: prepare begin": ("plain", "prepare", "begin", plain),
            "plain: release end": ("plain", "release", "end", plain),
            "managed: start begin": ("vm-managed", "start", "begin", managed),
            "managed: stopped end": ("vm-managed", "stopped", "end", managed),
            "own mdev (managed='no'): prepare begin": ("vm-own-mdev", "prepare", "begin", unmanaged),
            "own mdev (managed='no'): release end": ("vm-own-mdev", "release", "end", unmanaged),
        }
        big = {
            f"1 MiB plain ({big_plain.count(b'<disk ')} disks+{big_plain.count(b'<interface ')} NICs): prepare begin":
                ("vm-big", "prepare", "begin", big_plain),
            "1 MiB + own mdev: prepare begin": ("vm-big-own-mdev", "prepare", "begin", big_unmanaged),
            "1 MiB + own mdev: release end": ("vm-big-own-mdev", "release", "end", big_unmanaged),
        }
        cases: dict[str, Callable[[], Run]] = {"python3 -I -c pass": lambda: self.runner.run(base)}
        for label, (n, op, sub, xml) in {**small, **big}.items():
            cases[label] = self.caller(n, op, sub, xml)
        self.runner.run(base)  # warm the page cache
        runs = interleave(self.runner, cases, self.reps)
        b = med_ms(runs["python3 -I -c pass"])
        say(f"\n## 1. no-op path (median of {self.reps}, interleaved){'':<10}wall ms   ratio   CPU ms  RSS KiB")
        for label, rs in runs.items():
            say(row(label, rs, b))
        self.result["noop_ratio"] = max(med_ms(runs[k]) for k in small) / b
        self.result["big_noop_ratio"] = max(med_ms(runs[k]) for k in big) / b
        self.result["noop_rss_kib"] = max(med_rss(runs[k]) for k in small)
        self.result["base_rss_kib"] = med_rss(runs["python3 -I -c pass"])
        bc = med_cpu(runs["python3 -I -c pass"])
        say(f"  worst small no-op {self.result['noop_ratio']:.2f}x (target <= 1.3), worst 1 MiB no-op "
            f"{self.result['big_noop_ratio']:.2f}x (target <= 1.5); in CPU time (less sensitive to other load): "
            f"{max(med_cpu(runs[k]) for k in small) / bc:.2f}x and {max(med_cpu(runs[k]) for k in big) / bc:.2f}x")
        self.check_leaks("no-op")

    # -- 2 + 5: managed path ----------------------------------------------------------------------------------------
    def managed(self) -> None:
        xml = domain_xml("vm-managed", dom_uuid(10), [(mdev_uuid(10), "synth0")])
        floor = [self.py, "-I", "-c", "import lxml.etree, structlog, filelock"]
        imports = [self.py, "-I", "-c", "import mdev_hooks.hook, mdev_hooks.config, mdev_hooks.log, mdev_hooks.domain, "
                   "mdev_hooks.core.prepare, mdev_hooks.core.release, lxml.etree, structlog, filelock"]
        prep: list[Run] = []
        rel: list[Run] = []

        def cycle() -> Run:
            prep.append(self.call("vm-managed", "prepare", "begin", xml))
            rel.append(self.call("vm-managed", "release", "end", xml))
            return prep[-1]

        cases: dict[str, Callable[[], Run]] = {
            "floor": lambda: self.runner.run(floor),
            "imports": lambda: self.runner.run(imports),
            "cycle": cycle,
        }
        cycle()  # warm-up (page cache, lock dir, ledger dir)
        prep.clear()
        rel.clear()
        runs = interleave(self.runner, cases, self.reps)
        f = med_ms(runs["floor"])
        per_call = (med_ms(prep) + med_ms(rel)) / 2
        self.result["managed_ratio"] = per_call / f
        self.result["managed_rss_kib"] = max(med_rss(prep), med_rss(rel))
        say(f"\n## 2. managed path, one mdev on the FUSE fake (median of {self.reps}){'':<22}wall ms   ratio   CPU ms  "
            "RSS KiB")
        rows = [
            ("import floor: python3 -I -c 'import lxml.etree, structlog, filelock'", runs["floor"]),
            ("all imports of the managed path (mdev_hooks.* + deps)", runs["imports"]),
            ("prepare begin (create 1 mdev)", prep),
            ("release end (remove it)", rel),
        ]
        for label, rs in rows:
            say(row(label, rs, f, 72))
        cpu_ratio = (med_cpu(prep) + med_cpu(rel)) / 2 / med_cpu(runs["floor"])
        say(f"  per call (mean of the two medians) {per_call:.2f} ms = {self.result['managed_ratio']:.2f}x the "
            f"import floor (target <= 1.3); in CPU time {cpu_ratio:.2f}x")
        self.check_leaks("managed")

    # -- 3: parents in parallel ---------------------------------------------------------------------------------------
    def parallel(self) -> None:
        reps = self.reps
        one = [("vm-p0", dom_uuid(100), mdev_uuid(100), "synth0")]
        diff = [(f"vm-p{i}", dom_uuid(100 + i), mdev_uuid(100 + i), f"synth{i}") for i in range(8)]
        same = [(f"vm-p{i}", dom_uuid(100 + i), mdev_uuid(100 + i), "synth0") for i in range(8)]
        cpu: dict[str, list[float]] = {}
        inflight: dict[str, list[int]] = {}

        def starts(label: str, doms: list[tuple[str, str, str, str]], delay_ms: int) -> Callable[[], Run]:
            xmls = [(n, domain_xml(n, d, [(m, p)])) for n, d, m, p in doms]
            cpu[label] = []
            inflight[label] = []

            def go() -> Run:
                self.fs.control(cmd="delay", op="create", ms=delay_ms)
                since = time.monotonic()  # the fake's journal uses the same clock
                wall, runs = self.runner.run_many([(self.hook_argv(n, "prepare", "begin"), x) for n, x in xmls])
                cpu[label].append(sum(r.cpu for r in runs))
                inflight[label].append(peak_inflight(self.fs.journal(), since))
                self.runner.run_many([(self.hook_argv(n, "release", "end"), x) for n, x in xmls])
                return Run(wall, 0, 0)

            return go

        cases = {
            "1": starts("1", one, 100),
            "8 parents": starts("8 parents", diff, 100),
            "1 parent": starts("1 parent", same, 100),
            "1, no delay": starts("1, no delay", one, 0),
            "8 parents, no delay": starts("8 parents, no delay", diff, 0),
        }
        try:
            runs = interleave(self.runner, cases, reps)
        finally:
            self.fs.control(cmd="delay", op="create", ms=0)
        m = {k: med_ms(v) for k, v in runs.items()}
        t1 = m["1"]
        self.result["parallel_ratio"] = m["8 parents"] / t1
        self.result["serial_ratio"] = m["1 parent"] / t1
        ncpu = os.cpu_count() or 1
        say(f"\n## 3. parents in parallel: create delayed 100 ms by the fake (median of {reps}; wall to last exit)")
        say(f"  1 domain                                  {t1:8.1f} ms")
        say(f"  8 domains on 8 parents, started at once   {m['8 parents']:8.1f} ms  = "
            f"{m['8 parents'] / t1:.2f}x one (target <= 1.5)")
        say(f"  8 domains on 1 parent, started at once    {m['1 parent']:8.1f} ms  = "
            f"{m['1 parent'] / t1:.2f}x one (serialised by design: ~8x the delay)")
        say(f"  what the 100 ms delay adds to the wall time: 1 domain +{t1 - m['1, no delay']:.0f} ms, 8 on 8 parents "
            f"+{m['8 parents'] - m['8 parents, no delay']:.0f} ms (parallel: ~+100), 8 on 1 parent "
            f"+{m['1 parent'] - m['8 parents, no delay']:.0f} ms (serial: ~+800)")
        p8, p1 = (statistics.median(inflight[k]) for k in ("8 parents", "1 parent"))
        say(f"  creates in flight at once (the fake's journal, median of each run's peak): 8 on 8 parents {p8:.0f}, "
            f"8 on 1 parent {p1:.0f}")
        c8 = statistics.median(cpu["8 parents"]) * 1000
        say(f"  CPU: the 8 hooks use {c8:.0f} ms of CPU together; on {ncpu} CPUs that alone is >= {c8 / ncpu:.0f} ms "
            f"of wall time, so 8 parallel starts cannot take less than {c8 / ncpu + 100:.0f} ms here")
        self.check_leaks("parallel")

    # -- 4: scale ------------------------------------------------------------------------------------------------------
    def scale(self) -> None:
        n = 8 if self.quick else 32
        rounds = 1 if self.quick else 5
        self.fs.control(cmd="delay", op="create", ms=0)
        xmls = [(f"vm-s{i}", domain_xml(f"vm-s{i}", dom_uuid(200 + i), [(mdev_uuid(200 + i), "synth0")]))
                for i in range(n)]
        walls: dict[str, list[float]] = {"prepare": [], "release": []}
        calls: dict[str, list[float]] = {"prepare": [], "release": []}
        cpus: dict[str, list[float]] = {"prepare": [], "release": []}
        leaked = 0
        for _ in range(rounds):
            for op, sub in (("prepare", "begin"), ("release", "end")):
                wall, runs = self.runner.run_many([(self.hook_argv(nm, op, sub), x) for nm, x in xmls])
                walls[op].append(wall * 1000)
                calls[op] += [r.seconds * 1000 for r in runs]
                cpus[op] += [r.cpu * 1000 for r in runs]
                if op == "prepare":
                    assert len(self.fs.devices()) == n, "not every domain got its mdev"
            leaked += self.check_leaks("scale")
        say(f"\n## 4. scale: {n} domains started at once on ONE parent with 32 instances ({rounds} rounds)")
        for op in ("prepare", "release"):
            c = calls[op]
            say(f"  {n} x {op:<8} wall {statistics.median(walls[op]):7.1f} ms   per call p50 {pct(c, 50):6.1f} ms  "
                f"p99 {pct(c, 99):6.1f} ms  max {max(c):6.1f} ms  CPU p50 {pct(cpus[op], 50):5.1f} ms")
        say(f"  devices + ledger entries leaked: {leaked}")

        # one domain with k managed mdevs on one parent
        ks = (1, 2, 4) if self.quick else (1, 2, 4, 8, 16)
        reps = max(3, self.reps // 3)
        res: dict[int, tuple[list[Run], list[Run]]] = {}
        cases: dict[str, Callable[[], Run]] = {}
        for k in ks:
            xml = domain_xml(f"vm-k{k}", dom_uuid(300 + k), [(mdev_uuid(300 + 100 * k + j), "synth0")
                                                              for j in range(k)])
            res[k] = ([], [])

            def cyc(k: int = k, xml: bytes = xml) -> Run:
                res[k][0].append(self.call(f"vm-k{k}", "prepare", "begin", xml))
                res[k][1].append(self.call(f"vm-k{k}", "release", "end", xml))
                return res[k][0][-1]

            cases[str(k)] = cyc
        interleave(self.runner, cases, reps)
        say(f"  one domain with k managed mdevs on one parent (median of {reps}, interleaved):")
        say("      k   prepare ms  release ms   (prep+rel)/k ms   marginal ms/device   CPU prep+rel ms   marginal CPU")
        prev: tuple[int, float, float] | None = None
        tot: dict[int, tuple[float, float]] = {}
        for k in ks:
            p, r = med_ms(res[k][0]), med_ms(res[k][1])
            cp = med_cpu(res[k][0]) + med_cpu(res[k][1])
            tot[k] = (p + r, cp)
            marg = f"{(p + r - prev[1]) / (k - prev[0]):8.2f}" if prev else "       -"
            cmarg = f"{(cp - prev[2]) / (k - prev[0]):8.2f}" if prev else "       -"
            say(f"  {k:5d} {p:11.1f} {r:11.1f} {(p + r) / k:17.2f} {marg:>20} {cp:17.1f} {cmarg:>14}")
            prev = (k, p + r, cp)
        for what, i in (("wall", 0), ("CPU", 1)):
            a, b, r2 = linear_fit([(k, v[i]) for k, v in tot.items()])
            say(f"  linear fit of prepare+release {what}: {a:.1f} ms + {b:.2f} ms per device (R^2 {r2:.3f})")
        self.check_leaks("k mdevs")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=30, help="runs per compared command (default 30)")
    ap.add_argument("--quick", action="store_true", help="tiny counts: for the smoke test, figures meaningless")
    ap.add_argument("--python", default=os.path.realpath(sys.executable),
                    help="interpreter to build the venv from (default: this one, resolved)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (log file, XMLs)")
    ap.add_argument("--only", choices=("noop", "managed", "parallel", "scale"), action="append",
                    help="run only these sections (repeatable)")
    args = ap.parse_args(argv)
    if args.reps < 1:
        ap.error("--reps must be >= 1")

    # a stopped run must still unmount the fake and remove its files (the `finally` below)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    venv = build_venv(args.python)
    work = Path(tempfile.mkdtemp(prefix="mdev-hooks-bench."))
    shm = Path("/dev/shm") if os.path.isdir("/dev/shm") else work
    tmpfs = Path(tempfile.mkdtemp(prefix="mdev-hooks-bench.", dir=shm))
    fs = FakeSysfs([], work / "fake", synthetic_parents=8, synthetic_instances=32)
    runner: Runner | None = None
    try:
        hooks, etc = work / "hooks", work / "etc"
        done = subprocess.run([str(venv / "bin" / "mdev-hooks"), "install", "--no-extras", "--hooks-dir", str(hooks),
                               "--config-dir", str(etc)], capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"mdev-hooks install failed: {done.stdout}{done.stderr}")
        fs.start()
        state = tmpfs / "state"
        cfg = etc / "config.toml"
        cfg.write_text(f'sysfs_root = "{fs.root}"\nstate_dir = "{state}"\nlock_dir = "{tmpfs / "lock"}"\n'
                       f'log_file = "{work / "hook.log"}"\n')
        # what libvirt passes (LC_ALL, PATH, HOME) plus the config file's name
        env = {"LC_ALL": "C", "PATH": SCRUBBED_PATH, "HOME": "/root", "MDEV_HOOKS_CONFIG": str(cfg)}
        runner = Runner(work, env, str(venv / "bin" / "python3"))
        b = Bench(venv, str(hooks / "qemu"), fs, runner, state, 2 if args.quick else args.reps, args.quick)
        where = subprocess.run([b.py, "-I", "-c", "import mdev_hooks; print(mdev_hooks.__file__)"],
                               capture_output=True, text=True, check=True).stdout.strip()
        say(f"# python {sys.version.split()[0]} from {os.path.realpath(args.python)}; venv {venv}")
        say(f"# mdev_hooks installed non-editable: {where}")
        say(f"# launcher {b.hook} (written by `mdev-hooks install`): "
            f"{Path(b.hook).read_text().splitlines()[0]}")
        say(f"# sysfs: FUSE fake at {fs.root}; state/lock on tmpfs {tmpfs}; {os.cpu_count()} CPUs, "
            f"load {os.getloadavg()[0]:.2f}")
        sections = args.only or ["noop", "managed", "parallel", "scale"]
        for s in sections:
            getattr(b, s)()
        leaks = b.leaks + b.check_leaks("the end")
        if runner.stdout_bytes():
            sys.exit(f"the hook wrote {runner.stdout_bytes()} bytes to stdout (never allowed)")
        r = b.result
        say(f"\n## 5. peak RSS (wait4 ru_maxrss, median): python3 -I -c pass {r.get('base_rss_kib', 0):.0f} KiB, "
            f"hook no-op (worst) {r.get('noop_rss_kib', 0):.0f} KiB, hook managed (worst) "
            f"{r.get('managed_rss_kib', 0):.0f} KiB (the helper's floor, /bin/true: {runner.rss_floor_kib()} KiB)")
        keys = ("noop_ratio", "big_noop_ratio", "managed_ratio", "parallel_ratio", "serial_ratio")
        say(" ".join(f"{k}={r[k]:.2f}" if k in r else f"{k}=-" for k in keys) + f" leaks={leaks}")
        return 0
    finally:
        if runner is not None:
            runner.close()
        fs.stop()
        shutil.rmtree(tmpfs, ignore_errors=True)
        if args.keep:
            say(f"# kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
