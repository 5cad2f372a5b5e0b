"""Run `treemem run` and SIGKILL the process at a chosen point, for the snapshot tests.

    python tests/kill_driver.py FRAME SNAPSHOT THREADS -- treemem run arguments...

FRAME: the process kills itself with SIGKILL when the engine asks the backend to encode
that frame (-1: never), in a run of a video or of a live source (`--live`). SNAPSHOT: it
kills itself inside the SNAPSHOT-th snapshot write (0: never), after the real writer has
written the temporary file and before it is renamed; the temporary file is cut to half its
length first, as a write torn by the kill would be.
THREADS: torch's thread count (0: leave it), so SAM 2 runs match the in-process reference.
Both points are reached deterministically, so the tests know exactly what is on disk.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any


def main(argv: list[str]) -> int:
    kill_frame, kill_snapshot, threads = (int(value) for value in argv[:3])
    assert argv[3] == "--", argv
    if threads:
        import torch

        torch.set_num_threads(threads)
    import treemem.pipeline.inputs as inputs
    import treemem.pipeline.runner as runner
    import treemem.pipeline.snapshots as snapshots
    from treemem.cli import main as treemem_main

    def arm(backend: Any) -> Any:
        encode = backend.encode

        def encode_or_die(frame: int) -> object:
            if frame == kill_frame:
                os.kill(os.getpid(), signal.SIGKILL)
            return encode(frame)

        backend.encode = encode_or_die
        return backend

    open_backend, live_backend = inputs.open_backend, runner.live_backend

    def open_and_arm(*args: Any, **kwargs: Any) -> Any:
        opened = open_backend(*args, **kwargs)
        arm(opened.backend)
        return opened

    def live_and_arm(*args: Any, **kwargs: Any) -> Any:
        make = live_backend(*args, **kwargs)
        return lambda *a, **k: arm(make(*a, **k))

    write_atomically = snapshots.write_atomically
    writes = [0]

    def write_or_die(path: Any, data: bytes) -> None:
        writes[0] += 1
        if writes[0] == kill_snapshot:
            def torn_and_killed(descriptor: int) -> None:
                os.ftruncate(descriptor, os.fstat(descriptor).st_size // 2)
                os.kill(os.getpid(), signal.SIGKILL)

            os.fsync = torn_and_killed
        write_atomically(path, data)

    inputs.open_backend = open_and_arm  # type: ignore[assignment]
    runner.live_backend = live_and_arm  # type: ignore[assignment]
    snapshots.write_atomically = write_or_die  # type: ignore[assignment]
    return treemem_main(argv[4:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
