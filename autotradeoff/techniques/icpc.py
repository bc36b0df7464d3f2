"""ICPC (techniques.md section 3): input compression with positional consistency, and variable-effort
inference over the same compression levels.

A level is a patch grid ``g x g`` (the image resized to ``g * patch`` pixels); the full level is the
grid the position table was sized for. Training: each batch goes through a level drawn from the
ladder ``min_level .. full`` (``level_sampling``). Positional consistency: grid ``g`` takes the
top-left ``g x g`` block of the table, so a patch keeps its embedding at every level; the alternative
(``interpolate``) resamples the whole table to ``g x g``, as ViTs do for other resolutions. Inference:
one fixed level, or levels from ``infer_start_level`` upwards, stopping at the first whose maximum
softmax probability reaches ``conf_threshold``. With every knob off: full-resolution training and
full-level inference, i.e. the plain ViT. Plain functions; none mutates its inputs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from autotradeoff.space import Knob

__all__ = ["KNOBS", "grid_of", "ladder", "train_ladder", "infer_ladder", "inference_plan", "sample_level", "resize", "positions",
           "EffortResult", "variable_effort"]

KNOBS = {
    "min_level": Knob("min_level", "float", 1.0, 0.1, 1.0, help="smallest training level, as a share of the full side (1: full-resolution training)"),
    "level_step": Knob("level_step", "int", 1, 1, 64, help="levels are this many patches per side apart"),
    "level_sampling": Knob("level_sampling", "categorical", "uniform", choices=("uniform", "high", "curriculum"),
                           help="per-batch level: uniform, biased to high levels, or a small-to-large curriculum [ours]"),
    "pos_selection": Knob("pos_selection", "categorical", "top-left", choices=("top-left", "interpolate"),
                          help="positions of a g x g grid: top-left block of the table (ICPC) or the table resampled"),
    "variable_effort": Knob("variable_effort", "categorical", False, choices=(False, True),
                            help="infer at ascending levels and stop at the first confident one"),
    "conf_threshold": Knob("conf_threshold", "float", 0.9, 0.0, 1.0, help="max softmax probability that stops the ascent"),
    "infer_start_level": Knob("infer_start_level", "float", 0.25, 0.1, 1.0, help="first inference level (share of the full side)"),
    "max_infer_levels": Knob("max_infer_levels", "int", 0, 0, 64, help="levels tried at most, always ending at the full one (0: all)"),
    "fallback": Knob("fallback", "categorical", "largest", choices=("largest", "wrong"),
                     help="no level confident: the largest level's answer, or count it wrong (the public code)"),
    "infer_level": Knob("infer_level", "float", 1.0, 0.1, 1.0, help="the one inference level without variable effort"),
}


def grid_of(level: float, full: int) -> int:
    """The patch grid side of a level given as a share of the full side (at least 1)."""
    return max(1, min(full, round(level * full)))


def ladder(start: float, full: int, step: int) -> list[int]:
    """Grid sides from ``start`` (share of ``full``) to ``full``, ``step`` apart, anchored at ``full``."""
    low = grid_of(start, full)
    return list(range(full, low - 1, -step))[::-1]


def train_ladder(config: dict[str, Any], full: int) -> list[int]:
    return ladder(config["min_level"], full, config["level_step"])


def infer_ladder(config: dict[str, Any], full: int) -> list[int]:
    """The levels inference visits, smallest first. Capped ladders keep their ends, evenly spaced."""
    if not config["variable_effort"]:
        return [grid_of(config["infer_level"], full)]
    levels = ladder(config["infer_start_level"], full, config["level_step"])
    cap = config["max_infer_levels"]
    if cap and len(levels) > cap:
        levels = levels[-1:] if cap == 1 else [levels[round(i * (len(levels) - 1) / (cap - 1))] for i in range(cap)]
    return levels


def inference_plan(config: dict[str, Any], full: int) -> tuple[list[int], float, str]:
    """(levels, threshold, fallback) for ``variable_effort``; one fixed level answers every sample."""
    if not config["variable_effort"]:
        return infer_ladder(config, full), 0.0, "largest"
    return infer_ladder(config, full), config["conf_threshold"], config["fallback"]


def sample_level(levels: Sequence[int], scheme: str, rng: random.Random, *, progress: float = 1.0) -> int:
    """One batch's level. ``high``: weight proportional to rank (the largest most often).
    ``curriculum``: uniform over the levels up to the one ``progress`` (0..1 of training) has unlocked."""
    if len(levels) == 1:
        return levels[0]
    if scheme == "uniform":
        return rng.choice(list(levels))
    if scheme == "high":
        return rng.choices(list(levels), weights=range(1, len(levels) + 1))[0]
    if scheme == "curriculum":
        unlocked = max(1, math.ceil(min(1.0, max(progress, 0.0)) * len(levels)))
        return rng.choice(list(levels[:unlocked]))
    raise ValueError(f"level_sampling must be uniform, high or curriculum; got {scheme!r}")


def resize(images: torch.Tensor, grid: int, patch: int) -> torch.Tensor:
    """Images (N, C, H, W) at ``grid * patch`` pixels a side (area-aware bilinear); unchanged at full size."""
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


@dataclass
class EffortResult:
    predictions: torch.Tensor  # -1 where the sample counts as wrong (fallback "wrong", none confident)
    exit_index: torch.Tensor  # index into the levels of the level that answered
    levels: list[int]

    def exit_shares(self) -> list[float]:
        counts = torch.bincount(self.exit_index.cpu(), minlength=len(self.levels))
        return (counts.float() / max(1, len(self.exit_index))).tolist()

    def visits(self) -> list[float]:
        """Share of samples that ran each level (all run the first; fewer go on)."""
        shares = self.exit_shares()
        return [sum(shares[i:]) for i in range(len(shares))]


def variable_effort(logits_at: Callable[[torch.Tensor, int], torch.Tensor], images: torch.Tensor, levels: Sequence[int],
                    threshold: float, *, fallback: str = "largest") -> EffortResult:
    """Run ``logits_at(images, level)`` on ascending levels; each sample stops at the first level whose
    max softmax probability is >= ``threshold``. Samples never confident take the last level's answer
    (``largest``) or -1 (``wrong``). Only samples still pending reach the next level."""
    n = images.shape[0]
    predictions = torch.full((n,), -1, dtype=torch.long, device=images.device)
    exit_index = torch.full((n,), len(levels) - 1, dtype=torch.long, device=images.device)
    pending = torch.arange(n, device=images.device)
    for index, level in enumerate(levels):
        if len(pending) == 0:
            break
        confidence, answer = torch.softmax(logits_at(images[pending], level).float(), dim=-1).max(dim=-1)
        done = confidence >= threshold
        last = index == len(levels) - 1
        if last and fallback == "largest":
            done = torch.ones_like(done)
        predictions[pending[done]] = answer[done]
        exit_index[pending[done]] = index
        pending = pending[~done]
    return EffortResult(predictions, exit_index, list(levels))
