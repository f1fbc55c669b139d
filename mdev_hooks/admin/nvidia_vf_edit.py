"""`mdev-hooks add VM --vf VF --type ID` and `drop VM --vf VF`: an NVIDIA vGPU 17+ (kind="nvidia-vf") in a
domain's XML: a managed PCI hostdev on the VF plus its metadata entry. core/kinds/nvidia_vf.py is the hook's side.

Invariant: the admin names the VF (never picked here: the hostdev's address is what qemu gets); the entry names the
PF only when the hook's own binding of entries to VFs would give it this VF.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable
from typing import Any

from lxml import etree

from mdev_hooks.core import plan
from mdev_hooks.core.env import Env
from mdev_hooks.core.kinds import owned_elsewhere
from mdev_hooks.domain import ManagedDevice, domain_uuid
from mdev_hooks.enums import ClaimState, Kind
from mdev_hooks.errors import HookError
from mdev_hooks.kernel import Sysfs
from mdev_hooks.names import check_vgpu_type


def _pf_of_vf(sysfs: Sysfs, vf: str) -> str:
    """The PF of `vf` ("" if it has no physfn link); HookError unless `vf` has nvidia/current_vgpu_type."""
    if sysfs.takes_vgpu_type(vf):
        return sysfs.physfn(vf) or ""
    vfs = sysfs.vfs(vf)
    if vfs:  # the admin named the GPU: say which VFs there are (never pick one: the hostdev address is theirs)
        listed = [v for v in vfs if sysfs.takes_vgpu_type(v)] or vfs
        more = ", ..." if len(listed) > 8 else ""
        raise HookError(f"--vf {vf} is a physical function, not a VF: choose one of its VFs "
                        f"({', '.join(listed[:8])}{more}; `mdev-hooks types --parent {vf}` shows what each can take "
                        f"now); --parent {vf} names the PF in the metadata")
    if not sysfs.is_pci_device(vf):
        known = sysfs.vgpu_vfs()
        hint = f"NVIDIA vGPU VFs here: {', '.join(known[:8])}" if known else \
            "no NVIDIA vGPU VF here: are the VFs enabled? /usr/lib/nvidia/sriov-manage -e PF"
        raise HookError(f"VF {vf} not found under {sysfs.root}/bus/pci/devices ({hint})")
    raise HookError(f"{vf} has no nvidia/current_vgpu_type (not an NVIDIA vGPU 17+ VF, or not bound to the nvidia "
                    "driver)")


def _entry_parents(given: str | None, vf: str, pf: str) -> list[str]:
    """What the metadata entry may name as parent, best first: --parent if given (the VF's PF or the VF itself),
    else the PF (reads best: the GPU, as `types` shows it), then the VF itself."""
    if given is None:
        return [pf, vf] if pf else [vf]
    parent = given.lower()
    if parent not in (pf, vf):
        raise HookError(f"--parent {given} is neither VF {vf}'s physical function ({pf or 'it has none'}) nor the "
                        "VF itself; the metadata entry must name one of them")
    return [parent]


def _bound(xml: bytes, env: Env, vf: str) -> ManagedDevice | None:
    """The vGPU the hook would set on `vf` for this domain XML (its own parse and binding of entries to VFs)."""
    from mdev_hooks import domain, mdevctl

    parsed = plan.resolve(domain.parse(xml, *mdevctl.lookup(env.cfg.mdevctl_dir)), env)
    return next((m for m in parsed.devices if m.key == vf and m.kind is Kind.NVIDIA_VF), None)


def _binding_problem(xml: bytes, env: Env, vf: str, parent: str, type_id: str) -> str | None:
    got = _bound(xml, env, vf)
    if got is not None and ((got.mapped_from or got.parent), got.type) == (parent, type_id):
        return None
    other = f"another entry of this domain (parent {got.mapped_from or got.parent}, type {got.type})" if got \
        else "no entry"
    return (f"with an entry naming parent {parent}, the hook would give VF {vf} {other}: entries naming a PF take "
            "its VFs in document order")


def _nvidia_vf_edit(root: etree._Element, env: Env, vf: str, type_id: str,
               parents: list[str]) -> tuple[etree._Element, str, list[str]]:
    """A copy of the domain with the VF's hostdev and an entry naming the first of `parents` that the admin's policy
    allows and that the hook would bind to this VF; also why the parents before it were passed over."""
    from mdev_hooks.admin import domedit

    problems: list[str] = []
    for parent in parents:
        problem = plan.policy_problem(env.cfg, ManagedDevice(vf, parent, type_id, kind=Kind.NVIDIA_VF))
        if problem is None:
            edited = copy.deepcopy(root)
            domedit.add_vgpu(edited, vf, parent, type_id)
            problem = _binding_problem(domedit.serialize(edited), env, vf, parent, type_id)
            if problem is None:
                return edited, parent, problems
        problems.append(problem)
    hint = f" (--parent {vf} names the VF itself)" if parents[-1] != vf else ""
    raise HookError("; ".join(problems) + hint)


def _vgpu_type_name(sysfs: Sysfs, vfs: list[str], type_id: str) -> str:
    """The type's name from the first of `vfs` that lists it as creatable now ("" if none does)."""
    return next((n for vf in vfs if (n := (sysfs.creatable_vgpu_types(vf) or {}).get(type_id))), "")


def _vgpu_current(sysfs: Sysfs, vf: str, type_id: str, mine: bool) -> str:
    """The type set on the VF now; HookError if it holds another type that no claim of this domain explains."""
    try:
        current = sysfs.current_vgpu_type(vf) or "0"
    except OSError as e:
        raise HookError(f"VF {vf}: nvidia/current_vgpu_type cannot be read: {e.strerror}") from None
    if current not in ("0", type_id) and not mine:
        raise HookError(f"VF {vf} already has vGPU type {current} (set by another tool or VM: nothing records it as "
                        "a domain's); choose another VF, or clear it with "
                        f"`echo 0 > /sys/bus/pci/devices/{vf}/nvidia/current_vgpu_type` if unused")
    return current


def _vgpu_now(sysfs: Sysfs, vf: str, type_id: str, current: str, mine: bool) -> str:
    """What the VF offers now, as add's second line (a note when a start would fail now: not an error, the GPU
    may have room by then)."""
    if current == type_id:
        return f"VF {vf} has type {type_id} already" + (
            "" if mine else ": nobody owns it, so the start uses it as it is and leaves it set at stop")
    if current != "0":  # another type, set for this domain (else _vgpu_current refused): it is still running
        return (f"VF {vf} has type {current} for this domain: the hook writes 0 when it stops, {type_id} at its "
                "next start")
    creatable = sysfs.creatable_vgpu_types(vf)
    if creatable is None:
        return f"note: nvidia/creatable_vgpu_types of VF {vf} cannot be read now"
    if type_id not in creatable:
        now = ", ".join(f"{t} ({n})" for t, n in list(creatable.items())[:8]) or "none: the GPU is full"
        return (f"note: VF {vf} cannot take type {type_id} now (creatable now: {now}): a start fails until it can "
                "(the list shrinks as the GPU fills, and a GPU holds one vGPU type at a time)")
    return f"VF {vf} can take type {type_id} now"


def add(args: argparse.Namespace, virsh: Any, env: Env, running: Callable[[], Any]) -> None:
    """`mdev-hooks add VM --vf VF --type ID [--parent PF|VF]`."""
    from mdev_hooks.admin import domedit

    type_id = check_vgpu_type(args.type, "--type")
    sysfs, vf = env.sysfs, args.vf
    pf = _pf_of_vf(sysfs, vf)
    parents = _entry_parents(args.parent, vf, pf)
    root = domedit.parse(virsh.dumpxml_inactive(args.domain))
    name = domedit.domain_name(root) or args.domain
    dom_uuid = domain_uuid(root)

    claim = env.ledger.get(vf)
    if claim is not None and claim.domain_uuid != dom_uuid:
        raise HookError(owned_elsewhere(Kind.NVIDIA_VF, vf, claim) + "; choose another VF")
    mine = claim is not None
    current = _vgpu_current(sysfs, vf, type_id, mine)
    edited, parent, passed_over = _nvidia_vf_edit(root, env, vf, type_id, parents)
    virsh.define(domedit.serialize(edited))
    # read it back as the hook will see it: libvirt must have kept the managed PCI hostdev and the entry, and the
    # hook's binding must still give this VF that entry
    if _binding_problem(virsh.dumpxml_inactive(dom_uuid), env, vf, parent, type_id):
        raise HookError(f"defined domain {name}, but libvirt's XML does not show the managed PCI hostdev of VF {vf} "
                        f"with its {Kind.NVIDIA_VF} metadata entry; check `virsh dumpxml --inactive`")
    type_name = _vgpu_type_name(sysfs, [vf, *sysfs.vfs(pf)] if pf else [vf], type_id)
    of_pf = f" of PF {pf}" if pf else ""
    print(f"added NVIDIA vGPU type {type_id}{f' ({type_name})' if type_name else ''} on VF {vf}{of_pf} "
          f"to domain {name}")
    if passed_over:
        print(f"note: the metadata entry names the VF itself, not its PF: {passed_over[0]}")
    print(_vgpu_now(sysfs, vf, type_id, current, mine))
    if dom_uuid in (running().uuids or frozenset()):
        print(f"domain {name} is running: the type is set at its next start")


def drop(args: argparse.Namespace, virsh: Any, env: Env, root: etree._Element, name: str, dom_uuid: str) -> None:
    """`mdev-hooks drop VM --vf VF`."""
    from mdev_hooks import domain, mdevctl
    from mdev_hooks.admin import domedit

    vf = args.vf
    try:  # which entry naming a PF is this VF's: the hook's own binding says
        got = _bound(domedit.serialize(root), env, vf)
    except HookError:  # e.g. two entries name the VF: removing them is what drop is for
        got = None
    bound = ((got.mapped_from or got.parent), got.type) if got is not None else None
    unbound = domedit.PLAIN_PASSTHROUGH if env.sysfs.is_pci_device(vf) else (
        f"VF {vf} is not in sysfs now, so no entry naming its PF can be matched to it (are the VFs enabled? "
        "sriov-manage -e); edit the domain by hand (virsh edit)")
    removed = domedit.drop_vgpu(root, vf, bound, unbound)
    virsh.define(domedit.serialize(root))
    back = virsh.dumpxml_inactive(dom_uuid)
    domain.parse(back, *mdevctl.lookup(env.cfg.mdevctl_dir))  # what the hook will read must still parse
    if domedit.has_vgpu(domedit.parse(back), vf):
        raise HookError(f"defined domain {name}, but libvirt's XML still has the managed PCI hostdev or the "
                        f"{Kind.NVIDIA_VF} entry of VF {vf}")
    for line in removed:
        print(f"removed {line} from domain {name}")
    claim = env.ledger.get(vf)
    if claim is not None and claim.domain_uuid == dom_uuid:
        if claim.state == ClaimState.ADOPTED:
            print(f"the ledger says domain {name} uses vGPU type {claim.type} on VF {vf} as it found it: the hook "
                  "leaves it set when the domain stops")
        else:
            print(f"the ledger says the hook set vGPU type {claim.type} on VF {vf} for domain {name}: it stays set "
                  "until the domain stops, then the hook writes 0")
