import optuna
import pytest

from autotradeoff.errors import UsageError
from autotradeoff.presets import load_space

from conftest import REPO, SMALL_CORA


def write(tmp_path, text):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return str(path)


def test_shipped_cora_space_is_valid_and_samples_inside_its_ranges():
    space = load_space("cora")
    assert space.task == "cora" and [str(o) for o in space.objectives] == ["val_accuracy:max", "latency_ms:min"]
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(30):
        config = space.suggest(study.ask())
        for name, knob in space.searched.items():
            if knob.active(config):
                assert knob.check(config[name], name) == config[name]
        if config["model"] != "gat":
            assert config["heads"] == space.task_knobs["heads"].default


@pytest.mark.parametrize("name", ["cora-fewshot", "cora-ensemble", "citeseer", "pubmed"])
def test_shipped_graph_spaces_start_from_their_baselines(name):
    from autotradeoff.tasks import get_task
    from autotradeoff.techniques import get_technique

    space = load_space(name)
    task = get_task(space.task)
    fastrain, geeni = get_technique("fastrain"), get_technique("geeni")
    configs = [task.fill_config({**space.constants, **c}) for c in space.reference_configs()]
    assert all(geeni.is_off(geeni.own(c)) and fastrain.is_off(fastrain.own(c)) for c in configs[:1])  # the plain GNN
    if name == "cora-fewshot":  # then plain self-training (every FASTRAIN switch off), then CaGCN-st (calibration only)
        plain, cagcn_st = fastrain.own(configs[1]), fastrain.own(configs[2])
        switches = ("dynamic_depth", "dynamic_drop", "spf", "pgp", "stop_early")
        assert plain["stages"] == 4 and not any(plain[k] for k in switches) and plain["calibrate"] == "none"
        assert cagcn_st == {**plain, "calibrate": "cagcn", "calib_epochs": 200, "calib_lr": 0.001}
        assert configs[1]["hidden"] == configs[2]["hidden"] == 64 and configs[2]["patience"] == 100
        assert {fastrain.key(k) for k in fastrain.knobs} - {fastrain.key(k) for k in (
            "depth_small", "depth_large", "drop_small", "drop_large", "calib_epochs", "spf_samples", "spf_drop",
            "spf_rule")} <= set(space.searched)
    if name == "cora-ensemble":  # then the plain ensemble: members, nothing isolated or pruned
        own = geeni.own(configs[1])
        assert own["n_members"] == 5 and not own["isolate_frac"] and not own["weight_sparsity"]
        ours, unpruned = geeni.own(configs[2]), geeni.own(configs[3])  # then GEENI, and GEENI unpruned at full width
        assert ours["edge_prune"] == 0.3 and ours["weight_sparsity"] == 0.5
        assert unpruned == {**ours, "edge_prune": 0.0, "weight_sparsity": 0.0}
        assert {geeni.key(k) for k in geeni.knobs} <= set(space.searched)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        config = space.suggest(study.ask())
        assert all(knob.check(config[n], n) == config[n] for n, knob in space.searched.items() if knob.active(config))


@pytest.mark.parametrize("name", ["sst2", "sst2-greedy", "rte", "cola", "mrpc", "qnli"])
def test_shipped_glue_spaces_are_valid_and_their_baseline_is_the_plain_fine_tune(name):
    space = load_space(name)
    base = {**{k: v.default for k, v in space.task_knobs.items()}, **space.constants, **space.baseline()}
    assert base["tokendrop.batching"] == "random" and base["tokendrop.drop_mode"] == "off"  # a bare YAML `off` would be False
    if name != "sst2-greedy":
        assert base["axformer.ax_mode"] == "sites" and base["axformer.drop_ffn_layers"] == 0 and base["axformer.heads_kept"] == 1.0
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(10):
        config = space.suggest(study.ask())
        assert all(knob.check(config[n], n) == config[n] for n, knob in space.searched.items() if knob.active(config))


def test_conditional_knob_is_only_asked_when_its_parent_matches():
    space = load_space("cora")
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    asked = [study.ask() for _ in range(40)]
    configs = [space.suggest(t) for t in asked]
    for trial, config in zip(asked, configs):
        assert ("heads" in trial.params) == (config["model"] == "gat")


def test_a_range_with_a_step_samples_its_grid_and_the_baseline_lies_on_it(tmp_path):
    text = SMALL_CORA.replace("dropout: {low: 0.0, high: 0.8}", "dropout: {low: 0.05, high: 0.65, step: 0.15}").replace(
        "epochs: {low: 5, high: 30}", "epochs: {low: 5, high: 29, step: 4}")
    space = load_space(write(tmp_path, text))
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    configs = [space.suggest(study.ask()) for _ in range(60)]
    assert {c["dropout"] for c in configs} == {0.05, 0.2, 0.35, 0.5, 0.65}  # the grid's values, no float residue
    assert {c["epochs"] for c in configs} == {5, 9, 13, 17, 21, 25, 29}
    base = space.baseline()  # the task's dropout 0.5 and epochs 200 (clipped to 29): on the grid
    assert base["dropout"] == 0.5 and base["epochs"] == 29


def test_baseline_is_the_task_default_clipped_into_the_space(tmp_path):
    space = load_space(write(tmp_path, SMALL_CORA))
    base = space.baseline()
    assert base["model"] == "gcn" and base["layers"] == 2 and base["hidden"] == 16
    assert base["epochs"] == 30  # default 200 clipped to the space's high


@pytest.mark.parametrize("change, message", [
    (("layers: {low: 1, high: 2}", "layerz: {low: 1, high: 2}"), "unknown knob 'layerz' for task cora; choices: model"),
    (("layers: {low: 1, high: 2}", "layers: {low: 3, high: 2}"), "knobs.layers: low must be <= high; got low=3, high=2"),
    (("layers: {low: 1, high: 2}", "layers: {low: 1, high: 12}"), "knobs.layers.high must be an int in [1, 6]; got 12."),
    (("layers: {low: 1, high: 2}", "layers: {low: 1.5, high: 2}"), "knobs.layers.low must be an int in [1, 6]; got 1.5."),
    (("layers: {low: 1, high: 2}", "layers: {low: 1, hi: 2}"), "knobs.layers: unknown key 'hi'; allowed:"),
    (("model: {choices: [gcn, sage]}", "model: {choices: [gcn, mlp]}"), "knobs.model.choices[1] must be one of gcn, gat, sage; got 'mlp'."),
    (("model: {choices: [gcn, sage]}", "model: {choices: []}"), "knobs.model.choices must be a non-empty list"),
    (("lr: {low: 0.005, high: 0.05, log: true}", "lr: {low: 0.0, high: 0.05, log: true}"), "lr.low must be a float in [1e-05, 1]"),
    (("latency_repeats: 5", "latency_repeatz: 5"), "unknown fidelity setting 'latency_repeatz'"),
    (("{val_accuracy: max, latency_ms: min}", "{val_accuracy: max, speed: min}"), "unknown metric 'speed'; choices: val_accuracy"),
    (("{val_accuracy: max, latency_ms: min}", "{val_accuracy: max}"), "needs at least 2 objectives"),
    (("{val_accuracy: max, latency_ms: min}", "{val_accuracy: up, latency_ms: min}"), "objectives.val_accuracy must be max or min; got 'up'"),
    (("{val_accuracy: max, latency_ms: min}", "{test_accuracy: max, latency_ms: min}"), "'test_accuracy' is measured on the test split"),
    (("task: cora", "task: cora\nconstraints: ['test_accuracy >= 0.5']"), "'test_accuracy' is measured on the test split"),
    (("task: cora", "task: cora\nsampler: tpe"), "unknown key 'sampler'; allowed:"),
    (("task: cora", "task: sst3"),
     "unknown task 'sst3'; choices: cifar10, citeseer, cola, cora, cora-curves, fashion-mnist, mrpc, nasbench-graph:arxiv"),
    (("epochs: {low: 5, high: 30}", "epochs: {low: 5, high: 30, when: {heads: 8}}"), "'heads' is not a knob listed before it"),
    (("epochs: {low: 5, high: 30}", "epochs: [5, 30"), "is not valid YAML"),
    (("dropout: {low: 0.0, high: 0.8}", "dropout: {low: 0.0, high: 0.8, step: 0.3}"),
     "knobs.dropout: high - low (0.8) must be a whole number of steps of 0.3."),
    (("dropout: {low: 0.0, high: 0.8}", "dropout: {low: 0.0, high: 0.8, step: 0}"), "knobs.dropout.step must be a number > 0; got 0."),
    (("epochs: {low: 5, high: 30}", "epochs: {low: 5, high: 30, step: 2.5}"), "knobs.epochs.step must be an int > 0; got 2.5."),
    (("lr: {low: 0.005, high: 0.05, log: true}", "lr: {low: 0.005, high: 0.05, log: true, step: 0.005}"),
     "knobs.lr: step and log cannot be combined"),
])
def test_bad_space_yaml_gives_one_line_naming_the_value(tmp_path, change, message):
    old, new = change
    assert old in SMALL_CORA
    with pytest.raises(UsageError) as err:
        load_space(write(tmp_path, SMALL_CORA.replace(old, new)))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_objectives_flag_overrides_the_yaml():
    space = load_space("cora", objectives="val_accuracy,flops:min,params")
    assert [str(o) for o in space.objectives] == ["val_accuracy:max", "flops:min", "params:min"]


def test_space_for_another_task_is_refused(tmp_path):
    with pytest.raises(UsageError, match="is a space for task 'cora', not 'citeseer'"):
        load_space(str(REPO / "search_spaces" / "cora.yaml"), task_name="citeseer")
