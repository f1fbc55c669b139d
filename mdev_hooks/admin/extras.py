"""What `mdev-hooks install` gives pip users beside the hook, where the system has the directories: the man page
and the bash completion (generated from the command's own parser, as the Debian package's are) and the logrotate
snippet.

Invariant: a file is written or removed only if it carries our mark (never one someone else or apt put there).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from mdev_hooks.admin.install_cmd import SHARE, Report, _share, default_config_text, packaged, write_atomic

EXTRA_MARK = "written by `mdev-hooks install`, removed by `mdev-hooks uninstall`"
DEFAULT_SHARE_DIR = "/usr/local/share"  # man8/ and bash completion for pip users (the package uses /usr/share)
DEFAULT_LOGROTATE_DIR = "/etc/logrotate.d"


def extras(share_dir: str, logrotate_dir: str) -> list[tuple[str, str, Callable[[], str]]]:
    """What pip users get beside the hook, where the system has the directory it belongs in: (what, path, text)."""
    def man() -> str:
        from mdev_hooks import __version__
        from mdev_hooks.admin import manpage
        from mdev_hooks.admin.cli import build_parser

        text = manpage.render(build_parser(), __version__, manpage.build_date(), default_config_text())
        return f'.\\" {EXTRA_MARK}\n{text}'

    def completion() -> str:
        from mdev_hooks.admin import completion as comp
        from mdev_hooks.admin.cli import build_parser

        return f"# {EXTRA_MARK}\n{comp.render(build_parser())}"

    def logrotate() -> str:
        return f"# {EXTRA_MARK}\n{_share(os.path.join(SHARE, 'logrotate'))}"

    found = []
    if os.path.isdir(os.path.join(share_dir, "man")):
        found.append(("man page", os.path.join(share_dir, "man", "man8", "mdev-hooks.8"), man))
    # bash-completion looks in $XDG_DATA_DIRS/bash-completion/completions (/usr/local/share among them)
    if os.path.isdir("/usr/share/bash-completion/completions") or os.path.isdir(
            os.path.join(share_dir, "bash-completion")):
        found.append(("bash completion", os.path.join(share_dir, "bash-completion", "completions", "mdev-hooks"),
                      completion))
    if os.path.isdir(logrotate_dir):
        found.append(("logrotate snippet", os.path.join(logrotate_dir, "mdev-hooks"), logrotate))
    return found


def _is_extra(path: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return EXTRA_MARK in f.readline()
    except OSError:
        return False


def install_extras(rep: Report, share_dir: str, logrotate_dir: str) -> None:
    """The man page, bash completion and logrotate snippet, never over a file someone else (or apt) put there."""
    for what, path, text in extras(share_dir, logrotate_dir):
        if packaged(path.replace("/usr/local/share", "/usr/share")) or (os.path.lexists(path) and not _is_extra(path)):
            rep.say(f"kept {path}: not written by mdev-hooks install")
            continue
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        write_atomic(path, text(), 0o644)
        rep.say(f"wrote the {what} {path}")


def uninstall_extras(rep: Report, share_dir: str, logrotate_dir: str) -> None:
    for what, path, _ in extras(share_dir, logrotate_dir):
        if _is_extra(path):
            os.unlink(path)
            rep.say(f"removed the {what} {path}")
