"""A strict parser of the TOML subset the config file uses, for Pythons without tomllib (< 3.11, e.g. Debian 11).

The subset: comments; bare and quoted keys (no dotted keys); basic strings with TOML's escapes, literal strings,
integers, floats, booleans; arrays of those (also over several lines, with comments and a trailing comma); `[table]`
headers (one key, e.g. `[parents]`, `[pools]`). Not in it: multi-line strings, dates and times, hexadecimal, octal
and binary integers, inline tables, nested arrays, arrays of tables, dotted keys.

Invariant: whatever this accepts, tomllib accepts and gives the same value (tests/unit/test_tomlsubset.py compares
them on generated documents); valid TOML outside the subset raises OutsideSubset, and TOMLSubsetError (its parent)
is raised only for what tomllib refuses too; both carry the line number.
"""

from __future__ import annotations

import re
from typing import Any

_WS = " \t"
_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
# control characters other than tab: never in a comment or a one-line string (a newline ends both)
_CONTROL = frozenset(chr(i) for i in range(32) if i != 9) | {chr(127)}
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}
_DECIMAL = re.compile(r"[+-]?(?:0|[1-9](?:_?[0-9])*)((?:\.[0-9](?:_?[0-9])*)?(?:[eE][+-]?[0-9](?:_?[0-9])*)?)")
_OTHER_BASE = re.compile(r"0(?:x[0-9A-Fa-f]|o[0-7]|b[01])")
_DATE_OR_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{2}:[0-9]{2}:[0-9]{2}")
_SPECIAL_FLOAT = re.compile(r"[+-]?(?:inf|nan)")


class TOMLSubsetError(ValueError):
    """Not valid TOML (tomllib refuses it too)."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(f"{message} (at line {line})")
        self.message = message
        self.line = line


class OutsideSubset(TOMLSubsetError):
    """Valid TOML, perhaps, but beyond the subset this parser reads."""


class _Parser:
    def __init__(self, text: str) -> None:
        self.src = text.replace("\r\n", "\n")  # as tomllib does; a lone CR stays and is refused
        self.pos = 0

    def char(self, offset: int = 0) -> str:
        """The character at pos + offset, "" at the end."""
        return self.src[self.pos + offset:self.pos + offset + 1]

    def error(self, message: str) -> TOMLSubsetError:
        return TOMLSubsetError(message, self.src.count("\n", 0, self.pos) + 1)

    def outside(self, what: str) -> OutsideSubset:
        return OutsideSubset(f"{what} are outside the TOML subset", self.src.count("\n", 0, self.pos) + 1)

    def skip_ws(self) -> None:
        while self.char() and self.char() in _WS:
            self.pos += 1

    def skip_comment(self) -> None:
        """A `#` comment up to (not including) the newline."""
        if self.char() != "#":
            return
        end = self.src.find("\n", self.pos)
        end = len(self.src) if end < 0 else end
        while self.pos < end:
            if self.src[self.pos] in _CONTROL:
                raise self.error("control character in a comment")
            self.pos += 1

    def skip_blank(self) -> None:
        """Whitespace, newlines and comments (inside an array)."""
        while True:
            start = self.pos
            while self.char() and self.char() in " \t\n":
                self.pos += 1
            self.skip_comment()
            if self.pos == start:
                return

    def end_of_statement(self) -> None:
        self.skip_ws()
        self.skip_comment()
        if self.char() not in ("", "\n"):
            raise self.error("expected a newline or the end of the document after a statement")
        self.pos += 1

    def key(self) -> str:
        c = self.char()
        if c == '"':
            key = self.basic_string()
        elif c == "'":
            key = self.literal_string()
        else:
            start = self.pos
            while self.char() and self.char() in _BARE:
                self.pos += 1
            if self.pos == start:
                raise self.error("expected a key")
            key = self.src[start:self.pos]
        self.skip_ws()
        if self.char() == ".":
            raise self.outside("dotted keys")
        return key

    def basic_string(self) -> str:
        """A one-line `"..."` string with TOML 1.0's escapes."""
        self.pos += 1
        out: list[str] = []
        while True:
            c = self.char()
            if c == "":
                raise self.error("unterminated string")
            self.pos += 1
            if c == '"':
                return "".join(out)
            if c == "\\":
                out.append(self.escape())
            elif c in _CONTROL:
                self.pos -= 1
                raise self.error("unterminated string" if c == "\n" else "control character in a string")
            else:
                out.append(c)

    def escape(self) -> str:
        c = self.char()
        self.pos += 1
        if c in _ESCAPES:
            return _ESCAPES[c]
        if c in ("u", "U"):
            digits = self.src[self.pos:self.pos + (4 if c == "u" else 8)]
            if len(digits) != (4 if c == "u" else 8) or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise self.error(f"\\{c} needs {4 if c == 'u' else 8} hexadecimal digits")
            self.pos += len(digits)
            point = int(digits, 16)
            if 0xD800 <= point <= 0xDFFF or point > 0x10FFFF:
                raise self.error("escaped character is not a Unicode scalar value")
            return chr(point)
        if c in ("e", "x"):  # TOML 1.1's escapes: tomllib of some Python version may accept them
            raise self.outside(f"\\{c} escapes")
        raise self.error(f"unknown escape \\{c}")

    def literal_string(self) -> str:
        """A one-line `'...'` string: no escapes."""
        self.pos += 1
        start = self.pos
        while self.char() != "'":
            c = self.char()
            if c == "" or c == "\n":
                raise self.error("unterminated string")
            if c in _CONTROL:
                raise self.error("control character in a string")
            self.pos += 1
        self.pos += 1
        return self.src[start:self.pos - 1]

    def value(self, in_array: bool = False) -> Any:
        c = self.char()
        if c in ('"', "'"):
            if self.src.startswith(c * 3, self.pos):
                raise self.outside("multi-line strings")
            return self.basic_string() if c == '"' else self.literal_string()
        for word, value in (("true", True), ("false", False)):
            if self.src.startswith(word, self.pos):
                self.pos += len(word)
                return value
        if c == "[":
            if in_array:
                raise self.outside("nested arrays")
            return self.array()
        if c == "{":
            raise self.outside("inline tables")
        if _DATE_OR_TIME.match(self.src, self.pos):
            raise self.outside("dates and times")
        if _OTHER_BASE.match(self.src, self.pos):
            raise self.outside("hexadecimal, octal and binary integers")
        m = _DECIMAL.match(self.src, self.pos) or _SPECIAL_FLOAT.match(self.src, self.pos)
        if m is None:
            raise self.error("invalid value")
        self.pos = m.end()
        text = m.group().replace("_", "")
        return float(text) if m.re is _SPECIAL_FLOAT or m.group(1) else int(text)

    def array(self) -> list[Any]:
        self.pos += 1
        items: list[Any] = []
        self.skip_blank()
        while self.char() != "]":
            items.append(self.value(in_array=True))
            self.skip_blank()
            if self.char() == "]":
                break
            if self.char() != ",":
                raise self.error("unclosed array (expected `,` or `]`)")
            self.pos += 1
            self.skip_blank()
        self.pos += 1
        return items

    def header(self, doc: dict[str, Any]) -> dict[str, Any]:
        """`[name]`: the table the following keys go into."""
        self.pos += 1
        if self.char() == "[":
            raise self.outside("arrays of tables")
        self.skip_ws()
        name = self.key()
        if self.char() != "]":
            raise self.error("expected `]` at the end of a table header")
        self.pos += 1
        if name in doc:
            raise self.error(f"table {name!r} is defined twice")
        table: dict[str, Any] = {}
        doc[name] = table
        return table

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        table = doc
        while True:
            self.skip_ws()
            c = self.char()
            if c == "":
                break
            if c == "[":
                table = self.header(doc)
            elif c in _BARE or c in "\"'":
                key = self.key()
                if self.char() != "=":
                    raise self.error("expected `=` after a key")
                self.pos += 1
                self.skip_ws()
                value = self.value()
                if key in table:
                    raise self.error(f"key {key!r} is defined twice")
                table[key] = value
            elif c not in ("#", "\n"):
                raise self.error("invalid statement")
            self.end_of_statement()
        return doc


def loads(text: str) -> dict[str, Any]:
    """The document's tables and values, as tomllib.loads gives them; TOMLSubsetError (OutsideSubset for valid TOML
    beyond the subset) otherwise."""
    return _Parser(text).document()
