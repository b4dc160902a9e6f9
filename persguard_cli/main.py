"""`persguard` entry point: each command module registers its subcommands on one argparse parser."""

from __future__ import annotations

import argparse
import sys

from persguard_cli import client_commands, core_commands, service_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="persguard", description="PersGuard protection service and tools")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    core_commands.register(sub)
    service_commands.register(sub)
    client_commands.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
