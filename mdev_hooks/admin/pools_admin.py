"""Parent pools in the commands: `status`'s pool table, `plan`'s placement notes, and `add --pool`.

Invariant: what these show is core/pools.py's placement and membership, never a second opinion; `add --pool` writes
an entry only after checking that the pool exists here and that one of its members offers the type.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from mdev_hooks.admin import common
from mdev_hooks.admin.render import num, table
from mdev_hooks.core import pools
from mdev_hooks.core.env import Env
from mdev_hooks.core.kinds import owned_elsewhere
from mdev_hooks.enums import Kind
from mdev_hooks.errors import HookError


@dataclass
class MemberRow:
    """One member of a pool: this host's name for it, whether it is registered, and free instances per type (for
    an SR-IOV PF, summed over its VFs)."""

    member: str
    parent: str  # this host's name ([parents] may map the member)
    registered: bool
    vfs: int | None  # an SR-IOV PF: how many of its VFs are mdev parents
    free: dict[str, int | None] = field(default_factory=dict)


@dataclass
class PoolRow:
    name: str
    members: list[MemberRow]


def pool_rows(env: Env) -> list[PoolRow]:
    """Every pool of the config, its members in listed order."""
    out = []
    for name, listed in env.cfg.pools:
        rows = []
        for member in listed:
            host = pools.host_name(env.cfg, member)
            parents = pools.registered(env, host) or []
            free: dict[str, int | None] = {}
            for p in parents:
                for t in env.sysfs.types(p):
                    avail = env.sysfs.available(p, t)
                    had = free.get(t, 0)
                    free[t] = None if avail is None or had is None else had + avail
            rows.append(MemberRow(member, host, bool(parents), len(parents) if parents != [host] and parents
                                  else None, dict(sorted(free.items()))))
        out.append(PoolRow(name, rows))
    return out


def render_pools(rows: list[PoolRow]) -> list[str]:
    """status's text: one row per member and type, in the order placement tries them."""
    if not rows:
        return []
    cells = []
    for p in rows:
        for i, m in enumerate(p.members, 1):
            name = m.member if m.parent == m.member else f"{m.member} -> {m.parent}"
            if m.vfs is not None:
                name += f" (PF, {m.vfs} VFs)"
            if not m.registered:
                cells.append([p.name, str(i), name, "(not registered)", ""])
            cells += [[p.name, str(i), name, t, num(n)] for t, n in m.free.items()]
    return ["", "pools ([pools]: a domain's <device pool=...> goes to the first member, in this order, that offers "
            "its type with a free instance):", table(["POOL", "#", "MEMBER", "TYPE", "FREE"], cells)]


def plan_notes(placements: dict[str, pools.Placement]) -> dict[str, dict[str, Any]]:
    """plan's words for each pool device: the member chosen and why, and the members passed over and why."""
    return {key: {"pool": p.device.pool, "member": p.member, "why": p.reason or None,
                  "passed_over": [{"member": m, "why": why} for m, why in p.passed]}
            for key, p in placements.items()}


def render_note(key: str, note: dict[str, Any]) -> str:
    passed = "; ".join(f"{x['member']}: {x['why']}" for x in note["passed_over"])
    chosen = f"{note['member']} ({note['why']})" if note["member"] else "no member"
    return f"pool {note['pool']}: mdev {key} -> {chosen}" + (f"; passed over: {passed}" if passed else "")


def add_pool(args: argparse.Namespace) -> int:
    """`mdev-hooks add DOMAIN --pool P --type T`: the entry names the pool; placement happens at each start."""
    import uuid as uuidlib

    from mdev_hooks import domain
    from mdev_hooks.admin import domedit

    virsh, env = common.virsh(args), common.make_env(args)
    listed = pools.members(env.cfg, args.pool)
    if listed is None:
        known = ", ".join(n for n, _ in env.cfg.pools) or "none"
        raise HookError(f"pool {args.pool} is not in [pools] of {env.cfg.path or 'the configuration'} (pools on "
                        f"this host: {known})")
    offering = [(x, p) for x in listed for p in pools.registered(env, pools.host_name(env.cfg, x)) or ()
                if env.sysfs.offers(p, args.type)]
    if not offering:
        raise HookError(f"no member of pool {args.pool} ({', '.join(listed)}) offers type {args.type} on this host; "
                        "see `mdev-hooks status`")
    root = domedit.parse(virsh.dumpxml_inactive(args.domain))
    name = domedit.domain_name(root) or args.domain
    dom_uuid = domain.domain_uuid(root)
    mdev = args.uuid or str(uuidlib.uuid4())
    claim = env.ledger.get(mdev)
    if claim is not None and claim.domain_uuid != dom_uuid:
        raise HookError(owned_elsewhere(Kind.MDEV, mdev, claim) + "; choose another UUID")
    info = env.sysfs.type_info(offering[0][1], args.type)
    model = args.model or (info.device_api if info and info.device_api in domedit.MODELS else "vfio-pci")
    domedit.add(root, mdev, "", args.type, model, pool=args.pool)
    virsh.define(domedit.serialize(root))
    back = domain.parse(virsh.dumpxml_inactive(dom_uuid))
    if not any(m.key == mdev and m.pool == args.pool for m in back.devices):
        raise HookError(f"defined domain {name}, but libvirt's XML does not show managed mdev {mdev} with its "
                        "metadata; check `virsh dumpxml --inactive`")
    print(f"added mdev {mdev} (type {args.type} from pool {args.pool}, model {model}) to domain {name}")
    free = sum(env.sysfs.available(p, args.type) or 0 for _, p in offering)
    print(f"pool {args.pool}: {len({x for x, _ in offering})} of its {len(listed)} members offer {args.type}, with "
          f"{free} free instance(s) now; each start takes the first in this order with room: {', '.join(listed)}")
    if dom_uuid in (common.running(args).uuids or frozenset()):
        print(f"domain {name} is running: the mdev is created at its next start")
    return common.OK
