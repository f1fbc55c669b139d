"""Small file-system helpers shared by the ledger, the locks and the installer.

Invariant: a directory whose files decide what the hook removes is refused unless only root can have written it.
"""

from __future__ import annotations

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
        raise HookError(f"{what} {path} is writable by another user; refusing to use it")
    return True


def ensure_private_dir(path: str, what: str) -> None:
    """Create `path` root-only if missing, then check it as above."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as e:
        raise HookError(f"{what} {path}: {e.strerror}") from None
    check_private_dir(path, what)
