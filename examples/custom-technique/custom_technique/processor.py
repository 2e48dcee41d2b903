"""ChunkedSDPAProcessor: attention computed over chunks of queries, each chunk through SDPA.

Peak attention memory is bounded by the chunk size instead of the sequence length. The chunk size
is a process-wide setting of this module, :data:`CHUNK_QUERIES` (``None``: one chunk), the kind
of library flag a technique must declare so that perfsuite restores it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention

__all__ = ["CHUNK_QUERIES", "ChunkedSDPAProcessor"]

#: Queries per chunk; ``None`` attends over all queries at once.
CHUNK_QUERIES: int | None = None


class ChunkedSDPAProcessor:
    """For the transformer attention of a UNet: (batch, tokens, channels) in and out."""

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if hidden_states.ndim != 3 or attn.spatial_norm is not None or attn.group_norm is not None:
            raise ValueError("ChunkedSDPAProcessor handles the denoiser's token attention only")
        if attention_mask is not None:
            raise ValueError("ChunkedSDPAProcessor does not take an attention mask")
        residual = hidden_states
        batch = hidden_states.shape[0]
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if encoder_hidden_states is not None and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        query, key, value = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
        head_dim = key.shape[-1] // attn.heads
        query, key, value = (
            t.view(batch, -1, attn.heads, head_dim).transpose(1, 2) for t in (query, key, value)
        )
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        step = CHUNK_QUERIES or query.shape[2]
        out = torch.cat(
            [
                F.scaled_dot_product_attention(query[:, :, i : i + step], key, value)
                for i in range(0, query.shape[2], step)
            ],
            dim=2,
        )
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor
