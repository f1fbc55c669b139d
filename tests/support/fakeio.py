"""Real syscalls on the FUSE fake as the fake's own tests (test_fakesysfs_*.py) make them: one write and its errno,
creates, available_instances, polling and threads.

Invariant: every call goes through the kernel (os.open/os.write on the mount), never through the fake's Python
objects, so a test sees what the hook would see.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from fakesysfs.harness import FakeSysfs

Start = Callable[..., FakeSysfs]
MTTY1, MTTY2 = ("mtty", "mtty-1"), ("mtty", "mtty-2")


def write_errno(path: str, data: bytes | str) -> int:
    """0 if one os.write() of `data` succeeded, else the errno (from open or write)."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as e:
        return e.errno or -1
    try:
        os.write(fd, data.encode() if isinstance(data, str) else data)
        return 0
    except OSError as e:
        return e.errno or -1
    finally:
        os.close(fd)


def create(fake: FakeSysfs, parent: str, type_id: str, uuid: str | bytes) -> int:
    """0 or the errno of one write of `uuid` to the create file of (parent, type)."""
    return write_errno(fake.create_path(parent, type_id), uuid)


def avail(fake: FakeSysfs, *pairs: tuple[str, str]) -> list[int]:
    """available_instances of each (parent, type)."""
    return [fake.available(p, t) for p, t in pairs]


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll until `predicate` holds (True) or `timeout` seconds passed (False)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def run_threads(target: Callable[..., object], args: list[tuple[object, ...]]) -> None:
    """Run target(*a) for each a in its own thread, all at once; join each (15 s)."""
    threads = [threading.Thread(target=target, args=a) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
