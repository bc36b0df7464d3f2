"""Export a chosen trial as YAML (config, fidelity, metrics, fingerprint) and read such files back."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
import yaml

from autotradeoff.cost.fingerprint import fingerprint
from autotradeoff.errors import UsageError
from autotradeoff.front import pareto
from autotradeoff.study import record

__all__ = ["export_trial", "write_export", "read_config"]

FORMAT = "autotradeoff/export-v1"


def export_trial(study: optuna.Study, *, trial: int | None = None, rule: str | None = None) -> dict[str, Any]:
    """The exported record of one complete trial, chosen by number or by a pick rule."""
    rows = pareto.rows_of(study)
    if (trial is None) == (rule is None):
        raise UsageError("export needs exactly one of --trial N or --pick RULE")
    if rule is not None:
        row = pareto.pick(rows, rule, pareto.objectives_of(study))
    else:
        row = next((r for r in rows if r["number"] == trial), None)
        if row is None:
            raise UsageError(f"study {study.study_name!r} has no trial {trial}; trials are 0..{len(rows) - 1}")
        if row["state"] != "COMPLETE":
            raise UsageError(f"trial {trial} is {row['state']}, not COMPLETE; only complete trials can be exported")
    objectives = pareto.objectives_of(study)
    on_front = row["number"] in {r["number"] for r in pareto.front(rows, objectives)}
    check = pareto.honesty(rows, objectives, row)
    return {
        "format": FORMAT,
        "task": record.task_of(study.user_attrs),
        "study": study.study_name,
        "trial": row["number"],
        "picked_by": rule or f"trial {row['number']}",
        "on_pareto_front": on_front,
        "objectives": {o.name: o.direction for o in objectives},
        "config": row["config"],
        "fidelity": record.fidelity_of(study.user_attrs),
        "metrics": row["metrics"],
        "validation_vs_test": {name: {"validation": val, "test": test, "gap": test - val}
                               for name, (val, test) in check["values"].items()},
        "dominated_on_test_by": check["dominated_on_test_by"],
        "fingerprint": fingerprint(),
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_export(record: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(record, sort_keys=False), encoding="utf-8")


def read_config(path: Path) -> dict[str, Any]:
    """An exported file (or a plain ``config:``/knob mapping), loaded with the safe loader only.

    Returns ``{"task": str|None, "config": dict, "fidelity": dict, "metrics": dict}``.
    """
    if not path.is_file():
        raise UsageError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        problem = " ".join(str(getattr(exc, "problem", exc)).split())
        raise UsageError(f"{path}: is not valid YAML ({problem})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: must be a mapping (an `autotradeoff export` file or knob: value pairs)")
    if "config" not in data:  # a plain mapping of knobs
        return {"task": None, "config": data, "fidelity": {}, "metrics": {}}
    for key in ("config", "fidelity", "metrics"):
        if not isinstance(data.get(key) or {}, dict):
            raise UsageError(f"{path}: {key} must be a mapping; got {data.get(key)!r}")
    return {"task": data.get("task"), "config": data["config"], "fidelity": data.get("fidelity") or {},
            "metrics": data.get("metrics") or {}}
