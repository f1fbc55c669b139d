"""NVIDIA vGPU 17+ (vendor-specific interface, kernel >= 6.8; not mdev): which VF each `<device kind="nvidia-vf">`
entry is for, and whether that VF can take the type now. The writes are core/kinds.py's NvidiaVf.

Invariant: the hook never chooses a VF (qemu gets the hostdev's address): an entry takes the managed PCI hostdev it
names, or the first in document order that is a VF of the PF it names. Imported only when a domain has such entries.
"""

from __future__ import annotations

from dataclasses import replace

from mdev_hooks.core.env import Env, Step, describe
from mdev_hooks.core.ledger import Claim
from mdev_hooks.domain import Domain, ManagedDevice
from mdev_hooks.enums import Action, Kind
from mdev_hooks.errors import HookError


def bind(domain: Domain, env: Env) -> Domain:
    """Give each kind="nvidia-vf" metadata entry its VF: the managed PCI hostdev whose address is the entry's parent
    (the entry names the VF), else the first managed PCI hostdev, in document order, that is a VF of the entry's
    parent (the entry names the PF; the kernel's physfn link decides) and that no other entry took. The VF is
    never chosen by the hook: libvirt passes exactly the hostdev's address to qemu. An entry that matches no
    hostdev is unused (a warning), like an mdev entry without its hostdev."""
    if not domain.vf_entries:
        return domain
    taken: dict[str, ManagedDevice] = {}
    named = [e for e in domain.vf_entries if e.parent in domain.pci_hostdevs]
    for e in named:
        if e.parent in taken:
            raise HookError(f"VF {e.parent}: the metadata has more than one <device kind=\"{Kind.NVIDIA_VF.value}\"> "
                            "for it; keep one")
        taken[e.parent] = replace(e, key=e.parent)
    unused = []
    for e in domain.vf_entries:
        if any(e is n for n in named):
            continue
        vf = next((a for a in domain.pci_hostdevs if a not in taken and env.sysfs.physfn(a) == e.parent), None)
        if vf is None:
            unused.append(e)
            continue
        taken[vf] = replace(e, key=vf)
        env.log.info("vgpu.vf_matched", pf=e.parent, vf=vf, type=e.type,
                     reason="the first managed PCI hostdev of the domain that is a VF of this PF")
    order = {e: i for i, e in enumerate(domain.pci_hostdevs)}
    vgpus = sorted(taken.values(), key=lambda m: order[m.key])
    return replace(domain, devices=[*domain.devices, *vgpus], unused=[*domain.unused, *unused])


def plan_vf(env: Env, m: ManagedDevice, claim: Claim | None) -> Step:
    """The step for an NVIDIA vendor-interface vGPU: set its type on the VF (create), or use the type already set."""
    sysfs, vf = env.sysfs, m.key
    pf = sysfs.physfn(vf)
    try:
        current = sysfs.current_vgpu_type(vf)
    except OSError as e:
        return Step(m, Action.CREATE, None,
                    f"cannot set {describe(m)}: nvidia/current_vgpu_type cannot be read: {e.strerror}", pf=pf)
    if current is None:
        if not sysfs.is_pci_device(vf):
            problem = f"cannot set {describe(m)}: VF {vf} not found under /sys/bus/pci/devices (are the VFs enabled? " \
                      "sriov-manage -e)"
        else:
            problem = (f"cannot set {describe(m)}: {vf} has no nvidia/current_vgpu_type (not an NVIDIA vGPU 17+ VF, "
                       "or not bound to the nvidia driver)")
        return Step(m, Action.CREATE, None, problem, pf=pf)
    if current == m.type:
        return Step(m, Action.KEEP if claim is not None else Action.ADOPT, None, None, pf=pf)
    if current not in ("0", ""):
        return Step(m, Action.CREATE, None, (
            f"cannot set {describe(m)}: the VF already has vGPU type {current} (set by another tool or VM: nothing "
            "records it as this domain's); clear it with `echo 0 > nvidia/current_vgpu_type` if unused"), pf=pf)
    creatable = sysfs.creatable_vgpu_types(vf)
    if creatable is None:
        return Step(m, Action.CREATE, None, f"cannot set {describe(m)}: nvidia/creatable_vgpu_types cannot be read",
                    pf=pf)
    if m.type not in creatable:
        now = ", ".join(f"{t} ({n})" for t, n in list(creatable.items())[:8]) or "none: the GPU is full"
        return Step(m, Action.CREATE, 0, (
            f"cannot set {describe(m)}: the VF cannot take type {m.type} now (creatable now: {now}; the list "
            "shrinks as the GPU fills, and a GPU holds one vGPU type at a time)"), pf=pf)
    return Step(m, Action.CREATE, 1, None, pf=pf)
