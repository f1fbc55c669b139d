#!/usr/bin/env python3
"""What mdev-hooks adds to a restart of the real libvirtd with N running plain domains (no mdev).

When libvirtd starts it reconnects to every running domain and runs the qemu hook's `reconnect begin` for each,
holding that domain's job: the sh front answers it without starting Python. Arms alternate (hook installed as
`mdev-hooks install` writes it / no hook; order flipped every pair). One restart: SIGTERM libvirtd and wait for
it to exit (the domains keep running), start it as scripts/libvirtd-ctl does, then ask every domain at once for
something that needs its job (`virsh qemu-monitor-command NAME --hmp 'info status'`, which waits for the
reconnect): wall time from the daemon's exec to the last answer. Medians of the pairs, and of the per-pair
differences. Then one restart with a counting hook next to ours (qemu.d/00-count) shows that libvirtd called
`reconnect begin` once per domain. Needs root; takes the host's libvirtd for the session (run it under
`flock /tmp/libvirt.lock`); restores /etc/libvirt/hooks and /etc/mdev-hooks and removes its domains.

    flock /tmp/libvirt.lock python3 benchmarks/libvirt_restart.py [--domains 20] [--pairs 10]

Last line (machine-readable): restart_hook_ms=<median of per-pair differences> restart_ratio=<with / without>
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "libvirt"))
import lvlab

PIDFILE = Path("/run/libvirtd.pid")
CLEAN_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
COUNTER = "#!/bin/sh\necho \"$1 $2 $3\" >>{out}\n"


def daemon_pid() -> int | None:
    try:
        pid = int(PIDFILE.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def stop_daemon() -> None:
    pid = daemon_pid()
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while daemon_pid() == pid:
        if time.monotonic() > deadline:
            raise SystemExit(f"libvirtd (pid {pid}) did not exit within 60 s")
        time.sleep(0.01)


def restart(names: list[str]) -> float:
    """Seconds from the daemon's exec to the last domain answering a call that needs its job."""
    stop_daemon()
    t0 = time.monotonic()
    subprocess.run(["libvirtd", "-d"], env=CLEAN_ENV, cwd="/", check=True, timeout=120)
    calls = [subprocess.Popen(["virsh", "-c", "qemu:///system", "qemu-monitor-command", n, "--hmp", "info status"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in names]
    for n, c in zip(names, calls):
        out, err = c.communicate(timeout=300)
        if c.returncode != 0 or "VM status" not in out:
            raise SystemExit(f"{n} did not answer after the restart: {out.strip()} {err.strip()}")
    return time.monotonic() - t0


def switch(hooked: bool) -> Path | None:
    """Install the hook the way an admin does, or remove it; the next restart finds what is there."""
    if hooked:
        return lvlab.install_hook("qemu")
    lvlab.remove_hooks()
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--domains", type=int, default=20)
    ap.add_argument("--pairs", type=int, default=10)
    args = ap.parse_args()
    if args.domains < 1 or args.pairs < 1:
        ap.error("--domains and --pairs must be >= 1")

    tmp = Path(tempfile.mkdtemp(prefix="mdev-hooks-bench."))
    samples: dict[bool, list[float]] = {True: [], False: []}
    with lvlab.daemon_session(tmp / "backup"):
        (tmp / "sysfs").mkdir()  # plain domains never reach sysfs
        lvlab.write_config(tmp / "sysfs", tmp)
        names = [f"{lvlab.PREFIX}restart-{i:02d}" for i in range(args.domains)]
        for n in names:
            lvlab.define(lvlab.domain_xml(n, lvlab.new_uuid()), tmp)
            lvlab.virsh_ok("start", "--paused", n)  # running for libvirt, idle for the CPU
        restart(names)  # warm-up: the daemon's binaries and the domains' status files in the page cache
        for i in range(args.pairs):
            for hooked in (True, False) if i % 2 == 0 else (False, True):
                switch(hooked)
                samples[hooked].append(restart(names))
            print(f"pair {i + 1}/{args.pairs}", file=sys.stderr, end="\r")
        print(file=sys.stderr)
        # the evidence: one more restart with a counting hook next to ours
        hook = switch(True)
        assert hook is not None
        # and the front's own cost, run directly as libvirtd runs it (no daemon noise): reconnect of each domain
        xml = lvlab.domain_xml(names[0], lvlab.new_uuid())
        direct = [lvlab.run([str(hook), n, "reconnect", "begin", "-"], stdin=xml).seconds * 1000
                  for _ in range(5) for n in names]
        count = tmp / "calls.txt"
        counter = lvlab.HOOKS_DIR / "qemu.d" / "00-count"
        counter.parent.mkdir(parents=True, exist_ok=True)
        counter.write_text(COUNTER.format(out=count))
        counter.chmod(0o755)
        restart(names)
        lines = count.read_text().splitlines() if count.exists() else []
        reconnects = sorted(ln.split()[0] for ln in lines if ln.endswith(" reconnect begin"))
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        for n in names:
            lvlab.virsh("destroy", n)

    if reconnects != sorted(names):
        raise SystemExit(f"libvirtd did not call reconnect once per domain: {lines}")
    delta = [(h - n) * 1000 for h, n in zip(samples[True], samples[False])]
    with_hook, without = (statistics.median(samples[k]) * 1000 for k in (True, False))
    print(f"libvirtd restart with {args.domains} running plain domains (paused TCG guests), {args.pairs} interleaved "
          f"pairs: exec of libvirtd to every domain answering a job-taking call; load average {load}")
    print(f"  no hook:    median {without:8.1f} ms")
    print(f"  mdev-hooks: median {with_hook:8.1f} ms   ({args.domains} x reconnect begin, answered by the sh front; "
          "a counting hook saw every one)")
    print(f"  the hook adds: {with_hook - without:+.1f} ms (difference of the medians), "
          f"{statistics.median(delta):+.1f} ms (median of the per-pair differences; target < 50)")
    q = statistics.quantiles(delta, n=4) if len(delta) > 1 else [delta[0]] * 3
    print(f"  per-pair differences: quartiles {q[0]:+.1f} / {q[1]:+.1f} / {q[2]:+.1f} ms (the spread is the daemon's "
          "and this machine's noise)")
    one = statistics.median(direct)
    print(f"  the hook run directly with `reconnect begin` (plain XML on stdin): median {one:.2f} ms per call, "
          f"{args.domains} calls = {one * args.domains:.1f} ms in all")
    print(f"restart_hook_ms={statistics.median(delta):.1f} restart_ratio={with_hook / without:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
