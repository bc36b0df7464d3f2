"""Storage outages as an operator causes them, each returning what it measured (``tests/test_outages.py``
asserts on them; ``python tests/reliability.py`` writes them into ``reports/reliability.md``): a PostgreSQL
server restarted or stopped for a while under a running search, and an SQLite file locked by another process.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from autotradeoff.study import record

from reliability import CLI, SLOW_FLAKY, cli_env, keep, kill_session, start


def _trials(storage: str, study: str) -> list:
    try:
        return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)
    except Exception:  # not created yet, or the server is down
        return []


def _complete(storage: str, study: str) -> dict[int, tuple]:
    return {t.number: tuple(t.values) for t in _trials(storage, study) if t.state == TrialState.COMPLETE}


def _wait_for(storage: str, study: str, complete: int, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while len(_complete(storage, study)) < complete and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.3)


def _command(storage: str, study: str, budget: int, wait: str, runner: str) -> list[str]:
    return ["search", "--task", "plugin_tasks:flaky", "--space", "slow.yaml", "--study", study, "--storage", storage,
            "--budget", f"{budget}trials", "--storage-wait", wait, "--runner", runner, "--workers", "2", "--seed", "5",
            "--no-progress", "--remeasure", "0"]


def _figures(storage: str, study: str, before: dict[int, tuple], budget: int) -> dict:
    """Lost (a completed trial no longer complete or changed), duplicated (two trials of one Ray trial id, or
    one config completed twice without an interruption between), zombies, counted against the budget."""
    trials = _trials(storage, study)
    now = {t.number: t for t in trials}
    ids = [t.user_attrs[record.RUNNER_ID] for t in trials if record.RUNNER_ID in t.user_attrs]
    configs = [tuple(sorted(t.params.items())) for t in trials if t.state == TrialState.COMPLETE]
    return {"trials": len(trials), "complete": sum(t.state == TrialState.COMPLETE for t in trials),
            "lost": sum(n not in now or now[n].state != TrialState.COMPLETE or tuple(now[n].values) != v for n, v in before.items()),
            "duplicated": (len(ids) - len(set(ids))) + (len(configs) - len(set(configs))),
            "zombies": sum(t.state == TrialState.RUNNING and bool(record.owner(t)) for t in trials),
            # created by the very call that gave up, before the search could write its name on it: settled by
            # any run once OWNERLESS_AFTER_S old (nothing ran)
            "ownerless": sum(t.state == TrialState.RUNNING and not record.owner(t) for t in trials),
            "interrupted": sum(record.was_interrupted(t) for t in trials),
            "counted": sum(record.counts_as_trial(t) for t in trials), "budget": budget,
            "complete_before_outage": len(before)}


def postgres_outage(workdir: Path, server, *, down_s: float | None, wait: str, budget: int = 16,
                    runner: str = "ray", sleep_s: float = 0.5) -> dict:
    """A search on ``server`` (tests/postgres.py) stopped after 3 completed trials for ``down_s`` seconds
    (None: restarted at once). When the search gave up waiting (exit 75), the same command is run again once
    the server is back. Returns the figures of ``_figures`` plus exit codes, outage lines and timings."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "slow.yaml").write_text(SLOW_FLAKY % sleep_s)
    study = f"outage{int(time.time() * 1000) % 10**8}"
    command = _command(server.url, study, budget, wait, runner)
    log = workdir / f"{study}.log"
    proc = start(command, workdir, log)
    _wait_for(server.url, study, 3, proc)
    before = _complete(server.url, study)
    down_at = time.monotonic()
    if down_s is None:
        server.restart()
    else:
        server.stop()
        time.sleep(down_s)
        server.start()
    down = time.monotonic() - down_at
    try:
        first_exit = proc.wait(timeout=600)
    finally:
        kill_session(proc.pid)
    resumed = None
    if first_exit != 0:
        resumed = subprocess.run([str(CLI), *command], cwd=workdir, capture_output=True, text=True, env=cli_env(), timeout=600)
    output = log.read_text(errors="replace")
    lines = [line for line in output.splitlines() if line.startswith("autotradeoff:")]
    return keep(f"postgres {'restart' if down_s is None else f'stop {down_s:g} s'}, wait {wait}", {
            **_figures(server.url, study, before, budget), "down_s": round(down, 1), "first_exit": first_exit,
            "resumed_exit": None if resumed is None else resumed.returncode,
            "resumed_first_line": resumed.stdout.splitlines()[0] if resumed and resumed.stdout else "",
            "resumed_stderr": resumed.stderr[-2000:] if resumed else "", "tracebacks": output.count("Traceback"),
            "outage_lines": lines, "log_tail": output[-3000:]})


def sqlite_lock(workdir: Path, *, locked_s: float, wait: str, budget: int = 16, sleep_s: float = 1.0) -> dict:
    """A local search on an SQLite file that another process locks (an exclusive transaction) after 3 completed
    trials for ``locked_s`` seconds; re-run once when it gave up. Same figures as ``postgres_outage``, plus
    ``running_when_locked``: the search had not finished when the lock was taken (the remaining 13 trials of
    1 s on 2 workers take >= 6.5 s; with 10 trials of 0.3 s a slow machine finished them all first)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "slow.yaml").write_text(SLOW_FLAKY % sleep_s)
    path = workdir / "studies" / "locked.db"
    storage = f"sqlite:///{path}"
    command = _command(storage, "locked", budget, wait, "local")
    proc = start(command, workdir, workdir / "locked.log")
    _wait_for(storage, "locked", 3, proc)
    before = _complete(storage, "locked")
    holder = sqlite3.connect(path, timeout=60, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    running_when_locked = proc.poll() is None
    time.sleep(locked_s)
    holder.execute("COMMIT")
    holder.close()
    try:
        first_exit = proc.wait(timeout=600)
    finally:
        with contextlib.suppress(Exception):
            kill_session(proc.pid)
    resumed = None
    if first_exit != 0:
        resumed = subprocess.run([str(CLI), *command], cwd=workdir, capture_output=True, text=True, env=cli_env(), timeout=600)
    output = (workdir / "locked.log").read_text(errors="replace")
    return keep(f"sqlite locked {locked_s:g} s, wait {wait}", {
            **_figures(storage, "locked", before, budget), "locked_s": locked_s, "first_exit": first_exit,
            "running_when_locked": running_when_locked,
            "resumed_exit": None if resumed is None else resumed.returncode, "tracebacks": output.count("Traceback"),
            "outage_lines": [line for line in output.splitlines() if line.startswith("autotradeoff:")],
            "resumed_stderr": resumed.stderr[-2000:] if resumed else "", "log_tail": output[-3000:]})
