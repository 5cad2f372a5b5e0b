"""The docs cannot rot: the tutorial's code runs and prints what the page shows, its strategy
registers by decorator and by entry point, the parameter tables match the registry, the tree
record page matches tree.py, and the site builds with `mkdocs build --strict` (when the docs
extra is installed)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

import treemem
from treemem.registry import REGISTRY, StrategyRegistry
from treemem.strategies.selection import UncertaintyDiversity
from treemem.tree import FIELDS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
TUTORIAL = DOCS / "tutorial-custom-strategy.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", flags=re.S | re.M)


def fenced_blocks(path: Path) -> list[tuple[str, str]]:
    """(language, code) of every fenced block of a markdown page, in order."""
    return [(lang, code) for lang, code in FENCE.findall(path.read_text(encoding="utf-8"))]


@pytest.fixture
def clean_registry() -> Iterator[None]:
    """Registrations made by a test (the tutorial's set) do not leak into other tests."""
    REGISTRY.names()  # load the built-ins and entry points first, so they are kept
    saved = dict(REGISTRY._sets)
    yield
    REGISTRY._sets.clear()
    REGISTRY._sets.update(saved)


def run_blocks(blocks: list[tuple[str, str]], module_name: str) -> types.ModuleType:
    """Exec the python blocks in one module, in order; a python block followed by a text
    block must print exactly that text."""
    module = types.ModuleType(module_name)
    sys.modules[module_name] = module  # dataclasses look their module up
    try:
        for index, (lang, code) in enumerate(blocks):
            if lang != "python":
                continue
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                exec(compile(code, f"{module_name} block {index}", "exec", dont_inherit=True),
                     module.__dict__)
            following = blocks[index + 1] if index + 1 < len(blocks) else None
            if following is not None and following[0] == "text":
                assert printed.getvalue() == following[1], f"block {index} printed otherwise"
    finally:
        del sys.modules[module_name]
    return module


def test_tutorial_runs_and_prints_what_it_shows(clean_registry: None) -> None:
    module = run_blocks(fenced_blocks(TUTORIAL), "treemem_tutorial")
    assert "forgetful" in REGISTRY.names()
    strategy = treemem.load_strategy("forgetful", {"decay": "0.5"})
    assert strategy.name == "forgetful" and strategy.scoring == module.DiscountedLogIou(0.5)
    assert strategy.pathways == 3 and isinstance(strategy.pruning, UncertaintyDiversity)


def test_sam3_memory_page_builds_the_sets_from_parts() -> None:
    blocks = fenced_blocks(DOCS / "strategies" / "sam3-memory.md")
    assert any(lang == "python" for lang, _ in blocks)
    run_blocks(blocks, "treemem_sam3_memory_page")


def test_tutorial_strategy_is_under_30_lines() -> None:
    (lang, code), *_ = fenced_blocks(TUTORIAL)
    assert lang == "python"
    lines = [line for line in code.splitlines() if line.strip()]  # imports included
    assert len(lines) < 30, len(lines)


def test_tutorial_strategy_loads_by_entry_point(tmp_path: Path, clean_registry: None) -> None:
    """The tutorial's code as an installed package: a dist-info with the page's entry point."""
    blocks = fenced_blocks(TUTORIAL)
    strategy_code = blocks[0][1]
    toml = next(code for lang, code in blocks if lang == "toml")
    group, = re.findall(r'entry-points\."([^"]+)"', toml)
    name, target = re.findall(r'^(\S+) = "([^"]+)"', toml, flags=re.M)[0]
    package, _, attribute = target.partition(":")
    assert group == "treemem.strategies" and name == "forgetful"

    folder = tmp_path / package.split(".")[0]
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    (tmp_path / (package.replace(".", "/") + ".py")).write_text(strategy_code)
    dist_info = tmp_path / "my_package-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-package\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(f"[{group}]\n{name} = {target}\n")

    sys.path.insert(0, str(tmp_path))
    try:
        registry = StrategyRegistry()  # a fresh one: entry points load on first lookup
        assert "forgetful" in registry.names()
        params = registry.create("forgetful", {"decay": "0.8"})
        assert type(params).__name__ == attribute and params.build().name == "forgetful"
    finally:
        sys.path.remove(str(tmp_path))
        for module in [m for m in sys.modules if m.split(".")[0] == package.split(".")[0]]:
            del sys.modules[module]

    # and the command line finds it in a fresh process with nothing imported by hand
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    listing = subprocess.run(
        [sys.executable, "-m", "treemem.cli", "strategies"],
        capture_output=True, text=True, env=env, check=True, timeout=120,
    ).stdout
    assert "forgetful: SAM2Long whose pathway score forgets" in listing
    assert "decay = 0.9" in listing


def parameter_tables(page: Path) -> list[dict[str, str]]:
    """Each `| parameter | default | meaning |` table: {name: default text}."""
    tables: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("| parameter | default |"):
            current = {}
            tables.append(current)
        elif current is not None and line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            current[cells[0].split("`")[1]] = cells[1].strip("`")
        elif current is not None and not line.startswith("|"):
            current = None
    return tables


@pytest.mark.parametrize(
    ("page", "names"),
    [
        ("greedy.md", ["greedy"]),
        ("sam2long.md", ["sam2long"]),
        ("samurai.md", ["samurai", "samurai-tree"]),
        ("sam3-memory.md", ["sam3-memory", "sam3-memory-tree"]),
        ("dam4sam.md", ["dam4sam", "dam4sam-tree"]),
    ],
)
def test_strategy_pages_list_every_parameter_and_default(page: str, names: list[str]) -> None:
    tables = parameter_tables(DOCS / "strategies" / page)
    assert len(tables) == len(names)
    for name, table in zip(names, tables, strict=True):
        if name not in REGISTRY.names():
            pytest.skip(f"strategy set {name!r} is not registered in this checkout")
        parameters = {p.name: p.default for p in REGISTRY.parameters(name)}
        assert list(table) == list(parameters), name
        for key, default in parameters.items():
            assert type(default)(table[key]) == default, (name, key, table[key])


def test_tree_record_page_matches_tree_py() -> None:
    page = (DOCS / "tree-record.md").read_text(encoding="utf-8")
    documented = re.findall(r"^\| `(\w+)` \| (?:int|float|bool|str) \|", page, flags=re.M)
    assert tuple(documented) == FIELDS
    example = next(code for lang, code in fenced_blocks(DOCS / "tree-record.md") if lang == "json")
    rows = [json.loads(line) for line in example.splitlines()]
    assert rows and all(tuple(row) == FIELDS for row in rows)
    # the example is what sam2long writes on the first frames of a synthetic video
    from treemem.backends.synthetic_video import make_video

    video = make_video(0, num_frames=30)
    written = io.StringIO()
    treemem.track(video, video.gt[0], "sam2long").record.write_new_rows(written)
    # equal up to the last bits of a float: numpy's log differs by an ulp across builds
    found = [json.loads(line) for line in written.getvalue().splitlines()[: len(rows)]]
    assert [list(row) for row in found] == [list(row) for row in rows]
    for got, want in zip(found, rows, strict=True):
        for key, value in want.items():
            if isinstance(value, float):
                assert got[key] == pytest.approx(value, rel=1e-12), key
            else:
                assert got[key] == value, key


def test_getting_started_synthetic_example_runs() -> None:
    code = next(
        code for lang, code in fenced_blocks(DOCS / "getting-started.md")
        if lang == "python" and "make_video" in code
    )
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        exec(compile(code, "getting-started.md", "exec", dont_inherit=True),
             {"__name__": "getting_started"})
    assert "(60, 96, 128)" in printed.getvalue()


def test_every_page_is_in_the_nav() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = {
        p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md") if "_" not in p.parts[-2][:1]
    }
    missing = sorted(p for p in pages if f": {p}" not in config)
    assert not missing, f"pages not in mkdocs.yml's nav: {missing}"


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None,
    reason="the docs extra is not installed (pip install -e '.[docs]')",
)
def test_site_builds_strict_and_offline(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, textwrap.shorten(result.stderr, 3000)
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    # griffe found the folders pyproject maps into the treemem namespace
    for name in ("treemem.strategies.sets.Sam2Long", "treemem.backends.synthetic.SyntheticBackend",
                 "treemem.api.track", "treemem.strategy.Scoring"):
        assert f'id="{name}"' in api, name
    scripts = re.findall(r'<script[^>]+src="(https?:[^"]+)"', api)
    styles = re.findall(r'<link[^>]+href="(https?:[^"]+\.css)"', api)
    assert not scripts and not styles, "the site must not load anything from the network"
