"""A FUSE file system that behaves like the kernel's mdev sysfs, for tests of mdev-hooks.

Run it with ``python3 -m fakesysfs MOUNTPOINT --profile NAME --journal FILE``, or from a test through
``fakesysfs.harness.FakeSysfs`` (the ``fakesysfs`` fixture in tests/conftest.py).
"""

from fakesysfs.harness import FakeSysfs

__all__ = ["FakeSysfs"]
