"""mdev-hooks: a libvirt qemu hook that creates managed mediated devices before a VM starts.

Invariant: this module imports nothing (the hook's launcher imports the package on every VM operation).
"""

__version__ = "0.3.0"  # the one place: pyproject reads it, build-deb and CHANGELOG.md follow it

NS = "urn:mdev-hooks:domain:1"  # the namespace of our metadata element; libvirt keeps one element per namespace
NS_PREFIX = "mdev"  # the prefix we write (any prefix is read: elements are matched by namespace)
PREFIX = "mdev-hooks: "  # every line the user sees from us starts with it
