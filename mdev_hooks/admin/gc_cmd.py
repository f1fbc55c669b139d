"""`mdev-hooks gc`: clean up after domains that are no longer running, with the hook's own release.

Invariant: only ledger entries are acted on, so a device mdev-hooks did not create (external) is never touched; for
a domain that is not running, core.release does exactly what the hook's `release end` would have done (same locks,
checks and NVIDIA wait); for a running one only entries whose device is gone are dropped, under the parent's lock.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from mdev_hooks import PREFIX
from mdev_hooks.admin import common
from mdev_hooks.core.env import Env
from mdev_hooks.core.kinds import kind_of
from mdev_hooks.core.ledger import Claim
from mdev_hooks.core.locks import parent_locks
from mdev_hooks.core.release import release
from mdev_hooks.core.sriov import lock_name
from mdev_hooks.enums import ClaimState, Kind
from mdev_hooks.errors import HookError
from mdev_hooks.kernel import Sysfs

TMP_MAX_AGE = 300.0  # a ledger temp file lives for microseconds; older ones, or a dead writer's, are stale


@dataclass
class Outcome:
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _what(c: Claim) -> str:
    return f"{kind_of(c.kind).describe_claim(c)} of domain {c.domain_name or '?'} ({c.domain_uuid})"


def holders(sysfs: Sysfs, key: str, kind: str = Kind.MDEV.value) -> list[int]:
    """PIDs that have the mdev's (or nvidia-vf: the VF's) VFIO group or iommufd cdev open. Writing `remove`
    (or clearing the vGPU type) then would block or break the VM."""
    dev = os.path.join(sysfs.root, "bus", kind_of(kind).bus, "devices", key)
    targets: set[str] = set()
    with contextlib.suppress(OSError):
        targets.add("/dev/vfio/" + os.path.basename(os.readlink(os.path.join(dev, "iommu_group"))))
    with contextlib.suppress(OSError):
        targets.update("/dev/vfio/devices/" + n for n in os.listdir(os.path.join(dev, "vfio-dev")))
    if not targets:
        return []
    found: list[int] = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in targets:
                    found.append(int(pid))
                    break
            except OSError:
                continue
    return found


def _plan_claim(c: Claim, sysfs: Sysfs) -> tuple[str, str]:
    """(verb, why) for a claim of a domain that is not running."""
    dev = kind_of(c.kind).current(sysfs, c.key)
    if dev is None:
        return "forget", "device gone"
    if (dev.parent, dev.type) != (c.parent, c.type):
        return "forget", f"device is now type {dev.type or '?'} on {dev.parent}: not ours, left in place"
    if c.state == ClaimState.ADOPTED:
        return "forget", "adopted at prepare (not created by mdev-hooks): left in place"
    return "remove", "domain not running"


def _stale_tmp(state_dir: str, now: float) -> list[str]:
    try:
        names = os.listdir(state_dir)
    except OSError:
        return []
    stale = []
    for name in names:
        if not (name.startswith(".") and name.endswith(".tmp")):
            continue
        path = os.path.join(state_dir, name)
        parts = name.split(".")  # "", mdev, pid, ns, "tmp"
        alive = len(parts) == 5 and parts[2].isdigit() and os.path.exists(f"/proc/{parts[2]}")
        try:
            age = now - os.lstat(path).st_mtime
        except OSError:
            continue
        if not alive or age > TMP_MAX_AGE:
            stale.append(path)
    return stale


def gc(env: Env, running: set[str], dry_run: bool, asked_at: float) -> Outcome:
    """Clean up. `running`: the active domains' UUIDs, as `virsh list` answered when asked at `asked_at`
    (time.time()). A domain whose claims were written after that is skipped: it is starting. (`virsh list` waits
    for a domain that is half-way through its start, so it is listed once its prepare is done.) What is left is a
    window of milliseconds in which a stopped domain that still has a device starts between the question and
    the removal; gc is an administrator's command, run when that is not expected.)"""
    out = Outcome()
    verb_past = {"remove": "removed", "forget": "forgot"}
    claims, problems = env.ledger.all()
    out.warnings += [f"ledger problem (left alone): {p}" for p in problems]
    by_domain: dict[str, list[Claim]] = defaultdict(list)
    for c in claims:
        by_domain[c.domain_uuid].append(c)

    for dom_uuid, dclaims in sorted(by_domain.items()):
        if dom_uuid in running:
            _gone_of_running(env, dclaims, dry_run, out)
            continue
        # A claim written after we asked libvirt belongs to a start we know nothing about: leave the domain.
        if any(c.time > asked_at for c in dclaims):
            out.warnings.append(f"domain {dclaims[0].domain_name or '?'} ({dom_uuid}) changed while gc ran "
                                "(is it starting?); skipped: run gc again")
            continue
        planned = [(c, *_plan_claim(c, env.sysfs)) for c in dclaims]
        busy = [(c, pids) for c, verb, _ in planned if verb == "remove" for pids in [holders(env.sysfs, c.key, c.kind)]
                if pids]
        if busy:
            c, pids = busy[0]
            out.failures.append(f"{_what(c)} is open by pid {', '.join(map(str, pids))} although libvirt does not "
                                "list the domain as running; not removed (writing `remove` would block)")
            continue
        if dry_run:
            out.lines += [f"would {verb} {_what(c)}: {why}" for c, verb, why in planned]
            continue
        try:
            release(dom_uuid, env)
        except HookError as e:
            out.failures.append(str(e))
        left = {c.key for c in env.ledger.for_domain(dom_uuid)[0]}
        out.lines += [f"{verb_past[verb]} {_what(c)}: {why}" for c, verb, why in planned if c.key not in left]

    for path in _stale_tmp(env.cfg.state_dir, time.time()):
        if dry_run:
            out.lines.append(f"would delete stale ledger temp file {path}")
            continue
        try:
            os.unlink(path)
            out.lines.append(f"deleted stale ledger temp file {path}")
        except FileNotFoundError:
            pass
        except OSError as e:
            out.failures.append(f"cannot delete {path}: {e.strerror}")
    return out


def _gone_of_running(env: Env, claims: list[Claim], dry_run: bool, out: Outcome) -> None:
    """Drop entries of a running domain whose device is gone or replaced; never touch a device."""
    def stale(c: Claim) -> str | None:
        dev = kind_of(c.kind).current(env.sysfs, c.key)
        if dev is None:
            return "device gone"
        if (dev.parent, dev.type) != (c.parent, c.type):
            return f"device is now type {dev.type or '?'} on {dev.parent}"
        return None

    suspects = [c for c in claims if stale(c)]
    if not suspects:
        return
    if dry_run:
        out.lines += [f"would forget {_what(c)}: {stale(c)} (domain running)" for c in suspects]
        return
    # under the parent's lock no prepare is half-way, so an entry without its device is really stale
    locks = (c.pf or lock_name(env, c.parent) for c in suspects)
    with parent_locks(env.cfg.lock_dir, locks, env.cfg.lock_timeout, env.log):
        for c in suspects:
            why = stale(c)
            if why and env.ledger.get(c.key) == c:
                env.ledger.drop(c.key)
                env.log.info("gc.forgot", mdev=c.key, domain_uuid=c.domain_uuid, reason=why)
                out.lines.append(f"forgot {_what(c)}: {why} (domain running)")


def cmd_gc(args: argparse.Namespace) -> int:
    from mdev_hooks import log as logsetup
    from mdev_hooks.admin.virsh import VirshError

    cfg = common.load_config(args)
    dry = args.dry_run or cfg.dry_run
    asked_at = time.time()
    try:
        running = common.virsh(args).running_uuids()
    except VirshError as e:
        raise HookError(f"gc: cannot tell which domains are running, so nothing was removed: {e}") from None
    log = common.NullLog() if dry else logsetup.setup(cfg.log_file, op="gc", pid=os.getpid())
    out = gc(Env.from_config(cfg, log), running, dry, asked_at)
    for line in out.lines:
        print(line)
    for line in out.warnings:
        print(f"warning: {line}")
    if not out.lines and not out.failures:
        print("nothing to clean up")
    elif dry:
        print("dry run: nothing was changed" + (" (dry_run is on in the config)" if cfg.dry_run else ""))
    for line in out.failures[1:]:
        sys.stderr.write(f"{PREFIX}{line}\n")
    if out.failures:
        common.err(out.failures[0])
        return common.FAILED
    return common.OK


def register(command: Any) -> None:
    p = command("gc", cmd_gc, "remove mdevs left behind by domains that are not running",
                "  mdev-hooks gc --dry-run\n  mdev-hooks gc",
                "Remove the mdevs the ledger says mdev-hooks created for domains libvirt does not list as running "
                "(the hook's own release, under the same per-parent locks), drop ledger entries of devices that "
                "are gone, delete stale ledger temp files. Devices mdev-hooks did not create are never touched. "
                "Refuses (exit 1) when virsh cannot tell which domains run.")
    p.add_argument("--dry-run", action="store_true", help="only say what would be done")
