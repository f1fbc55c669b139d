"""The mdev kind (the default): a mediated device created by writing its UUID into its parent's type, on the parent
the domain names or (SR-IOV, core/sriov.py) on a VF of it; its planning, writes, checks and words.

Invariant: an mdev is only ever created on a parent that offers its type with a free instance, and removed only
through its own `remove` file; every line about an mdev names its UUID, type and parent.
"""

from __future__ import annotations

import errno
import os
from dataclasses import replace
from typing import Any, ClassVar

from mdev_hooks.core.env import Env, Existing, Step, attrs_text
from mdev_hooks.core.kinds import describe
from mdev_hooks.core.kinds.base import DeviceKind, event_names
from mdev_hooks.core.ledger import Claim
from mdev_hooks.core.sriov import pick_vf, sriov_vfs
from mdev_hooks.domain import ManagedDevice
from mdev_hooks.enums import Action, Kind
from mdev_hooks.errors import HookError
from mdev_hooks.kernel import MdevDevice, Sysfs, errnos

NVIDIA_VENDOR = "0x10de"


def in_use(env: Env, m: ManagedDevice, limit: int = 4) -> str:
    """`; N in use: U1, U2, ...` of the devices of m's parent and type, for "no free instance" lines."""
    used = env.sysfs.devices_of_type(m.parent, m.type)
    if not used:
        return ""
    shown = ", ".join(used[:limit]) + (", ..." if len(used) > limit else "")
    return f"; {len(used)} in use: {shown}"


def _existing_problem(m: ManagedDevice, dev: MdevDevice) -> str | None:
    if (dev.parent, dev.type) != (m.parent, m.type):
        return (
            f"cannot use mdev {m.key}: it already exists as type {dev.type or '?'} on {dev.parent}, "
            f"not {m.type} on {m.parent}; remove it or give the domain another UUID"
        )
    return None


class Mdev(DeviceKind):
    kind = Kind.MDEV.value
    noun = "mdev"
    article = "an"
    key_label = "UUID"
    bus = "mdev"
    counts_instances = True
    mdevctl_defines = True
    events: ClassVar[dict[str, str]] = {**event_names("mdev", "create", "created", "remove", "removed"),
                                        "driver_waited": "mdev.nvidia_wait"}
    kept_reason = "already created for this domain"
    adopt_reason = "exists with the requested parent and type, owned by no domain"
    unused_reason = "no <hostdev type='mdev' managed='yes'> with this UUID"

    def label(self, m: ManagedDevice, mapped: str) -> str:
        return f"mdev {m.key} (type {m.type} on {m.parent}{mapped})"

    def describe_claim(self, c: Claim) -> str:
        return f"mdev {c.key} (type {c.type} on {c.parent})"

    def current(self, sysfs: Sysfs, key: str) -> Existing | None:
        dev = sysfs.device(key)
        return None if dev is None else Existing(dev.parent, dev.type)

    def plan(self, env: Env, m: ManagedDevice, claim: Claim | None, taken: set[str]) -> Step:
        """Keep or adopt an existing device, take a VF of an SR-IOV PF, or create it on its parent."""
        dev = env.sysfs.device(m.key)
        vfs = sriov_vfs(env, m.parent)
        if dev is not None:
            action = Action.KEEP if claim is not None else Action.ADOPT
            if vfs is not None and dev.parent in vfs:  # SR-IOV: it exists on a VF of the PF named
                taken.add(dev.parent)
                on_vf = replace(m, parent=dev.parent)
                return Step(on_vf, action, env.sysfs.available(dev.parent, m.type), _existing_problem(on_vf, dev),
                            pf=m.parent, choice=f"the device exists on VF {dev.parent} of PF {m.parent}")
            return Step(m, action, env.sysfs.available(m.parent, m.type), _existing_problem(m, dev))
        if vfs is not None:
            return pick_vf(env, m, vfs, taken)
        problem = self.parent_problem(env, m)
        return Step(m, Action.CREATE, None if problem else env.sysfs.available(m.parent, m.type), problem)

    def parent_problem(self, env: Env, m: ManagedDevice) -> str | None:
        """Parent missing, NVIDIA's vendor interface named as an mdev parent, not registered, type not offered."""
        sysfs, what = env.sysfs, describe(m)
        if sysfs.parent_dir(m.parent) is None:
            vfs = sriov_vfs(env, m.parent)
            if vfs is not None:  # an SR-IOV PF: fine if one of its VFs offers the type (which one: at prepare)
                if any(sysfs.offers(vf, m.type) for vf in vfs):
                    return None
                return pick_vf(env, m, vfs, set()).problem
            if sysfs.on_nvidia_vendor_interface(m.parent):
                return (
                    f"cannot create {what}: {m.parent} uses NVIDIA's vendor-specific vGPU interface "
                    "(vGPU 17+ on kernel >= 6.8: nvidia/creatable_vgpu_types, no mdev_supported_types), which is not "
                    "mdev; give the VM the VF as a <hostdev type='pci' managed='yes'> and opt in with "
                    f"<device kind=\"{Kind.NVIDIA_VF.value}\" parent=\"PF or VF\" type=\"ID\"/> "
                    "(docs/advanced-devices.md)"
                )
            known = sysfs.parents()
            hint = f"known parents: {', '.join(known[:8])}" if known else "no mdev parent is registered on this host"
            return f"cannot create {what}: parent {m.parent} not found under /sys/class/mdev_bus ({hint})"
        if not sysfs.has_mdev_types(m.parent):
            return f"cannot create {what}: parent {m.parent} is not registered for mdev support"
        if not sysfs.offers(m.parent, m.type):
            offered = sysfs.types(m.parent)
            return (
                f"cannot create {what}: parent {m.parent} does not offer type {m.type} "
                f"(offered: {', '.join(offered[:12]) or 'none'}; see `mdev-hooks types --parent {m.parent}`)"
            )
        return None

    def no_free_instance(self, env: Env, m: ManagedDevice, available: int | None, need: int) -> str:
        avail = "unreadable" if available is None else str(available)
        wants = f"; this domain needs {need}" if need > 1 else ""
        return f"cannot create {describe(m)}: no free instance (available_instances={avail}{wants}{in_use(env, m)})"

    def missing(self, env: Env, m: ManagedDevice) -> bool:
        """The parent or type is not registered (yet): what parent_wait waits for. A parent of NVIDIA's vendor
        interface named as an mdev parent is a mistake, not a delay."""
        return (env.sysfs.device(m.key) is None and self.parent_problem(env, m) is not None
                and not env.sysfs.on_nvidia_vendor_interface(m.parent))

    def write(self, sysfs: Sysfs, m: ManagedDevice) -> None:
        sysfs.create(m.parent, m.type, m.key)

    def write_error(self, env: Env, step: Step, e: OSError) -> HookError:
        """The line for a `create` the kernel refused."""
        m = step.device
        if step.pf and e.errno in errnos.EXHAUSTED | {errno.EINVAL}:
            # NVIDIA's per-GPU maximum is not visible per VF before the create: say so for the PF
            again = pick_vf(env, replace(m, parent=step.pf), sriov_vfs(env, step.pf) or [], set())
            if again.problem:
                return HookError(f"{again.problem}; VF {m.parent} refused it: {errnos.text(e)}")
        if e.errno in errnos.EXHAUSTED:
            avail = env.sysfs.available(m.parent, m.type)
            return HookError(f"cannot create {describe(m)}: no free instance: the kernel said {errnos.text(e)} "
                             f"(available_instances={avail}{in_use(env, m)})")
        if e.errno == errno.EINVAL:
            # we only ever write a canonical UUID: EINVAL is the driver refusing (NVIDIA's closed driver, e.g.)
            return HookError(
                f"cannot create {describe(m)}: the kernel said {errnos.text(e)}: the driver refused it "
                f"(available_instances={env.sysfs.available(m.parent, m.type)}{in_use(env, m)}; on NVIDIA: no "
                "instance left or another vGPU type already on this GPU); see dmesg"
            )
        return HookError(f"cannot create {describe(m)}: the kernel said {errnos.text(e)}: "
                         f"{errnos.hint(errnos.CREATE_HINTS, e)}")

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

    def driver_wait(self, env: Env, c: Claim) -> float:
        return env.cfg.nvidia_release_wait if env.sysfs.parent_vendor(c.parent) == NVIDIA_VENDOR else 0.0

    def plan_row(self, step: Step, env: Env) -> dict[str, Any]:
        from mdev_hooks import mdevctl

        m, sysfs = step.device, env.sysfs
        info = sysfs.type_info(m.parent, m.type) if sysfs.parent_dir(m.parent) is not None else None
        return dict(
            parent=m.parent, type=m.type, type_name=info.name if info else "",
            description=info.description if info else "",
            available=step.available if step.available is not None else (info.available if info else None),
            attrs=[[n, v] for n, v in m.attrs], vf_choice=step.choice, domain_parent=m.mapped_from or None,
            source=m.source,
            source_path=mdevctl.definition_path(env.cfg.mdevctl_dir, m) if m.source == "mdevctl" else None,
            mdevctl_ignored=mdevctl.shadowed(env.cfg.mdevctl_dir, m))

    def plan_action(self, step: Step, env: Env) -> str:
        m, root, s = step.device, env.sysfs.root, step
        if s.action == Action.CREATE:
            on_vf = f" on VF {m.parent} of PF {s.pf} ({s.choice})" if s.pf and s.pf != m.parent else ""
            create = os.path.join(root, "class", "mdev_bus", m.parent, "mdev_supported_types", m.type, "create")
            attrs = (f"; then write, in this order, {attrs_text(m)} into "
                     f"{os.path.join(root, 'bus', 'mdev', 'devices', m.key)}/ (any failure removes it and fails the "
                     "start)") if m.attrs else ""
            return f"create mdev {m.key}{on_vf}: write it to {create}{attrs}; remove it when the domain stops"
        text = (f"use the existing mdev {m.key} as it is (type {m.type} on {m.parent}, owned by no domain); leave it "
                "in place when the domain stops") if s.action == Action.ADOPT else \
            f"keep mdev {m.key}: the hook already created it for this domain"
        if m.attrs:
            text += f"; its <attr> values ({attrs_text(m)}) are NOT written: the device exists"
        return text

    def ignored_line(self, key: str, parent: str, type_: str) -> str:
        return f"ignored: metadata entry {key} has no <hostdev type='mdev' managed='yes'> with that UUID"


KIND = Mdev()
