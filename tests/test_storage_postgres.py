"""PostgreSQL as study storage (the set-up for many machines): search, resume and read the front."""

import os

import optuna
import pytest

from conftest import run_cli
from postgres import postgres_server, server_bin

pytestmark = pytest.mark.integration

FLAKY = "task: plugin_tasks:flaky\nobjectives: {accuracy: max, latency_ms: min}\nknobs: {x: {low: 0.0, high: 1.0}}\n"


@pytest.fixture(scope="module")
def pg_url():
    if server_bin() is None and not os.environ.get("CI"):
        pytest.skip("PostgreSQL server not installed here (apt-get install postgresql); CI installs it")
    with postgres_server() as url:
        yield url


def test_search_resume_and_front_on_postgresql(tmp_path, pg_url):
    (tmp_path / "flaky.yaml").write_text(FLAKY)
    common = ["search", "--task", "plugin_tasks:flaky", "--space", "flaky.yaml", "--storage", pg_url,
              "--study", "pg", "--runner", "local", "--no-progress"]
    first = run_cli(*common, "--budget", "4trials", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    second = run_cli(*common, "--budget", "6trials", cwd=tmp_path)
    assert second.returncode == 0 and "study 'pg' resumed" in second.stdout
    study = optuna.load_study(study_name="pg", storage=pg_url)
    assert len(study.trials) == 6 and all(t.state.name == "COMPLETE" for t in study.trials)
    front = run_cli("front", "--study", "pg", "--storage", pg_url, cwd=tmp_path)
    assert front.returncode == 0 and "Pareto front of study 'pg'" in front.stdout
    assert not (tmp_path / "studies").exists()  # nothing went to the default SQLite file
