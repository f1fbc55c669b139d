"""`mdev-hooks plan`: would this domain start? The hook's own validation against this host, changing nothing.

Invariant: the verdict is core.plan.validate's, the one prepare uses; the first problem is printed as the hook's
one line and the exit status is 1 exactly when a start would fail.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass
from typing import Any

from mdev_hooks import NS
from mdev_hooks.admin import common
from mdev_hooks.admin.render import Policy, cut, num, parent_cell, policy_of, table, with_alias
from mdev_hooks.core import plan
from mdev_hooks.core.env import Env, Step
from mdev_hooks.core.kinds import key_heading, kind_of
from mdev_hooks.domain import Domain
from mdev_hooks.enums import Action, Kind
from mdev_hooks.errors import HookError

MAX_READ = (16 << 20) + 1


@dataclass
class DeviceRow:
    """One managed device of the domain and what a start would do with it."""

    key: str  # the device's key: an mdev UUID, or the VF (JSON: also `uuid`, its name before 0.3.0)
    parent: str
    type: str
    type_name: str
    description: str
    available: int | None
    action: Action
    verdict: str  # ok | fail
    problem: str | None
    kind: Kind
    attrs: list[list[str]]
    pf: str | None
    vf_choice: str | None
    domain_parent: str | None  # config [parents] renamed it to `parent` on this host
    source: str  # metadata | mdevctl
    source_path: str | None
    mdevctl_ignored: list[str]
    vf: str | None = None  # nvidia-vf only
    domain_named: str | None = None  # nvidia-vf only: the PF or VF the entry names

    def to_json(self) -> dict[str, Any]:
        # vf and domain_named only for the kinds that fill them (nvidia-vf)
        data = {k: v for k, v in asdict(self).items() if v is not None or k not in ("vf", "domain_named")}
        return with_alias(data, "key", "uuid")


@dataclass
class Ignored:
    uuid: str
    parent: str
    type: str
    kind: Kind


@dataclass
class PlanReport:
    domain: dict[str, str]
    ok: bool
    problem: str | None
    dry_run: bool
    sysfs_root: str
    mdevs: list[DeviceRow]
    actions: list[str]
    ignored: list[Ignored]
    policy: Policy | None
    config: str
    unmanaged_mdev_hostdevs: int = 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["mdevs"] = [m.to_json() for m in self.mdevs]
        data["policy"] = None if self.policy is None else self.policy.to_json()
        return data


# -- building the report -------------------------------------------------------------------------------------------
def _row(s: Step, env: Env) -> DeviceRow:
    return DeviceRow(key=s.device.key, action=s.action, verdict="ok" if s.problem is None else "fail",
                     problem=s.problem, kind=s.device.kind, pf=s.pf, **kind_of(s.device.kind).plan_row(s, env))


def report(domain: Domain, steps: list[Step], env: Env) -> PlanReport:
    problem = plan.first_problem(steps)
    return PlanReport(
        domain={"name": domain.name, "uuid": domain.uuid}, ok=problem is None, problem=problem,
        dry_run=env.cfg.dry_run, sysfs_root=env.sysfs.root, mdevs=[_row(s, env) for s in steps],
        actions=[kind_of(s.device.kind).plan_action(s, env) for s in steps] if problem is None else [],
        ignored=[Ignored(m.key, m.parent, m.type, m.kind) for m in domain.unused],
        policy=policy_of(env.cfg.path, env.cfg.allowed_parents, env.cfg.allowed_types), config=env.cfg.path,
        unmanaged_mdev_hostdevs=domain.unmanaged_mdevs)


# -- rendering -----------------------------------------------------------------------------------------------------
def _parent(m: DeviceRow) -> str:
    cell = parent_cell(m.parent, m.pf)
    return f"{m.domain_parent} -> {cell}" if m.domain_parent else cell


def render(r: PlanReport) -> str:
    lines = [f"domain {r.domain['name'] or '?'} ({r.domain['uuid']}), sysfs {r.sysfs_root}"]
    if not r.mdevs:
        lines.append("no managed mdev: the hook does nothing for this domain" + _unmanaged(r.unmanaged_mdev_hostdevs))
    else:
        rows = [[m.key, _parent(m), m.type, cut(" ".join(x for x in (m.type_name, m.description) if x) or "-", 40),
                 num(m.available), m.action, m.verdict] for m in r.mdevs]
        header = [key_heading([m.kind for m in r.mdevs]), "PARENT", "TYPE", "NAME / DESCRIPTION", "AVAIL", "ACTION"]
        lines.append(table([*header, "VERDICT"], rows))
    if r.policy is not None:
        lines.append(r.policy.render())
    for m in r.mdevs:
        if m.source_path:
            lines.append(f"mdev {m.key}: source: mdevctl {m.source_path} (the domain has no metadata for it; "
                         "created at start, removed at stop, whatever the definition's \"start\" says)")
        lines += [f"mdev {m.key}: source: metadata (the mdevctl definition {path} is ignored: the domain's "
                  "metadata wins)" for path in m.mdevctl_ignored]
    lines += [f"parent mapped: {kind_of(m.kind).noun} {m.key}: the domain's {m.domain_parent} is {m.parent} on this "
              f"host ([parents] in {r.config or 'the configuration'})" for m in r.mdevs if m.domain_parent]
    lines += [kind_of(i.kind).ignored_line(i.uuid, i.parent, i.type) for i in r.ignored]
    if r.ok:
        if r.actions:
            lines.append("a start would:")
            lines += [f"  {i}. {a}" for i, a in enumerate(r.actions, 1)]
        if r.dry_run:
            lines.append("note: dry_run is on: the hook would only log these actions, not carry them out")
        lines.append("verdict: a start would succeed")
    else:
        lines += ["verdict: a start would FAIL:", f"  {r.problem}"]
    return "\n".join(lines)


def _unmanaged(n: int) -> str:
    if not n:
        return ""
    return (f" (it has {n} mdev hostdev{'s' if n > 1 else ''}, none with managed='yes': the user's own devices, "
            "which the hook leaves alone)")


# -- the command ---------------------------------------------------------------------------------------------------
def read_input(source: str) -> bytes:
    """The domain XML from a file or stdin (`-`), bounded like the hook's read."""
    if source == "-":
        if sys.stdin.isatty():
            raise HookError("plan: reading the domain XML from a terminal; pipe it in: virsh dumpxml VM | "
                            "mdev-hooks plan -")
        return sys.stdin.buffer.read(MAX_READ)
    try:
        with open(source, "rb") as f:
            return f.read(MAX_READ)
    except OSError as e:
        raise HookError(f"cannot read {source}: {e.strerror}") from None


def _ignored(data: bytes, as_json: bool) -> int:
    """A domain the hook's byte check lets pass without parsing: say why, and how many mdev hostdevs it has."""
    from mdev_hooks.domain import unmanaged_mdev_hostdevs

    try:
        n = unmanaged_mdev_hostdevs(data)
    except HookError:
        n = 0
    if as_json:
        common.print_json({"ok": True, "problem": None, "mdevs": [], "actions": [], "ignored_by_hook": True,
                           "unmanaged_mdev_hostdevs": n})
    elif n:
        print(f"the hook leaves this domain alone: it has {n} mdev hostdev{'s' if n > 1 else ''}, none with "
              f"managed='yes' (the user's own, pre-created devices, never touched), and no {NS} metadata\n"
              "verdict: a start would succeed")
    else:
        print(f"the hook ignores this domain: it names no mdev (no {NS} metadata, no mdev hostdev)\n"
              "verdict: a start would succeed")
    return common.OK


def cmd_plan(args: argparse.Namespace) -> int:
    from mdev_hooks import domain, mdevctl
    from mdev_hooks.hook import mentions_mdev

    data = read_input(args.xml)
    env = common.make_env(args)
    if not mentions_mdev(data):
        return _ignored(data, args.json)
    try:
        parsed = plan.resolve(domain.parse(data, *mdevctl.lookup(env.cfg.mdevctl_dir)), env)
        steps = plan.validate(parsed, env)
    except HookError as e:
        if args.json:
            common.print_json({"ok": False, "problem": str(e), "mdevs": [], "actions": []})
        else:
            print(f"verdict: a start would FAIL:\n  {e}")
        common.err(str(e))
        return common.FAILED
    r = report(parsed, steps, env)
    if args.json:
        common.print_json(r.to_json())
    else:
        print(render(r))
    if r.problem:
        common.err(r.problem)
        return common.FAILED
    return common.OK


def register(command: Any) -> None:
    p = command("plan", cmd_plan, "would this domain start? (the hook's own validation, nothing changed)",
                "  virsh dumpxml vm1 | mdev-hooks plan -\n  mdev-hooks plan --json examples/gvtg-desktop.xml",
                "Run the validation of the hook's `prepare` against this host's sysfs and the ledger, without "
                "changing anything: show each managed mdev with its type and free instances, the actions a start "
                "would take, and exit 1 with the hook's own error line if the start would fail.")
    p.add_argument("xml", nargs="?", default="-", metavar="DOMAIN.xml", help="domain XML file, - for stdin (default)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

