"""tomlsubset, the config's TOML parser below Python 3.11, against tomllib (tomli, the same parser as a package, where
there is no tomllib: it comes with pytest's own dependencies there; mdev_hooks never imports it): generated documents
within the subset give exactly tomllib's values; what it refuses, it refuses for the right reason."""

from __future__ import annotations

import math
import string
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mdev_hooks import config, tomlsubset
from mdev_hooks.errors import HookError

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

BARE = string.ascii_letters + string.digits + "_-"
SHORT_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"', "\\": "\\\\"}
CONTROL = {chr(i) for i in range(32) if i != 9} | {chr(127)}


def exact(value: Any) -> Any:
    """A value with its types spelled out (True is not 1, 1 is not 1.0, -0.0 is not 0.0)."""
    if isinstance(value, dict):
        return {k: exact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [exact(v) for v in value]
    return (type(value).__name__, repr(value))


# -- decoded values, then one of their TOML spellings -------------------------------------------------------------
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
keys = st.one_of(st.text(BARE, min_size=1, max_size=8), texts)
floats = st.floats(allow_nan=True, allow_infinity=True)
scalars = st.one_of(texts, st.integers(-(2**70), 2**70), floats, st.booleans())
values = st.one_of(scalars, st.lists(scalars, max_size=5))
tables = st.dictionaries(keys, values, max_size=5)
documents = st.tuples(tables, st.dictionaries(st.text(BARE, min_size=1, max_size=8), tables, max_size=3))


def spell_string(draw: st.DrawFn, s: str) -> str:
    if "'" not in s and not (set(s) & CONTROL) and draw(st.booleans()):
        return f"'{s}'"
    out = []
    for c in s:
        if c in SHORT_ESCAPES and (c in '"\\' or c in CONTROL or draw(st.booleans())):
            out.append(SHORT_ESCAPES[c])
        elif c in CONTROL or draw(st.integers(0, 9)) == 0:
            out.append(f"\\u{ord(c):04X}" if ord(c) < 0x10000 and draw(st.booleans()) else f"\\U{ord(c):08x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def spell_int(draw: st.DrawFn, n: int) -> str:
    digits = str(abs(n))
    if len(digits) > 1 and draw(st.booleans()):
        digits = "_".join(digits[i:i + 1] for i in range(len(digits)))  # every digit apart: still valid
    return ("-" if n < 0 else draw(st.sampled_from(["", "+"]))) + digits


def spell_float(draw: st.DrawFn, x: float) -> str:
    text = repr(x)  # 1.5, -0.0, 1e-05, 1.5e+16, inf, nan: each a TOML float as written
    if math.isfinite(x) and "e" not in text and draw(st.booleans()):
        mantissa, frac = text.split(".")
        text = f"{mantissa}.{frac}e0"
    return text if text[0] == "-" else draw(st.sampled_from(["", "+"])) + text


def spell_value(draw: st.DrawFn, v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return spell_int(draw, v)
    if isinstance(v, float):
        return spell_float(draw, v)
    if isinstance(v, str):
        return spell_string(draw, v)
    sep = lambda: draw(st.sampled_from([" ", "", "\t", "\n  ", " # note\n", "\n\n"]))  # noqa: E731
    items = [sep() + spell_value(draw, item) + sep() for item in v]
    trailing = "," + sep() if items and draw(st.booleans()) else ""
    return "[" + ",".join(items) + trailing + "]" if items else "[" + sep() + "]"


def spell_key(draw: st.DrawFn, key: str) -> str:
    if key and all(c in BARE for c in key) and draw(st.booleans()):
        return key
    return spell_string(draw, key)


def spell_table(draw: st.DrawFn, table: dict[str, Any]) -> list[str]:
    ws = lambda: draw(st.sampled_from(["", " ", "\t", "  "]))  # noqa: E731
    lines = []
    for key, value in table.items():
        comment = draw(st.sampled_from(["", " # why", "# é ¶"]))
        lines.append(f"{ws()}{spell_key(draw, key)}{ws()}={ws()}{spell_value(draw, value)}{ws()}{comment}")
        lines += draw(st.sampled_from([[], [""], ["# a comment"], ["   "]]))
    return lines


@st.composite
def spelled(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    top, named = draw(documents)
    named = {k: v for k, v in named.items() if k not in top}
    lines = draw(st.sampled_from([[], ["# mdev-hooks configuration"]])) + spell_table(draw, top)
    for name, table in named.items():
        lines.append(draw(st.sampled_from(["[{}]", "[ {} ]", "[{}] # table"])).format(spell_key(draw, name)))
        lines += spell_table(draw, table)
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    return newline.join(lines) + draw(st.sampled_from(["", newline])), {**top, **named}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spelled())
@example(('a = "x"\n[pools]\ngpus = ["0000:41:00.0",\n  "0000:42:00.0", # the second\n]\n',
          {"a": "x", "pools": {"gpus": ["0000:41:00.0", "0000:42:00.0"]}}))
def test_within_the_subset_it_gives_exactly_what_tomllib_gives(doc: tuple[str, dict[str, Any]]) -> None:
    text, decoded = doc
    assert exact(tomllib.loads(text)) == exact(decoded)  # the generator spells valid TOML
    assert exact(tomlsubset.loads(text)) == exact(decoded)


TOKENS = ["a", "b", '"', "'", "=", " ", "\n", "\r", "\t", "[", "]", ",", "#", "1", "0", ".", "e", "-", "+", "_",
          "true", "\\", "u", "x", "{", "}", "inf", ":", "é", "\x00", "1979-05-27", '"""', "\\u00e9", "0x1"]


@settings(max_examples=800, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=24).map("".join))
def test_on_any_text_it_accepts_only_what_tomllib_accepts_alike_and_calls_invalid_only_the_invalid(text: str) -> None:
    try:
        ours: Any = tomlsubset.loads(text)
    except tomlsubset.OutsideSubset:
        return  # valid TOML beyond the subset, or invalid: said as "outside", never a wrong value
    except tomlsubset.TOMLSubsetError as e:
        with pytest.raises(tomllib.TOMLDecodeError):
            tomllib.loads(text)
        assert 1 <= e.line <= text.replace("\r\n", "\n").count("\n") + 1
        return
    assert exact(ours) == exact(tomllib.loads(text))


OUTSIDE = [
    ("a = 1\nb.c = 2", 2, "dotted keys"),
    ('[a.b]\nc = 1', 1, "dotted keys"),
    ("p = {x = 1}", 1, "inline tables"),
    ("when = 1979-05-27", 1, "dates and times"),
    ("at = 07:32:00", 1, "dates and times"),
    ("n = 0x1f", 1, "hexadecimal, octal and binary integers"),
    ("n = 0o17", 1, "hexadecimal, octal and binary integers"),
    ('s = """x"""', 1, "multi-line strings"),
    ("s = '''x'''", 1, "multi-line strings"),
    ("a = [[1], [2]]", 1, "nested arrays"),
    ("[[pools]]\nx = 1", 1, "arrays of tables"),
]


@pytest.mark.parametrize(("text", "line", "what"), OUTSIDE)
def test_valid_toml_beyond_the_subset_is_refused_as_outside_it(text: str, line: int, what: str) -> None:
    tomllib.loads(text)  # valid TOML
    with pytest.raises(tomlsubset.OutsideSubset) as e:
        tomlsubset.loads(text)
    assert (e.value.line, e.value.message) == (line, f"{what} are outside the TOML subset")


INVALID = [
    ("a = 1\na = 2", 2, "key 'a' is defined twice"),
    ('a = 1\n"a" = 2', 2, "key 'a' is defined twice"),
    ("[t]\n[t]", 2, "table 't' is defined twice"),
    ("t = 1\n[t]", 2, "table 't' is defined twice"),
    ('s = "\\q"', 1, "unknown escape \\q"),
    ('s = "\\uD800"', 1, "escaped character is not a Unicode scalar value"),
    ('s = "\\u12"', 1, "\\u needs 4 hexadecimal digits"),
    ('s = "open', 1, "unterminated string"),
    ("s = 'a\nb'", 1, "unterminated string"),
    ('s = "a\x01"', 1, "control character in a string"),
    ("a = 1 # bell\x07", 1, "control character in a comment"),
    ("a = 1\rb = 2", 1, "expected a newline or the end of the document after a statement"),
    ("n = 01", 1, "expected a newline or the end of the document after a statement"),
    ("n = 1.", 1, "expected a newline or the end of the document after a statement"),
    ("n = 1__0", 1, "expected a newline or the end of the document after a statement"),
    ("a = [1,,2]", 1, "invalid value"),
    ("a = [1 2]", 1, "unclosed array (expected `,` or `]`)"),
    ("a = [1,\n2", 2, "unclosed array (expected `,` or `]`)"),
    ("a =", 1, "invalid value"),
    ("a", 1, "expected `=` after a key"),
    ("= 1", 1, "invalid statement"),
    ("[]", 1, "expected a key"),
    ("[t", 1, "expected `]` at the end of a table header"),
    ("\ufeffa = 1", 1, "invalid statement"),
]


@pytest.mark.parametrize(("text", "line", "message"), INVALID)
def test_invalid_toml_is_refused_with_its_line(text: str, line: int, message: str) -> None:
    with pytest.raises(tomllib.TOMLDecodeError):
        tomllib.loads(text)
    with pytest.raises(tomlsubset.TOMLSubsetError) as e:
        tomlsubset.loads(text)
    assert not isinstance(e.value, tomlsubset.OutsideSubset)
    assert (e.value.line, e.value.message) == (line, message)


def test_config_says_outside_the_subset_in_one_line_naming_file_and_line(tmp_path: Path) -> None:
    path = str(tmp_path / "config.toml")
    with pytest.raises(HookError) as e:
        config._parse_subset('dry_run = true\n[parents]\n"a" = {x = 1}\n', path)
    v = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert str(e.value) == (f"config {path}: line 3: inline tables are outside the TOML subset that Python {v} "
                            "reads here (all of TOML needs Python 3.11's tomllib)")
    with pytest.raises(HookError) as e:
        config._parse_subset("a = 1\na = 2\n", path)
    assert str(e.value) == f"config {path}: not valid TOML: key 'a' is defined twice (at line 2)"
    assert "\n" not in str(e.value)


def test_config_reads_tables_and_arrays_with_it(tmp_path: Path) -> None:
    text = 'allowed_types = [\n  "mtty-*", # samples\n  \'i915-*\',\n]\n[parents]\n"0000:41:00.0" = "0000:81:00.0"\n'
    assert config._parse_subset(text, "c.toml") == tomllib.loads(text)
    (tmp_path / "c.toml").write_text(text)
    cfg = config.load({"MDEV_HOOKS_CONFIG": str(tmp_path / "c.toml")})
    assert cfg.allowed_types == ("mtty-*", "i915-*") and cfg.parents == (("0000:41:00.0", "0000:81:00.0"),)


def test_the_hook_package_never_imports_a_toml_library() -> None:
    package = Path(config.__file__).parent
    found = [f"{p.name}: {line.strip()}" for p in package.rglob("*.py") for line in p.read_text().splitlines()
             if line.strip().startswith(("import tomli", "from tomli", "import toml ", "from toml "))]
    assert found == []
