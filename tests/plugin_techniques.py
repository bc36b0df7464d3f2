"""Techniques that live only in the tests, loaded by import path (``plugin_techniques:EdgeSample``): one
that plugs into the graph tasks' ``graph`` stage the way a user's own technique would, and broken ones
the conformance checks must catch."""

from __future__ import annotations

from typing import Any

import torch

from autotradeoff.knobs import Knob
from autotradeoff.techniques import Pipeline, Technique


def sample_edges(edge_index: torch.Tensor, share: float, seed: int) -> torch.Tensor:
    """``edge_index`` without a seeded random ``share`` of its edges."""
    keep = torch.rand(edge_index.size(1), generator=torch.Generator().manual_seed(seed)) >= share
    return edge_index[:, keep.to(edge_index.device)]


class EdgeSample(Technique):
    """Graph sparsification before training: every member trains and infers on a seeded sample of the edges."""

    name, family, stages = "edgesample", "graph", ("graph",)
    description = "test plug-in: keep a random sample of the edges"
    knobs = {"share": Knob("share", "float", 0.0, 0.0, 0.9, help="share of edges removed", stage="data")}
    saves = ("flops", "edges")
    aggressive = {"share": 0.5}

    def install(self, pipeline: Pipeline, own: dict[str, Any]) -> None:
        if own["share"] > 0:
            pipeline.wrap("graph", lambda plain: lambda split, *, seed: self.thin(plain(split, seed=seed), own, seed))

    @staticmethod
    def thin(split, own: dict[str, Any], seed: int):
        thinned = split.clone()
        thinned.edge_index = sample_edges(split.edge_index, own["share"], seed)
        return thinned


class BrokenEdgeSample(EdgeSample):
    """Broken on purpose: it thins the graph even with its knob off, so all-off is not the baseline."""

    name = "brokenedgesample"

    def install(self, pipeline: Pipeline, own: dict[str, Any]) -> None:
        share = max(own["share"], 0.1)
        pipeline.wrap("graph", lambda plain: lambda split, *, seed: self.thin(plain(split, seed=seed), {"share": share}, seed))


class BadBounds(EdgeSample):
    """Broken on purpose: its knob's default lies outside the bounds it declares."""

    name = "badbounds"
    knobs = {"share": Knob("share", "float", 1.5, 0.0, 0.9, help="share of edges removed", stage="data")}
