"""Memory attention with per-entry key weights, built from sam2's own modules.

sam2's `MemoryAttention` has no hook for weighting keys, so this runs its layers' parts in
the same order (self-attention, cross-attention, MLP) and multiplies the cross-attention key
input (memory + positional encoding) by a weight per memory token before the key projection
and RoPE, in every layer. With all weights 1 it is sam2's forward, bit for bit.
"""

from __future__ import annotations

from typing import Any

import torch
from sam2.modeling.sam.transformer import RoPEAttention


def weighted_memory_attention(
    attention: Any,
    current: torch.Tensor,
    current_pos: torch.Tensor,
    memory: torch.Tensor,
    memory_pos: torch.Tensor,
    num_pointer_tokens: int,
    key_weight: torch.Tensor | None,
) -> torch.Tensor:
    """current, current_pos: (HW, B, C); memory, memory_pos: (M, B, C_mem); key_weight:
    (M, B, 1) or None. Returns the conditioned features (HW, B, C), as MemoryAttention."""
    output = current
    if attention.pos_enc_at_input:
        output = output + 0.1 * current_pos
    if attention.batch_first:
        output = output.transpose(0, 1)
        current_pos = current_pos.transpose(0, 1)
        memory = memory.transpose(0, 1)
        memory_pos = memory_pos.transpose(0, 1)
        if key_weight is not None:
            key_weight = key_weight.transpose(0, 1)
    for layer in attention.layers:
        output = layer._forward_sa(output, current_pos)
        query = layer.norm2(output)
        if layer.pos_enc_at_cross_attn_queries:
            query = query + current_pos
        key = memory + memory_pos if layer.pos_enc_at_cross_attn_keys else memory
        if key_weight is not None:
            key = key * key_weight
        extra = {}
        if isinstance(layer.cross_attn_image, RoPEAttention) and num_pointer_tokens > 0:
            extra = {"num_k_exclude_rope": num_pointer_tokens}
        attended = layer.cross_attn_image(q=query, k=key, v=memory, **extra)
        output = output + layer.dropout2(attended)
        hidden = layer.norm3(output)
        hidden = layer.linear2(layer.dropout(layer.activation(layer.linear1(hidden))))
        output = output + layer.dropout3(hidden)
    normed = attention.norm(output)
    if attention.batch_first:
        normed = normed.transpose(0, 1)
    return normed
