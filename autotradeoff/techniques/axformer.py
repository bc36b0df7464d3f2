"""AxFormer (techniques.md section 1): which approximation sites of a fine-tuned encoder to apply.

Two ways to choose a plan (see ``axbert.py`` for the plan format and the physical removal):
- ``sites`` (searched): a few counts and shares that the sampler sets directly. Top-K attention
  goes into the lowest layers first and whole blocks are dropped from the top first, as the
  paper's greedy pass orders them; heads and FFN neurons kept are chosen by weight importance.
- ``greedy`` (the paper's pass): try each site on the held-out selection slice and keep it only if
  the mean loss falls below the best so far and more than ``accept_frac`` of the samples lose no
  accuracy (loss <= their baseline loss); near misses (< ``fallback_tol`` x best) fall back to
  single heads or FFN neuron groups.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from autotradeoff.errors import TrialFailed
from autotradeoff.space import Knob
from autotradeoff.techniques.axbert import apply_plan, full_plan

__all__ = ["KNOBS", "is_off", "plan_from_sites", "greedy_plan", "approximate", "head_importance", "neuron_importance"]

KNOBS = {
    "ax_mode": Knob("ax_mode", "categorical", "sites", choices=("sites", "greedy"),
                    help="sites: the knobs below; greedy: the paper's accuracy-driven pass"),
    "hard_attn_layers": Knob("hard_attn_layers", "int", 0, 0, 48, help="lowest layers given top-K attention"),
    "hard_attn_k": Knob("hard_attn_k", "int", 30, 1, 512, help="attention probabilities kept per query"),
    "drop_attn_layers": Knob("drop_attn_layers", "int", 0, 0, 48, help="top layers whose attention block is removed"),
    "drop_ffn_layers": Knob("drop_ffn_layers", "int", 0, 0, 48, help="top layers whose FFN block is removed"),
    "heads_kept": Knob("heads_kept", "float", 1.0, 0.01, 1.0, help="share of heads kept in the other layers"),
    "ffn_kept": Knob("ffn_kept", "float", 1.0, 0.01, 1.0, help="share of FFN neuron groups kept in the other layers"),
    "ffn_group_size": Knob("ffn_group_size", "int", 128, 1, 4096, help="FFN neurons per prunable group"),
    "accept_frac": Knob("accept_frac", "float", 0.5, 0.0, 1.0, help="greedy: share of samples that must not get worse"),
    "fallback_tol": Knob("fallback_tol", "float", 1.1, 1.0, 2.0, help="greedy: try finer sites when loss < tol x best"),
    "refinetune_epochs": Knob("refinetune_epochs", "int", 0, 0, 10, help="epochs of fine-tuning after approximation"),
}


def is_off(config: dict[str, Any]) -> bool:
    """True when the config approximates nothing (the fine-tuned baseline is used as is)."""
    return config["ax_mode"] == "sites" and not any(config[k] for k in ("hard_attn_layers", "drop_attn_layers",
                                                                          "drop_ffn_layers")) \
        and config["heads_kept"] >= 1.0 and config["ffn_kept"] >= 1.0


def head_importance(layer: nn.Module) -> torch.Tensor:
    """Per head: norm of its output-projection columns (how much it can move the residual stream)."""
    attn = layer.attention
    size = attn.self.attention_head_size
    weight = attn.output.dense.weight.detach()  # [hidden, heads*size]
    return weight.view(weight.size(0), -1, size).norm(dim=(0, 2))


def neuron_importance(layer: nn.Module) -> torch.Tensor:
    """Per FFN neuron: |input row| x |output column|, the scale of its contribution."""
    return layer.intermediate.dense.weight.detach().norm(dim=1) * layer.output.dense.weight.detach().norm(dim=0)


def _top(scores: torch.Tensor, keep: int) -> list[int]:
    return sorted(scores.topk(keep).indices.tolist())


def plan_from_sites(encoder: nn.Module, config: dict[str, Any]) -> list[dict]:
    """The plan the ``sites`` knobs describe for this encoder (a ``BertModel``)."""
    layers = encoder.encoder.layer
    count = len(layers)
    for name in ("hard_attn_layers", "drop_attn_layers", "drop_ffn_layers"):
        if config[name] > count:
            raise TrialFailed(f"{name}={config[name]} exceeds the model's {count} layers")
    plan = full_plan(count)
    for index, (layer, site) in enumerate(zip(layers, plan)):
        from_top = count - 1 - index
        if from_top < config["drop_attn_layers"]:
            site["attention"] = "drop"
        else:
            heads = layer.attention.self.num_attention_heads
            keep = max(1, round(config["heads_kept"] * heads))
            site["heads"] = None if keep == heads else _top(head_importance(layer), keep)
            site["topk"] = config["hard_attn_k"] if index < config["hard_attn_layers"] else 0
        if from_top < config["drop_ffn_layers"]:
            site["ffn"] = "drop"
        else:
            width, group = layer.intermediate.dense.out_features, config["ffn_group_size"]
            groups = max(1, width // group)
            keep = max(1, round(config["ffn_kept"] * groups))
            if keep < groups:
                scores = neuron_importance(layer)[: groups * group].view(groups, group).sum(dim=1)
                site["ffn_neurons"] = [g * group + i for g in _top(scores, keep) for i in range(group)]
    return plan


def approximate(model: nn.Module, plan: list[dict]) -> nn.Module:
    """A copy of a ``*ForSequenceClassification`` BERT with ``plan`` removed physically."""
    new = copy.deepcopy(model)
    apply_plan(new.bert, plan)
    new.config.axformer_plan = plan
    return new


def greedy_plan(model: nn.Module, sample_losses: Callable[[nn.Module], torch.Tensor], config: dict[str, Any]) -> tuple[list[dict], int]:
    """The paper's greedy pass; returns (plan, selection passes spent). ``sample_losses`` scores a model
    on the selection slice (one loss per sample)."""
    layers = model.bert.encoder.layer
    plan = full_plan(len(layers))
    base = sample_losses(model)
    state = {"best": float(base.mean()), "passes": 1}

    def attempt(candidate: list[dict]) -> tuple[bool, float]:
        losses = sample_losses(approximate(model, candidate))
        state["passes"] += 1
        mean = float(losses.mean())
        accepted = mean < state["best"] and float((losses <= base).float().mean()) > config["accept_frac"]
        if accepted:
            state["best"] = mean
        return accepted, mean

    def try_site(index: int, **change: Any) -> tuple[bool, float]:
        candidate = copy.deepcopy(plan)
        candidate[index].update(change)
        accepted, mean = attempt(candidate)
        if accepted:
            plan[index].update(change)
        return accepted, mean

    for index in range(len(layers)):  # selective hard attention, bottom-up
        try_site(index, topk=config["hard_attn_k"])
    for index in reversed(range(len(layers))):  # FFN blocks top-down, falling back to neuron groups
        accepted, mean = try_site(index, ffn="drop")
        if not accepted and mean < config["fallback_tol"] * state["best"]:
            width, group = layers[index].intermediate.dense.out_features, config["ffn_group_size"]
            for start in range(0, width, group):
                kept = plan[index]["ffn_neurons"] or list(range(width))
                rest = [n for n in kept if not start <= n < start + group]
                if rest and len(rest) < len(kept):
                    try_site(index, ffn_neurons=rest)
    for index in reversed(range(len(layers))):  # attention blocks top-down, falling back to heads
        accepted, mean = try_site(index, attention="drop", topk=0)
        if not accepted and mean < config["fallback_tol"] * state["best"]:
            heads = layers[index].attention.self.num_attention_heads
            for head in range(heads):
                kept = plan[index]["heads"] or list(range(heads))
                if head in kept and len(kept) > 1:
                    try_site(index, heads=[h for h in kept if h != head])
    return plan, state["passes"]
