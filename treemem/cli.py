"""The `treemem` command line: one module per subcommand under `treemem.commands`.

Each module exposes `add_parser(subparsers)` (which sets `handler` on its parser) and is
imported only when the CLI starts, so `import treemem` stays light. Every `TreememError`
becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from treemem.types import TreememError

COMMANDS = ("strategies", "run", "demo", "eval", "bench", "tree", "overlay")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="treemem",
        description="Long-video object segmentation by search over segmentation hypotheses.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"treemem.commands.{name}").add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except TreememError as error:
        print(f"treemem: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("treemem: interrupted", file=sys.stderr)
        return 130
    except RuntimeError as error:
        # torch.cuda.OutOfMemoryError is a RuntimeError; the CLI must not import torch.
        if type(error).__name__ != "OutOfMemoryError":
            raise
        print(
            "treemem: error: the GPU ran out of memory: add --offload (stored memories on the "
            "CPU), use fewer pathways (--set P=2) or a smaller --image-size",
            file=sys.stderr,
        )
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
