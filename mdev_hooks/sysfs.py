"""The kernel interface: mdev parents, types, devices, create and remove, under a configurable root.

Only four kinds of file are ever written: ``<root>/class/mdev_bus/<parent>/mdev_supported_types/<type>/create``,
``<root>/bus/mdev/devices/<uuid>/remove``, ``<root>/bus/mdev/devices/<uuid>/<attr>`` of a device the caller has
just created (a plain, existing, writable regular file; never ``remove`` or ``uevent``) and, for NVIDIA's
vendor-specific vGPU interface (not mdev), ``<root>/bus/pci/devices/<VF>/nvidia/current_vgpu_type``. Names are
validated by
the caller (names.py); here every path is also resolved and must stay under the real path of the root, so a
planted symlink cannot redirect a write.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

from mdev_hooks.names import is_valid_attr, is_valid_name


class OutsideRoot(OSError):
    """A path resolved to somewhere outside sysfs_root."""


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


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read(65536).strip()


def write_once(path: str, data: bytes) -> None:
    """One unbuffered write(): a buffered file retries a failed write at close and may create a device twice."""
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        written = os.write(fd, data)
    finally:
        os.close(fd)
    if written != len(data):
        raise OSError(errno.EIO, f"short write ({written} of {len(data)} bytes)", path)


def pci_order(name: str) -> tuple[int, ...] | tuple[int, str]:
    """Sort key of PCI addresses (DDDD:BB:DD.F, hex) in address order; other names after them, by name."""
    try:
        dom, bus, rest = name.split(":")
        dev, fn = rest.split(".")
        return (0, int(dom, 16), int(bus, 16), int(dev, 16), int(fn, 16))
    except ValueError:
        return (1, name)


class Sysfs:
    def __init__(self, root: str) -> None:
        self.root = root
        self.real_root = os.path.realpath(root)

    # -- paths -------------------------------------------------------------------------------------------------
    def _inside(self, path: str) -> str:
        real = os.path.realpath(path)
        if real != self.real_root and not real.startswith(self.real_root.rstrip("/") + "/"):
            raise OutsideRoot(errno.EXDEV, "resolves outside sysfs_root", path)
        return real

    def parent_dir(self, parent: str) -> str | None:
        """The real directory of a parent registered with the mdev core, or None."""
        link = os.path.join(self.root, "class", "mdev_bus", parent)
        if not os.path.lexists(link):
            return None
        return self._inside(link)

    def _type_dir(self, parent: str, mtype: str) -> str | None:
        pdir = self.parent_dir(parent)
        if pdir is None:
            return None
        tdir = os.path.join(pdir, "mdev_supported_types", mtype)
        return self._inside(tdir) if os.path.isdir(tdir) else None

    # -- queries -----------------------------------------------------------------------------------------------
    def parents(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(os.path.join(self.root, "class", "mdev_bus")) if is_valid_name(n))
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
        return self._type_dir(parent, mtype) is not None

    def available(self, parent: str, mtype: str) -> int | None:
        tdir = self._type_dir(parent, mtype)
        if tdir is None:
            return None
        try:
            return int(_read(os.path.join(tdir, "available_instances")))
        except (OSError, ValueError):
            return None

    def type_info(self, parent: str, mtype: str) -> TypeInfo | None:
        tdir = self._type_dir(parent, mtype)
        if tdir is None:
            return None

        def opt(name: str) -> str:
            try:
                return _read(os.path.join(tdir, name))
            except OSError:
                return ""

        return TypeInfo(
            parent=parent,
            type=mtype,
            name=opt("name"),
            description=", ".join(line.strip() for line in opt("description").splitlines()),
            device_api=opt("device_api"),
            available=self.available(parent, mtype),
        )

    def devices_of_type(self, parent: str, mtype: str) -> list[str]:
        tdir = self._type_dir(parent, mtype)
        if tdir is None:
            return []
        try:
            return sorted(os.listdir(os.path.join(tdir, "devices")))
        except OSError:
            return []

    def device(self, uuid: str) -> MdevDevice | None:
        """The parent and type of an existing mdev, from the kernel's own links; None if it does not exist."""
        link = os.path.join(self.root, "bus", "mdev", "devices", uuid)
        if not os.path.lexists(link):
            return None
        real = self._inside(link)
        if not os.path.isdir(real):
            return None
        # <parentdir>/<uuid> -> the parent; <uuid>/mdev_type -> <parentdir>/mdev_supported_types/<type>
        parent = os.path.basename(os.path.dirname(real))
        type_link = os.path.join(real, "mdev_type")
        mtype = os.path.basename(self._inside(type_link)) if os.path.lexists(type_link) else ""
        return MdevDevice(uuid, parent, mtype)

    def devices(self) -> list[MdevDevice]:
        try:
            names = sorted(os.listdir(os.path.join(self.root, "bus", "mdev", "devices")))
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

    def pci_vendor(self, parent: str) -> str | None:
        """The PCI vendor id (e.g. '0x10de') of a parent, None for non-PCI parents."""
        pdir = self.parent_dir(parent)
        if pdir is None:
            return None
        try:
            return _read(os.path.join(pdir, "vendor")).lower()
        except OSError:
            return None

    def is_nvidia_vendor_vfio(self, name: str) -> bool:
        """True for NVIDIA vGPU 17+ devices (kernel >= 6.8): a VF with nvidia/creatable_vgpu_types, or its PF."""
        try:
            return any(self._vgpu_file(dev, "creatable_vgpu_types") for dev in (name, *self.vfs(name)))
        except OSError:
            return False

    # -- SR-IOV: PF <-> VF links of PCI devices ------------------------------------------------------------------
    def _pci_dir(self, name: str) -> str | None:
        link = os.path.join(self.root, "bus", "pci", "devices", name)
        if not is_valid_name(name) or not os.path.lexists(link):
            return None
        return self._inside(link)

    def is_pci_device(self, name: str) -> bool:
        try:
            return self._pci_dir(name) is not None
        except OSError:
            return False

    def vfs(self, pf: str) -> list[str]:
        """The VFs of a PCI physical function (its virtfnN links), in PCI address order; [] if it has none."""
        try:
            pdir = self._pci_dir(pf)
            if pdir is None:
                return []
            links = [e for e in os.listdir(pdir) if e.startswith("virtfn") and e[6:].isdigit()]
        except OSError:
            return []
        found = set()
        for link in links:
            try:
                name = os.path.basename(self._inside(os.path.join(pdir, link)))
            except OSError:
                continue
            if is_valid_name(name):
                found.add(name)
        return sorted(found, key=pci_order)

    def physfn(self, name: str) -> str | None:
        """The PF of a PCI virtual function (its physfn link), None for anything else."""
        try:
            pdir = self._pci_dir(name)
            if pdir is None or not os.path.lexists(os.path.join(pdir, "physfn")):
                return None
            pf = os.path.basename(self._inside(os.path.join(pdir, "physfn")))
        except OSError:
            return None
        return pf if is_valid_name(pf) else None

    # -- NVIDIA's vendor-specific vGPU interface (vGPU 17+, kernel >= 6.8): a VF's nvidia/ files, no mdev ----------
    def _vgpu_file(self, vf: str, name: str) -> str | None:
        pdir = self._pci_dir(vf)
        if pdir is None:
            return None
        path = os.path.join(pdir, "nvidia", name)
        return self._inside(path) if os.path.lexists(path) else None

    def is_vgpu_vf(self, vf: str) -> bool:
        """True if `vf` is a PCI device with NVIDIA's nvidia/current_vgpu_type (bound to the nvidia driver)."""
        try:
            return self._vgpu_file(vf, "current_vgpu_type") is not None
        except OSError:
            return False

    def current_vgpu_type(self, vf: str) -> str | None:
        """The vGPU type id set on a VF ("0": none), None if the VF has no such file (gone, or not bound to nvidia).
        OSError if it exists but cannot be read."""
        path = self._vgpu_file(vf, "current_vgpu_type")
        return None if path is None else _read(path)

    def vgpu(self, vf: str) -> MdevDevice | None:
        """The vGPU on a VF as a device (uuid and parent = the VF, type = the id), None if none is set."""
        try:
            current = self.current_vgpu_type(vf)
        except OSError:
            return None
        return None if current in (None, "", "0") else MdevDevice(vf, vf, current or "")

    def creatable_vgpu_types(self, vf: str) -> dict[str, str] | None:
        """The type ids (-> names) the VF can take NOW (the list shrinks as the GPU fills), None if unreadable.
        Format: a header line ``ID    : vGPU Name``, then ``<id> : <name>`` lines."""
        try:
            path = self._vgpu_file(vf, "creatable_vgpu_types")
            if path is None:
                return None
            text = _read(path)
        except OSError:
            return None
        found: dict[str, str] = {}
        for line in text.splitlines():
            tid, sep, name = line.partition(":")
            if sep and tid.strip().isdigit():
                found[tid.strip()] = name.strip()
        return found

    def vgpu_vfs(self) -> list[str]:
        """Every PCI device with NVIDIA's nvidia/current_vgpu_type, in address order (for status)."""
        try:
            names = os.listdir(os.path.join(self.root, "bus", "pci", "devices"))
        except OSError:
            return []
        return sorted((n for n in names if is_valid_name(n) and self.is_vgpu_vf(n)), key=pci_order)

    def set_vgpu_type(self, vf: str, type_id: str) -> None:
        """One write() of the id ("0" clears), no newline, as NVIDIA's vgpu-device-manager writes it."""
        path = self._vgpu_file(vf, "current_vgpu_type")
        if path is None:
            raise FileNotFoundError(errno.ENOENT, "no nvidia/current_vgpu_type (not bound to nvidia?)", vf)
        write_once(path, type_id.encode("ascii"))

    # -- the two writes ----------------------------------------------------------------------------------------
    def create(self, parent: str, mtype: str, uuid: str) -> None:
        tdir = self._type_dir(parent, mtype)
        if tdir is None:
            raise OSError(errno.ENOENT, "no such parent/type", f"{parent}/{mtype}")
        path = self._inside(os.path.join(tdir, "create"))
        write_once(path, uuid.encode("ascii"))

    def remove(self, uuid: str) -> None:
        link = os.path.join(self.root, "bus", "mdev", "devices", uuid)
        if not os.path.lexists(link):
            raise FileNotFoundError(errno.ENOENT, "no such mdev", link)
        path = self._inside(os.path.join(self._inside(link), "remove"))
        write_once(path, b"1")

    # -- the third write: an attribute of a device just created ---------------------------------------------------
    def _device_dir(self, uuid: str) -> str:
        link = os.path.join(self.root, "bus", "mdev", "devices", uuid)
        if not os.path.lexists(link):
            raise FileNotFoundError(errno.ENOENT, "no such mdev", link)
        return self._inside(link)

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
        device has no such writable regular file; the resolved path must stay under sysfs_root."""
        if not is_valid_attr(name):
            raise OSError(errno.EINVAL, "not an attribute name", name)
        path = os.path.join(self._device_dir(uuid), name)
        st = os.lstat(path)  # FileNotFoundError if the device has no such file
        if not stat.S_ISREG(st.st_mode) or not st.st_mode & stat.S_IWUSR:
            raise OSError(errno.ENOENT, "not a writable attribute file", path)
        write_once(self._inside(path), value.encode("ascii"))
