"""A static copy of what the FUSE fake shows, written into a plain directory: no root, no FUSE, no daemon.

Invariant: the tree is the fake's own (``Kernel`` built from ``profiles.build_host``, devices made through its
``create_external`` command, vGPU types through its own ``current_vgpu_type`` writer), so the two doubles cannot
drift; only the walk that copies it out is new here. Every file is a regular file holding what a read of the fake
returns at materialize time (write-only attributes such as ``create``/``remove`` are empty files with their mode),
every symlink is the fake's relative link. Nothing reacts to writes: a test of the unit tier must never rely on one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from fakesysfs.journal import Journal
from fakesysfs.kernel import Kernel
from fakesysfs.profiles import VENDOR_VFIO, build_host
from fakesysfs.tree import Dir, File, Link, Node

__all__ = ["materialize"]


def materialize(
    profiles: list[str],
    dest: Path,
    devices: Iterable[tuple[str, str, str]] = (),
    *,
    available: Mapping[tuple[str, str], int] | None = None,
    vgpus: Mapping[str, str] | None = None,
) -> Path:
    """Write the fake's tree for `profiles` into `dest` (created; must not exist or be empty) and return `dest`,
    which is then a sysfs_root for the hook.

    devices: (uuid, parent, type) that exist already, made as the fake's "external" creates (so
    available_instances, the type's devices/ links and bus/mdev/devices/<uuid> follow). vgpus: VF -> vGPU type id
    set on an NVIDIA vendor-VFIO VF before the copy (creatable_vgpu_types shrinks accordingly). available:
    (parent, type) -> the number written to available_instances, overriding the model (e.g. a GPU full for
    reasons this snapshot does not show)."""
    kernel = Kernel(build_host(profiles), Journal(os.devnull))
    try:
        for uuid, parent, mtype in devices:
            kernel.command({"cmd": "create_external", "parent": parent, "type": mtype, "uuid": uuid})
        for vf, type_id in (vgpus or {}).items():
            spec = kernel.host.parents.get(vf)
            if spec is None or spec.interface != VENDOR_VFIO:
                raise ValueError(f"{vf} is not an NVIDIA vendor-VFIO VF of profiles {profiles}")
            path = f"{spec.path}/nvidia/current_vgpu_type"
            node = kernel.tree.lookup(path)
            assert isinstance(node, File)
            kernel.write(path, node, type_id.encode(), os.getpid())  # the fake's own rules (OSError if refused)
        dest.mkdir(parents=True, exist_ok=True)
        if any(dest.iterdir()):
            raise ValueError(f"{dest} is not empty")
        _copy(kernel.tree.root, dest)
    finally:
        kernel.journal.close()
    for (parent, mtype), count in (available or {}).items():
        spec = kernel.host.parents.get(parent)
        if spec is None or spec.type(mtype) is None:
            raise ValueError(f"available: {parent} has no type {mtype}")
        target = dest / spec.path.lstrip("/") / "mdev_supported_types" / mtype / "available_instances"
        target.chmod(0o644)
        target.write_text(f"{count}\n")
        target.chmod(0o444)
    return dest


def _copy(node: Node, where: Path) -> None:
    """One node of the fake's tree at `where` (a directory's children recursively; hidden nodes are skipped)."""
    if isinstance(node, Dir):
        where.mkdir(exist_ok=True)
        for name, child in sorted(node.children.items()):
            if not child.hidden:
                _copy(child, where / name)
    elif isinstance(node, Link):
        where.symlink_to(node.target)
    elif isinstance(node, File):
        fd = os.open(where, os.O_WRONLY | os.O_CREAT | os.O_EXCL, node.mode)  # 0444/0200/0644: no umask bit
        try:
            os.write(fd, node.read() if node.read is not None else b"")
        finally:
            os.close(fd)
    else:  # pragma: no cover - the tree has three kinds of node
        raise TypeError(f"{where}: unknown node {node!r}")
