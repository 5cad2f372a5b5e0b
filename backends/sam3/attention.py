"""SAM 3's memory attention with per-entry key weights, run from its own layers.

SAM 3's `TransformerEncoderCrossAttention` (4 pre-norm layers: RoPE self-attention, RoPE
cross-attention to the memory, MLP) has no hook for weighting keys. With weights, this runs
each layer's parts in the layer's order and multiplies the cross-attention key input (memory
+ positional encoding) by a weight per memory token before the key projection and RoPE, in
every layer, as treemem's SAM 2 backend does for SAM 2's. Without weights it calls SAM 3's
own forward, so an unweighted plan is SAM 3's computation by construction.
"""

from __future__ import annotations

from typing import Any

import torch


def memory_attention(
    encoder: Any,
    current: torch.Tensor,
    current_pos: torch.Tensor,
    memory: torch.Tensor,
    memory_pos: torch.Tensor,
    num_pointer_tokens: int,
    key_weight: torch.Tensor | None,
) -> torch.Tensor:
    """current, current_pos: (HW, B, C); memory, memory_pos: (M, B, C_mem); key_weight:
    (M, B, 1) or None. Returns the conditioned features (HW, B, C)."""
    if key_weight is None:
        out: torch.Tensor = encoder(
            src=[current],
            src_key_padding_mask=[None],
            src_pos=[current_pos],
            prompt=memory,
            prompt_pos=memory_pos,
            prompt_key_padding_mask=None,
            num_obj_ptr_tokens=num_pointer_tokens,
        )["memory"]
        return out
    return weighted_memory_attention(
        encoder, current, current_pos, memory, memory_pos, num_pointer_tokens, key_weight
    )


def weighted_memory_attention(
    encoder: Any,
    current: torch.Tensor,
    current_pos: torch.Tensor,
    memory: torch.Tensor,
    memory_pos: torch.Tensor,
    num_pointer_tokens: int,
    key_weight: torch.Tensor,
) -> torch.Tensor:
    """`memory_attention` with key weights (see the module docstring); with all weights 1 it
    equals SAM 3's forward."""
    output = current
    if encoder.pos_enc_at_input:
        output = output + 0.1 * current_pos
    if encoder.batch_first:
        output = output.transpose(0, 1)
        current_pos = current_pos.transpose(0, 1)
        memory = memory.transpose(0, 1)
        memory_pos = memory_pos.transpose(0, 1)
        key_weight = key_weight.transpose(0, 1)
    for layer in encoder.layers:
        if layer.cross_attention_first:
            output = _cross(layer, output, current_pos, memory, memory_pos, key_weight,
                            num_pointer_tokens)
            output = layer._forward_sa(output, current_pos)
        else:
            output = layer._forward_sa(output, current_pos)
            output = _cross(layer, output, current_pos, memory, memory_pos, key_weight,
                            num_pointer_tokens)
        hidden = layer.norm3(output)
        hidden = layer.linear2(layer.dropout(layer.activation(layer.linear1(hidden))))
        output = output + layer.dropout3(hidden)
    normed: torch.Tensor = encoder.norm(output)
    if encoder.batch_first:
        normed = normed.transpose(0, 1)
    return normed


def _cross(
    layer: Any,
    output: torch.Tensor,
    current_pos: torch.Tensor,
    memory: torch.Tensor,
    memory_pos: torch.Tensor,
    key_weight: torch.Tensor,
    num_pointer_tokens: int,
) -> torch.Tensor:
    """One layer's cross-attention to the memory, keys weighted."""
    if layer.cross_attn_image is None:
        return output
    query = layer.norm2(output)
    if layer.pos_enc_at_cross_attn_queries:
        query = query + current_pos
    key = memory + memory_pos if layer.pos_enc_at_cross_attn_keys else memory
    extra = {"num_k_exclude_rope": num_pointer_tokens} if num_pointer_tokens > 0 else {}
    attended = layer.cross_attn_image(q=query, k=key * key_weight, v=memory, **extra)
    result: torch.Tensor = output + layer.dropout2(attended)
    return result
