"""The measures of benchmarks/run.py: the no-op path (sh front and Python), the managed path against the import
floor, parents in parallel, scale; each prints its table and leaves its ratios in Bench.result.

Invariant: a measure leaves no device and no ledger entry behind (check_leaks counts and removes what it finds).
"""

from __future__ import annotations

import ast
import contextlib
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fakesysfs.harness import FakeSysfs
from runner import (
    REPO,
    Run,
    Runner,
    dom_uuid,
    domain_xml,
    interleave,
    linear_fit,
    mdev_uuid,
    med_cpu,
    med_ms,
    med_rss,
    pct,
    peak_inflight,
    row,
    say,
)


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

    def front_interpreter(self) -> tuple[list[str], list[str]]:
        """The flags and import paths the installed front runs its interpreter with (its exec and PATHS lines)."""
        flags: list[str] = []
        paths: list[str] = []
        for line in Path(self.hook).read_text().splitlines():
            if line.startswith('exec "$python" '):
                flags = line.split()[2:-2]
            elif line.startswith("PATHS = "):
                paths = ast.literal_eval(line.split("=", 1)[1].strip())
        return flags, paths

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
            "own mdev (managed='no'): prepare begin": ("vm-own-mdev", "prepare", "begin", unmanaged),
            "own mdev (managed='no'): release end": ("vm-own-mdev", "release", "end", unmanaged),
        }
        # operations outside the active set: the sh front answers them, no interpreter starts
        front = {f"sh front: managed {op} {sub}": ("vm-managed", op, sub, managed)
                 for op, sub in (("start", "begin"), ("started", "begin"), ("stopped", "end"), ("reconnect", "begin"))}
        big = {
            f"1 MiB plain ({big_plain.count(b'<disk ')} disks+{big_plain.count(b'<interface ')} NICs): prepare begin":
                ("vm-big", "prepare", "begin", big_plain),
            "1 MiB + own mdev: prepare begin": ("vm-big-own-mdev", "prepare", "begin", big_unmanaged),
            "1 MiB + own mdev: release end": ("vm-big-own-mdev", "release", "end", big_unmanaged),
        }
        cases: dict[str, Callable[[], Run]] = {"python3 -I -c pass": lambda: self.runner.run(base)}
        for label, (n, op, sub, xml) in {**front, **small, **big}.items():
            cases[label] = self.caller(n, op, sub, xml)
        self.runner.run(base)  # warm the page cache
        runs = interleave(self.runner, cases, self.reps)
        b = med_ms(runs["python3 -I -c pass"])
        say(f"\n## 1. no-op path (median of {self.reps}, interleaved){'':<10}wall ms   ratio   CPU ms  RSS KiB")
        for label, rs in runs.items():
            say(row(label, rs, b))
        self.result["front_ratio"] = max(med_ms(runs[k]) for k in front) / b
        self.result["noop_ratio"] = max(med_ms(runs[k]) for k in small) / b
        self.result["big_noop_ratio"] = max(med_ms(runs[k]) for k in big) / b
        self.result["noop_rss_kib"] = max(med_rss(runs[k]) for k in small)
        self.result["base_rss_kib"] = med_rss(runs["python3 -I -c pass"])
        bc = med_cpu(runs["python3 -I -c pass"])
        say(f"  worst sh front answer {self.result['front_ratio']:.2f}x (target <= 0.2), in CPU time "
            f"{max(med_cpu(runs[k]) for k in front) / bc:.2f}x")
        say(f"  worst small Python no-op {self.result['noop_ratio']:.2f}x (target <= 1.3), worst 1 MiB no-op "
            f"{self.result['big_noop_ratio']:.2f}x (target <= 1.5); in CPU time (less sensitive to other load): "
            f"{max(med_cpu(runs[k]) for k in small) / bc:.2f}x and {max(med_cpu(runs[k]) for k in big) / bc:.2f}x")
        self.check_leaks("no-op")

    # -- 2 + 5: managed path ----------------------------------------------------------------------------------------
    def managed(self) -> None:
        xml = domain_xml("vm-managed", dom_uuid(10), [(mdev_uuid(10), "synth0")])
        libs = "import lxml.etree, structlog, filelock"
        ours = ("import mdev_hooks.hook, mdev_hooks.config, mdev_hooks.log, mdev_hooks.domain, "
                "mdev_hooks.core.prepare, mdev_hooks.core.release")
        floor = [self.py, "-I", "-c", libs]
        # the same as the installed front runs its interpreter (-I -S and the install's paths)
        flags, paths = self.front_interpreter()
        here = f"import sys; sys.path += {paths!r}; "
        floor_front = [self.py, *flags, "-c", here + libs]
        imports = [self.py, *flags, "-c", here + libs + "; " + ours]
        prep: list[Run] = []
        rel: list[Run] = []

        def cycle() -> Run:
            prep.append(self.call("vm-managed", "prepare", "begin", xml))
            rel.append(self.call("vm-managed", "release", "end", xml))
            return prep[-1]

        cases: dict[str, Callable[[], Run]] = {
            "floor": lambda: self.runner.run(floor),
            "floor_front": lambda: self.runner.run(floor_front),
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
            (f"the same as the front runs it: python3 {' '.join(flags)} + the install's paths", runs["floor_front"]),
            ("+ mdev_hooks' modules: every import of the managed path, as the front runs it", runs["imports"]),
            ("prepare begin (create 1 mdev)", prep),
            ("release end (remove it)", rel),
        ]
        for label, rs in rows:
            say(row(label, rs, f, 72))
        cpu_call = (med_cpu(prep) + med_cpu(rel)) / 2
        self.result["managed_cpu_ratio"] = cpu_call / med_cpu(runs["floor"])
        self.result["managed_cpu_ratio_front"] = cpu_call / med_cpu(runs["floor_front"])
        say(f"  per call (mean of the two medians) {per_call:.2f} ms = {self.result['managed_ratio']:.2f}x the "
            f"import floor (target <= 1.3); in CPU time {self.result['managed_cpu_ratio']:.2f}x (target <= 1.10), "
            f"{self.result['managed_cpu_ratio_front']:.2f}x the floor with the front's flags")
        say(f"  CPU ms per call: interpreter and libraries {med_cpu(runs['floor_front']):.2f}, mdev_hooks' imports "
            f"+{med_cpu(runs['imports']) - med_cpu(runs['floor_front']):.2f}, the work less the interpreter teardown "
            f"the hook skips (os._exit) {cpu_call - med_cpu(runs['imports']):+.2f} (prepare {med_cpu(prep):.2f}, "
            f"release {med_cpu(rel):.2f})")
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

