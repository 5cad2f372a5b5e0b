"""Building SAM 2 / SAM 2.1 models from a user's checkpoint (never a download).

The config comes from the checkpoint's file name (`sam2.1_hiera_large.pt` ->
`configs/sam2.1/sam2.1_hiera_l.yaml`) or from `--config`. Models are built through sam2's own
`build_sam2_video_predictor`, so every inference override sam2 applies is applied here too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from treemem.backends.checkpoints import mismatch, read_checkpoint, require_file
from treemem.types import ConfigError, InputError

EXPECTED = "a SAM 2 .pt file"
"""What a missing checkpoint's error asks for."""

_SIZES = {
    "tiny": "t",
    "t": "t",
    "small": "s",
    "s": "s",
    "base_plus": "b+",
    "b+": "b+",
    "base-plus": "b+",
    "bplus": "b+",
    "large": "l",
    "l": "l",
}


def config_for_checkpoint(checkpoint: Path) -> str:
    """The sam2 config name a checkpoint file name implies."""
    name = checkpoint.name.lower()
    match = re.search(r"sam2(\.1)?_hiera_(tiny|small|base_plus|base-plus|b\+|large|t|s|l)", name)
    if match is None:
        raise ConfigError(
            f"cannot tell the model from the checkpoint name {checkpoint.name!r}: pass --config "
            "(e.g. configs/sam2.1/sam2.1_hiera_l.yaml)"
        )
    version = "sam2.1" if match.group(1) else "sam2"
    return f"configs/{version}/{version}_hiera_{_SIZES[match.group(2)]}.yaml"


_CONFIG_NAME = re.compile(
    r"(?:configs/)?(?:(sam2|sam2\.1)/)?(sam2|sam2\.1)_hiera_"
    r"(tiny|small|base_plus|base-plus|bplus|b\+|large|t|s|l)(?:\.yaml)?"
)


def resolve_config(config: str) -> str:
    """sam2's config name for any form sam2 users write: `configs/sam2.1/sam2.1_hiera_t.yaml`,
    `sam2.1/sam2.1_hiera_t.yaml`, `sam2.1_hiera_t.yaml`, `sam2.1_hiera_t` (sizes also as
    tiny, small, base_plus, large). Any other name is passed to sam2 as given (a config of
    the user's own)."""
    match = _CONFIG_NAME.fullmatch(config.strip())
    if match is None:
        return config
    folder, version, size = match.groups()
    if folder is not None and folder != version:
        raise ConfigError(f"sam2 config {config!r} names two versions ({folder}, {version})")
    return f"configs/{version}/{version}_hiera_{_SIZES[size]}.yaml"


def image_size_overrides(image_size: int | None) -> list[str]:
    """Hydra overrides for a reduced input size (a multiple of 32); RoPE sizes follow."""
    if image_size is None:
        return []
    if image_size % 32 != 0 or image_size < 64:
        raise ConfigError(f"image size must be a multiple of 32 and >= 64, got {image_size}")
    side = image_size // 16
    return [
        f"++model.image_size={image_size}",
        f"++model.memory_attention.layer.self_attention.feat_sizes=[{side},{side}]",
        f"++model.memory_attention.layer.cross_attention.feat_sizes=[{side},{side}]",
    ]


def build_model(config: str, *, device: str = "cpu", image_size: int | None = None) -> Any:
    """A SAM2VideoPredictor (a SAM2Base) with freshly initialised weights, in eval mode."""
    model = build_video_model(
        config, None, device, mode="eval", hydra_overrides_extra=image_size_overrides(image_size),
        apply_postprocessing=True, vos_optimized=False,
    )
    model.fill_hole_area = 0
    return model


def load_checkpoint(model: Any, checkpoint: Path, config: str) -> None:
    """Load sam2's {"model": state_dict} format strictly, with errors a user can act on."""
    payload = read_checkpoint(checkpoint, EXPECTED)
    state = payload.get("model") if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise InputError(
            f"checkpoint {checkpoint} has no 'model' state dict: not a SAM 2 checkpoint"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise InputError(
            f"checkpoint {checkpoint.name} does not match config {config} ({mismatch(error)}): "
            "pass the matching --config"
        ) from None


def load_model(
    checkpoint: Path,
    *,
    config: str | None = None,
    device: str | None = None,
    image_size: int | None = None,
) -> Any:
    """Build the model a checkpoint needs and load its weights (CUDA when present)."""
    config = config or config_for_checkpoint(checkpoint)
    require_file(checkpoint, EXPECTED)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = build_model(config, device="cpu", image_size=image_size)
    load_checkpoint(model, checkpoint, config)
    return model.to(device)


def build_random_model(
    config: str = "configs/sam2.1/sam2.1_hiera_t.yaml",
    *,
    seed: int = 0,
    image_size: int | None = 256,
) -> Any:
    """A seeded random-weight model on the CPU: deterministic, meaningless masks, for tests."""
    torch.manual_seed(seed)
    return build_model(config, device="cpu", image_size=image_size)


def build_video_model(
    config_file: str,
    ckpt_path: str | None,
    device: str,
    mode: str,
    hydra_overrides_extra: list[str],
    apply_postprocessing: bool,
    vos_optimized: bool,
) -> Any:
    """sam2's `build_sam2_video_predictor` as given (its postprocessing settings included),
    the config in any form sam2 users write, a missing checkpoint as a one-line error."""
    from sam2.build_sam import build_sam2_video_predictor

    config = resolve_config(config_file)
    if ckpt_path is not None:
        require_file(Path(ckpt_path), EXPECTED)
    try:
        return build_sam2_video_predictor(
            config, ckpt_path, device=device, mode=mode,
            hydra_overrides_extra=list(hydra_overrides_extra),
            apply_postprocessing=apply_postprocessing, vos_optimized=vos_optimized,
        )
    except Exception as error:  # hydra raises several unrelated types for a bad name
        if (
            "Cannot find primary config" in str(error)
            or "MissingConfigException" in type(error).__name__
        ):
            raise ConfigError(f"unknown sam2 config {config!r}") from None
        raise
