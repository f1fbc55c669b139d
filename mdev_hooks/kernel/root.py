"""sysfs under a configurable root: resolve a path inside it, read a value, write once; the error convention.

Invariant: no path that resolves outside the real path of the root is ever read or written (OutsideRoot).

The error convention of every module in kernel/, stated once:
- An absent file or directory is an answer, not an error: None, [] or False.
- Facts the caller acts on (a device's parent and type, a VF's vGPU type, the attributes of a device) and every
  write raise OSError for anything else (EACCES, EIO, OutsideRoot, ...): the caller decides what it means.
- Readings for validation and display (available instances, names, links between PCI functions, the VFs' lists)
  are marked ``@readout(default)``: a value that cannot be read is the default, never an exception.
kernel/ decides nothing else: which device to use, what an errno means for the user and what to do next are core/'s.
"""

from __future__ import annotations

import errno
import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
MAX_READ = 65536


class OutsideRoot(OSError):
    """A path resolved to somewhere outside sysfs_root."""


def readout(default: Any) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Mark a reading: OSError or a garbled value (ValueError) gives `default` instead of an exception."""

    def wrap(fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def read(*args: Any, **kwargs: Any) -> T:
            try:
                return fn(*args, **kwargs)
            except (OSError, ValueError):
                return default  # type: ignore[no-any-return]

        return read

    return wrap


def read_text(path: str) -> str:
    """A sysfs value, stripped (at most MAX_READ bytes; undecodable bytes replaced)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read(MAX_READ).strip()


def write_once(path: str, data: bytes) -> None:
    """One unbuffered write(): a buffered file retries a failed write at close and may create a device twice."""
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        written = os.write(fd, data)
    finally:
        os.close(fd)
    if written != len(data):
        raise OSError(errno.EIO, f"short write ({written} of {len(data)} bytes)", path)


class SysRoot:
    """The root every kernel/ class works under (`root` as configured, `real_root` resolved once)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.real_root = os.path.realpath(root)

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def inside(self, path: str) -> str:
        """The real path of `path`; OutsideRoot if it leaves the root (a planted symlink)."""
        real = os.path.realpath(path)
        if real != self.real_root and not real.startswith(self.real_root.rstrip("/") + "/"):
            raise OutsideRoot(errno.EXDEV, "resolves outside sysfs_root", path)
        return real

    def resolve(self, *parts: str) -> str | None:
        """The real path of a link or entry under the root, None if it does not exist."""
        link = self.path(*parts)
        if not os.path.lexists(link):
            return None
        return self.inside(link)
