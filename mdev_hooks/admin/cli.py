"""`mdev-hooks`: the common options, the subcommands each command module registers, dispatch and exit codes.

Invariant: every command lives in its own `*_cmd.py` (parser beside handler); this module only assembles them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from mdev_hooks import __version__, config
from mdev_hooks.admin import (
    common,
    edit_cmd,
    gc_cmd,
    install_cmd,
    ledger_cmd,
    plan_cmd,
    status_cmd,
    types_cmd,
)
from mdev_hooks.errors import HookError

# the order of `mdev-hooks --help`
MODULES = (install_cmd, plan_cmd, status_cmd, gc_cmd, types_cmd, edit_cmd, ledger_cmd)

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

{common.EXIT_CODES}"""

Handler = Callable[[argparse.Namespace], int]


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
    """The whole command line (also what the man page and the bash completion are generated from)."""
    common_opts = _common()
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="mdev-hooks", formatter_class=fmt, parents=[common_opts], epilog=MAIN_EPILOG,
        description="Create the mediated devices (mdevs) named in a libvirt domain's metadata before it starts, "
                    "remove them after it stops. This command installs the hook and inspects the host.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, func: Handler, summary: str, example: str, description: str = "",
                usage_check: Callable[[argparse.Namespace], str | None] | None = None) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=summary, description=description or summary, parents=[common_opts],
                           formatter_class=fmt, epilog=f"example{'s' if example.count(chr(10)) else ''}:\n"
                           f"{example}\n\n{common.EXIT_CODES}")
        # main() reports a combination of options argparse cannot express with p.error (exit 2)
        p.set_defaults(func=func, parser=p, usage_check=usage_check)
        return p

    for module in MODULES:
        module.register(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check: Callable[[argparse.Namespace], str | None] | None = args.usage_check
    problem = check(args) if check is not None else None
    if problem:
        args.parser.error(problem)  # exit 2, with the command's own usage line
    func: Handler = args.func
    try:
        return func(args)
    except HookError as e:
        common.err(str(e))
        return common.FAILED
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        common.err(f"{args.command}: {where}{e.strerror or e}")
        return common.FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
