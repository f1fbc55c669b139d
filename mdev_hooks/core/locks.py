"""One lock file per parent device (flock via filelock), taken in sorted order with a bounded wait.

Invariant: a lock dies with its holder (a killed hook leaves none behind), and several parents are always taken in
sorted order, so two domains never deadlock; lock file names come only from validated parent names.
"""

import os
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from mdev_hooks.errors import HookError
from mdev_hooks.fsutil import ensure_private_dir
from mdev_hooks.names import is_valid_name


def lock_path(lock_dir: str, parent: str) -> str:
    if not is_valid_name(parent):  # lock file names come only from validated parent names
        raise HookError(f"refusing lock for invalid parent name {parent!r}")
    return os.path.join(lock_dir, parent + ".lock")


def _takes_mode(filelock: Any) -> bool:
    """filelock >= 3.10 takes `mode`. Decided by the version, not by catching TypeError: before 3.10 a FileLock
    whose __init__ raised still runs __del__, which prints a traceback on the hook's stderr."""
    try:
        major, minor = (int(x) for x in str(filelock.__version__).split(".")[:2])
    except (AttributeError, ValueError):
        return True
    return (major, minor) >= (3, 10)


def _file_lock(filelock: Any, path: str, timeout: float) -> Any:
    """A FileLock whose file is 0600: with `mode` where filelock has it, else made 0600 before filelock opens it."""
    if _takes_mode(filelock):
        return filelock.FileLock(path, timeout=timeout, mode=0o600)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    os.close(fd)
    return filelock.FileLock(path, timeout=timeout)


@contextmanager
def parent_locks(lock_dir: str, parents: Iterable[str], timeout: float, log: Any) -> Iterator[None]:
    import filelock
    from filelock import Timeout

    wanted = sorted(set(parents))
    if not wanted:
        yield
        return
    ensure_private_dir(lock_dir, "lock_dir")
    with ExitStack() as stack:
        for parent in wanted:
            path = lock_path(lock_dir, parent)
            if os.path.islink(path):
                raise HookError(f"lock file {path} is a symlink; refusing to use it")
            t0 = time.monotonic()
            try:
                lock = _file_lock(filelock, path, timeout)
                lock.acquire()
            except Timeout:
                log.warning("lock.timeout", parent=parent, lock=path, timeout_s=timeout)
                raise HookError(
                    f"timed out after {timeout:g} s waiting for the lock of parent {parent} ({path}): another "
                    "VM start or stop on that parent is still running; retry, or raise lock_timeout"
                ) from None
            except OSError as e:
                raise HookError(f"cannot lock parent {parent} ({path}): {e.strerror}") from None
            stack.callback(lock.release)
            log.debug("lock.acquired", parent=parent, waited_ms=round((time.monotonic() - t0) * 1000, 1))
        yield
