"""GEENI (techniques.md section 5): GNN ensembles made accurate and cheap by isolating error nodes.

``n_members`` diverse GNNs are trained (``diversity``: seeds only; GCN/SAGE/GAT in turn; widths
x1, x0.5, x2, ...; each on its own graph without ``subgraph_drop`` of the edges; or all of these).
A node's chance of being misclassified is scored from the members' outputs (``error_score``:
disagreement with the ensemble, entropy of the mean, 1 - max probability); the top ``isolate_frac``
of the unlabeled nodes lose their outgoing messages (``drop``: the edges are removed; ``down-weight``:
GCN members weight them by ``isolation_alpha``, members without edge weights drop them). The thinned
graph is pruned further (``edge_prune``: the edges of least GCN weight 1/sqrt(deg_i deg_j)), hidden
channels of GCN/SAGE members are removed by weight magnitude (``weight_sparsity``), and the members'
probabilities are averaged or voted (``combine``). Scoring and thinning happen once per graph
(transductive): the deployed ensemble runs on the thinned graph, which really has fewer edges.
With ``n_members: 1`` and nothing isolated or pruned it is the single GNN, the task's baseline.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from autotradeoff.space import Knob
from autotradeoff.tasks.gnn import build_model

__all__ = ["KNOBS", "is_off", "member_settings", "error_scores", "isolate_error_nodes", "prune_edges",
           "prune_channels", "Ensemble"]

KNOBS = {
    "n_members": Knob("n_members", "int", 1, 1, 16, help="GNNs in the ensemble"),
    "diversity": Knob("diversity", "categorical", "seeds", choices=("seeds", "arch", "width", "subgraph", "all"),
                      help="what differs between members besides the seed"),
    "subgraph_drop": Knob("subgraph_drop", "float", 0.2, 0.0, 0.9, help="edges each member's own training graph lacks"),
    "error_score": Knob("error_score", "categorical", "entropy", choices=("disagreement", "entropy", "maxprob"),
                        help="how a node's chance of being misclassified is scored"),
    "isolate_frac": Knob("isolate_frac", "float", 0.0, 0.0, 0.9, help="share of unlabeled nodes isolated"),
    "isolation_mode": Knob("isolation_mode", "categorical", "drop", choices=("drop", "down-weight"),
                           help="remove or down-weight the isolated nodes' outgoing messages"),
    "isolation_alpha": Knob("isolation_alpha", "float", 0.1, 0.0, 1.0, help="weight of down-weighted messages"),
    "edge_prune": Knob("edge_prune", "float", 0.0, 0.0, 0.95, help="share of the remaining edges pruned"),
    "weight_sparsity": Knob("weight_sparsity", "float", 0.0, 0.0, 0.95, help="share of hidden channels removed"),
    "combine": Knob("combine", "categorical", "mean", choices=("mean", "vote"), help="average probabilities or vote"),
}
_KINDS = ("gcn", "sage", "gat")
_WIDTHS = (1.0, 0.5, 2.0, 0.75, 1.5)


def is_off(config: dict[str, Any]) -> bool:
    return config["n_members"] == 1 and not config["isolate_frac"] and not config["edge_prune"] \
        and not config["weight_sparsity"]


def member_settings(config: dict[str, Any], index: int) -> dict[str, Any]:
    """Member ``index``'s kind, width and whether it trains on its own edge-dropped graph (member 0 is the
    task's own model)."""
    diversity = config["diversity"]
    kind = config["model"]
    if diversity in ("arch", "all"):
        kind = _KINDS[(_KINDS.index(kind) + index) % len(_KINDS)]
    width = _WIDTHS[index % len(_WIDTHS)] if diversity in ("width", "all") else 1.0
    return {"kind": kind, "hidden": max(1, round(config["hidden"] * width)),
            "subgraph": diversity in ("subgraph", "all") and index > 0}


def error_scores(probs: torch.Tensor, how: str) -> torch.Tensor:
    """Per node, higher = more likely wrong. ``probs``: [members, nodes, classes]."""
    mean = probs.mean(0)
    if how == "entropy":
        return -(mean * mean.clamp_min(1e-12).log()).sum(-1)
    if how == "maxprob":
        return 1.0 - mean.max(-1).values
    return (probs.argmax(-1) != mean.argmax(-1)).float().mean(0) + 1e-3 * (1.0 - mean.max(-1).values)  # ties: confidence


def isolate_error_nodes(edge_index: torch.Tensor, nodes: torch.Tensor, *, mode: str = "drop", alpha: float = 0.1,
                        edge_weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Remove (``drop``) or weight by ``alpha`` (``down-weight``) the edges whose source is in ``nodes``."""
    outgoing = torch.isin(edge_index[0], nodes)
    if mode == "drop":
        return edge_index[:, ~outgoing], None if edge_weight is None else edge_weight[~outgoing]
    weight = torch.ones(edge_index.size(1), device=edge_index.device) if edge_weight is None else edge_weight.clone()
    weight[outgoing] *= alpha
    return edge_index, weight


def prune_edges(edge_index: torch.Tensor, share: float, num_nodes: int,
                edge_weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Remove the ``share`` of edges with the smallest GCN normalisation 1/sqrt(deg_src deg_dst)."""
    if share <= 0:
        return edge_index, edge_weight
    degree = torch.bincount(edge_index[1], minlength=num_nodes).float() + 1  # + the self-loop
    norm = (degree[edge_index[0]] * degree[edge_index[1]]).rsqrt()
    keep = norm.argsort(descending=True)[: edge_index.size(1) - int(share * edge_index.size(1))].sort().values
    return edge_index[:, keep], None if edge_weight is None else edge_weight[keep]


@torch.no_grad()
def prune_channels(model: nn.Module, sparsity: float, config: dict[str, Any], kind: str) -> nn.Module:
    """A new, narrower GCN/SAGE: each hidden layer keeps the channels with the largest in x out weight norm.
    GAT members are returned unchanged (their channels are tied to heads)."""
    hidden = model.hidden_channels
    kept = max(1, math.ceil(hidden * (1 - sparsity)))
    if kind == "gat" or sparsity <= 0 or kept == hidden or model.num_layers < 2:
        return model
    state = model.state_dict()
    keep = []
    for i in range(model.num_layers - 1):
        out_rows = [v for k, v in state.items() if k.startswith(f"convs.{i}.") and v.dim() == 2]
        in_cols = [v for k, v in state.items() if k.startswith(f"convs.{i + 1}.") and v.dim() == 2]
        score = sum(w.norm(dim=1) for w in out_rows) * sum(w.norm(dim=0) for w in in_cols)
        keep.append(score.argsort(descending=True)[:kept].sort().values)
    smaller = build_model(config, model.in_channels, model.out_channels, layers=model.num_layers, kind=kind, hidden=kept)
    new_state = {}
    for key, value in state.items():
        layer = int(key.split(".")[1])
        if layer < len(keep):  # this layer's outputs shrink
            value = value[keep[layer]]
        if layer > 0 and value.dim() == 2:  # and the next one's inputs
            value = value[:, keep[layer - 1]]
        new_state[key] = value.clone()
    smaller.load_state_dict(new_state)
    return smaller.to(next(model.parameters()).device).eval()


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
