"""The timeline of `bash scripts/demo --real`: from the guest's libvirtd.log (its hook calls), the hook's JSON log and
the times the guest noted at each step (demo.env), what happened between `virsh start` and the device's removal, in
time order, with the verdict.

Invariant: reads only the directory it is given; exit 0 exactly when the domain ran with the hook-made mdev held by
qemu and the device was gone, its instance given back, after the destroy.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

# the libvirt tier's helpers, and tests/ for the support package they import (pytest's pythonpath in the test tier)
_TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path[:0] = [str(_TESTS / "libvirt"), str(_TESTS)]

from lvlab import DaemonLog  # noqa: E402  (the libvirt tier's reader of libvirtd's hook calls)


@dataclass(frozen=True)
class Facts:
    """What the guest noted (demo.env, KEY=VALUE lines)."""

    env: dict[str, str]

    @classmethod
    def read(cls, path: Path) -> Facts:
        env = {}
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            key, sep, value = line.partition("=")
            if sep:
                env[key] = value
        return cls(env)

    def time(self, key: str) -> float | None:
        value = self.env.get(key, "")
        try:
            return float(value)
        except ValueError:
            return None

    def __getitem__(self, key: str) -> str:
        return self.env.get(key, "")


def hook_events(path: Path) -> list[dict[str, Any]]:
    """The hook's JSON lines (a line that is not JSON, e.g. cut by a power-off, is skipped)."""
    events = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if isinstance(e, dict) and "timestamp" in e:
            events.append(e)
    return events


def _ts(e: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(e["timestamp"]).replace("Z", "+00:00")).timestamp()


def lines(f: Facts, calls: list[Any], hook: list[dict[str, Any]]) -> list[tuple[float, str]]:
    """(time, text) of every step, libvirtd hook call and hook event of this domain, unsorted."""
    name, u = f["name"], f["uuid"].lower()
    out: list[tuple[float, str]] = []

    def at(key: str, text: str) -> None:
        t = f.time(key)
        if t is not None:
            out.append((t, text))

    at("t_start", f"virsh start {name}")
    at("t_started", f"virsh start returned {f['start_rc']}")
    at("t_checked", f"virsh domstate {name}: {f['domstate']}; qemu pid {f['qemu_pid']} has {f['sysfsdev']}")
    at("t_destroy", f"virsh destroy {name}")
    at("t_destroyed", f"virsh destroy returned {f['destroy_rc']}")
    for c in calls:
        out.append((c.time, f"  libvirtd runs {c.hook} {name} {c.op} {c.subop}"))
    for e in hook:
        event, mine = e.get("event"), str(e.get("mdev", "")).lower() == u
        if e.get("domain") != name:
            continue
        if event == "hook.invoked":
            out.append((_ts(e), f"    hook pid {e.get('pid')}: {e.get('op')}, managed devices {e.get('mdevs')}"))
        elif event == "mdev.created" and mine:
            out.append((_ts(e), f"    created mdev {u} on {f['parent']}, type {f['type']}: available_instances "
                                f"{f['avail_before']} -> {e.get('available_instances')}"))
        elif event == "mdev.removed" and mine:
            out.append((_ts(e), f"    removed mdev {u}: available_instances back to {e.get('available_instances')}"))
        elif event in ("hook.failed", "hook.crashed"):
            out.append((_ts(e), f"    hook {event}: {e.get('error', '')}"))
        elif event == "hook.done":
            out.append((_ts(e), f"    hook pid {e.get('pid')}: {e.get('op')} done in {e.get('duration_ms')} ms"))
    return out


def verdict(f: Facts, hook: list[dict[str, Any]]) -> list[str]:
    """What did not happen as designed (empty: all did)."""
    u = f["uuid"].lower()
    mine = [e.get("event") for e in hook if str(e.get("mdev", "")).lower() == u]
    wrong = []
    if mine.count("mdev.created") != 1:
        wrong.append(f"the hook logged {mine.count('mdev.created')} mdev.created for {u}, expected 1")
    if mine.count("mdev.removed") != 1:
        wrong.append(f"the hook logged {mine.count('mdev.removed')} mdev.removed for {u}, expected 1")
    if f["start_rc"] != "0" or f["domstate"] != "running":
        wrong.append(f"virsh start returned {f['start_rc'] or '?'}, domstate '{f['domstate']}'")
    if not f["sysfsdev"].endswith(f"/sys/bus/mdev/devices/{u}"):
        wrong.append(f"qemu's command line has no sysfsdev=/sys/bus/mdev/devices/{u}")
    if f["gone"] != "yes" or f["avail_after"] != f["avail_before"]:
        wrong.append(f"after the destroy: device gone: {f['gone'] or '?'}, available_instances "
                     f"{f['avail_before']} -> {f['avail_after']}")
    return wrong


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: demo_timeline.py GUEST_OUT_DIR  (demo.env, libvirtd.log, mdev-hooks.log)", file=sys.stderr)
        return 2
    d = Path(argv[0])
    f = Facts.read(d / "demo.env")
    hook = hook_events(d / "mdev-hooks.log")
    calls = DaemonLog(d / "libvirtd.log").timed_calls(0, f["name"])
    t0 = f.time("t_start")
    if t0 is None:
        print(f"demo --real: {d / 'demo.env'} has no t_start: the domain was never started", file=sys.stderr)
        return 1
    print(f"domain {f['name']}: managed mdev {f['uuid']} (parent {f['parent']}, type {f['type']})")
    for t, text in sorted(lines(f, calls, hook), key=lambda x: x[0]):
        print(f"{t - t0:+9.3f} s  {text}")
    print(f"mdev-hooks status, while it ran: {f['status_line']}")
    wrong = verdict(f, hook)
    print()
    if wrong:
        print("mdev-hooks: NOT as designed: " + "; ".join(wrong))
        return 1
    print(f"mdev-hooks: behaved as designed: created {f['uuid']} before qemu opened it, the domain ran with it, "
          f"and removed it after the destroy (available_instances {f['avail_before']} -> {f['avail_during']} -> "
          f"{f['avail_after']}).")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
