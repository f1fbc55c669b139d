"""`mdev-hooks types`: the mdev types each parent offers (like `mdevctl types`), and what NVIDIA vGPU 17+ VFs can
take now; its rows are also status's.

Invariant: reads only; an unreadable value is shown as unknown (`?`), never guessed.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from mdev_hooks.admin import common
from mdev_hooks.admin.render import cut, num, table
from mdev_hooks.errors import HookError
from mdev_hooks.kernel import Sysfs


@dataclass
class TypeRow:
    type: str
    name: str
    description: str
    device_api: str
    available: int | None
    in_use: int
    allowed: bool | None = None  # under the admin's policy (status only; absent from JSON without a policy)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if self.allowed is None:
            del data["allowed"]
        return data


@dataclass
class ParentRow:
    parent: str
    vendor: str | None
    types: list[TypeRow]

    def to_json(self) -> dict[str, Any]:
        return {"parent": self.parent, "vendor": self.vendor, "types": [t.to_json() for t in self.types]}


@dataclass
class NvidiaVfRow:
    """An NVIDIA vendor-interface VF: the type set now ("0": none; None: unreadable) and what it can take now."""

    vf: str
    pf: str | None
    current_type: str | None
    creatable: list[dict[str, str]]


def parent_rows(sysfs: Sysfs, parents: Sequence[str]) -> list[ParentRow]:
    out = []
    for parent in parents:
        types = []
        for mtype in sysfs.types(parent):
            info = sysfs.type_info(parent, mtype)
            if info is None:
                continue
            types.append(TypeRow(mtype, info.name, info.description, info.device_api, info.available,
                                 len(sysfs.devices_of_type(parent, mtype))))
        out.append(ParentRow(parent, sysfs.parent_vendor(parent), types))
    return out


def nvidia_vf_rows(sysfs: Sysfs, vfs: Sequence[str]) -> list[NvidiaVfRow]:
    """One read of each VF's current type (status's device list uses these rows too, so the two agree)."""
    out = []
    for vf in vfs:
        try:
            current = sysfs.current_vgpu_type(vf)
        except OSError:
            current = None
        creatable = sysfs.creatable_vgpu_types(vf) or {}
        out.append(NvidiaVfRow(vf, sysfs.physfn(vf), current, [{"type": t, "name": n} for t, n in creatable.items()]))
    return out


def render_types(rows: list[ParentRow]) -> str:
    """Like `mdevctl types`, plus the number of devices of each type that exist now."""
    lines: list[str] = []
    for p in rows:
        lines.append(p.parent)
        if not p.types:
            lines.append("  (no mdev types)")
        for t in p.types:
            lines += [f"  {t.type}", f"    Available instances: {num(t.available)}", f"    In use: {t.in_use}",
                      f"    Device API: {t.device_api or '?'}"]
            if t.name:
                lines.append(f"    Name: {t.name}")
            if t.description:
                lines.append(f"    Description: {t.description}")
    return "\n".join(lines)


def render_nvidia_vfs(rows: list[NvidiaVfRow]) -> list[str]:
    cells = [[v.vf, v.pf or "-", v.current_type or "?",
              cut(", ".join(f"{c['type']} {c['name']}" for c in v.creatable) or "none", 70)] for v in rows]
    return [table(["VF", "PF", "CURRENT TYPE", "CREATABLE NOW"], cells)] if cells else []


VGPU_HEADING = ("NVIDIA vendor-specific vGPU VFs (not mdev; a domain opts in with <device kind=\"nvidia-vf\" "
                "parent=\"PF or VF\" type=\"ID\"/>):")


def _print_nvidia_vfs(args: argparse.Namespace, rows: list[NvidiaVfRow]) -> int:
    if args.json:
        common.print_json([asdict(r) for r in rows])
        return common.OK
    print(VGPU_HEADING)
    print("\n".join(render_nvidia_vfs(rows)) or "  none")
    return common.OK


def cmd_types(args: argparse.Namespace) -> int:
    sysfs = common.make_env(args).sysfs
    vgpu_vfs: list[str] = []  # NVIDIA's vendor-specific interface (not mdev): VFs to show
    if args.parent:
        if sysfs.parent_dir(args.parent) is None:
            if sysfs.on_nvidia_vendor_interface(args.parent):
                vfs = [args.parent] if sysfs.takes_vgpu_type(args.parent) else \
                    [v for v in sysfs.vfs(args.parent) if sysfs.takes_vgpu_type(v)]
                return _print_nvidia_vfs(args, nvidia_vf_rows(sysfs, vfs))
            known = sysfs.parents()
            raise HookError(f"parent {args.parent} not found under {sysfs.root}/class/mdev_bus (known parents: "
                            f"{', '.join(known) or 'none'})")
        parents = [args.parent]
    else:
        parents = sysfs.parents()
        vgpu_vfs = sysfs.vgpu_vfs()
    rows = parent_rows(sysfs, parents)
    if args.json:
        common.print_json([r.to_json() for r in rows])
    elif not rows and not vgpu_vfs:
        print(f"no mdev parent is registered on this host ({sysfs.root}/class/mdev_bus is empty or missing)")
    else:
        if rows:
            print(render_types(rows))
        if vgpu_vfs:
            _print_nvidia_vfs(args, nvidia_vf_rows(sysfs, vgpu_vfs))
    return common.OK


def register(command: Any) -> None:
    p = command("types", cmd_types, "mdev types each parent offers (like `mdevctl types`)",
                "  mdev-hooks types\n  mdev-hooks types --parent 0000:00:02.0")
    p.add_argument("--parent", metavar="P", type=common.name_arg, help="only this parent")
    p.add_argument("--json", action="store_true", help="machine-readable output")
