"""The one logging setup: structlog, JSON lines appended to log_file.

Invariant: never writes to stdout or stderr, and a log file that cannot be opened or written never breaks a VM start
(writes that fail are dropped).
"""

from __future__ import annotations

import os
from typing import Any, TextIO


class _SafeFile:
    """File-like for structlog's WriteLogger that swallows I/O errors (full disk, revoked permissions)."""

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


def setup(log_file: str, **context: Any) -> Any:
    import structlog

    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(sort_keys=False),
        ],
        logger_factory=structlog.WriteLoggerFactory(file=_SafeFile(_open(log_file))),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    return structlog.get_logger().bind(**context)
