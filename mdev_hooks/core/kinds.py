"""One small object per device kind, behind one interface: what exists now, how it is written and cleared, how
its log events and error lines are named. prepare.py and release.py run the same skeleton for every kind.

Invariant: adding a kind means one subclass of DeviceKind here (plus its plan in a module of its own) and its
tests; nothing else branches on the kind. NvidiaVf's heavier code (core/nvidia_vf.py) is imported only when used.
"""

from __future__ import annotations

import errno
from typing import Any, ClassVar

from mdev_hooks.core.env import Env, Existing, Step, describe
from mdev_hooks.core.ledger import Claim
from mdev_hooks.domain import ManagedDevice
from mdev_hooks.enums import Kind
from mdev_hooks.errors import HookError
from mdev_hooks.kernel import Sysfs, errnos
from mdev_hooks.names import is_pci_address

NVIDIA_VENDOR = "0x10de"


class DeviceKind:
    """The interface. `events` maps the skeleton's moments to this kind's log event names."""

    kind: Kind
    noun: str  # how error lines call the key's thing: "mdev", "VF"
    bus: str  # bus/<bus>/devices/<key> is the device's sysfs node
    counts_instances: bool  # validation sums available_instances per (parent, type) before any write
    events: ClassVar[dict[str, str]]
    kept_reason: str  # the log's words for a device this domain already has
    adopt_reason: str  # ... for one that exists and nobody owns

    def current(self, sysfs: Sysfs, key: str) -> Existing | None:
        """What exists now for a ledger key, None if nothing."""
        raise NotImplementedError

    def plan(self, env: Env, m: ManagedDevice, claim: Claim | None, taken: set[str]) -> Step:
        """The kind's own validation: what prepare would do, and why it would fail."""
        raise NotImplementedError

    def missing(self, env: Env, m: ManagedDevice) -> bool:
        """True while what the device needs is not registered yet (a driver still loading): worth waiting for."""
        raise NotImplementedError

    def bind_log(self, log: Any, key: str, parent: str, type_: str, pf: str | None) -> Any:
        return log.bind(mdev=key, parent=parent, type=type_)

    def claim_parent(self, m: ManagedDevice) -> str:
        """The parent recorded in the claim (what current() will report)."""
        return m.parent

    def write(self, sysfs: Sysfs, m: ManagedDevice) -> None:
        """Make the device (one write); OSError as the kernel gave it."""
        raise NotImplementedError

    def write_error(self, env: Env, step: Step, e: OSError) -> HookError:
        raise NotImplementedError

    def verify(self, sysfs: Sysfs, m: ManagedDevice) -> str | None:
        """After the write: the problem if the kernel does not show what was asked, else None."""
        raise NotImplementedError

    def written_fields(self, env: Env, m: ManagedDevice) -> dict[str, Any]:
        return {}

    def clear(self, sysfs: Sysfs, key: str) -> None:
        """Undo the device (one write); OSError as the kernel gave it."""
        raise NotImplementedError

    def gone(self, sysfs: Sysfs, key: str) -> bool:
        """After clear() raised ENOENT: is the device really gone (else the error stands)?"""
        return True

    def not_clearable(self, env: Env, c: Claim) -> str | None:
        """Before clearing: why it cannot be cleared now (the line for the user), or None."""
        return None

    def clear_error(self, c: Claim, e: OSError) -> str:
        raise NotImplementedError

    def cleared_fields(self, env: Env, c: Claim) -> dict[str, Any]:
        return {}

    def waits_for_driver(self, env: Env, c: Claim) -> bool:
        """Let the vendor's driver remove the device itself first (NVIDIA's mdev vGPUs)."""
        return False


class Mdev(DeviceKind):
    kind = Kind.MDEV
    noun = "mdev"
    bus = "mdev"
    counts_instances = True
    events: ClassVar[dict[str, str]] = {
        "kept": "mdev.kept", "would_create": "mdev.would_create", "would_adopt": "mdev.would_adopt",
        "adopted": "mdev.adopted", "write_failed": "mdev.create_failed", "written": "mdev.created",
        "unadopted": "mdev.unadopted", "clear_failed": "mdev.remove_failed", "cleared": "mdev.removed"}
    kept_reason = "already created for this domain"
    adopt_reason = "exists with the requested parent and type, owned by no domain"

    def current(self, sysfs: Sysfs, key: str) -> Existing | None:
        dev = sysfs.device(key)
        return None if dev is None else Existing(dev.parent, dev.type)

    def plan(self, env: Env, m: ManagedDevice, claim: Claim | None, taken: set[str]) -> Step:
        from mdev_hooks.core.plan import plan_mdev

        return plan_mdev(env, m, claim, taken)

    def missing(self, env: Env, m: ManagedDevice) -> bool:
        from mdev_hooks.core.plan import absent_parent

        return env.sysfs.device(m.key) is None and absent_parent(env, m)

    def write(self, sysfs: Sysfs, m: ManagedDevice) -> None:
        sysfs.create(m.parent, m.type, m.key)

    def write_error(self, env: Env, step: Step, e: OSError) -> HookError:
        from mdev_hooks.core.prepare import create_error

        return create_error(env, step, e)

    def verify(self, sysfs: Sysfs, m: ManagedDevice) -> str | None:
        dev = sysfs.device(m.key)
        if dev is None or (dev.parent, dev.type) != (m.parent, m.type):
            found = "nothing" if dev is None else f"type {dev.type} on {dev.parent}"
            return f"created {describe(m)} but sysfs shows {found}; rolled back"
        return None

    def written_fields(self, env: Env, m: ManagedDevice) -> dict[str, Any]:
        return {"available_instances": env.sysfs.available(m.parent, m.type)}

    def clear(self, sysfs: Sysfs, key: str) -> None:
        sysfs.remove(key)

    def clear_error(self, c: Claim, e: OSError) -> str:
        return (f"could not remove mdev {c.key} (type {c.type} on {c.parent}): {e.strerror} ({errnos.name(e)}: "
                f"{errnos.hint(errnos.REMOVE_HINTS, e, 'the driver refused; see dmesg')}); "
                f"remove it with `echo 1 > /sys/bus/mdev/devices/{c.key}/remove`, then run `mdev-hooks gc`")

    def cleared_fields(self, env: Env, c: Claim) -> dict[str, Any]:
        return {"available_instances": env.sysfs.available(c.parent, c.type)}

    def waits_for_driver(self, env: Env, c: Claim) -> bool:
        return env.sysfs.parent_vendor(c.parent) == NVIDIA_VENDOR


class NvidiaVf(DeviceKind):
    """NVIDIA vGPU 17+ (kernel >= 6.8, no mdev): a VF gets a type id in nvidia/current_vgpu_type; key = the VF."""

    kind = Kind.NVIDIA_VF
    noun = "VF"
    bus = "pci"
    counts_instances = False  # the VF offers the type or not: its plan decides
    events: ClassVar[dict[str, str]] = {
        "kept": "vgpu.kept", "would_create": "vgpu.would_set", "would_adopt": "vgpu.would_adopt",
        "adopted": "vgpu.adopted", "write_failed": "vgpu.set_failed", "written": "vgpu.set",
        "unadopted": "vgpu.unadopted", "clear_failed": "vgpu.clear_failed", "cleared": "vgpu.cleared"}
    kept_reason = "already set for this domain"
    adopt_reason = "the VF already has this type, owned by no domain"

    def current(self, sysfs: Sysfs, key: str) -> Existing | None:
        try:
            current = sysfs.current_vgpu_type(key)
        except OSError:
            return None
        return None if current in (None, "", "0") else Existing(key, current or "")

    def plan(self, env: Env, m: ManagedDevice, claim: Claim | None, taken: set[str]) -> Step:
        from mdev_hooks.core.nvidia_vf import plan_vf

        return plan_vf(env, m, claim)

    def bind_log(self, log: Any, key: str, parent: str, type_: str, pf: str | None) -> Any:
        return log.bind(vf=key, pf=pf, type=type_, kind=self.kind.value)

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

    def not_clearable(self, env: Env, c: Claim) -> str | None:
        if not env.sysfs.is_pci_device(c.key) or env.sysfs.is_vgpu_vf(c.key):
            return None
        return unbound(c)

    def clear_error(self, c: Claim, e: OSError) -> str:
        if e.errno == errno.ENOENT:  # unbound from nvidia between the check and the write
            return unbound(c)
        return (f"could not clear vGPU type {c.type} on VF {c.key}: {e.strerror} ({errnos.name(e)}: "
                f"{errnos.hint(errnos.REMOVE_HINTS, e, 'the driver refused; see dmesg')}); clear it with "
                f"`echo 0 > /sys/bus/pci/devices/{c.key}/nvidia/current_vgpu_type`, then run `mdev-hooks gc`")


def unbound(c: Claim) -> str:
    """The line for a VF whose type cannot be cleared because it is not bound to the nvidia driver."""
    node = "pci_" + c.key.replace(":", "_").replace(".", "_")
    return (f"could not clear vGPU type {c.type} on VF {c.key}: it has no nvidia/current_vgpu_type (not bound to "
            f"the nvidia driver: `virsh nodedev-reattach {node}`), then run `mdev-hooks gc`")


KINDS: dict[Kind, DeviceKind] = {Kind.MDEV: Mdev(), Kind.NVIDIA_VF: NvidiaVf()}


def kind_of(kind: Kind | str) -> DeviceKind:
    return KINDS[Kind(kind)]


def kind_of_key(key: str) -> DeviceKind:
    """The kind a ledger key names when its claim cannot be read: a PCI address is a VF, anything else an mdev."""
    return KINDS[Kind.NVIDIA_VF if is_pci_address(key) else Kind.MDEV]


def owned_elsewhere(kind: Kind | str, key: str, other: Claim) -> str:
    """The one line for a device (an mdev UUID, or a VF) that the ledger gives to another domain."""
    noun = kind_of(kind).noun
    return (f"cannot use {noun} {key}: the ledger gives it to domain {other.domain_name or '?'} "
            f"({other.domain_uuid}); two domains cannot share {'a' if noun == 'VF' else 'an'} {noun}")
