"""Training the ViT of the image tasks: AdamW with a cosine schedule, each batch at the compression level
the pipeline's ``train_plan`` draws (ICPC plugs in there), every step's FLOPs counted; and the on-disk
cache of trained models (keyed by ``Task.training_key``), so inference-only trials take seconds."""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autotradeoff.cost import PeakMemory, alone, count_flops
from autotradeoff.data import cached_artifact
from autotradeoff.errors import TrialFailed
from autotradeoff.models.optim import adamw
from autotradeoff.models.vit import ViT

__all__ = ["TrainStats", "train_step_flops", "train_vit", "trained_vit", "CACHE_VERSION"]

CACHE_VERSION = 6  # bump when training code changes what a cached model would be
# (levels, per-batch level sampler (rng, progress) -> grid, position mode): the ``train_plan`` stage's answer
TrainPlan = tuple[list[int], Callable[[random.Random, float], int], str]


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


def _step(model: ViT, optimizer: torch.optim.Optimizer, batch: torch.Tensor, labels: torch.Tensor, grid: int,
          pos_mode: str, step: int) -> None:
    loss = nn.functional.cross_entropy(model.logits_at(batch, grid, pos_mode), labels)
    if not math.isfinite(loss.item()):
        raise TrialFailed(f"non-finite training loss ({loss.item()}) at step {step}, level {grid}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def train_vit(model: ViT, images: torch.Tensor, labels: torch.Tensor, plan: TrainPlan, fidelity: dict[str, Any], *,
              device: str) -> TrainStats:
    """AdamW with a cosine schedule (5% warm-up); each batch at the level ``plan`` draws for it."""
    levels, sample, pos_mode = plan
    seed = fidelity["seed"]
    rng, generator = random.Random(seed), torch.Generator().manual_seed(seed)
    total = math.ceil(len(images) / fidelity["batch_size"]) * fidelity["epochs"]
    warm = max(1, round(0.05 * total))
    optimizer = adamw(model.parameters(), device, lr=fidelity["lr"], weight_decay=fidelity["weight_decay"])
    model.to(device).train()
    model.set_normalisation(images)
    flops_at = {g: train_step_flops(model, g, pos_mode, images.shape[1]) for g in levels}
    model.zero_grad(set_to_none=True)
    step, flops, seen = 0, 0.0, {g: 0 for g in levels}
    start = time.perf_counter()
    with PeakMemory(device) as peak:
        for _ in range(fidelity["epochs"]):
            for index in torch.randperm(len(images), generator=generator).split(fidelity["batch_size"]):
                alone.pause_point()
                grid = sample(rng, (step + 1) / total)
                for group in optimizer.param_groups:
                    group["lr"] = fidelity["lr"] * min((step + 1) / warm, 0.5 * (1 + math.cos(math.pi * step / total)))
                _step(model, optimizer, images[index].to(device), labels[index].to(device), grid, pos_mode, step)
                step, flops, seen[grid] = step + 1, flops + flops_at[grid] * len(index), seen[grid] + len(index)
    model.eval()
    return TrainStats(time.perf_counter() - start, step, flops, {str(g): n for g, n in seen.items()}, peak.mb)


def trained_vit(key: str, build: Callable[[], ViT], train: Callable[[ViT], TrainStats], *,
                device: str) -> tuple[ViT, TrainStats]:
    """The ViT cached under ``key`` (what shaped it), or ``build()`` (seeded by the caller) trained by
    ``train`` and cached."""

    def load(folder: Path) -> tuple[ViT, TrainStats]:
        model = build()
        model.load_state_dict(torch.load(folder / "model.pt", map_location="cpu", weights_only=True))
        return model.to(device).eval(), TrainStats(**{**json.loads((folder / "stats.json").read_text()), "reused": True})

    def make() -> tuple[ViT, TrainStats]:
        model = build()
        return model, train(model)

    def save(value: tuple[ViT, TrainStats], folder: Path) -> None:
        torch.save(value[0].state_dict(), folder / "model.pt")
        (folder / "stats.json").write_text(json.dumps(asdict(value[1])))

    return cached_artifact("vit", f"v{CACHE_VERSION}-{key}", load=load, make=make, save=save)
