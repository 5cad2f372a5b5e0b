"""Building SAM 3's video tracker from the `sam3` package's classes, and loading `sam3.pt`.

SAM 3's own builder (`sam3.model_builder.build_tracker`) cannot serve here: it hard-wires the
1008 px input (RoPE grid 72, memory-mask interpolation 1152) and precomputes position
encodings on "cuda", so it fails on a CPU and cannot make the small models tests need. This
module makes the same modules with the same arguments from a `Sam3Config` (the released
model's shape by default), on the CPU, and loads weights into them:

- the vision side is the detector's ViT trunk with its SAM 2-style neck
  (`Sam3DualViTDetNeck`, both necks built so `sam3.pt` loads strictly; the tracker reads only
  the SAM 2 neck);
- the tracker is a `Sam3TrackerBase` without a backbone (the released video model feeds it the
  detector's features), with the released tracker's settings.

`sam3.pt` (SAM 3's video model state dict, optionally under "model") holds the trunk and necks
under `detector.backbone.vision_backbone.` and the tracker under `tracker.`; everything else
(the detector's transformer, text encoder, heads) is not read.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from treemem.backends.checkpoints import mismatch, read_checkpoint
from treemem.types import ConfigError, InputError

VISION_PREFIX = "detector.backbone.vision_backbone."
TRACKER_PREFIX = "tracker."
PATCH = 14
"""The ViT's patch size, which is also the tracker's backbone stride."""


@dataclass(frozen=True)
class Sam3Config:
    """The shape of a SAM 3 tracker; the defaults are the released `sam3.pt`.

    image_size: the square input in pixels, a multiple of 14 (the feature grid is
    image_size / 14: 72 at 1008); vit_*: the ViT trunk (width, blocks, heads, MLP ratio,
    window size, the blocks with global attention, the last of which gives the features);
    pretrain_image_size: the size its absolute position embedding was trained at (tiled).
    The tracker's own width (256, memory 64) is SAM 3's and not configurable.
    """

    image_size: int = 1008
    vit_width: int = 1024
    vit_depth: int = 32
    vit_heads: int = 16
    vit_mlp_ratio: float = 4.625
    vit_window: int = 24
    vit_global_blocks: tuple[int, ...] = (7, 15, 23, 31)
    pretrain_image_size: int = 336

    def __post_init__(self) -> None:
        if self.image_size % PATCH != 0 or self.image_size < 8 * PATCH:
            raise ConfigError(
                f"SAM 3 image size must be a multiple of {PATCH} and >= {8 * PATCH}, "
                f"got {self.image_size}"
            )
        if self.vit_width % self.vit_heads != 0 or self.vit_width % 8 != 0:
            raise ConfigError(
                f"vit_width {self.vit_width} must be a multiple of 8 and of vit_heads "
                f"({self.vit_heads})"
            )
        blocks = self.vit_global_blocks
        if not blocks or any(not 0 <= b < self.vit_depth for b in blocks):
            raise ConfigError(
                f"vit_global_blocks {list(blocks)} must name blocks 0..{self.vit_depth - 1}"
            )
        if self.pretrain_image_size % PATCH != 0:
            raise ConfigError(
                f"pretrain_image_size must be a multiple of {PATCH}, got "
                f"{self.pretrain_image_size}"
            )

    @property
    def grid(self) -> int:
        """Side of the stride-14 feature map the memory attention works on."""
        return self.image_size // PATCH

    @classmethod
    def from_json(cls, path: Path) -> Sam3Config:
        """A JSON object of `Sam3Config` fields (missing ones keep the released value)."""
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ConfigError(f"cannot read SAM 3 config {path}: {error}") from None
        known = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or not set(data) <= known:
            extra = sorted(set(data) - known) if isinstance(data, dict) else data
            raise ConfigError(
                f"SAM 3 config {path}: unknown fields {extra}; known: {sorted(known)}"
            )
        if "vit_global_blocks" in data:
            data["vit_global_blocks"] = tuple(data["vit_global_blocks"])
        try:
            return cls(**data)
        except TypeError as error:
            raise ConfigError(f"SAM 3 config {path}: {error}") from None

    def to_json(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")


RELEASED = Sam3Config()
NAMED = {"sam3": RELEASED}
"""Configs by name: `--config sam3` is the released model (also what a checkpoint with the
released shapes implies)."""


def resolve_config(config: str | Sam3Config | None) -> Sam3Config | None:
    """A `Sam3Config` from a name ("sam3"), a JSON file path, or itself; None stays None
    (infer it from the checkpoint)."""
    if config is None or isinstance(config, Sam3Config):
        return config
    if config.strip().lower() in NAMED:
        return NAMED[config.strip().lower()]
    path = Path(config)
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise ConfigError(f"SAM 3 config file {path} does not exist")
        return Sam3Config.from_json(path)
    raise ConfigError(
        f"unknown SAM 3 config {config!r}: use 'sam3' (the released model) or a JSON file of "
        f"Sam3Config fields"
    )


# --- the modules ------------------------------------------------------------------------------


def build_vision(config: Sam3Config) -> nn.Module:
    """The ViT trunk and its necks (`Sam3DualViTDetNeck`), as SAM 3's builder makes them."""
    from sam3.model.necks import Sam3DualViTDetNeck
    from sam3.model.position_encoding import PositionEmbeddingSine
    from sam3.model.vitdet import ViT

    trunk = ViT(
        img_size=config.image_size,
        pretrain_img_size=config.pretrain_image_size,
        patch_size=PATCH,
        embed_dim=config.vit_width,
        depth=config.vit_depth,
        num_heads=config.vit_heads,
        mlp_ratio=config.vit_mlp_ratio,
        norm_layer="LayerNorm",
        drop_path_rate=0.1,
        qkv_bias=True,
        use_abs_pos=True,
        tile_abs_pos=True,
        global_att_blocks=config.vit_global_blocks,
        rel_pos_blocks=(),
        use_rope=True,
        use_interp_rope=True,
        window_size=config.vit_window,
        pretrain_use_cls_token=True,
        retain_cls_token=False,
        ln_pre=True,
        ln_post=False,
        return_interm_layers=False,
        bias_patch_embed=False,
        compile_mode=None,
    )
    # No precomputed cache: SAM 3 fills it on "cuda"; computed on use, the values are equal.
    position = PositionEmbeddingSine(num_pos_feats=256, normalize=True, temperature=10000)
    neck: nn.Module = Sam3DualViTDetNeck(
        trunk=trunk,
        position_encoding=position,
        d_model=256,
        scale_factors=[4.0, 2.0, 1.0, 0.5],
        add_sam2_neck=True,
    )
    return neck


def build_memory_encoder(config: Sam3Config) -> nn.Module:
    """SAM 3's memory encoder; the mask is first resized to 16 px per feature cell."""
    from sam3.model.memory import CXBlock, SimpleFuser, SimpleMaskDownSampler, SimpleMaskEncoder
    from sam3.model.position_encoding import PositionEmbeddingSine

    side = config.grid * 16
    encoder: nn.Module = SimpleMaskEncoder(
        out_dim=64,
        position_encoding=PositionEmbeddingSine(num_pos_feats=64, normalize=True),
        mask_downsampler=SimpleMaskDownSampler(
            kernel_size=3, stride=2, padding=1, interpol_size=[side, side]
        ),
        fuser=SimpleFuser(
            layer=CXBlock(
                dim=256, kernel_size=7, padding=3, layer_scale_init_value=1.0e-06,
                use_dwconv=True,
            ),
            num_layers=2,
        ),
    )
    return encoder


def build_memory_attention(config: Sam3Config) -> nn.Module:
    """SAM 3's memory attention: 4 pre-norm layers of RoPE self- and cross-attention."""
    from sam3.model.decoder import TransformerDecoderLayerv2, TransformerEncoderCrossAttention
    from sam3.model.model_misc import TransformerWrapper
    from sam3.sam.transformer import RoPEAttention

    grid = [config.grid, config.grid]
    common = {"embedding_dim": 256, "num_heads": 1, "downsample_rate": 1, "dropout": 0.1,
              "rope_theta": 10000.0, "feat_sizes": grid, "use_fa3": False,
              "use_rope_real": False}
    layer = TransformerDecoderLayerv2(
        cross_attention_first=False,
        activation="relu",
        dim_feedforward=2048,
        dropout=0.1,
        pos_enc_at_attn=False,
        pre_norm=True,
        self_attention=RoPEAttention(**common),
        d_model=256,
        pos_enc_at_cross_attn_keys=True,
        pos_enc_at_cross_attn_queries=False,
        cross_attention=RoPEAttention(kv_in_dim=64, rope_k_repeat=True, **common),
    )
    encoder = TransformerEncoderCrossAttention(
        remove_cross_attention_layers=[],
        batch_first=True,
        d_model=256,
        frozen=False,
        pos_enc_at_input=True,
        layer=layer,
        num_layers=4,
        use_act_checkpoint=False,
    )
    wrapper: nn.Module = TransformerWrapper(encoder=encoder, decoder=None, d_model=256)
    return wrapper


def tracker_options(config: Sam3Config) -> dict[str, Any]:
    """The released tracker's settings (`build_tracker`), less the predictor's own and the
    memory selection, which treemem's `sam3-memory` strategy does."""
    return {
        "image_size": config.image_size,
        "num_maskmem": 7,
        "backbone_stride": PATCH,
        "multimask_output_in_sam": True,
        "forward_backbone_per_frame_for_eval": True,
        "trim_past_non_cond_mem_for_eval": False,
        "multimask_output_for_tracking": True,
        "multimask_min_pt_num": 0,
        "multimask_max_pt_num": 1,
        "non_overlap_masks_for_mem_enc": False,
        "max_cond_frames_in_attn": 4,
        "offload_output_to_cpu_for_eval": False,
        "sam_mask_decoder_extra_args": {
            "dynamic_multimask_via_stability": True,
            "dynamic_multimask_stability_delta": 0.05,
            "dynamic_multimask_stability_thresh": 0.98,
        },
        "use_memory_selection": False,
    }


class Sam3Tracker(nn.Module):
    """SAM 3's tracker with the vision trunk it reads: `vision` (the ViT and necks) and
    `tracker` (a `Sam3TrackerBase` with no backbone of its own). A plain container: the
    backend drives the parts."""

    def __init__(self, config: Sam3Config) -> None:
        from sam3.model.sam3_tracker_base import Sam3TrackerBase

        super().__init__()
        self.config = config
        self.vision = build_vision(config)
        self.tracker = Sam3TrackerBase(
            backbone=None,
            transformer=build_memory_attention(config),
            maskmem_backbone=build_memory_encoder(config),
            **tracker_options(config),
        )

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        """The state dict in `sam3.pt`'s layout (what `load_checkpoint` reads)."""
        state = {VISION_PREFIX + k: v for k, v in self.vision.state_dict().items()}
        state.update({TRACKER_PREFIX + k: v for k, v in self.tracker.state_dict().items()})
        return state

    def place(self, device: torch.device | str) -> Sam3Tracker:
        """Move to `device`, with the RoPE tables SAM 3 keeps outside the state dict (made on
        "cuda" when one exists, else on the CPU) moved too."""
        from sam3.sam.transformer import RoPEAttention

        self.to(device)
        for module in self.modules():
            if isinstance(module, RoPEAttention):
                module.freqs_cis = module.freqs_cis.to(device)
        return self


def build_model(config: Sam3Config = RELEASED) -> Sam3Tracker:
    """A SAM 3 tracker with freshly initialised weights, on the CPU, in eval mode."""
    return Sam3Tracker(config).place("cpu").eval()


def build_random_model(config: Sam3Config | None = None, *, seed: int = 0) -> Sam3Tracker:
    """A seeded random-weight tracker (default: `small_config()`), for tests."""
    torch.manual_seed(seed)
    return build_model(config or small_config())


def small_config(image_size: int = 224) -> Sam3Config:
    """A reduced SAM 3 shape that runs on a CPU: 2 ViT blocks, 128 wide (the last global)."""
    return Sam3Config(
        image_size=image_size, vit_width=128, vit_depth=2, vit_heads=2, vit_mlp_ratio=4.0,
        vit_window=8, vit_global_blocks=(1,), pretrain_image_size=112,
    )


# --- checkpoints ------------------------------------------------------------------------------


def read_state(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The state dict of a `sam3.pt`-style file, with errors a user can act on."""
    payload = read_checkpoint(checkpoint, "SAM 3's sam3.pt")
    if isinstance(payload, dict) and isinstance(payload.get("model"), dict):
        payload = payload["model"]
    if not isinstance(payload, dict) or not any(
        isinstance(k, str) and k.startswith(TRACKER_PREFIX) for k in payload
    ):
        hint = ""
        if isinstance(payload, dict) and any(
            isinstance(k, str) and k.startswith("image_encoder.") for k in payload
        ):
            hint = " (it looks like a SAM 2 checkpoint: use --backend sam2)"
        raise InputError(
            f"checkpoint {checkpoint.name} has no SAM 3 tracker weights ('{TRACKER_PREFIX}*'): "
            f"not a SAM 3 video checkpoint{hint}"
        )
    return payload


def config_for_state(state: dict[str, torch.Tensor], checkpoint: Path) -> Sam3Config:
    """The released config if the trunk's shapes are the released model's; else an error
    asking for `--config`."""
    patch = state.get(VISION_PREFIX + "trunk.patch_embed.proj.weight")
    if patch is None:
        raise InputError(
            f"checkpoint {checkpoint.name} has no SAM 3 vision trunk "
            f"('{VISION_PREFIX}trunk.*'): not a SAM 3 video checkpoint"
        )
    prefix = VISION_PREFIX + "trunk.blocks."
    depth = len({k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)})
    if (int(patch.shape[0]), depth) == (RELEASED.vit_width, RELEASED.vit_depth):
        return RELEASED
    raise ConfigError(
        f"checkpoint {checkpoint.name} has a {depth}-block, {int(patch.shape[0])}-wide trunk, "
        "not the released SAM 3's: pass --config FILE.json (Sam3Config fields)"
    )


def _load_part(module: nn.Module, state: dict[str, torch.Tensor], prefix: str,
               checkpoint: Path, config: Sam3Config) -> None:
    part = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    try:
        module.load_state_dict(part, strict=True)
    except RuntimeError as error:
        raise InputError(
            f"checkpoint {checkpoint.name} does not match the SAM 3 config "
            f"({config.image_size} px, {config.vit_depth} blocks, {config.vit_width} wide): "
            f"{mismatch(error)}; pass the matching --config"
        ) from None


def load_model(
    checkpoint: Path,
    *,
    config: str | Sam3Config | None = None,
    device: str | None = None,
) -> Sam3Tracker:
    """The tracker a SAM 3 checkpoint needs, with its weights, on `device` (CUDA when
    present). `config`: a name, a JSON file or a `Sam3Config`; None infers it."""
    state = read_state(checkpoint)
    resolved = resolve_config(config) or config_for_state(state, checkpoint)
    model = Sam3Tracker(resolved).place("cpu").eval()
    _load_part(model.vision, state, VISION_PREFIX, checkpoint, resolved)
    _load_part(model.tracker, state, TRACKER_PREFIX, checkpoint, resolved)
    del state
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.place(device)
