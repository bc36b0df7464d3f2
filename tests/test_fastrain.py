"""FASTRAIN-GNN's pieces on real Cora with few epochs: splits, pruning, filtering, and all-off = baselines."""

import pytest
import torch

from autotradeoff.tasks import get_task
from autotradeoff.tasks.gnn import GraphWork, logits, train_gnn
from autotradeoff.tasks.planetoid import load_planetoid, make_split
from autotradeoff.techniques import fastrain

FAST = {"epochs": 30}


@pytest.fixture(scope="module")
def cora():
    return load_planetoid("Cora")


@pytest.fixture(scope="module")
def config():
    return get_task("cora").fill_config(FAST)


@pytest.fixture(scope="module")
def split(cora):
    return make_split(cora, 3, seed=7)


def test_few_label_split_draws_k_per_class_outside_val_and_test_reproducibly(cora, split):
    counts = torch.bincount(cora.y[split.train_mask], minlength=7)
    assert counts.tolist() == [3] * 7
    assert not (split.train_mask & (cora.val_mask | cora.test_mask)).any()
    assert torch.equal(make_split(cora, 3, seed=7).train_mask, split.train_mask)
    assert not torch.equal(make_split(cora, 3, seed=8).train_mask, split.train_mask)
    assert make_split(cora, 0, seed=7) is cora  # 0: the public split itself


def test_pruning_removes_exactly_the_cross_label_edges_between_training_nodes(cora):
    train = torch.rand(cora.num_nodes, generator=torch.Generator().manual_seed(0)) < 0.3
    labels = torch.randint(0, 7, (cora.num_nodes,), generator=torch.Generator().manual_seed(1))
    kept = fastrain.prune_cross_label_edges(cora.edge_index, train, labels)
    src, dst = cora.edge_index
    cross = train[src] & train[dst] & (labels[src] != labels[dst])
    assert 0 < int(cross.sum()) < cora.edge_index.size(1)
    assert torch.equal(kept, cora.edge_index[:, ~cross])  # every other edge survives, in order
    ks, kd = kept
    assert not (train[ks] & train[kd] & (labels[ks] != labels[kd])).any()


def test_filtering_keeps_only_predictions_stable_on_every_sampled_graph(cora, split, config):
    model, _ = train_gnn(config, split, y=split.y, train_mask=split.train_mask, edge_index=split.edge_index,
                         seed=0, work=GraphWork())
    pred = logits(model, split.x, split.edge_index).argmax(-1)
    stable = fastrain.stable_predictions(model, split.x, split.edge_index, pred, samples=5, drop=0.3, rule="all",
                                         generator=torch.Generator().manual_seed(3), work=GraphWork())
    replay = torch.Generator().manual_seed(3)  # the same five edge-dropped graphs, predicted one by one
    agree = torch.stack([logits(model, split.x, fastrain.drop_edges(split.edge_index, 0.3, replay)).argmax(-1) == pred
                         for _ in range(5)])
    assert torch.equal(stable, agree.all(0))
    assert 0 < int((~stable).sum()) < cora.num_nodes  # some predictions do flip: the filter has work to do
    majority = fastrain.stable_predictions(model, split.x, split.edge_index, pred, samples=5, drop=0.3, rule="majority",
                                           generator=torch.Generator().manual_seed(3), work=GraphWork())
    assert torch.equal(majority, agree.sum(0) >= 3) and (majority & ~stable).any()


def test_one_stage_with_every_switch_off_is_plain_supervised_training(split, config):
    work = GraphWork()
    direct, _ = train_gnn(config, split, y=split.y, train_mask=split.train_mask, edge_index=split.edge_index,
                          seed=5, work=work)
    trained = fastrain.self_train(config, split, seed=5)
    assert trained.edge_index is split.edge_index and not trained.pseudo.any()
    assert torch.equal(logits(trained.model, split.x, split.edge_index), logits(direct, split.x, split.edge_index))
    assert trained.work.edges == work.edges and trained.work.epochs == 30


def test_plain_self_training_adds_exactly_the_confident_unlabeled_nodes(split, config):
    trained = fastrain.self_train({**config, "stages": 2}, split, seed=5)
    first, _ = train_gnn(config, split, y=split.y, train_mask=split.train_mask, edge_index=split.edge_index,
                         seed=5, work=GraphWork())  # stage 0 is seeded with seed + 0
    confidence, pred = logits(first, split.x, split.edge_index).softmax(-1).max(-1)
    expected = (confidence > 0.8) & ~split.train_mask & ~split.val_mask
    assert expected.any() and torch.equal(trained.pseudo, expected)
    assert torch.equal(trained.pseudo_labels[expected], pred[expected])


def test_every_switch_on_runs_and_prunes_only_cross_label_training_edges(split, config):
    on = {**config, "stages": 3, "dynamic_depth": True, "dynamic_drop": True, "calibrate": True, "calib_epochs": 20,
          "spf": True, "spf_samples": 4, "pgp": True, "conf_threshold": 0.6}
    trained = fastrain.self_train(on, split, seed=1)
    train = split.train_mask | trained.pseudo
    src, dst = split.edge_index
    removed = ~torch.isin(src * split.num_nodes + dst, trained.edge_index[0] * split.num_nodes + trained.edge_index[1])
    assert removed.any()
    labels = trained.pseudo_labels
    assert (train[src[removed]] & train[dst[removed]] & (labels[src[removed]] != labels[dst[removed]])).all()
    assert float(train.float().mean()) > 0.025 and trained.model.num_layers == 2  # pseudolabels made the set large


def test_depth_and_edge_drop_follow_the_training_set_size(config):
    on = {**config, "dynamic_depth": True, "dynamic_drop": True}
    assert fastrain.stage_depth(on, 0.01) == 3 and fastrain.stage_depth(on, 0.1) == 2
    assert fastrain.stage_depth(config, 0.01) == config["layers"]
    assert fastrain.stage_edge_drop(on, 0.01, 1) == 0.0  # one label per class: no drop
    assert fastrain.stage_edge_drop(on, 0.01, 5) == 0.1 and fastrain.stage_edge_drop(on, 0.1, 5) == 0.2
