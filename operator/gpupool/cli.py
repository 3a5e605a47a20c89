"""The `gpupool` command line: run | plan | reconcile | crd | sim."""

from __future__ import annotations

import argparse
import sys


def _add_sim(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sim",
        help="serve the built-in simulated cloud (Keystone v3 + Nova v2.1) on 127.0.0.1",
        description="Serve novasim, a simulated OpenStack cloud speaking the real Keystone and Nova APIs.",
    )
    # The simulator is a separate package: imported only when asked for, so the operator never loads it.
    from novasim import cli as novasim_cli

    novasim_cli.add_arguments(parser)
    parser.set_defaults(handler=novasim_cli.run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpupool", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_sim(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
