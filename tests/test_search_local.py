"""The engine with the in-process runner: real Optuna SQLite storage, real Cora, budgets and resume."""

import socket
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import optuna
import pytest
from optuna.trial import TrialState

from autotradeoff.engine.search import search
from autotradeoff.errors import UsageError
from autotradeoff.study import open_storage, record

FLAKY = """\
task: plugin_tasks:flaky
objectives: {accuracy: max, latency_ms: min}
knobs:
  x: {low: 0.0, high: 1.0}
  mode: {choices: [ok, raise, nan]}
"""


@pytest.fixture
def flaky_space(tmp_path):
    path = tmp_path / "flaky.yaml"
    path.write_text(FLAKY)
    return str(path)


def test_local_search_stores_metrics_charges_and_resumes_without_double_charging(tmp_path, monkeypatch, small_cora_space):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 's.db'}"
    # early stopping off: a stopped trial counts the share of its work, which would blur the charges checked here
    first = search("cora", "3trials", space=str(small_cora_space), study="s", storage=url, runner="local", seed=1,
                   early_stop=False)
    study = first.study
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert study.metric_names == ["val_accuracy", "latency_ms"]
    base = trials[0].user_attrs["config"]
    assert base["model"] == "gcn" and base["hidden"] == 16 and base["layers"] == 2  # the baseline goes first
    for trial in trials:
        assert {"val_accuracy", "test_accuracy", "latency_ms", "flops", "params", "train_time_s"} <= set(trial.user_attrs)
        assert trial.values == [trial.user_attrs["val_accuracy"], trial.user_attrs["latency_ms"]]
        assert trial.user_attrs["charge"]["cpu_h"] > 0
    spent_before = record.spent(study)
    second = search("cora", "5trials", space=str(small_cora_space), study="s", storage=url, runner="local", seed=1, early_stop=False)
    assert second.resumed and second.new_trials == 2
    again = optuna.load_study(study_name="s", storage=url)
    assert len(again.trials) == 5 and record.spent(again)["trials"] == 5
    assert record.spent(again)["cpu-h"] > spent_before["cpu-h"]
    assert sum(k.startswith("autotradeoff:session:") for k in again.user_attrs) == 2
    assert len({t.user_attrs["runner_trial_id"] for t in again.trials}) == 5  # one id per trial across the two runs
    third = search("cora", "5trials", space=str(small_cora_space), study="s", storage=url, runner="local", early_stop=False)
    assert third.new_trials == 0  # budget already spent: nothing runs, nothing is charged again
    assert record.spent(optuna.load_study(study_name="s", storage=url))["trials"] == 5


def test_failing_trials_are_stored_with_reason_and_the_search_goes_on(tmp_path, monkeypatch, flaky_space):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'f.db'}"
    result = search("plugin_tasks:flaky", "12trials", space=flaky_space, study="f", storage=url,
                    runner="local", sampler="random", seed=3)
    trials = result.study.get_trials()
    assert len(trials) == 12
    modes = {t.user_attrs["config"]["mode"] for t in trials}
    assert modes == {"ok", "raise", "nan"}
    for trial in trials:
        mode = trial.user_attrs["config"]["mode"]
        if mode == "ok":
            assert trial.state == TrialState.COMPLETE
        else:
            assert trial.state == TrialState.FAIL
            expected = "RuntimeError: boom at x=" if mode == "raise" else "TrialFailed: non-finite metric accuracy=nan"
            assert trial.user_attrs["fail_reason"].startswith(expected)
            assert "charge" in trial.user_attrs  # failed trials still used the budget


def test_resume_fails_and_requeues_trials_left_running_by_a_dead_search_only(tmp_path, monkeypatch, flaky_space):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    search("plugin_tasks:flaky", "2trials", space=flaky_space, study="r", storage=url, runner="local")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    study = optuna.load_study(study_name="r", storage=open_storage(url))
    study.enqueue_trial({"x": 0.123, "mode": "ok"})
    orphan, elsewhere, unowned, starting, silent, live = (study.ask() for _ in range(6))
    with sqlite3.connect(tmp_path / "r.db") as db:  # started long ago (Optuna stores local naive time)
        for trial, minutes in ((unowned, 60), (silent, 30)):
            db.execute("UPDATE trials SET datetime_start = ? WHERE trial_id = ?",
                       ((datetime.now() - timedelta(minutes=minutes)).strftime("%Y-%m-%d %H:%M:%S.%f"), trial._trial_id))
    lost_x = orphan.suggest_float("x", 0.0, 1.0)
    orphan.suggest_categorical("mode", ["ok", "raise", "nan"])
    orphan.set_user_attr(record.OWNER, {"host": socket.gethostname(), "pid": int(dead.stdout)})
    elsewhere.set_user_attr(record.OWNER, {"host": "another-machine", "pid": 1})  # never beat: can't be judged
    now = datetime.now(timezone.utc)
    for trial, session, beat in ((silent, "gone", now - timedelta(minutes=20)), (live, "up", now)):
        trial.set_user_attr(record.OWNER, {"host": "another-machine", "pid": 1, "session": session})
        trial.set_user_attr("holds", {"cpus": 1.0, "gpus": 0.0, "device_share": 0.5})
        study.set_user_attr(f"{record.SESSION_PREFIX}{session}", {"beat": beat.isoformat()})
    result = search("plugin_tasks:flaky", "4trials", space=flaky_space, study="r", storage=url, runner="local")
    assert result.reconciled == 3
    states = {t.number: t for t in optuna.load_study(study_name="r", storage=url).trials}
    assert states[orphan.number].state == TrialState.FAIL
    assert "which is gone; failed on resume" in states[orphan.number].user_attrs["fail_reason"]
    rerun = [t for t in states.values() if t.user_attrs.get("requeued")]
    assert len(rerun) == 1 and rerun[0].params["x"] == lost_x and rerun[0].state == TrialState.COMPLETE
    assert states[elsewhere.number].state == TrialState.RUNNING  # only its own host can judge it
    assert states[unowned.number].state == TrialState.FAIL and "no owner" in states[unowned.number].user_attrs["fail_reason"]
    assert states[starting.number].state == TrialState.RUNNING  # just created: its search may be about to record itself
    # another host's search silent for 20 min is taken for dead; its trial is charged up to that last beat
    assert states[silent.number].state == TrialState.FAIL and "s (over 600 s)" in states[silent.number].user_attrs["fail_reason"]
    assert states[silent.number].user_attrs["charge"]["wall_s"] == pytest.approx(600, abs=30)
    assert states[live.number].state == TrialState.RUNNING  # its search beat just now


def test_a_trial_with_no_owner_is_failed_at_once_when_every_search_that_may_have_made_it_is_gone(
        tmp_path, monkeypatch, flaky_space):
    # a search kill -9'd between creating a trial and writing its name on it (the kill soak hit it once in CI)
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'o.db'}"
    search("plugin_tasks:flaky", "1trials", space=flaky_space, study="o", storage=url, runner="local")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    study = optuna.load_study(study_name="o", storage=open_storage(url))
    (session, entry), = record.sessions(study.user_attrs).items()
    study.set_user_attr(f"{record.SESSION_PREFIX}{session}", {**entry, "pid": int(dead.stdout)})  # that search died
    unowned = study.ask()
    result = search("plugin_tasks:flaky", "2trials", space=flaky_space, study="o", storage=url, runner="local")
    assert result.reconciled == 1
    trial = optuna.load_study(study_name="o", storage=url).trials[unowned.number]
    assert trial.state == TrialState.FAIL and "every search that may have created it (1) is gone" in trial.user_attrs["fail_reason"]
    assert "charge" not in trial.user_attrs and not record.counts_as_trial(trial)  # nothing ran


def test_wall_clock_budget_stops_starting_trials(tmp_path, monkeypatch, flaky_space):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'w.db'}"
    result = search("plugin_tasks:flaky", "3s", space=flaky_space, study="w", storage=url, runner="local",
                    sampler="random")  # a GP's fit per ask is not part of a trial's time: it would blur the bound
    used = record.spent(result.study)["s"]
    assert 2.5 <= used <= 4.5 and len(result.study.trials) >= 5


def test_a_trial_another_search_settled_meanwhile_keeps_what_that_search_stored(tmp_path, flaky_space, caplog):
    # A search silent past SILENT_AFTER_S (suspended laptop, storage out of reach) has its trials failed by
    # another host's search; when it wakes up and its trial ends, that FAIL stands and the search goes on.
    from autotradeoff.engine.budget import parse_budget
    from autotradeoff.engine.driver import SearchDriver
    from autotradeoff.presets import load_space
    from autotradeoff.study import create_or_resume, reconcile

    space = load_space(flaky_space)
    storage = open_storage(f"sqlite:///{tmp_path / 'z.db'}")
    study, _ = create_or_resume(storage, "z", space)
    driver = SearchDriver(study, space, parse_budget("4trials"), {"cpu": 1.0}, cluster_cpus=2.0)
    assert driver.ask("a") is not None and driver.ask("b") is not None
    study.set_user_attr(f"{record.SESSION_PREFIX}{driver.session}", {"beat": (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()})
    with pytest.MonkeyPatch.context() as patch:  # the settling search runs on another host
        patch.setattr(socket, "gethostname", lambda: "another-machine")
        assert reconcile(optuna.load_study(study_name="z", storage=storage)) == (0, 2)
    assert driver.tell("a", {"accuracy": 0.5, "latency_ms": 1.0}) is None
    assert "settled by another search while this one was silent" in caplog.text  # the CLI prints it on stderr
    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL and "silent for" in trials[0].user_attrs["fail_reason"]
    assert driver.running == 1 and driver.ask("c") is not None  # the search goes on


def test_the_search_decides_on_validation_and_only_reports_test(tmp_path, monkeypatch):
    """A task whose test accuracy is a constant: the sampler's values, the rungs, the front and the pick all
    follow validation; naming the test metric as objective, constraint or pick rule is refused."""
    from autotradeoff.front import pareto
    from autotradeoff.presets import load_space

    monkeypatch.chdir(tmp_path)
    (tmp_path / "split.yaml").write_text("task: plugin_tasks:split\nobjectives: {val_accuracy: max, latency_ms: min}\n"
                                         "knobs: {x: {low: 0.0, high: 1.0}}\n")
    result = search("plugin_tasks:split", "12trials", space="split.yaml", study="split", runner="local", seed=3,
                    sampler="tpe", remeasure=0)
    trials = [t for t in result.study.get_trials() if t.state == TrialState.COMPLETE]
    assert len(trials) >= 6
    for trial in trials:  # what the sampler is told: validation, never test
        assert trial.values == [trial.user_attrs["val_accuracy"], trial.user_attrs["latency_ms"]]
        assert trial.user_attrs["test_accuracy"] == 0.5
        assert all(point[0] == -trial.user_attrs["val_accuracy"] for key, point in trial.user_attrs.items()
                   if key.startswith("rung_"))  # rung points carry validation
    rows, objectives = pareto.rows_of(result.study), pareto.objectives_of(result.study)
    best = {r["number"] for r in pareto.front(rows, objectives, noise=False)}
    top = max(trials, key=lambda t: t.user_attrs["val_accuracy"])
    cheapest = min(trials, key=lambda t: t.user_attrs["latency_ms"])
    assert top.number != cheapest.number and {top.number, cheapest.number} <= best  # on test only the cheapest would stay
    chosen = pareto.pick(rows, "val_accuracy>=max-0.01, min latency_ms")
    assert abs(chosen["config"]["x"] - 0.3) < 0.15
    for bad in ("test_accuracy>=0, min latency_ms", "max test_accuracy"):
        with pytest.raises(UsageError, match="'test_accuracy' is measured on the test split"):
            pareto.pick(rows, bad)
    for kwargs in ({"objectives": "test_accuracy,latency_ms"}, {"constraints": ["test_accuracy >= 0.4"]}):
        with pytest.raises(UsageError, match="is measured on the test split"):
            load_space("split.yaml", **kwargs)
    honest = pareto.honesty(rows, objectives, chosen)
    assert honest["values"]["val_accuracy"] == (chosen["metrics"]["val_accuracy"], 0.5)


def test_a_model_predicting_one_class_is_degenerate_off_the_front_and_the_search_says_so(tmp_path):
    """Issue 22: a constant predictor is no trade-off, however cheap it is."""
    from conftest import run_cli

    (tmp_path / "c.yaml").write_text("task: plugin_tasks:constant\nobjectives: {val_accuracy: max, latency_ms: min}\n"
                                     "knobs: {x: {low: 0.0, high: 1.0}, learns: {choices: [false, true]}}\n")
    found = run_cli("search", "--task", "plugin_tasks:constant", "--space", "c.yaml", "--budget", "8trials", "--runner",
                    "local", "--seed", "1", cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    assert found.stderr.count("the baseline (trial 0) learns nothing at this fidelity: sleep_s=0.05; raise them with --fidelity") == 1
    study = optuna.load_study(study_name="c", storage=f"sqlite:///{tmp_path / 'studies' / 'c.db'}")
    trials = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    constant = [t for t in trials if not t.params["learns"]]
    assert constant and all("predicts like a constant: 100% of validation predictions" in record.degenerate(t)
                            for t in constant)
    assert not [t for t in trials if t.params["learns"] and record.degenerate(t)]
    front = run_cli("front", "--study", "c", cwd=tmp_path)
    assert f"({len(constant)} of them degenerate)" in front.stdout
    listed = {int(line.split()[0]) for line in front.stdout.splitlines() if line[:1].isdigit()}
    assert listed and not listed & {t.number for t in constant}  # the cheap constant predictors are off the front
