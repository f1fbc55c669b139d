"""The one assertion on what the user sees of a failure: the hook's (and the CLI's) error is one `mdev-hooks: ` line.

Invariant: a text passes only if it is exactly one line (one newline, at its end: no blank line before or after),
that line starts with `mdev-hooks: ` and no traceback is anywhere in it.
"""

from __future__ import annotations

PREFIX = "mdev-hooks: "


def one_line(err: bytes | str) -> str:
    """The message (without the prefix and the newline) of a whole stderr that is exactly one `mdev-hooks: ...`
    line; AssertionError else. Every tier asserts through this, so all hold the hook to the same rule."""
    text = err.decode() if isinstance(err, bytes) else err
    assert "Traceback" not in text, text
    assert text.endswith("\n") and text.count("\n") == 1, f"expected exactly one line:\n{text!r}"
    assert text.startswith(PREFIX), f"expected a line starting {PREFIX!r}:\n{text}"
    return text[len(PREFIX):-1]
