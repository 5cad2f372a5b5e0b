"""`treemem strategies`: list the registered strategy sets and their parameters."""

from __future__ import annotations

import argparse

from treemem.registry import REGISTRY


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("strategies", help="list strategy sets and their parameters")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    for name in REGISTRY.names():
        params_class = REGISTRY.params_class(name)
        summary = (params_class.__doc__ or "").strip().splitlines()[0]
        print(f"{name}: {summary}")
        for parameter in REGISTRY.parameters(name):
            print(f"    {parameter.name} = {parameter.default!r}  ({parameter.kind.__name__})")
    return 0
