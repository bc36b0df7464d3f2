"""A small Vision Transformer trained from scratch, with ICPC's per-batch compression levels, and the
on-disk cache of trained models (keyed by what shaped the weights), so inference-only trials take seconds.

The ViT: non-overlapping patch embedding (a strided convolution), a learned absolute position table
sized for the full grid (``image_size / patch`` a side; a smaller grid takes positions from it through
``icpc.positions``), a class token with its own embedding, pre-norm blocks with eager attention (so
``torch.utils.flop_counter`` sees every matmul), and a linear head.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from autotradeoff.cost import PeakMemory, count_flops
from autotradeoff.data import cache_dir, cache_lock
from autotradeoff.errors import TrialFailed
from autotradeoff.techniques import icpc

__all__ = ["ViT", "TrainStats", "build_vit", "train_vit", "trained_vit", "train_step_flops"]

CACHE_VERSION = 2  # bump when training code changes what a cached model would be
ARCH = ("patch", "dim", "depth", "heads", "mlp_ratio")
TRAINING = ("epochs", "batch_size", "lr", "weight_decay", "train_size")


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
    def __init__(self, *, image_size: int, patch: int, channels: int, classes: int, dim: int, depth: int,
                 heads: int, mlp_ratio: float):
        super().__init__()
        self.patch, self.full = patch, image_size // patch
        self.embed = nn.Conv2d(channels, dim, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.empty(self.full, self.full, dim))  # the table for the largest level
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = nn.Sequential(*(Block(dim, heads, mlp_ratio) for _ in range(depth)))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)
        self.register_buffer("mean", torch.zeros(1, channels, 1, 1))  # input normalisation, set from training images
        self.register_buffer("std", torch.ones(1, channels, 1, 1))

    def forward(self, images: torch.Tensor, *, pos_mode: str = "top-left") -> torch.Tensor:
        """Logits for images already at ``g * patch`` pixels a side (any g up to the full grid)."""
        x = self.embed(images)
        x = x.flatten(2).transpose(1, 2) + icpc.positions(self.pos, x.shape[-1], pos_mode)
        x = self.blocks(torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1))
        return self.head(self.norm(x[:, 0]))

    def logits_at(self, images: torch.Tensor, grid: int, pos_mode: str) -> torch.Tensor:
        """Logits of full-size uint8 images, normalised and compressed to level ``grid``."""
        x = (images.float() / 255 - self.mean) / self.std
        return self(icpc.resize(x, grid, self.patch), pos_mode=pos_mode)

    def set_normalisation(self, images: torch.Tensor) -> None:
        """Per-channel mean and std of uint8 training images."""
        x = images.float() / 255
        self.mean.copy_(x.mean(dim=(0, 2, 3)).view_as(self.mean))
        self.std.copy_(x.std(dim=(0, 2, 3)).clamp_min(1e-6).view_as(self.std))


def build_vit(fidelity: dict[str, Any], *, image_size: int, channels: int, classes: int) -> ViT:
    return ViT(image_size=image_size, channels=channels, classes=classes,
               **{k: fidelity[k] for k in ARCH})


@dataclass
class TrainStats:
    time_s: float
    steps: int
    flops: float  # forward + backward of every step, counted per level (flop_counter), summed over batches
    samples_per_level: dict[str, int]
    peak_mb: float = 0.0
    reused: bool = False


def train_step_flops(model: ViT, grid: int, pos_mode: str, channels: int) -> float:
    """FLOPs of forward + backward for one sample at level ``grid`` (counted on a batch of 2, halved)."""
    side = grid * model.patch
    images = torch.zeros(2, channels, side, side, device=model.pos.device)
    return count_flops(lambda: model(images, pos_mode=pos_mode).sum().backward(), grad=True) / 2


def train_vit(model: ViT, images: torch.Tensor, labels: torch.Tensor, config: dict[str, Any],
              fidelity: dict[str, Any], *, device: str) -> TrainStats:
    """AdamW with a cosine schedule (5% warm-up); each batch at a level drawn by ``level_sampling``."""
    seed = fidelity["seed"]
    rng, generator = random.Random(seed), torch.Generator().manual_seed(seed)
    levels = icpc.train_ladder(config, model.full)
    per_batch = math.ceil(len(images) / fidelity["batch_size"])
    total = per_batch * fidelity["epochs"]
    warm = max(1, round(0.05 * total))
    optimizer = torch.optim.AdamW(model.parameters(), lr=fidelity["lr"], weight_decay=fidelity["weight_decay"])
    model.to(device).train()
    model.set_normalisation(images)
    flops_at = {g: train_step_flops(model, g, config["pos_selection"], images.shape[1]) for g in levels}
    model.zero_grad(set_to_none=True)
    step, flops, seen = 0, 0.0, {g: 0 for g in levels}
    start = time.perf_counter()
    with PeakMemory(device) as peak:
        for _ in range(fidelity["epochs"]):
            order = torch.randperm(len(images), generator=generator)
            for index in order.split(fidelity["batch_size"]):
                grid = icpc.sample_level(levels, config["level_sampling"], rng, progress=(step + 1) / total)
                batch = images[index].to(device)
                schedule = min((step + 1) / warm, 0.5 * (1 + math.cos(math.pi * step / total)))
                for group in optimizer.param_groups:
                    group["lr"] = fidelity["lr"] * schedule
                loss = nn.functional.cross_entropy(model.logits_at(batch, grid, config["pos_selection"]), labels[index].to(device))
                if not math.isfinite(loss.item()):
                    raise TrialFailed(f"non-finite training loss ({loss.item()}) at step {step}, level {grid}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step, flops, seen[grid] = step + 1, flops + flops_at[grid] * len(index), seen[grid] + len(index)
    model.eval()
    return TrainStats(time.perf_counter() - start, step, flops, {str(g): n for g, n in seen.items()}, peak.mb)


def _key(dataset: str, config: dict[str, Any], fidelity: dict[str, Any], full: int, device: str) -> str:
    """What shaped the weights (architecture, training settings, seed, the ICPC training knobs that
    matter: sampling and positions only with more than one level) and what its stored training costs
    were measured on (device type, threads)."""
    levels = icpc.train_ladder(config, full)
    what = {"v": CACHE_VERSION, "dataset": dataset, "seed": fidelity["seed"], "levels": levels,
            "device": device.split(":")[0], "threads": fidelity["threads"],
            **{k: fidelity[k] for k in (*ARCH, *TRAINING)},
            **({k: config[k] for k in ("level_sampling", "pos_selection")} if len(levels) > 1 else {})}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:20]


def trained_vit(dataset: str, config: dict[str, Any], fidelity: dict[str, Any], images: torch.Tensor,
                labels: torch.Tensor, classes: int, *, device: str) -> tuple[ViT, TrainStats]:
    """The ViT these training knobs give: from the cache, or trained (seeded) and cached."""
    shape = dict(image_size=images.shape[-1], channels=images.shape[1], classes=classes)
    torch.manual_seed(fidelity["seed"])
    model = build_vit(fidelity, **shape)
    folder = cache_dir() / "vit" / _key(dataset, config, fidelity, model.full, device)
    with cache_lock(f"vit-{folder.name}"):  # parallel trials with the same training knobs train it once
        if (folder / "stats.json").is_file():
            model.load_state_dict(torch.load(folder / "model.pt", map_location="cpu", weights_only=True))
            stats = TrainStats(**{**json.loads((folder / "stats.json").read_text()), "reused": True})
            return model.to(device).eval(), stats
        stats = train_vit(model, images, labels, config, fidelity, device=device)
        tmp = folder.with_name(folder.name + ".tmp")  # written whole, then renamed: a crash leaves no half model
        for stale in (tmp, folder):
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir(parents=True)
        torch.save(model.state_dict(), tmp / "model.pt")
        (tmp / "stats.json").write_text(json.dumps(asdict(stats)))
        os.replace(tmp, folder)
        return model, stats
