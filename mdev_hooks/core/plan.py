"""Would a start work, device by device: the domain as this host sees it ([parents], VFs bound), the admin's
policy, the kernel's parents, types and free instances, and the ledger's owners.

Invariant: reads only (no write to sysfs, the ledger or the locks); the single source of truth for "would this
start work", shared by prepare, the incoming checks at migrate/restore begin, and `mdev-hooks plan`.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from typing import Any

from mdev_hooks.config import Config
from mdev_hooks.core.env import Env, Step
from mdev_hooks.core.kinds import describe, kind_of, owned_elsewhere
from mdev_hooks.domain import Domain, ManagedDevice
from mdev_hooks.enums import Action
from mdev_hooks.errors import HookError


def parent_problem(env: Env, m: ManagedDevice) -> str | None:
    """Why this host cannot make m (the admin's policy, then the kind's own check of its parent and type), or None;
    `mdev-hooks add` checks it before editing the domain."""
    return policy_problem(env.cfg, m) or kind_of(m.kind).parent_problem(env, m)


def _globs_text(globs: tuple[str, ...]) -> str:
    return "[" + ", ".join(json.dumps(g) for g in globs) + "]"


def policy_problem(cfg: Config, m: ManagedDevice) -> str | None:
    """The admin's allowed_parents / allowed_types rule that refuses m, or None (no policy: everything allowed)."""
    from fnmatch import fnmatchcase

    for key, globs, value in (("allowed_parents", cfg.allowed_parents, m.parent),
                              ("allowed_types", cfg.allowed_types, m.type)):
        if globs is not None and not any(fnmatchcase(value, g) for g in globs):
            name = "parent" if key == "allowed_parents" else "type"
            return (f"{describe(m)}: {name} {value} is not allowed by {key} = {_globs_text(globs)} "
                    f"in {cfg.path or 'the configuration'}")
    return None


def map_parents(domain: Domain, cfg: Config, log: Any) -> Domain:
    """The domain with config [parents] applied: each parent the table names is replaced by this host's name for
    it (once, no chains), remembered in mapped_from and logged. Everything after (policy, validation, create,
    the ledger) sees this host's name; release goes by the ledger, which records it."""
    table = dict(cfg.parents)
    if not table or not any(m.parent in table for m in [*domain.devices, *domain.vf_entries]):
        return domain

    def mapped(m: ManagedDevice) -> ManagedDevice:
        if m.parent in table and m.source != "mdevctl":  # mdevctl's definitions name this host's parents
            log.info("mdev.parent_mapped", mdev=m.key, type=m.type, domain_parent=m.parent,
                     host_parent=table[m.parent], config=cfg.path)
            m = replace(m, parent=table[m.parent], mapped_from=m.parent)
        return m

    return replace(domain, devices=[mapped(m) for m in domain.devices],
                   vf_entries=[mapped(m) for m in domain.vf_entries])


def resolve(domain: Domain, env: Env) -> Domain:
    """The domain as this host sees it: config [parents] applied, entries whose key the host decides (nvidia-vf:
    the VF) bound by their kind."""
    domain = map_parents(domain, env.cfg, env.log)
    for kind in dict.fromkeys(m.kind for m in domain.vf_entries):
        domain = kind_of(kind).bind(domain, env)
    return domain


def validate(domain: Domain, env: Env) -> list[Step]:
    """What prepare would do for each managed device, and why it would fail. Reads only; no writes."""
    steps: list[Step] = []
    taken: set[str] = set()  # SR-IOV VFs this domain takes
    policy = env.cfg.allowed_parents is not None or env.cfg.allowed_types is not None
    for m in domain.devices:
        refused = policy_problem(env.cfg, m)
        if refused:  # the admin's rule comes first, whatever exists: a domain may not ask for it at all
            env.log.warning("mdev.policy_refused", mdev=m.key, parent=m.parent, type=m.type, problem=refused)
            steps.append(Step(m, Action.CREATE, None, refused))
            continue
        if policy:
            env.log.info("mdev.policy_allowed", mdev=m.key, parent=m.parent, type=m.type)
        claim = env.ledger.get(m.key)
        if claim is not None and claim.domain_uuid != domain.uuid:
            steps.append(Step(m, Action.CREATE, None, owned_elsewhere(m.kind, m.key, claim)))
            continue
        steps.append(kind_of(m.kind).plan(env, m, claim, taken))
    return _count_instances(env, steps)


def _count_instances(env: Env, steps: list[Step]) -> list[Step]:
    """Enough free instances for everything this domain asks of each parent/type, before any write."""
    def counted(s: Step) -> bool:
        return s.action == Action.CREATE and s.problem is None and kind_of(s.device.kind).counts_instances

    need = Counter((s.device.parent, s.device.type) for s in steps if counted(s))
    out: list[Step] = []
    for s in steps:
        key = (s.device.parent, s.device.type)
        if counted(s) and (s.available is None or s.available < need[key]):
            s = replace(s, problem=kind_of(s.device.kind).no_free_instance(env, s.device, s.available, need[key]))
        out.append(s)
    return out


def first_problem(steps: list[Step]) -> str | None:
    return next((s.problem for s in steps if s.problem), None)


def check_incoming(domain: Domain, env: Env, op: str) -> None:
    """`migrate begin` / `restore begin` on the destination: would the `prepare` that follows get every managed
    device? The same validate() as prepare, without locks and without any write: an early, clear refusal
    (prepare checks again under the parents' locks). Devices that already exist for this domain are fine."""
    problem = first_problem(validate(domain, env))
    if problem:
        when = "before the domain came to this host" if op == "migrate" else "before the saved domain is restored"
        raise HookError(f"{problem} (checked at {op} begin, {when})")
    env.log.info("incoming.checked", mdevs=[m.key for m in domain.devices])
