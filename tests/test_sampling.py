"""Per-node (neighbour-sampled) inference on real Cora: the computation graph is the in-neighbourhood
``k_hop_subgraph`` finds, a fanout caps each node's sampled in-edges, and with every neighbour kept a
GraphSAGE member's per-node outputs equal its full-graph ones."""

import pytest
import torch

from autotradeoff.models.gnn import Deployed, Ensemble, GraphWork, build_model, logits
from autotradeoff.models.sampling import computation_graph, csc
from autotradeoff.tasks import get_task
from autotradeoff.tasks.planetoid_data import load_planetoid

TARGETS = torch.tensor([0, 140, 633, 1862, 2000])


@pytest.fixture(scope="module")
def cora():
    return load_planetoid("Cora")


def test_with_every_neighbour_the_computation_graph_is_the_k_hop_in_neighbourhood(cora):
    from torch_geometric.utils import k_hop_subgraph

    graph = computation_graph(cora.edge_index, TARGETS, hops=2, fanout=0, index=csc(cora.edge_index, cora.num_nodes))
    subset, _, _, _ = k_hop_subgraph(TARGETS, 2, cora.edge_index, num_nodes=cora.num_nodes)
    assert torch.equal(graph.nodes[: len(TARGETS)], TARGETS) and len(set(graph.nodes.tolist())) == len(graph.nodes)
    assert set(graph.nodes.tolist()) == set(subset.tolist())
    assert torch.equal(graph.nodes[graph.edge_index], cora.edge_index[:, graph.edges])  # relabelled, real edges
    hop1 = cora.edge_index[0, torch.isin(cora.edge_index[1], TARGETS)]
    expected = torch.isin(cora.edge_index[1], torch.cat([TARGETS, hop1])).nonzero().view(-1)
    assert torch.equal(graph.edges.sort().values, expected)  # every edge into a target or a hop-1 node, nothing else


def test_a_fanout_caps_each_nodes_sampled_in_edges(cora):
    index = csc(cora.edge_index, cora.num_nodes)
    degree = torch.bincount(cora.edge_index[1], minlength=cora.num_nodes)
    graph = computation_graph(cora.edge_index, TARGETS, hops=1, fanout=2, index=index,
                              generator=torch.Generator().manual_seed(0))
    kept = torch.bincount(graph.edge_index[1], minlength=len(graph.nodes))[: len(TARGETS)]
    assert torch.equal(kept, degree[TARGETS].clamp(max=2)) and (degree[TARGETS] > 2).any()
    again = computation_graph(cora.edge_index, TARGETS, hops=1, fanout=2, index=index,
                              generator=torch.Generator().manual_seed(0))
    assert torch.equal(graph.edges, again.edges)  # the same seed draws the same neighbours


def test_graphsage_per_node_inference_with_every_neighbour_equals_full_graph_inference(cora):
    task = get_task("cora")
    torch.manual_seed(0)
    sage = build_model(task.fill_config({"model": "sage"}), cora.num_features, 7).eval()
    deployed = Deployed(Ensemble([sage], ["sage"]).eval(), cora.edge_index, None, None, GraphWork(),
                        torch.zeros_like(cora.train_mask), cora.y)
    full = logits(sage, cora.x, cora.edge_index).softmax(-1)[TARGETS]
    per_node = deployed.sampled_scores(cora.x, TARGETS, fanout=0)
    assert torch.allclose(per_node, full, atol=1e-5)  # mean aggregation needs only the targets' 2-hop in-edges
