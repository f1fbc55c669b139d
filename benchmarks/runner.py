"""The benchmarks' machinery: the hook installed as an admin installs it (a cached non-editable venv), the domain
XMLs, and a spawner that times each hook run (wall from fork to reaped, CPU, peak RSS), interleaved and medianed.

Invariant: every figure is a median of runs interleaved with the runs it is compared to; nothing here judges them.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
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

