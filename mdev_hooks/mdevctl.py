"""mdevctl's persistent definitions as a source of parent, type and attributes (files only: the hook runs under
libvirt's domain lock and never runs mdevctl).

mdevctl 1.2 keeps one JSON file per defined device, ``<mdevctl_dir>/<parent>/<uuid>`` (default /etc/mdevctl.d):
``{"mdev_type": "vfio_ap-passthrough", "start": "manual", "attrs": [{"assign_adapter": "5"}, ...]}``, attributes
as a list of single-key objects in the order they are written. The UUID comes from the domain XML (canonical,
validated) and every other path component is checked: parent directory names are valid names and real
directories, the definition is a regular file (not a symlink), read with a bounded size.

Invariant: files only, read-only: nothing here runs mdevctl or writes under mdevctl_dir, and no path is opened
before each of its components is checked.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from typing import Any

from mdev_hooks.domain import ManagedDevice
from mdev_hooks.errors import HookError
from mdev_hooks.names import check_attr, is_valid_name, shown

MAX_BYTES = 64 << 10
MAX_PARENTS = 4096


def candidates(mdevctl_dir: str, uuid: str) -> list[str]:
    """The definition files for uuid: ``<mdevctl_dir>/<parent>/<uuid>`` for every valid parent name that is a real
    directory (not a symlink) holding a regular file of that name (not a symlink)."""
    try:
        names = sorted(os.listdir(mdevctl_dir))[:MAX_PARENTS]
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as e:
        raise HookError(f"mdev {uuid}: cannot read mdevctl_dir {mdevctl_dir}: {e.strerror}") from None
    found = []
    for parent in names:
        if not is_valid_name(parent):
            continue
        try:
            if not stat.S_ISDIR(os.lstat(os.path.join(mdevctl_dir, parent)).st_mode):
                continue
            st = os.lstat(os.path.join(mdevctl_dir, parent, uuid))
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            found.append(os.path.join(mdevctl_dir, parent, uuid))
    return found


def _read(path: str, uuid: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise HookError(f"mdev {uuid}: cannot read the mdevctl definition {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise HookError(f"mdev {uuid}: the mdevctl definition {path} is not a regular file")
        data = os.read(fd, MAX_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise HookError(f"mdev {uuid}: the mdevctl definition {path} is larger than {MAX_BYTES >> 10} KiB")
    return data


def parse_definition(data: bytes, path: str, parent: str, uuid: str) -> ManagedDevice:
    """A ManagedDevice from the JSON mdevctl writes (``start`` is mdevctl's own business and ignored)."""
    bad = f"mdev {uuid}: the mdevctl definition {path}"
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise HookError(f"{bad} is not valid JSON ({shown(str(e))})") from None
    if not isinstance(doc, dict):
        raise HookError(f"{bad} is not a JSON object")
    mtype = doc.get("mdev_type")
    if not isinstance(mtype, str) or not is_valid_name(mtype):
        raise HookError(f"{bad} has no valid mdev_type ({shown(str(mtype))})")
    raw_attrs = doc.get("attrs", [])
    if not isinstance(raw_attrs, list) or len(raw_attrs) > 512:
        raise HookError(f"{bad}: attrs must be a list of single-key objects (at most 512)")
    attrs = []
    for a in raw_attrs:
        if not isinstance(a, dict) or len(a) != 1:
            raise HookError(f"{bad}: every entry of attrs must be an object with one key, like {{\"assign_adapter\": "
                            "\"5\"}")
        ((name, value),) = a.items()
        if not isinstance(value, str):
            raise HookError(f"{bad}: attribute {shown(str(name))} has a value that is not a string")
        attrs.append(check_attr(name, value, uuid))
    return ManagedDevice(uuid, parent, mtype, attrs=tuple(attrs), source="mdevctl")


def find(mdevctl_dir: str, uuid: str) -> tuple[ManagedDevice, str] | None:
    """The device mdevctl defines with this UUID, and the file it came from; None if it defines none."""
    paths = candidates(mdevctl_dir, uuid)
    if not paths:
        return None
    if len(paths) > 1:
        raise HookError(f"mdev {uuid}: mdevctl defines it {len(paths)} times ({', '.join(paths[:4])}); keep one "
                        "(mdevctl undefine -u UUID -p PARENT)")
    path = paths[0]
    parent = os.path.basename(os.path.dirname(path))
    return parse_definition(_read(path, uuid), path, parent, uuid), path


def definition_path(mdevctl_dir: str, m: ManagedDevice) -> str:
    return os.path.join(mdevctl_dir, m.mapped_from or m.parent, m.key)


def lookup(mdevctl_dir: str, log: Any = None) -> tuple[Callable[[str], ManagedDevice | None], str]:
    """domain.parse's fallback and its hint: managed mdevs without metadata come from mdevctl definitions."""

    def fallback(uuid: str) -> ManagedDevice | None:
        hit = find(mdevctl_dir, uuid)
        if hit is None:
            return None
        m, path = hit
        if log is not None:
            log.info("mdev.from_mdevctl", mdev=uuid, parent=m.parent, type=m.type, path=path,
                     attrs=[f"{n}={v}" for n, v in m.attrs])
        return m

    return fallback, f" (or define it with mdevctl: there is no {mdevctl_dir}/*/{{uuid}})"


def shadowed(mdevctl_dir: str, m: ManagedDevice) -> list[str]:
    """mdevctl definitions of a device the domain's metadata describes (the metadata wins; they are ignored)."""
    from mdev_hooks.core.kinds import kind_of

    if m.source != "metadata" or not kind_of(m.kind).mdevctl_defines:
        return []
    try:
        return candidates(mdevctl_dir, m.key)
    except HookError:
        return []
