"""Command-line flags the way the docker CLI reads them (spf13/pflag), declared with
argparse's `add_argument` spelling.

What docker users type and argparse reads differently: `-itd` and `-e=A=B` shorthands,
`--rm=false`, flags after positionals (`matou rm c1 -f`) except on run/exec/create whose
flags end at the image or container (`matou run busybox ls -l`), a value taken even when
it starts with a dash (`-n -1`), and docker's messages and exit codes (125 for a bad
flag, 1 for a wrong number of arguments). argparse also imports re, enum, gettext and
shutil, a third of `matou version`'s start-up.

May import: nothing of matou (stdlib only).
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # not typing's: importing it costs 3 ms of every start
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

REMAINDER = "..."  # the rest of the line, flags included (run's COMMAND [ARG...])
REMAINDER1 = "+..."  # the same, at least one word (exec's COMMAND [ARG...])
_BOOL = {"1": True, "t": True, "T": True, "true": True, "TRUE": True, "True": True,
         "0": False, "f": False, "F": False, "false": False, "FALSE": False, "False": False}


class Args:
    """The parsed flags and positionals, as attributes."""

    if TYPE_CHECKING:
        def __getattr__(self, name: str) -> Any: ...
        def __setattr__(self, name: str, value: Any) -> None: ...

    def __repr__(self) -> str:
        return f"Args({vars(self)!r})"


class UsageError(Exception):
    """A command line docker would refuse: the message and docker's exit code (125 for
    flags, 1 for the number of arguments)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class _Flag:
    def __init__(self, names: list[str], dest: str, action: str | None,
                 type_: Callable[[str], Any] | None, default: Any,
                 choices: Sequence[str] | None, help_: str) -> None:
        self.names = names
        self.dest = dest
        self.action = action
        self.type = type_
        self.default = default
        self.choices = choices
        self.help = help_

    @property
    def boolean(self) -> bool:
        return self.action in ("store_true", "help")

    def label(self) -> str:
        short = [n for n in self.names if len(n) == 2]
        long = [n for n in self.names if len(n) > 2]
        return ", ".join(short[:1] + long[:1]) if short else "    " + long[0]


class _Positional:
    def __init__(self, dest: str, nargs: str | None, default: Any,
                 metavar: str | None) -> None:
        self.dest = dest
        self.nargs = nargs
        self.default = default
        self.metavar = metavar or dest.upper()
        self.least = 1 if nargs in (None, "+", REMAINDER1) else 0
        self.most = 1 if nargs in (None, "?") else -1  # -1: no limit
        self.rest = nargs in (REMAINDER, REMAINDER1)

    def usage(self) -> str:
        name = self.metavar
        if self.rest:
            return f"{name} [ARG...]" if self.least else f"[{name}] [ARG...]"
        return {None: name, "?": f"[{name}]", "+": f"{name} [{name}...]"}.get(
            self.nargs, f"[{name}...]")


class Parser:
    """One command's flags and positionals; `parse_args` follows pflag's rules."""

    def __init__(self, prog: str, description: str = "", add_help: bool = True) -> None:
        self.prog = prog
        self.description = description
        self.flags: list[_Flag] = []
        self.by_name: dict[str, _Flag] = {}
        self.positionals: list[_Positional] = []
        self.add_argument("--help", *(("-h",) if add_help else ()), action="help")

    def add_argument(self, *names: str, action: str | None = None, nargs: str | None = None,
                     type: Callable[[str], Any] | None = None,
                     default: Any = None, dest: str | None = None,
                     choices: Sequence[str] | None = None, help: str = "",
                     metavar: str | None = None) -> None:
        if not names[0].startswith("-"):
            self.positionals.append(_Positional(names[0], nargs, default, metavar))
            return
        if dest is None:
            long = next((n for n in names if n.startswith("--")), names[0])
            dest = long.lstrip("-").replace("-", "_")
        if action == "store_true" and default is None:
            default = False
        flag = _Flag(list(names), dest, action, type, default, choices, help)
        for old in self.flags:  # a later flag takes a name over (run's -h is --hostname)
            old.names = [n for n in old.names if n not in names]
        self.flags = [f for f in self.flags if f.names] + [flag]
        for n in names:
            self.by_name[n] = flag

    # -- parsing -------------------------------------------------------------------------

    def parse_args(self, argv: Sequence[str]) -> Args:
        """The flags and positionals of ``argv``; `--help` prints the usage and exits 0, a
        bad command line prints docker's message and exits as docker does."""
        try:
            return self._parse(list(argv))
        except UsageError as e:
            # docker's words, "See" and "Run" as docker has them
            verb = "See" if self._fixed() < len(self.positionals) else "Run"
            print(f"{e}\n\n{self.usage()}\n\n{verb} '{self.prog} --help' for more "
                  "information", file=sys.stderr)
            raise SystemExit(e.code) from None

    def usage(self) -> str:
        words = " ".join(p.usage() for p in self.positionals)
        return f"Usage:  {self.prog} [OPTIONS] {words}".rstrip()

    def _parse(self, argv: list[str]) -> Args:
        args = Args()
        for f in self.flags:
            if f.action != "help":
                setattr(args, f.dest, list(f.default) if isinstance(f.default, list)
                        else f.default)
        interspersed = not any(p.rest for p in self.positionals)
        words: list[str] = []
        i = 0
        while i < len(argv):
            a = argv[i]
            i += 1
            if a == "--":
                words += argv[i:]
                break
            if not a.startswith("-") or a == "-":
                words.append(a)
                if not interspersed and len(words) >= self._fixed():
                    words += argv[i:]
                    break
                continue
            if a.startswith("--"):
                name, eq, value = a.partition("=")
                flag = self.by_name.get(name)
                if flag is None:
                    raise UsageError(f"unknown flag: {name}", 125)
                if not eq and not flag.boolean:
                    if i >= len(argv):
                        raise UsageError(f"flag needs an argument: {name}", 125)
                    value, i = argv[i], i + 1
                self._set(args, flag, value if eq or not flag.boolean else None)
                continue
            shorts = a[1:]
            while shorts:
                c, shorts = shorts[0], shorts[1:]
                flag = self.by_name.get("-" + c)
                if flag is None:
                    raise UsageError(f"unknown shorthand flag: '{c}' in {a}", 125)
                if flag.boolean:
                    if shorts.startswith("="):
                        self._set(args, flag, shorts[1:])
                        shorts = ""
                    else:
                        self._set(args, flag, None)
                    continue
                if shorts:
                    value, shorts = shorts.removeprefix("="), ""
                elif i < len(argv):
                    value, i = argv[i], i + 1
                else:
                    raise UsageError(f"flag needs an argument: '{c}' in {a}", 125)
                self._set(args, flag, value)
        self._assign(args, words)
        return args

    def _fixed(self) -> int:
        """How many positionals come before the REMAINDER one (run's IMAGE)."""
        n = 0
        for p in self.positionals:
            if p.rest:
                return n
            n += 1
        return n

    def _set(self, args: Args, flag: _Flag, value: str | None) -> None:
        if flag.action == "help":
            print(self.format_help())
            raise SystemExit(0)
        if flag.boolean:
            if value is not None and value not in _BOOL:
                raise UsageError(f'invalid argument "{value}" for "{flag.label().strip()}" '
                                 f'flag: strconv.ParseBool: parsing "{value}": invalid syntax',
                                 125)
            setattr(args, flag.dest, True if value is None else _BOOL[value])
            return
        assert value is not None
        if flag.choices is not None and value not in flag.choices:
            raise UsageError(f'invalid argument "{value}" for "{flag.label().strip()}" flag: '
                             f'must be one of {", ".join(flag.choices)}', 125)
        converted: Any = value
        if flag.type is not None:
            try:
                converted = flag.type(value)
            except ValueError:
                kind = "ParseInt" if flag.type is int else "ParseFloat"
                raise UsageError(f'invalid argument "{value}" for "{flag.label().strip()}" '
                                 f'flag: strconv.{kind}: parsing "{value}": invalid syntax',
                                 125) from None
        if flag.action == "append":
            getattr(args, flag.dest).append(converted)
        else:
            setattr(args, flag.dest, converted)

    def _assign(self, args: Args, words: list[str]) -> None:
        """Share the positional words out, each spec taking what it can while leaving the
        later ones their minimum (argparse's order), or refuse the count as docker does."""
        least = sum(p.least for p in self.positionals)
        most = -1 if any(p.most < 0 for p in self.positionals) else \
            sum(p.most for p in self.positionals)
        if len(words) < least or 0 <= most < len(words):
            raise UsageError(self._count_message(least, most), 1)
        rest = words
        for n, p in enumerate(self.positionals):
            later = sum(q.least for q in self.positionals[n + 1:])
            room = len(rest) - later
            take = room if p.most < 0 else min(p.most, room)
            mine, rest = rest[:take], rest[take:]
            if p.nargs is None:
                setattr(args, p.dest, mine[0])
            elif p.nargs == "?":
                setattr(args, p.dest, mine[0] if mine else p.default)
            else:
                setattr(args, p.dest, mine)

    def _count_message(self, least: int, most: int) -> str:
        def n(k: int) -> str:
            return f"{k} argument" + ("" if k == 1 else "s")
        me = f"{self.prog.split()[0]}: '{self.prog}'"
        if most == 0:
            return f"{me} accepts no arguments"
        if least == most:
            return f"{me} requires {n(least)}"
        if most < 0:
            return f"{me} requires at least {n(least)}"
        if least == 0:
            return f"{me} requires at most {n(most)}"
        return f"{me} requires at least {least} and at most {n(most)}"

    # -- help ----------------------------------------------------------------------------

    def format_help(self) -> str:
        lines = [self.usage(), ""]
        if self.description:
            lines += [self.description, ""]
        lines.append("Options:")
        for f in self.flags:
            value = "" if f.boolean else (" list" if f.action == "append" else
                                          " int" if f.type is int else " string")
            lines.append(f"  {f.label() + value:<28}{f.help}".rstrip())
        return "\n".join(lines)

    def print_help(self) -> None:
        print(self.format_help())
