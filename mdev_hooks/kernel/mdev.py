"""The mdev core's files: parents, their types and free instances, devices, create, remove, attributes.

Invariant: the only files written are ``class/mdev_bus/<parent>/mdev_supported_types/<type>/create``,
``bus/mdev/devices/<uuid>/remove`` and a plain writable attribute file of ``bus/mdev/devices/<uuid>/`` (never
``remove`` or ``uevent``); names are validated by the caller (names.py) and every path stays under the root.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

from mdev_hooks.kernel.root import SysRoot, read_text, readout, write_once
from mdev_hooks.names import is_valid_attr, is_valid_name


@dataclass(frozen=True)
class MdevDevice:
    uuid: str
    parent: str
    type: str


@dataclass(frozen=True)
class TypeInfo:
    parent: str
    type: str
    name: str
    description: str
    device_api: str
    available: int | None  # None: unreadable


class MdevFiles(SysRoot):
    # -- parents and types -----------------------------------------------------------------------------------------
    def parent_dir(self, parent: str) -> str | None:
        """The real directory of a parent registered with the mdev core, or None."""
        return self.resolve("class", "mdev_bus", parent)

    def type_dir(self, parent: str, mtype: str) -> str | None:
        pdir = self.parent_dir(parent)
        if pdir is None:
            return None
        tdir = os.path.join(pdir, "mdev_supported_types", mtype)
        return self.inside(tdir) if os.path.isdir(tdir) else None

    def parents(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.path("class", "mdev_bus")) if is_valid_name(n))
        except FileNotFoundError:
            return []

    def has_mdev_types(self, parent: str) -> bool:
        pdir = self.parent_dir(parent)
        return pdir is not None and os.path.isdir(os.path.join(pdir, "mdev_supported_types"))

    def types(self, parent: str) -> list[str]:
        pdir = self.parent_dir(parent)
        if pdir is None:
            return []
        try:
            names = os.listdir(os.path.join(pdir, "mdev_supported_types"))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(n for n in names if is_valid_name(n))

    def offers(self, parent: str, mtype: str) -> bool:
        return self.type_dir(parent, mtype) is not None

    @readout(None)
    def available(self, parent: str, mtype: str) -> int | None:
        tdir = self.type_dir(parent, mtype)
        return None if tdir is None else int(read_text(os.path.join(tdir, "available_instances")))

    def type_info(self, parent: str, mtype: str) -> TypeInfo | None:
        tdir = self.type_dir(parent, mtype)
        if tdir is None:
            return None
        return TypeInfo(
            parent=parent,
            type=mtype,
            name=_value(tdir, "name"),
            description=", ".join(line.strip() for line in _value(tdir, "description").splitlines()),
            device_api=_value(tdir, "device_api"),
            available=self.available(parent, mtype),
        )

    @readout([])
    def devices_of_type(self, parent: str, mtype: str) -> list[str]:
        tdir = self.type_dir(parent, mtype)
        return [] if tdir is None else sorted(os.listdir(os.path.join(tdir, "devices")))

    @readout(None)
    def parent_vendor(self, parent: str) -> str | None:
        """The PCI vendor id (e.g. '0x10de') of a parent, None for non-PCI parents."""
        pdir = self.parent_dir(parent)
        return None if pdir is None else read_text(os.path.join(pdir, "vendor")).lower()

    # -- devices ---------------------------------------------------------------------------------------------------
    def device(self, uuid: str) -> MdevDevice | None:
        """The parent and type of an existing mdev, from the kernel's own links; None if it does not exist."""
        real = self.resolve("bus", "mdev", "devices", uuid)
        if real is None or not os.path.isdir(real):
            return None
        # <parentdir>/<uuid> -> the parent; <uuid>/mdev_type -> <parentdir>/mdev_supported_types/<type>
        parent = os.path.basename(os.path.dirname(real))
        type_link = os.path.join(real, "mdev_type")
        mtype = os.path.basename(self.inside(type_link)) if os.path.lexists(type_link) else ""
        return MdevDevice(uuid, parent, mtype)

    def devices(self) -> list[MdevDevice]:
        """Every mdev that can be read (a device going away meanwhile is left out)."""
        try:
            names = sorted(os.listdir(self.path("bus", "mdev", "devices")))
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            try:
                dev = self.device(name)
            except OSError:
                continue
            if dev is not None:
                found.append(dev)
        return found

    def create(self, parent: str, mtype: str, uuid: str) -> None:
        tdir = self.type_dir(parent, mtype)
        if tdir is None:
            raise OSError(errno.ENOENT, "no such parent/type", f"{parent}/{mtype}")
        write_once(self.inside(os.path.join(tdir, "create")), uuid.encode("ascii"))

    def remove(self, uuid: str) -> None:
        write_once(self.inside(os.path.join(self._device_dir(uuid), "remove")), b"1")

    # -- attributes of a device just created -----------------------------------------------------------------------
    def _device_dir(self, uuid: str) -> str:
        real = self.resolve("bus", "mdev", "devices", uuid)
        if real is None:
            raise FileNotFoundError(errno.ENOENT, "no such mdev", self.path("bus", "mdev", "devices", uuid))
        return real

    def attrs(self, uuid: str) -> list[str]:
        """The attributes one can set on an existing mdev: its writable regular files (no symlinks, no
        subdirectories, not remove/uevent), sorted."""
        ddir = self._device_dir(uuid)
        found = []
        for name in os.listdir(ddir):
            if not is_valid_attr(name):
                continue
            try:
                st = os.lstat(os.path.join(ddir, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_mode & stat.S_IWUSR:
                found.append(name)
        return sorted(found)

    def write_attr(self, uuid: str, name: str, value: str) -> None:
        """One write() of `value` (as given, no newline added) into bus/mdev/devices/<uuid>/<name>. ENOENT if the
        device has no such writable regular file."""
        if not is_valid_attr(name):
            raise OSError(errno.EINVAL, "not an attribute name", name)
        path = os.path.join(self._device_dir(uuid), name)
        st = os.lstat(path)  # FileNotFoundError if the device has no such file
        if not stat.S_ISREG(st.st_mode) or not st.st_mode & stat.S_IWUSR:
            raise OSError(errno.ENOENT, "not a writable attribute file", path)
        write_once(self.inside(path), value.encode("ascii"))


@readout("")
def _value(tdir: str, name: str) -> str:
    return read_text(os.path.join(tdir, name))
