"""`mdev-hooks`: the administrator's command (install, plan, status, gc, types, add, drop).

Never imported by the hook (hooks/qemu -> mdev_hooks.hook): it may call virsh, the hook must not.
Exit codes: 0 ok; 1 the verdict is negative or the operation failed (one `mdev-hooks: ...` line on stderr);
2 usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from mdev_hooks import __version__, config, lifecycle, steps
from mdev_hooks.domain import ManagedMdev
from mdev_hooks.errors import HookError
from mdev_hooks.names import canonical_uuid, is_pci_address, is_valid_name

PREFIX = "mdev-hooks: "
OK, FAILED, USAGE = 0, 1, 2

EXIT_CODES = """\
exit status:
  0  ok (plan: a start would succeed)
  1  the verdict is negative or the operation failed; the reason is one `mdev-hooks: ...` line on stderr
  2  usage error"""

MAIN_EPILOG = f"""\
examples:
  virsh dumpxml vm1 | mdev-hooks plan -        would `virsh start vm1` get its mdevs?
  mdev-hooks status                           parents, types, mdevs and who owns them
  mdev-hooks add vm1 --parent 0000:00:02.0 --type i915-GVTg_V5_4
  mdev-hooks add ml1 --vf 0000:41:00.4 --type 1414   an NVIDIA vGPU 17+ on that VF (kind="nvidia-vf")
  mdev-hooks --sysfs-root /tmp/fake types     any command against another sysfs

configuration: --config FILE, else $MDEV_HOOKS_CONFIG, else {config.DEFAULT_PATH} (optional).
virsh: add, drop, gc and status run `virsh -c URI` (--connect, default qemu:///system); $MDEV_HOOKS_VIRSH
names another program (tests use a fake).

{EXIT_CODES}"""


class _NullLog:
    """The hook's code logs through structlog; commands that only read pass this instead."""

    def bind(self, **_: Any) -> _NullLog:
        return self

    def __getattr__(self, _name: str) -> Callable[..., None]:
        return lambda *_a, **_k: None


# -- argument types (a bad value is a usage error, exit 2) -------------------------------------------------------
def _name(value: str) -> str:
    if not is_valid_name(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a valid name (one path component of letters, digits "
                                         "and _.:-, e.g. 0000:00:02.0 or nvidia-231)")
    return value


def _uuid(value: str) -> str:
    try:
        return canonical_uuid(value, "UUID")
    except HookError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _pci(value: str) -> str:
    if not is_pci_address(value.lower()):
        raise argparse.ArgumentTypeError(f"{value!r} is not a PCI address as sysfs names it (DDDD:BB:SS.F, "
                                         "e.g. 0000:41:00.4)")
    return value.lower()


# -- combinations argparse cannot express (a usage error, exit 2) --------------------------------------------------
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


# -- helpers -----------------------------------------------------------------------------------------------------
def _err(message: str) -> None:
    first, *rest = message.splitlines() or [""]
    sys.stderr.write(PREFIX + first + "\n" + "".join(line + "\n" for line in rest))
    sys.stderr.flush()


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def _load_config(args: argparse.Namespace) -> config.Config:
    environ = dict(os.environ)
    if getattr(args, "config", None):
        environ["MDEV_HOOKS_CONFIG"] = args.config
    cfg = config.load(environ)
    if getattr(args, "sysfs_root", None):
        cfg = replace(cfg, sysfs_root=os.path.abspath(args.sysfs_root))
    return cfg


def _env(args: argparse.Namespace, log: Any = None) -> steps.Env:
    return steps.Env.from_config(_load_config(args), log if log is not None else _NullLog())


def _virsh(args: argparse.Namespace) -> Any:
    from mdev_hooks.virsh import DEFAULT_URI, Virsh

    return Virsh(getattr(args, "connect", None) or DEFAULT_URI)


def _running(args: argparse.Namespace) -> Any:
    from mdev_hooks.report import Running
    from mdev_hooks.virsh import VirshError

    try:
        return Running(frozenset(_virsh(args).running_uuids()))
    except VirshError as e:
        return Running(None, str(e))


# -- commands ----------------------------------------------------------------------------------------------------
def cmd_install(args: argparse.Namespace) -> int:
    from mdev_hooks import install

    rep = install.install(args.hooks_dir, args.config_dir, args.qemu_d, args.force, args.python or sys.executable)
    print("\n".join(rep.lines))
    return OK


def cmd_uninstall(args: argparse.Namespace) -> int:
    from mdev_hooks import install

    rep = install.uninstall(args.hooks_dir, args.config_dir)
    print("\n".join(rep.lines))
    try:
        claims, _ = _env(args).ledger.all()
    except HookError:
        claims = []
    if claims:
        print(f"warning: the ledger still gives {len(claims)} mdev(s) to domains; with no hook installed they are "
              "not removed when those domains stop: run `mdev-hooks gc` once they have stopped")
    return OK


def _read_input(source: str) -> bytes:
    from mdev_hooks.hook import MAX_READ

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


def cmd_plan(args: argparse.Namespace) -> int:
    from mdev_hooks import domain, report
    from mdev_hooks.hook import mentions_mdev

    data = _read_input(args.xml)
    env = _env(args)
    if not mentions_mdev(data):
        result: dict[str, Any] = {"ok": True, "problem": None, "mdevs": [], "actions": [], "ignored_by_hook": True}
        if args.json:
            _print_json(result)
        else:
            print("the hook ignores this domain: it names no mdev (no urn:mdev-hooks:domain:1 metadata, no mdev "
                  "hostdev)\nverdict: a start would succeed")
        return OK
    try:
        from mdev_hooks import mdevctl

        parsed = lifecycle.resolve(domain.parse(data, *mdevctl.lookup(env.cfg.mdevctl_dir)), env)
        steps = lifecycle.validate(parsed, env)
    except HookError as e:
        if args.json:
            _print_json({"ok": False, "problem": str(e), "mdevs": [], "actions": []})
        else:
            print(f"verdict: a start would FAIL:\n  {e}")
        _err(str(e))
        return FAILED
    result = report.plan_data(parsed, steps, env)
    if args.json:
        _print_json(result)
    else:
        print(report.render_plan(result))
    if result["problem"]:
        _err(result["problem"])
        return FAILED
    return OK


def cmd_status(args: argparse.Namespace) -> int:
    from mdev_hooks import report

    env = _env(args)
    data = report.status_data(env, _running(args))
    if args.json:
        _print_json(data)
    else:
        print(report.render_status(data))
    return OK


def cmd_types(args: argparse.Namespace) -> int:
    from mdev_hooks import report

    env = _env(args)
    sysfs = env.sysfs
    vgpu_vfs: list[str] | None = None  # NVIDIA's vendor-specific interface (not mdev): VFs to show
    if args.parent:
        if sysfs.parent_dir(args.parent) is None:
            if sysfs.is_nvidia_vendor_vfio(args.parent):
                vfs = [args.parent] if sysfs.is_vgpu_vf(args.parent) else \
                    [v for v in sysfs.vfs(args.parent) if sysfs.is_vgpu_vf(v)]
                return _print_vgpu_types(args, report.vgpu_vfs_data(sysfs, vfs))
            known = sysfs.parents()
            raise HookError(f"parent {args.parent} not found under {sysfs.root}/class/mdev_bus (known parents: "
                            f"{', '.join(known) or 'none'})")
        parents = [args.parent]
    else:
        parents = sysfs.parents()
        vgpu_vfs = sysfs.vgpu_vfs()
    data = report.types_data(sysfs, parents)
    if args.json:
        _print_json(data)
    elif not data and not vgpu_vfs:
        print(f"no mdev parent is registered on this host ({sysfs.root}/class/mdev_bus is empty or missing)")
    else:
        if data:
            print(report.render_types(data))
        if vgpu_vfs:
            _print_vgpu_types(args, report.vgpu_vfs_data(sysfs, vgpu_vfs))
    return OK


def _print_vgpu_types(args: argparse.Namespace, data: list[dict[str, Any]]) -> int:
    from mdev_hooks import report

    if args.json:
        _print_json(data)
        return OK
    print("NVIDIA vendor-specific vGPU VFs (not mdev; a domain opts in with <device kind=\"nvidia-vf\" "
          "parent=\"PF or VF\" type=\"ID\"/>):")
    print("\n".join(report.render_vgpu_vfs(data)) or "  none")
    return OK


def cmd_gc(args: argparse.Namespace) -> int:
    from mdev_hooks import gc
    from mdev_hooks import log as logsetup
    from mdev_hooks.virsh import VirshError

    cfg = _load_config(args)
    dry = args.dry_run or cfg.dry_run
    asked_at = time.time()
    try:
        running = _virsh(args).running_uuids()
    except VirshError as e:
        raise HookError(f"gc: cannot tell which domains are running, so nothing was removed: {e}") from None
    log = _NullLog() if dry else logsetup.setup(cfg.log_file, op="gc", pid=os.getpid())
    env = steps.Env.from_config(cfg, log)
    out = gc.gc(env, running, dry, asked_at)
    for line in out.lines:
        print(line)
    for line in out.warnings:
        print(f"warning: {line}")
    if not out.lines and not out.failures:
        print("nothing to clean up")
    elif dry:
        print("dry run: nothing was changed" + (" (dry_run is on in the config)" if cfg.dry_run else ""))
    for line in out.failures[1:]:
        sys.stderr.write(f"{PREFIX}{line}\n")
    if out.failures:
        _err(out.failures[0])
        return FAILED
    return OK


def cmd_add(args: argparse.Namespace) -> int:
    import uuid as uuidlib

    from mdev_hooks import domain, domedit

    if args.vf:
        from mdev_hooks import vgpu_edit

        vgpu_edit.add(args, _virsh(args), _env(args), lambda: _running(args))
        return OK
    virsh = _virsh(args)
    env = _env(args)
    root = domedit.parse(virsh.dumpxml_inactive(args.domain))
    name = domedit.domain_name(root) or args.domain
    dom_uuid = canonical_uuid(domedit.domain_uuid(root), "domain <uuid>")
    mdev = args.uuid or str(uuidlib.uuid4())
    m = ManagedMdev(mdev, args.parent, args.type)

    claim = env.ledger.get(mdev)
    if claim is not None and claim.domain_uuid != dom_uuid:
        raise HookError(f"mdev {mdev}: the ledger gives it to domain {claim.domain_name or '?'} "
                        f"({claim.domain_uuid}); choose another UUID")
    dev = env.sysfs.device(mdev)
    if dev is not None and (dev.parent, dev.type) != (m.parent, m.type):
        raise HookError(f"mdev {mdev} already exists as type {dev.type or '?'} on {dev.parent}; choose another UUID")
    if dev is None:
        # name the mdev "(new)" in the error when the user gave no UUID: a random one would only confuse
        problem = lifecycle.parent_problem(env, m if args.uuid else replace(m, uuid="(new)"))
        if problem:
            raise HookError(problem)
    info = env.sysfs.type_info(m.parent, m.type)
    model = args.model or (info.device_api if info and info.device_api in domedit.MODELS else "vfio-pci")

    domedit.add(root, mdev, m.parent, m.type, model)
    virsh.define(domedit.serialize(root))
    # read it back as the hook will see it: libvirt must have kept managed='yes' and the metadata
    back = domain.parse(virsh.dumpxml_inactive(dom_uuid))
    if m not in back.mdevs:
        raise HookError(f"defined domain {name}, but libvirt's XML does not show managed mdev {mdev} with its "
                        "metadata; check `virsh dumpxml --inactive`")
    print(f"added mdev {mdev} (type {m.type} on {m.parent}, model {model}) to domain {name}")
    avail = info.available if info else None
    if avail == 0 and dev is None:
        print(f"note: {m.parent} has no free instance of {m.type} now: a start fails until one is free")
    elif avail is not None:
        print(f"{m.parent} offers {avail} more instance(s) of {m.type} now")
    if dom_uuid in (_running(args).uuids or frozenset()):
        print(f"domain {name} is running: the mdev is created at its next start")
    return OK


def cmd_drop(args: argparse.Namespace) -> int:
    from mdev_hooks import domain, domedit

    virsh = _virsh(args)
    root = domedit.parse(virsh.dumpxml_inactive(args.domain))
    name = domedit.domain_name(root) or args.domain
    dom_uuid = canonical_uuid(domedit.domain_uuid(root), "domain <uuid>")
    if args.vf:
        from mdev_hooks import vgpu_edit

        vgpu_edit.drop(args, virsh, _env(args), root, name, dom_uuid)
        return OK
    removed = domedit.drop(root, args.uuid)
    virsh.define(domedit.serialize(root))
    back = domain.parse(virsh.dumpxml_inactive(dom_uuid))
    if any(m.uuid == args.uuid for m in back.mdevs):
        raise HookError(f"defined domain {name}, but libvirt's XML still has managed mdev {args.uuid}")
    for line in removed:
        print(f"removed {line} from domain {name}")
    claim = _env(args).ledger.get(args.uuid)
    if claim is not None and claim.domain_uuid == dom_uuid:
        print(f"the ledger says the hook created mdev {args.uuid} for domain {name}: it stays until the domain "
              "stops, then the hook removes it")
    return OK


def _common() -> argparse.ArgumentParser:
    """Options accepted before or after the command (SUPPRESS: the subcommand's copy does not reset them)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("common options")
    g.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                   help=f"configuration file (else $MDEV_HOOKS_CONFIG, else {config.DEFAULT_PATH})")
    g.add_argument("--sysfs-root", metavar="DIR", default=argparse.SUPPRESS,
                   help="read and write mdevs under DIR instead of the configured sysfs_root (/sys)")
    g.add_argument("--connect", metavar="URI", default=argparse.SUPPRESS,
                   help="libvirt connection for virsh (default qemu:///system)")
    return p


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="mdev-hooks", formatter_class=fmt, parents=[common], epilog=MAIN_EPILOG,
        description="Create the mediated devices (mdevs) named in a libvirt domain's metadata before it starts, "
                    "remove them after it stops. This command installs the hook and inspects the host.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, func: Callable[[argparse.Namespace], int], summary: str, example: str,
                description: str = "") -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=summary, description=description or summary, parents=[common],
                           formatter_class=fmt, epilog=f"example{'s' if example.count(chr(10)) else ''}:\n"
                           f"{example}\n\n{EXIT_CODES}")
        p.set_defaults(func=func, parser=p)  # main() reports a combination of options it refuses with p.error
        return p

    from mdev_hooks.install import DEFAULT_CONFIG_DIR, DEFAULT_HOOKS_DIR

    p = command("install", cmd_install, "install the libvirt hook and a default config",
                "  mdev-hooks install\n  mdev-hooks install --qemu-d      # keep an existing hooks/qemu dispatcher",
                "Write the hook launcher (first line: this Python, so a venv works) to HOOKS_DIR/qemu, atomically, "
                "and a commented default config if there is none. An existing HOOKS_DIR/qemu that mdev-hooks did "
                "not write is never replaced without --force; --qemu-d installs HOOKS_DIR/qemu.d/50-mdev-hooks "
                "instead (libvirt >= 6.5). Says whether libvirt must be told (reload).")
    p.add_argument("--hooks-dir", metavar="DIR", default=DEFAULT_HOOKS_DIR, help="default %(default)s")
    p.add_argument("--qemu-d", action="store_true", help="install as qemu.d/50-mdev-hooks (libvirt >= 6.5)")
    p.add_argument("--force", action="store_true",
                   help="replace a hook that is not ours, saving it as <name>.mdev-hooks-backup in HOOKS_DIR")
    p.add_argument("--config-dir", metavar="DIR", default=DEFAULT_CONFIG_DIR,
                   help="where to write config.toml if missing (default %(default)s; the hook reads only the "
                        "default)")
    p.add_argument("--python", metavar="PATH", help="interpreter for the launcher (default: this one, "
                   f"{sys.executable})")

    p = command("uninstall", cmd_uninstall, "remove what install wrote",
                "  mdev-hooks uninstall",
                "Remove the launcher(s) install wrote (recognised by their marker line), put back a hook that "
                "--force had saved, and remove the default config if it was never edited. Never touches mdevs.")
    p.add_argument("--hooks-dir", metavar="DIR", default=DEFAULT_HOOKS_DIR, help="default %(default)s")
    p.add_argument("--config-dir", metavar="DIR", default=DEFAULT_CONFIG_DIR, help="default %(default)s")

    p = command("plan", cmd_plan, "would this domain start? (the hook's own validation, nothing changed)",
                "  virsh dumpxml vm1 | mdev-hooks plan -\n  mdev-hooks plan --json examples/gvtg-desktop.xml",
                "Run the validation of the hook's `prepare` against this host's sysfs and the ledger, without "
                "changing anything: show each managed mdev with its type and free instances, the actions a start "
                "would take, and exit 1 with the hook's own error line if the start would fail.")
    p.add_argument("xml", nargs="?", default="-", metavar="DOMAIN.xml", help="domain XML file, - for stdin (default)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = command("status", cmd_status, "parents, types, mdevs, owners and orphans on this host",
                "  mdev-hooks status\n  mdev-hooks status --json | jq '.orphans'",
                "Every mdev parent and type (free instances, devices in use), every mdev with its owner (the domain "
                "from the ledger, or external), and ledger entries whose device is gone or whose domain is not "
                "running (orphans; `virsh list`; 'unknown' if virsh cannot be run).")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = command("gc", cmd_gc, "remove mdevs left behind by domains that are not running",
                "  mdev-hooks gc --dry-run\n  mdev-hooks gc",
                "Remove the mdevs the ledger says mdev-hooks created for domains libvirt does not list as running "
                "(the hook's own release, under the same per-parent locks), drop ledger entries of devices that "
                "are gone, delete stale ledger temp files. Devices mdev-hooks did not create are never touched. "
                "Refuses (exit 1) when virsh cannot tell which domains run.")
    p.add_argument("--dry-run", action="store_true", help="only say what would be done")

    p = command("types", cmd_types, "mdev types each parent offers (like `mdevctl types`)",
                "  mdev-hooks types\n  mdev-hooks types --parent 0000:00:02.0")
    p.add_argument("--parent", metavar="P", type=_name, help="only this parent")
    p.add_argument("--json", action="store_true", help="machine-readable output")

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
                "--parent names the VF itself (or naming the PF would not work for this domain).")
    p.add_argument("domain", metavar="DOMAIN", help="domain name or UUID")
    p.add_argument("--parent", metavar="P", type=_name,
                   help="parent device, e.g. 0000:00:02.0 (required without --vf; with --vf: the VF's PF, the "
                        "default, or the VF itself)")
    p.add_argument("--type", metavar="T", type=_name, required=True,
                   help="mdev type id, e.g. nvidia-231 (with --vf: the numeric vGPU type id, e.g. 1414)")
    p.add_argument("--uuid", metavar="U", type=_uuid, help="mdev UUID (default: a new random one)")
    p.add_argument("--model", choices=("vfio-pci", "vfio-ccw", "vfio-ap"),
                   help="hostdev model (default: the type's device_api)")
    p.add_argument("--vf", metavar="VF", type=_pci,
                   help="an NVIDIA vGPU 17+ on this VF (PCI address, e.g. 0000:41:00.4) instead of an mdev")
    p.set_defaults(usage_check=_add_usage)

    p = command("drop", cmd_drop, "remove a managed mdev from a domain's persistent definition",
                "  mdev-hooks drop vm1 4b20d080-1b54-4048-85b3-a6a62d165c01\n"
                "  mdev-hooks drop ml1 --vf 0000:41:00.4",
                "Remove the managed mdev hostdev and its metadata entry from the domain's persistent definition. "
                "A running domain keeps its mdev until it stops; the hook removes it then.\n\n"
                "With --vf: remove the <hostdev type='pci' managed='yes'> on that VF and its kind=\"nvidia-vf\" "
                "entry (the entries naming the VF; if none, the entry naming its PF that the hook gives this VF: "
                "entries naming a PF take its VFs in document order). A running domain keeps its vGPU type until it "
                "stops; the hook writes 0 then.")
    p.add_argument("domain", metavar="DOMAIN", help="domain name or UUID")
    p.add_argument("uuid", metavar="UUID", type=_uuid, nargs="?", help="the mdev's UUID")
    p.add_argument("--vf", metavar="VF", type=_pci, help="the NVIDIA vGPU on this VF instead of an mdev")
    p.set_defaults(usage_check=_drop_usage)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check: Callable[[argparse.Namespace], str | None] | None = getattr(args, "usage_check", None)
    problem = check(args) if check is not None else None
    if problem:
        args.parser.error(problem)  # exit 2, with the command's own usage line
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except HookError as e:
        _err(str(e))
        return FAILED
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        _err(f"{args.command}: {where}{e.strerror or e}")
        return FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
