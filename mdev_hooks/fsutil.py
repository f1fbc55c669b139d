"""Small file-system helpers shared by the ledger, the locks and the installer.

Invariant: a directory whose files decide what the hook removes is refused unless only root can have written it.
"""

from __future__ import annotations

import contextlib
import os
import stat

from mdev_hooks.errors import HookError


def fsync_dir(path: str) -> None:
    """Make a rename/link/unlink in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_private_dir(path: str, what: str) -> bool:
    """Refuse a directory someone else could have planted or written (a symlink, another owner, group- or
    world-writable): its files decide what the hook removes or which lock it takes. False if it does not exist."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as e:
        raise HookError(f"{what} {path}: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise HookError(f"{what} {path} is not a directory (a symlink?); refusing to use it")
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise HookError(_not_private(path, what, st))
    return True


def _user(uid: int) -> str:
    """`name (uid N)`, or `uid N` for a uid with no name."""
    import pwd

    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _not_private(path: str, what: str, st: os.stat_result) -> str:
    """The one line refusing a directory another user owns or may write: who owns it, and the fix."""
    from mdev_hooks.config import Config

    default = getattr(Config, what, "")
    elsewhere = f"or set {what} in the config to a directory under a parent only root can write" + (
        f", such as the default {default}" if default and default != path else "")
    if st.st_uid != os.geteuid():
        return (f"{what} {path} is owned by {_user(st.st_uid)}, not by {_user(os.geteuid())}: another user made "
                f"it, and could block or steer mdev-hooks through it; refusing to use it: remove it "
                f"(rm -r -- {path}) {elsewhere}")
    mode = st.st_mode & 0o7777
    return (f"{what} {path}, owned by {_user(st.st_uid)}, is writable by another user (mode {mode:04o}); "
            f"refusing to use it: chmod go-w {path}, {elsewhere}")


def _make_private(path: str) -> None:
    """mkdir -p with every directory made 0700 (os.makedirs gives the missing parents 0777 & ~umask): the default
    lock_dir's parent is state_dir."""
    parent = os.path.dirname(path.rstrip("/"))
    if parent and parent != path and not os.path.isdir(parent):
        _make_private(parent)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)


def ensure_private_dir(path: str, what: str) -> None:
    """Create `path` root-only if missing, then check it as above."""
    try:
        _make_private(path)
    except OSError as e:
        raise HookError(f"{what} {path}: {e.strerror}") from None
    check_private_dir(path, what)
