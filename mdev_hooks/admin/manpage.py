"""The mdev-hooks(8) manual page, rendered from the command's own argparse parser (so it cannot drift).

`python3 -m mdev_hooks.admin.manpage --parser MODULE:FUNCTION --config-text MODULE:NAME [-o FILE]` writes
section-8 roff: NAME, SYNOPSIS, DESCRIPTION, OPTIONS and COMMANDS come from the parser (descriptions, options and
their help, examples and exit codes from the epilogs); CONFIGURATION from the commented default config (share/
config.toml, whose every `# key = value` line a unit test checks against config.Config); what the hook does, FILES
and ENVIRONMENT are fixed texts taken from README.md and docs/DESIGN.md (FILES' paths are config.Config's defaults).
`MODULE:FUNCTION` returns the parser (the CLI's `build_parser`).

Invariant: no configuration key or default is written here; they come from the config text.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import re
import sys
from collections.abc import Iterable, Sequence

from mdev_hooks.admin.manpage_text import ENVIRONMENT, FILES, HOOK_TEXT, MORE_EXAMPLES, NAME_LINE, SEE_ALSO


# -- roff ---------------------------------------------------------------------------------------------------------
def esc(text: str) -> str:
    """Plain text -> roff text: backslashes and minus signs escaped, no line may start with a control character."""
    out = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in out.split("\n"))


def _raw(text: str) -> str:
    """Fixed texts above are already roff (\\- and \\(aq); guard only the line starts."""
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in text.split("\n"))


def _verbatim(lines: Iterable[str]) -> list[str]:
    out = [".PP", ".RS 4", ".nf"]
    out += [esc(line) if line.strip() else "" for line in lines]
    out += [".fi", ".RE"]
    return out


def _paragraphs(paras: Iterable[str], fixed: bool = False) -> list[str]:
    conv = _raw if fixed else esc
    out: list[str] = []
    for para in paras:
        if para.startswith("  "):
            out += _verbatim(para.split("\n"))
        elif para.startswith("* "):
            out += [".IP \\(bu 2", conv(para[2:])]
        else:
            out += [".PP", conv(para)]
    return out


# -- the parser ---------------------------------------------------------------------------------------------------
def subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of each subcommand, in definition order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            return [(name, helps.get(name, ""), p) for name, p in action.choices.items()]
    return []


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, (argparse._SubParsersAction, argparse._HelpAction))]


def common_options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The main parser's options (accepted before or after the command), without -h."""
    return [a for a in _options(parser) if a.option_strings]


def own_actions(parser: argparse.ArgumentParser, sub: argparse.ArgumentParser) -> list[argparse.Action]:
    """A subcommand's arguments that are not the common options it shares with the main parser."""
    common = {s for a in common_options(parser) for s in a.option_strings}
    return [a for a in _options(sub) if not (set(a.option_strings) & common)]


def _metavar(action: argparse.Action) -> str:
    if action.nargs == 0:
        return ""
    if action.metavar is not None:
        return str(action.metavar) if isinstance(action.metavar, str) else " ".join(action.metavar)
    if action.choices is not None:
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    return action.dest.upper() if action.option_strings else action.dest


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    # argparse's own expansion of %(default)s, %(prog)s, ... (what --help shows)
    return parser._get_formatter()._expand_help(action)


def _required(action: argparse.Action) -> bool:
    if action.option_strings:
        return bool(action.required)
    return action.nargs not in ("?", "*")


def _synopsis_item(action: argparse.Action) -> str:
    mv = _metavar(action)
    if action.option_strings:
        text = f"\\fB{esc(action.option_strings[-1])}\\fR" + (f" \\fI{esc(mv)}\\fR" if mv else "")
    else:
        text = f"\\fI{esc(mv)}\\fR"
    return text if _required(action) else f"[{text}]"


def _option_tag(action: argparse.Action) -> str:
    mv = _metavar(action)
    names = ", ".join(f"\\fB{esc(s)}\\fR" for s in action.option_strings)
    if not action.option_strings:
        return f"\\fI{esc(mv)}\\fR"
    return names + (f" \\fI{esc(mv)}\\fR" if mv else "")


def _describe(parser: argparse.ArgumentParser, actions: Sequence[argparse.Action]) -> list[str]:
    out: list[str] = []
    for action in actions:
        out += [".TP", _option_tag(action)]
        text = _help(parser, action)
        if action.choices is not None and action.option_strings and "{" not in _metavar(action):
            text += f" (one of: {', '.join(str(c) for c in action.choices)})"
        out.append(esc(text) if text else "")
    return out


def epilog_blocks(epilog: str | None) -> list[tuple[str, list[str]]]:
    """An argparse epilog -> (heading, lines) blocks: `heading:` alone on a line opens one; other paragraphs are
    (``, [paragraph])."""
    blocks: list[tuple[str, list[str]]] = []
    for chunk in re.split(r"\n\s*\n", epilog or ""):
        lines = chunk.strip("\n").split("\n")
        if not lines or not lines[0].strip():
            continue
        head = re.fullmatch(r"([a-z][a-z ]*):", lines[0].strip())
        if head:
            blocks.append((head.group(1), lines[1:]))
            continue
        # a paragraph per `topic: text` line and the lines continuing it
        paras: list[list[str]] = []
        for line in lines:
            if not paras or re.match(r"[a-z][a-z ]*: ", line):
                paras.append([])
            paras[-1].append(line.strip())
        blocks += [("", [" ".join(p)]) for p in paras]
    return blocks


_SETTING = re.compile(r'#\s?([a-z_]+ = .+|\[[a-z_]+\]|"[^"]*" = .+)')


def config_entries(text: str) -> tuple[str, list[tuple[list[str], str]]]:
    """The commented default config -> (its introduction, [(setting lines, description)]): each block of comment
    lines is a description followed by its `# key = default` lines."""
    blocks = [b.strip("\n").split("\n") for b in re.split(r"\n\s*\n", text) if b.strip()]
    if not blocks:
        return "", []
    intro = " ".join(line.lstrip("#").strip() for line in blocks[0])
    entries: list[tuple[list[str], str]] = []
    for block in blocks[1:]:
        first = next((i for i, line in enumerate(block) if _SETTING.fullmatch(line)), len(block))
        settings = [m.group(1) for line in block[first:] if (m := _SETTING.fullmatch(line))]
        description = " ".join(line.lstrip("#").strip() for line in block[:first])
        if settings:
            entries.append((settings, description))
    return intro, entries


def _configuration(config_text: str) -> list[str]:
    intro, entries = config_entries(config_text)
    out = [".PP", "/etc/mdev\\-hooks/config.toml: " + esc(intro)]
    for settings, description in entries:
        keys = [line for line in settings if not line.startswith('"')]  # `key = default` and `[table]` lines
        rows = [line for line in settings if line.startswith('"')]  # an example row of a table
        for i, key in enumerate(keys or settings[:1]):
            out += [".TP" if i == 0 else ".TQ", "\\fB" + esc(key) + "\\fR"]
        out.append(esc(description))
        if rows:
            out += [".br", "e.g. " + esc(", ".join(rows))]
    return out


def _exit_status(blocks: Sequence[tuple[str, list[str]]]) -> list[str]:
    for head, lines in blocks:
        if head == "exit status":
            out: list[str] = []
            for line in lines:
                m = re.fullmatch(r"\s*(\d+)\s+(.*)", line)
                if m:
                    out += [".TP", f"\\fB{m.group(1)}\\fR", esc(m.group(2))]
                elif out:
                    out.append(esc(line.strip()))
            return out
    return []


def _examples(lines: Sequence[str]) -> list[str]:
    return _verbatim(line[2:] if line.startswith("  ") else line for line in lines)


def render(parser: argparse.ArgumentParser, version: str, date: str, config_text: str) -> str:
    """The page; CONFIGURATION is the commented default config (`config_text`), so its keys and defaults are the
    ones tests/unit/test_config_defaults.py checks against config.Config."""
    prog = parser.prog
    subs = subcommands(parser)
    common = common_options(parser)
    main_blocks = epilog_blocks(parser.epilog)
    out = [
        f'.\\" {prog}(8), generated by mdev_hooks.admin.manpage from the command\'s argument parser: do not edit',
        f'.TH "{esc(prog.upper())}" "8" "{date}" "{esc(prog)} {esc(version)}" "System Administration"',
        ".nh",
        ".ad l",
        ".SH NAME",
        f"{esc(prog)} \\- {esc(NAME_LINE)}",
        ".SH SYNOPSIS",
    ]
    for name, _summary, sub in subs:
        items = " ".join(_synopsis_item(a) for a in own_actions(parser, sub))
        out += [".PP", f"\\fB{esc(prog)}\\fR [\\fIcommon options\\fR] \\fB{esc(name)}\\fR {items}".rstrip()]
    version_opts = [a for a in common if isinstance(a, argparse._VersionAction)]
    out += [".PP", f"\\fB{esc(prog)}\\fR " + " ".join(
        f"\\fB{esc(a.option_strings[-1])}\\fR" for a in version_opts) + " | \\fB\\-h\\fR",
        ".SH DESCRIPTION"]
    out += _paragraphs([parser.description or ""])
    out += _paragraphs(lines[0] for head, lines in main_blocks if not head and lines)
    out += [".SH OPTIONS",
            ".PP", "These common options are accepted before or after the command."]
    out += _describe(parser, [a for a in common if not isinstance(a, argparse._VersionAction)])
    out += _describe(parser, version_opts)
    out += [".TP", "\\fB\\-h\\fR, \\fB\\-\\-help\\fR", "show the help of the command, or of COMMAND, and exit"]
    out.append(".SH COMMANDS")
    for name, summary, sub in subs:
        out += [".SS " + esc(name), ".PP", esc(summary)]
        desc = sub.description or ""
        if desc and desc != summary:
            out += _paragraphs(p.strip() for p in desc.split("\n\n") if p.strip())
        own = own_actions(parser, sub)
        if own:
            out += [".PP", "Arguments:", ".RS 4"]
            out += _describe(sub, own)
            out.append(".RE")
        for head, lines in epilog_blocks(sub.epilog):
            if head in ("example", "examples"):
                out += [".PP", "Example" + ("s:" if len(lines) > 1 else ":")]
                out += _examples(lines)
    for title, paras in HOOK_TEXT:
        out += [".SH " + title, *_paragraphs(paras, fixed=True)]
    out += [".SH CONFIGURATION", *_configuration(config_text)]
    out.append(".SH FILES")
    for path, what in FILES:
        out += [".TP", f"\\fI{esc(path)}\\fR", esc(what)]
    out.append(".SH ENVIRONMENT")
    for var, what in ENVIRONMENT:
        out += [".TP", f"\\fB{esc(var)}\\fR", esc(what)]
    status = _exit_status(main_blocks)
    if status:
        out += [".SH EXIT STATUS", *status]
    examples = [lines for head, lines in main_blocks if head in ("example", "examples")]
    out.append(".SH EXAMPLES")
    for lines in examples:
        out += _examples(lines)
    for intro, lines in MORE_EXAMPLES:
        out += [".PP", esc(intro), *_verbatim(lines)]
    out += [".SH SEE ALSO", ", ".join(f"\\fB{esc(s.split('(')[0])}\\fR({s.split('(')[1]}" for s in SEE_ALSO)]
    return "\n".join(out) + "\n"


# -- entry point --------------------------------------------------------------------------------------------------
def load_parser(spec: str) -> argparse.ArgumentParser:
    """`package.module:function` -> the parser that function returns."""
    module, _, func = spec.partition(":")
    if not module or not func:
        raise SystemExit(f"--parser {spec!r}: expected MODULE:FUNCTION, e.g. mdev_hooks.admin.cli:build_parser")
    parser = getattr(importlib.import_module(module), func)()
    if not isinstance(parser, argparse.ArgumentParser):
        raise SystemExit(f"--parser {spec}: returned {type(parser).__name__}, not an ArgumentParser")
    return parser


def build_date() -> str:
    """The page's date: SOURCE_DATE_EPOCH (set by dpkg-buildpackage: reproducible builds), else today."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch
            else datetime.datetime.now(datetime.timezone.utc))
    return when.strftime("%Y-%m-%d")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m mdev_hooks.admin.manpage", description=__doc__.split("\n")[0])
    ap.add_argument("--parser", required=True, metavar="MODULE:FUNCTION", help="function returning the parser")
    ap.add_argument("--config-text", metavar="MODULE:NAME", required=True,
                    help="the commented default config (a str, or a function returning it) for CONFIGURATION")
    ap.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    args = ap.parse_args(argv)
    from mdev_hooks import __version__

    module, _, name = args.config_text.partition(":")
    value = getattr(importlib.import_module(module), name)
    config_text = str(value() if callable(value) else value)
    write_output(render(load_parser(args.parser), __version__, build_date(), config_text), args.output)
    return 0


def write_output(text: str, path: str | None) -> None:
    """The generated file into `path`, or stdout (shared with completion.py's command)."""
    if path:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    sys.exit(main())
