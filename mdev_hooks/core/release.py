"""`release end` (and gc): clear exactly the devices the ledger says this hook made for a domain.

Invariant: never touches a device the ledger does not give to this domain, nor one that is no longer what was
made; every wait is bounded (lock_timeout, remove_timeout, the kind's driver_wait); idempotent.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Iterable

from mdev_hooks.core.env import Env, elapsed_ms
from mdev_hooks.core.faultpoint import reached
from mdev_hooks.core.kinds import DeviceKind, kind_of
from mdev_hooks.core.ledger import Claim, CorruptClaim
from mdev_hooks.core.locks import parent_locks
from mdev_hooks.core.sriov import lock_name
from mdev_hooks.domain import ManagedDevice
from mdev_hooks.enums import ClaimState
from mdev_hooks.errors import HookError
from mdev_hooks.kernel import errnos


def drop(env: Env, key: str) -> None:
    """Forget a claim whose device is gone (or was never ours to remove). If state_dir has turned read-only or
    broken, log it and go on: removing the next device matters more, and a stale claim only makes the next
    start or release of the same domain redo a no-op (or refuse the key to other domains: the safe side)."""
    try:
        env.ledger.drop(key)
    except HookError as e:
        env.log.error("ledger.drop_failed", mdev=key, error=str(e))


def clear_device(env: Env, kind: DeviceKind, key: str) -> None:
    """Clear (remove an mdev, write 0 as a VF's type), retrying EAGAIN/EBUSY with a bounded backoff; a device
    already gone is success."""
    deadline = time.monotonic() + env.cfg.remove_timeout
    delay = 0.05
    while True:
        try:
            kind.clear(env.sysfs, key)
            return
        except FileNotFoundError:
            if not kind.gone(env.sysfs, key):
                raise
            return
        except OSError as e:
            if e.errno not in errnos.TRANSIENT or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def _wait_gone(env: Env, kind: DeviceKind, key: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if kind.current(env.sysfs, key) is None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def release(domain_uuid: str, env: Env, devices: Iterable[ManagedDevice] = ()) -> None:
    """Clear exactly the devices the ledger says this hook made for the domain. Idempotent.

    `devices`: those the domain XML names as managed; one whose ledger entry is unreadable while its device exists
    cannot be proven ours (nor another's): it is left in place and reported, never silently forgotten. (The kind
    of an unreadable claim is the one the domain XML gives.)"""
    env.ledger.check_dir()  # a planted or foreign-writable state_dir must not decide what gets removed
    claims, problems = env.ledger.for_domain(domain_uuid)
    for p in problems:
        env.log.warning("ledger.unreadable", problem=p)
    unproven: list[str] = []
    for m in devices:
        try:
            env.ledger.get(m.key)
        except CorruptClaim as e:
            kind = kind_of(m.kind)
            if kind.current(env.sysfs, m.key) is not None:
                env.log.error("mdev.ownership_unknown", mdev=m.key, problem=str(e))
                unproven.append(f"left {kind.noun} {m.key} in place: {e}")
    if not claims:
        env.log.debug("release.nothing_owned")
        if unproven:
            raise HookError(unproven[0] + (f" (and {len(unproven) - 1} more)" if len(unproven) > 1 else ""))
        return
    if env.cfg.dry_run:
        for c in claims:
            event = "mdev.would_remove" if c.state != ClaimState.ADOPTED else "mdev.would_unadopt"
            env.log.info(event, mdev=c.key, parent=c.parent, type=c.type, state=c.state)
        return
    # a vendor's driver may remove the device itself after the VM stops and break if someone removes it first:
    # wait for that OUTSIDE the lock so other domains on the parent are not held up.
    for c in claims:
        kind = kind_of(c.kind)
        wait = kind.driver_wait(env, c) if c.state != ClaimState.ADOPTED else 0.0
        if wait > 0:
            gone = _wait_gone(env, kind, c.key, wait)
            env.log.info(kind.events["driver_waited"], mdev=c.key, parent=c.parent, type=c.type, vanished=gone)
    failures: list[str] = []
    locks = (c.pf or lock_name(env, c.parent) for c in claims)
    with parent_locks(env.cfg.lock_dir, locks, env.cfg.lock_timeout, env.log):
        reached("release_locked")
        for c in sorted(claims, key=lambda c: c.time, reverse=True):
            failure = release_one(env, c)
            if failure:
                failures.append(failure)
    failures += unproven
    if failures:
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise HookError(failures[0] + more)


def release_one(env: Env, c: Claim) -> str | None:
    """Clear one claimed device (the caller holds its lock); the line for the user if it could not be."""
    kind = kind_of(c.kind)
    log = kind.bind_log(env.log, c.key, c.parent, c.type, c.pf)
    ev = kind.events
    t0 = time.monotonic()
    if c.state == ClaimState.ADOPTED:
        drop(env, c.key)
        log.info(ev["unadopted"], reason="adopted at prepare, left in place", duration_ms=elapsed_ms(t0))
        return None
    refused = kind.not_clearable(env, c)
    if refused:
        reason, problem = refused
        log.error(ev["clear_failed"], reason=reason, duration_ms=elapsed_ms(t0))
        return problem
    dev = kind.current(env.sysfs, c.key)
    if dev is None:
        drop(env, c.key)
        log.info("mdev.already_gone", state=c.state, duration_ms=elapsed_ms(t0))
        return None
    if (dev.parent, dev.type) != (c.parent, c.type):
        # not the device we made: someone replaced it; never remove it
        drop(env, c.key)
        log.warning("mdev.not_ours", found_parent=dev.parent, found_type=dev.type, duration_ms=elapsed_ms(t0))
        return None
    try:
        clear_device(env, kind, c.key)
    except OSError as e:
        log.error(ev["clear_failed"], errno=errno.errorcode.get(e.errno or 0, str(e.errno)),
                  duration_ms=elapsed_ms(t0))
        return kind.clear_error(c, e)
    reached("removed")
    drop(env, c.key)
    log.info(ev["cleared"], state=c.state, **kind.cleared_fields(env, c), duration_ms=elapsed_ms(t0))
    return None
