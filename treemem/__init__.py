"""treemem: long-video object segmentation by search over segmentation hypotheses."""

from treemem.api import LiveTracker, Predictor, PredictorState, TrackResult, stream, track
from treemem.engine import Engine
from treemem.registry import load_strategy, register_strategy
from treemem.tree import TreeRecord
from treemem.types import FrameDecision, Prompt, TreememError

__all__ = [
    "Engine",
    "FrameDecision",
    "LiveTracker",
    "Predictor",
    "PredictorState",
    "Prompt",
    "TrackResult",
    "TreeRecord",
    "TreememError",
    "load_strategy",
    "register_strategy",
    "stream",
    "track",
]
__version__ = "0.1.0"
