"""mdev-hooks: a libvirt qemu hook that creates managed mediated devices before a VM starts.

Keep this module empty of imports: the hook's launcher imports the package on every VM operation.
"""

__version__ = "0.1.0"
