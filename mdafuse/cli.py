"""The ``mdafuse`` command line. Each sub-command lives in its own module exposing ``register``.

``register(subparsers)`` adds the sub-command's parser and sets ``func`` (called with the parsed
arguments, returning an exit status). Modules are imported only when listed below, so adding a
command is one line here plus one module.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# (command, module): module.register(subparsers) defines the command.
COMMANDS: list[tuple[str, str]] = [
    ("fuse", "mdafuse.commands.fuse"),
    ("train", "mdafuse.commands.train"),
    ("ensemble", "mdafuse.commands.ensemble"),
    ("benchmark", "mdafuse.commands.benchmark"),
    ("demo-cohort", "mdafuse.commands.demo"),
    ("track", "mdafuse.commands.track"),
    ("run", "mdafuse.commands.run"),
    ("qa", "mdafuse.commands.qa"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mdafuse",
        description="Fuse brain MR with PET/SPECT (MdAFuse), enhance uptake, track lesions, run cohort jobs.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for _name, module in COMMANDS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Kept so commands can record how they were invoked (e.g. the training command in a model card).
    args.argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, OSError) as exc:
        print(f"mdafuse {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
