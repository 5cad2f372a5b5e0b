#!/usr/bin/env bash
# Import contracts (pyproject.toml [tool.importlinter]) with import-linter.
# treemem installs strategies/, backends/ and viz/ as treemem.strategies, .backends, .viz
# (package-dir); import-linter reads a package from its folder, so check a copy assembled in
# the installed layout.
set -euo pipefail
cd "$(dirname "$0")/.."
tree="$(mktemp -d)"
trap 'rm -rf "$tree"' EXIT
cp -r treemem "$tree/treemem"
for part in strategies backends viz; do
  cp -r "$part" "$tree/treemem/$part"
done
find "$tree" -name __pycache__ -prune -exec rm -rf {} +
config="$PWD/pyproject.toml"
cd "$tree"  # not the repository root, whose treemem/ folder would shadow the copy
PYTHONPATH="$tree" lint-imports "$config" "$@"
