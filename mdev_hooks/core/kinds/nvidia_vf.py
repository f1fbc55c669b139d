"""The nvidia_vf kind: NVIDIA vGPU 17+ (vendor-specific interface, kernel >= 6.8; not mdev): a VF gets a vGPU type id
written into its nvidia/current_vgpu_type; the key is the VF. Which VF each `<device kind="nvidia-vf">` entry is for,
whether that VF can take the type now, the writes and the words.

Invariant: the hook never chooses a VF (qemu gets the hostdev's address): an entry takes the managed PCI hostdev it
names, or the first in document order that is a VF of the PF it names. Imported only when a domain or a claim has
such a device.
"""

from __future__ import annotations

import errno
import os
from dataclasses import replace
from typing import Any, ClassVar

from mdev_hooks.core.env import Env, Existing, Step
from mdev_hooks.core.kinds import describe
from mdev_hooks.core.kinds.base import DeviceKind, event_names
from mdev_hooks.core.ledger import Claim
from mdev_hooks.domain import Domain, ManagedDevice
from mdev_hooks.enums import Action, Kind
from mdev_hooks.errors import HookError
from mdev_hooks.kernel import Sysfs, errnos


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
        env.log.info("nvidia_vf.vf_matched", pf=e.parent, vf=vf, type=e.type,
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


class NvidiaVf(DeviceKind):
    """NVIDIA vGPU 17+ (kernel >= 6.8, no mdev): a VF gets a type id in nvidia/current_vgpu_type; key = the VF."""

    kind = Kind.NVIDIA_VF.value
    noun = "VF"
    article = "a"
    key_label = "VF"
    bus = "pci"
    counts_instances = False  # the VF offers the type or not: its plan decides
    events: ClassVar[dict[str, str]] = event_names("nvidia_vf", "set", "set", "clear", "cleared")
    kept_reason = "already set for this domain"
    adopt_reason = "the VF already has this type, owned by no domain"
    gone_reason = "vGPU type cleared"
    status_fields: ClassVar[dict[str, Any]] = {"type_name": ""}
    unused_reason = "no <hostdev type='pci' managed='yes'> whose address is this VF or a VF of this PF"

    def label(self, m: ManagedDevice, mapped: str) -> str:
        on = f"VF {m.key} of PF {m.parent}" if m.key and m.parent != m.key else f"VF {m.key or m.parent}"
        return f"NVIDIA vGPU type {m.type} on {on}{mapped}"

    def describe_claim(self, c: Claim) -> str:
        return f"vGPU type {c.type} on VF {c.key}"

    def type_cell(self, type_: str) -> str:
        return f"vGPU {type_}"

    def bind(self, domain: Domain, env: Env) -> Domain:
        return bind(domain, env)

    def current(self, sysfs: Sysfs, key: str) -> Existing | None:
        try:
            current = sysfs.current_vgpu_type(key)
        except OSError:
            return None
        return None if current in (None, "", "0") else Existing(key, current or "")

    def plan(self, env: Env, m: ManagedDevice, claim: Claim | None, taken: set[str]) -> Step:
        return plan_vf(env, m, claim)

    def bind_log(self, log: Any, key: str, parent: str, type_: str, pf: str | None) -> Any:
        return log.bind(vf=key, pf=pf, type=type_, kind=self.kind)

    def claim_parent(self, m: ManagedDevice) -> str:
        return m.key

    def missing(self, env: Env, m: ManagedDevice) -> bool:
        try:  # no nvidia/current_vgpu_type yet: the VF is not there, or not bound to the nvidia driver yet
            return env.sysfs.current_vgpu_type(m.key) is None
        except OSError:
            return False

    def write(self, sysfs: Sysfs, m: ManagedDevice) -> None:
        sysfs.set_vgpu_type(m.key, m.type)

    def write_error(self, env: Env, step: Step, e: OSError) -> HookError:
        m = step.device
        now = env.sysfs.creatable_vgpu_types(m.key)
        listed = "unreadable" if now is None else (", ".join(now) or "none")
        return HookError(f"cannot set {describe(m)}: writing {m.type} to nvidia/current_vgpu_type failed: the "
                         f"kernel said {errnos.text(e)}: {errnos.hint(errnos.VGPU_HINTS, e)} (creatable now: {listed})")

    def verify(self, sysfs: Sysfs, m: ManagedDevice) -> str | None:
        try:
            current = sysfs.current_vgpu_type(m.key)
        except OSError:
            current = "unreadable"
        if current != m.type:
            return f"set {describe(m)} but nvidia/current_vgpu_type reads {current or 'nothing'}; rolled back"
        return None

    def clear(self, sysfs: Sysfs, key: str) -> None:
        sysfs.set_vgpu_type(key, "0")

    def gone(self, sysfs: Sysfs, key: str) -> bool:
        # a VF without nvidia/ is only gone if the VF itself is (VFs disabled): else it is bound to vfio-pci and its
        # type is still set
        return not sysfs.is_pci_device(key)

    def not_clearable(self, env: Env, c: Claim) -> tuple[str, str] | None:
        if not env.sysfs.is_pci_device(c.key) or env.sysfs.takes_vgpu_type(c.key):
            return None
        return "no nvidia/current_vgpu_type", unbound(c)

    def clear_error(self, c: Claim, e: OSError) -> str:
        if e.errno == errno.ENOENT:  # unbound from nvidia between the check and the write
            return unbound(c)
        return (f"could not clear vGPU type {c.type} on VF {c.key}: {e.strerror} ({errnos.name(e)}: "
                f"{errnos.hint(errnos.REMOVE_HINTS, e, 'the driver refused; see dmesg')}); clear it with "
                f"`echo 0 > /sys/bus/pci/devices/{c.key}/nvidia/current_vgpu_type`, then run `mdev-hooks gc`")


    def plan_row(self, step: Step, env: Env) -> dict[str, Any]:
        m = step.device
        names = env.sysfs.creatable_vgpu_types(m.key) or {}
        return dict(parent=m.key, type=m.type, type_name=names.get(m.type, ""), description="",
                    available=step.available, attrs=[],
                    vf_choice=None if m.parent == m.key else
                    f"the domain's managed PCI hostdev {m.key} is a VF of {m.parent}",
                    domain_parent=m.mapped_from or None, source=m.source, source_path=None, mdevctl_ignored=[],
                    vf=m.key, domain_named=m.parent)

    def plan_action(self, step: Step, env: Env) -> str:
        m = step.device
        on = f"VF {m.key}" + (f" of PF {step.pf}" if step.pf else "")
        path = os.path.join(env.sysfs.root, "bus", "pci", "devices", m.key, "nvidia", "current_vgpu_type")
        return {
            Action.CREATE: f"set NVIDIA vGPU type {m.type} on {on}: write {m.type} to {path}; libvirt then gives the "
                           "VF to the VM as a PCI hostdev; write 0 when the domain stops",
            Action.ADOPT: f"use {on} as it is (it already has vGPU type {m.type}, owned by no domain); leave it set "
                          "when the domain stops",
            Action.KEEP: f"keep vGPU type {m.type} on {on}: the hook already set it for this domain",
        }[step.action]

    def ignored_line(self, key: str, parent: str, type_: str) -> str:
        return (f"ignored: metadata entry kind=\"{Kind.NVIDIA_VF.value}\" parent={parent} type={type_}: "
                "no <hostdev type='pci' managed='yes'> of the domain is that VF or a VF of that PF")


def unbound(c: Claim) -> str:
    """The line for a VF whose type cannot be cleared because it is not bound to the nvidia driver."""
    node = "pci_" + c.key.replace(":", "_").replace(".", "_")
    return (f"could not clear vGPU type {c.type} on VF {c.key}: it has no nvidia/current_vgpu_type (not bound to "
            f"the nvidia driver: `virsh nodedev-reattach {node}`), then run `mdev-hooks gc`")


KIND = NvidiaVf()
