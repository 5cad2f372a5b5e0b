"""Fixtures: a realistic tree from the scripted tracker."""

from __future__ import annotations

import pytest
from story import story_tree

from treemem import TreeRecord


@pytest.fixture(scope="session")
def story() -> TreeRecord:
    return story_tree()
