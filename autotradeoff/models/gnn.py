"""GNN building blocks shared by the graph tasks and the graph techniques (FASTRAIN-GNN, GEENI).

Models are PyG's GCN / GAT / GraphSAGE; training is full batch with Adam, an optional edge drop per
epoch and early stopping on validation accuracy; the best-validation weights are kept. The same loop
fine-tunes a trained GNN (``train_gnn(model=...)``), on a weighted graph for GCNs. ``GraphWork``
counts what training and inference processed: messages passed (edges x layers, forward passes).
``SelfTrained`` is one trained member, ``Ensemble`` members averaged or voted on one graph, and
``Deployed`` the ensemble with the (thinned) graph it runs on, inferred full-graph (``scores``) or per
node from sampled computation graphs (``sampled_scores``, see ``models.sampling``).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from autotradeoff.cost import alone, count_flops
from autotradeoff.errors import TrialFailed
from autotradeoff.models.sampling import CSC, ComputationGraph, computation_graph, csc
from autotradeoff.progress import checkpoint

if TYPE_CHECKING:
    from torch_geometric.data import Data

__all__ = ["GraphWork", "SelfTrained", "Ensemble", "Deployed", "build_model", "drop_edges", "train_gnn", "logits",
           "accuracy"]


@dataclass
class GraphWork:
    """What a run processed, every pass counted (training steps, validation passes, calibration,
    filtering, scoring): ``edges`` = messages passed (edge count x layers, summed over forward passes),
    ``epochs`` trained, ``flops`` (flop_counter's count of each forward; a training step counts 3x its
    forward: backward ~ 2x forward)."""

    edges: int = 0
    epochs: int = 0
    flops: float = 0.0

    def add(self, other: GraphWork) -> None:
        self.edges, self.epochs, self.flops = self.edges + other.edges, self.epochs + other.epochs, self.flops + other.flops

    def count(self, model: nn.Module, x: torch.Tensor, edge_index: torch.Tensor, *, backward: bool = False) -> None:
        """One pass of ``model`` over ``edge_index`` (with its backward when ``backward``)."""
        self.edges += edge_index.size(1) * model.num_layers
        self.flops += (3.0 if backward else 1.0) * forward_flops(model, x, edge_index)


def forward_flops(model: nn.Module, x: torch.Tensor, edge_index: torch.Tensor) -> float:
    """flop_counter's count of one forward pass over ``edge_index``. A GNN's count is linear in the edge
    count (dense transforms per node, aggregation per edge), so each model is counted twice, on all and on
    half of the edges, and the line is reused; the count runs in eval mode with the RNG state kept."""
    line = model.__dict__.get("_flops_line")
    if line is None:
        training, count = model.training, edge_index.size(1)
        with torch.random.fork_rng(devices=[]):
            model.eval()
            full = count_flops(lambda: model(x, edge_index))
            half = count_flops(lambda: model(x, edge_index[:, : count // 2]))
            model.train(training)
        slope = (full - half) / max(1, count - count // 2)
        line = model.__dict__["_flops_line"] = (full - slope * count, slope)
    return line[0] + line[1] * edge_index.size(1)


@dataclass
class SelfTrained:
    """One trained member: its model, the graph it ends on (after any pruning: inference uses it), the work
    done, and the nodes it pseudolabeled with their labels (none for plain training)."""

    model: torch.nn.Module
    edge_index: torch.Tensor
    work: GraphWork = field(default_factory=GraphWork)
    pseudo: torch.Tensor | None = None  # mask of pseudolabeled nodes
    pseudo_labels: torch.Tensor | None = None
    log: list[dict[str, float]] = field(default_factory=list)  # per self-training stage: labels, accuracies, time


def build_model(config: dict[str, Any], in_channels: int, out_channels: int, *, layers: int | None = None,
                kind: str | None = None, hidden: int | None = None) -> torch.nn.Module:
    """A PyG GCN / GAT / GraphSAGE from the task knobs; ``layers``/``kind``/``hidden`` override them."""
    from torch_geometric.nn.models import GAT, GCN, GraphSAGE

    kind, heads = kind or config["model"], config["heads"]
    hidden = hidden or config["hidden"]
    common = {"in_channels": in_channels, "num_layers": layers or config["layers"], "out_channels": out_channels,
              "dropout": config["dropout"]}
    if kind == "gat":  # hidden is the width per head, as in the GAT paper (8 heads x 8)
        return GAT(hidden_channels=hidden * heads, heads=heads, **common)
    return {"gcn": GCN, "sage": GraphSAGE}[kind](hidden_channels=hidden, **common)


def drop_edges(edge_index: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """A copy of ``edge_index`` without a random share ``p`` of its (directed) edges."""
    if p <= 0:
        return edge_index
    keep = torch.rand(edge_index.size(1), generator=generator) >= p
    return edge_index[:, keep.to(edge_index.device)]


@torch.no_grad()
def logits(model: torch.nn.Module, x: torch.Tensor, edge_index: torch.Tensor,
           edge_weight: torch.Tensor | None = None, work: GraphWork | None = None) -> torch.Tensor:
    """Full-graph inference in eval mode (counted in ``work`` when given)."""
    model.eval()
    if work is not None:
        work.count(model, x, edge_index)
    return model(x, edge_index, edge_weight=edge_weight) if edge_weight is not None else model(x, edge_index)


def accuracy(pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> float:
    return float((pred[mask] == y[mask]).float().mean())


def _drop(edge_index: torch.Tensor, edge_weight: torch.Tensor | None, p: float,
          generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``drop_edges`` that drops the matching edge weights too (the same draw)."""
    if p <= 0 or edge_weight is None:
        return drop_edges(edge_index, p, generator), edge_weight
    keep = (torch.rand(edge_index.size(1), generator=generator) >= p).to(edge_index.device)
    return edge_index[:, keep], edge_weight[keep]


def train_gnn(config: dict[str, Any], data: Data, *, y: torch.Tensor, train_mask: torch.Tensor, edge_index: torch.Tensor,
              seed: int, work: GraphWork, layers: int | None = None, kind: str | None = None,
              hidden: int | None = None, edge_drop: float | None = None, model: nn.Module | None = None,
              epochs: int | None = None, edge_weight: torch.Tensor | None = None) -> tuple[torch.nn.Module, float]:
    """Train on ``y[train_mask]`` over ``edge_index`` (GCNs: weighted by ``edge_weight``); keep the weights of
    the best validation accuracy.

    ``model``: fine-tune a copy of this trained GNN (its own validation accuracy is the one to beat) instead of
    training a fresh one of the knobs; ``epochs``: instead of ``config["epochs"]``. Stops after
    ``config["patience"]`` epochs without a better validation accuracy (0: never).
    Returns (model in eval mode, best validation accuracy).
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    best_val, best_state, since_best = -1.0, None, 0
    if model is None:
        model = build_model(config, data.num_features, int(data.y.max()) + 1, layers=layers, kind=kind,
                            hidden=hidden).to(data.x.device)
    else:
        model = copy.deepcopy(model)
        best_val = accuracy(logits(model, data.x, edge_index, edge_weight, work).argmax(-1), data.y, data.val_mask)
        best_state = copy.deepcopy(model.state_dict())
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    drop = config["edge_drop"] if edge_drop is None else edge_drop
    epochs = config["epochs"] if epochs is None else epochs
    for epoch in range(epochs):
        alone.pause_point()
        model.train()
        edges, weights = _drop(edge_index, edge_weight, drop, generator)
        optimizer.zero_grad()
        out = model(data.x, edges) if weights is None else model(data.x, edges, edge_weight=weights)
        loss = torch.nn.functional.cross_entropy(out[train_mask], y[train_mask])
        if not math.isfinite(loss.item()):
            raise TrialFailed(f"non-finite training loss ({loss.item()}) at epoch {epoch}")
        loss.backward()
        optimizer.step()
        work.count(model, data.x, edges, backward=True)
        work.epochs += 1
        val = accuracy(logits(model, data.x, edge_index, edge_weight, work).argmax(-1), data.y, data.val_mask)
        checkpoint((epoch + 1) / epochs, val, samples=int(data.val_mask.sum()))  # a search may stop the trial here
        if val > best_val:
            best_val, best_state, since_best = val, copy.deepcopy(model.state_dict()), 0
        else:
            since_best += 1
            if config["patience"] and since_best >= config["patience"]:
                break
    model.load_state_dict(best_state)
    return model.eval(), best_val


class Ensemble(nn.Module):
    """Members run on one (thinned) graph; GCN members take the edge weights, the others the edges alone."""

    def __init__(self, members: list[nn.Module], kinds: list[str], combine: str = "mean"):
        super().__init__()
        self.members, self.kinds, self.combine = nn.ModuleList(members), list(kinds), combine

    @torch.no_grad()
    def member_probs(self, x: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor | None = None,
                     unweighted: torch.Tensor | None = None) -> torch.Tensor:
        """[members, nodes, classes]; members without edge weights run on ``unweighted`` (the graph with
        the down-weighted edges dropped) when it is given."""
        outs = []
        for member, kind in zip(self.members, self.kinds):
            if kind == "gcn" and edge_weight is not None:
                outs.append(member(x, edge_index, edge_weight=edge_weight).softmax(-1))
            else:
                outs.append(member(x, edge_index if unweighted is None else unweighted).softmax(-1))
        return torch.stack(outs)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor | None = None,
                unweighted: torch.Tensor | None = None) -> torch.Tensor:
        """Per-node class scores: mean probability, or votes (ties broken by mean probability)."""
        probs = self.member_probs(x, edge_index, edge_weight, unweighted)
        mean = probs.mean(0)
        if self.combine == "mean" or len(self.members) == 1:
            return mean
        votes = torch.nn.functional.one_hot(probs.argmax(-1), mean.size(-1)).sum(0).float()
        return votes + 0.5 * mean  # mean < 1 only breaks ties


@dataclass
class Deployed:
    """The ensemble as deployed: members and the (thinned) graph they run on."""

    ensemble: Ensemble
    edge_index: torch.Tensor
    edge_weight: torch.Tensor | None
    unweighted: torch.Tensor | None  # the graph for members without edge weights (down-weighted edges dropped)
    work: GraphWork  # training and preparation
    pseudo: torch.Tensor  # nodes member 0 pseudolabeled
    pseudo_labels: torch.Tensor
    log: list[dict[str, float]] = field(default_factory=list)  # member 0's self-training stages

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.ensemble(x, self.edge_index, self.edge_weight, self.unweighted)

    def index(self, num_nodes: int) -> CSC:
        """The deployed graph's CSC index, built once (as ``NeighborLoader`` does when constructed)."""
        if self.__dict__.get("_csc") is None or self._csc.ptr.numel() != num_nodes + 1:
            self._csc = csc(self.edge_index, num_nodes)
        return self._csc

    def computation_graph(self, targets: torch.Tensor, *, num_nodes: int, fanout: int,
                          generator: torch.Generator | None = None) -> ComputationGraph:
        """The targets' sampled computation graph, as deep as the deepest member."""
        hops = max(member.num_layers for member in self.ensemble.members)
        return computation_graph(self.edge_index, targets, hops=hops, fanout=fanout, index=self.index(num_nodes),
                                 generator=generator)

    def sampled_scores(self, x: torch.Tensor, targets: torch.Tensor, *, fanout: int,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-node inference: the targets' scores from their sampled computation graph alone."""
        graph = self.computation_graph(targets, num_nodes=x.size(0), fanout=fanout, generator=generator)
        weight = None if self.edge_weight is None else self.edge_weight[graph.edges]
        unweighted = None if weight is None else graph.edge_index[:, weight >= 1]
        return self.ensemble(x[graph.nodes], graph.edge_index, weight, unweighted)[: len(targets)]

    def edges(self) -> int:
        """Messages one inference passes: each member's graph edges x its layers."""
        return sum(m.num_layers * (self.edge_index if kind == "gcn" or self.unweighted is None else self.unweighted).size(1)
                   for m, kind in zip(self.ensemble.members, self.ensemble.kinds))
