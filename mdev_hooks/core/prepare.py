"""`prepare begin`: make every managed device of the domain, or none.

Invariant: under the parents' locks, each device is claimed in the ledger before it is written, verified after,
and any failure undoes this call's work in reverse order before the one-line error is raised.
"""

from __future__ import annotations

import errno
import os
import time
from typing import Any

from mdev_hooks.core.env import Env, Step, attrs_text, elapsed_ms
from mdev_hooks.core.faultpoint import reached
from mdev_hooks.core.kinds import DeviceKind, describe, kind_of, owned_elsewhere
from mdev_hooks.core.ledger import Claim
from mdev_hooks.core.locks import parent_locks
from mdev_hooks.core.plan import first_problem, validate
from mdev_hooks.core.release import clear_device, drop
from mdev_hooks.core.sriov import lock_name
from mdev_hooks.domain import Domain, ManagedDevice
from mdev_hooks.enums import Action, ClaimState
from mdev_hooks.errors import HookError
from mdev_hooks.kernel import errnos


def prepare(domain: Domain, env: Env) -> None:
    """Create every managed device of the domain, or none: raise HookError after rolling back."""
    if not domain.devices:
        return
    dry = env.cfg.dry_run
    if not dry:
        env.ledger.ensure_dir()
    wait_for_parents(domain, env)
    locks = (lock_name(env, m.parent) for m in domain.devices)
    with parent_locks(env.cfg.lock_dir, locks, env.cfg.lock_timeout, env.log):
        reached("locked")
        steps = validate(domain, env)
        problem = first_problem(steps)
        if problem:
            raise HookError(problem)
        created: list[ManagedDevice] = []
        claimed: list[ManagedDevice] = []
        try:
            for step in steps:
                apply(env, domain, step, created, claimed)
        except BaseException:
            if not dry:
                rollback(env, created, claimed)
            raise


def wait_for_parents(domain: Domain, env: Env) -> None:
    """Poll sysfs, holding no lock, up to parent_wait seconds, while a device's parent or type is not registered:
    domains autostarted at boot may start before the vGPU manager or GVT driver has registered them. What is still
    missing then fails in validation with the usual line."""
    def missing() -> list[ManagedDevice]:
        return [m for m in domain.devices if kind_of(m.kind).missing(env, m)]

    waiting = missing()
    if not waiting or env.cfg.parent_wait <= 0:
        return
    t0 = time.monotonic()
    env.log.info("parent.waiting", mdevs=[m.key for m in waiting], parents=sorted({m.parent for m in waiting}),
                 parent_wait=env.cfg.parent_wait)
    while waiting and time.monotonic() - t0 < env.cfg.parent_wait:
        time.sleep(min(0.25, max(0.0, env.cfg.parent_wait - (time.monotonic() - t0))))
        waiting = missing()
    env.log.info("parent.waited", appeared=not waiting, still_missing=[m.key for m in waiting],
                 duration_ms=elapsed_ms(t0))


def apply(env: Env, domain: Domain, step: Step, created: list[ManagedDevice], claimed: list[ManagedDevice]) -> None:
    """One device, the same skeleton for every kind: claim (intent) -> write -> verify -> attributes -> created."""
    m = step.device
    kind = kind_of(m.kind)
    log = kind.bind_log(env.log, m.key, m.parent, m.type, step.pf)
    ev = kind.events
    t0 = time.monotonic()
    if step.pf and step.choice:
        log.info("mdev.vf_chosen", pf=step.pf, vf=m.parent, reason=step.choice)
    if m.attrs and step.action != Action.CREATE:
        log.info("mdev.attrs_not_written", attrs=attrs_text(m), reason="the device exists: used as it is")
    if step.action == Action.KEEP:
        log.info(ev["kept"], reason=kind.kept_reason, duration_ms=elapsed_ms(t0))
        return
    if env.cfg.dry_run:
        would = ev["would_create"] if step.action == Action.CREATE else ev["would_adopt"]
        extra = {"available_instances": step.available} if kind.counts_instances else {}
        log.info(would, **extra, duration_ms=elapsed_ms(t0))
        for name, value in m.attrs if step.action == Action.CREATE else ():
            log.info("mdev.would_write_attr", attr=name, value=value)
        return
    state = ClaimState.INTENT if step.action == Action.CREATE else ClaimState.ADOPTED
    claim = Claim(m.key, domain.uuid, domain.name, kind.claim_parent(m), m.type, state, os.getpid(), time.time(),
                  attrs=tuple(f"{n}={v}" for n, v in m.attrs) if step.action == Action.CREATE else (),
                  pf=step.pf or "", kind=m.kind)
    take(env, domain, claim, log)
    claimed.append(m)
    reached("intent_written")
    if step.action == Action.ADOPT:
        log.info(ev["adopted"], reason=kind.adopt_reason, duration_ms=elapsed_ms(t0))
        return
    try:
        kind.write(env.sysfs, m)
    except OSError as e:
        log.error(ev["write_failed"], errno=errno.errorcode.get(e.errno or 0), duration_ms=elapsed_ms(t0))
        raise kind.write_error(env, step, e) from None
    created.append(m)
    reached("created")
    problem = kind.verify(env.sysfs, m)
    if problem:
        raise HookError(problem)
    reached("verified")
    write_attrs(env, m, log)
    env.ledger.update(claim.with_state(ClaimState.CREATED))
    reached("ledger_updated")
    log.info(ev["written"], **kind.written_fields(env, m), duration_ms=elapsed_ms(t0))


def take(env: Env, domain: Domain, claim: Claim, log: Any) -> None:
    """Take the ledger claim for the step (exclusive), or raise: another domain owns the device."""
    other = env.ledger.claim(claim)
    if other is not None and other.domain_uuid == domain.uuid:
        # this domain's own claim from a start whose release never ran (libvirtd died with the hook); validate()
        # found no device for it, so there is nothing to keep: take it over (we hold the parent's lock)
        log.warning("ledger.stale_claim", state=other.state, pid=other.pid)
        env.ledger.update(claim)
        other = None
    if other is not None:
        raise HookError(owned_elsewhere(claim.kind, claim.key, other))


def write_attrs(env: Env, m: ManagedDevice, log: Any) -> None:
    """Write the device's <attr> values in document order into the device just created (mdevctl's semantics: any
    failure fails the start; the caller rolls the device back). Every name is checked first, so a typo fails the
    start before the first value reaches the driver."""
    if not m.attrs:
        return
    try:
        have = env.sysfs.attrs(m.key)
    except OSError:
        have = None
    for name, value in m.attrs:
        if have is not None and name not in have:
            log.error("mdev.attr_missing", attr=name, value=value)
            raise HookError(f"cannot create {describe(m)}: the new device has no writable attribute {name} (to set "
                            f"{name}={value}; it has: {', '.join(have) or 'none'}); rolled back")
    for name, value in m.attrs:
        t0 = time.monotonic()
        try:
            env.sysfs.write_attr(m.key, name, value)
        except FileNotFoundError:
            log.error("mdev.attr_missing", attr=name, value=value)
            raise HookError(f"cannot create {describe(m)}: the new device has no writable attribute {name} (to set "
                            f"{name}={value}; it has: {', '.join(have or []) or '?'}); rolled back") from None
        except OSError as e:
            log.error("mdev.attr_failed", attr=name, value=value, errno=errnos.name(e), duration_ms=elapsed_ms(t0))
            raise HookError(
                f"cannot create {describe(m)}: writing attribute {name}={value} failed: the kernel said "
                f"{errnos.text(e)}: {errnos.hint(errnos.ATTR_HINTS, e)}; rolled back"
            ) from None
        reached("attr_written")
        log.info("mdev.attr_written", attr=name, value=value, duration_ms=elapsed_ms(t0))


def rollback(env: Env, created: list[ManagedDevice], claimed: list[ManagedDevice]) -> None:
    """Undo this call's work in reverse order: clear the devices it made, then drop this call's claims."""
    for m in reversed(created):
        kind: DeviceKind = kind_of(m.kind)
        t0 = time.monotonic()
        try:
            clear_device(env, kind, m.key)
        except OSError as e:
            env.log.error("mdev.rollback_failed", mdev=m.key, parent=m.parent, type=m.type, error=str(e))
            continue  # keep its claim: release (which libvirt runs next) retries
        reached("rolled_back")
        drop(env, m.key)
        env.log.warning("mdev.rollback", mdev=m.key, parent=m.parent, type=m.type, duration_ms=elapsed_ms(t0))
    for m in reversed(claimed):
        if m not in created:
            drop(env, m.key)
