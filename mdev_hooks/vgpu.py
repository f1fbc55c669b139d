"""NVIDIA's vendor-specific vGPU interface (vGPU 17+, kernel >= 6.8; not mdev), only for domains that opt in with
`<device kind="nvidia-vf" parent="PF or VF" type="ID"/>` next to a `<hostdev type='pci' managed='yes'>` on the VF.

The VF's nvidia/current_vgpu_type gets the type id before start and 0 after stop; the ledger claim is keyed by the
VF address; the VF is used under its PF's lock. Imported only when a domain has such an entry.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import replace

from mdev_hooks import ledger as L
from mdev_hooks.domain import NVIDIA_VF, Domain, ManagedMdev
from mdev_hooks.errors import HookError
from mdev_hooks.faultpoint import reached
from mdev_hooks.steps import ADOPT, CREATE, KEEP, Env, Step, ms, take, what


def bind(domain: Domain, env: Env) -> Domain:
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


def validate(env: Env, m: ManagedMdev, claim: L.Claim | None) -> Step:
    """The step for an NVIDIA vendor-interface vGPU: set its type on the VF (create), or use the type already set."""
    sysfs, vf = env.sysfs, m.uuid
    pf = sysfs.physfn(vf)
    try:
        current = sysfs.current_vgpu_type(vf)
    except OSError as e:
        return Step(m, CREATE, None, f"cannot set {what(m)}: nvidia/current_vgpu_type cannot be read: {e.strerror}",
                    pf=pf)
    if current is None:
        if not sysfs.is_pci_device(vf):
            problem = f"cannot set {what(m)}: VF {vf} not found under /sys/bus/pci/devices (are the VFs enabled? " \
                      "sriov-manage -e)"
        else:
            problem = (f"cannot set {what(m)}: {vf} has no nvidia/current_vgpu_type (not an NVIDIA vGPU 17+ VF, "
                       "or not bound to the nvidia driver)")
        return Step(m, CREATE, None, problem, pf=pf)
    if current == m.type:
        return Step(m, KEEP if claim is not None else ADOPT, None, None, pf=pf)
    if current not in ("0", ""):
        return Step(m, CREATE, None, (
            f"cannot set {what(m)}: the VF already has vGPU type {current} (set by another tool or VM: nothing "
            "records it as this domain's); clear it with `echo 0 > nvidia/current_vgpu_type` if unused"), pf=pf)
    creatable = sysfs.creatable_vgpu_types(vf)
    if creatable is None:
        return Step(m, CREATE, None, f"cannot set {what(m)}: nvidia/creatable_vgpu_types cannot be read", pf=pf)
    if m.type not in creatable:
        now = ", ".join(f"{t} ({n})" for t, n in list(creatable.items())[:8]) or "none: the GPU is full"
        return Step(m, CREATE, 0, (
            f"cannot set {what(m)}: the VF cannot take type {m.type} now (creatable now: {now}; the list "
            "shrinks as the GPU fills, and a GPU holds one vGPU type at a time)"), pf=pf)
    return Step(m, CREATE, 1, None, pf=pf)


VGPU_HINTS = {
    errno.EINVAL: "the driver refused the type (not creatable on this VF now: the GPU is full or holds another "
                  "type)",
    errno.EBUSY: "the VF already has a vGPU type, or the driver is busy",
    errno.ENOENT: "the VF is no longer bound to the nvidia driver",
    errno.ENODEV: "the VF is going away",
}


def apply(env: Env, domain: Domain, step: Step, created: list[ManagedMdev], claimed: list[ManagedMdev]) -> None:
    """NVIDIA's vendor-specific interface: write the type id into the VF's nvidia/current_vgpu_type, then check
    it reads back. libvirt then hands the VF to qemu as a plain PCI hostdev."""
    m, vf = step.mdev, step.mdev.uuid
    log = env.log.bind(vf=vf, pf=step.pf, type=m.type, kind=NVIDIA_VF)
    t0 = time.monotonic()
    if step.action == KEEP:
        log.info("vgpu.kept", reason="already set for this domain", duration_ms=ms(t0))
        return
    if env.cfg.dry_run:
        log.info("vgpu.would_set" if step.action == CREATE else "vgpu.would_adopt", duration_ms=ms(t0))
        return
    state = L.INTENT if step.action == CREATE else L.ADOPTED
    claim = L.Claim(vf, domain.uuid, domain.name, vf, m.type, state, os.getpid(), time.time(), pf=step.pf or "",
                    kind=NVIDIA_VF)
    take(env, domain, claim, log)
    claimed.append(m)
    reached("intent_written")
    if step.action == ADOPT:
        log.info("vgpu.adopted", reason="the VF already has this type, owned by no domain", duration_ms=ms(t0))
        return
    try:
        env.sysfs.set_vgpu_type(vf, m.type)
    except OSError as e:
        code = errno.errorcode.get(e.errno or 0, str(e.errno))
        log.error("vgpu.set_failed", errno=code, duration_ms=ms(t0))
        now = env.sysfs.creatable_vgpu_types(vf)
        listed = "unreadable" if now is None else (", ".join(now) or "none")
        raise HookError(f"cannot set {what(m)}: writing {m.type} to nvidia/current_vgpu_type failed: the kernel "
                        f"said {e.strerror or 'error'} ({code}): {VGPU_HINTS.get(e.errno or 0, 'see dmesg')} "
                        f"(creatable now: {listed})") from None
    created.append(m)
    reached("created")
    try:
        current = env.sysfs.current_vgpu_type(vf)
    except OSError:
        current = "unreadable"
    if current != m.type:
        raise HookError(f"set {what(m)} but nvidia/current_vgpu_type reads {current or 'nothing'}; rolled back")
    reached("verified")
    env.ledger.update(claim.with_state(L.CREATED))
    reached("ledger_updated")
    log.info("vgpu.set", duration_ms=ms(t0))


def not_clearable(env: Env, c: L.Claim) -> str | None:
    """At release: why the VF of claim `c` cannot be cleared now, or None. The VF exists but has no nvidia/ files:
    it is still bound to vfio-pci (libvirt could not give it back to the nvidia driver)."""
    if not env.sysfs.is_pci_device(c.mdev) or env.sysfs.is_vgpu_vf(c.mdev):
        return None
    return unbound(c)


def unbound(c: L.Claim) -> str:
    """The line for a VF whose type cannot be cleared because it is not bound to the nvidia driver."""
    node = "pci_" + c.mdev.replace(":", "_").replace(".", "_")
    return (f"could not clear vGPU type {c.type} on VF {c.mdev}: it has no nvidia/current_vgpu_type (not bound to "
            f"the nvidia driver: `virsh nodedev-reattach {node}`), then run `mdev-hooks gc`")
