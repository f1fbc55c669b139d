"""prepare and release: validation, per-parent locks, the ledger, create/verify/rollback, remove.

`validate` is the single source of truth for "would this start work" and is shared with `mdev-hooks plan`.
"""

import errno
import json
import os
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from mdev_hooks import ledger as L
from mdev_hooks.config import Config
from mdev_hooks.domain import NVIDIA_VF, Domain, ManagedMdev
from mdev_hooks.errors import HookError
from mdev_hooks.faultpoint import reached
from mdev_hooks.locks import parent_locks
from mdev_hooks.names import is_pci_address
from mdev_hooks.sysfs import MdevDevice, Sysfs

CREATE, ADOPT, KEEP = "create", "adopt", "keep"
NVIDIA_VENDOR = "0x10de"
# "no instance left" differs per driver and kernel version (kernel-mdev-abi.md §2.2): never assume one errno
EXHAUSTED = {errno.EUSERS, errno.ENOSPC, errno.EPERM, errno.ENOMEM}


@dataclass(frozen=True)
class Env:
    cfg: Config
    sysfs: Sysfs
    ledger: L.Ledger
    log: Any

    @classmethod
    def from_config(cls, cfg: Config, log: Any) -> "Env":
        return cls(cfg, Sysfs(cfg.sysfs_root), L.Ledger(cfg.state_dir), log)


@dataclass(frozen=True)
class Step:
    mdev: ManagedMdev
    action: str  # create | adopt | keep
    available: int | None
    problem: str | None  # the one-line reason this start would fail, None if fine
    pf: str | None = None  # SR-IOV: the PF the domain named; mdev.parent is then the VF chosen on it
    choice: str | None = None  # SR-IOV: why that VF


def _what(m: ManagedMdev) -> str:
    mapped = f", mapped from {m.mapped_from} by [parents]" if m.mapped_from else ""
    if m.kind == NVIDIA_VF:
        on = f"VF {m.uuid} of PF {m.parent}" if m.uuid and m.parent != m.uuid else f"VF {m.uuid or m.parent}"
        return f"NVIDIA vGPU type {m.type} on {on}{mapped}"
    return f"mdev {m.uuid} (type {m.type} on {m.parent}{mapped})"


def current_device(sysfs: Sysfs, kind: str, key: str) -> MdevDevice | None:
    """What exists now for a ledger key: the mdev with that UUID, or (kind nvidia-vf) the vGPU type set on that VF
    as a device whose uuid and parent are the VF; None if nothing."""
    return sysfs.vgpu(key) if kind == NVIDIA_VF else sysfs.device(key)


def sriov_vfs(env: Env, parent: str) -> list[str] | None:
    """The VFs, in PCI address order, that are mdev parents, when `parent` is an SR-IOV physical function whose VFs
    are the mdev parents (NVIDIA Ampere and later) and not itself an mdev parent; else None."""
    sysfs = env.sysfs
    if sysfs.parent_dir(parent) is not None:
        return None
    return [vf for vf in sysfs.vfs(parent) if sysfs.parent_dir(vf) is not None] or None


def lock_name(env: Env, parent: str) -> str:
    """The lock a parent is used under: a VF's PF (the VFs of one PF are only used under the PF's lock, whether a
    domain names the PF or one of its VFs), else the parent itself."""
    return env.sysfs.physfn(parent) or parent


def _pick_vf(env: Env, m: ManagedMdev, vfs: list[str], taken: set[str]) -> Step:
    """The first VF of PF m.parent, in address order, that offers m.type and has a free instance, and that this
    domain does not take already; or a Step naming the problem."""
    sysfs = env.sysfs
    offering = [vf for vf in vfs if sysfs.offers(vf, m.type)]
    what = f"mdev {m.uuid} (type {m.type} on PF {m.parent})"
    if not offering:
        offered = sorted({t for vf in vfs[:4] for t in sysfs.types(vf)})
        return Step(m, CREATE, None, (
            f"cannot create {what}: none of the {len(vfs)} VFs of PF {m.parent} offers type {m.type} (offered: "
            f"{', '.join(offered[:12]) or 'none'}; see `mdev-hooks types --parent {vfs[0]}`)"), pf=m.parent)
    for i, vf in enumerate(offering):
        avail = sysfs.available(vf, m.type) if vf not in taken else None
        if avail is not None and avail >= 1:
            taken.add(vf)
            before = f"; {i} before it taken or full" if i else ""
            return Step(replace(m, parent=vf), CREATE, avail, None, pf=m.parent, choice=(
                f"the first of the {len(vfs)} VFs of PF {m.parent}, in address order, with a free instance of "
                f"{m.type}{before}"))
    used = Counter(d.type for d in sysfs.devices() if d.parent in vfs)
    in_use = ", ".join(f"{n} x {t}" for t, n in sorted(used.items())) or "none"
    mine = f"; this domain takes {len(taken & set(vfs))} of them" if taken & set(vfs) else ""
    return Step(m, CREATE, 0, (
        f"cannot create {what}: no VF of PF {m.parent} has a free instance of type {m.type} ({len(vfs)} VFs; "
        f"vGPUs on them: {in_use}{mine}; on NVIDIA: per-GPU maximum reached, or another type already on the GPU)"
    ), pf=m.parent)


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
            return _pick_vf(env, m, vfs, set()).problem
        if sysfs.is_nvidia_vendor_vfio(m.parent):
            return (
                f"cannot create {_what(m)}: {m.parent} uses NVIDIA's vendor-specific vGPU interface "
                "(vGPU 17+ on kernel >= 6.8: nvidia/creatable_vgpu_types, no mdev_supported_types), which is not "
                "mdev; give the VM the VF as a <hostdev type='pci' managed='yes'> and opt in with "
                f"<device kind=\"{NVIDIA_VF}\" parent=\"PF or VF\" type=\"ID\"/> (docs/advanced-devices.md)"
            )
        known = sysfs.parents()
        hint = f"known parents: {', '.join(known[:8])}" if known else "no mdev parent is registered on this host"
        return f"cannot create {_what(m)}: parent {m.parent} not found under /sys/class/mdev_bus ({hint})"
    if not sysfs.has_mdev_types(m.parent):
        return f"cannot create {_what(m)}: parent {m.parent} is not registered for mdev support"
    if not sysfs.offers(m.parent, m.type):
        offered = sysfs.types(m.parent)
        return (
            f"cannot create {_what(m)}: parent {m.parent} does not offer type {m.type} "
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
            what = "parent" if key == "allowed_parents" else "type"
            return (f"{_what(m)}: {what} {value} is not allowed by {key} = {_globs_text(globs)} "
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


def bind_vfs(domain: Domain, env: Env) -> Domain:
    """Give each kind="nvidia-vf" metadata entry its VF: the managed PCI hostdev whose address is the entry's parent
    (the entry names the VF), else the first managed PCI hostdev, in document order, that is a VF of the entry's
    parent (the entry names the PF; the kernel's physfn link decides) and that no other entry took. The VF is
    never chosen by the hook: libvirt passes exactly the hostdev's address to qemu. An entry that matches no
    hostdev is unused (a warning), like an mdev entry without its hostdev."""
    if not domain.vf_entries:
        return domain
    taken: dict[str, ManagedMdev] = {}
    named = [e for e in domain.vf_entries if e.parent in domain.pci_hostdevs]
    for e in named:
        if e.parent in taken:
            raise HookError(f"VF {e.parent}: the metadata has more than one <device kind=\"{NVIDIA_VF}\"> for it; "
                            "keep one")
        taken[e.parent] = replace(e, uuid=e.parent)
    unused = []
    for e in domain.vf_entries:
        if any(e is n for n in named):
            continue
        vf = next((a for a in domain.pci_hostdevs if a not in taken and env.sysfs.physfn(a) == e.parent), None)
        if vf is None:
            unused.append(e)
            continue
        taken[vf] = replace(e, uuid=vf)
        env.log.info("vgpu.vf_matched", pf=e.parent, vf=vf, type=e.type,
                     reason="the first managed PCI hostdev of the domain that is a VF of this PF")
    order = {e: i for i, e in enumerate(domain.pci_hostdevs)}
    vgpus = sorted(taken.values(), key=lambda m: order[m.uuid])
    return replace(domain, mdevs=[*domain.mdevs, *vgpus], unused=[*domain.unused, *unused])


def resolve(domain: Domain, env: Env) -> Domain:
    """The domain as this host sees it: config [parents] applied, nvidia-vf entries bound to their VFs."""
    return bind_vfs(map_parents(domain, env.cfg, env.log), env)


def _validate_vf(env: Env, m: ManagedMdev, claim: "L.Claim | None") -> Step:
    """The step for an NVIDIA vendor-interface vGPU: set its type on the VF (create), or use the type already set."""
    sysfs, vf = env.sysfs, m.uuid
    pf = sysfs.physfn(vf)
    try:
        current = sysfs.current_vgpu_type(vf)
    except OSError as e:
        return Step(m, CREATE, None, f"cannot set {_what(m)}: nvidia/current_vgpu_type cannot be read: {e.strerror}",
                    pf=pf)
    if current is None:
        if not sysfs.is_pci_device(vf):
            problem = f"cannot set {_what(m)}: VF {vf} not found under /sys/bus/pci/devices (are the VFs enabled? " \
                      "sriov-manage -e)"
        else:
            problem = (f"cannot set {_what(m)}: {vf} has no nvidia/current_vgpu_type (not an NVIDIA vGPU 17+ VF, "
                       "or not bound to the nvidia driver)")
        return Step(m, CREATE, None, problem, pf=pf)
    if current == m.type:
        return Step(m, KEEP if claim is not None else ADOPT, None, None, pf=pf)
    if current not in ("0", ""):
        return Step(m, CREATE, None, (
            f"cannot set {_what(m)}: the VF already has vGPU type {current} (set by another tool or VM: nothing "
            "records it as this domain's); clear it with `echo 0 > nvidia/current_vgpu_type` if unused"), pf=pf)
    creatable = sysfs.creatable_vgpu_types(vf)
    if creatable is None:
        return Step(m, CREATE, None, f"cannot set {_what(m)}: nvidia/creatable_vgpu_types cannot be read", pf=pf)
    if m.type not in creatable:
        now = ", ".join(f"{t} ({n})" for t, n in list(creatable.items())[:8]) or "none: the GPU is full"
        return Step(m, CREATE, 0, (
            f"cannot set {_what(m)}: the VF cannot take type {m.type} now (creatable now: {now}; the list "
            "shrinks as the GPU fills, and a GPU holds one vGPU type at a time)"), pf=pf)
    return Step(m, CREATE, 1, None, pf=pf)


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
            steps.append(Step(m, CREATE, None, (
                f"cannot use {_thing(m)}: the ledger gives it to domain {claim.domain_name or '?'} "
                f"({claim.domain_uuid}); two domains cannot share an {'VF' if m.kind == NVIDIA_VF else 'mdev'}"
            )))
            continue
        if m.kind == NVIDIA_VF:
            steps.append(_validate_vf(env, m, claim))
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
            steps.append(_pick_vf(env, m, vfs, taken))
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
                f"cannot create {_what(s.mdev)}: no free instance "
                f"(available_instances={avail}{wants}{_in_use(env, s.mdev)})"
            ))
        out.append(s)
    return out


def _thing(m: ManagedMdev) -> str:
    return f"VF {m.uuid}" if m.kind == NVIDIA_VF else f"mdev {m.uuid}"


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
            f"cannot create {_what(m)}: no free instance: the kernel said {text} "
            f"(available_instances={avail}{_in_use(env, m)})"
        )
    if e.errno == errno.EINVAL:
        # we only ever write a canonical UUID: EINVAL is the driver refusing (NVIDIA's closed driver, e.g.)
        return HookError(
            f"cannot create {_what(m)}: the kernel said {text}: the driver refused it "
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
    return HookError(f"cannot create {_what(m)}: the kernel said {text}: {hint}")


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
        _drop(env, m.uuid)
        env.log.warning("mdev.rollback", mdev=m.uuid, parent=m.parent, type=m.type, duration_ms=_ms(t0))
    for m in reversed(claimed):
        if m not in created:
            _drop(env, m.uuid)


def _drop(env: Env, uuid: str) -> None:
    """Forget a claim whose device is gone (or was never ours to remove). If state_dir has turned read-only or
    broken, log it and go on: removing the next device matters more, and a stale claim only makes the next
    start or release of the same domain redo a no-op (or refuse the UUID to other domains: the safe side)."""
    try:
        env.ledger.drop(uuid)
    except HookError as e:
        env.log.error("ledger.drop_failed", mdev=uuid, error=str(e))


def _ms(t0: float) -> float:
    return round((time.monotonic() - t0) * 1000, 2)


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


def _take(env: Env, domain: Domain, claim: L.Claim, log: Any) -> None:
    """Take the ledger claim for the step (exclusive), or raise: another domain owns the device."""
    other = env.ledger.claim(claim)
    if other is not None and other.domain_uuid == domain.uuid:
        # this domain's own claim from a start whose release never ran (libvirtd died with the hook); validate()
        # found no device for it, so there is nothing to keep: take it over (we hold the parent's lock)
        log.warning("ledger.stale_claim", state=other.state, pid=other.pid)
        env.ledger.update(claim)
        other = None
    if other is not None:
        what = f"VF {claim.mdev}" if claim.kind == NVIDIA_VF else f"mdev {claim.mdev}"
        raise HookError(
            f"cannot use {what}: the ledger gives it to domain {other.domain_name or '?'} "
            f"({other.domain_uuid}); two domains cannot share an {'VF' if claim.kind == NVIDIA_VF else 'mdev'}"
        )


def _apply(env: Env, domain: Domain, step: Step, created: list[ManagedMdev], claimed: list[ManagedMdev]) -> None:
    m = step.mdev
    if m.kind == NVIDIA_VF:
        _apply_vf(env, domain, step, created, claimed)
        return
    log = env.log.bind(mdev=m.uuid, parent=m.parent, type=m.type)
    t0 = time.monotonic()
    if step.pf:
        log.info("mdev.vf_chosen", pf=step.pf, vf=m.parent, reason=step.choice)
    if m.attrs and step.action != CREATE:
        log.info("mdev.attrs_not_written", attrs=_attrs_text(m), reason="the device exists: used as it is")
    if step.action == KEEP:
        log.info("mdev.kept", reason="already created for this domain", duration_ms=_ms(t0))
        return
    if env.cfg.dry_run:
        event = "mdev.would_create" if step.action == CREATE else "mdev.would_adopt"
        log.info(event, available_instances=step.available, duration_ms=_ms(t0))
        for name, value in m.attrs if step.action == CREATE else ():
            log.info("mdev.would_write_attr", attr=name, value=value)
        return
    state = L.INTENT if step.action == CREATE else L.ADOPTED
    claim = L.Claim(m.uuid, domain.uuid, domain.name, m.parent, m.type, state, os.getpid(), time.time(),
                    attrs=tuple(f"{n}={v}" for n, v in m.attrs) if step.action == CREATE else (), pf=step.pf or "")
    _take(env, domain, claim, log)
    claimed.append(m)
    reached("intent_written")
    if step.action == ADOPT:
        log.info("mdev.adopted", reason="exists with the requested parent and type, owned by no domain",
                 duration_ms=_ms(t0))
        return
    try:
        env.sysfs.create(m.parent, m.type, m.uuid)
    except OSError as e:
        log.error("mdev.create_failed", errno=errno.errorcode.get(e.errno or 0), duration_ms=_ms(t0))
        if step.pf and e.errno in EXHAUSTED | {errno.EINVAL}:
            # NVIDIA's per-GPU maximum is not visible per VF before the create: say so for the PF
            again = _pick_vf(env, replace(m, parent=step.pf), sriov_vfs(env, step.pf) or [], set())
            if again.problem:
                text = f"{e.strerror or 'error'} ({errno.errorcode.get(e.errno or 0, str(e.errno))})"
                raise HookError(f"{again.problem}; VF {m.parent} refused it: {text}") from None
        raise _create_error(env, m, e) from None
    created.append(m)
    reached("created")
    dev = env.sysfs.device(m.uuid)
    if dev is None or (dev.parent, dev.type) != (m.parent, m.type):
        found = "nothing" if dev is None else f"type {dev.type} on {dev.parent}"
        raise HookError(f"created {_what(m)} but sysfs shows {found}; rolled back")
    reached("verified")
    _write_attrs(env, m, log)
    env.ledger.update(claim.with_state(L.CREATED))
    reached("ledger_updated")
    log.info("mdev.created", available_instances=env.sysfs.available(m.parent, m.type), duration_ms=_ms(t0))


_VGPU_HINTS = {
    errno.EINVAL: "the driver refused the type (not creatable on this VF now: the GPU is full or holds another "
                  "type)",
    errno.EBUSY: "the VF already has a vGPU type, or the driver is busy",
    errno.ENOENT: "the VF is no longer bound to the nvidia driver",
    errno.ENODEV: "the VF is going away",
}


def _apply_vf(env: Env, domain: Domain, step: Step, created: list[ManagedMdev], claimed: list[ManagedMdev]) -> None:
    """NVIDIA's vendor-specific interface: write the type id into the VF's nvidia/current_vgpu_type, then check
    it reads back. libvirt then hands the VF to qemu as a plain PCI hostdev."""
    m, vf = step.mdev, step.mdev.uuid
    log = env.log.bind(vf=vf, pf=step.pf, type=m.type, kind=NVIDIA_VF)
    t0 = time.monotonic()
    if step.action == KEEP:
        log.info("vgpu.kept", reason="already set for this domain", duration_ms=_ms(t0))
        return
    if env.cfg.dry_run:
        log.info("vgpu.would_set" if step.action == CREATE else "vgpu.would_adopt", duration_ms=_ms(t0))
        return
    state = L.INTENT if step.action == CREATE else L.ADOPTED
    claim = L.Claim(vf, domain.uuid, domain.name, vf, m.type, state, os.getpid(), time.time(), pf=step.pf or "",
                    kind=NVIDIA_VF)
    _take(env, domain, claim, log)
    claimed.append(m)
    reached("intent_written")
    if step.action == ADOPT:
        log.info("vgpu.adopted", reason="the VF already has this type, owned by no domain", duration_ms=_ms(t0))
        return
    try:
        env.sysfs.set_vgpu_type(vf, m.type)
    except OSError as e:
        code = errno.errorcode.get(e.errno or 0, str(e.errno))
        log.error("vgpu.set_failed", errno=code, duration_ms=_ms(t0))
        now = env.sysfs.creatable_vgpu_types(vf)
        listed = "unreadable" if now is None else (", ".join(now) or "none")
        raise HookError(f"cannot set {_what(m)}: writing {m.type} to nvidia/current_vgpu_type failed: the kernel "
                        f"said {e.strerror or 'error'} ({code}): {_VGPU_HINTS.get(e.errno or 0, 'see dmesg')} "
                        f"(creatable now: {listed})") from None
    created.append(m)
    reached("created")
    try:
        current = env.sysfs.current_vgpu_type(vf)
    except OSError:
        current = "unreadable"
    if current != m.type:
        raise HookError(f"set {_what(m)} but nvidia/current_vgpu_type reads {current or 'nothing'}; rolled back")
    reached("verified")
    env.ledger.update(claim.with_state(L.CREATED))
    reached("ledger_updated")
    log.info("vgpu.set", duration_ms=_ms(t0))


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
            raise HookError(f"cannot create {_what(m)}: the new device has no writable attribute {name} (to set "
                            f"{name}={value}; it has: {have}); rolled back") from None
        except OSError as e:
            code = errno.errorcode.get(e.errno or 0, str(e.errno))
            log.error("mdev.attr_failed", attr=name, value=value, errno=code, duration_ms=_ms(t0))
            raise HookError(
                f"cannot create {_what(m)}: writing attribute {name}={value} failed: the kernel said "
                f"{e.strerror or 'error'} ({code}): {_ATTR_HINTS.get(e.errno or 0, 'see dmesg')}; rolled back"
            ) from None
        reached("attr_written")
        log.info("mdev.attr_written", attr=name, value=value, duration_ms=_ms(t0))


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
            return  # gone (removed by its driver or a concurrent remover)
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
    vgpu = c.kind == NVIDIA_VF
    log = env.log.bind(vf=c.mdev, pf=c.pf, type=c.type, kind=c.kind) if vgpu else \
        env.log.bind(mdev=c.mdev, parent=c.parent, type=c.type)
    t0 = time.monotonic()
    if c.state == L.ADOPTED:
        _drop(env, c.mdev)
        log.info("vgpu.unadopted" if vgpu else "mdev.unadopted", reason="adopted at prepare, left in place",
                 duration_ms=_ms(t0))
        return None
    if vgpu and env.sysfs.is_pci_device(c.mdev) and not env.sysfs.is_vgpu_vf(c.mdev):
        # the VF exists but its nvidia/ files do not: still bound to vfio-pci (libvirt's reattach failed?)
        log.error("vgpu.clear_failed", reason="no nvidia/current_vgpu_type", duration_ms=_ms(t0))
        return (f"could not clear vGPU type {c.type} on VF {c.mdev}: it has no nvidia/current_vgpu_type (not bound "
                f"to the nvidia driver: `virsh nodedev-reattach pci_{c.mdev.replace(':', '_').replace('.', '_')}`), "
                "then run `mdev-hooks gc`")
    dev = current_device(env.sysfs, c.kind, c.mdev)
    if dev is None:
        _drop(env, c.mdev)
        log.info("mdev.already_gone", state=c.state, duration_ms=_ms(t0))
        return None
    if (dev.parent, dev.type) != (c.parent, c.type):
        # not the device we made: someone replaced it; never remove it
        _drop(env, c.mdev)
        log.warning("mdev.not_ours", found_parent=dev.parent, found_type=dev.type, duration_ms=_ms(t0))
        return None
    try:
        _remove(env, c.mdev, c.kind)
    except OSError as e:
        code = errno.errorcode.get(e.errno or 0, str(e.errno))
        if vgpu:
            log.error("vgpu.clear_failed", errno=code, duration_ms=_ms(t0))
            return (f"could not clear vGPU type {c.type} on VF {c.mdev}: {e.strerror} ({code}: "
                    f"{_REMOVE_HINTS.get(e.errno or 0, 'the driver refused; see dmesg')}); clear it with "
                    f"`echo 0 > /sys/bus/pci/devices/{c.mdev}/nvidia/current_vgpu_type`, then run `mdev-hooks gc`")
        log.error("mdev.remove_failed", errno=code, duration_ms=_ms(t0))
        return (
            f"could not remove mdev {c.mdev} (type {c.type} on {c.parent}): {e.strerror} ({code}: "
            f"{_REMOVE_HINTS.get(e.errno or 0, 'the driver refused; see dmesg')}); "
            f"remove it with `echo 1 > /sys/bus/mdev/devices/{c.mdev}/remove`, then run `mdev-hooks gc`"
        )
    reached("removed")
    _drop(env, c.mdev)
    if vgpu:
        log.info("vgpu.cleared", state=c.state, duration_ms=_ms(t0))
        return None
    log.info("mdev.removed", state=c.state, available_instances=env.sysfs.available(c.parent, c.type),
             duration_ms=_ms(t0))
    return None
