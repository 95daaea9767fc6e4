"""Next-token NLL in bounded memory: the LM head applied chunk by chunk to the backbone's hidden states.

A full forward materialises `[batch, seq, vocab]` logits, and their float32 copy for the loss:
at Llama-3's vocabulary (128256) and batch 8 x 4096 that is 16.8 GB (DESIGN.md §10). Here the
backbone runs once to its last hidden states; only positions that have a target are kept, and the
LM head, the float32 log-softmax and the gather run on `chunk_tokens` of them at a time, so the
peak beyond the backbone is a few `chunk_tokens x vocab` float32 buffers.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from .models import unwrap_model

__all__ = ["DEFAULT_CHUNK_BYTES", "chunk_tokens_for", "token_nll"]

DEFAULT_CHUNK_BYTES = 2**27  # 128 MiB of float32 logits per chunk


def chunk_tokens_for(vocab_size: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """How many positions one chunk holds so that its float32 logits take about `chunk_bytes`."""
    return max(1, chunk_bytes // (4 * vocab_size))


def _backbone_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module, float | None]:
    inner = unwrap_model(model)
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    backbone = getattr(inner, "base_model", None)
    if head is None or not isinstance(backbone, nn.Module) or backbone is inner:
        raise ValueError(
            f"{type(inner).__name__} has no separate backbone and LM head (`base_model`, `get_output_embeddings()`); "
            "chunked scoring needs a causal LM such as `AutoModelForCausalLM`."
        )
    config = getattr(inner, "config", None)
    if getattr(config, "is_encoder_decoder", False):
        raise ValueError("`token_nll` scores decoder-only LMs; for translation models use `lsn.translate` evaluation.")
    return backbone, head, getattr(config, "final_logit_softcapping", None)


def token_nll(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    *,
    chunk_tokens: int | None = None,
) -> torch.Tensor:
    """Per-position next-token NLL (nats, float32), shape `[batch, seq - 1]`, 0 where nothing is predicted.

    Position t scores token t + 1 (`labels[:, t + 1]`, or `input_ids` where `labels` is None); targets
    that are padding (`attention_mask == 0`) or `-100` in `labels` are skipped. Equal to the model's own
    `loss` (its mean over scored positions) up to float rounding, without `[batch, seq, vocab]` logits.
    `chunk_tokens` defaults to about 128 MiB of float32 logits per chunk.
    """
    backbone, head, softcap = _backbone_and_head(model)
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    targets = (input_ids if labels is None else labels)[:, 1:]  # [batch, seq - 1]
    targets = targets.masked_fill(attention_mask[:, 1:] == 0, -100)
    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if "use_cache" in inspect.signature(backbone.forward).parameters:
        kwargs["use_cache"] = False
    hidden = backbone(**kwargs).last_hidden_state[:, :-1]  # [batch, seq - 1, hidden]
    scored = targets != -100
    picked = hidden[scored]  # [tokens, hidden]: only positions with a target reach the head
    wanted = targets[scored]
    chunk = chunk_tokens or chunk_tokens_for(int(head.weight.shape[0]))
    losses = []
    for start in range(0, picked.shape[0], chunk):
        logits = head(picked[start : start + chunk]).float()  # [chunk, vocab]
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        losses.append(nn.functional.cross_entropy(logits, wanted[start : start + chunk], reduction="none"))
        del logits
    out = torch.zeros(targets.shape, dtype=torch.float32, device=hidden.device)
    if losses:
        out[scored] = torch.cat(losses)
    return out
