"""What each CLI subcommand does: call the library, print the outcome. No search logic here."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autotradeoff import pareto
from autotradeoff.console import ProgressBar, front_table, table
from autotradeoff.errors import UsageError
from autotradeoff.study import default_storage, load_study, open_storage, redact

__all__ = ["cmd_search", "cmd_front", "cmd_export", "cmd_trial", "cmd_apply", "cmd_tasks", "cmd_spaces", "cmd_dashboard"]


def _open(args: argparse.Namespace):
    """(study, storage, url) for --study/--storage; the default SQLite file must already exist."""
    url = args.storage or default_storage(args.study)
    storage = open_storage(url, must_exist=args.storage is None)
    return load_study(storage, args.study), storage, url


def _print_front(study, out: Path | None = None, rule: str | None = None) -> Path:
    from autotradeoff.report import write_report

    rows = pareto.rows_of(study)
    objectives = pareto.objectives_of(study)
    best = pareto.front(rows, objectives)
    print(f"Pareto front of study {study.study_name!r} ({len(best)} of "
          f"{sum(r['state'] == 'COMPLETE' for r in rows)} complete trials):")
    print(front_table(best, objectives) if best else "(no complete trials yet)")
    if rule and any(r["state"] == "COMPLETE" for r in rows):
        pareto.pick(rows, rule)  # a bad rule is a usage error here, not a line in the report
    path = write_report(study, out or Path("reports") / study.study_name, rule=rule)
    print(f"report: {path}")
    return path


def cmd_search(args: argparse.Namespace) -> int:
    from autotradeoff.search import search

    bars = []

    def on_start(result, driver):
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
                        early_stop=not args.no_early_stop, remeasure=args.remeasure)
    finally:
        for bar in bars:
            bar.close()
    print(f"{result.new_trials} new trial(s) this run"
          + (f"; timed costs of {result.remeasured} front trial(s) measured again, alone" if result.remeasured else "") + ".")
    _print_front(result.study)
    return 0


def cmd_front(args: argparse.Namespace) -> int:
    study, _, _ = _open(args)
    _print_front(study, args.out, args.pick)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from autotradeoff.export import export_trial, write_export

    study, _, _ = _open(args)
    record = export_trial(study, trial=args.trial, rule=args.pick)
    write_export(record, args.output)
    metrics = ", ".join(f"{k}={v:.4g}" for k, v in record["metrics"].items() if k in record["objectives"])
    print(f"exported trial {record['trial']} of study {study.study_name!r} ({metrics}) to {args.output}")
    return 0


def cmd_trial(args: argparse.Namespace) -> int:
    from autotradeoff.export import read_config
    from autotradeoff.runner import trial_outcome
    from autotradeoff.space import load_space
    from autotradeoff.tasks import resolve_task

    task, preset = resolve_task(args.task)
    given = read_config(args.config) if args.config else {"task": None, "config": {}, "fidelity": {}, "metrics": {}}
    if given["task"] and given["task"] != task.name:
        raise UsageError(f"{args.config} was exported for task {given['task']!r}, not {task.name!r}")
    config = task.fill_config(given["config"], where=str(args.config or "config"))
    preset_fidelity = load_space(preset).fidelity if preset else {}  # a preset's fidelity, unless the export has one
    fidelity = task.fill_fidelity({**preset_fidelity, **given["fidelity"], **({"model": args.model} if args.model else {})})
    task.check_data(fidelity)
    metrics, error = trial_outcome(task.name, config, fidelity, device=args.device)
    if error:
        print(f"trial failed: {error}", file=sys.stderr)
        return 1
    print(f"task {task.name}, config: " + " ".join(f"{k}={v}" for k, v in config.items()))
    print(_against(metrics, given["metrics"], "this run"))
    return 0


def _against(metrics: dict[str, float], stored: dict[str, float], label: str) -> str:
    rows = [[name, value, stored.get(name, ""), f"{value / stored[name]:.3f}" if stored.get(name) else ""]
            for name, value in metrics.items()]
    return table(["metric", label, "exported", "ratio"], rows)


def cmd_apply(args: argparse.Namespace) -> int:
    from autotradeoff.apply import apply_export
    from autotradeoff.export import read_config

    record = read_config(args.config)
    if not record["task"]:
        raise UsageError(f"{args.config}: has no task; apply needs a file written by `autotradeoff export`")
    metrics = apply_export(record, args.output, device=args.device)
    print(f"wrote {args.output} (load it with AxBertForSequenceClassification.from_pretrained, or "
          f"AutoModelForSequenceClassification.from_pretrained(..., trust_remote_code=True)); reloaded and re-scored:")
    print(_against(metrics, record["metrics"], "applied model"))
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from autotradeoff.tasks import get_task, task_names

    rows = []
    for name in task_names():
        task = get_task(name)
        rows.append([name, ", ".join(task.knobs), task.description])
    print(table(["task", "knobs", "description"], rows))
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
    print(f"optuna-dashboard for {redact(url)}: http://{args.host}:{args.port}/dashboard/studies/{study._study_id} "
          "(Ctrl-C stops it)", flush=True)
    run_server(storage, host=args.host, port=args.port)
    return 0
