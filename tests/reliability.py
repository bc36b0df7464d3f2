"""Reliability scenarios run as a user would (the installed ``autotradeoff`` command, real Ray, real
storage), each returning the figures it measured. ``tests/test_reliability.py`` asserts on them;
run this file to write ``reports/reliability.md`` from one run of all of them:

    python tests/reliability.py            # ~10 min on 2 CPU cores
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import psutil
from optuna.trial import TrialState

from autotradeoff.study import record

TESTS = Path(__file__).resolve().parent
CLI = Path(sys.executable).parent / "autotradeoff"
SLOW_FLAKY = """\
task: plugin_tasks:flaky
objectives: {accuracy: max, latency_ms: min}
knobs:
  x: {low: 0.0, high: 1.0}
fidelity: {sleep_s: %s}
"""


def keep(name: str, figures: dict) -> dict:
    """Append ``figures`` as one JSON line to the file ``$AUTOTRADEOFF_FIGURES`` names (when set), so a test run
    leaves what it measured for the report; returns them."""
    if os.environ.get("AUTOTRADEOFF_FIGURES"):
        with open(os.environ["AUTOTRADEOFF_FIGURES"], "a", encoding="utf-8") as out:
            out.write(json.dumps({"scenario": name, **figures}, default=str) + "\n")
    return {"scenario": name, **figures}


def cli_env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def start(args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    """``autotradeoff <args>`` in its own session (so its Ray processes can be found and cleaned up)."""
    with open(log, "ab") as out:
        return subprocess.Popen([str(CLI), *args], cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=cli_env(),
                                start_new_session=True)


def _session_processes(pid: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError):  # os.getsid of a process gone meanwhile
            if os.getsid(proc.pid) == pid:
                found.append(proc)
    return found


def trial_workers(pid: int) -> list[psutil.Process]:
    """Ray worker processes of the search started as ``pid`` that are running a trial."""
    workers = []
    for proc in _session_processes(pid):
        with contextlib.suppress(psutil.Error):
            if any("ImplicitFunc" in part or "_tune_trial" in part for part in proc.cmdline()):
                workers.append(proc)
    return workers


def kill_session(pid: int) -> None:
    """What is left of a killed search's session (Ray's own processes), as when its machine goes down."""
    for proc in _session_processes(pid):
        with contextlib.suppress(psutil.Error):
            proc.kill()


def snapshot(storage: str, study: str) -> dict[int, tuple]:
    """Every trial's (state, values, charge) by number; none while a search killed at start-up made the
    database but not yet the study."""
    try:
        loaded = optuna.load_study(study_name=study, storage=storage)
    except KeyError:
        return {}
    return {t.number: (t.state.name, tuple(t.values or ()), json.dumps(t.user_attrs.get("charge"), sort_keys=True))
            for t in loaded.get_trials(deepcopy=False)}


def kill_soak(workdir: Path, *, driver_kills: int = 10, worker_kills: int = 4, budget: int = 100, seed: int = 0) -> dict:
    """Kill -9 the search driver ``driver_kills`` times and a trial's worker ``worker_kills`` times at
    random moments; re-run the same command after each driver kill; finish the study; count losses."""
    rng, moments = random.Random(seed), random.Random(seed + 1)  # worker kills; driver kill moments (fixed by the seed)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "slow.yaml").write_text(SLOW_FLAKY % 2.0)
    storage = f"sqlite:///{workdir / 'studies' / 'soak.db'}"
    command = ["search", "--task", "plugin_tasks:flaky", "--space", "slow.yaml", "--study", "soak", "--budget",
               f"{budget}trials", "--workers", "2", "--seed", "1", "--no-progress"]
    figures = {"driver_kills": 0, "kills_after_trials_started": 0, "worker_kills": 0, "completed_lost": 0, "changed_results": 0}
    completed: dict[int, tuple] = {}
    log = workdir / "soak.log"
    while figures["driver_kills"] < driver_kills:
        proc = start(command, workdir, log)
        # Every third kill falls while the search starts (Ray takes ~15 s here), the others 0.5-6 s after
        # its first trial worker appeared: timed from what the search does, not from the clock, so a faster
        # machine does not spend the budget before the last kill, nor a slower one kill only start-ups.
        timed = figures["driver_kills"] % 3 == 0  # the kill's moment is set (start-up), or set once trials run
        deadline = time.monotonic() + (moments.uniform(1.0, 15.0) if timed else 120.0)
        after, working = moments.uniform(0.5, 6.0), False
        while time.monotonic() < deadline and proc.poll() is None:
            if not timed and trial_workers(proc.pid):
                timed, working, deadline = True, True, time.monotonic() + after
            if figures["worker_kills"] < worker_kills and rng.random() < 0.1:
                workers = trial_workers(proc.pid)
                if workers:
                    rng.choice(workers).kill()
                    figures["worker_kills"] += 1
            time.sleep(0.25)
        if proc.poll() is not None:  # finished before the kill: the budget is too small for the kills asked
            break
        figures["kills_after_trials_started"] += working or bool(trial_workers(proc.pid))
        proc.kill()
        proc.wait()
        kill_session(proc.pid)
        figures["driver_kills"] += 1
        if (workdir / "studies" / "soak.db").exists():
            now = snapshot(storage, "soak")
            for number, before in completed.items():
                figures["completed_lost"] += now.get(number, ("",))[0] != "COMPLETE"
                figures["changed_results"] += now.get(number) != before
            completed.update({n: s for n, s in now.items() if s[0] == "COMPLETE"})
    final = subprocess.run([str(CLI), *command], cwd=workdir, capture_output=True, text=True, env=cli_env(), timeout=900)
    figures["final_exit"] = final.returncode
    figures["final_first_line"] = final.stdout.splitlines()[0] if final.stdout else final.stderr[-500:]
    study = optuna.load_study(study_name="soak", storage=storage)
    trials = study.get_trials(deepcopy=False)
    now = snapshot(storage, "soak")
    for number, before in completed.items():
        figures["completed_lost"] += now.get(number, ("",))[0] != "COMPLETE"
        figures["changed_results"] += now.get(number) != before
    started = [t for t in trials if t.state != TrialState.WAITING]
    ids = [t.user_attrs["runner_trial_id"] for t in started if "runner_trial_id" in t.user_attrs]
    figures.update(
        trials=len(trials), complete=sum(t.state == TrialState.COMPLETE for t in trials),
        failed=sum(t.state == TrialState.FAIL for t in trials), zombies=sum(t.state == TrialState.RUNNING for t in trials),
        duplicate_ids=len(ids) - len(set(ids)), missing_ray_ids=len(started) - len(ids),
        charged=sum("charge" in t.user_attrs for t in trials), budget=budget,
        counted=sum(record.counts_as_trial(t) for t in trials),
        interrupted=sum(record.was_interrupted(t) for t in trials),
        recovered=sum("recovered" in t.user_attrs for t in trials),
        fail_reasons=sorted({(t.user_attrs.get("fail_reason") or "")[:60] for t in trials if t.state == TrialState.FAIL}),
    )
    return figures


def kill_and_resume(workdir: Path, *, budget: str, kills_after: tuple[float, ...] = (1.0, 3.5, 6.0),
                    sleep_s: float = 2.0) -> dict:
    """kill -9 a search (its whole process group) once per entry of ``kills_after``, that many seconds after
    its first trial worker appeared, re-running the same command after each kill; then run it once more to
    finish. Returns the finished study's trials and what each interrupted attempt became."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "slow.yaml").write_text(SLOW_FLAKY % sleep_s)
    storage = f"sqlite:///{workdir / 'studies' / 'kill.db'}"
    command = ["search", "--task", "plugin_tasks:flaky", "--space", "slow.yaml", "--study", "kill", "--budget", budget,
               "--workers", "2", "--seed", "3", "--no-progress"]
    log, killed_at = workdir / "kill.log", []
    for after in kills_after:
        proc = start(command, workdir, log)
        deadline = time.monotonic() + 180
        while not trial_workers(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(after)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        kill_session(proc.pid)
        killed_at.append(time.time())
    final = subprocess.run([str(CLI), *command], cwd=workdir, capture_output=True, text=True, env=cli_env(), timeout=900)
    trials = optuna.load_study(study_name="kill", storage=storage).get_trials()
    return {"final_exit": final.returncode, "final_stderr": final.stderr[-2000:], "trials": trials,
            "killed_at": killed_at}


def _poll_dashboard(port: int, stop_when: list[subprocess.Popen]) -> tuple[int, int]:
    """(answers, errors) of optuna-dashboard's study API polled until the writers have exited; errors
    count from its first answer on (before it, the server is still starting)."""
    answers = errors = 0
    while any(p.poll() is None for p in stop_when):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=10) as response:
                json.loads(response.read())
            answers += 1
        except (OSError, ValueError):
            errors += answers > 0
        time.sleep(0.5)
    return answers, errors


def concurrent_searches(workdir: Path, *, storage: str | None = None, processes: int = 2, budget: int = 16,
                        dashboard_port: int | None = None) -> dict:
    """``processes`` searches of one study at once (SQLite by default), a dashboard reading meanwhile."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "slow.yaml").write_text(SLOW_FLAKY % 0.3)
    storage = storage or f"sqlite:///{workdir / 'studies' / 'shared.db'}"
    common = ["search", "--task", "plugin_tasks:flaky", "--space", "slow.yaml", "--study", "shared", "--storage", storage,
              "--budget", f"{budget}trials", "--no-progress"]
    # the study exists before the searchers start, so the dashboard has something to read from the first poll
    first = subprocess.run([str(CLI), *common[:-2], "1trials", "--runner", "local"], cwd=workdir, capture_output=True,
                           text=True, env=cli_env(), timeout=300)
    assert first.returncode == 0, first.stderr
    logs = [workdir / f"search-{i}.log" for i in range(processes)]
    runners = [["--runner", "ray", "--workers", "1"] if i % 2 == 0 else ["--runner", "local"] for i in range(processes)]
    procs = [start([*common, "--seed", str(i), *runners[i]], workdir, logs[i]) for i in range(processes)]
    dashboard = start(["dashboard", "--study", "shared", "--storage", storage, "--port", str(dashboard_port)], workdir,
                      workdir / "dashboard.log") if dashboard_port else None
    try:
        answers, errors = _poll_dashboard(dashboard_port, procs) if dashboard else (0, 0)
        for proc in procs:
            proc.wait(timeout=900)
    finally:
        if dashboard:
            dashboard.terminate()
            dashboard.wait(timeout=30)
    output = "".join(log.read_text(errors="replace") for log in logs)
    trials = optuna.load_study(study_name="shared", storage=storage).get_trials(deepcopy=False)
    return {
        "processes": processes, "exit_codes": [p.returncode for p in procs],
        "lock_errors": output.lower().count("database is locked") + output.count("OperationalError"),
        "trials": len(trials), "complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "failed": sum(t.state == TrialState.FAIL for t in trials), "zombies": sum(t.state == TrialState.RUNNING for t in trials),
        "budget": budget, "dashboard_answers": answers, "dashboard_errors": errors,
    }


def write_report(figures: dict[str, dict], path: Path) -> None:
    soak, sqlite, bad = figures["kill_soak"], figures["concurrent_sqlite"], figures.get("bad_inputs", {})
    lines = [
        "# Reliability", "",
        "Generated by `python tests/reliability.py` (one run of every scenario; the same scenarios are the "
        "assertions of `tests/test_reliability.py`).", "",
        "| figure | value |", "|---|---|",
        f"| search driver killed (kill -9) and re-run: in all / after its trials had started | {soak['driver_kills']} / "
        f"{soak['kills_after_trials_started']} |",
        f"| trial workers killed (kill -9) | {soak['worker_kills']} |",
        f"| completed trials lost | {soak['completed_lost']} |",
        f"| completed results changed afterwards (duplicates) | {soak['changed_results']} |",
        f"| trials sharing a Ray trial id / without one | {soak['duplicate_ids']} / {soak['missing_ray_ids']} |",
        f"| trials left RUNNING (zombies) | {soak['zombies']} |",
        f"| soak study: trials / complete / failed / of those interrupted and re-run / counted (budget) | {soak['trials']} / "
        f"{soak['complete']} / {soak['failed']} / {soak['interrupted']} / {soak['counted']} ({soak['budget']} trials) |",
        f"| results recovered from Ray's files after a kill | {soak['recovered']} |",
        f"| concurrent searches on one SQLite study | {sqlite['processes']} (exit codes {sqlite['exit_codes']}) |",
        f"| lock errors | {sqlite['lock_errors']} |",
        f"| concurrent study: trials / complete / zombies (budget) | {sqlite['trials']} / {sqlite['complete']} / {sqlite['zombies']} "
        f"({sqlite['budget']} trials) |",
        f"| dashboard reads during the writes: answered / failed | {sqlite['dashboard_answers']} / {sqlite['dashboard_errors']} |",
    ]
    if bad:
        lines.append(f"| bad inputs tried / exit 2 with one line / study changed | {bad['tried']} / {bad['exit_2_one_line']} / "
                     f"{bad['study_changed']} |")
    lines += ["", "Failure reasons stored in the soak study:", "", *(f"- `{r}`" for r in soak["fail_reasons"]), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")


def main() -> None:
    import socket
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="reliability-"))
    os.environ.setdefault("AUTOTRADEOFF_CACHE", str(root / "cache"))
    os.environ["PYTHONPATH"] = cli_env()["PYTHONPATH"]  # the bad-input commands load tests/plugin_tasks.py too
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sys.path.insert(0, str(TESTS))
    from test_reliability import bad_input_figures

    figures = {"kill_soak": kill_soak(root / "soak"), "concurrent_sqlite": concurrent_searches(root / "sqlite", dashboard_port=port),
               "bad_inputs": bad_input_figures(root / "bad", examples=200)}
    write_report(figures, TESTS.parent / "reports" / "reliability.md")
    print(json.dumps(figures, indent=1, default=str))


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main()
