"""A small Vision Transformer that runs at any patch grid up to its full one, its variable-effort ladder, and
the model directory ``autotradeoff apply`` writes for it.

Standalone on purpose: it imports only torch (and safetensors to save or load a directory), so ``apply``
copies this file next to the weights and a user loads the model without autotradeoff:

    import importlib.util
    spec = importlib.util.spec_from_file_location("icpc_vit", "model_dir/icpc_vit.py")
    icpc_vit = importlib.util.module_from_spec(spec); spec.loader.exec_module(icpc_vit)
    model = icpc_vit.load("model_dir")                   # eval mode, with the exported ladder
    classes, exit_px = model.classify(images)            # uint8 (N, C, H, W) at the dataset's size

The model: non-overlapping patch embedding (a strided convolution), a learned absolute position table for
the full grid (``image_size / patch`` a side), a class token with its own embedding, pre-norm blocks with
eager attention (so ``torch.utils.flop_counter`` sees every matmul), and a linear head. ``logits_at``
resizes the input (up or down) to ``grid * patch`` pixels and ``positions`` takes the grid's position
embeddings from the table: its top-left block (a patch keeps its embedding at every grid: ICPC's
positional consistency) or the table resampled. ``image_size`` may exceed the images' own size: the input
is then upsampled onto a larger canvas, as the ICPC paper's public code does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ViT", "build_vit", "resize", "positions", "ascend", "save_dir", "load", "ARCH", "CONFIG", "WEIGHTS"]

ARCH = ("patch", "dim", "depth", "heads", "mlp_ratio")
CONFIG, WEIGHTS, FORMAT = "config.json", "model.safetensors", "autotradeoff-icpc-vit/1"


def resize(images: torch.Tensor, grid: int, patch: int) -> torch.Tensor:
    """Images (N, C, H, W) at ``grid * patch`` pixels a side (area-aware bilinear); unchanged at that size."""
    side = grid * patch
    if images.shape[-1] == side and images.shape[-2] == side:
        return images
    return F.interpolate(images, size=(side, side), mode="bilinear", antialias=True, align_corners=False)


def positions(table: torch.Tensor, grid: int, mode: str) -> torch.Tensor:
    """Position embeddings (grid * grid, dim) for a ``grid x grid`` patch grid from the (full, full, dim) table."""
    full = table.shape[0]
    if grid == full:
        return table.reshape(full * full, -1)
    if mode == "top-left":
        return table[:grid, :grid].reshape(grid * grid, -1)
    if mode == "interpolate":
        resampled = F.interpolate(table.permute(2, 0, 1).unsqueeze(0), size=(grid, grid), mode="bicubic",
                                  antialias=True, align_corners=False)
        return resampled.squeeze(0).permute(1, 2, 0).reshape(grid * grid, -1)
    raise ValueError(f"pos_selection must be top-left or interpolate; got {mode!r}")


def ascend(logits_at: Callable[[torch.Tensor, int], torch.Tensor], images: torch.Tensor, levels: Sequence[int],
           threshold: float, *, fallback: str = "largest") -> tuple[torch.Tensor, torch.Tensor]:
    """Variable effort: run ``logits_at(images, level)`` on ascending levels, each sample stopping at the first
    level whose max softmax probability is >= ``threshold``; only samples still pending reach the next level.
    Never confident: the last level's answer (``largest``) or -1 (``wrong``). Returns (predictions, exit index)."""
    n = images.shape[0]
    if n == 1:  # one image (deployment at batch 1): the same rule without the bookkeeping of a batch
        return _ascend_one(logits_at, images, levels, threshold, fallback)
    predictions = torch.full((n,), -1, dtype=torch.long, device=images.device)
    exit_index = torch.full((n,), len(levels) - 1, dtype=torch.long, device=images.device)
    pending = torch.arange(n, device=images.device)
    for index, level in enumerate(levels):
        if len(pending) == 0:
            break
        confidence, answer = torch.softmax(logits_at(images[pending], level).float(), dim=-1).max(dim=-1)
        done = confidence >= threshold
        if index == len(levels) - 1 and fallback == "largest":
            done = torch.ones_like(done)
        predictions[pending[done]] = answer[done]
        exit_index[pending[done]] = index
        pending = pending[~done]
    return predictions, exit_index


def _ascend_one(logits_at: Callable[[torch.Tensor, int], torch.Tensor], image: torch.Tensor, levels: Sequence[int],
                threshold: float, fallback: str) -> tuple[torch.Tensor, torch.Tensor]:
    for index, level in enumerate(levels):
        confidence, answer = torch.softmax(logits_at(image, level).float(), dim=-1).max(dim=-1)
        if confidence.item() >= threshold or index == len(levels) - 1:
            unsure = confidence.item() < threshold and fallback != "largest"
            return (torch.full_like(answer, -1) if unsure else answer), torch.full_like(answer, index)
    raise ValueError("ascend needs at least one level")


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        weights = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1, self.attn, self.norm2 = nn.LayerNorm(dim), Attention(dim, heads), nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """``ladder``: the variable-effort plan ``classify`` follows (levels, threshold, fallback, position mode);
    by default the full level alone."""

    def __init__(self, *, image_size: int, patch: int, channels: int, classes: int, dim: int, depth: int,
                 heads: int, mlp_ratio: float):
        super().__init__()
        self.shape = dict(image_size=image_size, patch=patch, channels=channels, classes=classes, dim=dim, depth=depth,
                          heads=heads, mlp_ratio=mlp_ratio)
        self.patch, self.full = patch, image_size // patch
        self.embed = nn.Conv2d(channels, dim, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.empty(self.full, self.full, dim))  # the table for the largest level
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = nn.Sequential(*(Block(dim, heads, mlp_ratio) for _ in range(depth)))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)
        self.register_buffer("mean", torch.zeros(1, channels, 1, 1))  # input normalisation, set from training images
        self.register_buffer("std", torch.ones(1, channels, 1, 1))
        self.ladder = {"levels": [self.full], "threshold": 0.0, "fallback": "largest", "pos_mode": "top-left"}

    def forward(self, images: torch.Tensor, *, pos_mode: str = "top-left") -> torch.Tensor:
        """Logits for images already at ``g * patch`` pixels a side (any g up to the full grid)."""
        x = self.embed(images)
        x = x.flatten(2).transpose(1, 2) + positions(self.pos, x.shape[-1], pos_mode)
        x = self.blocks(torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1))
        return self.head(self.norm(x[:, 0]))

    def logits_at(self, images: torch.Tensor, grid: int, pos_mode: str) -> torch.Tensor:
        """Logits of uint8 images (any size), normalised and resized to level ``grid``."""
        x = (images.float() / 255 - self.mean) / self.std
        return self(resize(x, grid, self.patch), pos_mode=pos_mode)

    @torch.inference_mode()
    def classify(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(classes, side in pixels of the level each sample exited at) of uint8 images, by ``self.ladder``."""
        ladder = self.ladder
        predictions, exits = ascend(lambda x, g: self.logits_at(x, g, ladder["pos_mode"]), images, ladder["levels"],
                                    ladder["threshold"], fallback=ladder["fallback"])
        return predictions, torch.tensor(ladder["levels"], device=exits.device)[exits] * self.patch

    def set_normalisation(self, images: torch.Tensor) -> None:
        """Per-channel mean and std of uint8 training images."""
        x = images.float() / 255
        self.mean.copy_(x.mean(dim=(0, 2, 3)).view_as(self.mean))
        self.std.copy_(x.std(dim=(0, 2, 3)).clamp_min(1e-6).view_as(self.std))


def build_vit(fidelity: dict[str, Any], *, image_size: int, channels: int, classes: int) -> ViT:
    return ViT(image_size=image_size, channels=channels, classes=classes, **{k: fidelity[k] for k in ARCH})


def save_dir(model: ViT, folder: str | Path, extra: dict[str, Any] | None = None) -> None:
    """Write ``model`` (weights as safetensors; shape, ladder and ``extra`` facts in config.json) to ``folder``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(folder / WEIGHTS))
    config = {"format": FORMAT, "shape": model.shape, "ladder": model.ladder, **(extra or {})}
    (folder / CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def load(folder: str | Path, *, device: str = "cpu") -> ViT:
    """The model a ``save_dir`` folder holds, in eval mode, with its ladder."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    if config.get("format") != FORMAT:
        raise ValueError(f"{folder / CONFIG}: not an ICPC ViT directory (format {config.get('format')!r})")
    model = ViT(**config["shape"])
    model.load_state_dict(load_file(str(folder / WEIGHTS)))
    model.ladder = dict(config["ladder"])
    return model.to(device).eval()
