"""A scripted tracker for drawing realistic pathway trees without a model, hand-made tree
rows, and small `treemem run`-like folders with a video to draw masks over.

Used by the viz tests and by bench/tree_render.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from treemem import Engine, Prompt, TreeRecord, load_strategy
from treemem.types import Commit, PathwayQuery, PromptResult, ProposalOptions, Proposals


@dataclass(frozen=True)
class _Row:
    """What `commit` needs of one proposal row: the content key of the memory the row read,
    whether that pathway is lost, and which candidates are wrong."""

    key: int
    lost: bool
    wrong: tuple[bool, ...]


class StoryBackend:
    """Proposals scripted by frame and by pathway content, no model.

    The object is clearly visible (occlusion logit about 8; candidate 0 good, 1 and 2 poor)
    except in the `occlusions` frame ranges, where every pathway is unsure (|logit| < 2),
    candidates spread; on an occlusion's first frame the candidate with the highest predicted
    IoU is wrong (greedy is misled).
    Taking a wrong candidate (or a poor one outside occlusions) makes a pathway "lost": it
    keeps proposing lower IoUs until pruning replaces it. Proposals depend only on the frame and on
    the contents a pathway's memory holds, so identical pathways propose identically; a kept
    candidate's content is keyed by the row's memory content and the candidate.
    """

    def __init__(self, num_frames: int, occlusions: Sequence[tuple[int, int]] = (), seed: int = 0,
                 candidates: int = 3) -> None:
        self._num_frames = num_frames
        self.occlusions = tuple(occlusions)
        self.seed = seed
        self.k = candidates
        self.content: dict[int, tuple[int, bool]] = {}

    @property
    def num_frames(self) -> int:
        return self._num_frames

    @property
    def frame_size(self) -> tuple[int, int]:
        return (8, 8)

    def occluded(self, frame: int) -> bool:
        return any(a <= frame <= b for a, b in self.occlusions)

    def encode(self, frame: int) -> object:
        return frame

    def prompt(
        self, features: object, prompt: Prompt, node: int, options: ProposalOptions
    ) -> PromptResult:
        self.content[node] = (prompt.obj * 100_003 + prompt.frame, False)
        return PromptResult(1.0, 10.0)

    def propose(
        self, features: object, queries: Sequence[PathwayQuery], options: ProposalOptions
    ) -> Proposals:
        frame = int(features)  # type: ignore[call-overload]
        ious, logits = [], []
        rows: list[_Row] = []
        for query in queries:
            nodes = sorted(query.plan.nodes())
            key = hash(tuple(self.content[n][0] for n in nodes)) & 0xFFFFFFF
            recent = [ref.node for ref in query.plan.spatial if ref.position > 0]
            lost = self.content[max(recent)][1] if recent else False
            rng = np.random.default_rng([self.seed, frame, key])
            if self.occluded(frame):
                iou = rng.uniform(0.2, 0.8, self.k)
                logit = rng.normal(0.0, 0.7)
                onset = any(a == frame for a, _ in self.occlusions)
                wrong = ((iou == iou.max()) & onset).tolist()
            else:
                iou = np.array([0.92, 0.3, 0.1] + [0.05] * (self.k - 3))[: self.k]
                iou = iou + rng.normal(0.0, 0.01, self.k) - (0.15 if lost else 0.0)
                logit = 8.0 + rng.normal(0.0, 0.5) - (4.0 if lost else 0.0)
                wrong = [k != 0 for k in range(self.k)]
            rows.append(_Row(key, lost, tuple(wrong)))
            ious.append(np.clip(iou, 0.01, 1.0))
            logits.append(logit)
        return Proposals(
            np.asarray(ious, np.float32), np.asarray(logits, np.float32), batch=tuple(rows)
        )

    def commit(self, features: object, proposals: Proposals, commits: Sequence[Commit]) -> None:
        rows: tuple[_Row, ...] = proposals.batch  # type: ignore[assignment]
        for c in commits:
            row = rows[c.row]
            lost = row.lost or row.wrong[c.candidate]
            self.content[c.node] = (hash((row.key, c.candidate)) & 0xFFFFFFF, lost)

    def mask_logits(self, node: int) -> np.ndarray:
        return np.full((8, 8), -1.0, np.float32)

    def release(self, nodes: Iterable[int]) -> None:
        for node in nodes:
            self.content.pop(node, None)


def story_tree(num_frames: int = 60, occlusions: Sequence[tuple[int, int]] = ((18, 20), (40, 41)),
               prompts: Sequence[Prompt] | None = None, strategy: str = "sam2long") -> TreeRecord:
    """Run `strategy` over a StoryBackend and return its tree record."""
    backend = StoryBackend(num_frames, occlusions)
    engine = Engine(load_strategy(strategy), backend)
    given = prompts or [Prompt(1, 0, mask=np.ones((8, 8), bool))]
    for _ in engine.run(given, range(backend.num_frames)):
        pass
    return engine.record


Row = tuple[int, int, int, int, int, float, float, float, bool, str]


def frame_rows(frame: int, parents: list[int], pruned: int = 1, occlusion: float = 8.0,
               obj: int = 1, rule: str = "pruning") -> list[Row]:
    """Hand-made tree rows: kept rows in slot order with these parent slots, then `pruned`
    pruned rows (parent 0), all of one frame chosen by `rule`."""
    kept = [(obj, frame, slot, parent, 0, -0.1, 0.9, occlusion, True, rule)
            for slot, parent in enumerate(parents)]
    return kept + [(obj, frame, -1, 0, 1 + i, -2.0, 0.3, occlusion, False, rule)
                   for i in range(pruned)]


PROMPT_ROW: Row = (1, 0, 0, -1, -1, 0.0, 1.0, 10.0, True, "prompt")


def hand_tree() -> TreeRecord:
    """P=2: prompt, clone split at frame 1, straight 2-6, a swap at 7, straight 8-10."""
    rows = [PROMPT_ROW, *frame_rows(1, [0, 0], rule="start")]
    for frame in range(2, 7):
        rows += frame_rows(frame, [0, 1])
    rows += frame_rows(7, [1, 0])
    for frame in range(8, 11):
        rows += frame_rows(frame, [0, 1])
    return TreeRecord.from_rows(rows)


def write_run(directory: Path, num_frames: int, size: tuple[int, int], shift: int,
              strategy: str) -> Path:
    """A `treemem run`-like directory: a square (object 1) and a bar (object 2) moving."""
    from treemem.io.masks import write_palette_png

    (directory / "masks").mkdir(parents=True)
    height, width = size
    for frame in range(num_frames):
        ids = np.zeros(size, np.uint8)
        x = (2 * frame + shift) % (width - 12)
        ids[10:22, x : x + 12] = 1
        ids[height - 8 : height - 4, 4 : width - 4] = 2
        write_palette_png(directory / "masks" / f"{frame:05d}.png", ids)
    (directory / "run.json").write_text(f'{{"strategy": "{strategy}"}}\n')
    return directory


def write_frames(directory: Path, num_frames: int, size: tuple[int, int]) -> Path:
    """A folder of PNG frames: a grey gradient."""
    from PIL import Image

    directory.mkdir(parents=True)
    height, width = size
    for frame in range(num_frames):
        image = np.zeros((height, width, 3), np.uint8)
        image[..., 0] = np.linspace(40, 200, width, dtype=np.uint8)[None, :]
        image[..., 1] = (frame * 7) % 255
        image[..., 2] = np.linspace(200, 40, height, dtype=np.uint8)[:, None]
        Image.fromarray(image).save(directory / f"{frame:05d}.png")
    return directory
