"""The engine with the in-process runner: real Optuna SQLite storage, real Cora, budgets and resume."""

import socket
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import optuna
import pytest
from optuna.trial import TrialState

from autotradeoff.search import search
from autotradeoff.study import OWNER_ATTR, SESSION_PREFIX, open_storage, spent

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
    first = search("cora", "3trials", space=str(small_cora_space), study="s", storage=url, runner="local", seed=1)
    study = first.study
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert study.metric_names == ["accuracy", "latency_ms"]
    base = trials[0].user_attrs["config"]
    assert base["model"] == "gcn" and base["hidden"] == 16 and base["layers"] == 2  # the baseline goes first
    for trial in trials:
        assert {"accuracy", "latency_ms", "flops", "params", "train_time_s"} <= set(trial.user_attrs)
        assert trial.values == [trial.user_attrs["accuracy"], trial.user_attrs["latency_ms"]]
        assert trial.user_attrs["charge"]["cpu_h"] > 0
    spent_before = spent(study)
    second = search("cora", "5trials", space=str(small_cora_space), study="s", storage=url, runner="local", seed=1)
    assert second.resumed and second.new_trials == 2
    again = optuna.load_study(study_name="s", storage=url)
    assert len(again.trials) == 5 and spent(again)["trials"] == 5
    assert spent(again)["cpu-h"] > spent_before["cpu-h"]
    assert sum(k.startswith("autotradeoff:session:") for k in again.user_attrs) == 2
    assert len({t.user_attrs["runner_trial_id"] for t in again.trials}) == 5  # one id per trial across the two runs
    third = search("cora", "5trials", space=str(small_cora_space), study="s", storage=url, runner="local")
    assert third.new_trials == 0  # budget already spent: nothing runs, nothing is charged again
    assert spent(optuna.load_study(study_name="s", storage=url))["trials"] == 5


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
    orphan.set_user_attr(OWNER_ATTR, {"host": socket.gethostname(), "pid": int(dead.stdout)})
    elsewhere.set_user_attr(OWNER_ATTR, {"host": "another-machine", "pid": 1})  # never beat: can't be judged
    now = datetime.now(timezone.utc)
    for trial, session, beat in ((silent, "gone", now - timedelta(minutes=20)), (live, "up", now)):
        trial.set_user_attr(OWNER_ATTR, {"host": "another-machine", "pid": 1, "session": session})
        trial.set_user_attr("holds", {"cpus": 1.0, "gpus": 0.0, "device_share": 0.5})
        study.set_user_attr(f"{SESSION_PREFIX}{session}", {"beat": beat.isoformat()})
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


def test_wall_clock_budget_stops_starting_trials(tmp_path, monkeypatch, flaky_space):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'w.db'}"
    result = search("plugin_tasks:flaky", "3s", space=flaky_space, study="w", storage=url, runner="local",
                    sampler="random")  # a GP's fit per ask is not part of a trial's time: it would blur the bound
    used = spent(result.study)["s"]
    assert 2.5 <= used <= 4.5 and len(result.study.trials) >= 5


def test_a_trial_another_search_settled_meanwhile_keeps_what_that_search_stored(tmp_path, flaky_space, capsys):
    # A search silent past SILENT_AFTER_S (suspended laptop, storage out of reach) has its trials failed by
    # another host's search; when it wakes up and its trial ends, that FAIL stands and the search goes on.
    from autotradeoff.budget import parse_budget
    from autotradeoff.driver import SearchDriver
    from autotradeoff.space import load_space
    from autotradeoff.study import create_or_resume, reconcile

    space = load_space(flaky_space)
    storage = open_storage(f"sqlite:///{tmp_path / 'z.db'}")
    study, _ = create_or_resume(storage, "z", space)
    driver = SearchDriver(study, space, parse_budget("4trials"), {"cpu": 1.0}, cluster_cpus=2.0)
    assert driver.ask("a") is not None and driver.ask("b") is not None
    study.set_user_attr(f"{SESSION_PREFIX}{driver.session}", {"beat": (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()})
    with pytest.MonkeyPatch.context() as patch:  # the settling search runs on another host
        patch.setattr(socket, "gethostname", lambda: "another-machine")
        assert reconcile(optuna.load_study(study_name="z", storage=storage)) == (0, 2)
    assert driver.tell("a", {"accuracy": 0.5, "latency_ms": 1.0}) is None
    assert "settled by another search while this one was silent" in capsys.readouterr().err
    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL and "silent for" in trials[0].user_attrs["fail_reason"]
    assert driver.running == 1 and driver.ask("c") is not None  # the search goes on
