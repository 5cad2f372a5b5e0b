"""`treemem strategies`: list the registered strategy sets, their parameters and the backends
each runs on."""

from __future__ import annotations

import argparse

from treemem.pipeline.inputs import runs_on
from treemem.registry import REGISTRY


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "strategies", help="list strategy sets, their parameters and the backends they run on"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    for name in REGISTRY.names():
        params_class = REGISTRY.params_class(name)
        summary = (params_class.__doc__ or "").strip().splitlines()[0]
        print(f"{name}: {summary}")
        backends = runs_on(REGISTRY.create(name).build().options())
        print(f"    runs on: {', '.join(backends) or 'no shipped backend'}")
        for parameter in REGISTRY.parameters(name):
            print(f"    {parameter.name} = {parameter.default!r}  ({parameter.kind.__name__})")
    return 0
