"""Parent pools: an entry `<device uuid= pool= type=/>` is placed on the first member of the config's [pools] list,
in its order, that is registered, offers the type and still has a free instance after this start's earlier devices.

Invariant: reads only (placement decides, prepare writes); the same placement serves prepare (under the locks of
every member, taken in sorted order before anything is counted), the incoming checks and `mdev-hooks plan`; the
ledger records the member chosen, so release never needs [pools] again.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

from mdev_hooks.config import Config
from mdev_hooks.core.env import Env
from mdev_hooks.core.sriov import lock_name, pick_vf, sriov_vfs
from mdev_hooks.domain import Domain, ManagedDevice
from mdev_hooks.errors import HookError

NVIDIA_VENDOR = "0x10de"  # time-sliced NVIDIA GPUs run one vGPU type at a time


@dataclass(frozen=True)
class Placement:
    """Where one pool device goes: `device.parent` is this host's name of the member chosen ("" if none)."""

    device: ManagedDevice
    member: str | None  # the member as [pools] lists it (before [parents]); None: nothing fits
    passed: tuple[tuple[str, str], ...]  # (member, why it was passed over), in listed order
    reason: str  # why the member chosen: the first fit, or the device exists there
    problem: str | None  # the one-line reason the start fails, None if placed


def members(cfg: Config, pool: str) -> tuple[str, ...] | None:
    """The pool's members in listed order, None if [pools] has no such pool."""
    return dict(cfg.pools).get(pool)


def host_name(cfg: Config, member: str) -> str:
    """A member's name on this host: [parents] maps members as it maps a domain's parents (once, no chains)."""
    return dict(cfg.parents).get(member, member)


def check(domain: Domain, cfg: Config) -> None:
    """Every pool a device names is in [pools]: one line naming it otherwise (before any write)."""
    for m in domain.devices:
        if m.pool and members(cfg, m.pool) is None:
            known = ", ".join(name for name, _ in cfg.pools) or "none"
            raise HookError(f"mdev {m.key}: pool {m.pool} is not in [pools] of {cfg.path or 'the configuration'} "
                            f"(pools on this host: {known})")


def lock_names(domain: Domain, env: Env) -> list[str]:
    """The locks a start takes: each device's parent, and every member of each pool it names."""
    names = []
    for m in domain.devices:
        hosts = [host_name(env.cfg, x) for x in members(env.cfg, m.pool) or ()] if m.pool else [m.parent]
        names += [lock_name(env, h) for h in hosts]
    return names


def registered(env: Env, host: str) -> list[str] | None:
    """The mdev parents a member stands for: itself, or an SR-IOV PF's VFs; None if not registered."""
    if env.sysfs.parent_dir(host) is not None:
        return [host] if env.sysfs.has_mdev_types(host) else None
    return sriov_vfs(env, host)


def missing(env: Env, m: ManagedDevice) -> bool:
    """parent_wait for a pool device: True while no member is registered, or none offers the type (and the device
    does not exist already)."""
    if env.sysfs.device(m.key) is not None:
        return False
    for member in members(env.cfg, m.pool) or ():
        parents = registered(env, host_name(env.cfg, member))
        if parents and any(env.sysfs.offers(p, m.type) for p in parents):
            return False
    return True


def _existing(env: Env, m: ManagedDevice, listed: tuple[str, ...]) -> str | None:
    """Reuse: the member that already holds a device with this UUID and type (on it or on one of its VFs)."""
    dev = env.sysfs.device(m.key)
    if dev is None or dev.type != m.type:
        return None
    for member in listed:
        host = host_name(env.cfg, member)
        if host in (dev.parent, env.sysfs.physfn(dev.parent)):
            return member
    return None


def _why_not(env: Env, m: ManagedDevice, host: str, placed: Counter[tuple[str, str]],
             taken: set[str]) -> str | None:
    """Why a member cannot take m now (counting what this start placed there), None if it can."""
    from mdev_hooks.core.plan import policy_problem

    sysfs = env.sysfs
    if policy_problem(env.cfg, replace(m, parent=host)):
        return "not allowed by the config's policy"
    parents = registered(env, host)
    if not parents:
        return "not registered"
    if not any(sysfs.offers(p, m.type) for p in parents):
        return "type not offered"
    if parents != [host]:  # an SR-IOV PF: the usual VF choice, with the VFs this start took
        return None if pick_vf(env, replace(m, parent=host), parents, taken).problem is None else "full (no free VF)"
    others = sorted({t for (p, t), n in placed.items() if p == host and t != m.type and n})
    if others and sysfs.parent_vendor(host) == NVIDIA_VENDOR:
        return f"busy with another type (this start places {', '.join(others)} there)"
    avail = sysfs.available(host, m.type)
    if avail is None:
        return "full (available_instances unreadable)"
    if avail - placed[(host, m.type)] >= 1:
        return None
    busy = sorted({d.type for d in sysfs.devices() if d.parent == host and d.type != m.type})
    if avail == 0 and busy:
        return f"busy with another type ({', '.join(busy)})"
    mine = f", this start places {placed[(host, m.type)]} there" if placed[(host, m.type)] else ""
    return f"full (available_instances={avail}{mine})"


def place(domain: Domain, env: Env) -> dict[str, Placement]:
    """Each pool device of the domain, in document order, on the first member that fits."""
    placed: Counter[tuple[str, str]] = Counter(
        (m.parent, m.type) for m in domain.devices if not m.pool and env.sysfs.device(m.key) is None)
    taken: set[str] = set()  # SR-IOV VFs this start takes
    out: dict[str, Placement] = {}
    for m in domain.devices:
        if not m.pool:
            continue
        listed = members(env.cfg, m.pool) or ()
        p = _place(env, m, listed, placed, taken)
        out[m.key] = p
        if p.problem is None:
            placed[(p.device.parent, m.type)] += env.sysfs.device(m.key) is None
            env.log.info("pool.placed", mdev=m.key, pool=m.pool, type=m.type, member=p.device.parent,
                         reason=p.reason, passed=[f"{x}: {why}" for x, why in p.passed])
        else:
            env.log.warning("pool.full", mdev=m.key, pool=m.pool, type=m.type,
                            passed=[f"{x}: {why}" for x, why in p.passed])
    return out


def _place(env: Env, m: ManagedDevice, listed: tuple[str, ...], placed: Counter[tuple[str, str]],
           taken: set[str]) -> Placement:
    found = _existing(env, m, listed)
    if found is not None:
        return Placement(_on(env, m, found), found, (), "the device exists there", None)
    passed: list[tuple[str, str]] = []
    for member in listed:
        why = _why_not(env, m, host_name(env.cfg, member), placed, taken)
        if why is None:
            return Placement(_on(env, m, member), member, tuple(passed), "the first member in listed order with a "
                             f"free instance of {m.type}", None)
        passed.append((member, why))
    shown = "; ".join(f"{x}: {why}" for x, why in passed) or "no members"
    return Placement(m, None, tuple(passed), "", (
        f"cannot create mdev {m.key}: no member of pool {m.pool} has a free instance of type {m.type} ({shown})"))


def _on(env: Env, m: ManagedDevice, member: str) -> ManagedDevice:
    host = host_name(env.cfg, member)
    return replace(m, parent=host, mapped_from=member if host != member else "")
