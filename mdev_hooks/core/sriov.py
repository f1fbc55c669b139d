"""SR-IOV vGPU parents (NVIDIA Ampere and later): which VF an mdev gets when the domain names the PF, and the lock
every VF of a PF is used under.

Invariant: the choice is the first VF in PCI address order that offers the type with a free instance, never a guess;
every VF of a PF is used under that PF's lock.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from mdev_hooks.core.env import Env, Step
from mdev_hooks.domain import ManagedDevice
from mdev_hooks.enums import Action


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


def pick_vf(env: Env, m: ManagedDevice, vfs: list[str], taken: set[str]) -> Step:
    """The first VF of PF m.parent, in address order, that offers m.type and has a free instance, and that this
    domain does not take already; or a Step naming the problem."""
    sysfs = env.sysfs
    offering = [vf for vf in vfs if sysfs.offers(vf, m.type)]
    what = f"mdev {m.key} (type {m.type} on PF {m.parent})"
    if not offering:
        offered = sorted({t for vf in vfs[:4] for t in sysfs.types(vf)})
        return Step(m, Action.CREATE, None, (
            f"cannot create {what}: none of the {len(vfs)} VFs of PF {m.parent} offers type {m.type} (offered: "
            f"{', '.join(offered[:12]) or 'none'}; see `mdev-hooks types --parent {vfs[0]}`)"), pf=m.parent)
    for i, vf in enumerate(offering):
        avail = sysfs.available(vf, m.type) if vf not in taken else None
        if avail is not None and avail >= 1:
            taken.add(vf)
            before = f"; {i} before it taken or full" if i else ""
            return Step(replace(m, parent=vf), Action.CREATE, avail, None, pf=m.parent, choice=(
                f"the first of the {len(vfs)} VFs of PF {m.parent}, in address order, with a free instance of "
                f"{m.type}{before}"))
    used = Counter(d.type for d in sysfs.devices() if d.parent in vfs)
    in_use = ", ".join(f"{n} x {t}" for t, n in sorted(used.items())) or "none"
    mine = f"; this domain takes {len(taken & set(vfs))} of them" if taken & set(vfs) else ""
    return Step(m, Action.CREATE, 0, (
        f"cannot create {what}: no VF of PF {m.parent} has a free instance of type {m.type} ({len(vfs)} VFs; "
        f"vGPUs on them: {in_use}{mine}; on NVIDIA: per-GPU maximum reached, or another type already on the GPU)"
    ), pf=m.parent)
