"""`mdev-hooks status`: every parent and type, every device with its owner, and ledger entries gone stale.

Invariant: reads only (sysfs, the ledger, `virsh list`); a device the ledger does not give to a domain is shown as
external, and whether a domain runs is "unknown" when virsh cannot say.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from typing import Any

from mdev_hooks.admin import common
from mdev_hooks.admin.render import Policy, cut, num, parent_cell, policy_of, table, with_alias, yes_no
from mdev_hooks.admin.types_cmd import NvidiaVfRow, ParentRow, nvidia_vf_rows, parent_rows, render_nvidia_vfs
from mdev_hooks.core.env import Env
from mdev_hooks.core.kinds import key_heading, kind_of
from mdev_hooks.core.ledger import Claim
from mdev_hooks.core.plan import policy_problem
from mdev_hooks.domain import ManagedDevice
from mdev_hooks.enums import ClaimState, Kind


@dataclass
class DeviceRow:
    """A device that exists now, and its owner (a domain per the ledger, or external)."""

    key: str  # an mdev UUID, or a VF with a vGPU type set (JSON: also `uuid`, its name before 0.3.0)
    parent: str
    type: str
    owner: str
    domain_uuid: str | None
    domain_name: str | None
    state: ClaimState | None
    running: bool | None
    attrs: list[str]
    pf: str | None
    kind: Kind

    def to_json(self) -> dict[str, Any]:
        return with_alias({**asdict(self), **kind_of(self.kind).status_fields}, "key", "uuid")


@dataclass
class OrphanRow:
    key: str  # the device: an mdev UUID, or a VF (JSON: also `mdev`, its name before 0.3.0)
    domain_uuid: str
    domain_name: str
    parent: str
    type: str
    state: ClaimState
    reason: str

    def to_json(self) -> dict[str, Any]:
        return with_alias(asdict(self), "key", "mdev")


@dataclass
class StatusReport:
    sysfs_root: str
    state_dir: str
    parents: list[ParentRow]
    vgpu_vfs: list[NvidiaVfRow]
    devices: list[DeviceRow]
    orphans: list[OrphanRow]
    ledger_problems: list[str]
    running_known: bool
    running_error: str | None
    policy: Policy | None
    parent_map: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(parents=[p.to_json() for p in self.parents], devices=[d.to_json() for d in self.devices],
                    orphans=[o.to_json() for o in self.orphans],
                    policy=None if self.policy is None else self.policy.to_json())
        return data


def orphan_reason(env: Env, c: Claim, running: common.Running) -> str | None:
    """Why a ledger entry is stale, or None if it is (as far as we can tell) in use."""
    kind = kind_of(c.kind)
    dev = kind.current(env.sysfs, c.key)
    if dev is None:
        return kind.gone_reason
    if (dev.parent, dev.type) != (c.parent, c.type):
        return f"device is now type {dev.type or '?'} on {dev.parent}, not the one recorded"
    if running.of(c.domain_uuid) is False:
        return "domain not running"
    return None


def _owned(row: DeviceRow, c: Claim | None, running: common.Running) -> DeviceRow:
    """The row with its owner, if the ledger gives this very device (kind, parent, type) to a domain."""
    if c is None or kind_of(c.kind) is not kind_of(row.kind) or (c.parent, c.type) != (row.parent, row.type):
        return row
    row.attrs = list(c.attrs)
    row.owner = f"{c.domain_name or '?'} ({c.domain_uuid})"
    row.domain_uuid, row.domain_name, row.state = c.domain_uuid, c.domain_name, c.state
    row.running = running.of(c.domain_uuid)
    return row


def report(env: Env, running: common.Running) -> StatusReport:
    sysfs, cfg = env.sysfs, env.cfg
    claims, problems = env.ledger.all()
    by_key = {c.key: c for c in claims}
    devices = []
    for dev in sysfs.devices():
        row = DeviceRow(dev.uuid, dev.parent, dev.type, "external", None, None, None, None, [],
                        sysfs.physfn(dev.parent), Kind.MDEV)
        devices.append(_owned(row, by_key.get(dev.uuid), running))
    # NVIDIA's vendor-specific interface: one scan of bus/pci/devices and one read per VF, so the VF table and the
    # device list cannot disagree about a type that changes meanwhile. A VF with a vGPU type set is a device too.
    vfs = nvidia_vf_rows(sysfs, sysfs.vgpu_vfs())
    for v in vfs:
        if v.current_type in (None, "", "0"):
            continue
        row = DeviceRow(v.vf, v.vf, v.current_type or "", "external", None, None, None, None, [], v.pf,
                        Kind.NVIDIA_VF)
        devices.append(_owned(row, by_key.get(v.vf), running))
    orphans = [OrphanRow(c.key, c.domain_uuid, c.domain_name, c.parent, c.type, c.state, reason)
               for c in claims for reason in [orphan_reason(env, c, running)] if reason]
    parents = parent_rows(sysfs, sysfs.parents())
    policy = policy_of(cfg.path, cfg.allowed_parents, cfg.allowed_types)
    if policy is not None:
        for p in parents:
            for t in p.types:
                t.allowed = policy_problem(cfg, ManagedDevice("-", p.parent, t.type)) is None
    return StatusReport(
        sysfs.root, cfg.state_dir, parents, vfs, devices, orphans, problems, running.uuids is not None,
        running.error, policy,
        [{"domain_parent": k, "host_parent": v, "present": sysfs.parent_dir(v) is not None} for k, v in cfg.parents])


def _types_table(r: StatusReport) -> str:
    rows = [[p.parent, t.type, t.name or "-", num(t.available), str(t.in_use), cut(t.description) or "-"]
            for p in r.parents for t in p.types]
    rows += [[p.parent, "(no mdev types)", "", "", "", ""] for p in r.parents if not p.types]
    header = ["PARENT", "TYPE", "NAME", "AVAILABLE", "IN USE", "DESCRIPTION"]
    if r.policy is not None:  # which types domains may ask for under the admin's policy
        allowed = {(p.parent, t.type): t.allowed for p in r.parents for t in p.types}
        rows = [[*row[:5], yes_no(allowed.get((row[0], row[1]))) if row[2] else "", row[5]] for row in rows]
        header[5:5] = ["ALLOWED"]
    return table(header, rows) if rows else "  none: no mdev parent is registered on this host"


def render(r: StatusReport) -> str:
    lines = [f"mdev parents and types (sysfs {r.sysfs_root}):", _types_table(r)]
    if r.vgpu_vfs:
        lines += ["", "NVIDIA vendor-specific vGPU VFs (not mdev; domains opt in with kind=\"nvidia-vf\"):"]
        lines += render_nvidia_vfs(r.vgpu_vfs)
    if r.policy is not None:
        lines.append("  " + r.policy.render())
    for pm in r.parent_map:
        lines.append(f"  [parents]: a domain's {pm['domain_parent']} -> {pm['host_parent']} on this host"
                     + ("" if pm["present"] else " (NOT registered here: such starts fail)"))
    lines += ["", f"mdevs ({len(r.devices)}):"]
    if r.devices:
        lines.append(table([key_heading([d.kind for d in r.devices]), "PARENT", "TYPE", "OWNER", "STATE", "RUNNING"], [
            [d.key, parent_cell(d.parent, d.pf), kind_of(d.kind).type_cell(d.type) if d.type else "?",
             d.owner, d.state or "-", "-" if d.owner == "external" else yes_no(d.running)]
            for d in r.devices]))
        lines += [f"  {d.key}: attributes written at creation: {', '.join(d.attrs)}" for d in r.devices if d.attrs]
    lines.append("")
    if not r.running_known:
        lines.append(f"domains running: unknown ({r.running_error}); orphans below are only gone devices")
    lines.append(f"orphaned ledger entries ({len(r.orphans)}):")
    if r.orphans:
        lines.append(table(["UUID", "DOMAIN", "PARENT", "TYPE", "STATE", "WHY"], [
            [o.key, f"{o.domain_name or '?'} ({o.domain_uuid})", o.parent, o.type, o.state, o.reason]
            for o in r.orphans]))
        lines.append("  clean them up with `mdev-hooks gc` (see `mdev-hooks gc --dry-run` first)")
    lines += [f"ledger problem: {p}" for p in r.ledger_problems]
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    r = report(common.make_env(args), common.running(args))
    if args.json:
        common.print_json(r.to_json())
    else:
        print(render(r))
    return common.OK


def register(command: Any) -> None:
    p = command("status", cmd_status, "parents, types, mdevs, owners and orphans on this host",
                "  mdev-hooks status\n  mdev-hooks status --json | jq '.orphans'",
                "Every mdev parent and type (free instances, devices in use), every mdev with its owner (the domain "
                "from the ledger, or external), and ledger entries whose device is gone or whose domain is not "
                "running (orphans; `virsh list`; 'unknown' if virsh cannot be run).")
    p.add_argument("--json", action="store_true", help="machine-readable output")
