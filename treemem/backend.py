"""The model side of the search, as the engine sees it.

One call per frame for each job, batched over every pathway of every object: the engine
passes node ids and memory plans, never tensors it must inspect, and backends keep masks and
features on their own device.

The contract, and why each rule exists (tests/backends/conformance.py checks every rule; a
backend is accepted by passing it):

- **Deterministic.** The same calls give the same proposals and mask logits, bit for bit.
  Exactness tests and resumed runs compare runs, and the search's ties must break the same
  way twice.
- **Rows are independent.** A row's proposals depend only on the frame and on the memory its
  plan reads, never on its position in the batch or on the other rows, so batching every
  pathway of every object into one call changes no result; identical plans give identical
  rows (SAM2Long's clones), and identical children may share one stored memory.
- **Nothing hidden between calls.** `propose` returns everything `commit` needs inside its
  `Proposals` (`Proposals.batch`), and `commit` takes those proposals back: a backend keeps no
  "last proposal" for `commit` to pick up, so a caller may propose more than once per frame
  (a spy, an evaluation) and still commit what it meant. A commit from proposals of another
  frame (or of another backend) is a `MemoryContractError`, not a silently wrong memory.
- **Options are one record.** `ProposalOptions` is passed on every call; each default is what
  a backend unaware of the option does anyway, and a backend refuses an option it does not
  implement with a `ConfigError` naming it (`ProposalOptions.check`), so new options never
  break old backends and are never silently ignored.
- **Batch invariance is declared, not assumed.** Rows are independent, but a model's batched
  matrix products may round a row differently in batches of other sizes (SAM 2 on the CPU:
  ~1e-6). A backend whose rows are bit-identical in any batch may say so with a class
  attribute `batch_invariant = True` (optional; absent means False), and the conformance
  suite then holds it to exact equality; a sweep (`treemem.pipeline.sweep`) batches several
  configurations' rows together only for such a backend, so each keeps its exact results.
- **Memory lives until released.** A node's memory and mask are held from `prompt`/`commit`
  until `release` names it, and not a call longer: that is what bounds memory in video
  length. Reading a node that is not held (released, or never stored) raises
  `MemoryContractError`, so a memory strategy that reads what it promised to drop fails at
  once instead of reading stale memory.
- **Memories may be exported (optional, `MemoryExport`).** A backend that implements it hands
  out every memory it holds as bytes and takes them back into a fresh backend of the same
  model and video, after which every call answers bit for bit as the exporting backend would.
  That is what lets a resumed run continue from a snapshot instead of searching again from
  the first frame; a backend without it still runs, and a resume then replays the search.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

from treemem.types import (
    Commit,
    Float32Array,
    PathwayQuery,
    Prompt,
    PromptResult,
    ProposalOptions,
    Proposals,
)


class Backend(Protocol):
    """A segmentation model driven by the beam search."""

    @property
    def num_frames(self) -> int:
        """Length of the video the backend reads frames from."""
        ...

    @property
    def frame_size(self) -> tuple[int, int]:
        """(height, width) of the video, the resolution of `mask_logits`."""
        ...

    def encode(self, frame: int) -> object:
        """Run the image encoder once for `frame`; the result is opaque to the engine."""
        ...

    def prompt(
        self, features: object, prompt: Prompt, node: int, options: ProposalOptions
    ) -> PromptResult:
        """Turn a user prompt into a conditioning memory stored under `node`.

        `options` is the record `propose` gets: a prompt the model decodes (clicks, a box)
        follows its `presence_threshold` as tracking frames do (SAMURAI's -1 holds on its
        prompt frame too). Refuses an option it does not implement (`options.check`)."""
        ...

    def propose(
        self, features: object, queries: Sequence[PathwayQuery], options: ProposalOptions
    ) -> Proposals:
        """K candidates for each query row, all rows in one batched pass.

        Returns iou (N, K) float32, occlusion (N,) float32, boxes (N, K, 4) float32 when
        `options.boxes` (else None), and in `batch` whatever `commit` will need. Raises
        `MemoryContractError` if a plan reads a node that is not held, and `ConfigError` for
        an option the backend does not implement (`options.check`)."""
        ...

    def commit(self, features: object, proposals: Proposals, commits: Sequence[Commit]) -> None:
        """Encode the memory (and keep the mask) of each kept candidate under its node.

        `proposals` is what `propose` returned for `features`' frame; each commit names a
        (row, candidate) of it. Raises `MemoryContractError` for proposals of another frame
        or another backend."""
        ...

    def mask_logits(self, node: int) -> Float32Array:
        """(H, W) float32 mask logits of a committed or prompted node at video resolution.

        The node's mask is `logits > 0`. Logits rather than a boolean mask because several
        objects are composed into one id map by the highest logit per pixel (sam2's
        non-overlap rule), which a boolean mask cannot decide. Raises `MemoryContractError`
        for a node that is not held."""
        ...

    def release(self, nodes: Iterable[int]) -> None:
        """Forget these nodes' memories and masks: no pathway can read them any more.

        Releasing a node that is not held is a `MemoryContractError`: the engine releases
        each node once, so a second release means its bookkeeping is wrong."""
        ...


@runtime_checkable
class MemoryExport(Protocol):
    """The optional half of the contract a snapshot needs (see the module docstring).

    `export_memories` returns every held node's memory and mask, in the backend's own format
    (a backend chooses one that round-trips its values exactly: numpy for the synthetic
    backend, `torch.save` for SAM 2); it changes nothing held. `import_memories` makes those
    nodes held again in a backend built with the same arguments, as if it had prompted and
    committed them itself; importing a node it already holds, or bytes another kind of
    backend wrote, is a `MemoryContractError`.
    """

    def export_memories(self) -> bytes: ...

    def import_memories(self, data: bytes) -> None: ...
