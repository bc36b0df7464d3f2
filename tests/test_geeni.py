"""GEENI's pieces on real Cora: members, isolation, edge and channel pruning, fine-tuning, combining, and
all-off = one GNN."""

import pytest
import torch

from autotradeoff.models.gnn import Ensemble, GraphWork, accuracy, logits, train_gnn
from autotradeoff.tasks import get_task
from autotradeoff.tasks.planetoid_data import load_planetoid
from autotradeoff.techniques import geeni


def deploy(config, data, seed):
    """The deployed model of the Cora task's pipeline (GEENI's ``ensemble`` stage when it is on)."""
    task = get_task("cora")
    return task.stages(task.fill_config(config), data).ensemble(data, seed=seed)


@pytest.fixture(scope="module")
def cora():
    return load_planetoid("Cora")


@pytest.fixture(scope="module")
def config():
    return get_task("cora").fill_config({"epochs": 30})


def test_isolation_removes_the_outgoing_edges_of_the_chosen_nodes_only(cora):
    nodes = torch.tensor([0, 5, 633, 1862])
    kept, weight = geeni.isolate_error_nodes(cora.edge_index, nodes)
    outgoing = torch.isin(cora.edge_index[0], nodes)
    assert weight is None and outgoing.sum() > 0
    assert torch.equal(kept, cora.edge_index[:, ~outgoing])
    incoming = torch.isin(cora.edge_index[1], nodes) & ~outgoing
    assert torch.isin(kept[1], nodes).sum() == incoming.sum() > 0  # they still listen to the others
    same, weight = geeni.isolate_error_nodes(cora.edge_index, nodes, mode="down-weight", alpha=0.25)
    assert same is cora.edge_index and torch.equal(weight[outgoing], torch.full((int(outgoing.sum()),), 0.25))
    assert (weight[~outgoing] == 1).all()


def test_edge_pruning_drops_the_lowest_weight_edges(cora):
    kept, _ = geeni.prune_edges(cora.edge_index, 0.3, cora.num_nodes)
    assert kept.size(1) == cora.edge_index.size(1) - int(0.3 * cora.edge_index.size(1))
    degree = torch.bincount(cora.edge_index[1], minlength=cora.num_nodes).float() + 1
    norm = lambda e: (degree[e[0]] * degree[e[1]]).rsqrt()  # noqa: E731
    dropped = ~torch.isin(cora.edge_index[0] * 10**4 + cora.edge_index[1], kept[0] * 10**4 + kept[1])
    assert norm(kept).min() >= norm(cora.edge_index[:, dropped]).max()


def test_channel_pruning_removes_weights_physically_and_spares_dead_channels(cora, config):
    model, _ = train_gnn(config, cora, y=cora.y, train_mask=cora.train_mask, edge_index=cora.edge_index, seed=0,
                         work=GraphWork())
    with torch.no_grad():  # silence half the hidden channels: pruning them must not change the output
        model.convs[0].lin.weight[8:] = 0
        model.convs[0].bias[8:] = 0
    smaller = geeni.prune_channels(model, 0.5, "gcn", get_task("cora").stages(config, cora).model)
    assert smaller.convs[0].lin.weight.shape == (8, 1433) and smaller.convs[1].lin.weight.shape == (7, 8)
    assert sum(p.numel() for p in smaller.parameters()) < sum(p.numel() for p in model.parameters())
    assert torch.allclose(logits(smaller, cora.x, cora.edge_index), logits(model, cora.x, cora.edge_index), atol=1e-5)


def test_arch_members_take_turns_and_match_the_task_models_total_width():
    arch = {"diversity": "arch"}
    members = [geeni.member_settings(arch, {"model": "gcn", "hidden": 16, "heads": 8}, i) for i in range(4)]
    assert [(m["kind"], m["hidden"]) for m in members] == [("gcn", 16), ("sage", 16), ("gat", 2), ("gcn", 16)]
    members = [geeni.member_settings(arch, {"model": "gat", "hidden": 8, "heads": 8}, i) for i in range(3)]
    assert [(m["kind"], m["hidden"]) for m in members] == [("gat", 8), ("gcn", 64), ("sage", 64)]  # 8 heads x 8
    assert [geeni.member_settings({"diversity": "all"}, {"model": "gcn", "hidden": 16, "heads": 4}, i)["subgraph"]
            for i in range(3)] == [False, True, True]


def test_fine_tuning_after_pruning_keeps_the_pruned_shapes_and_never_loses_validation_accuracy(cora, config):
    thin = {**config, "geeni.n_members": 2, "geeni.diversity": "arch", "geeni.isolate_frac": 0.1,
            "geeni.isolation_mode": "down-weight", "geeni.edge_prune": 0.5, "geeni.weight_sparsity": 0.75}
    pruned, tuned = deploy(thin, cora, seed=3), deploy({**thin, "geeni.finetune_epochs": 15}, cora, seed=3)
    assert [p.shape for p in pruned.ensemble.parameters()] == [p.shape for p in tuned.ensemble.parameters()]
    assert torch.equal(pruned.edge_index, tuned.edge_index) and torch.equal(pruned.edge_weight, tuned.edge_weight)
    assert tuned.work.epochs > pruned.work.epochs and tuned.work.flops > pruned.work.flops  # fine-tuning is counted
    graphs = [(tuned.edge_index, tuned.edge_weight), (tuned.unweighted, None)]  # the GCN member, the SAGE member
    val = lambda m, edges, weight: accuracy(logits(m, cora.x, edges, weight).argmax(-1), cora.y, cora.val_mask)  # noqa: E731
    for before, after, graph in zip(pruned.ensemble.members, tuned.ensemble.members, graphs):
        assert val(after, *graph) >= val(before, *graph)  # the pruned weights are the first checkpoint to beat


def test_error_scores_rank_uncertain_nodes_first():
    probs = torch.tensor([[[0.9, 0.1], [0.5, 0.5], [0.8, 0.2]],
                          [[0.9, 0.1], [0.5, 0.5], [0.1, 0.9]]])  # node 0 sure, 1 uncertain, 2 disputed
    for how in ("entropy", "maxprob"):
        assert geeni.error_scores(probs, how).argmin() == 0
    assert geeni.error_scores(probs, "disagreement").argmax() == 2


def test_votes_and_means_combine_members():
    class Fixed(torch.nn.Module):
        def __init__(self, out):
            super().__init__()
            self.out = out

        def forward(self, x, edge_index):
            return self.out

    outs = [torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 0.1]]), torch.tensor([[0.0, 0.1]])]
    members = [Fixed(o) for o in outs]
    edges = torch.zeros(2, 0, dtype=torch.long)
    assert Ensemble(members, ["gcn"] * 3, "vote")(None, edges).argmax() == 1  # two votes beat one sure member
    assert Ensemble(members, ["gcn"] * 3, "mean")(None, edges).argmax() == 0


def test_all_off_is_the_single_gnn_and_isolation_really_thins_the_graph(cora, config):
    single = deploy(config, cora, seed=3)
    direct, _ = train_gnn(config, cora, y=cora.y, train_mask=cora.train_mask, edge_index=cora.edge_index, seed=3,
                          work=GraphWork())
    assert single.edge_index is cora.edge_index and len(single.ensemble.members) == 1
    assert torch.allclose(single.scores(cora.x), logits(direct, cora.x, cora.edge_index).softmax(-1))
    thinned = deploy({**config, "geeni.n_members": 3, "geeni.isolate_frac": 0.2, "geeni.edge_prune": 0.2,
                      "geeni.weight_sparsity": 0.5}, cora, seed=3)
    assert single.edges() * 3 > thinned.edges() and thinned.edge_index.size(1) < cora.edge_index.size(1) * 0.8
    assert sum(p.numel() for p in thinned.ensemble.parameters()) < 3 * sum(p.numel() for p in direct.parameters())


@pytest.mark.parametrize("diversity, mode, combine", [("seeds", "drop", "mean"), ("arch", "down-weight", "vote"),
                                                      ("width", "drop", "vote"), ("subgraph", "down-weight", "mean"),
                                                      ("all", "drop", "mean")])
def test_every_kind_of_ensemble_runs_to_finite_costs(diversity, mode, combine):
    from autotradeoff.engine.trial import run_trial

    config = {"epochs": 5, "geeni.n_members": 3, "geeni.diversity": diversity, "geeni.isolate_frac": 0.3,
              "geeni.isolation_mode": mode, "geeni.edge_prune": 0.5, "geeni.weight_sparsity": 0.9, "geeni.combine": combine,
              "geeni.error_score": "disagreement"}
    metrics = run_trial("cora", config, {"latency_repeats": 3, "latency_warmup": 1})
    assert 0 < metrics["val_accuracy"] <= 1 and 0 < metrics["test_accuracy"] <= 1 and metrics["latency_ms"] > 0 and metrics["flops"] > 0
    assert metrics["edges"] < 3 * 2 * 10556 * 0.5 + 1  # pruned graph, three 2-layer members
    assert 0 < metrics["sampled_flops"] < metrics["flops"] and metrics["sampled_latency_ms"] > 0
    assert 0 < metrics["val_sampled_accuracy"] <= 1 and 0 < metrics["test_sampled_accuracy"] <= 1


def test_isolation_and_pruning_shrink_the_per_node_computation_graphs():
    from autotradeoff.engine.trial import run_trial

    fast = {"latency_repeats": 1, "latency_warmup": 0}
    plain = run_trial("cora", {"epochs": 5, "geeni.n_members": 2}, fast)
    thinned = run_trial("cora", {"epochs": 5, "geeni.n_members": 2, "geeni.isolate_frac": 0.3, "geeni.edge_prune": 0.5}, fast)
    assert thinned["sampled_nodes"] < plain["sampled_nodes"] and thinned["sampled_flops"] < plain["sampled_flops"]
