"""The one logging setup: structlog, JSON lines appended to log_file, or entries in the systemd journal
(log_file = "journal": the event and every field as a journal field) or syslog (log_file = "syslog").

Invariant: never writes to stdout or stderr, and a log that cannot be opened or written never breaks a VM start
(writes that fail are dropped); the file is opened per run (every hook run is a process), so rotation needs no
signal.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO


class _SafeFile:
    """The log file, swallowing I/O errors (full disk, revoked permissions)."""

    def __init__(self, f: TextIO | None) -> None:
        self._f = f

    def write(self, text: str) -> int:
        if self._f is not None:
            try:
                self._f.write(text)
            except (OSError, ValueError):
                self._f = None
        return len(text)

    def flush(self) -> None:
        if self._f is not None:
            try:
                self._f.flush()
            except (OSError, ValueError):
                self._f = None


def _open(path: str) -> TextIO | None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
    except OSError:
        return None
    return os.fdopen(fd, "a", buffering=1, encoding="utf-8")


JOURNAL, SYSLOG = "journal", "syslog"  # log_file values that are not files
IDENT = "mdev-hooks"  # SYSLOG_IDENTIFIER: `journalctl -t mdev-hooks`
JOURNAL_SOCKET = "/run/systemd/journal/socket"  # journald's native protocol ($MDEV_HOOKS_JOURNAL_SOCKET in tests)
_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "exception": 3, "critical": 2}


def _field_name(key: str) -> str:
    """A journal field name: upper case letters, digits and _, not starting with _ or a digit."""
    name = "".join(c if c.isalnum() and c.isascii() else "_" for c in key.upper()).lstrip("_")
    return name if name and not name[0].isdigit() else "F_" + name


def _add_level(_logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """`level` from the method's name: structlog's own add_log_level moved between releases (stdlib before 20.2)."""
    event["level"] = {"warn": "warning", "exception": "error"}.get(method, method)
    return event


def _journal_entry(_logger: Any, _name: str, event: dict[str, Any]) -> bytes:
    """One journal entry: the native protocol's KEY=value lines (binary form for values with a newline); MESSAGE
    is the event and its fields in one line, as `journalctl -t mdev-hooks` shows it."""
    import json

    level = str(event.pop("level", "info"))
    name = str(event.get("event", ""))
    fields = {_field_name(k): v if isinstance(v, str) else json.dumps(v) for k, v in event.items()}
    message = " ".join([name, *(f"{k}={v}" for k, v in event.items() if k != "event")])
    fields.update(MESSAGE=message, PRIORITY=str(_PRIORITY.get(level, 6)), SYSLOG_IDENTIFIER=IDENT)
    out = bytearray()
    for key, value in fields.items():
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            out += key.encode() + b"\n" + len(data).to_bytes(8, "little") + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


def _journal_args(logger: Any, name: str, event: dict[str, Any]) -> tuple[tuple[bytes], dict[str, Any]]:
    """structlog's last processor for the journal: the entry as (args, kwargs), since structlog before 20.2 takes
    no bytes from a last processor."""
    return (_journal_entry(logger, name, event),), {}


class _Journal:
    """structlog logger: one datagram per entry to journald, or the entry's MESSAGE to syslog without journald."""

    def __init__(self, use_journal: bool) -> None:
        import socket

        self._path = os.environ.get("MDEV_HOOKS_JOURNAL_SOCKET") or JOURNAL_SOCKET
        self._sock = None
        if use_journal and os.path.exists(self._path):
            try:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            except OSError:
                self._sock = None

    def _send(self, entry: bytes) -> None:
        if self._sock is not None:
            try:
                self._sock.sendto(entry, self._path)
                return
            except OSError:
                pass  # journald gone or the entry too large: syslog instead
        import syslog

        fields = dict(line.split(b"=", 1) for line in entry.split(b"\n") if b"=" in line)
        syslog.openlog(IDENT, syslog.LOG_PID, syslog.LOG_DAEMON)
        syslog.syslog(int(fields.get(b"PRIORITY", b"6")), fields.get(b"MESSAGE", b"").decode("utf-8", "replace"))

    def __getattr__(self, _level: str) -> Any:
        return self._send


class _FileLogger:
    """structlog logger: one JSON line per entry to the log file (structlog's WriteLoggerFactory is 22.1+)."""

    def __init__(self, file: _SafeFile) -> None:
        self._file = file

    def _write(self, line: str) -> None:
        self._file.write(line + "\n")
        self._file.flush()

    def __getattr__(self, _level: str) -> Any:
        return self._write


# structlog.dev imports these when installed, for its console renderer's colours and tracebacks: the hook writes
# JSON or journal entries and never uses them, and rich alone costs more than structlog itself
OPTIONAL = ("rich", "colorama", "better_exceptions")


def _unblock(blocked: list[str]) -> None:
    for name in blocked:
        if name in sys.modules and sys.modules[name] is None:
            del sys.modules[name]


def setup(log_file: str, **context: Any) -> Any:
    # structlog without the OPTIONAL modules, on its first import only (a process that has them keeps them); None
    # in sys.modules makes `import name` raise ImportError, which structlog expects
    blocked = [name for name in OPTIONAL if name not in sys.modules and "structlog" not in sys.modules]
    sys.modules.update(dict.fromkeys(blocked))  # type: ignore[arg-type]
    try:
        import structlog
    finally:
        _unblock(blocked)

    processors: list[Any] = [_add_level, structlog.processors.format_exc_info]
    if log_file in (JOURNAL, SYSLOG):
        journal = _Journal(use_journal=log_file == JOURNAL)
        structlog.configure(processors=[*processors, _journal_args],
                            logger_factory=lambda *_a: journal, cache_logger_on_first_use=True)
        return structlog.get_logger().bind(**context)
    logger = _FileLogger(_SafeFile(_open(log_file)))
    structlog.configure(
        processors=[*processors[:1], structlog.processors.TimeStamper(fmt="iso", utc=True), *processors[1:],
                    structlog.processors.JSONRenderer(sort_keys=False)],
        logger_factory=lambda *_a: logger,
        cache_logger_on_first_use=True,
    )
    return structlog.get_logger().bind(**context)
