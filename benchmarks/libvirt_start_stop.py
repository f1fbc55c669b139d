#!/usr/bin/env python3
"""What mdev-hooks adds to `virsh start` + `virsh destroy` of a PLAIN domain (no mdev) on the real libvirtd.

Every VM on the host pays this: libvirt runs the hook five times per start/stop (prepare, start, started,
stopped, release). Arms alternate within one run (hook installed / no hook, order flipped every pair); after
each switch libvirtd is reloaded (SIGHUP: it only rescans hook scripts then), and libvirtd's own debug log
(util.hook, turned on with virt-admin) proves the hook ran 5 times per hooked cycle and never otherwise.
Medians of >= 20 pairs. Needs root; starts libvirtd if it is not running and stops it again; restores
/etc/libvirt/hooks and /etc/mdev-hooks.

    python3 benchmarks/libvirt_start_stop.py [--pairs 20]

Last line (machine-readable): libvirt_hook_ratio=<median total with hook / median total without>
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

# lvlab, and tests/support whose domain-XML builder lvlab uses
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "libvirt"))
import lvlab

CALLS = [("prepare", "begin"), ("start", "begin"), ("started", "begin"), ("stopped", "end"), ("release", "end")]


def switch(hooked: bool) -> None:
    """Install or remove the hook, reload libvirtd, and check what its rescan found."""
    if hooked:
        lvlab.install_hook("qemu")
    else:
        lvlab.remove_hooks()
    found = lvlab.reload_daemon()
    assert ("Found hook script" in found) == hooked, found


def cycle(name: str, hooked: bool) -> tuple[float, float]:
    dlog = lvlab.daemon_log()
    mark = dlog.mark()
    s = lvlab.virsh_ok("start", name).seconds
    assert lvlab.virsh("domstate", name).stdout.strip() == "running"
    d = lvlab.virsh_ok("destroy", name).seconds
    runs = dlog.calls(mark, name)
    assert len(runs) == (5 if hooked else 0), runs  # libvirtd ran the hook exactly when it should have
    return s, d


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--pairs", type=int, default=20)
    args = ap.parse_args()
    if args.pairs < 1:
        ap.error("--pairs must be >= 1")

    tmp = Path(tempfile.mkdtemp(prefix="mdev-hooks-bench."))
    samples: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    with lvlab.daemon_session(tmp / "backup"):
        (tmp / "sysfs").mkdir()  # a plain domain never reaches sysfs
        lvlab.write_config(tmp / "sysfs", tmp)
        name = lvlab.PREFIX + "bench-plain"
        lvlab.define(lvlab.domain_xml(name, lvlab.new_uuid()), tmp)
        switch(False)
        cycle(name, False)  # warm-up: qemu binary and firmware in the page cache
        for i in range(args.pairs):
            for hooked in (True, False) if i % 2 == 0 else (False, True):
                switch(hooked)
                samples[hooked].append(cycle(name, hooked))
            print(f"pair {i + 1}/{args.pairs}", file=sys.stderr, end="\r")
        print(file=sys.stderr)
        # the hook alone, run the way libvirt runs it (plain XML on stdin), for context
        hook = lvlab.install_hook("qemu")
        xml = lvlab.domain_xml(name, lvlab.new_uuid())
        direct = [lvlab.run([str(hook), name, op, sub, "-"], stdin=xml).seconds
                  for _ in range(args.pairs) for op, sub in CALLS]

    def med(hooked: bool, k: int | None) -> float:
        return statistics.median(sum(s) if k is None else s[k] for s in samples[hooked])

    print(f"virsh start + destroy of a plain TCG domain, {args.pairs} interleaved pairs, medians in ms")
    print(f"{'':14}{'start':>9}{'destroy':>9}{'total':>9}")
    for hooked, label in ((False, "no hook"), (True, "mdev-hooks")):
        print(f"{label:14}" + "".join(f"{med(hooked, k) * 1000:9.1f}" for k in (0, 1, None)))
    delta = [sum(h) - sum(n) for h, n in zip(samples[True], samples[False])]
    print(f"{'difference':14}" + "".join(f"{(med(True, k) - med(False, k)) * 1000:+9.1f}" for k in (0, 1, None))
          + f"   (median of per-pair differences {statistics.median(delta) * 1000:+.1f} ms, 5 hook calls)")
    print(f"the hook run directly (plain domain XML on stdin): median {statistics.median(direct) * 1000:.1f} ms per "
          f"call over {len(direct)} calls; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    ratio = med(True, None) / med(False, None)
    print(f"libvirt_hook_ratio={ratio:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
