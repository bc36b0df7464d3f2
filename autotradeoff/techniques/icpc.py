"""ICPC (techniques.md section 3): input compression with positional consistency, and variable-effort inference
over the same compression levels.

A level is a patch grid ``g x g`` (the image resized to ``g * patch`` pixels); the full level is the grid the
position table was sized for. As in the paper's public code, levels never go below the images' own
resolution (``native``, in patches: the task may upsample onto a larger canvas, so every level keeps the
image's information) unless ``below_native`` allows it. Training: each batch goes through a level drawn from
the ladder ``min_level .. full`` (``level_sampling``). Positional consistency: grid ``g`` takes the top-left
``g x g`` block of the table, so a patch keeps its embedding at every level; the alternative
(``interpolate``) resamples the table to ``g x g``. Inference: one fixed level, or a ladder from
``infer_start_level`` to the full level (``max_infer_levels`` of them; 2 = one cheap level, then full), each
sample stopping at the first level whose max softmax probability reaches the threshold. The threshold is
``tuned`` on the validation split (the cheapest in FLOPs whose accuracy is within ``max_drop`` of one
full-level pass; when no threshold makes the ladder cheaper than that pass, the full level alone answers)
or ``fixed`` (``conf_threshold``, the paper's 0.9). With every knob off: full-resolution training and
full-level inference, i.e. the plain ViT. Plain functions; none mutates its inputs. ``ICPC`` plugs them into
the vision tasks' ``train_plan`` and ``infer_plan`` stages.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from autotradeoff.knobs import EXIT_PREFIX, Knob
from autotradeoff.models.vit import ascend
from autotradeoff.techniques.base import Pipeline, Technique

__all__ = ["ICPC", "EXIT_PREFIX", "grid_of", "floor_of", "ladder", "train_ladder", "infer_ladder", "inference_plan",
           "sample_level", "ladder_outcomes", "tune_threshold", "EffortResult", "variable_effort"]

# (confidence (levels, samples), correct (levels, samples), FLOPs of one pass per level) on validation
Scores = tuple[torch.Tensor, torch.Tensor, list[float]]


def _training(name: str, kind: str, default: Any, *args: Any, **kwargs: Any) -> Knob:
    return Knob(name, kind, default, *args, stage="train", **kwargs)


def _inference(name: str, kind: str, default: Any, *args: Any, **kwargs: Any) -> Knob:
    return Knob(name, kind, default, *args, stage="inference", **kwargs)


KNOBS = {
    "min_level": _training("min_level", "float", 1.0, 0.1, 1.0,
                           help="smallest training level, as a share of the full side (1: full-resolution training)"),
    "level_step": _training("level_step", "int", 1, 1, 64, help="levels are this many patches per side apart"),
    "level_sampling": _training("level_sampling", "categorical", "uniform", choices=("uniform", "high", "curriculum"),
                                help="per-batch level: uniform, biased to high levels, or a small-to-large curriculum [ours]"),
    "pos_selection": _training("pos_selection", "categorical", "top-left", choices=("top-left", "interpolate"),
                               help="positions of a g x g grid: top-left block of the table (ICPC) or the table resampled"),
    "below_native": _training("below_native", "categorical", False, choices=(False, True),
                              help="allow levels below the images' own resolution (they lose information)"),
    "variable_effort": _inference("variable_effort", "categorical", False, choices=(False, True),
                                  help="infer at ascending levels and stop at the first confident one"),
    "infer_start_level": _inference("infer_start_level", "float", 0.25, 0.1, 1.0,
                                    help="first inference level (share of the full side; at least the native one)"),
    "max_infer_levels": _inference("max_infer_levels", "int", 2, 0, 64,
                                   help="levels tried at most, always ending at the full one (2: cheap then full; 0: all)"),
    "threshold_rule": _inference("threshold_rule", "categorical", "tuned", choices=("tuned", "fixed"),
                                 help="tuned on validation to max_drop (the ladder only when it saves FLOPs), or conf_threshold"),
    "max_drop": _inference("max_drop", "float", 0.003, 0.0, 0.2,
                           help="tuned: validation accuracy the ladder may lose against one full-level pass"),
    "conf_threshold": _inference("conf_threshold", "float", 0.9, 0.0, 1.0,
                                 help="fixed: max softmax probability that stops the ascent"),
    "fallback": _inference("fallback", "categorical", "largest", choices=("largest", "wrong"),
                           help="no level confident: the largest level's answer, or count it wrong (the public code)"),
    "infer_level": _inference("infer_level", "float", 1.0, 0.1, 1.0, help="the one inference level without variable effort"),
}


def grid_of(level: float, full: int, floor: int = 1) -> int:
    """The patch grid side of a level given as a share of the full side, between ``floor`` and ``full``."""
    return max(min(floor, full), 1, min(full, round(level * full)))


def floor_of(own: dict[str, Any], context: dict[str, Any]) -> int:
    """The smallest grid a level may have: the one holding the native image (``context["native"]``, in
    patches), or 1 with ``below_native``."""
    return 1 if own["below_native"] else math.ceil(context.get("native", 1) - 1e-9)


def ladder(start: float, full: int, step: int, floor: int = 1) -> list[int]:
    """Grid sides from ``start`` (share of ``full``, at least ``floor``) to ``full``, ``step`` apart, anchored at ``full``."""
    return list(range(full, grid_of(start, full, floor) - 1, -step))[::-1]


def train_ladder(config: dict[str, Any], full: int, floor: int = 1) -> list[int]:
    return ladder(config["min_level"], full, config["level_step"], floor)


def infer_ladder(config: dict[str, Any], full: int, floor: int = 1) -> list[int]:
    """The levels inference visits, smallest first. Capped ladders keep their ends, evenly spaced."""
    if not config["variable_effort"]:
        return [grid_of(config["infer_level"], full, floor)]
    levels = ladder(config["infer_start_level"], full, config["level_step"], floor)
    cap = config["max_infer_levels"]
    if cap and len(levels) > cap:
        levels = levels[-1:] if cap == 1 else [levels[round(i * (len(levels) - 1) / (cap - 1))] for i in range(cap)]
    return levels


def ladder_outcomes(scores: Scores, thresholds: torch.Tensor, fallback: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(accuracy, mean FLOPs per sample) of the ladder at each threshold, from every level's answers on the
    same samples: a sample exits at its first level confident at the threshold (the last level otherwise)."""
    confidence, correct, flops = scores
    count, samples = len(thresholds), confidence.shape[1]
    stops = torch.cat([confidence[:-1].unsqueeze(0) >= thresholds.view(-1, 1, 1),
                       torch.ones(count, 1, samples, dtype=torch.bool)], dim=1)
    exits = stops.to(torch.uint8).argmax(dim=1)  # the first level that stops each sample
    right = correct.unsqueeze(0).expand(count, -1, -1).gather(1, exits.unsqueeze(1)).squeeze(1)
    if fallback == "wrong":
        right = right & ((exits < len(flops) - 1) | (confidence[-1].unsqueeze(0) >= thresholds.view(-1, 1)))
    cost = torch.tensor(flops, dtype=torch.float64).cumsum(0)[exits]
    return right.double().mean(dim=1), cost.mean(dim=1)


def tune_threshold(scores: Scores, *, max_drop: float, fallback: str = "largest", candidates: int = 512) -> float | None:
    """The threshold of least mean FLOPs whose accuracy is at most ``max_drop`` below the last level's alone
    (one full-level pass), among ``candidates`` quantiles of the confidences; None when none is cheaper than
    that pass (the ladder can't pay)."""
    confidence, correct, flops = scores
    if len(flops) < 2:
        return None
    values = confidence[:-1].flatten().unique()
    if len(values) > candidates:
        values = values[torch.linspace(0, len(values) - 1, candidates).round().long()]
    accuracy, cost = ladder_outcomes(scores, values, fallback)
    reference = correct[-1].double().mean()
    feasible = (accuracy >= reference - max_drop - 1e-12) & (cost < flops[-1])
    if not feasible.any():
        return None
    best = torch.where(feasible, cost, torch.inf).argmin()
    return float(values[best])


def inference_plan(config: dict[str, Any], full: int, floor: int,
                   score: Callable[[list[int]], Scores]) -> tuple[list[int], float, str]:
    """(levels, threshold, fallback): one fixed level, or the variable-effort ladder with its threshold,
    ``tuned`` on ``score(levels)`` (every level's answers on validation) or ``fixed``."""
    levels = infer_ladder(config, full, floor)
    if not config["variable_effort"] or len(levels) == 1:
        return levels, 0.0, "largest"
    if config["threshold_rule"] == "fixed":
        return levels, config["conf_threshold"], config["fallback"]
    threshold = tune_threshold(score(levels), max_drop=config["max_drop"], fallback=config["fallback"])
    return (levels[-1:], 0.0, "largest") if threshold is None else (levels, threshold, config["fallback"])


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
    (``largest``) or -1 (``wrong``). Only samples still pending reach the next level (``models.vit.ascend``,
    the code a deployed model directory runs)."""
    return EffortResult(*ascend(logits_at, images, levels, threshold, fallback=fallback), list(levels))


class ICPC(Technique):
    """ICPC on the vision tasks' stages ``train_plan`` (full grid -> training levels, a per-batch level
    sampler ``(rng, progress) -> grid``, position mode) and ``infer_plan`` (full grid and a validation scorer
    -> inference levels, confidence threshold, fallback, position mode). The pipeline's context gives the
    full grid and the native one (``full``, ``native``)."""

    name, family, stages = "icpc", "vision", ("train_plan", "infer_plan")
    description = "ICPC: compressed training levels with positional consistency, variable-effort inference"
    knobs = KNOBS
    saves = ("flops", "train_flops")
    aggressive = {"min_level": 0.5, "infer_level": 0.5}

    def training_key(self, own: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
        """The training levels (equal ladders train equal models); sampling and positions only matter
        with more than one level."""
        levels = train_ladder(own, context["full"], floor_of(own, context))
        return {"levels": levels, **({k: own[k] for k in ("level_sampling", "pos_selection")} if len(levels) > 1 else {})}

    def install(self, pipeline: Pipeline, own: dict[str, Any]) -> None:
        if self.is_off(own):
            return
        floor = floor_of(own, dict(pipeline.context))

        def train_plan(full: int) -> tuple[list[int], Callable[[random.Random, float], int], str]:
            levels = train_ladder(own, full, floor)
            sample = lambda rng, progress: sample_level(levels, own["level_sampling"], rng, progress=progress)  # noqa: E731
            return levels, sample, own["pos_selection"]

        def infer_plan(full: int, score: Callable[[list[int], str], Scores]) -> tuple[list[int], float, str, str]:
            mode = own["pos_selection"]
            return (*inference_plan(own, full, floor, lambda levels: score(levels, mode)), mode)

        pipeline.wrap("train_plan", lambda _plain: train_plan)
        pipeline.wrap("infer_plan", lambda _plain: infer_plan)
