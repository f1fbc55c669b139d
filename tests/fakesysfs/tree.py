"""In-memory sysfs tree: directories, attribute files with callbacks, relative symlinks.

Paths are absolute inside the fake (``/class/mdev_bus/mtty`` is ``<mount>/class/mdev_bus/mtty``). The tree is not
thread-safe by itself: the kernel model mutates and walks it under its own lock.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Reader = Callable[[], bytes]
# A writer gets the bytes of one write() and the journal record to fill in (uuid, op, ...); it raises OSError.
Writer = Callable[[bytes, dict[str, Any]], None]


@dataclass(eq=False)
class Node:
    attached: bool = field(default=True, init=False)
    path: str = field(default="/", init=False)  # where it was put; kept after removal (open files, journal)
    hidden: bool = field(default=False, init=False)  # reachable by name, never listed


@dataclass(eq=False)
class Dir(Node):
    children: dict[str, Node] = field(default_factory=dict)


@dataclass(eq=False)
class Link(Node):
    target: str = ""


@dataclass(eq=False)
class File(Node):
    read: Reader | None = None
    write: Writer | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # journal fields: op, parent, type, uuid
    # kernfs makes writes through an fd whose file was removed fail with ENODEV; `remove` decides for itself
    own_detach: bool = False

    @property
    def mode(self) -> int:
        return (0o444 if self.read else 0) | (0o200 if self.write else 0)


def text(value: object) -> Reader:
    """A constant attribute: the value and a newline, like sysfs_emit("%s\\n")."""
    data = f"{value}\n".encode()
    return lambda: data


class Tree:
    def __init__(self) -> None:
        self.root = Dir()

    def lookup(self, path: str) -> Node | None:
        node: Node = self.root
        for part in _parts(path):
            if not isinstance(node, Dir) or part not in node.children:
                return None
            node = node.children[part]
        return node

    def mkdirs(self, path: str) -> Dir:
        node = self.root
        for part in _parts(path):
            child = node.children.get(part)
            if child is None:
                child = node.children[part] = Dir()
                child.path = f"{node.path.rstrip('/')}/{part}"
            if not isinstance(child, Dir):
                raise ValueError(f"{path}: {part} is not a directory")
            node = child
        return node

    def put(self, path: str, node: Node) -> Node:
        parent, name = posixpath.split(path)
        self.mkdirs(parent).children[name] = node
        node.path = path
        return node

    def file(self, path: str, read: Reader | None = None, write: Writer | None = None, **meta: Any) -> File:
        node = File(read=read, write=write, meta=meta)
        self.put(path, node)
        return node

    def link(self, path: str, target: str) -> None:
        """A relative symlink at `path` to the absolute fake path `target`, as the kernel makes them."""
        self.put(path, Link(target=posixpath.relpath(target, posixpath.dirname(path))))

    def drop(self, path: str) -> None:
        parent = self.lookup(posixpath.dirname(path))
        if isinstance(parent, Dir) and (node := parent.children.pop(posixpath.basename(path), None)):
            _detach(node)


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


def _detach(node: Node) -> None:
    node.attached = False
    if isinstance(node, Dir):
        for child in node.children.values():
            _detach(child)
