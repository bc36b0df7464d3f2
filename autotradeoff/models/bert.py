"""An approximated BERT as a Hugging Face model: AxFormer's sites removed physically, loadable with
``from_pretrained`` (techniques.md section 1).

Each site function changes one layer of a ``BertModel``-style encoder in place and is exact:
removing a head or an FFN neuron gives the same output as zeroing its contribution. A *plan* (one
dict per layer, stored in the config as ``axformer_plan``) names the sites; ``apply_plan`` builds
that structure, so ``AxBertForSequenceClassification.from_pretrained`` recreates the smaller
shapes before loading weights.

This file imports only torch and transformers: ``autotradeoff apply`` copies it into the model
directory, so ``AutoModelForSequenceClassification.from_pretrained(dir, trust_remote_code=True)``
works on a machine without autotradeoff.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification

__all__ = ["prune_heads", "keep_ffn_neurons", "drop_ffn", "drop_attention", "use_topk_attention",
           "topk_probabilities", "TopKSelfAttention", "apply_plan", "full_plan", "AxBertConfig",
           "AxBertForSequenceClassification"]


def _keep_rows(linear: nn.Linear, index: torch.Tensor) -> nn.Linear:
    """A smaller Linear with only the output features in ``index``."""
    new = nn.Linear(linear.in_features, len(index), bias=linear.bias is not None).to(linear.weight)
    with torch.no_grad():
        new.weight.copy_(linear.weight[index])
        if linear.bias is not None:
            new.bias.copy_(linear.bias[index])
    return new


def _keep_columns(linear: nn.Linear, index: torch.Tensor) -> nn.Linear:
    """A smaller Linear reading only the input features in ``index`` (bias unchanged)."""
    new = nn.Linear(len(index), linear.out_features, bias=linear.bias is not None).to(linear.weight)
    with torch.no_grad():
        new.weight.copy_(linear.weight[:, index])
        if linear.bias is not None:
            new.bias.copy_(linear.bias)
    return new


def prune_heads(attention: nn.Module, heads: Iterable[int]) -> None:
    """Remove attention ``heads`` of a ``BertAttention``: Q/K/V rows and output-projection columns."""
    self_attn = attention.self
    size, count = self_attn.attention_head_size, self_attn.num_attention_heads
    heads = sorted(set(heads))
    if any(not 0 <= h < count for h in heads) or len(heads) >= count:
        raise ValueError(f"heads to prune must be distinct in [0, {count}) and leave one; got {heads}")
    keep = torch.tensor([h * size + i for h in range(count) if h not in heads for i in range(size)])
    for name in ("query", "key", "value"):
        setattr(self_attn, name, _keep_rows(getattr(self_attn, name), keep))
    attention.output.dense = _keep_columns(attention.output.dense, keep)
    self_attn.num_attention_heads = count - len(heads)
    self_attn.all_head_size = self_attn.num_attention_heads * size


def keep_ffn_neurons(layer: nn.Module, neurons: Iterable[int]) -> None:
    """Keep only ``neurons`` of a layer's feed-forward block (intermediate rows, output columns)."""
    keep = torch.tensor(sorted(set(neurons)))
    if len(keep) == 0:
        raise ValueError("keep at least one FFN neuron; use drop_ffn to remove the block")
    layer.intermediate.dense = _keep_rows(layer.intermediate.dense, keep)
    layer.output.dense = _keep_columns(layer.output.dense, keep)


class _FFNRemoved(nn.Module):
    """Stands in for BertIntermediate + BertOutput: the layer output is LayerNorm(residual input)."""

    def __init__(self, norm: nn.LayerNorm):
        super().__init__()
        self.LayerNorm = norm

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor | None = None) -> torch.Tensor:
        return hidden_states if input_tensor is None else self.LayerNorm(input_tensor)


def drop_ffn(layer: nn.Module) -> None:
    """Remove a layer's whole FFN block (the paper's drop-FFN site)."""
    layer.output = _FFNRemoved(layer.output.LayerNorm)
    layer.intermediate = nn.Identity()


class _AttentionRemoved(nn.Module):
    """Stands in for BertAttention: the attention output is LayerNorm(residual input)."""

    def __init__(self, norm: nn.LayerNorm):
        super().__init__()
        self.norm = norm

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, None]:
        return self.norm(hidden_states), None


def drop_attention(layer: nn.Module) -> None:
    """Remove a layer's whole self-attention block (the paper's drop-attention site)."""
    layer.attention = _AttentionRemoved(layer.attention.output.LayerNorm)


def topk_probabilities(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Softmax over the last axis, then keep the ``k`` largest probabilities per row and zero the rest
    (the paper's selective hard attention; rows are not renormalised)."""
    probs = torch.softmax(scores, dim=-1)
    if k >= probs.size(-1):
        return probs
    values, index = probs.topk(k, dim=-1)
    return torch.zeros_like(probs).scatter_(-1, index, values)


class TopKSelfAttention(nn.Module):
    """Eager self-attention with top-K probabilities, reusing a ``BertSelfAttention``'s projections."""

    def __init__(self, original: nn.Module, k: int):
        super().__init__()
        self.query, self.key, self.value = original.query, original.key, original.value
        self.num_attention_heads = original.num_attention_heads
        self.attention_head_size = original.attention_head_size
        self.all_head_size = original.all_head_size
        self.k = k

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                **kwargs: object) -> tuple[torch.Tensor, None]:
        shape = (*hidden_states.shape[:-1], -1, self.attention_head_size)
        q, k, v = (proj(hidden_states).view(shape).transpose(1, 2) for proj in (self.query, self.key, self.value))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.attention_head_size)
        if attention_mask is not None:
            scores = scores.masked_fill(~attention_mask, float("-inf")) if attention_mask.dtype == torch.bool \
                else scores + attention_mask
        context = topk_probabilities(scores, self.k) @ v
        return context.transpose(1, 2).reshape(*hidden_states.shape[:-1], -1), None


def use_topk_attention(layer: nn.Module, k: int) -> None:
    """Replace a layer's self-attention by top-K hard attention (same weights)."""
    if k < 1:
        raise ValueError(f"top-K attention needs k >= 1; got {k}")
    layer.attention.self = TopKSelfAttention(layer.attention.self, k)


def full_plan(num_layers: int) -> list[dict]:
    """The plan that changes nothing: every site kept."""
    return [{"attention": "keep", "topk": 0, "heads": None, "ffn": "keep", "ffn_neurons": None} for _ in range(num_layers)]


def apply_plan(encoder_model: nn.Module, plan: list[dict]) -> None:
    """Apply a per-layer plan to a ``BertModel`` in place (heads/ffn_neurons are the kept indices)."""
    layers = encoder_model.encoder.layer
    if len(plan) != len(layers):
        raise ValueError(f"plan has {len(plan)} layers; the model has {len(layers)}")
    for layer, site in zip(layers, plan):
        if site["ffn"] == "drop":
            drop_ffn(layer)
        elif site.get("ffn_neurons") is not None:
            keep_ffn_neurons(layer, site["ffn_neurons"])
        if site["attention"] == "drop":
            drop_attention(layer)
            continue
        if site.get("heads") is not None:
            count = layer.attention.self.num_attention_heads
            gone = [h for h in range(count) if h not in set(site["heads"])]
            if gone:
                prune_heads(layer.attention, gone)
        if site.get("topk"):
            use_topk_attention(layer, int(site["topk"]))


class AxBertConfig(BertConfig):
    model_type = "bert"  # a BERT config with a plan: AutoConfig and AutoTokenizer load it with no remote code

    def __init__(self, axformer_plan: list[dict] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.axformer_plan = axformer_plan


class AxBertForSequenceClassification(BertForSequenceClassification):
    """BERT for sequence classification with the config's AxFormer plan applied (eager attention)."""

    config_class = AxBertConfig

    def __init__(self, config: AxBertConfig):
        config._attn_implementation = "eager"  # top-K attention and pruned heads are eager code
        super().__init__(config)
        if config.axformer_plan:
            apply_plan(self.bert, config.axformer_plan)
