"""The documentation's commands exist: every ``fcnx ...`` line, every benchmark/script call and every
relative link or anchor of the Markdown docs is checked against the real click commands, the scripts'
argparse options (read with ``ast``, never run) and the files on disk. No net is loaded."""

from __future__ import annotations

import ast
import difflib
import re
import unicodedata
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import click
import pytest

ROOT = Path(__file__).resolve().parents[1]

#: the docs a newcomer copies from (the changelog: its unreleased section only)
DOCS = sorted(
    [
        ROOT / "README.md",
        ROOT / "CONTRIBUTING.md",
        ROOT / "CHANGELOG.md",
        ROOT / "plugins" / "fcnx-tiny" / "README.md",
        *(ROOT / "docs").glob("*.md"),
    ]
)

#: programs that run fcnx itself: ``fcnx``, ``.venv/bin/fcnx``
FCNX_PROGRAM = re.compile(r"^(?:\S*/)?fcnx$")
#: programs that run ``-m fcnx`` or a script: ``python``, ``python3``, ``.venv/bin/python``, ``torchrun``
PYTHON_PROGRAM = re.compile(r"^(?:\S*/)?(?:python3?(?:\.\d+)?|torchrun)$")
SCRIPT_PATH = re.compile(r"^(?:benchmarks|scripts)/[\w.-]+\.(?:py|sh)$")
#: words shell lines put before the program
PREFIXES = {"sudo", "time", "exec", "env", "nohup"}
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
SEPARATORS = {"&&", "||", "|", ";", "&"}


def is_placeholder(token: str) -> bool:
    """``...``, ``…``, ``<file>``, ``NAME``, ``FILE``, ``$VAR``: stands for a value the reader supplies."""
    bare = token.strip("[]'\"")
    return (
        "..." in bare
        or "…" in bare
        or "<" in bare
        or "$" in bare
        or bool(re.fullmatch(r"[A-Z][A-Z0-9_]*(?:[=:][A-Z][A-Z0-9_]*)?", bare))
    )


# ---------------------------------------------------------------------------------------------------------
# extraction


@dataclass(frozen=True)
class Snippet:
    """A piece of shell the docs show: one (continuation-joined) line of a code block, or one inline code span."""

    path: Path
    line: int
    text: str
    block: bool  # a code block line (a whole command) rather than a prose fragment in backticks


@dataclass(frozen=True)
class Command:
    """One command of a snippet: ``argv[0]`` is ``fcnx`` (then its arguments) or the script's path."""

    snippet: Snippet
    kind: str  # "fcnx" or "script"
    argv: tuple[str, ...]

    @property
    def where(self) -> str:
        path = self.snippet.path
        return f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{self.snippet.line}"

    def __str__(self) -> str:
        return f"{self.where}: {' '.join(self.argv)}"


def doc_text(path: Path) -> str:
    """The part of a doc that describes the current version: a changelog's unreleased section (or, with no
    such section, its newest version's), with the lines before it blanked so line numbers stay true."""
    text = path.read_text(encoding="utf-8")
    if path.name != "CHANGELOG.md":
        return text
    lines = text.splitlines(keepends=True)
    sections = [i for i, line in enumerate(lines) if re.match(r"##\s", line)]
    if not sections:
        return text
    start = next((i for i in sections if "unreleased" in lines[i].lower()), sections[0])
    end = next((i for i in sections if i > start), len(lines))
    return "".join(line if start <= i < end else "\n" for i, line in enumerate(lines))


def split_code(text: str) -> tuple[list[tuple[int, str]], str]:
    """The code-block lines of a Markdown text as ``(line number, line)``, and the text with every code
    block blanked (same line numbers) for inline code, links and headings."""
    code: list[tuple[int, str]] = []
    prose: list[str] = []
    fence: str | None = None
    previous_blank = True
    in_indented = False
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if fence is not None:
            if stripped.startswith(fence) and not stripped[len(fence) :].strip("`~"):
                fence = None
            else:
                code.append((number, line))
            prose.append("")
            continue
        match = re.match(r"\s{0,3}(`{3,}|~{3,})", line)
        if match:
            fence = match.group(1)
            prose.append("")
            in_indented = False
            continue
        if line.startswith("    ") and stripped and (previous_blank or in_indented):
            in_indented = True  # an indented code block: after a blank line, until a line that is not indented
            code.append((number, line[4:]))
            prose.append("")
            continue
        in_indented = in_indented and not stripped
        previous_blank = not stripped
        prose.append(line)
    return code, "\n".join(prose) + "\n"


def snippets(path: Path, text: str | None = None) -> list[Snippet]:
    """Every code-block line (``\\`` continuations joined) and every inline code span of a doc."""
    text = doc_text(path) if text is None else text
    code, prose = split_code(text)
    found: list[Snippet] = []
    pending: tuple[int, str] | None = None
    for number, line in code:
        start, joined = (pending[0], f"{pending[1]} {line.strip()}") if pending else (number, line.strip())
        pending = (start, joined)
        if joined.endswith("\\"):
            pending = (start, joined[:-1].rstrip())
            continue
        found.append(Snippet(path, start, joined, block=True))
        pending = None
    if pending is not None:
        found.append(Snippet(path, pending[0], pending[1], block=True))
    for match in re.finditer(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", prose, flags=re.S):
        span = match.group(2)
        if "\n\n" in span:
            continue
        number = prose.count("\n", 0, match.start()) + 1
        found.append(Snippet(path, number, " ".join(span.split()), block=False))
    return found


def tokenize(text: str) -> list[str]:
    """Shell words of a line: quotes removed, ``#`` comments dropped, ``&&``/``||``/``;``/``&`` and a ``|``
    standing alone as separate tokens (a ``|`` inside a word or inside ``[...]`` is the docs' "or")."""
    tokens: list[str] = []
    word: list[str] = []
    quoted = False
    i = 0
    depth = 0

    def end_word() -> None:
        nonlocal quoted, depth
        if word or quoted:
            token = "".join(word)
            depth += token.count("[") - token.count("]")
            tokens.append(token)
        word.clear()
        quoted = False

    while i < len(text):
        char = text[i]
        if char in "'\"":
            close = text.find(char, i + 1)
            if close < 0:  # an unbalanced quote in prose: take it literally
                word.append(char)
                i += 1
                continue
            word.append(text[i + 1 : close])
            quoted = True
            i = close + 1
            continue
        if char.isspace():
            end_word()
            i += 1
            continue
        if char == "#" and not word and not quoted:
            break
        if text.startswith(("&&", "||"), i) and not word:
            end_word()
            tokens.append(text[i : i + 2])
            i += 2
            continue
        if char in ";&" and (i + 1 == len(text) or text[i + 1].isspace()):
            end_word()
            tokens.append(char)
            i += 1
            continue
        if char == "|" and not word and (i + 1 == len(text) or text[i + 1].isspace()):
            tokens.append("|" if depth == 0 else "[|]")
            i += 1
            continue
        word.append(char)
        i += 1
    end_word()
    return tokens


def commands(snippet: Snippet) -> list[Command]:
    """The fcnx and script commands of a snippet (anything else: ``pip``, ``apt-get``, ``cd``, is left out)."""
    found: list[Command] = []
    segment: list[str] = []
    for token in [*tokenize(snippet.text), ";"]:
        if token not in SEPARATORS:
            segment.append(token)
            continue
        command = command_of(segment, snippet)
        if command is not None:
            found.append(command)
        segment = []
    return found


def command_of(words: list[str], snippet: Snippet) -> Command | None:
    while words and (words[0] in PREFIXES or ENV_ASSIGNMENT.match(words[0])):
        words = words[1:]
    if not words:
        return None
    program, rest = words[0], words[1:]
    if FCNX_PROGRAM.match(program):
        return Command(snippet, "fcnx", ("fcnx", *rest))
    if PYTHON_PROGRAM.match(program):
        if "-m" in rest[:-1]:  # python -m fcnx, torchrun --nproc_per_node 4 -m fcnx (python -m pytest: not ours)
            module = rest.index("-m") + 1
            return Command(snippet, "fcnx", ("fcnx", *rest[module + 1 :])) if rest[module] == "fcnx" else None
        script = next((word for word in rest if not word.startswith("-")), None)
        if script is not None and SCRIPT_PATH.match(script):
            return Command(snippet, "script", tuple(rest[rest.index(script) :]))
        return None
    if program in {"bash", "sh"} and rest and SCRIPT_PATH.match(rest[0]):
        return Command(snippet, "script", tuple(rest))
    if SCRIPT_PATH.match(program):  # inline `benchmarks/real_photos.py --seed 0`: the script, as the docs name it
        return Command(snippet, "script", (program, *rest))
    return None


def all_commands(paths: list[Path] = DOCS) -> list[Command]:
    return [command for path in paths for snippet in snippets(path) for command in commands(snippet)]


# ---------------------------------------------------------------------------------------------------------
# fcnx commands against click


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)
    skip: str | None = None


def fcnx_root() -> click.Group:
    from fcnx.cli import cli

    assert isinstance(cli, click.Group)
    return cli


def unimportable_plugins() -> dict[str, str]:
    """Plugins the CLI could not import (after it tried, as it does for ``fcnx --help``)."""
    from fcnx.backbones import plugins

    plugins.load_plugins()
    return {
        name: reason
        for name, reason in plugins.broken.items()
        if reason.startswith("cannot load") and ("ImportError" in reason or "ModuleNotFoundError" in reason)
    }


def option_table(command: click.Command) -> dict[str, click.Option]:
    table: dict[str, click.Option] = {}
    for param in command.params:
        if isinstance(param, click.Option):
            for opt in [*param.opts, *param.secondary_opts]:
                table[opt] = param
    return table


def takes_value(option: click.Option) -> bool:
    return not option.is_flag and not option.count and not getattr(option, "_flag_needs_value", False)


def check_fcnx(argv: tuple[str, ...], whole: bool) -> Verdict:
    """Problems of ``fcnx ARGS``: its subcommand path, its options, the values they need and their choices.
    ``whole``: a complete command (a code block line), so an option at its end must have its value."""
    verdict = Verdict()
    command: click.Command = fcnx_root()
    ctx = click.Context(command, info_name="fcnx")
    path = ["fcnx"]
    args = [arg.strip("[]") for arg in argv[1:] if arg not in {"[|]", "[", "]"}]
    alternatives = "[|]" in argv or any("[" in arg for arg in argv)  # `[--crops F | --crop]`: a synopsis
    positionals: list[str] = []
    given: set[str] = set()
    i = 0
    while i < len(args):
        arg = args[i]
        if isinstance(command, click.Group) and not arg.startswith("-"):
            if is_placeholder(arg):
                return verdict  # `fcnx --debug ...`
            sub = command.get_command(ctx, arg)  # built-ins, then the plugins' commands, as the CLI does
            if sub is None:
                broken = unimportable_plugins()
                if broken:
                    verdict.skip = (
                        f"`{' '.join(path)} {arg}` not found, and plugin(s) not importable here: "
                        + "; ".join(f"{name}: {reason}" for name, reason in sorted(broken.items()))
                    )
                else:
                    verdict.problems.append(f"`{' '.join(path)}` has no command {arg!r}")
                return verdict
            command, path = sub, [*path, arg]
            ctx = click.Context(command, info_name=arg, parent=ctx)
            i += 1
            continue
        if arg == "--":
            positionals += args[i + 1 :]
            break
        if arg.startswith("-") and len(arg) > 1 and not re.fullmatch(r"-\d+(\.\d+)?", arg):
            option = option_table(command).get(arg.partition("=")[0])
            if option is not None and option.name:
                given.add(option.name)
            i = check_option(command, ctx, path, args, i, whole, verdict)
            continue
        if not is_placeholder(arg):  # `fcnx suspects ... --top 5`: `...` stands for options as well
            positionals.append(arg)
        i += 1
    if isinstance(command, click.Group):
        if whole and not positionals:
            verdict.problems.append(f"`{' '.join(path)}` needs a command")  # `fcnx bench -o x`
        return verdict
    if not (set(args) & set(ctx.help_option_names)) and not verdict.problems:  # an unknown option's value
        complete = whole and not alternatives and not any(is_placeholder(arg) for arg in args)
        check_arguments(command, path, positionals, given, complete, verdict)
    return verdict


def check_arguments(
    command: click.Command, path: list[str], positionals: list[str], given: set[str], whole: bool, verdict: Verdict
) -> None:
    """Too many positional arguments (always evident), too few or a required option left out (evident in a
    ``whole`` command: a code block line with no ``...`` or ``[...]`` standing for the rest)."""
    arguments = [param for param in command.params if isinstance(param, click.Argument)]
    where = " ".join(path)
    if any(argument.nargs == -1 for argument in arguments):
        most = None
    else:
        most = sum(argument.nargs for argument in arguments)
    if most is not None and len(positionals) > most:
        extra = " ".join(positionals[most:])
        verdict.problems.append(f"`{where}` takes {most} argument(s), given {len(positionals)}: {extra!r} is extra")
    if not whole:
        return
    least = sum(max(argument.nargs, 1) for argument in arguments if argument.required)
    if len(positionals) < least:
        names = ", ".join(argument.human_readable_name for argument in arguments if argument.required)
        verdict.problems.append(f"`{where}` needs {names}, given {len(positionals)} argument(s)")
    for param in command.params:
        if isinstance(param, click.Option) and param.required and param.name not in given:
            verdict.problems.append(f"`{where}` needs {param.opts[-1]}, not given")


def check_option(
    command: click.Command,
    ctx: click.Context,
    path: list[str],
    args: list[str],
    i: int,
    whole: bool,
    verdict: Verdict,
) -> int:
    """Check the option at ``args[i]``; returns the index of the next argument to look at."""
    table = option_table(command)
    help_names = set(ctx.help_option_names)
    arg = args[i]
    name, has_inline, inline_value = arg.partition("=")
    where = " ".join(path)
    if name in help_names:
        return i + 1
    option = table.get(name)
    if option is None and not name.startswith("--") and len(name) > 2:  # -abc: short flags together
        shorts = [f"-{char}" for char in name[1:]]
        if all(short in table and not takes_value(table[short]) for short in shorts):
            return i + 1
    if option is None:
        close = difflib.get_close_matches(name, list(table), n=3, cutoff=0.75)
        hint = f" (did you mean {', '.join(sorted(close))}?)" if close else ""
        verdict.problems.append(f"`{where}` has no option {name}{hint}")
        return i + 1
    if not takes_value(option) or name in option.secondary_opts:
        if has_inline:
            verdict.problems.append(f"`{where} {name}` is a flag, given a value {inline_value!r}")
        return i + 1
    values: list[str] = []
    if has_inline:
        values.append(inline_value)
    j = i + 1
    while len(values) < max(option.nargs, 1) and j < len(args):
        value = args[j]
        if value.startswith("-") and len(value) > 1 and not re.fullmatch(r"-\d+(\.\d+)?", value):
            break
        values.append(value)
        j += 1
    if len(values) < max(option.nargs, 1):
        if j < len(args) or whole:  # followed by another option, or at the end of a whole command
            verdict.problems.append(f"`{where} {name}` needs a value, none given")
        return j
    if isinstance(option.type, (click.types.IntParamType, click.types.FloatParamType)):
        for value in values:
            if not is_placeholder(value):
                try:
                    convert: Any = option.type.convert  # click types it for numbers; the CLI gives it text
                    convert(value, option, None)
                except click.BadParameter as exc:
                    verdict.problems.append(f"`{where} {name} {value}`: {exc.message}")
    if isinstance(option.type, click.Choice):
        choices = [str(choice) for choice in option.type.choices]
        for value in values:
            if is_placeholder(value):
                continue
            for alternative in value.split("|"):
                ok = alternative in choices or (
                    not option.type.case_sensitive and alternative.lower() in [c.lower() for c in choices]
                )
                if not ok:
                    verdict.problems.append(f"`{where} {name}` takes one of {', '.join(choices)}, not {alternative!r}")
    return j


# ---------------------------------------------------------------------------------------------------------
# scripts


@cache
def script_options(path: Path) -> frozenset[str] | None:
    """The option strings a script's ``add_argument`` calls declare (read from its source with ``ast``, never
    imported: the benchmarks import torch); ``None`` when it declares none (it parses no options itself)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    options: set[str] = set()
    parses = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument":
            parses = True
            for arg in node.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.startswith("-"):
                    options.add(arg.value)
    if not parses:
        return None
    return frozenset(options | {"-h", "--help"})


def check_script(argv: tuple[str, ...]) -> list[str]:
    script = ROOT / argv[0]
    if not script.is_file():
        return [f"no such script {argv[0]}"]
    if script.suffix != ".py":
        # a shell script that hands its arguments to a benchmark (`benchmarks/gpu_check.py "$work" "${@:2}"`)
        # takes that benchmark's options; others pass them on to something else (scripts/test.sh: pytest)
        forwarded = re.search(
            r"(benchmarks/[\w-]+\.py)\b[^\n]*\"\$(?:@|\{@:\d+\})\"", script.read_text(encoding="utf-8")
        )
        if forwarded is None:
            return []
        return [
            f"{argv[0]} (options of {forwarded.group(1)}): {p}" for p in check_script((forwarded.group(1), *argv[1:]))
        ]
    options = script_options(script)
    if options is None:
        return []
    problems = []
    for arg in argv[1:]:  # full names only: the docs do not lean on argparse's abbreviations
        name = arg.strip("[]").partition("=")[0]
        is_option = name.startswith("-") and len(name) > 1 and not re.fullmatch(r"-\d+(\.\d+)?", name) and name != "--"
        if is_option and name not in options:
            problems.append(f"{argv[0]} has no option {name} (it has {', '.join(sorted(options))})")
    return problems


def mentioned_scripts(paths: list[Path] = DOCS) -> list[tuple[str, str]]:
    """``(where, script)`` for every ``benchmarks/...``/``scripts/...`` file the docs name as a word of code."""
    found = []
    for path in paths:
        for snippet in snippets(path):
            for token in tokenize(snippet.text):
                if SCRIPT_PATH.match(token):
                    found.append((f"{path.relative_to(ROOT)}:{snippet.line}", token))
    return found


# ---------------------------------------------------------------------------------------------------------
# links and anchors


@dataclass(frozen=True)
class Link:
    path: Path
    line: int
    target: str

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}: ({self.target})"


def inline_code_blanked(prose: str) -> str:
    """Prose with inline code spans replaced by spaces (same offsets): a link in backticks is no link."""
    return re.sub(r"(`+)(.+?)\1", lambda m: " " * len(m.group(0)), prose, flags=re.S)


def links(path: Path, text: str | None = None) -> list[Link]:
    """Every Markdown link and image target of a doc, outside code."""
    text = doc_text(path) if text is None else text
    prose = inline_code_blanked(split_code(text)[1])
    found = []
    for match in re.finditer(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", prose):
        line = prose.count("\n", 0, match.start()) + 1
        found.append(Link(path, line, match.group(1)))
    return found


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: markup dropped, lowercase, punctuation dropped except ``-`` and ``_``,
    each space a ``-``."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links: their text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    kept = []
    for char in text:
        if char in "-_" or char == " ":
            kept.append("-" if char == " " else char)
        elif unicodedata.category(char)[0] in "LNM":
            kept.append(char)
    return "".join(kept)


@cache
def anchors(path: Path, text: str | None = None) -> frozenset[str]:
    """The anchors GitHub gives a Markdown file's headings (a repeated heading gets ``-1``, ``-2`` ...)."""
    prose = split_code(path.read_text(encoding="utf-8") if text is None else text)[1]
    seen: dict[str, int] = {}
    found = set()
    for match in re.finditer(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", prose, flags=re.M):
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    found |= set(re.findall(r"<a\s+(?:name|id)=\"([^\"]+)\"", prose))
    return frozenset(found)


def check_link(link: Link, own_text: str | None = None) -> list[str]:
    """Problems of a link: a relative target that is no file, an anchor no heading of its Markdown file has.
    ``own_text``: the linking doc's text, when it is not read from disk (``#anchor`` links into itself)."""
    target = link.target
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.I) or target.startswith("//"):
        return []  # https:, mailto: ...
    file_part, _, anchor = target.partition("#")
    if not file_part:
        headings = anchors(link.path, own_text)
        if anchor and anchor not in headings:
            return [f"{link.path.relative_to(ROOT)}:{link.line}: no heading of this file has the anchor #{anchor}"]
        return []
    file = (link.path.parent / file_part).resolve()
    if not file.exists():
        return [f"{link.path.relative_to(ROOT)}:{link.line}: link to a missing file: {file_part}"]
    if anchor and file.suffix == ".md" and anchor not in anchors(file):
        return [
            f"{link.path.relative_to(ROOT)}:{link.line}: no heading of {file.relative_to(ROOT)} has the anchor #{anchor}"
        ]
    return []


def all_links(paths: list[Path] = DOCS) -> list[Link]:
    return [link for path in paths for link in links(path)]


def help_examples() -> list[Command]:
    """The ``fcnx ...`` examples of every command's ``--help`` (README: "`fcnx --help` lists every command,
    ... with examples"), named by the source file and line they are written at."""
    import inspect

    found: list[Command] = []

    def walk(command: click.Command, ctx: click.Context) -> None:
        function = inspect.unwrap(command.callback) if command.callback else None
        source = Path(inspect.getsourcefile(function) or "") if function else ROOT
        # the examples are in the command function's docstring: search its lines (numbered as in the file)
        body, start = inspect.getsourcelines(function) if function else ([], 1)
        source_lines = [""] * (start - 1) + body
        lines: list[str] = []
        for line in (command.help or "").splitlines():
            if lines and lines[-1].endswith("\\"):
                lines[-1] = lines[-1][:-1].rstrip() + " " + line.strip()
            else:
                lines.append(line.strip())
        for line in lines:
            first = line.split("  ")[0][:40]
            number = next((i for i, text in enumerate(source_lines, 1) if first and first in text), 0)
            snippet = Snippet(source if source_lines else ROOT / "fcnx" / "cli", number, line, block=True)
            found.extend(c for c in commands(snippet) if c.kind == "fcnx" and len(c.argv) > 1)
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                if sub is not None:
                    walk(sub, click.Context(sub, info_name=name, parent=ctx))

    root = fcnx_root()
    walk(root, click.Context(root, info_name="fcnx"))
    return found


# ---------------------------------------------------------------------------------------------------------
# the tests

COMMANDS = all_commands()
LINKS = all_links()
SCRIPTS = mentioned_scripts()


#: the fcnx command lines: a bare `fcnx` in backticks is the project's name, not a command
FCNX_COMMANDS = [c for c in COMMANDS if c.kind == "fcnx" and len(c.argv) > 1]


@pytest.mark.parametrize("command", FCNX_COMMANDS, ids=str)
def test_fcnx_command_exists(command: Command) -> None:
    verdict = check_fcnx(command.argv, whole=command.snippet.block)
    if verdict.skip:
        pytest.skip(verdict.skip)
    assert not verdict.problems, f"{command}\n" + "\n".join(verdict.problems)


@pytest.mark.parametrize("command", help_examples(), ids=str)
def test_help_example_exists(command: Command) -> None:
    verdict = check_fcnx(command.argv, whole=True)
    if verdict.skip:
        pytest.skip(verdict.skip)
    assert not verdict.problems, f"{command}\n" + "\n".join(verdict.problems)


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.kind == "script"], ids=str)
def test_script_command_exists(command: Command) -> None:
    problems = check_script(command.argv)
    assert not problems, f"{command}\n" + "\n".join(problems)


@pytest.mark.parametrize(("where", "script"), SCRIPTS, ids=[f"{w}: {s}" for w, s in SCRIPTS])
def test_mentioned_script_exists(where: str, script: str) -> None:
    assert (ROOT / script).is_file(), f"{where}: no such file {script}"


@pytest.mark.parametrize("link", LINKS, ids=str)
def test_link_target_exists(link: Link) -> None:
    problems = check_link(link)
    assert not problems, "\n".join(problems)


def test_the_docs_are_covered() -> None:
    """The extraction finds what the docs hold: a regression in it cannot pass by finding nothing."""
    fcnx_commands = FCNX_COMMANDS
    assert len(fcnx_commands) > 50
    assert len([c for c in fcnx_commands if c.snippet.block]) > 30
    assert len([c for c in COMMANDS if c.kind == "script"]) > 5
    assert len(LINKS) > 25
    assert len([link for link in LINKS if "#" in link.target]) > 5
    covered = {c.snippet.path.name for c in COMMANDS} | {link.path.name for link in LINKS}
    assert {"README.md", "CONTRIBUTING.md", "CHANGELOG.md", "crop.md", "training.md"} <= covered
    # the forms a newcomer copies: continuation lines, `&&` chains, the venv's and python -m's fcnx
    argvs = [" ".join(c.argv) for c in fcnx_commands]
    assert any("--weights inception_resnet_v2=irv2.safetensors" in a and a.startswith("fcnx crop") for a in argvs)
    assert (
        "fcnx crop --nets tiny_vgg,tiny_resnet,tiny_inception --gallery plugins/fcnx-tiny/fcnx_tiny/demo -o out/demo/"
        in argvs
    )
    assert any(a.startswith("fcnx train --net xception") for a in argvs)  # torchrun ... -m fcnx train
    assert any(c.argv[0] == "scripts/gpu_check.sh" and "--subset" in c.argv for c in COMMANDS)
    assert len(help_examples()) > 20


BAD_DOC = """# A doc

## Set up (`--fast`)

```bash
fcnx crop --nets a,b --no-such-option photos/ -o out/   # a comment: fcnx crop --ignored
.venv/bin/fcnx bench data --seed 0 \\
    --train-per-klass 3 -o bench/
python -m fcnx crop --box round photos/ -o out/ && fcnx nosuch --help | head
fcnx crop --weights --nets a photos/ -o out/
python benchmarks/real_photos.py --seed 0 --no-such-flag
bash scripts/no_such_script.sh
fcnx export a/ b/ --format coco -o x/
OMP_NUM_THREADS=1 torchrun --nproc_per_node 2 -m fcnx bench data --seed zero -o b/
fcnx convert x.h5 --classes c.txt; fcnx crop --nets a ... ; bash scripts/gpu_check.sh w/ --pictures 2
```

Inline: `fcnx export cropped/ --format coco|jpeg -o x/`, `fcnx crop --box` (a fragment, fine) and
`fcnx train --crops boxes.jsonl [--crop-jitter J] [--crop-size S]`.

See [the setup](#set-up---fast), [nothing](#no-such-heading), [a file](no-such-file.md),
![a picture](img/missing.png), [crop](crop.md#no-such-anchor) and [tight](crop.md#tight-boxes---box-tight).
"""


def test_the_checks_catch_known_bad_docs() -> None:
    """A doc with one of each mistake: every one is reported, naming the line and the bad word."""
    doc = ROOT / "docs" / "bad-example.md"  # never written: the checks are given its text
    found = [c for s in snippets(doc, BAD_DOC) for c in commands(s)]
    problems = []
    for command in found:
        if command.kind == "fcnx":
            verdict = check_fcnx(command.argv, whole=command.snippet.block)
            assert verdict.skip is None
            problems += [f"{command.snippet.line}: {p}" for p in verdict.problems]
        else:
            problems += [f"{command.snippet.line}: {p}" for p in check_script(command.argv)]
    assert [p.split(" (")[0] for p in problems] == [
        "6: `fcnx crop` has no option --no-such-option",
        "7: `fcnx bench data` has no option --train-per-klass",
        "9: `fcnx crop --box` takes one of square, tight, fitted, object, fitted-object, not 'round'",
        "9: `fcnx` has no command 'nosuch'",
        "10: `fcnx crop --weights` needs a value, none given",
        "11: benchmarks/real_photos.py has no option --no-such-flag",
        "12: no such script scripts/no_such_script.sh",
        "13: `fcnx export` takes 1 argument(s), given 2: 'b/' is extra",
        "14: `fcnx bench data --seed zero`: 'zero' is not a valid integer.",
        "15: `fcnx convert` needs --output, not given",
        "15: scripts/gpu_check.sh",
        "18: `fcnx export --format` takes one of coco, voc, yolo, fiftyone, labelstudio, not 'jpeg'",
        "19: `fcnx train` has no option --crop-size",
    ], problems
    assert "did you mean --train-per-class" in problems[1]
    assert problems[10].startswith(
        "15: scripts/gpu_check.sh (options of benchmarks/gpu_check.py): benchmarks/gpu_check.py has no option --pictures"
    )
    assert [" ".join(c.argv) for c in found][:2] == [
        "fcnx crop --nets a,b --no-such-option photos/ -o out/",
        "fcnx bench data --seed 0 --train-per-klass 3 -o bench/",
    ]
    link_problems = [p for link in links(doc, BAD_DOC) for p in check_link(link, BAD_DOC)]
    assert link_problems == [
        "docs/bad-example.md:21: no heading of this file has the anchor #no-such-heading",
        "docs/bad-example.md:21: link to a missing file: no-such-file.md",
        "docs/bad-example.md:22: link to a missing file: img/missing.png",
        "docs/bad-example.md:22: no heading of docs/crop.md has the anchor #no-such-anchor",
    ]


def test_anchors_follow_github() -> None:
    assert slug("Mixed ensembles (`--kernel native`)") == "mixed-ensembles---kernel-native"
    assert slug("Label-free category: rules measured") == "label-free-category-rules-measured"
    assert slug("What fcnx trusts") == "what-fcnx-trusts"
    assert slug("[docs](x.md) and `snake_case` 2.0!") == "docs-and-snake_case-20"
    assert anchors(ROOT / "x.md", "# Top\n\n```\n# not a heading\n```\n\n## Top\n") == {"top", "top-1"}


def test_a_missing_plugin_command_is_skipped_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    """A command no plugin registered is an error, unless a plugin could not be imported: then a skip naming it."""
    from fcnx.backbones import plugins

    assert check_fcnx(("fcnx", "nosuch", "x"), whole=True).problems == ["`fcnx` has no command 'nosuch'"]
    monkeypatch.setitem(plugins.broken, "keras", "cannot load fcnx_keras: ModuleNotFoundError: No module named 'h5py'")
    verdict = check_fcnx(("fcnx", "nosuch", "x"), whole=True)
    assert verdict.problems == []
    assert verdict.skip == (
        "`fcnx nosuch` not found, and plugin(s) not importable here: "
        "keras: cannot load fcnx_keras: ModuleNotFoundError: No module named 'h5py'"
    )
