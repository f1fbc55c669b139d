"""`mdev-hooks add` / `drop`: give a domain a managed mdev (or, with --vf, an NVIDIA vGPU 17+), or take it away, in
its persistent definition through virsh.

Invariant: a change is defined only after the hook's own checks pass on it, and is read back from libvirt as the
hook will see it; a running domain keeps its devices until it stops.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from mdev_hooks.admin import common
from mdev_hooks.core.kinds import owned_elsewhere
from mdev_hooks.core.plan import parent_problem
from mdev_hooks.domain import ManagedDevice, domain_uuid
from mdev_hooks.enums import Kind
from mdev_hooks.errors import HookError


def _add_usage(args: argparse.Namespace) -> str | None:
    if args.vf and (args.uuid or args.model):
        return "argument --vf: not allowed with --uuid or --model (they are for mdevs)"
    if not args.vf and not args.parent:
        return "the following arguments are required: --parent (or --vf for an NVIDIA vGPU)"
    return None


def _drop_usage(args: argparse.Namespace) -> str | None:
    if args.vf and args.uuid:
        return "argument --vf: not allowed with UUID (give the mdev's UUID or the vGPU's VF)"
    if not args.vf and not args.uuid:
        return "the following arguments are required: UUID (or --vf for an NVIDIA vGPU)"
    return None


def cmd_add(args: argparse.Namespace) -> int:
    import uuid as uuidlib

    from mdev_hooks import domain
    from mdev_hooks.admin import domedit

    if args.vf:
        from mdev_hooks.admin import nvidia_vf_edit

        nvidia_vf_edit.add(args, common.virsh(args), common.make_env(args), lambda: common.running(args))
        return common.OK
    virsh = common.virsh(args)
    env = common.make_env(args)
    root = domedit.parse(virsh.dumpxml_inactive(args.domain))
    name = domedit.domain_name(root) or args.domain
    dom_uuid = domain_uuid(root)
    mdev = args.uuid or str(uuidlib.uuid4())
    m = ManagedDevice(mdev, args.parent, args.type)

    claim = env.ledger.get(mdev)
    if claim is not None and claim.domain_uuid != dom_uuid:
        raise HookError(owned_elsewhere(Kind.MDEV, mdev, claim) + "; choose another UUID")
    dev = env.sysfs.device(mdev)
    if dev is not None and (dev.parent, dev.type) != (m.parent, m.type):
        raise HookError(f"mdev {mdev} already exists as type {dev.type or '?'} on {dev.parent}; choose another UUID")
    if dev is None:
        # name the mdev "(new)" in the error when the user gave no UUID: a random one would only confuse
        problem = parent_problem(env, m if args.uuid else replace(m, key="(new)"))
        if problem:
            raise HookError(problem)
    info = env.sysfs.type_info(m.parent, m.type)
    model = args.model or (info.device_api if info and info.device_api in domedit.MODELS else "vfio-pci")

    domedit.add(root, mdev, m.parent, m.type, model)
    virsh.define(domedit.serialize(root))
    # read it back as the hook will see it: libvirt must have kept managed='yes' and the metadata
    back = domain.parse(virsh.dumpxml_inactive(dom_uuid))
    if m not in back.devices:
        raise HookError(f"defined domain {name}, but libvirt's XML does not show managed mdev {mdev} with its "
                        "metadata; check `virsh dumpxml --inactive`")
    print(f"added mdev {mdev} (type {m.type} on {m.parent}, model {model}) to domain {name}")
    avail = info.available if info else None
    if avail == 0 and dev is None:
        print(f"note: {m.parent} has no free instance of {m.type} now: a start fails until one is free")
    elif avail is not None:
        print(f"{m.parent} offers {avail} more instance(s) of {m.type} now")
    if dom_uuid in (common.running(args).uuids or frozenset()):
        print(f"domain {name} is running: the mdev is created at its next start")
    return common.OK


def cmd_drop(args: argparse.Namespace) -> int:
    from mdev_hooks import domain
    from mdev_hooks.admin import domedit

    virsh = common.virsh(args)
    root = domedit.parse(virsh.dumpxml_inactive(args.domain))
    name = domedit.domain_name(root) or args.domain
    dom_uuid = domain_uuid(root)
    if args.vf:
        from mdev_hooks.admin import nvidia_vf_edit

        nvidia_vf_edit.drop(args, virsh, common.make_env(args), root, name, dom_uuid)
        return common.OK
    removed = domedit.drop(root, args.uuid)
    virsh.define(domedit.serialize(root))
    back = domain.parse(virsh.dumpxml_inactive(dom_uuid))
    if any(m.key == args.uuid for m in back.devices):
        raise HookError(f"defined domain {name}, but libvirt's XML still has managed mdev {args.uuid}")
    for line in removed:
        print(f"removed {line} from domain {name}")
    claim = common.make_env(args).ledger.get(args.uuid)
    if claim is not None and claim.domain_uuid == dom_uuid:
        print(f"the ledger says the hook created mdev {args.uuid} for domain {name}: it stays until the domain "
              "stops, then the hook removes it")
    return common.OK


def register(command: Any) -> None:
    p = command("add", cmd_add, "give a domain a managed mdev (persistent definition, through virsh)",
                "  mdev-hooks add vm1 --parent 0000:00:02.0 --type i915-GVTg_V5_4\n"
                "  mdev-hooks add ml1 --vf 0000:41:00.4 --type 1414     # NVIDIA vGPU 17+ (not mdev)",
                "Check that PARENT offers TYPE here, then add <hostdev type='mdev' managed='yes'> and the metadata "
                "entry to the domain's persistent definition (virsh dumpxml --inactive, edit, virsh define). "
                "Takes effect at the next start.\n\n"
                "With --vf (NVIDIA vGPU 17+ vendor-specific interface on kernel >= 6.8, not mdev): give the domain "
                "that VF as <hostdev type='pci' managed='yes'> and the entry <device kind=\"nvidia-vf\" "
                "parent=... type=T/>, so the hook writes T to the VF's nvidia/current_vgpu_type before each start "
                "and 0 after. You choose the VF (`mdev-hooks types` lists them); the entry names its PF unless "
                "--parent names the VF itself (or naming the PF would not work for this domain).",
                usage_check=_add_usage)
    p.add_argument("domain", metavar="DOMAIN", help="domain name or UUID")
    p.add_argument("--parent", metavar="P", type=common.name_arg,
                   help="parent device, e.g. 0000:00:02.0 (required without --vf; with --vf: the VF's PF, the "
                        "default, or the VF itself)")
    p.add_argument("--type", metavar="T", type=common.name_arg, required=True,
                   help="mdev type id, e.g. nvidia-231 (with --vf: the numeric vGPU type id, e.g. 1414)")
    p.add_argument("--uuid", metavar="U", type=common.uuid_arg, help="mdev UUID (default: a new random one)")
    p.add_argument("--model", choices=("vfio-pci", "vfio-ccw", "vfio-ap"),
                   help="hostdev model (default: the type's device_api)")
    p.add_argument("--vf", metavar="VF", type=common.pci_arg,
                   help="an NVIDIA vGPU 17+ on this VF (PCI address, e.g. 0000:41:00.4) instead of an mdev")

    p = command("drop", cmd_drop, "remove a managed mdev from a domain's persistent definition",
                "  mdev-hooks drop vm1 4b20d080-1b54-4048-85b3-a6a62d165c01\n"
                "  mdev-hooks drop ml1 --vf 0000:41:00.4",
                "Remove the managed mdev hostdev and its metadata entry from the domain's persistent definition. "
                "A running domain keeps its mdev until it stops; the hook removes it then.\n\n"
                "With --vf: remove the <hostdev type='pci' managed='yes'> on that VF and its kind=\"nvidia-vf\" "
                "entry (the entries naming the VF; if none, the entry naming its PF that the hook gives this VF: "
                "entries naming a PF take its VFs in document order). A running domain keeps its vGPU type until it "
                "stops; the hook writes 0 then.",
                usage_check=_drop_usage)
    p.add_argument("domain", metavar="DOMAIN", help="domain name or UUID")
    p.add_argument("uuid", metavar="UUID", type=common.uuid_arg, nargs="?", help="the mdev's UUID")
    p.add_argument("--vf", metavar="VF", type=common.pci_arg, help="the NVIDIA vGPU on this VF instead of an mdev")
