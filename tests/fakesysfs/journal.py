"""The fake's journal: one JSON line per write() and per create/remove outcome, flushed at once.

t0/t1 come from time.monotonic() (CLOCK_MONOTONIC, shared by every process on the host), so a test may compare
them with its own timestamps. t1 is taken before the reply goes back to the caller.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any


class Journal:
    def __init__(self, path: Path | str) -> None:
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the mount
        self._lock = threading.Lock()
        self._seq = 0

    def add(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._seq += 1
            line = json.dumps({"seq": self._seq, **record}, sort_keys=False)
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


def read_journal(path: Path | str) -> list[dict[str, Any]]:
    """All complete records of a journal file (a line still being written is skipped)."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines(keepends=True):
        if line.endswith("\n"):
            records.append(json.loads(line))
    return records


def overlapping_creates(records: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Pairs of successful creates on one parent whose [t0, t1] intervals overlap (a missing lock in the hook)."""
    ok = sorted(
        (r for r in records if r.get("op") == "create" and r.get("result") == "ok" and r.get("actor") == "user"),
        key=lambda r: r["t0"],
    )
    pairs = []
    for i, a in enumerate(ok):
        for b in ok[i + 1 :]:
            if b["t0"] >= a["t1"]:
                break
            if a["parent"] == b["parent"]:
                pairs.append((a, b))
    return pairs
