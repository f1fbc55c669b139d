"""A small FUSE server speaking the kernel protocol on /dev/fuse directly (stdlib only).

Why not libfuse/mfusepy: Debian 12's libfuse 3.14.0 cannot reply FOPEN_PARALLEL_DIRECT_WRITES, so the kernel
serialises every write to one file (inode lock), and two processes writing the same `create` file would never
overlap. A real sysfs lets them overlap, and the tests must see that to catch a hook that does not lock.

Why permissions are checked here: sysfs refuses to open a 0200 file for reading (or a 0444 file for writing) even
for root, while FUSE's default_permissions would let root through.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
import struct
import subprocess
import threading
import time
import traceback

from fakesysfs.kernel import Kernel
from fakesysfs.tree import Dir, File, Link, Node

log = logging.getLogger("fakesysfs")

ATTR_SIZE = 4096  # what sysfs reports for every attribute; writes below it may run in parallel (no EOF growth)
MAX_WRITE = 128 * 1024
BUFSIZE = MAX_WRITE + 4096
MAX_THREADS = 1024
MINOR = 36  # the protocol version whose structures are used below (FOPEN_PARALLEL_DIRECT_WRITES is 7.36)

IN_HEADER = struct.Struct("<IIQQIIIHH")
OUT_HEADER = struct.Struct("<IiQ")
ATTR = struct.Struct("<QQQQQQIIIIIIIIII")
ENTRY_OUT = struct.Struct("<QQQQII")
ATTR_OUT = struct.Struct("<QII")
INIT_IN = struct.Struct("<IIII")
INIT_OUT = struct.Struct("<IIIIHHIIHHII6I")
OPEN_IN = struct.Struct("<II")
OPEN_OUT = struct.Struct("<QIi")
RW_IN = struct.Struct("<QQIIQII")  # fuse_read_in and fuse_write_in have the same layout
WRITE_OUT = struct.Struct("<II")
FH_IN = struct.Struct("<Q")  # the leading fh of release/flush/getattr(+8)/setattr(+8)
SETATTR_VALID = struct.Struct("<II")
KSTATFS = struct.Struct("<QQQQQIIII6I")
DIRENT = struct.Struct("<QQII")

(LOOKUP, FORGET, GETATTR, SETATTR, READLINK) = (1, 2, 3, 4, 5)
(OPEN, READ, WRITE, STATFS, RELEASE, FLUSH, INIT) = (14, 15, 16, 17, 18, 25, 26)
(OPENDIR, READDIR, RELEASEDIR, INTERRUPT, DESTROY, BATCH_FORGET) = (27, 28, 29, 36, 38, 42)
MUTATING = {6, 8, 9, 10, 11, 12, 13, 35, 45, 51}  # symlink mknod mkdir unlink rmdir rename link create rename2 tmpfile
NO_REPLY = {FORGET, BATCH_FORGET, INTERRUPT}
FUSE_PARALLEL_DIROPS = 1 << 18
FOPEN_DIRECT_IO, FOPEN_PARALLEL_DIRECT_WRITES = 1 << 0, 1 << 6
FATTR_MODE, FATTR_UID, FATTR_GID, FATTR_SIZE, FATTR_FH = 1, 2, 4, 8, 64
GETATTR_FH = 1


class FuseError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class Server:
    def __init__(self, kernel: Kernel, fd: int) -> None:
        self.kernel = kernel
        self.fd = fd
        self._lock = threading.Lock()
        self._ids: dict[Node, int] = {kernel.tree.root: 1}  # a node keeps its id for good: a new device dir at
        self._nodes: dict[int, Node] = {1: kernel.tree.root}  # the same path is a new inode, as on sysfs
        self._files: dict[int, File] = {}
        self._next = 2
        self._threads = 0
        self._idle = 0
        self._now = time.time_ns()
        self.done = threading.Event()

    # ---- threads -----------------------------------------------------------------------------------------------

    def run(self) -> None:
        for _ in range(8):
            self._spawn()
        self.done.wait()

    def _spawn(self) -> None:
        self._threads += 1
        self._idle += 1
        threading.Thread(target=self._worker, daemon=True).start()

    def _worker(self) -> None:
        while not self.done.is_set():
            try:
                req = os.read(self.fd, BUFSIZE)
            except OSError as e:
                if e.errno in (errno.EINTR, errno.EAGAIN, errno.ENOENT):
                    continue  # ENOENT: the request was interrupted before we read it
                self.done.set()  # ENODEV: unmounted
                return
            with self._lock:  # every blocked write (busy, delay) holds a thread: keep one idle reader around
                self._idle -= 1
                if self._idle == 0 and self._threads < MAX_THREADS:
                    self._spawn()
            try:
                self._dispatch(req)
            finally:
                with self._lock:
                    self._idle += 1

    def _dispatch(self, req: bytes) -> None:
        _, opcode, unique, nodeid, _, _, pid, _, _ = IN_HEADER.unpack_from(req)
        body = req[IN_HEADER.size :]
        if opcode in NO_REPLY:
            return
        try:
            payload = self._handle(opcode, nodeid, pid, body)
            self._reply(unique, 0, payload)
        except FuseError as e:
            self._reply(unique, -e.code)
        except OSError as e:
            self._reply(unique, -(e.errno or errno.EIO))
        except Exception:
            log.error("fakesysfs bug in opcode %d: %s", opcode, traceback.format_exc())
            self._reply(unique, -errno.EIO)

    def _reply(self, unique: int, error: int, payload: bytes = b"") -> None:
        # OSError: the caller was interrupted or the mount is gone, nobody waits for this reply
        with contextlib.suppress(OSError):
            os.write(self.fd, OUT_HEADER.pack(OUT_HEADER.size + len(payload), error, unique) + payload)

    # ---- operations --------------------------------------------------------------------------------------------

    def _handle(self, opcode: int, nodeid: int, pid: int, body: bytes) -> bytes:
        if opcode == INIT:
            return self._init(body)
        if opcode in MUTATING:
            raise FuseError(errno.EACCES if opcode == 35 else errno.EPERM)  # sysfs: no entries from user space
        node = self._node(nodeid)
        if opcode == LOOKUP:
            name = body.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            child = self._child(node, name)
            return ENTRY_OUT.pack(self._id(child), 0, 0, 0, 0, 0) + self._attr(child)
        if opcode == GETATTR:
            flags, _ = SETATTR_VALID.unpack_from(body)
            if flags & GETATTR_FH:
                node = self._files.get(FH_IN.unpack_from(body, 8)[0], node)
            return ATTR_OUT.pack(0, 0, 0) + self._attr(node)
        if opcode == SETATTR:
            return self._setattr(node, body)
        if opcode == READLINK:
            if not isinstance(node, Link):
                raise FuseError(errno.EINVAL)
            return node.target.encode()
        if opcode == OPEN:
            return self._open(node, OPEN_IN.unpack_from(body)[0])
        if opcode == READ:
            fh, offset, size, *_ = RW_IN.unpack_from(body)
            f = self._files[fh]
            if not f.attached or f.read is None:
                raise FuseError(errno.ENODEV)
            return f.read()[offset : offset + size]
        if opcode == WRITE:
            fh, _, size, *_ = RW_IN.unpack_from(body)
            data = body[RW_IN.size : RW_IN.size + size]
            f = self._files[fh]
            return WRITE_OUT.pack(self.kernel.write(f.path, f, data, pid), 0)
        if opcode in (RELEASE, RELEASEDIR):
            with self._lock:
                self._files.pop(FH_IN.unpack_from(body)[0], None)
            return b""
        if opcode in (FLUSH, DESTROY):
            return b""
        if opcode == OPENDIR:
            if not isinstance(node, Dir):
                raise FuseError(errno.ENOTDIR)
            return OPEN_OUT.pack(0, 0, 0)
        if opcode == READDIR:
            _, offset, size, *_ = RW_IN.unpack_from(body)
            return self._readdir(node, nodeid, offset, size)
        if opcode == STATFS:
            return KSTATFS.pack(0, 0, 0, 0, 0, 4096, 255, 4096, 0, *[0] * 6)
        raise FuseError(errno.ENOSYS)  # access, xattrs, locks, ...: the kernel then stops asking or says EOPNOTSUPP

    def _init(self, body: bytes) -> bytes:
        major, minor, readahead, flags = INIT_IN.unpack_from(body)
        if major != 7:
            return INIT_OUT.pack(7, MINOR, *[0] * 16)  # the kernel retries with our major, or gives up
        return INIT_OUT.pack(
            7, min(minor, MINOR), readahead, flags & FUSE_PARALLEL_DIROPS, 64, 48, MAX_WRITE, 1, 0, 0, 0, 0, *[0] * 6
        )

    def _node(self, nodeid: int) -> Node:
        node = self._nodes.get(nodeid)
        if node is None:
            raise FuseError(errno.ESTALE)
        return node

    def _id(self, node: Node) -> int:
        with self._lock:
            nid = self._ids.get(node)
            if nid is None:
                nid = self._ids[node] = self._next
                self._nodes[nid] = node
                self._next += 1
            return nid

    def _child(self, node: Node, name: str) -> Node:
        with self.kernel.lock:
            child = node.children.get(name) if isinstance(node, Dir) and node.attached else None
        if child is None:
            raise FuseError(errno.ENOENT)
        return child

    def _attr(self, node: Node) -> bytes:
        mode = _mode(node)
        size = ATTR_SIZE if isinstance(node, File) else len(node.target) if isinstance(node, Link) else 0
        t, ns = divmod(self._now, 10**9)
        nlink = 2 if isinstance(node, Dir) else 1
        return ATTR.pack(self._id(node), size, 0, t, t, t, ns, ns, ns, mode, nlink, 0, 0, 0, 4096, 0)

    def _setattr(self, node: Node, body: bytes) -> bytes:
        valid, _ = SETATTR_VALID.unpack_from(body)
        if valid & FATTR_FH:
            node = self._files.get(FH_IN.unpack_from(body, 8)[0], node)
        if valid & (FATTR_MODE | FATTR_UID | FATTR_GID):
            raise FuseError(errno.EPERM)
        if valid & FATTR_SIZE and not (isinstance(node, File) and node.write):
            raise FuseError(errno.EACCES)
        # O_TRUNC (bash's `>`) is harmless on sysfs; the 4096 reported back keeps writes below "EOF"
        return ATTR_OUT.pack(0, 0, 0) + self._attr(node)

    def _open(self, node: Node, flags: int) -> bytes:
        if isinstance(node, Dir):
            raise FuseError(errno.EISDIR)
        if not isinstance(node, File):
            raise FuseError(errno.ELOOP)
        acc = flags & os.O_ACCMODE
        if (acc != os.O_WRONLY and node.read is None) or (acc != os.O_RDONLY and node.write is None):
            raise FuseError(errno.EACCES)  # kernfs_fop_open(): even root cannot read create/remove
        with self._lock:
            fh = self._next
            self._next += 1
            self._files[fh] = node
        return OPEN_OUT.pack(fh, FOPEN_DIRECT_IO | FOPEN_PARALLEL_DIRECT_WRITES, 0)

    def _readdir(self, node: Node, nodeid: int, offset: int, size: int) -> bytes:
        if not isinstance(node, Dir):
            raise FuseError(errno.ENOTDIR)
        with self.kernel.lock:
            children = [(name, c) for name, c in node.children.items() if not c.hidden]
        entries = [(".", nodeid, stat.S_IFDIR), ("..", 1, stat.S_IFDIR)]
        entries += [(name, self._id(c), stat.S_IFMT(_mode(c))) for name, c in children]
        out = b""
        for i, (name, ino, fmt) in enumerate(entries[offset:], start=offset + 1):
            raw = name.encode("utf-8", "surrogateescape")
            rec = DIRENT.pack(ino, i, len(raw), fmt >> 12) + raw
            rec += b"\0" * (-len(rec) % 8)
            if len(out) + len(rec) > size:
                break
            out += rec
        return out


def _mode(node: Node) -> int:
    if isinstance(node, Dir):
        return stat.S_IFDIR | 0o755
    if isinstance(node, Link):
        return stat.S_IFLNK | 0o777
    assert isinstance(node, File)
    return stat.S_IFREG | node.mode


def _fusermount(mountpoint: str, options: str) -> tuple[int, socket.socket]:
    """Mount through fusermount3 (works for root and others); returns /dev/fuse's fd and the socket that keeps
    auto_unmount's watcher waiting: when this process dies, the watcher unmounts."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    env = dict(os.environ, _FUSE_COMMFD=str(theirs.fileno()))
    proc = subprocess.Popen(
        ["fusermount3", "-o", options, "--", mountpoint], env=env, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL
    )
    theirs.close()
    _, fds, _, _ = socket.recv_fds(ours, 1, 1)
    if not fds:
        raise RuntimeError(f"fusermount3 could not mount {mountpoint} (exit {proc.wait()})")
    return fds[0], ours


def mount(kernel: Kernel, mountpoint: str, foreground: bool = True) -> None:
    """Serve until unmounted. Nothing is cached by the kernel: every lookup, stat and read reaches the model."""
    options = "fsname=fakesysfs,subtype=fakesysfs,nosuid,nodev,auto_unmount"
    if os.geteuid() == 0:
        options += ",allow_other"  # lets other users (e.g. qemu's) look in; free for root
    fd, keep = _fusermount(os.path.abspath(mountpoint), options)
    if not foreground and os.fork():
        os._exit(0)
    server = Server(kernel, fd)
    try:
        server.run()
    finally:
        keep.close()
