"""The ``noiselevels`` command line.

Each subcommand lives in ``noiselevels.commands.<name>`` and exposes ``register(subparsers)``, which adds
its parser and sets ``func`` to a callable taking the parsed arguments and returning an exit code.
Command modules import only the standard library and light helpers at module level so that
``noiselevels --help`` stays fast; the library is imported inside ``func`` (see ``noiselevels.commands``).

User errors (``ValueError``, ``OSError``, ``KeyError`` raised by the library) print one line,
``noiselevels: error: <message>``, and exit with status 2.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys

from noiselevels import __version__

# Order = order in --help.
COMMAND_MODULES = [
    "inspect",
    "compare",
    "convert",
    "spacing",
    "train",
    "sample",
    "evaluate",
    "spectral",
    "finetune",
    "sweep",
    "reproduce",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="noiselevels",
        description="Noise levels of diffusion and flow-matching models, in logSNR λ = log(α²/σ²).",
    )
    parser.add_argument("--version", action="version", version=f"noiselevels {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"noiselevels.commands.{name}").register(sub)
    _plain_help(parser)
    return parser


def _one_line_error(parser: argparse.ArgumentParser, message: str):
    """argparse's usage errors as the one line every other error is (``--help`` shows the usage)."""
    parser.exit(2, f"{parser.prog}: error: {message.splitlines()[0] if message else 'bad arguments'}\n")


def _plain_help(parser: argparse.ArgumentParser) -> None:
    """Descriptions come from module docstrings: drop their reST ``literal`` markers for the terminal;
    usage errors are one line."""
    parser.error = functools.partial(_one_line_error, parser)
    for text in ("description", "epilog"):
        if getattr(parser, text):
            setattr(parser, text, getattr(parser, text).replace("``", ""))
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _plain_help(child)


def _option_names(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, str]:
    """dest → how the user wrote it (``--out``, ``DIR``), for the (sub)commands ``args`` chose."""
    names: dict[str, str] = {}
    p: argparse.ArgumentParser | None = parser
    while p is not None:
        chosen = None
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                chosen = a.choices.get(getattr(args, a.dest, None) or "")
            else:
                names.setdefault(a.dest, a.option_strings[-1] if a.option_strings else (a.metavar or a.dest))
        p = chosen
    return names


def _reject_empty(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """An empty string is never a value: not the current folder, not "use the default"."""
    for dest, value in vars(args).items():
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, str) and not v.strip() for v in values):
            name = _option_names(parser, args).get(dest, dest)
            raise ValueError(f"{name} is empty; give a value (or leave the option out)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        _reject_empty(parser, args)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("noiselevels: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, KeyError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, KeyError):
            msg = f"missing key {msg}"
        print(f"noiselevels: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
