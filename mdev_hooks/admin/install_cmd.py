"""`mdev-hooks install` / `uninstall`: the hook launcher in libvirt's hooks directory, and the default config.

Invariant: a hook file we did not write is never replaced without --force (and then kept as a backup that
uninstall restores); the launcher is share/qemu-hook as admin/front.py renders it: a sh front naming the absolute
interpreter mdev-hooks is installed in (so a venv works and libvirt's PATH does not matter), its second line
MARKER, by which `uninstall` (and a later `install`) recognise a file as ours.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import stat
import sys
from dataclasses import dataclass, field
from typing import Any

from mdev_hooks import config
from mdev_hooks.admin import common, front
from mdev_hooks.errors import HookError
from mdev_hooks.fsutil import fsync_dir

DEFAULT_HOOKS_DIR = "/etc/libvirt/hooks"
DEFAULT_CONFIG_DIR = os.path.dirname(config.DEFAULT_PATH)
CONFIG_NAME = os.path.basename(config.DEFAULT_PATH)
QEMU = "qemu"
QEMU_D = "qemu.d/50-mdev-hooks"
BACKUP_SUFFIX = ".mdev-hooks-backup"
MARKER = "# mdev-hooks launcher: written by `mdev-hooks install`, removed by `mdev-hooks uninstall`"

# the package's data: the launcher (hooks/qemu of the repository links to it) and the commented default config
SHARE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "share")
DEFAULT_CONFIG_SOURCE = os.path.join(SHARE, "config.toml")


def _share(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def default_config_text() -> str:
    """The commented default config.toml (every setting commented out)."""
    return _share(DEFAULT_CONFIG_SOURCE)


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)

    def say(self, line: str) -> None:
        self.lines.append(line)


def launcher_text(python: str, *paths: str) -> str:
    """The hook file for `python`: run as `-I`, or, given the install's own import paths, `-I -S` with those
    (debian/rules: /usr/lib/python3/dist-packages)."""
    return front.render(python, paths or None, MARKER)


def is_ours(path: str) -> bool:
    """A regular file (not a symlink) with our marker line in its first lines."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return MARKER.encode() in head.splitlines()[:4]


def _executable_file(path: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and bool(st.st_mode & 0o111)


def qemu_hooks(hooks_dir: str) -> list[str]:
    """The files that make libvirt call qemu hooks: an executable `qemu`, executable entries of `qemu.d/`."""
    found = [os.path.join(hooks_dir, QEMU)] if _executable_file(os.path.join(hooks_dir, QEMU)) else []
    qd = os.path.join(hooks_dir, "qemu.d")
    try:
        names = sorted(os.listdir(qd))
    except OSError:
        names = []
    return found + [os.path.join(qd, n) for n in names if _executable_file(os.path.join(qd, n))]


# the files of the Debian package mdev-hooks (dpkg's list): apt installs and removes those, this command must not
DPKG_LIST = "/var/lib/dpkg/info/mdev-hooks.list"


def packaged(path: str) -> bool:
    """True if the Debian package mdev-hooks owns the file (then apt, not this command, installs and removes it)."""
    try:
        with open(DPKG_LIST, encoding="utf-8") as f:
            return any(line.rstrip("\n") == path for line in f)
    except OSError:
        return False


def _ours_installed(hooks_dir: str) -> list[str]:
    qd = os.path.join(hooks_dir, "qemu.d")
    try:
        names = sorted(os.listdir(qd))
    except OSError:
        names = []
    candidates = [os.path.join(hooks_dir, QEMU)] + [os.path.join(qd, n) for n in names]
    return [p for p in candidates if is_ours(p)]


def backup_path(hooks_dir: str, rel: str) -> str:
    # never inside qemu.d/: libvirt runs every executable entry there, whatever its name
    return os.path.join(hooks_dir, rel.replace("/", "_") + BACKUP_SUFFIX)


def write_atomic(path: str, text: str, mode: int, tmp_dir: str | None = None) -> None:
    """Write a complete file under a temporary name, give it its mode, then rename it into place.

    `tmp_dir` keeps the half-written file out of a directory whose every executable entry is run (qemu.d/).
    """
    tmp = os.path.join(tmp_dir or os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.write(fd, text.encode())
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(os.path.dirname(path))


def runtime_dir_problems(args: argparse.Namespace) -> list[str]:
    """The configured state_dir and lock_dir checked as the hook checks them at every managed start: one that
    another user made or may write would fail every such start, so `install` says so at once."""
    from mdev_hooks.fsutil import check_private_dir

    try:
        cfg = common.load_config(args)
    except HookError as e:
        return [str(e)]
    problems = []
    for what in ("state_dir", "lock_dir"):
        try:
            check_private_dir(getattr(cfg, what), what)
        except HookError as e:
            problems.append(str(e))
    return problems


def install(hooks_dir: str, config_dir: str, qemu_d: bool, force: bool, python: str) -> Report:
    rep = Report()
    paths = front.site_paths(python)
    front.check_interpreter(python, paths)
    text = front.render(python, paths, MARKER)
    rel = QEMU_D if qemu_d else QEMU
    target = os.path.join(hooks_dir, rel)
    others = [p for p in _ours_installed(hooks_dir) if p != target]
    owned = [p for p in [target, *others] if packaged(p)]
    if owned:
        raise HookError(f"{owned[0]} belongs to the Debian package mdev-hooks, which keeps it up to date: nothing to "
                        "install (apt remove mdev-hooks removes it)")
    if others:
        raise HookError(f"mdev-hooks is already installed as {others[0]}; installing it as {target} too would run "
                        f"the hook twice: run `mdev-hooks uninstall --hooks-dir {hooks_dir}` first")
    before = qemu_hooks(hooks_dir)
    created = not os.path.lexists(target)
    backup = None
    if not created and not is_ours(target):
        backup = backup_path(hooks_dir, rel)
        if not force:
            raise HookError(_refusal(hooks_dir, target, qemu_d, backup))
        if os.path.lexists(backup):
            raise HookError(f"{target} is not ours, and {backup} (a backup from an earlier --force) exists: "
                            "move one of them away, then install again")
    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
    if backup is not None:
        try:
            os.link(target, backup, follow_symlinks=False)
        except OSError:
            import shutil

            shutil.copy2(target, backup, follow_symlinks=False)
        rep.say(f"saved {target} as {backup} (`mdev-hooks uninstall` puts it back); it no longer runs")
    write_atomic(target, text, 0o755, tmp_dir=hooks_dir)
    state = "installed" if created else ("replaced" if backup else "updated")
    rep.say(f"{state} {target} (interpreter {python})")

    cfg_path = os.path.join(config_dir, CONFIG_NAME)
    if os.path.lexists(cfg_path):
        rep.say(f"kept the existing config {cfg_path}")
    else:
        os.makedirs(config_dir, mode=0o755, exist_ok=True)
        write_atomic(cfg_path, default_config_text(), 0o644)
        rep.say(f"wrote the default config {cfg_path} (every setting commented out)")
    from mdev_hooks.admin.daemon import reload_advice

    rep.say(reload_advice(target, created, before))
    return rep


def _refusal(hooks_dir: str, target: str, qemu_d: bool, backup: str) -> str:
    try:
        with open(target, "rb") as f:
            first = f.readline(200).decode(errors="replace").strip()
    except OSError:
        first = "?"
    what = "a symlink" if os.path.islink(target) else f"first line: {first}"
    lines = [f"{target} exists and was not written by mdev-hooks ({what}); nothing changed. Choose:"]
    if not qemu_d:
        lines.append(f"  mdev-hooks install --qemu-d   install {os.path.join(hooks_dir, QEMU_D)} instead; "
                     f"libvirt >= 6.5 runs it after {target}, which keeps working")
    lines.append(f"  mdev-hooks install{' --qemu-d' if qemu_d else ''} --force   replace {target}, saving it as "
                 f"{backup}; it stops running until `mdev-hooks uninstall` restores it")
    return "\n".join(lines)


def uninstall(hooks_dir: str, config_dir: str) -> Report:
    rep = Report()
    for path in _ours_installed(hooks_dir):
        if packaged(path):
            rep.say(f"left {path}: it belongs to the Debian package mdev-hooks (apt remove mdev-hooks removes it)")
            continue
        os.unlink(path)
        rep.say(f"removed {path}")
    for rel in (QEMU, QEMU_D):
        target, backup = os.path.join(hooks_dir, rel), backup_path(hooks_dir, rel)
        if not os.path.lexists(backup):
            continue
        if os.path.lexists(target):
            rep.say(f"left {backup} alone: {target} exists again")
            continue
        os.rename(backup, target)
        rep.say(f"restored {target} from {backup}")
    cfg_path = os.path.join(config_dir, CONFIG_NAME)
    try:
        with open(cfg_path, encoding="utf-8", errors="replace") as f:
            unchanged = f.read() == default_config_text()
    except OSError:
        unchanged = None
    if unchanged and packaged(cfg_path):
        rep.say(f"left {cfg_path}: it belongs to the Debian package mdev-hooks (apt purge mdev-hooks removes it)")
    elif unchanged:
        os.unlink(cfg_path)
        rep.say(f"removed the default config {cfg_path} (unchanged since install)")
        with contextlib.suppress(OSError):
            os.rmdir(config_dir)
    elif unchanged is False:
        rep.say(f"kept {cfg_path}: it was edited")
    if not rep.lines:
        rep.say(f"mdev-hooks is not installed in {hooks_dir}: nothing to do")
    return rep


# -- the commands --------------------------------------------------------------------------------------------------
def cmd_install(args: argparse.Namespace) -> int:
    rep = install(args.hooks_dir, args.config_dir, args.qemu_d, args.force, args.python or sys.executable)
    if not args.no_extras:
        from mdev_hooks.admin.extras import install_extras

        install_extras(rep, args.share_dir, args.logrotate_dir)
    for problem in runtime_dir_problems(args):
        rep.say(f"warning: {problem}; managed starts fail until this is fixed")
    print("\n".join(rep.lines))
    return common.OK


def cmd_uninstall(args: argparse.Namespace) -> int:
    rep = uninstall(args.hooks_dir, args.config_dir)
    from mdev_hooks.admin.extras import uninstall_extras

    uninstall_extras(rep, args.share_dir, args.logrotate_dir)
    print("\n".join(rep.lines))
    try:
        claims, _ = common.make_env(args).ledger.all()
    except HookError:
        claims = []
    if claims:
        print(f"warning: the ledger still gives {len(claims)} mdev(s) to domains; with no hook installed they are "
              "not removed when those domains stop: run `mdev-hooks gc` once they have stopped")
    return common.OK


def register(command: Any) -> None:
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
    _extras_options(p)
    p.add_argument("--no-extras", action="store_true", help="only the hook and the config: no man page, bash "
                   "completion or logrotate snippet")

    p = command("uninstall", cmd_uninstall, "remove what install wrote",
                "  mdev-hooks uninstall",
                "Remove the launcher(s) install wrote (recognised by their marker line), put back a hook that "
                "--force had saved, and remove the default config if it was never edited. Never touches mdevs.")
    p.add_argument("--hooks-dir", metavar="DIR", default=DEFAULT_HOOKS_DIR, help="default %(default)s")
    p.add_argument("--config-dir", metavar="DIR", default=DEFAULT_CONFIG_DIR, help="default %(default)s")
    _extras_options(p)


def _extras_options(p: argparse.ArgumentParser) -> None:
    from mdev_hooks.admin.extras import DEFAULT_LOGROTATE_DIR, DEFAULT_SHARE_DIR

    p.add_argument("--share-dir", metavar="DIR", default=DEFAULT_SHARE_DIR,
                   help="man/man8 and bash-completion/completions go below it, when it has man/ (default %(default)s)")
    p.add_argument("--logrotate-dir", metavar="DIR", default=DEFAULT_LOGROTATE_DIR,
                   help="the logrotate snippet goes here, when it exists (default %(default)s)")
