"""Per-node inference on sampled computation graphs: what PyG's ``NeighborLoader`` does for a batch of target
nodes, in plain PyTorch.

PyG 2.8's ``NeighborSampler`` calls ``pyg-lib`` or ``torch-sparse`` (compiled extensions, neither installed
here: it raises ImportError), so the same sampling is written out: from the targets, each hop visits the
nodes not seen yet and keeps up to ``fanout`` of their incoming edges, drawn uniformly without replacement
(0: all of them); the computation graph is the visited nodes (targets first) and the kept edges, relabelled.
A model run on it gives the targets' outputs; as with ``NeighborLoader``, a GCN normalises by the degrees
inside the computation graph, so an output can differ slightly from the full-graph one. The CSC index (edges
grouped by target) is built once per graph, as ``NeighborLoader`` does when it is constructed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["CSC", "ComputationGraph", "computation_graph", "csc"]


@dataclass(frozen=True)
class CSC:
    """Edges grouped by target: node ``i``'s incoming edges are ``order[ptr[i]:ptr[i + 1]]``."""

    ptr: torch.Tensor
    order: torch.Tensor


@dataclass(frozen=True)
class ComputationGraph:
    """``nodes``: global ids, the targets first; ``edge_index``: the kept edges relabelled to positions in
    ``nodes``; ``edges``: their positions in the full graph's ``edge_index`` (to pick their weights)."""

    nodes: torch.Tensor
    edge_index: torch.Tensor
    edges: torch.Tensor


def csc(edge_index: torch.Tensor, num_nodes: int) -> CSC:
    """The CSC index of ``edge_index`` (a stable sort of the edges by target)."""
    order = torch.argsort(edge_index[1], stable=True)
    ptr = torch.zeros(num_nodes + 1, dtype=torch.long, device=edge_index.device)
    ptr[1:] = torch.bincount(edge_index[1], minlength=num_nodes).cumsum(0)
    return CSC(ptr, order)


def _incoming(index: CSC, frontier: torch.Tensor, fanout: int, generator: torch.Generator | None) -> torch.Tensor:
    """Positions of up to ``fanout`` incoming edges of each frontier node (all of them when ``fanout`` is 0)."""
    count = index.ptr[frontier + 1] - index.ptr[frontier]
    offset = torch.repeat_interleave(count.cumsum(0) - count, count)
    segment = torch.repeat_interleave(torch.arange(len(frontier), device=frontier.device), count)
    rank = torch.arange(len(segment), device=frontier.device) - offset  # position inside its node's edges
    edges = index.order[index.ptr[frontier][segment] + rank]
    if fanout <= 0 or not (count > fanout).any():
        return edges
    keys = segment.double() + torch.rand(len(segment), generator=generator, dtype=torch.float64).to(segment.device)
    return edges[keys.argsort()][rank < fanout]  # shuffled inside each node's segment, the first fanout kept


def computation_graph(edge_index: torch.Tensor, targets: torch.Tensor, *, hops: int, fanout: int, index: CSC,
                      generator: torch.Generator | None = None) -> ComputationGraph:
    """The ``hops``-hop computation graph of ``targets`` with up to ``fanout`` sampled in-edges per node."""
    num_nodes = index.ptr.numel() - 1
    seen = torch.zeros(num_nodes, dtype=torch.bool, device=targets.device)
    seen[targets] = True
    frontier, nodes, kept = targets, [targets], []
    for _ in range(hops):
        edges = _incoming(index, frontier, fanout, generator)
        kept.append(edges)
        sources = edge_index[0, edges]
        frontier = torch.unique(sources[~seen[sources]])
        seen[frontier] = True
        nodes.append(frontier)
    nodes, edges = torch.cat(nodes), torch.cat(kept)
    position = torch.full((num_nodes,), -1, dtype=torch.long, device=targets.device)
    position[nodes] = torch.arange(len(nodes), device=targets.device)
    return ComputationGraph(nodes, position[edge_index[:, edges]], edges)
