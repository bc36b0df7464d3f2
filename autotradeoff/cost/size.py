"""Model size: parameters that exist (after any removal) and the bytes they and buffers occupy."""

from __future__ import annotations

import torch

__all__ = ["model_size"]


def model_size(model: torch.nn.Module) -> dict[str, int]:
    params = sum(p.numel() for p in model.parameters())
    size = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    return {"params": int(params), "model_bytes": int(size)}
