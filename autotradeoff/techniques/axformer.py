"""AxFormer (techniques.md section 1): remove from a fine-tuned encoder what a held-out split says it can spare, then
re-fine-tune the smaller model.

It acts on the text tasks' ``approximate(seed)`` stage. A *plan* (``models/bert.py``: per layer, attention and
FFN kept or dropped, the heads and FFN neurons kept, top-K) is chosen one of two ways:
- ``sites`` (searched): counts and shares the sampler sets. Whole attention/FFN blocks go from the top layer
  down (needing no fine-tune); in the other layers the heads and FFN neuron groups kept are those whose
  removal would raise the selection loss most, estimated to first order on the fine-tuned model
  (``taylor_importance``). ``hard_attn_layers`` gives the lowest layers top-K attention.
- ``greedy`` (the paper's pass, on the task's selection split): each whole sublayer (attention, FFN) is removed
  alone and its effect on the mean selection loss measured; they are tried cumulatively from the least
  harmful, then the heads and FFN groups left, from the least important, in chunks that halve on a rejection;
  ``unit_pass`` ``stop`` ends the pass at the first single unit rejected, ``all`` (as the paper, which tries
  every group and head) puts a rejected unit back and goes on, the chunk doubling again after each acceptance.
  A change is kept when the mean loss stays within ``1 + loss_tol`` of the fine-tuned model's and at least
  ``accept_frac`` of the samples are no worse (the paper's second test; 0: off). Top-K is not tried: it still
  computes the full score matrix, so it saves no time in eager PyTorch. ``block_order`` ``loss_per_ms`` (not in
  the paper) tries the whole sublayers by what they cost against what they save: each block's time inside the
  deployed batch-1 call is measured (``cost.measure_parts``; blocks of the same shapes share their mean), and
  the order is a knapsack's greedy one (``block_order``). On MiniLM-L6 (SST-2, 3 seeds, README "Benchmarks") it
  chose the paper's plan on two seeds and a faster, better one on the third: 1.78x at -0.27 against 1.67x at -0.42.
Both read the task's selection split (``losses``/``gradients``; the validation split unless the task holds one out);
``loss_per_ms`` also times the pipeline's ``latency_call`` (the batch-1 call the trial's latency is measured on).
Plans that read the fine-tuned model are cached on disk by (that fine-tune's key, the plan's knobs, the split), with the
passes, time and FLOPs they cost, so later trials reuse them (and still report their cost).

``refinetune``: ``pretrained`` (the paper's step 6, default): the pretrained encoder with the plan applied is
fine-tuned as the baseline was (same seed and schedule; ``refinetune_epochs`` 0 = the task's epochs);
``finetuned``: the approximated fine-tune trains on; ``off``: deployed as it is. ``distill`` > 0 (not in the
paper) mixes distillation from the plain fine-tune's logits into the re-fine-tune's loss with that weight (T = 2);
the plain fine-tune is then part of the model's training work. Re-fine-tuned models are cached by (fine-tune
key, plan, re-fine-tune settings).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autotradeoff import progress
from autotradeoff.cost import measure_parts
from autotradeoff.data import cached_artifact
from autotradeoff.knobs import Knob
from autotradeoff.models.bert import apply_plan, full_plan
from autotradeoff.techniques.base import Pipeline, Technique

__all__ = ["AxFormer", "plan_from_sites", "greedy_plan", "block_times", "block_order", "approximate", "taylor_importance", "head_importance",
           "neuron_importance", "plan_knobs"]


def _knob(name: str, kind: str, default: Any, *args: Any, **kwargs: Any) -> Knob:
    return Knob(name, kind, default, *args, stage="approximate", **kwargs)


KNOBS = {
    "ax_mode": _knob("ax_mode", "categorical", "sites", choices=("sites", "greedy"),
                     help="sites: the counts and shares below; greedy: the paper's validation-driven pass"),
    "hard_attn_layers": _knob("hard_attn_layers", "int", 0, 0, 48, help="lowest layers given top-K attention"),
    "hard_attn_k": _knob("hard_attn_k", "int", 30, 1, 512, help="attention probabilities kept per query"),
    "drop_attn_layers": _knob("drop_attn_layers", "int", 0, 0, 48, help="top layers whose attention block is removed"),
    "drop_ffn_layers": _knob("drop_ffn_layers", "int", 0, 0, 48, help="top layers whose FFN block is removed"),
    "heads_kept": _knob("heads_kept", "float", 1.0, 0.01, 1.0, help="share of heads kept in the other layers"),
    "ffn_kept": _knob("ffn_kept", "float", 1.0, 0.01, 1.0, help="share of FFN neuron groups kept in the other layers"),
    "ffn_group_size": _knob("ffn_group_size", "int", 128, 1, 4096, help="FFN neurons per prunable group"),
    "loss_tol": _knob("loss_tol", "float", 0.05, 0.0, 1.0, help="greedy: accepted rise of the mean validation loss"),
    "accept_frac": _knob("accept_frac", "float", 0.0, 0.0, 1.0, help="greedy: share of samples that must be no worse"),
    "unit_pass": _knob("unit_pass", "categorical", "stop", choices=("stop", "all"),
                       help="greedy: end at the first rejected head/FFN group, or try every one (the paper)"),
    "block_order": _knob("block_order", "categorical", "loss", choices=("loss", "loss_per_ms"),
                         help="greedy: try whole sublayers least harmful first (the paper) or by loss rise per ms saved"),
    "refinetune": _knob("refinetune", "categorical", "pretrained", choices=("off", "pretrained", "finetuned"),
                        help="after approximating: fine-tune from the pretrained weights, go on from the fine-tune, or not"),
    "refinetune_epochs": _knob("refinetune_epochs", "int", 0, 0, 50, help="re-fine-tuning epochs (0: the task's epochs)"),
    "distill": _knob("distill", "float", 0.0, 0.0, 1.0,
                     help="re-fine-tuning: weight of distillation from the plain fine-tune's logits (0: off, the paper)"),
}
_SITES = ("hard_attn_layers", "hard_attn_k", "drop_attn_layers", "drop_ffn_layers", "heads_kept", "ffn_kept", "ffn_group_size")
_GREEDY = ("loss_tol", "accept_frac", "ffn_group_size")
_LATER = {"unit_pass": "stop", "block_order": "loss"}  # greedy knobs added later: in a plan's key only when not the default


def plan_knobs(own: dict[str, Any]) -> dict[str, Any]:
    """The knobs a plan depends on (with the fine-tune it is read from): its cache key. Re-fine-tuning
    settings are not among them, so trials that differ only there share one plan."""
    if own["ax_mode"] != "greedy":
        return {"ax_mode": "sites", **{k: own[k] for k in _SITES}}
    later = {k: own[k] for k, default in _LATER.items() if own[k] != default}  # plans cached before them keep their keys
    return {"ax_mode": "greedy", **{k: own[k] for k in _GREEDY}, **later}


def head_importance(layer: nn.Module) -> torch.Tensor:
    """Per head: norm of its output-projection columns (a weight-only stand-in where no loss is known)."""
    attn = layer.attention
    size = attn.self.attention_head_size
    weight = attn.output.dense.weight.detach()  # [hidden, heads*size]
    return weight.view(weight.size(0), -1, size).norm(dim=(0, 2))


def neuron_importance(layer: nn.Module) -> torch.Tensor:
    """Per FFN neuron: |input row| x |output column| (a weight-only stand-in where no loss is known)."""
    return layer.intermediate.dense.weight.detach().norm(dim=1) * layer.output.dense.weight.detach().norm(dim=0)


def taylor_importance(model: nn.Module, gradients: Callable[[nn.Module, Callable[[], None]], float]
                      ) -> tuple[list[torch.Tensor], list[torch.Tensor], float]:
    """(per layer head scores, per layer FFN neuron scores, FLOPs): how much the validation loss would change
    if the unit were removed, to first order. Removing a head or a neuron zeroes its columns of the output
    projection, so the change is ``w . dL/dw`` over them; its absolute value is summed over batches.
    ``gradients(model, after)`` runs forward and backward on validation batches, calling ``after()`` on each."""
    layers = model.bert.encoder.layer
    heads = [torch.zeros(layer.attention.self.num_attention_heads) for layer in layers]
    neurons = [torch.zeros(layer.intermediate.dense.out_features) for layer in layers]

    def after() -> None:
        for index, layer in enumerate(layers):
            out = layer.attention.output.dense.weight
            size = layer.attention.self.attention_head_size
            heads[index] += (out * out.grad).detach().view(out.size(0), -1, size).sum(dim=(0, 2)).abs()
            ffn = layer.output.dense.weight
            neurons[index] += (ffn * ffn.grad).detach().sum(dim=0).abs()

    flops = gradients(model, after)
    return heads, neurons, flops


def _top(scores: torch.Tensor, keep: int) -> list[int]:
    return sorted(scores.topk(keep).indices.tolist())


def _group_scores(neurons: torch.Tensor, group: int) -> torch.Tensor:
    """Per group of ``group`` consecutive neurons (at most the layer's width): the sum of their scores."""
    groups = len(neurons) // group
    return neurons[: groups * group].view(groups, group).sum(dim=1)


def plan_from_sites(encoder: nn.Module, config: dict[str, Any], scores: tuple[list, list] | None = None) -> list[dict]:
    """The plan the ``sites`` knobs describe for this encoder (a ``BertModel``); layer counts past the model's
    depth mean every layer. ``scores``: per-layer (head, neuron) importances (``taylor_importance``); without
    them the weight norms choose (the same shapes: what a check before training needs)."""
    layers = encoder.encoder.layer
    plan = full_plan(len(layers))
    for index, (layer, site) in enumerate(zip(layers, plan)):
        from_top = len(layers) - 1 - index
        if from_top < config["drop_attn_layers"]:
            site["attention"] = "drop"
        else:
            heads = layer.attention.self.num_attention_heads
            keep = max(1, round(config["heads_kept"] * heads))
            ranked = scores[0][index] if scores else head_importance(layer)
            site["heads"] = None if keep == heads else _top(ranked, keep)
            site["topk"] = config["hard_attn_k"] if index < config["hard_attn_layers"] else 0
        if from_top < config["drop_ffn_layers"]:
            site["ffn"] = "drop"
        else:
            group = min(config["ffn_group_size"], layer.intermediate.dense.out_features)
            grouped = _group_scores(scores[1][index] if scores else neuron_importance(layer), group)
            keep = max(1, round(config["ffn_kept"] * len(grouped)))
            if keep < len(grouped):
                site["ffn_neurons"] = [g * group + i for g in _top(grouped, keep) for i in range(group)]
    return plan


def approximate(model: nn.Module, plan: list[dict]) -> nn.Module:
    """A copy of a ``*ForSequenceClassification`` BERT with ``plan`` removed physically."""
    new = copy.deepcopy(model)
    apply_plan(new.bert, plan)
    new.config.axformer_plan = plan
    return new


SUBLAYERS = {"attention": {"attention": "drop", "topk": 0}, "ffn": {"ffn": "drop"}}  # whole sublayers the greedy pass drops


def without_sublayer(plan: list[dict], layer: int, kind: str) -> list[dict]:
    """``plan`` with layer ``layer``'s whole ``kind`` sublayer (``SUBLAYERS``) removed."""
    new = copy.deepcopy(plan)
    new[layer].update(SUBLAYERS[kind])
    return new


def _without(plan: list[dict], units: list[tuple], model: nn.Module, group: int) -> list[dict]:
    """``plan`` with the ``(layer, kind, number)`` units removed (``head`` or FFN ``group``), never a block's last."""
    new = copy.deepcopy(plan)
    for index, kind, number in units:
        layer, site = model.bert.encoder.layer[index], new[index]
        if kind == "head":
            kept = site["heads"] or list(range(layer.attention.self.num_attention_heads))
            site["heads"] = [h for h in kept if h != number] if len(kept) > 1 else kept
        else:
            kept = site["ffn_neurons"] or list(range(layer.intermediate.dense.out_features))
            rest = [n for n in kept if not number * group <= n < (number + 1) * group]
            site["ffn_neurons"] = rest or kept
    return new


def block_times(model: nn.Module, call: Callable[[], object], *, threads: int) -> dict[tuple[int, str], float]:
    """``(layer, "attention" | "ffn") -> ms`` each whole sublayer of ``model``'s encoder takes inside ``call()``:
    what removing it saves, but for the LayerNorm that stays. Blocks of the same shapes do the same work, so
    they share their mean: timing noise does not order identical layers."""
    layers = model.bert.encoder.layer
    parts = {(i, kind): ends for i, layer in enumerate(layers)
             for kind, ends in (("attention", (layer.attention, layer.attention)), ("ffn", (layer.intermediate, layer.output)))}
    measured = measure_parts(call, parts, threads=threads)
    shapes = {key: (key[1], *(tuple(p.shape) for m in dict.fromkeys(ends) for p in m.parameters()))
              for key, ends in parts.items()}
    same = {shape: [measured[key] for key in parts if shapes[key] == shape] for shape in set(shapes.values())}
    return {key: sum(same[shapes[key]]) / len(same[shapes[key]]) for key in parts}


def block_order(effect: dict[Any, float], base: float, saved_ms: dict[Any, float]) -> list[Any]:
    """The blocks in the order ``loss_per_ms`` tries them (a knapsack's greedy order): first those whose removal
    alone does not raise the mean loss ``effect`` above ``base``, the largest time saving first and, among equal
    savings (blocks of the same shapes), the lowest loss first; then the others by loss rise per ms saved, the
    cheapest first. (Dividing a fall of the loss by the ms would put small savings first.)"""
    free = sorted((n for n in effect if effect[n] <= base), key=lambda n: (-saved_ms[n], effect[n]))
    rise = sorted((n for n in effect if effect[n] > base), key=lambda n: (effect[n] - base) / max(saved_ms[n], 1e-9))
    return free + rise


def greedy_plan(model: nn.Module, losses: Callable[[nn.Module], torch.Tensor], scores: tuple[list, list],
                config: dict[str, Any], block_ms: dict[tuple[int, str], float] | None = None) -> tuple[list[dict], int]:
    """The greedy pass (module docstring); returns (plan, selection passes). ``losses`` scores a model on the
    selection split (one loss per sample); ``scores`` ranks heads and FFN neurons (``taylor_importance``);
    ``block_ms`` (``block_times``) is what each whole sublayer costs, which ``block_order`` ``loss_per_ms`` needs."""
    by_cost = config["block_order"] == "loss_per_ms"
    if by_cost and block_ms is None:
        raise ValueError("block_order loss_per_ms needs the blocks' times (block_ms)")
    layers = model.bert.encoder.layer
    base = losses(model)
    limit, seen = (1 + config["loss_tol"]) * float(base.mean()), {}

    def measure(candidate: list[dict]) -> torch.Tensor:
        key = json.dumps(candidate)
        if key not in seen:
            seen[key] = losses(approximate(model, candidate))
        return seen[key]

    def passes(candidate: list[dict]) -> bool:
        out = measure(candidate)
        return float(out.mean()) <= limit and float((out <= base).float().mean()) >= config["accept_frac"]

    plan = full_plan(len(layers))
    effect = {(i, kind): float(measure(without_sublayer(plan, i, kind)).mean()) for i in range(len(layers)) for kind in SUBLAYERS}
    order = block_order(effect, float(base.mean()), block_ms) if by_cost else sorted(effect, key=effect.get)
    for key in order:  # whole sublayers (by default least harmful first)
        if effect[key] <= limit and passes(candidate := without_sublayer(plan, *key)):
            plan = candidate
    group = min(config["ffn_group_size"], layers[0].intermediate.dense.out_features)
    plan = _greedy_units(plan, model, scores, group, passes, every=config["unit_pass"] == "all")
    return plan, 1 + len(seen)


def _greedy_units(plan: list[dict], model: nn.Module, scores: tuple[list, list], group: int,
                  passes: Callable[[list[dict]], bool], *, every: bool) -> list[dict]:
    """Heads and FFN groups of the blocks kept, least important first, removed in chunks (an eighth of them at
    first) that halve on a rejection; a rejected single unit ends the pass, or with ``every`` stays and the pass
    goes on with the next unit, the chunk doubling (up to its first size) after each acceptance."""
    units = [(float(s), (i, "head", h)) for i, site in enumerate(plan) if site["attention"] != "drop"
             for h, s in enumerate(scores[0][i])]
    units += [(float(s), (i, "group", g)) for i, site in enumerate(plan) if site["ffn"] != "drop"
              for g, s in enumerate(_group_scores(scores[1][i], group))]
    order = [unit for _, unit in sorted(units)]
    first = max(1, len(order) // 8)
    start, chunk = 0, first
    while start < len(order):
        candidate = _without(plan, order[start:start + chunk], model, group)
        if candidate != plan and passes(candidate):
            plan, start = candidate, start + chunk
            chunk = min(2 * chunk, first) if every else chunk
        elif candidate == plan:
            start += chunk
        elif chunk > 1:
            chunk //= 2
        elif every:
            start += 1
        else:
            break
    return plan


class AxFormer(Technique):
    """AxFormer on the text tasks' ``approximate(seed)`` stage: -> (deployed model, selection passes, training
    stats of everything that produced it)."""

    name, family, stages = "axformer", "text", ("approximate",)
    description = "AxFormer: remove attention/FFN blocks, heads and FFN groups (by validation loss), re-fine-tune"
    knobs = KNOBS
    saves = ("flops", "params")
    aggressive = {"drop_ffn_layers": 2, "heads_kept": 0.5, "ffn_kept": 0.5}

    def is_off(self, own: dict[str, Any]) -> bool:
        """Nothing approximated (the fine-tuned baseline is used as is), whatever the unused knobs say."""
        return own["ax_mode"] == "sites" and not any(own[k] for k in ("hard_attn_layers", "drop_attn_layers",
                                                                      "drop_ffn_layers")) \
            and own["heads_kept"] >= 1.0 and own["ffn_kept"] >= 1.0

    def install(self, pipeline: Pipeline, own: dict[str, Any]) -> None:
        if not self.is_off(own):
            pipeline.wrap("approximate", lambda _plain: lambda seed: self._approximate(pipeline, own, seed))

    @staticmethod
    def reads_model(own: dict[str, Any]) -> bool:
        """Does the plan depend on the fine-tuned weights (a greedy pass, or heads/FFN groups ranked)?"""
        return own["ax_mode"] == "greedy" or own["heads_kept"] < 1.0 or own["ffn_kept"] < 1.0

    def _approximate(self, pipeline: Pipeline, own: dict[str, Any], seed: int) -> tuple[nn.Module, int, Any]:
        if pipeline.dry:  # before training: the untrained model and no work; a greedy plan is not known
            model, stats = pipeline.tuned(seed)
            if own["ax_mode"] == "greedy":
                pipeline.unknown.update(("size", "inference"))
                return model, 0, stats
            return approximate(model, plan_from_sites(model.bert, own)), 0, stats
        tuned = None
        if self.reads_model(own) or own["refinetune"] != "pretrained" or own["distill"] > 0:
            with progress.quiet() if own["refinetune"] == "pretrained" else contextlib.nullcontext():
                tuned = pipeline.tuned(seed)  # not the deployed model's training when re-fine-tuned from pretrained
        plan, passes, cost = self._plan(pipeline, own, seed, tuned[0] if tuned else None)
        if own["refinetune"] == "off":
            model, stats = approximate(tuned[0], plan), tuned[1]
        else:
            model, stats = self._refinetune(pipeline, own, seed, plan, tuned)
            stats = stats + tuned[1] if tuned else stats
        return model, passes, dataclasses.replace(stats, time_s=stats.time_s + cost["time_s"],
                                                  flops=stats.flops + cost["flops"])

    @staticmethod
    def _refinetune(pipeline: Pipeline, own: dict[str, Any], seed: int, plan: list[dict], tuned: tuple | None) -> tuple:
        """The planned model trained again (cached): from the pretrained weights with the same seed as the
        baseline's fine-tune, or on from the fine-tune with a fresh batch order."""
        epochs = own["refinetune_epochs"] or pipeline.task_config["epochs"]
        scratch = own["refinetune"] == "pretrained"
        teacher = tuned[0].eval() if own["distill"] > 0 else None

        def make() -> tuple[nn.Module, Any]:
            model = approximate(pipeline.pretrained(seed) if scratch else tuned[0], plan)
            return model, pipeline.finetune(model, epochs=epochs, seed=seed if scratch else seed + 10_000,
                                               teacher=teacher, distill=own["distill"])

        what = {"axformer": {"plan": plan, "from": own["refinetune"], "epochs": epochs,
                             **({"distill": own["distill"]} if teacher else {})}}  # keys of earlier caches unchanged
        return pipeline.cached(pipeline.key(seed, what), make)

    @staticmethod
    def _plan(pipeline: Pipeline, own: dict[str, Any], seed: int, tuned: nn.Module | None) -> tuple[list[dict], int, dict]:
        """(plan, selection passes, {time_s, flops} it cost): from the knobs alone, or read from the fine-tune
        ``tuned``: its unit importances (one gradient pass, cached per fine-tune) and, for a greedy plan, the
        pass itself (cached per fine-tune and ``plan_knobs``). Cached work is reported at what it cost."""
        if tuned is None or not AxFormer.reads_model(own):
            structure = tuned if tuned is not None else pipeline.pretrained(seed)
            return plan_from_sites(structure.bert, own), 0, {"time_s": 0.0, "flops": 0.0}
        split = dict(pipeline.context.get("selection", {}))  # in the keys only when not validation: old keys hold
        scores = _cached_json(pipeline.key(seed, {"axformer_importance": 1, **split}), lambda: _timed(
            lambda: dict(zip(("heads", "neurons", "flops"), _as_lists(taylor_importance(tuned, pipeline.gradients))))))
        ranks = ([torch.tensor(h) for h in scores["heads"]], [torch.tensor(n) for n in scores["neurons"]])
        if own["ax_mode"] == "sites":
            return plan_from_sites(tuned.bert, own, ranks), 1, scores

        def make() -> dict[str, Any]:
            flops = {"sum": 0.0}

            def losses(model: nn.Module) -> torch.Tensor:
                out, spent = pipeline.losses(model)
                flops["sum"] += spent
                return out

            timed = {}
            if own["block_order"] == "loss_per_ms":
                inputs, threads = pipeline.latency_call()
                timed = block_times(tuned.eval(), lambda: tuned(**inputs), threads=threads)
            plan, passes = greedy_plan(tuned, losses, ranks, own, timed)
            return {"plan": plan, "passes": passes, "flops": flops["sum"],
                    **({"block_ms": {f"{i}/{kind}": ms for (i, kind), ms in timed.items()}} if timed else {})}

        found = _cached_json(pipeline.key(seed, {"axformer_plan": plan_knobs(own), **split}), lambda: _timed(make))
        return found["plan"], found["passes"] + 1, {"time_s": found["time_s"] + scores["time_s"],
                                                    "flops": found["flops"] + scores["flops"]}


def _as_lists(found: tuple[list[torch.Tensor], list[torch.Tensor], float]) -> tuple[list, list, float]:
    return [h.tolist() for h in found[0]], [n.tolist() for n in found[1]], found[2]


def _timed(make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    start = time.perf_counter()
    return {**make(), "time_s": time.perf_counter() - start}


def _cached_json(key: str, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``make()``'s JSON-able result, cached on disk under ``axplan/<key>`` (made once across processes)."""
    return cached_artifact("axplan", key, make=make, load=lambda folder: json.loads((Path(folder) / "plan.json").read_text()),
                           save=lambda value, folder: (Path(folder) / "plan.json").write_text(json.dumps(value)))
