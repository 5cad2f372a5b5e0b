"""The run layer: the one route from a user's inputs to per-frame results and outputs.

`treemem.track`, `treemem.Predictor`, every `treemem` command and the bench scripts are thin
users of it, so they cannot disagree:

- `inputs`: a video (path, frame array, synthetic video) or a ready `Backend`, plus a model
  spec, become an `OpenedVideo` (one backend opener); prompts are checked once.
- `frames`: the engine's decisions become `FrameResult`s in frame order, and several objects
  become one id map by one composition rule (`compose_ids`: sam2's non-overlap rule).
- `sinks`: results go to memory (`IdArraySink`) or to files (`PaletteFolderSink`,
  `RunFolder`), every file error as one `OutputError` naming the path.
- `runner`: a whole run to a run folder (masks/, tree.jsonl, run.json, resume).
- `snapshots`: the search state saved every N frames of a run, so `--resume` goes on from
  the last snapshot instead of the first frame.
"""
