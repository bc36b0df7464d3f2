"""What each CLI subcommand does: call the library, print the outcome. No search logic here."""

from __future__ import annotations

import argparse
from pathlib import Path

from autotradeoff.console import ProgressBar, front_table, gains_line, honesty_line, table
from autotradeoff.errors import UsageError
from autotradeoff.front import gains, pareto
from autotradeoff.study import default_storage, load_study, open_storage, record, redact

__all__ = ["cmd_search", "cmd_front", "cmd_export", "cmd_trial", "cmd_apply", "cmd_tasks", "cmd_techniques",
           "cmd_spaces", "cmd_dashboard"]


def _open(args: argparse.Namespace):
    """(study, storage, url) for --study/--storage; the default SQLite file must already exist."""
    url = args.storage or default_storage(args.study)
    storage = open_storage(url, must_exist=args.storage is None)
    return load_study(storage, args.study), storage, url


def _print_front(study, out: Path | None = None, rule: str | None = None) -> Path:
    from autotradeoff.front.report import write_report

    rows = pareto.rows_of(study)
    objectives = pareto.objectives_of(study)
    best = pareto.front(rows, objectives)
    print(f"Pareto front of study {study.study_name!r} ({len(best)} of {pareto.counts(rows)['complete']} complete "
          f"trials; all trials: {pareto.counts_line(rows)}):")
    print(front_table(best, objectives) if best else "(no complete trial that meets the constraints and learns anything yet)")
    if best:
        chosen = pareto.pick(rows, rule or pareto.default_rule(objectives), objectives)  # a bad rule: a usage error
        print(f"picked among the front by {rule or pareto.default_rule(objectives)!r} on validation; "
              + honesty_line(pareto.honesty(rows, objectives, chosen)))
        print(gains_line(gains.gains(rows, objectives), objectives, chosen))
    path = write_report(study, out or Path("reports") / study.study_name, rule=rule, rows=rows)
    print(f"report: {path}")
    return path


def cmd_search(args: argparse.Namespace) -> int:
    from autotradeoff.engine.driver import SearchDriver
    from autotradeoff.engine.search import SearchResult, search

    bars = []

    def on_start(result: SearchResult, driver: SearchDriver) -> ProgressBar:
        state = "resumed" if result.resumed else "created"
        print(f"study {result.study.study_name!r} {state} in {redact(result.storage_url)}; "
              f"{result.stored} trials stored"
              + (f", {result.recovered} finished by Ray before a search died recovered" if result.recovered else "")
              + (f", {result.reconciled} left RUNNING by a dead search marked FAIL (configs it had started queued again)"
                 if result.reconciled else "")
              + f"; budget {driver.budget} ({driver.budget.fmt(driver.spent_now())} spent); "
              f"{result.workers} worker(s), {driver.resources} per trial", flush=True)
        bar = ProgressBar(driver.budget.amount, driver.budget.unit, enabled=not args.no_progress,
                          initial=min(driver.spent_now(), driver.budget.amount))
        bars.append(bar)
        return bar

    try:
        result = search(args.task, args.budget, space=args.space, study=args.study, storage=args.storage,
                        objectives=args.objectives, workers=args.workers, runner=args.runner,
                        ray_address=args.ray_address, sampler=args.sampler, seed=args.seed, on_start=on_start, model=args.model,
                        verbose=args.verbose, trial_timeout=args.trial_timeout, constraints=args.constraint,
                        fidelity=args.fidelity, storage_wait=args.storage_wait,
                        early_stop=not args.no_early_stop, remeasure=args.remeasure)
    finally:
        for bar in bars:
            bar.close()
    print(f"{result.new_trials} new trial(s) this run"
          + (f"; timed costs of {result.remeasured} trial(s) (front and baseline) measured again, alone"
             if result.remeasured else "") + ".")
    _print_front(result.study)
    return 0


def cmd_front(args: argparse.Namespace) -> int:
    study, _, _ = _open(args)
    _print_front(study, args.out, args.pick)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from autotradeoff.front.export import export_trial, write_export

    study, _, _ = _open(args)
    record = export_trial(study, trial=args.trial, rule=args.pick)
    write_export(record, args.output)
    metrics = ", ".join(f"{k}={v:.4g}" for k, v in record["metrics"].items() if k in record["objectives"])
    tested = ", ".join(f"{k}: test {v['test']:.4g}, gap {v['gap']:+.4g}" for k, v in record["validation_vs_test"].items())
    print(f"exported trial {record['trial']} of study {study.study_name!r} ({metrics}"
          + (f"; {tested}" if tested else "") + f") to {args.output}")
    return 0


def cmd_trial(args: argparse.Namespace) -> int:
    from autotradeoff.engine.replay import prepare, replay
    from autotradeoff.front.export import read_config

    given = read_config(args.config) if args.config else {}
    task, config, fidelity = prepare(args.task, given, model=args.model, where=str(args.config or "config"))
    metrics = replay(task, config, fidelity, device=args.device)
    print(f"task {task.name}, config: " + " ".join(f"{k}={v}" for k, v in config.items()))
    print(_against(metrics, given.get("metrics", {}), "this run"))
    return 0


def _against(metrics: dict[str, float], stored: dict[str, float], label: str) -> str:
    rows = [[name, value, stored.get(name, ""), f"{value / stored[name]:.3f}" if stored.get(name) else ""]
            for name, value in metrics.items()]
    return table(["metric", label, "exported", "ratio"], rows)


def cmd_apply(args: argparse.Namespace) -> int:
    from autotradeoff.front.apply import apply_export, how_to_load
    from autotradeoff.front.export import read_config

    record = read_config(args.config)
    if not record["task"]:
        raise UsageError(f"{args.config}: has no task; apply needs a file written by `autotradeoff export`")
    metrics = apply_export(record, args.output, device=args.device)
    print(f"wrote {args.output} ({how_to_load(args.output)}); reloaded and re-scored:")
    print(_against(metrics, record["metrics"], "applied model"))
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from autotradeoff.tasks import get_task, task_names

    rows = []
    for name in task_names():
        task = get_task(name)
        rows.append([name, task.family, ", ".join(task.own_knobs), ", ".join(t.name for t in task.techniques),
                     task.description])
    print(table(["task", "family", "own knobs", "techniques", "description"], rows))
    return 0


def cmd_techniques(args: argparse.Namespace) -> int:
    from autotradeoff.techniques import get_technique, technique_names

    rows = []
    for name in technique_names():
        technique = get_technique(name)
        rows.append([name, technique.family, ", ".join(technique.stages), ", ".join(technique.knobs), technique.description])
    print(table(["technique", "family", "stages", "knobs (as <technique>.<knob>)", "description"], rows))
    return 0


def cmd_spaces(args: argparse.Namespace) -> int:
    import yaml

    from autotradeoff.space import list_spaces

    rows = []
    for name, path in list_spaces().items():
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        objectives = data.get("objectives", {})
        rows.append([name, data.get("task", "?"), ", ".join(f"{k}:{v}" for k, v in dict(objectives).items()),
                     ", ".join(data.get("knobs", {})), str(path)])
    print(table(["space", "task", "objectives", "knobs", "file"], rows))
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from optuna_dashboard import run_server

    study, storage, url = _open(args)
    print(f"optuna-dashboard for {redact(url)}: http://{args.host}:{args.port}/dashboard/studies/{record.study_id(study)} "
          "(Ctrl-C stops it)", flush=True)
    run_server(storage, host=args.host, port=args.port)
    return 0
