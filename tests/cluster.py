"""A two-node Ray cluster on loopback (a head and a second node joined with ``ray start --address``, each
with one CPU and a custom resource, each with its own temp dir), a search on it, and the second node killed
mid-search (its raylet and the processes under it, by pid): what a preempted spot instance does to a search.
``tests/test_cluster.py`` asserts on the figures; ``python tests/reliability.py`` reports them.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import psutil
from optuna.trial import TrialState

from autotradeoff.study import record

from reliability import SLOW_FLAKY, cli_env, keep, start

RAY = Path(sys.executable).parent / "ray"
# The GCS declares a node dead after this many missed 1 s health checks (Ray's default is ~30 s).
FAST_HEALTH = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
               "RAY_health_check_failure_threshold": "3", "RAY_health_check_initial_delay_ms": "1000"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_start(*args: str, temp: Path) -> None:
    done = subprocess.run([str(RAY), "start", *args, "--node-ip-address=127.0.0.1", "--num-cpus=1", f"--temp-dir={temp}",
                           "--disable-usage-stats"], capture_output=True, text=True, env={**cli_env(), **FAST_HEALTH},
                          timeout=180)
    if done.returncode != 0:
        raise RuntimeError(f"ray start {' '.join(args)} failed: {done.stderr[-2000:]}")


def _raylet(temp: Path) -> psutil.Process:
    """The raylet of the node whose temp dir is ``temp``."""
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "raylet/raylet" in cmd and str(temp) in cmd:
            return proc
    raise RuntimeError(f"no raylet under {temp}")


def _under(proc: psutil.Process) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return proc.children(recursive=True)
    return []


def _trial_pids(raylet: psutil.Process) -> set[int]:
    """Workers under ``raylet`` that run a trial (Ray names the process after the trainable's actor)."""
    pids = set()
    for proc in _under(raylet):
        with contextlib.suppress(psutil.Error):
            if any("ImplicitFunc" in part for part in proc.cmdline()):
                pids.add(proc.pid)
    return pids


def _cleanup(temps: list[Path]) -> None:
    """Every process of this cluster, by pid (never `ray stop`: it would stop other clusters on the machine)."""
    doomed = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(str(t) in " ".join(proc.info["cmdline"] or []) for t in temps):
            doomed += [proc, *_under(proc)]
    for proc in doomed:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    for temp in temps:
        shutil.rmtree(temp, ignore_errors=True)


def node_loss(workdir: Path, *, budget: int = 12, sleep_s: float = 3.0, kill_after_complete: int = 3) -> dict:
    """Start the cluster, search ``budget`` trials on it, kill the second node once ``kill_after_complete``
    trials are complete and a trial runs there; finish; return what became of every trial."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "slow.yaml").write_text(SLOW_FLAKY % sleep_s)
    head_tmp, second_tmp = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp")), Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))
    port, storage = _free_port(), f"sqlite:///{workdir / 'studies' / 'nodes.db'}"
    figures: dict = {"where": {}}
    try:
        _ray_start("--head", f"--port={port}", "--include-dashboard=false", '--resources={"head": 1}', temp=head_tmp)
        _ray_start(f"--address=127.0.0.1:{port}", '--resources={"second": 1}', temp=second_tmp)
        raylets = {"head": _raylet(head_tmp), "second": _raylet(second_tmp)}
        proc = start(["search", "--task", "plugin_tasks:flaky", "--space", "slow.yaml", "--study", "nodes", "--budget",
                      f"{budget}trials", "--ray-address", f"127.0.0.1:{port}", "--seed", "2", "--no-progress",
                      "--remeasure", "0"], workdir, workdir / "nodes.log")
        figures.update(_kill_second_when_busy(proc, raylets, workdir, kill_after_complete, figures["where"]))
        figures["exit"] = proc.wait(timeout=600)
        figures["search_s"] = round(time.monotonic() - figures.pop("started"), 1)
    finally:
        _cleanup([head_tmp, second_tmp])
    output = (workdir / "nodes.log").read_text(errors="replace")
    figures["first_line"] = output.splitlines()[0] if output else ""
    figures.update(_outcome(workdir, storage, figures["where"], budget))
    figures["lost"] = lost(figures)
    return keep("node loss", figures)


def _kill_second_when_busy(proc: subprocess.Popen, raylets: dict, workdir: Path, after: int, where: dict) -> dict:
    """Watch which node runs which trial worker (pid -> node); kill the second node's raylet and everything
    under it once ``after`` trials are complete, one of them on the second node, and a trial runs there."""
    started, deadline = time.monotonic(), time.monotonic() + 400
    storage = f"sqlite:///{workdir / 'studies' / 'nodes.db'}"
    while proc.poll() is None and time.monotonic() < deadline:
        for node, raylet in raylets.items():
            where.update({pid: node for pid in _trial_pids(raylet)})
        complete = [t for t in _trials(storage) if t.state == TrialState.COMPLETE]
        pids = _ray_pids(workdir)
        on_second = [t for t in complete if where.get(pids.get(record.runner_id(t), -1)) == "second"]
        if len(complete) >= after and on_second and _trial_pids(raylets["second"]):
            victims = [raylets["second"], *_under(raylets["second"])]
            for victim in victims:
                with contextlib.suppress(psutil.Error):
                    victim.kill()
            return {"started": started, "killed_at": time.time(), "killed_processes": len(victims),
                    "complete_at_kill": {t.number: tuple(t.values) for t in complete}}
        time.sleep(0.5)
    return {"started": started, "killed_at": None, "killed_processes": 0, "complete_at_kill": {}}


def _trials(storage: str) -> list:
    try:
        return optuna.load_study(study_name="nodes", storage=storage).get_trials(deepcopy=False)
    except Exception:
        return []


def _ray_pids(workdir: Path) -> dict[str, int]:
    """Ray trial id -> the worker pid that reported its result (Ray's result.json files)."""
    pids = {}
    for path in (workdir / "studies" / "ray" / "nodes").glob("*/result.json"):
        for line in path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError, KeyError):
                result = json.loads(line)
                pids[str(result["trial_id"])] = int(result["pid"])
    return pids


def _outcome(workdir: Path, storage: str, where: dict[int, str], budget: int) -> dict:
    trials = _trials(storage)
    pids = _ray_pids(workdir)
    node_of = {t.number: where.get(pids.get(record.runner_id(t), -1), "?") for t in trials}
    failed = [t for t in trials if t.state == TrialState.FAIL]
    interrupted = [t for t in trials if record.was_interrupted(t)]
    reruns = [t for t in trials if record.was_requeued(t)]
    ids = [record.runner_id(t) for t in trials if record.runner_id(t)]
    return {
        "trials": len(trials), "budget": budget, "counted": sum(record.counts_as_trial(t) for t in trials),
        "complete": sum(t.state == TrialState.COMPLETE for t in trials), "failed": len(failed),
        "interrupted": len(interrupted), "requeued_reruns": len(reruns),
        "reruns_per_interrupted": [sum(r.params == i.params and r.number > i.number for r in reruns) for i in interrupted],
        "zombies": sum(t.state == TrialState.RUNNING for t in trials), "duplicated": len(ids) - len(set(ids)),
        "complete_on": {node: sum(n == node and t.state == TrialState.COMPLETE for t in trials for n in [node_of[t.number]])
                        for node in ("head", "second")},
        "fail_reasons": sorted({(t.user_attrs.get(record.FAIL_REASON) or "")[:160] for t in failed}),
        "interrupted_charged_s": [round(record.charge(t)["wall_s"], 1) for t in interrupted if record.charge(t)],
        "interrupted_started": [t.datetime_start.timestamp() for t in interrupted if t.datetime_start],
        "now": {t.number: (t.state.name, tuple(t.values or ())) for t in trials},
    }


def lost(figures: dict) -> int:
    """Trials complete when the node died that are no longer complete with the same values."""
    now = figures["now"]
    return sum(now.get(n, ("", ()))[0] != "COMPLETE" or tuple(now[n][1]) != tuple(v) for n, v in figures["complete_at_kill"].items())
