"""End to end as a user runs it: `autotradeoff search` through real Ray Tune on real Cora, resume,
front, export, trial re-run, failing trials through Ray workers, and the dashboard."""

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from autotradeoff.study import record

from conftest import CLI, run_cli

pytestmark = pytest.mark.integration

FLAKY = """\
task: plugin_tasks:flaky
objectives: {accuracy: max, latency_ms: min}
knobs:
  x: {low: 0.0, high: 1.0}
  mode: {choices: [ok, raise, nan, die]}
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    from conftest import SMALL_CORA

    root = tmp_path_factory.mktemp("e2e")
    (root / "small.yaml").write_text(SMALL_CORA)
    (root / "flaky.yaml").write_text(FLAKY)
    return root


@pytest.fixture(scope="module")
def searched(workdir):
    first = run_cli("search", "--task", "cora", "--space", "small.yaml", "--budget", "6trials", "--workers", "2",
                    "--study", "e2e", "--seed", "0", cwd=workdir)
    assert first.returncode == 0, first.stderr[-3000:]
    return workdir, first


def load(workdir, name="e2e"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{workdir / 'studies' / f'{name}.db'}")


def test_ray_search_stores_trials_and_writes_the_report(searched):
    workdir, result = searched
    study = load(workdir)
    trials = study.get_trials()
    # Early stopping is on: from the third trial to reach a rung on, a trial may be stopped (PRUNED, "stopped"
    # stored); which of them depends on the two workers' timing. A stopped trial counts the share of its work
    # it did against the 6-trial budget, so the search may run more than 6.
    stopped = [t for t in trials if t.state == TrialState.PRUNED]
    assert all("stopped" in t.user_attrs for t in stopped)
    assert len(trials) >= 6 and sum(t.state == TrialState.COMPLETE for t in trials) == len(trials) - len(stopped) >= 2
    assert 5 < record.spent(study)["trials"] <= 6 + 1e-9  # a trial starts while a whole one is left
    assert len({t.user_attrs["runner_trial_id"] for t in trials}) == len(trials)  # Ray's trial id on each Optuna trial
    for trial in trials:  # the task's metrics are stored, Ray's bookkeeping fields are not
        if trial.state == TrialState.COMPLETE:
            assert {"val_accuracy", "test_accuracy", "latency_ms", "flops", "params", "trial_wall_s"} <= set(trial.user_attrs)
        assert not {"pid", "timestamp", "time_this_iter_s", "config/epochs"} & set(trial.user_attrs)
    assert "Pareto front of study 'e2e'" in result.stdout and "front=" in result.stderr
    html = (workdir / "reports" / "e2e" / "index.html").read_text()
    assert "What the front gains over the baseline" in html and "Hypervolume against the budget spent" in html
    assert len(html) > 1_000_000  # plotly.js inlined


def test_rerunning_the_command_resumes_the_study(searched):
    workdir, _ = searched
    before = len(load(workdir).trials)
    again = run_cli("search", "--task", "cora", "--space", "small.yaml", "--budget", "8trials", "--workers", "2",
                    "--study", "e2e", cwd=workdir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "study 'e2e' resumed" in again.stdout
    # a trial stopped early counts the share of its work it did, so 2 trials of budget may take more runs
    new = int(re.search(r"(\d+) new trial\(s\)", again.stdout).group(1))
    study = load(workdir)
    assert new >= 2 and len(study.trials) == before + new
    assert sum(k.startswith("autotradeoff:session:") for k in study.user_attrs) == 2


def test_front_export_and_trial_reproduce_the_chosen_config(searched):
    workdir, _ = searched
    front = run_cli("front", "--study", "e2e", cwd=workdir)
    assert front.returncode == 0 and "val_accuracy" in front.stdout and "test_accuracy" in front.stdout and "latency_ms" in front.stdout
    export = run_cli("export", "--study", "e2e", "--pick", "val_accuracy>=max, min latency_ms", "-o", "chosen.yaml",
                     cwd=workdir)
    assert export.returncode == 0, export.stderr
    record = yaml.safe_load((workdir / "chosen.yaml").read_text())
    # the most accurate trial, fastest of its ties, is on the front whatever the latency noise (a rule like
    # "val_accuracy>=max-0.02, min latency_ms" may pick a trial the noise-aware front drops)
    assert record["task"] == "cora" and record["on_pareto_front"]
    assert {"python", "cpu", "packages"} <= set(record["fingerprint"])
    rerun = run_cli("trial", "--task", "cora", "--config", "chosen.yaml", cwd=workdir)
    assert rerun.returncode == 0, rerun.stderr
    row = next(line.split() for line in rerun.stdout.splitlines() if line.startswith("val_accuracy "))
    assert float(row[1]) == pytest.approx(record["metrics"]["val_accuracy"], abs=1e-6)  # same seed, same code path


def test_failing_trials_through_ray_are_stored_with_reasons(workdir):
    result = run_cli("search", "--task", "plugin_tasks:flaky", "--space", "flaky.yaml", "--budget", "14trials",
                     "--workers", "2", "--study", "flaky", "--sampler", "random", "--seed", "5", cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = load(workdir, "flaky").get_trials()
    # a dead worker's first attempt is interrupted and re-run, and does not use the budget (issue 21)
    interrupted = [t for t in trials if record.was_interrupted(t)]
    assert all(t.user_attrs["config"]["mode"] == "die" for t in interrupted)
    counted = [t for t in trials if record.counts_as_trial(t)]
    assert len(counted) == 14 and len(trials) == 14 + len(interrupted)
    reasons = {"raise": "RuntimeError: boom", "nan": "non-finite metric accuracy=nan", "die": "worker failed"}
    seen = set()
    for trial in counted:
        mode = trial.user_attrs["config"]["mode"]
        seen.add(mode)
        if mode == "ok":
            assert trial.state == TrialState.COMPLETE
        else:
            assert trial.state == TrialState.FAIL and reasons[mode] in trial.user_attrs["fail_reason"]
    assert seen == {"ok", "raise", "nan", "die"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_search_joins_a_running_ray_cluster(workdir):
    ray = Path(sys.executable).parent / "ray"
    port = free_port()
    subprocess.run([str(ray), "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
                    "--include-dashboard=false", "--disable-usage-stats"], check=True, capture_output=True, timeout=120)
    try:
        (workdir / "ok.yaml").write_text(FLAKY.replace("[ok, raise, nan, die]", "[ok]"))
        result = run_cli("search", "--task", "plugin_tasks:flaky", "--space", "ok.yaml", "--budget", "4trials",
                         "--study", "cluster", "--ray-address", f"127.0.0.1:{port}", cwd=workdir)
    finally:
        subprocess.run([str(ray), "stop"], capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 worker(s)" in result.stdout  # from the cluster's 2 CPUs, not this machine's count
    assert [t.state for t in load(workdir, "cluster").trials] == [TrialState.COMPLETE] * 4


def test_a_local_cluster_binds_to_loopback_only():
    """CI blocks the default-route address; a local cluster must never depend on it (or expose ports on it)."""
    probe = ("from autotradeoff.engine.runner import ray_cluster\n"
             "ray_cluster(None, num_cpus=1)\n"
             "import ray\n"
             "print(sorted({n['NodeManagerAddress'] for n in ray.nodes()}), ray.get(ray.remote(ray.util.get_node_ip_address).remote()))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-2:] == ["['127.0.0.1']", "127.0.0.1"], out.stdout


def test_dashboard_serves_the_study_on_loopback(searched):
    workdir, _ = searched
    port = free_port()
    proc = subprocess.Popen([str(CLI), "dashboard", "--study", "e2e", "--port", str(port)], cwd=workdir,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, body = time.time() + 60, None
        while time.time() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as response:
                    body = json.loads(response.read())
            except OSError:
                time.sleep(0.5)
        assert body is not None, "dashboard did not answer within 60 s"
        assert [s["study_name"] for s in body["study_summaries"]] == ["e2e"]
        assert body["study_summaries"][0]["directions"] == ["maximize", "minimize"]
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/dashboard/studies/" in out


def test_ray_workers_stop_dominated_trials_early_from_the_shared_rung_points(workdir):
    (workdir / "staged.yaml").write_text("task: plugin_tasks:staged\nobjectives: {accuracy: max, latency_ms: min}\n"
                                         "knobs:\n  x: {low: 0.0, high: 1.0}\nfidelity: {sleep_s: 0.9}\n")
    result = run_cli("search", "--task", "plugin_tasks:staged", "--space", "staged.yaml", "--budget", "14trials",
                     "--workers", "2", "--study", "staged", "--sampler", "random", "--seed", "0", "--no-progress",
                     cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = load(workdir, "staged").get_trials()
    stopped = [t for t in trials if t.state == TrialState.PRUNED]
    assert stopped and all("stopped early" in t.user_attrs["stopped"] and "rung_1/27" in t.user_attrs for t in stopped)
    assert all(t.params["x"] > 0.3 for t in stopped)  # only dominated configs: x < 0.3 trade accuracy for latency
    assert all(t.state == TrialState.COMPLETE for t in trials if t.params["x"] <= 0.3)
    assert len([t for t in trials if "rung_1/9" in t.user_attrs]) < len(trials)  # stopped ones never got there

