"""The model flags `treemem run` and `treemem bench` share (`ModelSpec`'s fields), defined once
so both commands take and explain them alike."""

from __future__ import annotations

import argparse
from pathlib import Path

from treemem.pipeline.inputs import BACKENDS


def add_model_flags(parser: argparse.ArgumentParser, default_backend: str) -> None:
    """--backend, --checkpoint, --config, --device, --image-size, --dtype and --compile."""
    parser.add_argument("--backend", choices=BACKENDS, default=default_backend,
                        help=f"segmentation model (default {default_backend})")
    parser.add_argument("--checkpoint", type=Path,
                        help="SAM 2 checkpoint, or SAM 3's sam3.pt with --backend sam3")
    parser.add_argument("--config",
                        help="model config (default: inferred from the checkpoint); SAM 3: "
                        "'sam3' or a JSON file of its shape")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when present)")
    parser.add_argument("--image-size", type=int, metavar="N",
                        help="SAM 2 input resolution (default: the config's)")
    parser.add_argument("--dtype", default="fp32", metavar="{fp32,bf16,fp16}",
                        help="SAM 2 / SAM 3 precision: fp32 (default) or autocast to bf16 / "
                        "fp16, as sam2's tools run it")
    parser.add_argument("--compile", action="store_true",
                        help="SAM 2: torch.compile the model's components, as sam2's "
                        "VOS-optimised predictor (slow first frames; close to, not equal to, "
                        "the eager masks)")
