"""What `plan`, `status` and `types` show: plain data (for --json) and its readable rendering. Reads only."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mdev_hooks import ledger as L
from mdev_hooks import lifecycle, mdevctl
from mdev_hooks.domain import NVIDIA_VF, Domain, ManagedMdev
from mdev_hooks.steps import ADOPT, CREATE, Env, Step, current_device
from mdev_hooks.sysfs import Sysfs

MAX_DESC = 60


def table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> str:
    """Left-aligned columns, two spaces apart; the last column is not padded."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for r in [header, *rows]:
        cells = [str(c).ljust(widths[i]) if i < len(r) - 1 else str(c) for i, c in enumerate(r)]
        lines.append(indent + "  ".join(cells).rstrip())
    return "\n".join(lines)


def cut(text: str, limit: int = MAX_DESC) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _num(value: int | None) -> str:
    return "?" if value is None else str(value)


# -- types ------------------------------------------------------------------------------------------------------
def types_data(sysfs: Sysfs, parents: Sequence[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for parent in parents:
        types = []
        for mtype in sysfs.types(parent):
            info = sysfs.type_info(parent, mtype)
            if info is None:
                continue
            types.append({
                "type": mtype,
                "name": info.name,
                "description": info.description,
                "device_api": info.device_api,
                "available": info.available,
                "in_use": len(sysfs.devices_of_type(parent, mtype)),
            })
        out.append({"parent": parent, "vendor": sysfs.pci_vendor(parent), "types": types})
    return out


def render_types(data: list[dict[str, Any]]) -> str:
    """Like `mdevctl types`, plus the number of devices of each type that exist now."""
    lines: list[str] = []
    for p in data:
        lines.append(p["parent"])
        if not p["types"]:
            lines.append("  (no mdev types)")
        for t in p["types"]:
            lines += [
                f"  {t['type']}",
                f"    Available instances: {_num(t['available'])}",
                f"    In use: {t['in_use']}",
                f"    Device API: {t['device_api'] or '?'}",
            ]
            if t["name"]:
                lines.append(f"    Name: {t['name']}")
            if t["description"]:
                lines.append(f"    Description: {t['description']}")
    return "\n".join(lines)


# -- plan -------------------------------------------------------------------------------------------------------
def _create_path(sysfs: Sysfs, parent: str, mtype: str) -> str:
    return os.path.join(sysfs.root, "class", "mdev_bus", parent, "mdev_supported_types", mtype, "create")


def plan_data(domain: Domain, steps: Sequence[Step], env: Env) -> dict[str, Any]:
    sysfs = env.sysfs
    mdevs: list[dict[str, Any]] = []
    actions: list[str] = []
    for s in steps:
        m = s.mdev
        if m.kind == NVIDIA_VF:
            mdevs.append(_vgpu_plan(s, env))
            actions.append(_vgpu_action(s, sysfs))
            continue
        info = sysfs.type_info(m.parent, m.type) if sysfs.parent_dir(m.parent) is not None else None
        mdevs.append({
            "uuid": m.uuid,
            "parent": m.parent,
            "type": m.type,
            "type_name": info.name if info else "",
            "description": info.description if info else "",
            "available": s.available if s.available is not None else (info.available if info else None),
            "action": s.action,
            "verdict": "ok" if s.problem is None else "fail",
            "problem": s.problem,
            "kind": m.kind,
            "attrs": [[n, v] for n, v in m.attrs],
            "pf": s.pf,
            "vf_choice": s.choice,
            "domain_parent": m.mapped_from or None,  # config [parents] renamed it to "parent" on this host
            "source": m.source,
            "source_path": mdevctl.definition_path(env.cfg.mdevctl_dir, m) if m.source == "mdevctl" else None,
            "mdevctl_ignored": mdevctl.shadowed(env.cfg.mdevctl_dir, m),
        })
        on_vf = f" on VF {m.parent} of PF {s.pf} ({s.choice})" if s.pf and s.pf != m.parent else ""
        if s.action == CREATE:
            attrs = (f"; then write, in this order, {', '.join(f'{n}={v}' for n, v in m.attrs)} into "
                     f"{os.path.join(sysfs.root, 'bus', 'mdev', 'devices', m.uuid)}/ (any failure removes it and "
                     "fails the start)") if m.attrs else ""
            actions.append(f"create mdev {m.uuid}{on_vf}: write it to {_create_path(sysfs, m.parent, m.type)}"
                           f"{attrs}; remove it when the domain stops")
        elif s.action == ADOPT:
            actions.append(f"use the existing mdev {m.uuid} as it is (type {m.type} on {m.parent}, "
                           "owned by no domain); leave it in place when the domain stops")
        else:
            actions.append(f"keep mdev {m.uuid}: the hook already created it for this domain")
        if m.attrs and s.action != CREATE:
            actions[-1] += f"; its <attr> values ({lifecycle._attrs_text(m)}) are NOT written: the device exists"
    problem = lifecycle.first_problem(list(steps))
    return {
        "domain": {"name": domain.name, "uuid": domain.uuid},
        "ok": problem is None,
        "problem": problem,
        "dry_run": env.cfg.dry_run,
        "sysfs_root": sysfs.root,
        "mdevs": mdevs,
        "actions": actions if problem is None else [],
        "ignored": [{"uuid": m.uuid, "parent": m.parent, "type": m.type, "kind": m.kind} for m in domain.unused],
        "policy": policy_data(env),
        "config": env.cfg.path,
    }


def _vgpu_path(sysfs: Sysfs, vf: str) -> str:
    return os.path.join(sysfs.root, "bus", "pci", "devices", vf, "nvidia", "current_vgpu_type")


def _vgpu_plan(s: Step, env: Env) -> dict[str, Any]:
    m = s.mdev
    names = env.sysfs.creatable_vgpu_types(m.uuid) or {}
    return {
        "uuid": m.uuid, "kind": m.kind, "vf": m.uuid, "parent": m.uuid, "pf": s.pf, "domain_named": m.parent,
        "type": m.type, "type_name": names.get(m.type, ""), "description": "",
        "available": s.available, "action": s.action, "verdict": "ok" if s.problem is None else "fail",
        "problem": s.problem, "attrs": [], "vf_choice": None if m.parent == m.uuid else
        f"the domain's managed PCI hostdev {m.uuid} is a VF of {m.parent}",
        "domain_parent": m.mapped_from or None, "source": m.source, "source_path": None, "mdevctl_ignored": [],
    }


def _vgpu_action(s: Step, sysfs: Sysfs) -> str:
    m = s.mdev
    on = f"VF {m.uuid}" + (f" of PF {s.pf}" if s.pf else "")
    if s.action == CREATE:
        return (f"set NVIDIA vGPU type {m.type} on {on}: write {m.type} to {_vgpu_path(sysfs, m.uuid)}; libvirt "
                "then gives the VF to the VM as a PCI hostdev; write 0 when the domain stops")
    if s.action == ADOPT:
        return (f"use {on} as it is (it already has vGPU type {m.type}, owned by no domain); leave it set when the "
                "domain stops")
    return f"keep vGPU type {m.type} on {on}: the hook already set it for this domain"


def policy_data(env: Env) -> dict[str, Any] | None:
    """The admin's allowed_parents / allowed_types (None: no policy, every parent and type allowed)."""
    cfg = env.cfg
    if cfg.allowed_parents is None and cfg.allowed_types is None:
        return None
    return {"config": cfg.path,
            "allowed_parents": None if cfg.allowed_parents is None else list(cfg.allowed_parents),
            "allowed_types": None if cfg.allowed_types is None else list(cfg.allowed_types)}


def render_policy(policy: dict[str, Any] | None) -> list[str]:
    if policy is None:
        return []

    def globs(value: list[str] | None) -> str:
        return "(all)" if value is None else "[" + ", ".join(f'"{g}"' for g in value) + "]"

    return [f"policy ({policy['config']}): allowed_parents = {globs(policy['allowed_parents'])}, "
            f"allowed_types = {globs(policy['allowed_types'])}"]


def _parent_cell(m: dict[str, Any]) -> str:
    pf = m.get("pf")
    if not pf:
        return str(m["parent"])
    return f"PF {pf}" if m["parent"] == pf else f"{m['parent']} (VF of {pf})"


def _mapped_cell(m: dict[str, Any]) -> str:
    """The PARENT cell of plan: `DOMAIN_PARENT -> HOST_PARENT` when config [parents] renamed it."""
    cell = _parent_cell(m)
    return f"{m['domain_parent']} -> {cell}" if m.get("domain_parent") else cell


def render_plan(data: dict[str, Any]) -> str:
    d = data["domain"]
    lines = [f"domain {d['name'] or '?'} ({d['uuid']}), sysfs {data['sysfs_root']}"]
    if not data["mdevs"]:
        lines.append("no managed mdev: the hook does nothing for this domain")
    else:
        rows = [
            [m["uuid"], _mapped_cell(m), m["type"], cut(" ".join(x for x in (m["type_name"], m["description"]) if x)
                                                   or "-", 40),
             _num(m["available"]), m["action"], m["verdict"]]
            for m in data["mdevs"]
        ]
        first = "UUID / VF" if any(m.get("kind") == NVIDIA_VF for m in data["mdevs"]) else "UUID"
        lines.append(table([first, "PARENT", "TYPE", "NAME / DESCRIPTION", "AVAIL", "ACTION", "VERDICT"], rows))
    lines += render_policy(data.get("policy"))
    for m in data["mdevs"]:
        if m.get("source_path"):
            lines.append(f"mdev {m['uuid']}: source: mdevctl {m['source_path']} (the domain has no metadata for it; "
                         "created at start, removed at stop, whatever the definition's \"start\" says)")
        for path in m.get("mdevctl_ignored") or []:
            lines.append(f"mdev {m['uuid']}: source: metadata (the mdevctl definition {path} is ignored: the "
                         "domain's metadata wins)")
    for m in data["mdevs"]:
        if m.get("domain_parent"):
            lines.append(f"parent mapped: mdev {m['uuid']}: the domain's {m['domain_parent']} is {m['parent']} on "
                         f"this host ([parents] in {data.get('config') or 'the configuration'})")
    for m in data["ignored"]:
        if m.get("kind") == NVIDIA_VF:
            lines.append(f"ignored: metadata entry kind=\"{NVIDIA_VF}\" parent={m['parent']} type={m['type']}: no "
                         "<hostdev type='pci' managed='yes'> of the domain is that VF or a VF of that PF")
            continue
        lines.append(f"ignored: metadata entry {m['uuid']} has no <hostdev type='mdev' managed='yes'> with that UUID")
    if data["ok"]:
        if data["actions"]:
            lines.append("a start would:")
            lines += [f"  {i}. {a}" for i, a in enumerate(data["actions"], 1)]
        if data["dry_run"]:
            lines.append("note: dry_run is on: the hook would only log these actions, not carry them out")
        lines.append("verdict: a start would succeed")
    else:
        lines.append("verdict: a start would FAIL:")
        lines.append(f"  {data['problem']}")
    return "\n".join(lines)


# -- status -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Running:
    """The active domains' UUIDs, or why they are unknown."""

    uuids: frozenset[str] | None
    error: str | None = None

    def of(self, domain_uuid: str) -> bool | None:
        return None if self.uuids is None else domain_uuid in self.uuids


def _claim_dict(c: L.Claim) -> dict[str, Any]:
    return {"mdev": c.mdev, "domain_uuid": c.domain_uuid, "domain_name": c.domain_name, "parent": c.parent,
            "type": c.type, "state": c.state}


def orphan_reason(c: L.Claim, sysfs: Sysfs, running: Running) -> str | None:
    """Why a ledger entry is stale, or None if it is (as far as we can tell) in use."""
    dev = current_device(sysfs, c.kind, c.mdev)
    if dev is None:
        return "vGPU type cleared" if c.kind == NVIDIA_VF else "device gone"
    if (dev.parent, dev.type) != (c.parent, c.type):
        return f"device is now type {dev.type or '?'} on {dev.parent}, not the one recorded"
    if running.of(c.domain_uuid) is False:
        return "domain not running"
    return None


def status_data(env: Env, running: Running) -> dict[str, Any]:
    sysfs = env.sysfs
    claims, problems = env.ledger.all()
    by_mdev = {c.mdev: c for c in claims}
    devices = []
    for dev in sysfs.devices():
        c = by_mdev.get(dev.uuid)
        entry: dict[str, Any] = {"uuid": dev.uuid, "parent": dev.parent, "type": dev.type}
        if c is None or (c.parent, c.type) != (dev.parent, dev.type):
            entry.update(owner="external", domain_uuid=None, domain_name=None, state=None, running=None)
        else:
            entry.update(owner=f"{c.domain_name or '?'} ({c.domain_uuid})", domain_uuid=c.domain_uuid,
                         domain_name=c.domain_name, state=c.state, running=running.of(c.domain_uuid))
        entry["attrs"] = list(c.attrs) if c is not None and entry["owner"] != "external" else []
        entry["pf"] = sysfs.physfn(dev.parent)  # SR-IOV: the PF of the VF it is on
        entry["kind"] = "mdev"
        devices.append(entry)
    # NVIDIA's vendor-specific interface: one scan of bus/pci/devices and one read per VF, so the VF table
    # and the device list cannot disagree about a type that changes meanwhile.
    vfs = vgpu_vfs_data(sysfs, sysfs.vgpu_vfs())
    for v in vfs:  # a VF with a vGPU type set is a device too
        vf, current = v["vf"], v["current_type"]
        if current in (None, "", "0"):
            continue
        c = by_mdev.get(vf)
        ours = c is not None and c.kind == NVIDIA_VF and c.type == current
        entry = {"uuid": vf, "parent": vf, "type": current, "kind": NVIDIA_VF, "pf": v["pf"],
                 "type_name": "", "attrs": []}
        if c is None or not ours:
            entry.update(owner="external", domain_uuid=None, domain_name=None, state=None, running=None)
        else:
            entry.update(owner=f"{c.domain_name or '?'} ({c.domain_uuid})", domain_uuid=c.domain_uuid,
                         domain_name=c.domain_name, state=c.state, running=running.of(c.domain_uuid))
        devices.append(entry)
    orphans = []
    for c in claims:
        reason = orphan_reason(c, sysfs, running)
        if reason:
            orphans.append({**_claim_dict(c), "reason": reason})
    parents = types_data(sysfs, sysfs.parents())
    if env.cfg.allowed_parents is not None or env.cfg.allowed_types is not None:
        for p in parents:
            for t in p["types"]:
                t["allowed"] = lifecycle.policy_problem(env.cfg, ManagedMdev("-", p["parent"], t["type"])) is None
    return {
        "sysfs_root": sysfs.root,
        "state_dir": env.cfg.state_dir,
        "parents": parents,
        "vgpu_vfs": vfs,
        "devices": devices,
        "orphans": orphans,
        "ledger_problems": problems,
        "running_known": running.uuids is not None,
        "running_error": running.error,
        "policy": policy_data(env),
        "parent_map": [{"domain_parent": k, "host_parent": v, "present": sysfs.parent_dir(v) is not None}
                       for k, v in env.cfg.parents],
    }


def vgpu_vfs_data(sysfs: Sysfs, vfs: Sequence[str]) -> list[dict[str, Any]]:
    """NVIDIA's vendor-specific interface: each VF's current type and the types it can take now."""
    out = []
    for vf in vfs:
        try:
            current = sysfs.current_vgpu_type(vf)
        except OSError:
            current = None
        creatable = sysfs.creatable_vgpu_types(vf)
        out.append({"vf": vf, "pf": sysfs.physfn(vf), "current_type": current,
                    "creatable": [{"type": t, "name": n} for t, n in (creatable or {}).items()]})
    return out


def render_vgpu_vfs(data: list[dict[str, Any]]) -> list[str]:
    rows = [[v["vf"], v["pf"] or "-", v["current_type"] or "?",
             cut(", ".join(f"{c['type']} {c['name']}" for c in v["creatable"]) or "none", 70)] for v in data]
    return [table(["VF", "PF", "CURRENT TYPE", "CREATABLE NOW"], rows)] if rows else []


def _yes_no(value: bool | None) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


def render_status(data: dict[str, Any]) -> str:
    lines = [f"mdev parents and types (sysfs {data['sysfs_root']}):"]
    rows = [[p["parent"], t["type"], t["name"] or "-", _num(t["available"]), str(t["in_use"]),
             cut(t["description"]) or "-"]
            for p in data["parents"] for t in p["types"]]
    rows += [[p["parent"], "(no mdev types)", "", "", "", ""] for p in data["parents"] if not p["types"]]
    policy = data.get("policy")
    header = ["PARENT", "TYPE", "NAME", "AVAILABLE", "IN USE", "DESCRIPTION"]
    if policy is not None:  # which types domains may ask for under the admin's policy
        allowed = {(p["parent"], t["type"]): t.get("allowed") for p in data["parents"] for t in p["types"]}
        rows = [[*r[:5], _yes_no(allowed.get((r[0], r[1]))) if r[2] else "", r[5]] for r in rows]
        header[5:5] = ["ALLOWED"]
    lines.append(table(header, rows) if rows else "  none: no mdev parent is registered on this host")
    if data.get("vgpu_vfs"):
        lines.append("")
        lines.append("NVIDIA vendor-specific vGPU VFs (not mdev; domains opt in with kind=\"nvidia-vf\"):")
        lines += render_vgpu_vfs(data["vgpu_vfs"])
    lines += ["  " + line for line in render_policy(policy)]
    for pm in data.get("parent_map", []):
        lines.append(f"  [parents]: a domain's {pm['domain_parent']} -> {pm['host_parent']} on this host"
                     + ("" if pm["present"] else " (NOT registered here: such starts fail)"))
    lines.append("")
    lines.append(f"mdevs ({len(data['devices'])}):")
    if data["devices"]:
        first = "UUID / VF" if any(d.get("kind") == NVIDIA_VF for d in data["devices"]) else "UUID"
        lines.append(table([first, "PARENT", "TYPE", "OWNER", "STATE", "RUNNING"], [
            [d["uuid"], _parent_cell(d), (f"vGPU {d['type']}" if d.get("kind") == NVIDIA_VF else d["type"]) or "?",
             d["owner"], d["state"] or "-",
             "-" if d["owner"] == "external" else _yes_no(d["running"])]
            for d in data["devices"]
        ]))
        lines += [f"  {d['uuid']}: attributes written at creation: {', '.join(d['attrs'])}"
                  for d in data["devices"] if d.get("attrs")]
    lines.append("")
    if not data["running_known"]:
        lines.append(f"domains running: unknown ({data['running_error']}); orphans below are only gone devices")
    lines.append(f"orphaned ledger entries ({len(data['orphans'])}):")
    if data["orphans"]:
        lines.append(table(["UUID", "DOMAIN", "PARENT", "TYPE", "STATE", "WHY"], [
            [o["mdev"], f"{o['domain_name'] or '?'} ({o['domain_uuid']})", o["parent"], o["type"], o["state"],
             o["reason"]]
            for o in data["orphans"]
        ]))
        lines.append("  clean them up with `mdev-hooks gc` (see `mdev-hooks gc --dry-run` first)")
    for p in data["ledger_problems"]:
        lines.append(f"ledger problem: {p}")
    return "\n".join(lines)
