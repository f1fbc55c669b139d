"""A static copy of what the FUSE fake shows, written into a plain directory: no root, no FUSE, no daemon.

Invariant: the tree is the fake's own (``Kernel`` built from ``profiles.build_host``, devices made through its
``create_external`` command, vGPU types through its own ``current_vgpu_type`` writer), so the two doubles cannot
drift; only the walk that copies it out is new here. Every file is a regular file holding what a read of the fake
returns at materialize time (write-only attributes such as ``create``/``remove`` are empty files with their mode),
every symlink is the fake's relative link. Nothing reacts to writes: a test of the unit tier must never rely on one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from fakesysfs.journal import Journal
from fakesysfs.kernel import Kernel
from fakesysfs.profiles import VENDOR_VFIO, build_host
from fakesysfs.tree import Dir, File, Link, Node

__all__ = ["materialize", "materialize_cached"]

STALE_AFTER = 86400.0  # seconds: a cached tree unused this long is deleted by the next build


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


def fake_digest() -> str:
    """A digest of the fake's model (its modules and profiles.json): what a cached tree was built from."""
    h = hashlib.sha256()
    here = Path(__file__).parent
    for f in sorted([*here.glob("*.py"), here / "profiles.json"]):
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def materialize_cached(profiles: Sequence[str], cache: Path, devices: Sequence[tuple[str, str, str]] = ()) -> Path:
    """materialize() once per (fake's model, profiles, devices) under `cache` and reuse it in later calls and later
    runs (a 32-VF profile is ~7000 files: writing and deleting them per run is most of a run on a busy disk).

    The returned tree is shared: it must only be read. It is built in a temporary directory and renamed into place,
    so a concurrent builder loses harmlessly; entries unused for a day (another version of the fake, a killed
    build) are deleted, never one another checkout may be using right now."""
    version = fake_digest()
    spec = hashlib.sha256(repr((list(profiles), [tuple(d) for d in devices])).encode()).hexdigest()[:16]
    entry = cache / f"{version}-{spec}"
    if entry.is_dir():
        os.utime(entry)  # in use: not stale
    else:
        cache.mkdir(parents=True, exist_ok=True)
        stale = time.time() - STALE_AFTER
        for old in cache.iterdir():
            with contextlib.suppress(OSError):
                if old.lstat().st_mtime < stale:
                    shutil.rmtree(old, ignore_errors=True)
        building = cache / f".{entry.name}.{os.getpid()}"
        shutil.rmtree(building, ignore_errors=True)
        materialize(list(profiles), building / "sys", devices)
        try:
            building.rename(entry)
        except OSError:  # another run put it there first
            shutil.rmtree(building, ignore_errors=True)
    return entry / "sys"


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
