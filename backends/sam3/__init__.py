"""SAM 3 tracker backend (needs `pip install 'treemem[sam3]'`: torch, torchvision and sam3).

SAM 3's code and weights are under Meta's SAM License, not treemem's Apache-2.0: importing
this package says so once on stderr, and docs/backends/sam3.md says what that means for you.
"""

from __future__ import annotations

import sys

from treemem.backends.sam3.backend import Sam3Backend, autocast_dtype
from treemem.backends.sam3.loading import (
    RELEASED,
    Sam3Config,
    Sam3Tracker,
    build_model,
    build_random_model,
    load_model,
    resolve_config,
    small_config,
)

LICENCE = "SAM License"
print(
    f"treemem: the SAM 3 backend runs Meta's sam3 code and weights, which are under the "
    f"{LICENCE} (not Apache-2.0); see the sam3 package's LICENSE",
    file=sys.stderr,
)

__all__ = [
    "LICENCE",
    "RELEASED",
    "Sam3Backend",
    "Sam3Config",
    "Sam3Tracker",
    "autocast_dtype",
    "build_model",
    "build_random_model",
    "load_model",
    "resolve_config",
    "small_config",
]
