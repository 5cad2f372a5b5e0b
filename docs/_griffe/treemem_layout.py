"""Griffe extension for the docs build: treemem's package layout under an editable install.

pyproject maps the top-level folders strategies/, backends/ and viz/ into the treemem
namespace (setuptools `package-dir`). A regular install copies them into site-packages/treemem/
and griffe finds them there; an editable install maps them with an import hook that griffe
cannot follow, so this extension loads each mapped folder as a submodule of `treemem` when
griffe has not found it. mkdocs.yml lists it under the python handler's `extensions`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import griffe

ROOT = Path(__file__).resolve().parents[2]
FALLBACK = {
    "treemem.strategies": "strategies",
    "treemem.backends": "backends",
    "treemem.viz": "viz",
}


def package_dirs() -> dict[str, str]:
    """pyproject's `[tool.setuptools] package-dir` entries for treemem's subpackages."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        return FALLBACK
    with open(ROOT / "pyproject.toml", "rb") as stream:
        mapping = tomllib.load(stream)["tool"]["setuptools"]["package-dir"]
    return {name: folder for name, folder in mapping.items() if name.startswith("treemem.")}


class TreememLayout(griffe.Extension):
    """Attach strategies/, backends/ and viz/ to the `treemem` package griffe loaded."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.name != "treemem":
            return
        for dotted, folder in package_dirs().items():
            name = dotted.split(".", 1)[1]
            init = ROOT / folder / "__init__.py"
            if name in pkg.members or "." in name or not init.is_file():
                continue
            # griffe has no public call that loads a folder as a submodule of a package
            module = loader._load_module(name, init, parent=pkg)
            pkg.set_member(name, module)
