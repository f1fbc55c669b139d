#!/usr/bin/env python3
"""What the hook costs at every VM operation: no-op path, managed path, parallel parents, scale, memory.
(This is the runner's entry: runner.py has the machinery, measures.py the sections.)

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
front_ratio=… noop_ratio=… big_noop_ratio=… managed_ratio=… managed_cpu_ratio=… parallel_ratio=… serial_ratio=…
leaks=…
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from fakesysfs.harness import FakeSysfs  # noqa: E402
from measures import Bench  # noqa: E402
from runner import SCRUBBED_PATH, Runner, build_venv, say  # noqa: E402


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
        keys = ("front_ratio", "noop_ratio", "big_noop_ratio", "managed_ratio", "managed_cpu_ratio", "parallel_ratio",
                "serial_ratio")
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
