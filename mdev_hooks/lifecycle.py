"""prepare and release: validation, per-parent locks, the ledger, create/verify/rollback, remove.

`validate` is the single source of truth for "would this start work" and is shared with `mdev-hooks plan`.
SR-IOV VF choice is in sriov.py, NVIDIA's vendor interface (kind="nvidia-vf") in vgpu.py, what every kind of device
shares (Env, Step, the ledger claim) in steps.py.
"""

from __future__ import annotations

import errno
import json
import os
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from mdev_hooks import ledger as L
from mdev_hooks.config import Config
from mdev_hooks.domain import NVIDIA_VF, Domain, ManagedMdev
from mdev_hooks.errors import HookError
from mdev_hooks.faultpoint import reached
from mdev_hooks.locks import parent_locks
from mdev_hooks.names import is_pci_address
from mdev_hooks.sriov import lock_name, pick_vf, sriov_vfs
from mdev_hooks.steps import ADOPT, CREATE, KEEP, Env, Step, current_device, drop, ms, owned_elsewhere, take, what
from mdev_hooks.sysfs import MdevDevice

NVIDIA_VENDOR = "0x10de"
# "no instance left" differs per driver and kernel version (kernel-mdev-abi.md §2.2): never assume one errno
EXHAUSTED = {errno.EUSERS, errno.ENOSPC, errno.EPERM, errno.ENOMEM}


def _in_use(env: Env, m: ManagedMdev, limit: int = 4) -> str:
    used = env.sysfs.devices_of_type(m.parent, m.type)
    if not used:
        return ""
    shown = ", ".join(used[:limit]) + (", ..." if len(used) > limit else "")
    return f"; {len(used)} in use: {shown}"


def _parent_problem(env: Env, m: ManagedMdev) -> str | None:
    sysfs = env.sysfs
    if sysfs.parent_dir(m.parent) is None:
        vfs = sriov_vfs(env, m.parent)
        if vfs is not None:  # an SR-IOV PF: fine if one of its VFs offers the type (which one: at prepare)
            if any(sysfs.offers(vf, m.type) for vf in vfs):
                return None
            return pick_vf(env, m, vfs, set()).problem
        if sysfs.is_nvidia_vendor_vfio(m.parent):
            return (
                f"cannot create {what(m)}: {m.parent} uses NVIDIA's vendor-specific vGPU interface "
                "(vGPU 17+ on kernel >= 6.8: nvidia/creatable_vgpu_types, no mdev_supported_types), which is not "
                "mdev; give the VM the VF as a <hostdev type='pci' managed='yes'> and opt in with "
                f"<device kind=\"{NVIDIA_VF}\" parent=\"PF or VF\" type=\"ID\"/> (docs/advanced-devices.md)"
            )
        known = sysfs.parents()
        hint = f"known parents: {', '.join(known[:8])}" if known else "no mdev parent is registered on this host"
        return f"cannot create {what(m)}: parent {m.parent} not found under /sys/class/mdev_bus ({hint})"
    if not sysfs.has_mdev_types(m.parent):
        return f"cannot create {what(m)}: parent {m.parent} is not registered for mdev support"
    if not sysfs.offers(m.parent, m.type):
        offered = sysfs.types(m.parent)
        return (
            f"cannot create {what(m)}: parent {m.parent} does not offer type {m.type} "
            f"(offered: {', '.join(offered[:12]) or 'none'}; see `mdev-hooks types --parent {m.parent}`)"
        )
    return None


def parent_problem(env: Env, m: ManagedMdev) -> str | None:
    """Why this host cannot create m.type on m.parent (policy, parent missing, NVIDIA vendor VFIO, not registered,
    type not offered), or None. The check validate() makes for a device to create; `mdev-hooks add` uses it too."""
    return policy_problem(env.cfg, m) or _parent_problem(env, m)


def _globs_text(globs: tuple[str, ...]) -> str:
    return "[" + ", ".join(json.dumps(g) for g in globs) + "]"


def policy_problem(cfg: Config, m: ManagedMdev) -> str | None:
    """The admin's allowed_parents / allowed_types rule that refuses m, or None (no policy: everything allowed)."""
    from fnmatch import fnmatchcase

    for key, globs, value in (("allowed_parents", cfg.allowed_parents, m.parent),
                              ("allowed_types", cfg.allowed_types, m.type)):
        if globs is not None and not any(fnmatchcase(value, g) for g in globs):
            name = "parent" if key == "allowed_parents" else "type"
            return (f"{what(m)}: {name} {value} is not allowed by {key} = {_globs_text(globs)} "
                    f"in {cfg.path or 'the configuration'}")
    return None


def _existing_problem(m: ManagedMdev, dev: MdevDevice) -> str | None:
    if (dev.parent, dev.type) != (m.parent, m.type):
        return (
            f"cannot use mdev {m.uuid}: it already exists as type {dev.type or '?'} on {dev.parent}, "
            f"not {m.type} on {m.parent}; remove it or give the domain another UUID"
        )
    return None


def map_parents(domain: Domain, cfg: Config, log: Any) -> Domain:
    """The domain with config [parents] applied: each parent the table names is replaced by this host's name for
    it (once, no chains), remembered in mapped_from and logged. Everything after (policy, validation, create,
    the ledger) sees this host's name; release goes by the ledger, which records it."""
    table = dict(cfg.parents)
    if not table or not any(m.parent in table for m in [*domain.mdevs, *domain.vf_entries]):
        return domain

    def mapped(m: ManagedMdev) -> ManagedMdev:
        if m.parent in table and m.source != "mdevctl":  # mdevctl's definitions name this host's parents
            log.info("mdev.parent_mapped", mdev=m.uuid, type=m.type, domain_parent=m.parent,
                     host_parent=table[m.parent], config=cfg.path)
            m = replace(m, parent=table[m.parent], mapped_from=m.parent)
        return m

    return replace(domain, mdevs=[mapped(m) for m in domain.mdevs], vf_entries=[mapped(m) for m in domain.vf_entries])


def resolve(domain: Domain, env: Env) -> Domain:
    """The domain as this host sees it: config [parents] applied, nvidia-vf entries bound to their VFs."""
    domain = map_parents(domain, env.cfg, env.log)
    if not domain.vf_entries:
        return domain
    from mdev_hooks import vgpu

    return vgpu.bind(domain, env)


def validate(domain: Domain, env: Env) -> list[Step]:
    """What prepare would do for each managed mdev, and why it would fail. Reads only; no writes."""
    steps: list[Step] = []
    taken: set[str] = set()  # SR-IOV VFs this domain takes
    for m in domain.mdevs:
        refused = policy_problem(env.cfg, m)
        if refused:  # the admin's rule comes first, whatever exists: a domain may not ask for it at all
            env.log.warning("mdev.policy_refused", mdev=m.uuid, parent=m.parent, type=m.type, problem=refused)
            steps.append(Step(m, CREATE, None, refused))
            continue
        if env.cfg.allowed_parents is not None or env.cfg.allowed_types is not None:
            env.log.info("mdev.policy_allowed", mdev=m.uuid, parent=m.parent, type=m.type)
        claim = env.ledger.get(m.uuid)
        if claim is not None and claim.domain_uuid != domain.uuid:
            steps.append(Step(m, CREATE, None, owned_elsewhere(m.kind, m.uuid, claim)))
            continue
        if m.kind == NVIDIA_VF:
            from mdev_hooks import vgpu

            steps.append(vgpu.validate(env, m, claim))
            continue
        dev = env.sysfs.device(m.uuid)
        vfs = sriov_vfs(env, m.parent)
        if dev is not None:
            action = KEEP if claim is not None else ADOPT
            if vfs is not None and dev.parent in vfs:  # SR-IOV: it exists on a VF of the PF named
                taken.add(dev.parent)
                on_vf = replace(m, parent=dev.parent)
                steps.append(Step(on_vf, action, env.sysfs.available(dev.parent, m.type),
                                  _existing_problem(on_vf, dev), pf=m.parent,
                                  choice=f"the device exists on VF {dev.parent} of PF {m.parent}"))
                continue
            steps.append(Step(m, action, env.sysfs.available(m.parent, m.type), _existing_problem(m, dev)))
            continue
        if vfs is not None:
            steps.append(pick_vf(env, m, vfs, taken))
            continue
        problem = _parent_problem(env, m)
        steps.append(Step(m, CREATE, None if problem else env.sysfs.available(m.parent, m.type), problem))

    # enough free instances for everything this domain asks of each parent/type, before any write
    # (an nvidia-vf vGPU needs its own VF, which offers it or not: validated above)
    need = Counter((s.mdev.parent, s.mdev.type) for s in steps
                   if s.action == CREATE and s.problem is None and s.mdev.kind != NVIDIA_VF)
    out: list[Step] = []
    for s in steps:
        key = (s.mdev.parent, s.mdev.type)
        if s.action == CREATE and s.problem is None and s.mdev.kind != NVIDIA_VF and \
                (s.available is None or s.available < need[key]):
            avail = "unreadable" if s.available is None else str(s.available)
            wants = f"; this domain needs {need[key]}" if need[key] > 1 else ""
            s = replace(s, problem=(
                f"cannot create {what(s.mdev)}: no free instance "
                f"(available_instances={avail}{wants}{_in_use(env, s.mdev)})"
            ))
        out.append(s)
    return out


def first_problem(steps: list[Step]) -> str | None:
    return next((s.problem for s in steps if s.problem), None)


def check_incoming(domain: Domain, env: Env, op: str) -> None:
    """`migrate begin` / `restore begin` on the destination: would the `prepare` that follows get every managed
    mdev? The same validate() as prepare, without locks and without any write (sysfs, ledger): an early, clear
    refusal; prepare checks again under the parents' locks. Devices that already exist for this domain are fine."""
    problem = first_problem(validate(domain, env))
    if problem:
        when = "before the domain came to this host" if op == "migrate" else "before the saved domain is restored"
        raise HookError(f"{problem} (checked at {op} begin, {when})")
    env.log.info("incoming.checked", mdevs=[m.uuid for m in domain.mdevs])


def _create_error(env: Env, m: ManagedMdev, e: OSError) -> HookError:
    code = errno.errorcode.get(e.errno or 0, str(e.errno))
    text = f"{e.strerror or 'error'} ({code})"
    if e.errno in EXHAUSTED:
        avail = env.sysfs.available(m.parent, m.type)
        return HookError(
            f"cannot create {what(m)}: no free instance: the kernel said {text} "
            f"(available_instances={avail}{_in_use(env, m)})"
        )
    if e.errno == errno.EINVAL:
        # we only ever write a canonical UUID: EINVAL is the driver refusing (NVIDIA's closed driver, e.g.)
        return HookError(
            f"cannot create {what(m)}: the kernel said {text}: the driver refused it "
            f"(available_instances={env.sysfs.available(m.parent, m.type)}{_in_use(env, m)}; on NVIDIA: no instance "
            "left or another vGPU type already on this GPU); see dmesg"
        )
    hints = {
        errno.EEXIST: "a device with this UUID appeared meanwhile (another tool or VM?); check `mdev-hooks status`",
        errno.ENODEV: "the parent is being unregistered or is not operational",
        errno.ENOENT: "the parent or type disappeared meanwhile",
        errno.EAGAIN: "the driver is busy; retry the start",
        errno.EBUSY: "the driver is busy; retry the start",
        errno.EIO: "the driver failed; see dmesg",
    }
    hint = hints.get(e.errno or 0, "see dmesg")
    return HookError(f"cannot create {what(m)}: the kernel said {text}: {hint}")


def _rollback(env: Env, created: list[ManagedMdev], claimed: list[ManagedMdev]) -> None:
    """Undo this call's work in reverse order: remove created devices, then drop this call's claims."""
    for m in reversed(created):
        t0 = time.monotonic()
        try:
            _remove(env, m.uuid, m.kind)
        except OSError as e:
            env.log.error("mdev.rollback_failed", mdev=m.uuid, parent=m.parent, type=m.type, error=str(e))
            continue  # keep its claim: release (which libvirt runs next) retries
        reached("rolled_back")
        drop(env, m.uuid)
        env.log.warning("mdev.rollback", mdev=m.uuid, parent=m.parent, type=m.type, duration_ms=ms(t0))
    for m in reversed(claimed):
        if m not in created:
            drop(env, m.uuid)


def prepare(domain: Domain, env: Env) -> None:
    """Create every managed mdev of the domain, or none: raise HookError after rolling back."""
    if not domain.mdevs:
        return
    dry = env.cfg.dry_run
    if not dry:
        env.ledger.ensure_dir()
    locks = (lock_name(env, m.parent) for m in domain.mdevs)
    with parent_locks(env.cfg.lock_dir, locks, env.cfg.lock_timeout, env.log):
        reached("locked")
        steps = validate(domain, env)
        problem = first_problem(steps)
        if problem:
            raise HookError(problem)
        created: list[ManagedMdev] = []
        claimed: list[ManagedMdev] = []
        try:
            for step in steps:
                _apply(env, domain, step, created, claimed)
        except BaseException:
            if not dry:
                _rollback(env, created, claimed)
            raise


def _apply(env: Env, domain: Domain, step: Step, created: list[ManagedMdev], claimed: list[ManagedMdev]) -> None:
    m = step.mdev
    if m.kind == NVIDIA_VF:
        from mdev_hooks import vgpu

        vgpu.apply(env, domain, step, created, claimed)
        return
    log = env.log.bind(mdev=m.uuid, parent=m.parent, type=m.type)
    t0 = time.monotonic()
    if step.pf:
        log.info("mdev.vf_chosen", pf=step.pf, vf=m.parent, reason=step.choice)
    if m.attrs and step.action != CREATE:
        log.info("mdev.attrs_not_written", attrs=_attrs_text(m), reason="the device exists: used as it is")
    if step.action == KEEP:
        log.info("mdev.kept", reason="already created for this domain", duration_ms=ms(t0))
        return
    if env.cfg.dry_run:
        event = "mdev.would_create" if step.action == CREATE else "mdev.would_adopt"
        log.info(event, available_instances=step.available, duration_ms=ms(t0))
        for name, value in m.attrs if step.action == CREATE else ():
            log.info("mdev.would_write_attr", attr=name, value=value)
        return
    state = L.INTENT if step.action == CREATE else L.ADOPTED
    claim = L.Claim(m.uuid, domain.uuid, domain.name, m.parent, m.type, state, os.getpid(), time.time(),
                    attrs=tuple(f"{n}={v}" for n, v in m.attrs) if step.action == CREATE else (), pf=step.pf or "")
    take(env, domain, claim, log)
    claimed.append(m)
    reached("intent_written")
    if step.action == ADOPT:
        log.info("mdev.adopted", reason="exists with the requested parent and type, owned by no domain",
                 duration_ms=ms(t0))
        return
    try:
        env.sysfs.create(m.parent, m.type, m.uuid)
    except OSError as e:
        log.error("mdev.create_failed", errno=errno.errorcode.get(e.errno or 0), duration_ms=ms(t0))
        if step.pf and e.errno in EXHAUSTED | {errno.EINVAL}:
            # NVIDIA's per-GPU maximum is not visible per VF before the create: say so for the PF
            again = pick_vf(env, replace(m, parent=step.pf), sriov_vfs(env, step.pf) or [], set())
            if again.problem:
                text = f"{e.strerror or 'error'} ({errno.errorcode.get(e.errno or 0, str(e.errno))})"
                raise HookError(f"{again.problem}; VF {m.parent} refused it: {text}") from None
        raise _create_error(env, m, e) from None
    created.append(m)
    reached("created")
    dev = env.sysfs.device(m.uuid)
    if dev is None or (dev.parent, dev.type) != (m.parent, m.type):
        found = "nothing" if dev is None else f"type {dev.type} on {dev.parent}"
        raise HookError(f"created {what(m)} but sysfs shows {found}; rolled back")
    reached("verified")
    _write_attrs(env, m, log)
    env.ledger.update(claim.with_state(L.CREATED))
    reached("ledger_updated")
    log.info("mdev.created", available_instances=env.sysfs.available(m.parent, m.type), duration_ms=ms(t0))


def _attrs_text(m: ManagedMdev) -> str:
    return ", ".join(f"{n}={v}" for n, v in m.attrs)


_ATTR_HINTS = {
    errno.ENODEV: "the id is above the host's maximum, or the device went away",
    errno.EBUSY: "already in use by another mdev (s390: an APQN belongs to one mdev only), or the driver is busy",
    errno.EADDRNOTAVAIL: "not reserved for this driver (s390 vfio-ap: /sys/bus/ap/apmask and aqmask)",
    errno.EINVAL: "the driver refused the value",
    errno.ERANGE: "the value is out of range",
}


def _write_attrs(env: Env, m: ManagedMdev, log: Any) -> None:
    """Write the device's <attr> values in document order into the device just created (mdevctl's semantics:
    any failure fails the start; the caller rolls the device back)."""
    for name, value in m.attrs:
        t0 = time.monotonic()
        try:
            env.sysfs.write_attr(m.uuid, name, value)
        except FileNotFoundError:
            try:
                have = ", ".join(env.sysfs.attrs(m.uuid)) or "none"
            except OSError:
                have = "?"
            log.error("mdev.attr_missing", attr=name, value=value)
            raise HookError(f"cannot create {what(m)}: the new device has no writable attribute {name} (to set "
                            f"{name}={value}; it has: {have}); rolled back") from None
        except OSError as e:
            code = errno.errorcode.get(e.errno or 0, str(e.errno))
            log.error("mdev.attr_failed", attr=name, value=value, errno=code, duration_ms=ms(t0))
            raise HookError(
                f"cannot create {what(m)}: writing attribute {name}={value} failed: the kernel said "
                f"{e.strerror or 'error'} ({code}): {_ATTR_HINTS.get(e.errno or 0, 'see dmesg')}; rolled back"
            ) from None
        reached("attr_written")
        log.info("mdev.attr_written", attr=name, value=value, duration_ms=ms(t0))


def _remove(env: Env, uuid: str, kind: str = "mdev") -> None:
    """Write `remove` (nvidia-vf: `0` into the VF's current_vgpu_type), retrying transient errors with a bounded
    backoff; a device already gone is success."""
    deadline = time.monotonic() + env.cfg.remove_timeout
    delay = 0.05
    while True:
        try:
            if kind == NVIDIA_VF:
                env.sysfs.set_vgpu_type(uuid, "0")
            else:
                env.sysfs.remove(uuid)
            return
        except FileNotFoundError:
            # an mdev is gone (removed by its driver or a concurrent remover); a VF without nvidia/ is only gone if
            # the VF itself is (VFs disabled): else it is bound to vfio-pci and its type is still set
            if kind == NVIDIA_VF and env.sysfs.is_pci_device(uuid):
                raise
            return
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EBUSY) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def _wait_gone(env: Env, uuid: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if env.sysfs.device(uuid) is None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def release(domain_uuid: str, env: Env, mdevs: Iterable[str] = ()) -> None:
    """Remove exactly the devices the ledger says this hook created for the domain. Idempotent.

    `mdevs`: the UUIDs the domain XML names as managed; one whose ledger entry is unreadable while its device
    exists cannot be proven ours (nor another's): it is left in place and reported, never silently forgotten."""
    env.ledger.check_dir()  # a planted or foreign-writable state_dir must not decide what gets removed
    claims, problems = env.ledger.for_domain(domain_uuid)
    for p in problems:
        env.log.warning("ledger.unreadable", problem=p)
    unproven: list[str] = []
    for uuid in mdevs:
        try:
            env.ledger.get(uuid)
        except L.CorruptClaim as e:
            if current_device(env.sysfs, NVIDIA_VF if is_pci_address(uuid) else "mdev", uuid) is not None:
                env.log.error("mdev.ownership_unknown", mdev=uuid, problem=str(e))
                unproven.append(f"left mdev {uuid} in place: {e}")
    if not claims:
        env.log.debug("release.nothing_owned")
        if unproven:
            raise HookError(unproven[0] + (f" (and {len(unproven) - 1} more)" if len(unproven) > 1 else ""))
        return
    if env.cfg.dry_run:
        for c in claims:
            event = "mdev.would_remove" if c.state != L.ADOPTED else "mdev.would_unadopt"
            env.log.info(event, mdev=c.mdev, parent=c.parent, type=c.type, state=c.state)
        return
    # NVIDIA's driver may remove the vGPU itself after the VM stops and breaks if someone removes it first:
    # wait for that OUTSIDE the lock so other domains on the parent are not held up.
    for c in claims:
        if c.state != L.ADOPTED and c.kind != NVIDIA_VF and env.sysfs.pci_vendor(c.parent) == NVIDIA_VENDOR:
            gone = _wait_gone(env, c.mdev, env.cfg.nvidia_release_wait)
            env.log.info("mdev.nvidia_wait", mdev=c.mdev, parent=c.parent, type=c.type, vanished=gone)
    failures: list[str] = []
    locks = (c.pf or lock_name(env, c.parent) for c in claims)
    with parent_locks(env.cfg.lock_dir, locks, env.cfg.lock_timeout, env.log):
        reached("release_locked")
        for c in sorted(claims, key=lambda c: c.time, reverse=True):
            failure = _release_one(env, c)
            if failure:
                failures.append(failure)
    failures += unproven
    if failures:
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise HookError(failures[0] + more)


_REMOVE_HINTS = {
    errno.EAGAIN: "still being created or in use after retrying for remove_timeout",
    errno.EBUSY: "still in use (a VFIO user?) after retrying for remove_timeout",
    errno.ENODEV: "its parent is being unregistered",
    errno.EIO: "the driver failed; see dmesg",
}


def _release_one(env: Env, c: L.Claim) -> str | None:
    is_vgpu = c.kind == NVIDIA_VF
    log = env.log.bind(vf=c.mdev, pf=c.pf, type=c.type, kind=c.kind) if is_vgpu else \
        env.log.bind(mdev=c.mdev, parent=c.parent, type=c.type)
    t0 = time.monotonic()
    if c.state == L.ADOPTED:
        drop(env, c.mdev)
        log.info("vgpu.unadopted" if is_vgpu else "mdev.unadopted", reason="adopted at prepare, left in place",
                 duration_ms=ms(t0))
        return None
    if is_vgpu:
        from mdev_hooks import vgpu

        problem = vgpu.not_clearable(env, c)
        if problem:
            log.error("vgpu.clear_failed", reason="no nvidia/current_vgpu_type", duration_ms=ms(t0))
            return problem
    dev = current_device(env.sysfs, c.kind, c.mdev)
    if dev is None:
        drop(env, c.mdev)
        log.info("mdev.already_gone", state=c.state, duration_ms=ms(t0))
        return None
    if (dev.parent, dev.type) != (c.parent, c.type):
        # not the device we made: someone replaced it; never remove it
        drop(env, c.mdev)
        log.warning("mdev.not_ours", found_parent=dev.parent, found_type=dev.type, duration_ms=ms(t0))
        return None
    try:
        _remove(env, c.mdev, c.kind)
    except OSError as e:
        code = errno.errorcode.get(e.errno or 0, str(e.errno))
        if is_vgpu:
            log.error("vgpu.clear_failed", errno=code, duration_ms=ms(t0))
            if e.errno == errno.ENOENT:  # unbound from nvidia between the check and the write
                return vgpu.unbound(c)
            return (f"could not clear vGPU type {c.type} on VF {c.mdev}: {e.strerror} ({code}: "
                    f"{_REMOVE_HINTS.get(e.errno or 0, 'the driver refused; see dmesg')}); clear it with "
                    f"`echo 0 > /sys/bus/pci/devices/{c.mdev}/nvidia/current_vgpu_type`, then run `mdev-hooks gc`")
        log.error("mdev.remove_failed", errno=code, duration_ms=ms(t0))
        return (
            f"could not remove mdev {c.mdev} (type {c.type} on {c.parent}): {e.strerror} ({code}: "
            f"{_REMOVE_HINTS.get(e.errno or 0, 'the driver refused; see dmesg')}); "
            f"remove it with `echo 1 > /sys/bus/mdev/devices/{c.mdev}/remove`, then run `mdev-hooks gc`"
        )
    reached("removed")
    drop(env, c.mdev)
    if is_vgpu:
        log.info("vgpu.cleared", state=c.state, duration_ms=ms(t0))
        return None
    log.info("mdev.removed", state=c.state, available_instances=env.sysfs.available(c.parent, c.type),
             duration_ms=ms(t0))
    return None
